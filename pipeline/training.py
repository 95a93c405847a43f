"""The training/validation loop of both rerankers: the seed's ``main``, resumable.

Each epoch is ``batches_per_epoch`` optimizer steps on examples from the training dataset
(:mod:`pipeline.training_data`), then a validation: the validation queries' BM25 top
``valid_depth`` is reranked and scored with MRR@100 (ranx). A better score saves ``best/``;
``patience`` epochs without one, or ``max_epoch``, end the run, and the best checkpoint is
loaded back. Epochs are numbered from 1; epoch 0 in the log is the untrained model.

The output folder::

    train_settings.json   what this run is (datasets, model type, base model, settings)
    best/                 the best epoch's reranker: an HF folder for `pipeline rerank` (+ training.json)
    last/                 resume state of the last completed epoch (see pipeline.trainstate)
    train_log.jsonl       one line per epoch: loss, valid MRR@100, pairs/s, seconds, learning rates
    train_curves.png      loss and validation curves

``last/`` is replaced atomically after every epoch; ``train_log.jsonl`` and the plot are
rewritten from it, so they always describe a state one can resume from.

Example:
    >>> from pipeline.trainconfig import TrainSettings
    >>> reranker, best_epoch = train(  # doctest: +SKIP
    ...     "cranfield/train", "cranfield/valid", "t5ranker", "models/t5-tiny", "models/monot5-cran",
    ...     TrainSettings(max_epoch=5, batches_per_epoch=50))
"""

from __future__ import annotations

import contextlib
import json
import math
import random
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pipeline.errors import PipelineError
from pipeline.runs import atomic_path, git_commit, package_versions, write_json
from pipeline.trainconfig import TrainSettings, check_settings

SETTINGS_FILE = "train_settings.json"
LOG_FILE = "train_log.jsonl"
PLOT_FILE = "train_curves.png"
METRIC = "mrr@100"
VALID_KEY = "valid_mrr@100"
# Log fields that measure time: they differ between otherwise identical runs.
TIMING_FIELDS = ("pairs_per_s", "train_seconds", "valid_seconds", "seconds")
# Everything train() may create in the output folder (and remove on --overwrite).
_OUTPUT_NAMES = ("best", "last", LOG_FILE, PLOT_FILE, SETTINGS_FILE)


# --- model types ----------------------------------------------------------------------
def _load_reranker(model_type: str, path: str, settings: TrainSettings):
    """The reranker class of ``model_type`` loaded from ``path``.

    A plain T5 checkpoint (no ``reranker.json``) gets the seed's prompt (``query:`` …), which
    every checkpoint trained here keeps; a reranker folder keeps its own settings. A base model
    that is not a T5 is a PipelineError from :mod:`pipeline.rerankers`.
    """
    from pipeline.rerankers import MODEL_TYPES, read_settings

    overrides = {}
    if settings.loss is not None:
        if model_type != "t5-reranking-loss":
            raise PipelineError("setting 'loss' applies to model type t5-reranking-loss only")
        overrides["loss"] = settings.loss
    convention = None if Path(path).is_dir() and read_settings(path) is not None else "seed"
    return MODEL_TYPES[model_type].from_pretrained(path, convention=convention, **overrides)


# --- seeding, optimizer, schedule -------------------------------------------------------
def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and every CUDA device)."""
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)


def build_optimizer(reranker, settings: TrainSettings):
    """Two parameter groups, as in the seed: [parameters outside ``.t5`` at ``lr``, T5 at ``t5_lr``]."""
    import torch

    named = [(n, p) for n, p in reranker.named_parameters() if p.requires_grad]
    groups = [
        {"params": [p for n, p in named if not n.startswith("t5.")], "lr": settings.lr},
        {"params": [p for n, p in named if n.startswith("t5.")], "lr": settings.t5_lr},
    ]
    if settings.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=settings.t5_lr, weight_decay=settings.weight_decay)
    from transformers.optimization import Adafactor

    # T5's fine-tuning set-up: external learning rate, no relative step, no parameter scaling.
    return Adafactor(
        groups,
        lr=settings.t5_lr,
        scale_parameter=False,
        relative_step=False,
        warmup_init=False,
        weight_decay=settings.weight_decay,
    )


def build_scheduler(optimizer, settings: TrainSettings):
    """Linear warm-up over ``warmup_steps``, then constant or linear decay to 0 at the last step."""
    from transformers import get_constant_schedule_with_warmup, get_linear_schedule_with_warmup

    if settings.schedule == "linear":
        total = settings.max_epoch * settings.batches_per_epoch
        return get_linear_schedule_with_warmup(optimizer, settings.warmup_steps, total)
    return get_constant_schedule_with_warmup(optimizer, settings.warmup_steps)


# --- validation -----------------------------------------------------------------------
def mrr_at_100(qrels: dict[str, dict[str, int]], run: dict[str, dict[str, float]]) -> float:
    """MRR@100 by ranx over the judged queries, computed exactly as ``pipeline evaluate`` does.

    Same query set (a judged query missing from the run scores 0) and same tie-breaking
    (doc id ascending), because it goes through :func:`pipeline.evaluation.compare_runs`.

    Example:
        >>> mrr_at_100({"q": {"b": 1}}, {"q": {"a": 0.5, "b": 0.5}})
        0.5
    """
    from pipeline.evaluation import compare_runs

    return float(compare_runs(qrels, {"valid": run}, [METRIC]).means["valid"][METRIC])


class Validation:
    """The validation set-up: judged queries, their candidates and texts; scores a reranker.

    Candidates are the BM25 top ``valid_depth`` (retrieved once, the index built if needed) or
    the top of ``valid_run``. Queries without a relevant judgment are left out (they cannot
    change which epoch is best); ``valid_queries > 0`` keeps the first N in dataset order.
    """

    def __init__(self, dataset_id: str, settings: TrainSettings, valid_run: str | Path | None = None):
        from pipeline import data

        if not data.load(dataset_id).has_qrels():
            raise PipelineError(f"validation dataset {dataset_id!r} has no qrels: MRR@100 needs relevance judgments")
        self.dataset_id = dataset_id
        self.depth = settings.valid_depth
        qrels = data.qrels(dataset_id)
        queries = data.queries(dataset_id)
        judged = [q for q in queries if any(rel > 0 for rel in qrels.get(q, {}).values())]
        if not judged:
            raise PipelineError(f"validation dataset {dataset_id!r} has no query with a relevant judgment")
        if settings.valid_queries:
            judged = judged[: settings.valid_queries]
        self.queries = {q: queries[q] for q in judged}
        self.qrels = {q: {d: rel for d, rel in qrels[q].items() if rel > 0} for q in judged}
        self.valid_run = valid_run

    def prepare(self) -> None:
        """Retrieve the candidates and read their texts (after all input checks passed)."""
        from pipeline import data, retrieval
        from pipeline.runs import read_run, top_k

        if self.valid_run is not None:
            run = top_k(read_run(self.valid_run), self.depth)
        else:
            retrieval.build_index(self.dataset_id)
            run = retrieval.bm25(self.dataset_id, k=self.depth)
        self.candidates = {q: run[q] for q in self.queries if q in run}
        ids = sorted({d for hits in self.candidates.values() for d in hits})
        self.docs = data.docs_text(self.dataset_id).get_many(ids)

    def score(self, reranker) -> float:
        """MRR@100 of ``reranker`` on the validation candidates."""
        from pipeline.rerankers import rerank

        run = rerank(reranker, self.candidates, self.queries, self.docs, depth=self.depth, progress=sys.stderr.isatty())
        return mrr_at_100(self.qrels, run)


# --- the output folder ----------------------------------------------------------------
def _identity(train_dataset, valid_dataset, model_type, base_model, settings, valid_run) -> dict[str, Any]:
    base = Path(base_model)
    return {
        "train_dataset": train_dataset,
        "valid_dataset": valid_dataset,
        "valid_run": str(Path(valid_run).resolve()) if valid_run else None,
        "model_type": model_type,
        "base_model": str(base.resolve()) if base.is_dir() else base_model,
        "settings": settings.to_dict(),
    }


def _differences(saved: dict, now: dict, prefix: str = "") -> list[str]:
    out = []
    for key in sorted(set(saved) | set(now)):
        a, b = saved.get(key), now.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _differences(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key}: {a!r} there, {b!r} now")
    return out


def _output_status(output: Path, identity: dict) -> tuple[str, dict | None]:
    """('empty'|'same'|'different'|'foreign', saved state extra); reads only, writes nothing."""
    from pipeline import trainstate

    if not output.exists() or not any(output.iterdir()):
        return "empty", None
    settings_path = output / SETTINGS_FILE
    if not settings_path.is_file():
        return "foreign", None
    try:
        saved = json.loads(settings_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return "foreign", None
    saved_identity = {k: saved.get(k) for k in identity}
    if saved_identity != identity:
        return "different", {"differences": _differences(saved_identity, identity)}
    last = output / "last"
    extra = trainstate.read_extra(last)
    if extra is None and last.with_name("last.old").is_dir():
        extra = trainstate.read_extra(last.with_name("last.old"))
    return "same", extra


def _clear(output: Path) -> None:
    for name in _OUTPUT_NAMES:
        for suffix in ("", ".tmp", ".old"):
            path = output / f"{name}{suffix}"
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()


def write_log(records: list[dict], path: Path) -> None:
    """``train_log.jsonl``: one JSON object per epoch, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in records), encoding="utf-8")


def read_log(path: str | Path) -> list[dict]:
    """The records of a ``train_log.jsonl``."""
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]


def write_plot(records: list[dict], path: Path, title: str = "") -> None:
    """PNG of the training loss and validation MRR@100 per epoch (epoch 0 = untrained)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    trained = [r for r in records if r["epoch"] > 0]
    fig, (ax_loss, ax_valid) = plt.subplots(2, 1, figsize=(6, 6), sharex=True)
    ax_loss.plot([r["epoch"] for r in trained], [r["train_loss"] for r in trained], "o-")
    ax_loss.set_ylabel("training loss")
    ax_loss.set_title(title)
    ax_valid.plot([r["epoch"] for r in records], [r[VALID_KEY] for r in records], "o-", color="tab:green")
    best = [r for r in records if r.get("best")]
    if best:
        ax_valid.plot([best[-1]["epoch"]], [best[-1][VALID_KEY]], "*", markersize=14, color="tab:red", label="best")
        ax_valid.legend()
    ax_valid.set_ylabel("validation MRR@100")
    ax_valid.set_xlabel("epoch (0 = untrained)")
    ax_valid.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


# --- one epoch ------------------------------------------------------------------------
class _Texts:
    """Query and passage texts of the training dataset, fetched per step."""

    def __init__(self, dataset_id: str):
        from pipeline import data

        self.queries = data.queries(dataset_id)
        self.docs = data.docs_text(dataset_id)
        self.dataset_id = dataset_id

    def fetch(self, examples) -> tuple[dict[str, str], dict[str, str]]:
        ids = {d for e in examples for d in (e.positive, *e.negatives)}
        docs = self.docs.get_many(ids)
        missing = sorted(ids - set(docs))
        if missing:
            raise PipelineError(
                f"training dataset {self.dataset_id!r}: {len(missing)} doc id(s) of its examples are not in "
                f"the corpus, e.g. {missing[:5]}"
            )
        qids = {e.qid for e in examples}
        unknown = sorted(qids - set(self.queries))
        if unknown:
            raise PipelineError(f"training dataset {self.dataset_id!r}: unknown query id(s) {unknown[:5]}")
        return {q: self.queries[q] for q in qids}, docs

    def lengths(self, examples) -> list[int]:
        """Each example's :func:`example_length`."""
        queries, docs = self.fetch(examples)
        return [example_length(e, queries, docs) for e in examples]


def example_length(example, queries: dict[str, str], docs: dict[str, str]) -> int:
    """Length of an example's longest input, in characters (a cheap proxy of tokens for grouping)."""
    return len(queries[example.qid]) + max(len(docs[d]) for d in (example.positive, *example.negatives))


@contextlib.contextmanager
def _dropout_seed(seed: str | None, device):
    """Seed dropout from ``seed`` for one micro-batch, leaving the global RNG state as it was.

    A micro-batch then gets the same dropout mask whichever process runs it, so training with
    N processes follows the one-process run (see pipeline.distributed). ``None``: no reseeding.
    """
    if seed is None:
        yield
        return
    import torch

    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(random.Random(seed).getrandbits(63))
        yield


def accumulate_gradients(
    reranker,
    examples,
    queries: dict[str, str],
    docs: dict[str, str],
    micro_size: int,
    group_by_length: bool = True,
    *,
    loss_fn=None,
    seed: str | None = None,
) -> float:
    """Forward and backward one optimizer step's ``examples`` in length-grouped micro-batches.

    Each micro-batch loss is a mean over its examples; weighted by its share of the step,
    the accumulated gradient (and the returned loss) is that of the whole step at once.
    Under bf16 autocast on CUDA. ``group_by_length=False`` keeps the examples' order (the
    benchmark's fixed-padding baseline). ``seed`` seeds each micro-batch's dropout from
    ``"<seed>:<micro-batch index>"``.

    Under torchrun, with ``loss_fn`` the DistributedDataParallel wrapper of ``reranker.loss``
    (:func:`pipeline.distributed.wrap_ddp`), every rank is given the same ``examples``, builds
    the same micro-batches and runs every N-th of them; DDP averages the gradients (hence the
    factor N in the weights), and the returned loss is the whole step's on every rank.

    Example:
        >>> loss = accumulate_gradients(reranker, examples, queries, docs, micro_size=8)  # doctest: +SKIP
    """
    from contextlib import nullcontext

    import torch

    from pipeline import distributed
    from pipeline.training_data import micro_batches

    cuda = reranker.device.type == "cuda"
    step_loss = 0.0
    key = (lambda e: example_length(e, queries, docs)) if group_by_length else (lambda e: 0)
    micros = list(enumerate(micro_batches(examples, micro_size, key)))
    sharded = loss_fn is not None and distributed.is_distributed()
    mine = distributed.shard(micros) if sharded else micros
    world = distributed.world_size() if sharded else 1
    loss_fn = loss_fn or reranker.loss
    for n, (i, micro) in enumerate(mine):
        # DDP all-reduces the gradients once per step: after this rank's last micro-batch.
        last = n == len(mine) - 1
        sync = nullcontext() if last or not hasattr(loss_fn, "no_sync") else loss_fn.no_sync()
        with sync, _dropout_seed(None if seed is None else f"{seed}:{i}", reranker.device):
            with torch.autocast("cuda", dtype=torch.bfloat16) if cuda else nullcontext():
                loss = loss_fn(
                    [queries[e.qid] for e in micro],
                    [docs[e.positive] for e in micro],
                    [[docs[d] for d in e.negatives] for e in micro],
                )
            weight = len(micro) / len(examples)
            (loss * (weight * world)).backward()  # DDP divides by world when it averages
        step_loss += loss.item() * weight
    if sharded:
        step_loss = distributed.all_reduce(step_loss)  # the whole step's loss, the same on every rank
    return step_loss


def train_epoch(
    reranker, optimizer, scheduler, batches, texts: _Texts, settings: TrainSettings, epoch: int, loss_fn=None
) -> dict:
    """``batches_per_epoch`` optimizer steps; returns the epoch's mean loss, pairs, pairs/s, seconds.

    ``loss_fn``: the DistributedDataParallel wrapper of ``reranker.loss`` under torchrun (every
    rank reads the same global step batches and runs its share of the micro-batches).
    """
    import torch
    from tqdm import tqdm

    from pipeline import distributed

    params = [p for p in reranker.parameters() if p.requires_grad]
    reranker.train()
    losses, pairs = [], 0
    start = time.perf_counter()
    quiet = None if distributed.is_main() else True  # one progress bar: rank 0's
    bar = tqdm(range(settings.batches_per_epoch), desc=f"epoch {epoch}", unit="step", disable=quiet, leave=False)
    for step in bar:
        examples = next(batches)
        queries, docs = texts.fetch(examples)
        seed = f"{settings.seed}:{epoch}:{step}"  # dropout seeds: independent of which rank runs what
        step_loss = accumulate_gradients(
            reranker, examples, queries, docs, settings.grad_acc_size, loss_fn=loss_fn, seed=seed
        )
        if not math.isfinite(step_loss):
            raise PipelineError(f"epoch {epoch}: the training loss is {step_loss}; lower t5_lr or check the data")
        if settings.max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(params, settings.max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(step_loss)
        pairs += sum(1 + len(e.negatives) for e in examples)
        bar.set_postfix(loss=f"{step_loss:.4f}", pairs_s=f"{pairs / (time.perf_counter() - start):.1f}")
    bar.close()
    seconds = time.perf_counter() - start
    return {
        "train_loss": sum(losses) / len(losses),
        "pairs": pairs,
        "pairs_per_s": pairs / seconds,
        "train_seconds": seconds,
    }


# --- train ----------------------------------------------------------------------------
def train(
    train_dataset: str,
    valid_dataset: str,
    model_type: str,
    base_model: str,
    output: str | Path,
    settings: TrainSettings | None = None,
    resume: bool = False,
    overwrite: bool = False,
    *,
    valid_run: str | Path | None = None,
    on_epoch_end: Callable[[dict], None] | None = None,
):
    """Train a reranker with per-epoch validation and early stopping; return ``(reranker, best_epoch)``.

    Args:
        train_dataset: dataset id with docpairs or qrels (e.g. ``cranfield/train``).
        valid_dataset: dataset id with qrels (e.g. ``cranfield/valid``).
        model_type: ``t5ranker`` or ``t5-reranking-loss`` (seed aliases ``vanilla_t5``,
            ``T5_with_reranking_loss``).
        base_model: a T5 checkpoint folder or hub name.
        output: the run's folder (see the module docstring).
        settings: hyperparameters (:class:`~pipeline.trainconfig.TrainSettings`; defaults if None).
        resume: continue the run in ``output`` from its last completed epoch.
        overwrite: discard what ``output`` holds and start over.
        valid_run: a TREC run of the validation queries to rerank instead of BM25.
        on_epoch_end: called with each epoch's log record after its state is saved.

    Returns:
        The reranker of the best epoch (loaded from ``output/best``) and that epoch (from 1).

    Every input is checked before anything is written: a training dataset with neither docpairs
    nor qrels, a validation dataset without qrels, inconsistent settings, a base model that is
    not a T5, or an output folder holding another run are :class:`PipelineError`. A finished
    run in ``output`` is not trained again (its best model is returned) unless ``overwrite``.

    Example:
        >>> reranker, best = train("cranfield/train", "cranfield/valid", "t5ranker",  # doctest: +SKIP
        ...                        "models/t5-tiny", "models/cran-t5ranker")
    """
    from pipeline import data, distributed, rerankers
    from pipeline.training_data import example_source, length_grouped_batches

    # 1. Check every input; nothing is written before this block ends.
    distributed.init()  # under torchrun: join the group, pin this rank's GPU
    settings = settings or TrainSettings()
    check_settings(settings)
    world = distributed.world_size()
    if settings.micro_batches % world:
        raise PipelineError(
            f"{settings.micro_batches} micro-batches per step (batch_size {settings.batch_size} / grad_acc_size "
            f"{settings.grad_acc_size}) cannot be shared by {world} processes: make batch_size / grad_acc_size "
            f"a multiple of {world}"
        )
    model_type = rerankers.canonical_model_type(model_type)
    output = Path(output)
    train_ds = data.load(train_dataset)
    if train_ds.has_docpairs():
        if settings.negatives != 1:
            raise PipelineError(f"dataset {train_dataset!r} has docpairs (one negative each): 'negatives' must be 1")
    elif not train_ds.has_qrels():
        raise PipelineError(
            f"training dataset {train_dataset!r} has neither docpairs nor qrels: nothing to learn from "
            "(register it with --docpairs or --qrels)"
        )
    validation = Validation(valid_dataset, settings, valid_run)
    identity = _identity(train_dataset, valid_dataset, model_type, base_model, settings, valid_run)
    status, extra = _output_status(output, identity)
    if status == "foreign":
        raise PipelineError(
            f"output folder {output} is not empty and holds no training run ({SETTINGS_FILE} missing); "
            "choose a new or empty folder (--overwrite only replaces a training run)"
        )
    if status == "different" and not overwrite:
        raise PipelineError(
            f"output folder {output} holds a different training run ({'; '.join(extra['differences'])}); "
            "choose another --output, or pass --overwrite to replace it"
        )
    if status == "same" and not overwrite:
        if extra and extra.get("finished"):
            print(
                f"{output}: this run is already finished (best epoch {extra['best_epoch']}, "
                f"{VALID_KEY} {extra['best_score']:.4f}); nothing to do (--overwrite trains again)",
                file=sys.stderr,
            )
            return _load_reranker(model_type, str(output / "best"), settings), extra["best_epoch"]
        if not resume:
            done = extra["epoch"] if extra else 0
            raise PipelineError(
                f"output folder {output} holds an unfinished run of these settings ({done} epoch(s) completed); "
                "pass --resume to continue it or --overwrite to start over"
            )
    resuming = status == "same" and resume and not overwrite and extra is not None
    if resuming:  # finish a swap of last/ that an interruption cut short (our own files only)
        from pipeline import trainstate

        distributed.barrier()  # every rank has read the folder's status
        distributed.on_main(trainstate.recover, output / "last")
    start_from = str(output / "last" / "model") if resuming else base_model
    reranker = _load_reranker(model_type, start_from, settings)
    # Rank 0 first: it may build the Lucene index and the doc store the others then reuse. Every
    # rank has read the output folder's status before rank 0 leaves this block and writes.
    with distributed.main_first():
        source = example_source(train_dataset, settings.negatives, settings.negatives_depth, settings.shuffle_buffer)
        validation.prepare()
        texts = _Texts(train_dataset)

    # 2. Set up the output folder.
    from pipeline import trainstate

    def set_up_output():
        if overwrite:
            _clear(output)
        output.mkdir(parents=True, exist_ok=True)
        trainstate.recover(output / "last")
        trainstate.recover(output / "best")
        write_json({**identity, "versions": package_versions(), "git_commit": git_commit()}, output / SETTINGS_FILE)

    distributed.on_main(set_up_output)  # one writer; the other ranks wait
    reranker.to(distributed.device())  # cuda:LOCAL_RANK under torchrun
    seed_everything(settings.seed)
    optimizer = build_optimizer(reranker, settings)
    scheduler = build_scheduler(optimizer, settings)
    if resuming:
        state = trainstate.load_state(output / "last", optimizer, scheduler)
        if distributed.is_main():
            print(f"{output}: resuming after epoch {state['epoch']}", file=sys.stderr)
    else:
        start = time.perf_counter()
        untrained = validation.score(reranker)
        record = {"epoch": 0, "train_loss": None, VALID_KEY: untrained, "best": False}
        record.update(pairs=0, pairs_per_s=None, train_seconds=0.0, valid_seconds=time.perf_counter() - start)
        record["seconds"] = record["valid_seconds"]
        record.update(_learning_rates(optimizer))
        state = {"epoch": 0, "position": 0, "log": [record], "best_epoch": None, "best_score": None}
        state["finished"] = False
    step_batches = length_grouped_batches(
        source.stream(settings.seed),
        settings.batch_size,
        settings.group_steps,
        texts.lengths,
        settings.seed,
        start_step=state["position"] // settings.batch_size,
    )  # every rank: the same global step batches
    distributed.on_main(write_log, state["log"], output / LOG_FILE)
    loss_fn = distributed.wrap_ddp(reranker, method="loss")  # plain reranker.loss without torchrun

    # 3. The epochs.
    title = f"{model_type} on {train_dataset}, validated on {valid_dataset}"
    while not state["finished"]:
        epoch = state["epoch"] + 1
        started = time.perf_counter()
        record = {
            "epoch": epoch,
            **train_epoch(reranker, optimizer, scheduler, step_batches, texts, settings, epoch, loss_fn),
        }
        valid_start = time.perf_counter()
        score = validation.score(reranker)
        record[VALID_KEY] = score
        record["valid_seconds"] = time.perf_counter() - valid_start
        record["seconds"] = time.perf_counter() - started
        record.update(_learning_rates(optimizer))
        improved = state["best_score"] is None or score > state["best_score"]
        record["best"] = improved
        if improved:
            state["best_epoch"], state["best_score"] = epoch, score
        state["epoch"] = epoch
        state["position"] += settings.batches_per_epoch * settings.batch_size
        state["log"].append(record)
        stale = epoch - state["best_epoch"]
        state["finished"] = stale >= settings.patience or epoch >= settings.max_epoch
        state["stop_reason"] = None
        if stale >= settings.patience:
            state["stop_reason"] = f"no improvement for {stale} epoch(s) (patience {settings.patience})"
        elif epoch >= settings.max_epoch:
            state["stop_reason"] = f"max_epoch {settings.max_epoch} reached"
        # Every rank computed the same score (sharded validation, gathered); rank 0's decision rules.
        state["finished"] = distributed.agree(state["finished"])

        def save_epoch(improved=improved, epoch=epoch, score=score, record=record):
            if improved:
                trainstate.save_model(reranker, output / "best", {"epoch": epoch, VALID_KEY: score, **identity})
            trainstate.save_state(output / "last", reranker, optimizer, scheduler, state)
            write_log(state["log"], output / LOG_FILE)
            write_plot(state["log"], output / PLOT_FILE, title)
            print(
                f"epoch {epoch}: loss {record['train_loss']:.4f}, {VALID_KEY} {score:.4f}"
                f"{' (best)' if improved else ''}, {record['pairs_per_s']:.1f} pairs/s, {record['seconds']:.1f} s",
                file=sys.stderr,
            )

        distributed.on_main(save_epoch)  # one writer; the others wait until the epoch is saved
        if on_epoch_end is not None:
            on_epoch_end(record)
    if state.get("stop_reason") and distributed.is_main():
        print(f"stopped: {state['stop_reason']}; best epoch {state['best_epoch']}", file=sys.stderr)

    # 4. The best checkpoint.
    best = _load_reranker(model_type, str(output / "best"), settings)
    return best, state["best_epoch"]


def _learning_rates(optimizer) -> dict[str, float]:
    groups = optimizer.param_groups
    return {"lr": groups[0]["lr"], "t5_lr": groups[1]["lr"]}
