"""``pipeline bench train``: training throughput with length-grouped dynamic padding vs fixed 512.

Both variants train the same reranker (same initial weights, same seed) on the same examples —
real queries of a qrels dataset with a positive from the qrels and a BM25 negative, drawn by
:mod:`pipeline.training_data` — for the same number of optimizer steps, through the same
:func:`pipeline.training.accumulate_gradients`:

* ``dynamic`` (what ``pipeline train`` does): the examples grouped by length into steps
  (:func:`pipeline.training_data.length_grouped_batches`, one pool), each step's micro-batches
  padded to their longest input;
* ``fixed-512`` (the seed): micro-batches in stream order, every input padded to 512 tokens.

Each variant runs in a fresh Python process, so its peak resident memory (``ru_maxrss``; on CUDA
``torch.cuda.max_memory_allocated``) is its own. The bench reports pairs/s (query–passage pairs
through forward and backward), the ratio, peak memory, and the share of padding tokens. One
micro-batch per variant runs first, untimed and without an update (allocator and kernel warm-up). The first
micro-batch's loss is also computed in eval mode (no dropout) both ways: padding must not
change it.

Example:
    >>> result = bench_train("cranfield", steps=4)  # doctest: +SKIP
    >>> print(format_report(result))  # doctest: +SKIP
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from pipeline.errors import PipelineError

__all__ = ["bench_train", "format_report", "main"]

FIXED_LENGTH = 512
VARIANTS = ("dynamic", "fixed-512")


def default_model(dataset: str, size: str) -> Path:
    """``models/t5-<size>-<corpus>-seed0`` under the pipeline home, made by init-model if absent."""
    from pipeline import data
    from pipeline.modelinit import init_model
    from pipeline.paths import home

    corpus = data.corpus_id(dataset)
    return init_model(corpus, home() / "models" / f"t5-{size}-{corpus.replace('/', '-')}-seed0", size=size)


def _examples(dataset: str, n: int, seed: int) -> dict:
    import itertools

    from pipeline import data
    from pipeline.training_data import QrelsSource

    source = QrelsSource(dataset, negatives=1, negatives_depth=100)
    examples = list(itertools.islice(source.stream(seed), n))
    queries = data.queries(dataset)
    docs = data.docs_text(dataset).get_many({d for e in examples for d in (e.positive, *e.negatives)})
    return {
        "examples": [[e.qid, e.positive, list(e.negatives)] for e in examples],
        "queries": {e.qid: queries[e.qid] for e in examples},
        "docs": docs,
    }


def _pad_fixed(reranker, width: int) -> None:
    """Make ``reranker`` pad every batch to ``width`` tokens (the seed's fixed-length inputs).

    Wraps the reranker's batch padding method (private to :mod:`pipeline.rerankers`, which has
    no public switch for this baseline), keeping its token ids and adding pad columns.
    """
    import torch.nn.functional as F

    name = "_padded"
    dynamic = getattr(reranker, name)

    def pad(seqs):
        ids, mask = dynamic(seqs)
        extra = width - ids.shape[1]
        if extra > 0:
            ids = F.pad(ids, (0, extra), value=reranker.tokenizer.pad_token_id)
            mask = F.pad(mask, (0, extra), value=0)
        return ids, mask

    object.__setattr__(reranker, name, pad)


def _saved_activation_bytes(reranker, group, queries, docs) -> int:
    """Bytes of the tensors autograd saves for backward in one micro-batch's forward pass.

    This is the activation memory training holds at its peak, measured exactly and apart from
    the process's other memory (distinct storages counted once; the graph is then dropped).
    """
    import torch

    storages: dict[int, int] = {}

    def pack(t):
        storage = t.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
        return t

    reranker.train()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = reranker.loss(
            [queries[e.qid] for e in group],
            [docs[e.positive] for e in group],
            [[docs[d] for d in e.negatives] for e in group],
        )
    del loss
    return sum(storages.values())


def _worker(spec_path: str) -> None:
    """One variant in this process; prints its figures as one JSON line."""
    import resource
    import time

    import torch

    from pipeline.rerankers import MODEL_TYPES, read_settings
    from pipeline.training import accumulate_gradients, seed_everything
    from pipeline.training_data import Example

    spec = json.loads(Path(spec_path).read_text(encoding="utf-8"))
    if spec["threads"]:
        torch.set_num_threads(spec["threads"])
    payload = spec["data"]
    examples = [Example(q, p, tuple(n)) for q, p, n in payload["examples"]]
    queries, docs = payload["queries"], payload["docs"]
    model = spec["model"]
    convention = None if read_settings(model) is not None else "seed"
    reranker = MODEL_TYPES[spec["model_type"]].from_pretrained(model, convention=convention)
    fixed = spec["variant"] == "fixed-512"
    if fixed:
        _pad_fixed(reranker, FIXED_LENGTH)
    seed_everything(0)
    optimizer = torch.optim.AdamW(reranker.parameters(), lr=1e-4)
    cuda = reranker.device.type == "cuda"
    batch, micro = spec["batch_size"], spec["grad_acc_size"]
    from pipeline.training import example_length
    from pipeline.training_data import length_grouped_batches

    if fixed:  # the seed: steps in stream order
        steps = [examples[i : i + batch] for i in range(0, len(examples), batch)]
    else:  # pipeline train: steps of similar lengths (one pool: all the bench's examples)
        n_steps = len(examples) // batch

        def lengths(pool):
            return [example_length(e, queries, docs) for e in pool]

        steps = list(itertools.islice(length_grouped_batches(iter(examples), batch, n_steps, lengths, 0), n_steps))

    # Padding share of the inputs each variant feeds the model (the reranker's own token ids).
    from pipeline.training_data import micro_batches

    real = padded = 0
    activation_bytes: list[int] = []
    rss_loaded = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for step in steps:
        key = (lambda e: 0) if fixed else (lambda e: example_length(e, queries, docs))
        for group in micro_batches(step, micro, key):
            pairs = [(queries[e.qid], docs[d]) for e in group for d in (e.positive, *e.negatives)]
            # Training inputs are the first chunk of each pair (the passage truncated to fit).
            lens = [len(reranker.build_inputs(q, t)[0]) for q, t in pairs]
            real += sum(lens)
            padded += len(lens) * (FIXED_LENGTH if fixed else max(lens))
            activation_bytes.append(_saved_activation_bytes(reranker, group, queries, docs))

    # Padding must not change the loss (eval mode: no dropout).
    reranker.eval()
    first = examples[:micro]  # the same examples in both variants
    with torch.no_grad():
        check_loss = float(
            reranker.loss(
                [queries[e.qid] for e in first],
                [docs[e.positive] for e in first],
                [[docs[d] for d in e.negatives] for e in first],
            )
        )
    reranker.train()

    def one_step(step):
        loss = accumulate_gradients(reranker, step, queries, docs, micro, group_by_length=not fixed)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss

    # Warm-up (allocator, kernels), untimed: one micro-batch forward and backward, no update.
    accumulate_gradients(reranker, steps[0][:micro], queries, docs, micro, group_by_length=not fixed)
    optimizer.zero_grad(set_to_none=True)
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    losses = [one_step(step) for step in steps]
    if cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    pairs = sum(1 + len(e.negatives) for step in steps for e in step)
    result = {
        "variant": spec["variant"],
        "device": str(reranker.device),
        "threads": torch.get_num_threads(),
        "pairs": pairs,
        "seconds": seconds,
        "pairs_per_s": pairs / seconds,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "rss_before_timed_steps_mb": rss_before / 1024,
        "rss_loaded_mb": rss_loaded / 1024,
        "max_activation_mb": max(activation_bytes) / 2**20,
        "mean_activation_mb": sum(activation_bytes) / len(activation_bytes) / 2**20,
        "cuda_peak_mb": torch.cuda.max_memory_allocated() / 2**20 if cuda else None,
        "padding_share": 1 - real / padded,
        "mean_loss": sum(losses) / len(losses),
        "check_loss": check_loss,
    }
    print(json.dumps(result))


def bench_train(
    dataset: str = "cranfield",
    model: str | os.PathLike | None = None,
    size: str = "tiny",
    model_type: str = "t5ranker",
    steps: int = 20,
    batch_size: int = 8,
    grad_acc_size: int = 8,
    threads: int | None = None,
    seed: int = 0,
) -> dict:
    """Time training steps with dynamic padding and with fixed-512 padding; return the figures.

    Args:
        dataset: a registered dataset id with qrels (default ``cranfield``: the real collection
            registered with ``pipeline datasets add``).
        model: a T5 folder; default the ``size`` init-model of the dataset's corpus (made if absent).
        size: ``tiny`` or ``small`` (only used without ``model``).
        model_type: ``t5ranker`` (pairs: positive + negative) or ``t5-reranking-loss``.
        steps: timed optimizer steps per variant (plus one untimed warm-up step).
        batch_size, grad_acc_size: examples per optimizer step and per micro-batch.
        threads: torch CPU threads in each worker (default: torch's choice).
        seed: seed of the example stream.

    Example:
        >>> bench_train("cranfield", steps=2)["ratio"]  # doctest: +SKIP
        3.1
    """
    from pipeline import data, rerankers

    if steps < 1 or batch_size < 1 or grad_acc_size < 1 or batch_size % grad_acc_size:
        raise PipelineError("bench train: steps, batch_size, grad_acc_size must be positive, batch_size a multiple")
    model_type = rerankers.canonical_model_type(model_type)
    if not data.load(dataset).has_qrels():
        raise PipelineError(f"bench train: dataset {dataset!r} has no qrels to draw positives from")
    model = Path(model) if model is not None else default_model(dataset, size)
    payload = _examples(dataset, steps * batch_size, seed)
    results = {}
    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        for variant in VARIANTS:
            spec = {
                "variant": variant,
                "model": str(model),
                "model_type": model_type,
                "batch_size": batch_size,
                "grad_acc_size": grad_acc_size,
                "threads": threads,
                "data": payload,
            }
            path = Path(tmp) / f"{variant}.json"
            path.write_text(json.dumps(spec), encoding="utf-8")
            proc = subprocess.run(
                [sys.executable, "-m", "pipeline.bench.train", "--worker", str(path)],
                capture_output=True,
                text=True,
                env={**os.environ, "TOKENIZERS_PARALLELISM": "false"},
            )
            if proc.returncode != 0:
                raise PipelineError(
                    f"bench train: the {variant} worker failed: {proc.stderr.strip().splitlines()[-1:]}"
                )
            results[variant] = json.loads(proc.stdout.strip().splitlines()[-1])
    dynamic, fixed = results["dynamic"], results["fixed-512"]
    return {
        "dataset": dataset,
        "model": str(model),
        "model_type": model_type,
        "steps": steps,
        "batch_size": batch_size,
        "grad_acc_size": grad_acc_size,
        "variants": results,
        "ratio": dynamic["pairs_per_s"] / fixed["pairs_per_s"],
        "loss_difference": abs(dynamic["check_loss"] - fixed["check_loss"]),
    }


def format_report(r: dict) -> str:
    """The figures as a short table."""
    lines = [
        f"dataset {r['dataset']}, model {r['model']} ({r['model_type']}), {r['steps']} timed steps of "
        f"{r['batch_size']} examples in micro-batches of {r['grad_acc_size']}",
        f"{'variant':<10} {'pairs/s':>9} {'act. MB max':>12} {'act. MB mean':>13} {'peak RSS MB':>12} "
        f"{'CUDA peak MB':>13} {'padding':>8}",
    ]
    for name, v in r["variants"].items():
        cuda = f"{v['cuda_peak_mb']:.0f}" if v["cuda_peak_mb"] is not None else "-"
        lines.append(
            f"{name:<10} {v['pairs_per_s']:>9.1f} {v['max_activation_mb']:>12.1f} {v['mean_activation_mb']:>13.1f} "
            f"{v['peak_rss_mb']:>12.0f} "
            f"{cuda:>13} {v['padding_share']:>8.1%}"
        )
    v = r["variants"]["dynamic"]
    lines.append(
        f"dynamic / fixed-512: {r['ratio']:.2f}x pairs/s on {v['device']} ({v['threads']} threads); "
        f"eval-mode loss difference {r['loss_difference']:.2e}"
    )
    lines.append(
        "act.: tensors saved for backward per micro-batch (largest, mean); peak RSS: whole worker process "
        f"(after loading: dynamic {v['rss_loaded_mb']:.0f} MB, "
        f"fixed-512 {r['variants']['fixed-512']['rss_loaded_mb']:.0f} MB)"
    )
    return "\n".join(lines)


def main(**kwargs) -> int:
    """Run the bench and print the report (the ``pipeline bench train`` handler)."""
    output = kwargs.pop("output", None)
    result = bench_train(**kwargs)
    print(format_report(result))
    if output:
        from pipeline.runs import write_json

        write_json(result, output)
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--worker":
        _worker(sys.argv[2])
    else:
        raise SystemExit("usage: python -m pipeline.bench.train --worker SPEC.json (use `pipeline bench train`)")
