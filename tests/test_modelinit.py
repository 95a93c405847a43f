"""pipeline.modelinit: the offline T5 (SentencePiece tokenizer trained on a corpus, random weights)."""

from __future__ import annotations

import json
import unicodedata
from pathlib import Path

import pytest

from pipeline.errors import PipelineError
from pipeline.modelinit import PROMPT_WORDS, SCORE_WORDS, SIDECAR, SIZES, init_model

FILES = ("config.json", "generation_config.json", "model.safetensors", "spiece.model", "tokenizer.json")


def _tokenizer(path: Path):
    from transformers import T5Tokenizer

    return T5Tokenizer.from_pretrained(str(path))


def _normalise(text: str) -> str:
    """What SentencePiece's default nmt_nfkc normaliser keeps of a text, written independently:
    NFKC, control characters dropped, whitespace runs collapsed to one space."""
    text = unicodedata.normalize("NFKC", text)
    text = "".join(" " if c.isspace() else c for c in text if c.isspace() or unicodedata.category(c) != "Cc")
    return " ".join(text.split())


@pytest.fixture(scope="module")
def cacm_tiny(cacm, tmp_path_factory) -> Path:
    return init_model(cacm, tmp_path_factory.mktemp("cacm") / "t5", size="tiny", seed=0)


def test_tokenizer_round_trips_every_cacm_text(cacm, cacm_tiny):
    import sentencepiece as spm

    from pipeline import data

    tok = _tokenizer(cacm_tiny)
    sp = spm.SentencePieceProcessor(model_file=str(cacm_tiny / "spiece.model"))
    texts = list(data.docs_text(cacm).values()) + list(data.queries(cacm).values())
    assert len(texts) == 3204 + 64
    encoded = tok(texts, add_special_tokens=False).input_ids
    for text, ids in zip(texts, encoded, strict=True):
        assert tok.unk_token_id not in ids, text
        assert tok.decode(ids) == _normalise(text)
        # the tokenizers-library conversion that transformers loads encodes like SentencePiece itself
        assert ids == sp.encode(text), text
    # EOS is appended, as T5 does
    assert tok("Preliminary Report").input_ids[-1] == 1


def test_special_ids_follow_t5(tiny_model):
    from transformers import T5Config

    tok = _tokenizer(tiny_model)
    assert (tok.pad_token, tok.eos_token, tok.unk_token) == ("<pad>", "</s>", "<unk>")
    assert (tok.pad_token_id, tok.eos_token_id, tok.unk_token_id) == (0, 1, 2)
    assert tok.bos_token is None
    # 100 sentinels at the end of the vocabulary, <extra_id_0> last, each one id
    sentinels = [tok.convert_tokens_to_ids(f"<extra_id_{i}>") for i in range(100)]
    assert sentinels == list(range(len(tok) - 1, len(tok) - 101, -1))
    assert tok("<extra_id_0> wing").input_ids[0] == len(tok) - 1
    config = T5Config.from_pretrained(tiny_model)
    assert (config.decoder_start_token_id, config.pad_token_id, config.eos_token_id) == (0, 0, 1)
    assert config.vocab_size >= len(tok) and config.vocab_size % 128 == 0


def test_prompt_and_score_words_are_single_distinct_pieces(tiny_model):
    tok = _tokenizer(tiny_model)
    specials = set(tok.all_special_ids)
    ids = {}
    for word in (*PROMPT_WORDS, *SCORE_WORDS):
        # alone (as a training target is tokenized) and after a space: one piece plus EOS
        assert tok(word).input_ids == tok(" " + word).input_ids
        piece, eos = tok(word).input_ids
        assert eos == 1 and piece not in specials, word
        assert tok.convert_ids_to_tokens(piece) == f"▁{word}"
        ids[word] = piece
    assert len(set(ids.values())) == len(ids)
    # inside a prompt, each cue stays one piece whatever the text around it
    prompt = tok("query: wing flutter document: lift at mach 2 relevant:").input_ids
    assert prompt[0] == ids["query:"] and prompt[-2:] == [ids["relevant:"], 1] and ids["document:"] in prompt
    published = tok("Query: wing Document: lift Relevant:").input_ids
    assert [published[0], published[-2]] == [ids["Query:"], ids["Relevant:"]] and ids["Document:"] in published
    # partial score words ("t", "tr", …, "fals") are ordinary text: known pieces, never <unk>,
    # and the first step of the two targets differs
    for word in SCORE_WORDS:
        for end in range(1, len(word)):
            assert tok.unk_token_id not in tok(word[:end]).input_ids
    assert tok("true").input_ids[0] != tok("false").input_ids[0]


def test_same_seed_same_files_other_seed_other_weights(cranfield, tiny_model, tmp_path):
    from safetensors.torch import load_file

    again = init_model(cranfield, tmp_path / "again", size="tiny", seed=0)
    other = init_model(cranfield, tmp_path / "other", size="tiny", seed=1)
    for name in FILES:
        assert (again / name).read_bytes() == (tiny_model / name).read_bytes(), name
    assert (other / "model.safetensors").read_bytes() != (tiny_model / "model.safetensors").read_bytes()
    a, b = load_file(tiny_model / "model.safetensors"), load_file(other / "model.safetensors")
    assert a.keys() == b.keys()
    assert all(not a[k].equal(b[k]) for k in a if not k.endswith("layer_norm.weight"))  # norms start at 1
    # nothing but the finished folders is left in the parent
    assert sorted(p.name for p in tmp_path.iterdir()) == ["again", "other"]


def test_tiny_parameter_count_by_hand(tiny_model):
    from transformers import T5ForConditionalGeneration

    made = json.loads((tiny_model / SIDECAR).read_text())
    d, ff, h, dkv, buckets = 64, 256, 4, 16, 32
    attention = 4 * d * h * dkv  # q, k, v, o; no biases in T5
    encoder = 2 * (attention + d * ff * 2 + 2 * d) + buckets * h + d
    decoder = 2 * (2 * attention + d * ff * 2 + 3 * d) + buckets * h + d
    rows = -(-made["vocab_size"] // 128) * 128
    expected = rows * d + encoder + decoder  # input and output embeddings tied
    model = T5ForConditionalGeneration.from_pretrained(tiny_model)
    assert sum(p.numel() for p in model.parameters()) == made["parameters"] == expected
    assert 200_000 <= expected <= 1_000_000
    assert (made["corpus"], made["size"], made["seed"], made["vocab_size"]) == ("cranfield", "tiny", 0, 4100)


def test_small_is_the_t5_small_shape():
    import torch
    from transformers import T5ForConditionalGeneration

    from pipeline.modelinit import _t5_config

    # with T5's own vocabulary (32100 tokens -> 32128 rows) the shape has t5-small's published
    # 60,506,624 parameters; built on the meta device, so nothing is allocated
    with torch.device("meta"):
        model = T5ForConditionalGeneration(_t5_config(SIZES["small"], 32100))
    assert model.config.vocab_size == 32128
    assert sum(p.numel() for p in model.parameters()) == 60_506_624


def test_folder_loads_and_runs(tiny_model):
    import torch
    from transformers import T5ForConditionalGeneration

    tok = _tokenizer(tiny_model)
    model = T5ForConditionalGeneration.from_pretrained(tiny_model).eval()
    prompts = ["query: wing document: lift relevant:", "query: flutter document: a b relevant:"]
    batch = tok(prompts, padding=True, return_tensors="pt")
    labels = tok(["true", "false"], return_tensors="pt").input_ids
    with torch.no_grad():
        out = model(**batch, labels=labels)
        generated = model.generate(**batch, max_new_tokens=1, do_sample=False)
    assert out.logits.shape == (2, 2, model.config.vocab_size)
    assert torch.isfinite(out.loss) and out.loss.item() > 0
    assert generated.shape == (2, 2) and generated[:, 0].tolist() == [0, 0]  # decoder starts at <pad>


def test_existing_folder(cranfield, tiny_model, tmp_path):
    # the same settings: returned as is, nothing rewritten
    before = {p.name: p.stat().st_mtime_ns for p in tiny_model.iterdir()}
    assert init_model(cranfield, tiny_model, size="tiny", seed=0) == tiny_model
    assert {p.name: p.stat().st_mtime_ns for p in tiny_model.iterdir()} == before
    # other settings or other files: a clear error, nothing touched
    with pytest.raises(PipelineError, match="exists and is not empty"):
        init_model(cranfield, tiny_model, size="tiny", seed=1)
    other = tmp_path / "notes"
    other.mkdir()
    (other / "mine.txt").write_text("keep")
    with pytest.raises(PipelineError, match="exists and is not empty"):
        init_model(cranfield, other)
    assert [p.name for p in other.iterdir()] == ["mine.txt"]
    # an existing empty folder is filled
    empty = tmp_path / "empty"
    empty.mkdir()
    assert (init_model(cranfield, empty) / "model.safetensors").is_file()


@pytest.mark.parametrize(
    ("corpus", "size", "seed", "message"),
    [
        ("no-such-dataset", "tiny", 0, "unknown dataset id 'no-such-dataset'"),
        ("cranfield", "huge", 0, "unknown model size 'huge'"),
        ("cranfield", "tiny", -1, "seed must be a non-negative integer"),
    ],
)
def test_bad_input_writes_nothing(cranfield, tmp_path, corpus, size, seed, message):
    with pytest.raises(PipelineError, match=message):
        init_model(corpus, tmp_path / "model", size=size, seed=seed)
    assert list(tmp_path.iterdir()) == []


def test_cli(cranfield, tmp_path, capsys):
    from pipeline.cli import main

    out = tmp_path / "cli-model"
    assert main(["init-model", "--corpus", cranfield, "--output", str(out), "--size", "tiny", "--seed", "0"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == str(out)
    assert "500,736 parameters" in lines[1] and "vocabulary 4,100" in lines[1]
    assert main(["init-model", "--corpus", "nope", "--output", str(tmp_path / "x")]) == 2
    assert "unknown dataset id 'nope'" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
