"""pipeline.bench.rerank: FLOP counts, and the three scorers it times agree with each other."""

from __future__ import annotations

import pytest

from pipeline.bench import rerank as bench

PROMPT = {"query_prefix": "Query:", "document_prefix": "Document:", "relevant_prefix": "Relevant:"}


@pytest.fixture(scope="module")
def ranker(tiny_model):
    from pipeline.rerankers import T5Ranker

    # the bench's settings for (a): the reference's inputs (no query cap, long passages truncated)
    return T5Ranker.from_pretrained(
        tiny_model, convention="monot5", device="cpu", aggregation="first", max_query_tokens=bench.MAX_LENGTH
    )


@pytest.mark.parametrize("length", [5, 37])
def test_t5_flops_matches_torch_flop_counter(ranker, length):
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    t5 = ranker.t5
    config = t5.config
    ids = torch.randint(3, 1000, (3, length))
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        t5(input_ids=ids, decoder_input_ids=torch.zeros(3, 1, dtype=torch.long))
    # torch's counter sees the projections, feed-forward layers and lm_head (aten.mm) but not
    # T5's attention products; add those by hand: QK^T and AV, 2 FLOPs per multiply-add
    inner = config.num_heads * config.d_kv
    attention = config.num_layers * 4 * length * length * inner + config.num_decoder_layers * 4 * length * inner
    assert 3 * bench.t5_flops(config, length, config.vocab_size) == counter.get_total_flops() + 3 * attention


def test_reference_inputs_keep_relevant_and_eos(ranker, shared_data):
    import json

    tok = ranker.tokenizer
    long_text = " ".join(json.loads(line)["contents"] for line in (shared_data / "cranfield/docs.jsonl").open())
    short, long = bench.reference_inputs(tok, [("wing flutter", "lift at mach 2"), ("wing", long_text)], PROMPT)
    relevant = tok.convert_tokens_to_ids("▁Relevant:")
    assert tok.decode(short) == "Query: wing flutter Document: lift at mach 2 Relevant:</s>"
    assert len(long) == bench.MAX_LENGTH and long[-2:] == [relevant, tok.eos_token_id]
    # (a) builds the very same ids from separately tokenized parts
    assert ranker.build_inputs("wing flutter", "lift at mach 2") == [short]
    assert ranker.build_inputs("wing", long_text) == [long]


def test_three_scorers_give_the_same_scores(ranker, cranfield):
    from pipeline import data

    docs = data.docs_text(cranfield)
    queries = data.queries(cranfield)
    texts = [docs[d] for d in ("1", "2", "3", "184", "500", "1400")]
    texts.append(" ".join(docs[str(i)] for i in range(1, 40)))  # a passage over 512 tokens
    pairs = [(queries[q], t) for q in ("1", "2") for t in texts]
    true_id, false_id = ranker.score_token_ids
    a = ranker.score_pairs(pairs, batch_size=4)
    b = bench.seed_style_scores(ranker.t5, ranker.tokenizer, pairs, PROMPT, true_id, false_id, batch_size=5)
    c = bench.reference_scores(ranker.t5, ranker.tokenizer, pairs, PROMPT, true_id, false_id, batch_size=3)
    assert len(set(a)) == len(a)  # random weights still tell these pairs apart
    assert max(abs(x - y) for x, y in zip(a, c, strict=True)) < 1e-5
    assert max(abs(x - y) for x, y in zip(b, c, strict=True)) < 1e-5


@pytest.mark.slow
@pytest.mark.java
def test_bench_rerank_end_to_end(tiny_model, cranfield, cranfield_index, capsys):
    from pipeline.retrieval import bm25

    result = bench.bench_rerank(cranfield, tiny_model, queries=2, depth=6, batch_size=4, rounds=2)
    assert (result["pairs"], result["queries"], result["rounds"]) == (12, 2, 2)
    run = bm25(cranfield, k=6)
    qids = sorted(run, key=int)
    chosen = [qids[0], qids[len(qids) // 2]]  # evenly spread
    assert [k for k in result["scores"]["keys"]] == [
        (q, d) for q in chosen for d, _ in sorted(run[q].items(), key=lambda x: (-x[1], x[0]))
    ]
    assert result["max_abs_diff_a_c"] <= 1e-4 and result["max_abs_diff_b_c"] <= 1e-4
    for scorer in result["scorers"].values():
        assert scorer["pairs_per_s"] > 0 and scorer["useful_flops_per_s"] > 0
    text = bench.format_report(result)
    assert "(a) pipeline" in text and "a/b =" in text and "max |score a - score c|" in text
