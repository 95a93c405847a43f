"""``pipeline bench rerank``: this package's scorer against two baselines, same weights, same pairs.

All three scorers take the same (query, passage) strings, BM25's top ``depth`` of real queries,
and one ``T5ForConditionalGeneration`` (the ``small`` shape made by ``pipeline init-model``), and
return monoT5 scores, log P(true) from the (true, false) logits of the first decoder step:

(a) ``pipeline``: :meth:`pipeline.rerankers.T5Ranker.score_pairs` — each passage tokenized once,
    pairs sorted by length, batches padded to their longest member, ``torch.inference_mode()``,
    encoder + one decoder step, logits of the two score tokens only.
(b) seed-style: each batch (in rank order) tokenized and padded to 512 tokens, ``generate()``
    with ``max_new_tokens=1`` and ``output_scores``, the full-vocabulary scores of that step.
(c) reference monoT5 (pygaggle ``MonoT5``, pyterrier_t5 ``MonoT5ReRanker``): candidates in rank
    order, batches of 32 tokenized with ``padding='longest'``, one forward pass with the decoder
    start token, the full-vocabulary logits of that step, ``log_softmax`` over (true, false).

The three build the same token ids for a pair — ``Query: q Document: d`` cut so that
``Relevant:`` and EOS always fit in 512 tokens, as pyterrier_t5 does — so (a) runs with
``aggregation='first'`` and no query cap; its defaults (64-token query cap, mean over the chunks
of a long passage) would score a few CACM pairs on different inputs by design. The scores must
then agree, and the bench reports the largest difference.

Timing: (a) scores all pairs in one call, as ``pipeline rerank`` does; (b) and (c) one query's
candidates per call, as pygaggle's ``rescore(query, texts)`` does. ``rounds > 1`` splits the
queries into rounds with the scorers in rotating order, so that load from other processes on a
shared machine slows all three alike; the 1-minute load average before and after is reported.

FLOP/s: the *useful* FLOPs of a pair are those of the T5 matmuls on its real tokens (encoder,
one decoder step with cross-attention over the encoder output, two lm_head rows); *executed*
FLOPs count padding and full-vocabulary heads as each scorer runs them. Both are compared with
the fp32 matmul FLOP/s this machine measures in the same run.

Example:
    >>> result = bench_rerank("cacm", queries=3)  # doctest: +SKIP
    >>> print(format_report(result))  # doctest: +SKIP
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Sequence
from pathlib import Path

from pipeline.errors import PipelineError

__all__ = ["bench_rerank", "format_report", "matmul_flops", "t5_flops", "main"]

MAX_LENGTH = 512


# --- FLOPs ------------------------------------------------------------------------------
def t5_flops(config, length: int, lm_rows: int) -> int:
    """Matmul FLOPs of one T5 sequence of ``length`` encoder tokens and ONE decoder step.

    Counts 2 FLOPs per multiply-add of every projection, attention product and
    feed-forward layer, and ``lm_rows`` rows of the output head; layer norms, softmax
    and the relative position bias are ignored (well under 1%).

    Example:
        >>> from transformers import T5Config  # doctest: +SKIP
        >>> t5_flops(T5Config(d_model=512, d_ff=2048, num_heads=8, d_kv=64, num_layers=6), 200, 2)  # doctest: +SKIP
        9962537984
    """
    d, inner, ff, n = config.d_model, config.num_heads * config.d_kv, config.d_ff, length
    encoder_layer = 2 * n * d * inner * 4 + 2 * 2 * n * n * inner + 2 * n * d * ff * 2
    decoder_layer = (
        2 * d * inner * 4  # self-attention q, k, v, o of the one decoder token
        + 2 * d * inner * 2  # cross-attention q, o
        + 2 * n * d * inner * 2  # cross-attention k, v over every encoder token
        + 2 * 2 * n * inner  # cross-attention scores and weighted sum
        + 2 * d * ff * 2
    )
    return config.num_layers * encoder_layer + config.num_decoder_layers * decoder_layer + 2 * d * lm_rows


def matmul_flops(n: int = 2048, seconds: float = 2.0) -> float:
    """The machine's fp32 matmul FLOP/s: the best of repeated ``n × n`` products (torch threads as set).

    Example:
        >>> matmul_flops(256, seconds=0.1) > 0  # doctest: +SKIP
        True
    """
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.matmul(a, b)  # warm-up: thread pool, kernel choice
    best = float("inf")
    end = time.perf_counter() + seconds
    while time.perf_counter() < end or best == float("inf"):
        t = time.perf_counter()
        torch.matmul(a, b)
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best


# --- the two baselines --------------------------------------------------------------------
def reference_inputs(tokenizer, pairs: Sequence[tuple[str, str]], prompt: dict[str, str]) -> list[list[int]]:
    """Token ids of ``Query: q Document: d`` cut to fit, then ``Relevant:`` and EOS (pyterrier_t5's truncation)."""
    texts = [f"{prompt['query_prefix']} {q} {prompt['document_prefix']} {d}" for q, d in pairs]
    tail = [*tokenizer(prompt["relevant_prefix"], add_special_tokens=False)["input_ids"], tokenizer.eos_token_id]
    heads = tokenizer(texts, add_special_tokens=False, verbose=False)["input_ids"]
    return [head[: MAX_LENGTH - len(tail)] + tail for head in heads]


def _pad(tokenizer, seqs: list[list[int]], width: int | None):
    padding = {"padding": "max_length", "max_length": width} if width else {"padding": "longest"}
    batch = tokenizer.pad({"input_ids": seqs}, return_tensors="pt", **padding)
    return batch["input_ids"], batch["attention_mask"]


def _first_step_scores(t5, tokenizer, pairs, prompt, true_id, false_id, batch_size, shapes, width, first_step_logits):
    """log P(true) per pair, batches in rank order padded to ``width`` (None: the longest);
    ``first_step_logits(ids, mask)`` is the scorer's own first decoder step."""
    import torch

    scores: list[float] = []
    t5.eval()
    with torch.no_grad():
        for start in range(0, len(pairs), batch_size):
            seqs = reference_inputs(tokenizer, pairs[start : start + batch_size], prompt)
            ids, mask = _pad(tokenizer, seqs, width)
            logits = first_step_logits(ids, mask)[:, [true_id, false_id]]
            scores += torch.log_softmax(logits.float(), dim=-1)[:, 0].tolist()
            if shapes is not None:
                shapes.append(tuple(ids.shape))
    return scores


def seed_style_scores(
    t5, tokenizer, pairs, prompt, true_id: int, false_id: int, batch_size: int, shapes: list | None = None
) -> list[float]:
    """(b) Inputs padded to 512, ``generate(max_new_tokens=1, output_scores=True)``, batches in rank order."""

    def step(ids, mask):
        out = t5.generate(
            input_ids=ids,
            attention_mask=mask,
            max_new_tokens=1,
            do_sample=False,
            num_beams=1,
            output_scores=True,
            return_dict_in_generate=True,
        )
        return out.scores[0]

    return _first_step_scores(t5, tokenizer, pairs, prompt, true_id, false_id, batch_size, shapes, MAX_LENGTH, step)


def reference_scores(
    t5, tokenizer, pairs, prompt, true_id: int, false_id: int, batch_size: int, shapes: list | None = None
) -> list[float]:
    """(c) pygaggle / pyterrier_t5: rank order, ``padding='longest'``, one forward step, full logits."""
    import torch

    def step(ids, mask):
        start_ids = torch.full((ids.shape[0], 1), t5.config.decoder_start_token_id, dtype=torch.long)
        return t5(input_ids=ids, attention_mask=mask, decoder_input_ids=start_ids).logits[:, 0]

    return _first_step_scores(t5, tokenizer, pairs, prompt, true_id, false_id, batch_size, shapes, None, step)


# --- the benchmark ------------------------------------------------------------------------
def _natural(qid: str):
    return (0, int(qid), "") if qid.isdigit() else (1, 0, qid)


def _pairs(dataset: str, queries: int | None, depth: int):
    """BM25 top-``depth`` pairs of ``queries`` evenly spread query ids, candidates in rank order."""
    from pipeline import data, retrieval
    from pipeline.runs import sorted_hits

    retrieval.build_index(dataset)  # reused when complete
    run = retrieval.bm25(dataset, k=depth)
    texts = data.queries(dataset)
    qids = sorted(run, key=_natural)
    if not qids:
        raise PipelineError(f"BM25 found no candidates for the queries of {dataset!r}")
    if queries is not None and queries < len(qids):
        step = len(qids) / queries
        qids = [qids[int(i * step)] for i in range(queries)]
    docs = data.docs_text(dataset)
    pairs, keys = [], []
    for qid in qids:
        ranked = [docid for docid, _ in sorted_hits(run[qid])]
        passages = docs.get_many(ranked)
        for docid in ranked:
            pairs.append((texts[qid], passages[docid]))
            keys.append((qid, docid))
    return pairs, keys, qids


def default_model(dataset: str) -> Path:
    """``models/t5-small-<dataset>-seed0`` under the pipeline home, made by init-model if absent."""
    from pipeline.modelinit import init_model
    from pipeline.paths import home

    return init_model(dataset, home() / "models" / f"t5-small-{dataset.replace('/', '-')}-seed0", size="small")


def _groups(keys: list[tuple[str, str]]) -> list[tuple[int, int]]:
    """``(start, end)`` of each query's run of consecutive pairs."""
    bounds = [i for i in range(1, len(keys)) if keys[i][0] != keys[i - 1][0]]
    return list(zip([0, *bounds], [*bounds, len(keys)], strict=True))


def bench_rerank(
    dataset: str = "cacm",
    model: str | Path | None = None,
    queries: int | None = 3,
    depth: int = 100,
    batch_size: int = 32,
    threads: int | None = None,
    rounds: int = 1,
) -> dict:
    """Time scorers (a), (b), (c) on the same weights and pairs; return figures and scores.

    Args:
        dataset: a registered dataset id with queries (default ``cacm``).
        model: a T5 folder; default the ``small`` init-model of ``dataset`` (made if absent).
        queries: how many queries (evenly spread over the sorted ids); ``None`` = all.
        depth: BM25 candidates per query.
        batch_size: pairs per forward pass, for all three scorers.
        threads: torch CPU threads (default: torch's choice).
        rounds: split the queries into this many rounds, the scorers in rotating order in each.

    Returns:
        A dict with the settings, pair statistics, matmul FLOP/s and per-scorer
        ``pairs_per_s``, ``seconds``, ``useful_flops``, ``executed_flops``, plus
        ``max_abs_diff_a_c`` and ``max_abs_diff_b_c``.
    """
    if depth < 1 or batch_size < 1 or rounds < 1 or (queries is not None and queries < 1):
        raise PipelineError("bench rerank: --queries, --depth, --batch-size and --rounds must be positive")
    import torch

    from pipeline.rerankers import T5Ranker

    if threads:
        torch.set_num_threads(threads)
    model = Path(model) if model is not None else default_model(dataset)
    pairs, keys, qids = _pairs(dataset, queries, depth)

    # (a) with the reference's inputs: no query cap, a long passage truncated (see module doc)
    ranker = T5Ranker.from_pretrained(
        model, convention="monot5", device="cpu", aggregation="first", max_query_tokens=MAX_LENGTH
    )
    t5, tok = ranker.t5, ranker.tokenizer
    prompt = {k: getattr(ranker.settings, k) for k in ("query_prefix", "document_prefix", "relevant_prefix")}
    true_id, false_id = ranker.score_token_ids
    lengths = [len(s) for s in reference_inputs(tok, pairs, prompt)]
    config = t5.config

    # warm-up (thread pools, kernel choice), untimed
    warm = pairs[:4]
    ranker.score_pairs(warm, batch_size=batch_size)
    reference_scores(t5, tok, warm, prompt, true_id, false_id, batch_size)
    seed_style_scores(t5, tok, warm, prompt, true_id, false_id, batch_size)

    # (a) is called as `pipeline rerank` calls it: on all of a round's pairs at once (it sorts
    # them by length across queries). (b) and (c) are called per query, candidates in rank
    # order, as pygaggle's rescore(query, texts) and pyterrier_t5 are. With several rounds the
    # three scorers run in rotating order in each, so load from other processes on a shared
    # machine slows all three alike (at the price of (a) sorting fewer pairs at a time).
    groups = _groups(keys)
    per_round = -(-len(groups) // rounds)
    round_groups = [groups[i : i + per_round] for i in range(0, len(groups), per_round)]
    load_before = os.getloadavg()[0]
    peak = matmul_flops(seconds=1.0)

    def per_query(fn):
        def run(queries_of_round, shapes):
            out = []
            for lo, hi in queries_of_round:
                out += fn(t5, tok, pairs[lo:hi], prompt, true_id, false_id, batch_size, shapes)
            return out

        return run

    def ours(queries_of_round, shapes):
        lo, hi = queries_of_round[0][0], queries_of_round[-1][1]
        return ranker.score_pairs(pairs[lo:hi], batch_size=batch_size)

    scorers = {"a": ours, "b": per_query(seed_style_scores), "c": per_query(reference_scores)}
    scores: dict[str, list[float]] = {name: [] for name in scorers}
    seconds = dict.fromkeys(scorers, 0.0)
    shapes: dict[str, list] = {name: [] for name in scorers}
    rotation = list(scorers)
    for round_no, queries_of_round in enumerate(round_groups):
        for name in rotation[round_no % 3 :] + rotation[: round_no % 3]:
            started = time.perf_counter()
            scores[name] += scorers[name](queries_of_round, shapes[name])
            seconds[name] += time.perf_counter() - started
    peak = max(peak, matmul_flops(seconds=1.0))
    load_after = os.getloadavg()[0]
    a, b, c = scores["a"], scores["b"], scores["c"]

    useful = sum(t5_flops(config, n, 2) for n in lengths)
    # (a)'s batches: each round's pairs sorted by length, longest first, padded to the first of each batch
    shapes["a"] = [
        (len(ordered[i : i + batch_size]), ordered[i])
        for queries_of_round in round_groups
        for ordered in [sorted(lengths[queries_of_round[0][0] : queries_of_round[-1][1]], reverse=True)]
        for i in range(0, len(ordered), batch_size)
    ]
    executed = {
        "a": sum(k * t5_flops(config, w, 2) for k, w in shapes["a"]),
        "b": sum(k * t5_flops(config, w, config.vocab_size) for k, w in shapes["b"]),
        "c": sum(k * t5_flops(config, w, config.vocab_size) for k, w in shapes["c"]),
    }
    results = {}
    for name, took in seconds.items():
        results[name] = {
            "seconds": took,
            "pairs_per_s": len(pairs) / took,
            "useful_flops_per_s": useful / took,
            "executed_flops_per_s": executed[name] / took,
        }
    parameters = sum(p.numel() for p in t5.parameters())
    return {
        "dataset": dataset,
        "model": str(model),
        "parameters": parameters,
        "queries": len(qids),
        "depth": depth,
        "pairs": len(pairs),
        "batch_size": batch_size,
        "rounds": len(round_groups),
        "threads": torch.get_num_threads(),
        "tokens_mean": statistics.mean(lengths),
        "tokens_max": max(lengths),
        "truncated_pairs": sum(n == MAX_LENGTH for n in lengths),
        "padding_share_a": 1 - sum(lengths) / sum(k * w for k, w in shapes["a"]),
        "padding_share_c": 1 - sum(lengths) / sum(k * w for k, w in shapes["c"]),
        "matmul_flops_per_s": peak,
        "cpus": os.cpu_count(),
        "load_average_1min": [round(load_before, 2), round(load_after, 2)],
        "useful_flops": useful,
        "scorers": results,
        "ratio_a_b": results["a"]["pairs_per_s"] / results["b"]["pairs_per_s"],
        "ratio_a_c": results["a"]["pairs_per_s"] / results["c"]["pairs_per_s"],
        "max_abs_diff_a_c": max(abs(x - y) for x, y in zip(a, c, strict=True)),
        "max_abs_diff_b_c": max(abs(x - y) for x, y in zip(b, c, strict=True)),
        "scores": {"a": a, "b": b, "c": c, "keys": keys},
    }


NAMES = {
    "a": "(a) pipeline T5Ranker.score_pairs",
    "b": "(b) seed-style: pad 512, generate()",
    "c": "(c) reference monoT5: rank order, longest",
}


def format_report(r: dict) -> str:
    """The printed table of :func:`bench_rerank`'s result."""
    peak = r["matmul_flops_per_s"]
    lines = [
        f"dataset {r['dataset']}: {r['queries']} queries x BM25 top-{r['depth']} = {r['pairs']} pairs; "
        f"pair length mean {r['tokens_mean']:.0f} tokens, max {r['tokens_max']} ({r['truncated_pairs']} truncated to "
        f"{MAX_LENGTH})",
        f"model {r['model']} ({r['parameters'] / 1e6:.1f}M parameters), fp32, {r['threads']} threads, "
        f"batch {r['batch_size']}; padding: (a) {r['padding_share_a']:.0%} of tokens, (c) {r['padding_share_c']:.0%}, "
        "(b) to 512",
        f"machine: {r['cpus']} CPUs, fp32 matmul (2048x2048) {peak / 1e9:.1f} GFLOP/s, 1-min load average "
        f"{r['load_average_1min'][0]:.1f} before / {r['load_average_1min'][1]:.1f} after",
        "",
        f"{'scorer':<44}{'pairs/s':>9}{'seconds':>9}{'useful GFLOP/s':>16}{'% of matmul':>13}{'executed GFLOP/s':>18}",
    ]
    for key in ("a", "b", "c"):
        s = r["scorers"][key]
        lines.append(
            f"{NAMES[key]:<44}{s['pairs_per_s']:>9.2f}{s['seconds']:>9.1f}{s['useful_flops_per_s'] / 1e9:>16.1f}"
            f"{s['useful_flops_per_s'] / peak:>13.0%}{s['executed_flops_per_s'] / 1e9:>18.1f}"
        )
    lines += [
        "",
        f"speed-up a/b = {r['ratio_a_b']:.2f}x (goal >= 2), a/c = {r['ratio_a_c']:.2f}x (goal >= 1.5)",
        f"max |score a - score c| = {r['max_abs_diff_a_c']:.2e} (goal <= 1e-4); "
        f"max |b - c| = {r['max_abs_diff_b_c']:.2e}",
    ]
    return "\n".join(lines)


def main(
    dataset: str = "cacm",
    model: str | None = None,
    queries: int | None = 3,
    depth: int = 100,
    batch_size: int = 32,
    threads: int | None = None,
    rounds: int = 1,
    output: str | None = None,
) -> int:
    """CLI entry: run, print the table, optionally write the figures as JSON."""
    result = bench_rerank(
        dataset, model, queries=queries, depth=depth, batch_size=batch_size, threads=threads, rounds=rounds
    )
    print(format_report(result))
    if output:
        from pipeline.runs import git_commit, package_versions, write_json

        figures = {k: v for k, v in result.items() if k != "scores"}
        write_json({**figures, "versions": package_versions(), "git_commit": git_commit()}, output)
        print(f"figures written to {output}")
    return 0
