"""The two T5 rerankers: score rules, fast path, inputs, chunks, losses, checkpoints, `pipeline rerank`.

References are independent of the code under test: hand-computed formulas, the full
Hugging Face forward pass (all logits), ``generate()``, and the reference monoT5
input builders of pygaggle (one string, truncated) and pyterrier_t5 (document
truncated, ``Relevant:`` appended), re-implemented here line by line.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import torch

from pipeline.cli import main
from pipeline.errors import PipelineError
from pipeline.rerankers import (
    SETTINGS_FILE,
    T5Ranker,
    T5WithRerankingLoss,
    listwise_softmax_ce,
    load_reranker,
    pairwise_softmax_ce,
    rerank,
    rerank_dataset,
    reranking_loss_scores,
    t5ranker_scores,
)
from pipeline.runs import read_run, sidecar_path, write_run

ATOL = 1e-5


# --- fixtures ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cran_texts(shared_data):
    """Real Cranfield passages (id -> text) and queries (id -> text)."""
    docs = {}
    with open(shared_data / "cranfield" / "docs.jsonl", encoding="utf-8") as f:
        for line in f:
            d = json.loads(line)
            docs[d["id"]] = d["contents"]
    queries = {}
    with open(shared_data / "cranfield" / "queries.tsv", encoding="utf-8") as f:
        for line in f:
            qid, text = line.rstrip("\n").split("\t", 1)
            queries[qid] = text
    return docs, queries


@pytest.fixture(scope="module")
def ranker(tiny_model):
    """A T5Ranker with the seed's prompt (as trained here) on the tiny offline model."""
    return T5Ranker.from_pretrained(tiny_model, convention="seed", device="cpu")


@pytest.fixture(scope="module")
def rl_model(tiny_model):
    return T5WithRerankingLoss.from_pretrained(tiny_model, device="cpu")


@pytest.fixture(scope="module")
def pairs(cran_texts):
    """20 real (query, passage) pairs; passages cut to 10-40 words so the tiny model runs fast."""
    docs, queries = cran_texts
    qs = [queries[q] for q in sorted(queries, key=int)[:5]]
    ds = [" ".join(docs[d].split()[:n]) for d, n in zip(("1", "11", "21", "31"), (10, 20, 30, 40), strict=True)]
    return [(q, d) for q in qs for d in ds]


def full_first_step_logits(reranker, ids_list):
    """Reference: the HF forward pass with all vocabulary logits, one pair at a time."""
    rows = []
    reranker.eval()  # no dropout
    with torch.no_grad():
        for ids in ids_list:
            out = reranker.t5(
                input_ids=torch.tensor([ids]),
                decoder_input_ids=torch.tensor([[reranker.t5.config.decoder_start_token_id]]),
            )
            rows.append(out.logits[0, 0])
    return torch.stack(rows)


def log_p_true(logit_true: float, logit_false: float) -> float:
    """log P(true) of a softmax over two logits, by hand."""
    return logit_true - math.log(math.exp(logit_true) + math.exp(logit_false))


# --- score rules ------------------------------------------------------------------------
def test_score_rules_on_handcrafted_logits():
    logits = torch.tensor([[2.0, 1.0], [0.0, 0.0], [-3.0, 5.0], [30.0, -30.0]])
    expected = [log_p_true(a, b) for a, b in logits.tolist()]
    assert t5ranker_scores(logits).tolist() == pytest.approx(expected, abs=1e-6)
    assert t5ranker_scores(logits)[1].item() == pytest.approx(math.log(0.5))
    assert reranking_loss_scores(torch.tensor([[1.5], [-2.0]])).tolist() == [1.5, -2.0]


def test_fast_path_equals_full_logits(ranker, rl_model, pairs):
    for model in (ranker, rl_model):
        ids_list = [model.build_inputs(q, d)[0] for q, d in pairs[:8]]
        full = full_first_step_logits(model, ids_list)[:, model.score_token_ids]
        with torch.no_grad():
            ids, mask = model._padded(ids_list)
            fast = model.first_step_logits(ids, mask)
        torch.testing.assert_close(fast, full, atol=ATOL, rtol=0)
        assert model.score_pairs(pairs[:8]) == pytest.approx(model.scores_from_logits(full).tolist(), abs=ATOL)


def test_t5ranker_score_equals_generate_first_step(ranker, pairs):
    """The one-step score equals the seed's generate()-based score (first generated step's logits)."""
    sub = pairs[:6]
    ids_list = [ranker.build_inputs(q, d)[0] for q, d in sub]
    ids, mask = ranker._padded(ids_list)
    with torch.no_grad():
        gen = ranker.t5.generate(
            input_ids=ids,
            attention_mask=mask,
            max_new_tokens=1,
            do_sample=False,
            num_beams=1,
            output_logits=True,
            return_dict_in_generate=True,
        )
    true_id, false_id = ranker.score_token_ids
    step = gen.logits[0]
    expected = [log_p_true(step[i, true_id].item(), step[i, false_id].item()) for i in range(len(sub))]
    assert ranker.score_pairs(sub) == pytest.approx(expected, abs=ATOL)


# --- inputs -----------------------------------------------------------------------------
def test_inputs_equal_tokenizing_the_whole_prompt(ranker, rl_model, pairs):
    """Token-level building gives the same ids as tokenizing the seed's prompt string."""
    tok = ranker.tokenizer
    for q, d in pairs[:10]:
        assert ranker.build_inputs(q, d) == [tok(f"query: {q} document: {d} relevant:")["input_ids"]]
        assert rl_model.build_inputs(q, d) == [tok(f"query: {q} document: {d}")["input_ids"]]


def test_truncation_keeps_relevant_and_caps_query(ranker, cran_texts):
    docs, _ = cran_texts
    r = ranker.with_settings(aggregation="first", max_length=64, max_query_tokens=5)
    tok = r.tokenizer
    query = "one two three four five six seven eight"
    long_doc = " ".join(docs[str(i)] for i in range(1, 6))
    (ids,) = r.build_inputs(query, long_doc)
    assert len(ids) == 64
    tail = tok("relevant:")["input_ids"]  # ends with EOS
    assert ids[-len(tail) :] == tail
    assert tok.decode(ids).endswith("relevant:</s>")
    q_ids = tok(query, add_special_tokens=False)["input_ids"]
    head = tok("query:", add_special_tokens=False)["input_ids"] + q_ids[:5]
    head += tok("document:", add_special_tokens=False)["input_ids"]
    assert ids[: len(head)] == head  # the query is capped at 5 tokens, not the prompt
    d_ids = tok(long_doc, add_special_tokens=False)["input_ids"]
    assert ids[len(head) : -len(tail)] == d_ids[: 64 - len(head) - len(tail)]


def test_long_document_chunks_and_aggregation(ranker, cran_texts):
    """mean (of first-step logits), max and first over chunks, against chunks scored by hand."""
    docs, queries = cran_texts
    query, long_doc = queries["1"], " ".join(docs[str(i)] for i in range(1, 4))
    tok_model = ranker
    tok = tok_model.tokenizer
    max_length = 80
    head = tok("query:", add_special_tokens=False)["input_ids"]
    head += tok(query, add_special_tokens=False)["input_ids"]
    head += tok("document:", add_special_tokens=False)["input_ids"]
    tail = tok("relevant:")["input_ids"]
    d_ids = tok(long_doc, add_special_tokens=False)["input_ids"]
    budget = max_length - len(head) - len(tail)
    chunks = [head + d_ids[i : i + budget] + tail for i in range(0, len(d_ids), budget)]
    assert len(chunks) >= 3

    r = {agg: tok_model.with_settings(max_length=max_length, aggregation=agg) for agg in ("mean", "max", "first")}
    assert r["mean"].build_inputs(query, long_doc) == chunks
    true_id, false_id = r["mean"].score_token_ids
    logits = full_first_step_logits(r["mean"], chunks)[:, [true_id, false_id]].tolist()
    per_chunk = [log_p_true(a, b) for a, b in logits]
    mean_true = sum(row[0] for row in logits) / len(logits)
    mean_false = sum(row[1] for row in logits) / len(logits)
    assert r["mean"].score(query, [long_doc])[0] == pytest.approx(log_p_true(mean_true, mean_false), abs=ATOL)
    assert r["max"].score(query, [long_doc])[0] == pytest.approx(max(per_chunk), abs=ATOL)
    assert r["first"].score(query, [long_doc])[0] == pytest.approx(per_chunk[0], abs=ATOL)

    rl = T5WithRerankingLoss(tok_model.t5, tok, T5WithRerankingLoss.default_settings()).with_settings(
        max_length=max_length
    )
    rl_chunks = rl.build_inputs(query, long_doc)
    rl_logits = full_first_step_logits(rl, rl_chunks)[:, rl.score_token_ids[0]].tolist()
    assert rl.score(query, [long_doc])[0] == pytest.approx(sum(rl_logits) / len(rl_logits), abs=ATOL)


# --- batching ---------------------------------------------------------------------------
def test_scores_do_not_depend_on_batch_size_or_companions(ranker, rl_model, pairs, cran_texts):
    docs, _ = cran_texts
    long_pair = (pairs[0][0], " ".join(docs[str(i)] for i in range(1, 3)))  # several chunks at max_length 96
    everything = [*pairs, long_pair]
    for model in (ranker.with_settings(max_length=96), rl_model.with_settings(max_length=96)):
        assert len(model.build_inputs(*long_pair)) > 2
        alone = [model.score_pairs([p], batch_size=1)[0] for p in everything]
        for batch_size in (2, 7, 64):
            assert model.score_pairs(everything, batch_size=batch_size) == pytest.approx(alone, abs=ATOL)
        shuffled = everything[::-1]
        assert model.score_pairs(shuffled, batch_size=5) == pytest.approx(alone[::-1], abs=ATOL)


# --- losses -----------------------------------------------------------------------------
def test_t5ranker_loss_by_hand(ranker):
    ranker.eval()  # no dropout: the hand computation must see the same network
    queries = ["wing lift", "heat transfer"]
    positives = ["the lift of a wing in a slipstream", "heat transfer in laminar flow"]
    negatives = [["supersonic boundary layer", "buckling of shells"], ["panel flutter"]]
    true_id, false_id = ranker.score_token_ids
    eos = ranker.tokenizer.eos_token_id
    start = ranker.t5.config.decoder_start_token_id
    ces = []
    with torch.no_grad():
        for q, pos, negs in zip(queries, positives, negatives, strict=True):
            for text, label in [(pos, true_id)] + [(n, false_id) for n in negs]:
                (ids,) = ranker.build_inputs(q, text)
                logits = ranker.t5(
                    input_ids=torch.tensor([ids]), decoder_input_ids=torch.tensor([[start, label]])
                ).logits[0]
                logp = torch.log_softmax(logits, dim=-1)
                ces.append(-(logp[0, label].item() + logp[1, eos].item()) / 2)
    # negatives of unequal counts are fine for the pointwise loss
    loss = ranker.loss(queries, positives, negatives)
    assert loss.item() == pytest.approx(sum(ces) / len(ces), abs=ATOL)
    loss.backward()
    assert ranker.t5.shared.weight.grad is not None and ranker.t5.shared.weight.grad.abs().sum() > 0
    ranker.t5.zero_grad(set_to_none=True)


def test_ranking_losses_by_hand(rl_model):
    queries = ["wing lift", "heat transfer"]
    positives = ["the lift of a wing in a slipstream", "heat transfer in laminar flow"]
    negatives = [["supersonic boundary layer", "buckling of shells"], ["panel flutter", "shock waves"]]
    for kind in ("listwise", "pairwise"):
        r = rl_model.with_settings(loss=kind)
        by_hand = []
        for q, pos, negs in zip(queries, positives, negatives, strict=True):
            s = r.score(q, [pos, *negs])
            if kind == "listwise":
                by_hand.append(math.log(sum(math.exp(x) for x in s)) - s[0])
            else:
                by_hand.append(sum(math.log(1 + math.exp(n - s[0])) for n in s[1:]) / len(s[1:]))
        r.eval()
        assert r.loss(queries, positives, negatives).item() == pytest.approx(sum(by_hand) / 2, abs=ATOL)
        assert r(queries, positives, negatives).item() == pytest.approx(sum(by_hand) / 2, abs=ATOL)  # forward


@pytest.mark.parametrize("kind", ["t5ranker", "listwise", "pairwise"])
def test_losses_train(ranker, rl_model, kind):
    """Gradients reach the whole network and a few optimizer steps lower the loss on the batch."""
    import copy

    model = copy.deepcopy(ranker if kind == "t5ranker" else rl_model.with_settings(loss=kind))
    batch = (["wing lift", "heat transfer"], ["lift of a wing", "heat transfer in flow"], [["shells"], ["flutter"]])
    model.eval()  # no dropout: compare like with like
    before = model.loss(*batch).item()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(5):
        optimizer.zero_grad()
        model.loss(*batch).backward()
        assert model.t5.encoder.block[0].layer[0].SelfAttention.q.weight.grad.abs().sum() > 0
        optimizer.step()
    assert model.loss(*batch).item() < before


def test_ranking_loss_kernels_by_hand():
    scores = torch.tensor([[2.0, 1.0, -1.0], [0.0, 0.5, 0.5]])
    lw = [math.log(math.exp(2) + math.exp(1) + math.exp(-1)) - 2, math.log(1 + 2 * math.exp(0.5))]
    pw = [(math.log(1 + math.exp(-1)) + math.log(1 + math.exp(-3))) / 2, math.log(1 + math.exp(0.5))]
    assert listwise_softmax_ce(scores).item() == pytest.approx(sum(lw) / 2, abs=1e-6)
    assert pairwise_softmax_ce(scores).item() == pytest.approx(sum(pw) / 2, abs=1e-6)
    one_neg = scores[:, :2]
    assert pairwise_softmax_ce(one_neg).item() == pytest.approx(listwise_softmax_ce(one_neg).item(), abs=1e-7)


def test_ranking_loss_needs_equal_negatives(rl_model):
    with pytest.raises(PipelineError, match="same number of negatives"):
        rl_model.loss(["a", "b"], ["x", "y"], [["n1"], ["n1", "n2"]])
    with pytest.raises(PipelineError, match="at least 1 negative"):
        rl_model.loss(["a"], ["x"], [[]])


# --- checkpoints ------------------------------------------------------------------------
def test_save_load_gives_identical_scores(ranker, rl_model, pairs, tmp_path):
    for model in (ranker, rl_model):
        folder = model.save_pretrained(tmp_path / model.model_type)
        assert (folder / "model.safetensors").is_file() and (folder / SETTINGS_FILE).is_file()
        saved = json.loads((folder / SETTINGS_FILE).read_text())
        assert saved["model_type"] == model.model_type and saved["query_prefix"] == "query:"
        loaded = load_reranker(folder)
        assert type(loaded) is type(model) and loaded.settings == model.settings
        assert loaded.score_pairs(pairs) == model.score_pairs(pairs)
        model.save_pretrained(folder)  # overwriting a checkpoint replaces it whole
        assert load_reranker(folder).score_pairs(pairs[:3]) == model.score_pairs(pairs[:3])


def test_plain_checkpoint_uses_published_monot5_convention(tiny_model, pairs):
    """No reranker.json: `Query: q Document: d Relevant:` and ▁true/▁false, as pygaggle and pyterrier_t5."""
    assert not (Path(tiny_model) / SETTINGS_FILE).exists()
    r = load_reranker(tiny_model, device="cpu")
    assert type(r) is T5Ranker
    tok = r.tokenizer
    vocab = tok.get_vocab()
    assert r.score_token_ids == [vocab["▁true"], vocab["▁false"]]
    q, d = pairs[0]
    (ids,) = r.build_inputs(q, d)
    assert tok.decode(ids) == f"Query: {q} Document: {d} Relevant:</s>"
    # pygaggle (T5BatchTokenizer): the whole prompt string, EOS appended
    assert ids == tok(f"Query: {q} Document: {d} Relevant:", max_length=512, truncation=True)["input_ids"]
    # pyterrier_t5: the EOS of "Query: q Document: d" replaced by the tokens of "Relevant:"
    assert ids == tok(f"Query: {q} Document: {d}")["input_ids"][:-1] + tok("Relevant:")["input_ids"]


def pyterrier_monot5_scores(t5, tok, query, texts):
    """pyterrier_t5 MonoT5ReRanker.transform, one text per batch (its padding scheme then is exact)."""
    scores = []
    prompt = tok(["Relevant:"], return_tensors="pt", padding="longest")
    max_vlen = 512 - prompt["input_ids"].shape[1]
    for text in texts:
        enc = tok([f"Query: {query} Document: {text}"], return_tensors="pt", padding="longest")
        enc = {k: torch.cat([v[:, :-1][:, :max_vlen], prompt[k]], dim=1) for k, v in enc.items()}
        enc["decoder_input_ids"] = torch.full((1, 1), t5.config.decoder_start_token_id, dtype=torch.long)
        with torch.no_grad():
            result = t5(**enc).logits[:, 0, (tok.encode("true")[0], tok.encode("false")[0])]
        scores += torch.log_softmax(result, dim=1)[:, 0].tolist()
    return scores


def test_plain_checkpoint_scores_equal_pyterrier_t5(tiny_model, pairs, cran_texts):
    docs, _ = cran_texts
    r = load_reranker(tiny_model, device="cpu", aggregation="first")  # pyterrier truncates; no chunks
    query = pairs[0][0]
    texts = [d for _, d in pairs[:6]] + [" ".join(docs[str(i)] for i in range(1, 10))]  # the last > 512 tokens
    assert len(r.tokenizer(texts[-1])["input_ids"]) > 600
    expected = pyterrier_monot5_scores(r.t5, r.tokenizer, query, texts)
    assert r.score(query, texts) == pytest.approx(expected, abs=ATOL)


def test_checkpoint_missing_weights_or_tokenizer(tiny_model, tmp_path):
    no_weights = Path(shutil.copytree(tiny_model, tmp_path / "no-weights"))
    (no_weights / "model.safetensors").unlink()
    with pytest.raises(PipelineError, match=r"no-weights: incomplete model folder: missing weights"):
        load_reranker(no_weights)
    no_tok = Path(shutil.copytree(tiny_model, tmp_path / "no-tokenizer"))
    for name in ("tokenizer.json", "spiece.model"):
        (no_tok / name).unlink()
    with pytest.raises(PipelineError, match=r"missing tokenizer"):
        load_reranker(no_tok)
    pickled = Path(shutil.copytree(tiny_model, tmp_path / "pickled"))
    (pickled / "model.safetensors").rename(pickled / "pytorch_model.bin")
    with pytest.raises(PipelineError, match="pickle"):
        load_reranker(pickled)
    with pytest.raises(PipelineError, match="model folder not found"):
        load_reranker(tmp_path / "absent")


def test_checkpoint_of_the_other_type(rl_model, tmp_path):
    folder = rl_model.save_pretrained(tmp_path / "rl")
    with pytest.raises(PipelineError, match="holds a t5-reranking-loss checkpoint.*T5WithRerankingLoss"):
        T5Ranker.from_pretrained(folder)
    with pytest.raises(PipelineError, match="holds a t5-reranking-loss checkpoint"):
        load_reranker(folder, model_type="vanilla_t5")
    assert type(load_reranker(folder, model_type="T5_with_reranking_loss")) is T5WithRerankingLoss


def test_bad_settings(tiny_model, tmp_path):
    with pytest.raises(PipelineError, match="aggregation 'median'"):
        T5Ranker.from_pretrained(tiny_model, aggregation="median")
    with pytest.raises(PipelineError, match="unknown reranker setting 'temperature'"):
        T5Ranker.from_pretrained(tiny_model, temperature=2)
    folder = Path(shutil.copytree(tiny_model, tmp_path / "bad-json"))
    (folder / SETTINGS_FILE).write_text('{"model_type": "t5ranker", "colour": "red"}')
    with pytest.raises(PipelineError, match=r"reranker.json: unknown reranker setting 'colour'"):
        load_reranker(folder)


# --- reranking runs ---------------------------------------------------------------------
def test_rerank_run_dict(ranker, cran_texts):
    docs, queries = cran_texts
    run = {"1": {"1": 3.0, "2": 2.0, "3": 1.0}, "2": {"4": 5.0, "5": 4.0}}
    out = rerank(ranker, run, queries, docs, depth=2, progress=False)
    assert {q: set(h) for q, h in out.items()} == {"1": {"1", "2"}, "2": {"4", "5"}}
    assert out["1"]["2"] == pytest.approx(ranker.score(queries["1"], [docs["2"]])[0], abs=ATOL)
    with pytest.raises(PipelineError, match="1 run docids are not in the corpus"):
        rerank(ranker, {"1": {"nope": 1.0}}, queries, docs, progress=False)
    with pytest.raises(PipelineError, match="1 run docids have empty text .first: x"):
        rerank(ranker, {"1": {"x": 1.0, "1": 2.0}}, queries, {"x": "   ", "1": docs["1"]}, progress=False)
    with pytest.raises(PipelineError, match="empty passage"):
        ranker.score("a query", ["fine", ""])
    with pytest.raises(PipelineError, match="empty query"):
        ranker.score(" ", ["fine"])


@pytest.fixture()
def small_run(cranfield, cran_texts, tmp_path):
    """A hand-written run of real Cranfield ids: 3 queries x 5 documents."""
    run = {q: {str(d): float(10 - i) for i, d in enumerate(range(int(q), int(q) + 5))} for q in ("1", "2", "3")}
    return write_run(run, tmp_path / "hand.trec", tag="hand")


def test_rerank_dataset_missing_docids(cranfield, tiny_model, small_run, tmp_path, capsys):
    run = read_run(small_run)
    run["2"]["NOPE-1"] = 0.5
    run["3"]["NOPE-2"] = 0.1
    bad = write_run(run, tmp_path / "bad.trec", tag="bad")
    out = tmp_path / "out.trec"
    with pytest.raises(PipelineError, match=r"2 docids of the run cannot be scored.*NOPE-1, NOPE-2.*--skip-missing"):
        rerank_dataset(cranfield, tiny_model, bad, output=out, progress=False)
    assert not out.exists() and not sidecar_path(out).exists()

    rerank_dataset(cranfield, tiny_model, bad, output=out, skip_missing=True, progress=False)
    assert "skipped 2 docids (2 pairs)" in capsys.readouterr().err
    written = read_run(out)
    assert {q: set(h) for q, h in written.items()} == {q: set(h) for q, h in read_run(small_run).items()}
    meta = json.loads(sidecar_path(out).read_text())
    assert meta["skipped"]["docids"] == 2 and meta["skipped"]["not_in_corpus"] == ["NOPE-1", "NOPE-2"]


def test_rerank_dataset_empty_passage(cranfield, tiny_model, small_run, tmp_path, capsys):
    """Cranfield documents 471 and 995 are empty in the real collection."""
    run = read_run(small_run)
    run["1"]["471"] = 0.5
    with_empty = write_run(run, tmp_path / "empty.trec", tag="x")
    out = tmp_path / "out.trec"
    with pytest.raises(PipelineError, match=r"1 docids of the run cannot be scored.*1 with empty text .first: 471"):
        rerank_dataset(cranfield, tiny_model, with_empty, output=out, progress=False)
    assert not out.exists()
    argv = ["rerank", cranfield, "--model", str(tiny_model), "--run", str(with_empty), "--output", str(out)]
    assert main([*argv, "--skip-missing"]) == 0
    assert "skipped 1 docids (1 pairs)" in capsys.readouterr().err
    assert "471" not in read_run(out)["1"]
    assert json.loads(sidecar_path(out).read_text())["skipped"]["empty_text"] == ["471"]


def test_cli_rerank_not_trec_run(cranfield, tiny_model, tmp_path, capsys):
    bad = tmp_path / "bad.trec"
    bad.write_text("1 Q0 5 1 3.2 bm25\n1 Q0 6 2 oops bm25\n")
    out = tmp_path / "out.trec"
    code = main(["rerank", cranfield, "--model", str(tiny_model), "--run", str(bad), "--output", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and f"{bad}:2: score 'oops' is not a number" in err and err.count("\n") == 1
    assert not out.exists()
    good = tmp_path / "good.trec"
    good.write_text("1 Q0 5 1 3.2 bm25\n")
    code = main(["rerank", cranfield, "--model", str(tmp_path / "nothing"), "--run", str(good)])
    assert code == 2 and "model folder not found" in capsys.readouterr().err


def test_cli_rerank_hand_run(cranfield, tiny_model, small_run, cran_texts, tmp_path, capsys):
    """End to end: output path convention, content, order, tag and sidecar."""
    docs, queries = cran_texts
    model_dir = Path(shutil.copytree(tiny_model, tmp_path / "tiny"))
    code = main(["rerank", cranfield, "--model", str(model_dir), "--run", str(small_run), "--depth", "4"])
    assert code == 0
    out = Path(capsys.readouterr().out.strip())
    from pipeline.paths import runs_dir

    assert out == runs_dir(cranfield) / "hand.tiny.trec"
    lines = [line.split() for line in out.read_text().splitlines()]
    assert len(lines) == 12 and {cols[5] for cols in lines} == {"hand.tiny"}
    r = load_reranker(model_dir, device="cpu")
    hand = read_run(small_run)
    for qid in ("1", "2", "3"):
        rows = [cols for cols in lines if cols[0] == qid]
        top4 = sorted(hand[qid], key=lambda d: -hand[qid][d])[:4]
        assert sorted(c[2] for c in rows) == sorted(top4)
        assert [int(c[3]) for c in rows] == [1, 2, 3, 4]
        scores = [float(c[4]) for c in rows]
        assert scores == sorted(scores, reverse=True)
        expected = dict(zip(top4, r.score(queries[qid], [docs[d] for d in top4]), strict=True))
        assert {c[2]: float(c[4]) for c in rows} == pytest.approx(expected, abs=2e-6)
    meta = json.loads(sidecar_path(out).read_text())
    assert meta["model"] == str(model_dir) and meta["model_type"] == "t5ranker"
    assert meta["settings"]["query_prefix"] == "Query:" and meta["pairs"] == 12 and meta["pairs_per_s"] > 0
    assert meta["depth"] == 4 and meta["device"] == "cpu" and meta["tag"] == "hand.tiny"


@pytest.mark.slow
@pytest.mark.java
def test_cli_rerank_bm25_run(cranfield, cranfield_index, tiny_model, cran_texts, tmp_path, capsys):
    """A real BM25 top-20 of Cranfield test queries, reranked to depth 5 by a saved T5WithRerankingLoss."""
    from pipeline.retrieval import retrieve

    docs, queries = cran_texts
    bm25_path = retrieve(f"{cranfield}/test", k=20, threads=2, output=tmp_path / "bm25.trec")
    model_dir = T5WithRerankingLoss.from_pretrained(tiny_model).save_pretrained(tmp_path / "rl" / "best")
    out = tmp_path / "reranked.trec"
    argv = ["rerank", f"{cranfield}/test", "--model", str(model_dir), "--run", str(bm25_path)]
    assert main([*argv, "--depth", "5", "--batch-size", "8", "--output", str(out)]) == 0
    bm25 = read_run(bm25_path)
    reranked = read_run(out)
    assert set(reranked) == set(bm25)
    r = load_reranker(model_dir)
    for qid in list(bm25)[:5]:
        top5 = sorted(bm25[qid], key=lambda d: (-bm25[qid][d], d))[:5]
        assert set(reranked[qid]) == set(top5)
        expected = r.score(queries[qid], [docs[d] for d in top5])
        assert [reranked[qid][d] for d in top5] == pytest.approx(expected, abs=2e-6)
    meta = json.loads(sidecar_path(out).read_text())
    assert meta["tag"] == "bm25.rl-best" and meta["batch_size"] == 8
    assert meta["pairs"] == sum(min(5, len(h)) for h in bm25.values())
