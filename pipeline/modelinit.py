"""An offline T5: a SentencePiece tokenizer trained on a corpus plus randomly initialised weights.

Model hubs cannot be reached in tests or CI and no pretrained T5 weights are installable, so
tests, the benchmark and the offline default use a model made here. The folder is an ordinary
Hugging Face checkpoint (``config.json``, ``model.safetensors``, ``spiece.model``,
``tokenizer.json``) that ``T5ForConditionalGeneration.from_pretrained`` and
``T5Tokenizer.from_pretrained`` load, plus ``init_model.json`` saying how it was made.

Tokenizer conventions are T5's: ``<pad>`` = 0 (also the decoder start token), ``</s>`` = 1,
``<unk>`` = 2, no BOS, 100 ``<extra_id_N>`` sentinels at the end of the vocabulary. The prompt
words of both conventions (``query:``/``document:``/``relevant:`` as our checkpoints use them and
``Query:``/``Document:``/``Relevant:`` as published monoT5 does) and the score words ``true`` /
``false`` are each one piece: they are SentencePiece user-defined symbols *with* the word-start
mark ``▁``, because T5's tokenizer splits on whitespace and prefixes every word with ``▁`` (in T5's
own vocabulary the score tokens are likewise ``▁true`` = 1176 and ``▁false`` = 6136).

Example:
    >>> path = init_model("cranfield", "/tmp/t5-tiny", size="tiny", seed=0)  # doctest: +SKIP
    >>> from transformers import T5Tokenizer
    >>> T5Tokenizer.from_pretrained(path).tokenize("query: wing document: lift relevant:")  # doctest: +SKIP
    ['▁query:', '▁wing', '▁document:', '▁lift', '▁relevant:']
"""

from __future__ import annotations

import io
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from pipeline.errors import PipelineError

__all__ = ["PROMPT_WORDS", "SCORE_WORDS", "SIDECAR", "SIZES", "ModelShape", "init_model", "parameter_count"]

# Words that must each be a single piece when they start a word (see the module docstring).
PROMPT_WORDS = ("query:", "document:", "relevant:", "Query:", "Document:", "Relevant:")
SCORE_WORDS = ("true", "false")
SIDECAR = "init_model.json"
EXTRA_IDS = 100


@dataclass(frozen=True)
class ModelShape:
    """The T5 shape and the SentencePiece vocabulary size of one ``--size``."""

    d_model: int
    d_ff: int
    num_layers: int
    num_decoder_layers: int
    num_heads: int
    d_kv: int
    pieces: int  # SentencePiece vocabulary (before the 100 sentinels)


# Vocabulary sizes: t5-small's 32k pieces were learnt on C4 (hundreds of GB); on a 1-2 MB corpus
# such as CACM or Cranfield most of them would be words seen once or twice (SentencePiece may
# even refuse: "vocabulary size too high"). 4000 pieces keep the tiny model's embedding at about
# half of its ~0.5M parameters and still hold the frequent words whole; the t5-small shape gets
# 8000, enough that a CACM query-passage pair is not much longer in pieces than with T5's own
# vocabulary. The limit is soft (hard_vocab_limit=False) so small demo corpora still train.
SIZES: dict[str, ModelShape] = {
    "tiny": ModelShape(d_model=64, d_ff=256, num_layers=2, num_decoder_layers=2, num_heads=4, d_kv=16, pieces=4000),
    "small": ModelShape(d_model=512, d_ff=2048, num_layers=6, num_decoder_layers=6, num_heads=8, d_kv=64, pieces=8000),
}


def parameter_count(model) -> int:
    """Number of distinct parameters (tied embeddings counted once)."""
    return sum(p.numel() for p in model.parameters())


# --- corpus text --------------------------------------------------------------------------
def _corpus_lines(dataset_id: str) -> Iterator[str]:
    """Documents then queries of ``dataset_id``, one non-empty line at a time, in corpus order.

    SentencePiece trains on sentences; a fixed order (no sampling, one thread) makes the
    trained model byte-identical from run to run.
    """
    from pipeline import data

    for doc in data.load(dataset_id).docs_iter():
        yield from _lines(_doc_text(doc))
    for _qid, text in sorted(data.queries(dataset_id).items()):
        yield from _lines(text)


def _doc_text(doc) -> str:
    # ir_datasets documents name their text differently (text, contents, title+body, …);
    # default_text() is the library's own answer, kept as a fallback-free first choice.
    if hasattr(doc, "default_text"):
        return doc.default_text()
    return " ".join(str(v) for k, v in doc._asdict().items() if k != "doc_id" and isinstance(v, str))


def _lines(text: str) -> Iterator[str]:
    for line in text.splitlines():
        if line.strip():
            yield line


# --- tokenizer ------------------------------------------------------------------------------
def _train_sentencepiece(lines: Iterator[str], pieces: int, seed: int) -> bytes:
    """Train a unigram SentencePiece model with T5's special ids; returns the model bytes."""
    import sentencepiece as spm

    spm.set_random_generator_seed(seed)
    model = io.BytesIO()
    symbols = [f"▁{w}" for w in (*PROMPT_WORDS, *SCORE_WORDS)]
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=lines,
            model_writer=model,
            model_type="unigram",
            vocab_size=pieces,
            hard_vocab_limit=False,
            pad_id=0,
            eos_id=1,
            unk_id=2,
            bos_id=-1,
            user_defined_symbols=symbols,
            # every character of the corpus gets a piece: corpus text never becomes <unk>
            character_coverage=1.0,
            # one thread and all sentences in order: the same corpus gives the same bytes
            num_threads=1,
            input_sentence_size=0,
            shuffle_input_sentence=False,
            # Cranfield abstracts are single long lines; the 4192-byte default would drop some
            max_sentence_length=1 << 16,
            minloglevel=2,
        )
    except RuntimeError as exc:
        raise PipelineError(f"SentencePiece training failed: {exc}") from exc
    return model.getvalue()


# --- model ----------------------------------------------------------------------------------
def _t5_config(shape: ModelShape, vocab_size: int):
    from transformers import T5Config

    return T5Config(
        # like T5 (32100 tokens, 32128 rows), pad the embedding to a multiple of 128 rows
        vocab_size=-(-vocab_size // 128) * 128,
        d_model=shape.d_model,
        d_ff=shape.d_ff,
        d_kv=shape.d_kv,
        num_layers=shape.num_layers,
        num_decoder_layers=shape.num_decoder_layers,
        num_heads=shape.num_heads,
        relative_attention_num_buckets=32,
        relative_attention_max_distance=128,
        dropout_rate=0.1,
        layer_norm_epsilon=1e-6,
        feed_forward_proj="relu",  # T5 v1.0 (t5-small/base, monoT5), tied input/output embeddings
        tie_word_embeddings=True,
        decoder_start_token_id=0,
        pad_token_id=0,
        eos_token_id=1,
    )


def _same_model(folder: Path, settings: dict) -> bool:
    """Whether ``folder`` already holds a complete model made with ``settings``."""
    import json

    sidecar = folder / SIDECAR
    if not sidecar.is_file() or not (folder / "model.safetensors").is_file():
        return False
    try:
        made = json.loads(sidecar.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return all(made.get(k) == v for k, v in settings.items())


def init_model(corpus_dataset_id: str, output: str | os.PathLike, size: str = "tiny", seed: int = 0) -> Path:
    """Make an offline T5 in ``output``: a tokenizer trained on the corpus, random weights.

    The tokenizer is a SentencePiece unigram model trained on the documents and queries of
    ``corpus_dataset_id``; the weights are T5's initialisation after ``torch.manual_seed(seed)``.
    The same corpus, size and seed give byte-identical files. The folder is built under a
    temporary name and renamed into place. An existing non-empty ``output`` made with the same
    corpus, size and seed is returned as is; anything else there is an error (nothing is
    overwritten).

    Args:
        corpus_dataset_id: a dataset id (e.g. ``cacm``) whose documents and queries train the tokenizer.
        output: the folder to create.
        size: ``tiny`` (d_model 64, 2+2 layers, ~0.5M parameters) or ``small`` (the t5-small shape).
        seed: seeds both the tokenizer training and the weight initialisation.

    Returns:
        The folder.

    Example:
        >>> init_model("cacm", "/tmp/t5-small-cacm", size="small")  # doctest: +SKIP
        PosixPath('/tmp/t5-small-cacm')
    """
    if size not in SIZES:
        raise PipelineError(f"unknown model size {size!r}: choose one of {', '.join(SIZES)}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise PipelineError(f"seed must be a non-negative integer, got {seed!r}")
    output = Path(output)
    shape = SIZES[size]
    settings = {"corpus": corpus_dataset_id, "size": size, "seed": seed, "shape": asdict(shape)}
    if output.exists():
        if not output.is_dir():
            raise PipelineError(f"{output} exists and is not a folder")
        if any(output.iterdir()):
            if _same_model(output, settings):
                return output
            raise PipelineError(
                f"{output} exists and is not empty (not a model made by init-model with corpus="
                f"{corpus_dataset_id} size={size} seed={seed}); choose another --output or remove it"
            )

    started = time.perf_counter()
    # Read and check the corpus before anything is written (an unknown id raises here).
    lines = list(_corpus_lines(corpus_dataset_id))
    if not lines:
        raise PipelineError(f"dataset {corpus_dataset_id!r} has no document or query text to train a tokenizer on")
    spiece = _train_sentencepiece(iter(lines), shape.pieces, seed)

    import torch
    from transformers import T5ForConditionalGeneration, T5Tokenizer

    from pipeline.runs import git_commit, package_versions, write_json

    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{output.name}.", suffix=".tmp", dir=output.parent))
    try:
        (tmp / "spiece.model").write_bytes(spiece)
        # from_pretrained on the folder, not T5Tokenizer(vocab_file=…): in transformers 5 the
        # latter silently builds an empty vocabulary that maps every piece to <unk>.
        tokenizer = T5Tokenizer.from_pretrained(str(tmp), extra_ids=EXTRA_IDS)
        tokenizer.model_max_length = 512  # T5's input length (relative positions extend, cost does not)
        _check_tokenizer(tokenizer)
        config = _t5_config(shape, len(tokenizer))
        torch.manual_seed(seed)
        model = T5ForConditionalGeneration(config)
        model.generation_config.decoder_start_token_id = 0
        model.generation_config.pad_token_id = 0
        model.generation_config.eos_token_id = 1
        model.save_pretrained(str(tmp), safe_serialization=True)
        tokenizer.save_pretrained(str(tmp))
        parameters = parameter_count(model)
        write_json(
            {
                **settings,
                "parameters": parameters,
                "vocab_size": len(tokenizer),
                "embedding_rows": config.vocab_size,
                "sentencepiece_pieces": shape.pieces,
                "corpus_lines": len(lines),
                "seconds": round(time.perf_counter() - started, 3),
                "versions": package_versions(),
                "git_commit": git_commit(),
            },
            tmp / SIDECAR,
        )
        # The sidecar's timing varies; everything else in the folder is a function of the
        # settings. mkdtemp made the folder 0700; give it the usual permissions.
        os.chmod(tmp, 0o755)
        try:
            if output.exists():
                output.rmdir()  # empty (checked above); rename cannot replace it on every platform
            os.rename(tmp, output)
        except OSError as exc:
            # another process finished the same folder first: fine if it made the same model
            if _same_model(output, settings):
                return output
            raise PipelineError(f"cannot move the new model into {output}: {exc}") from exc
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return output


def _check_tokenizer(tokenizer) -> None:
    """T5's special ids and one piece per prompt/score word, or a PipelineError (a bug here)."""
    ids = (tokenizer.pad_token_id, tokenizer.eos_token_id, tokenizer.unk_token_id)
    if ids != (0, 1, 2):
        raise PipelineError(f"trained tokenizer has pad/eos/unk ids {ids}, expected (0, 1, 2)")
    for word in (*PROMPT_WORDS, *SCORE_WORDS):
        pieces = tokenizer.tokenize(word)
        if pieces != [f"▁{word}"]:
            raise PipelineError(f"trained tokenizer splits {word!r} into {pieces}, expected one piece")
