"""torch.distributed in one place: torchrun detection, sharding, gathering, one writer.

Launched by ``torchrun`` (which sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``
and ``MASTER_PORT``), the first collective call joins the process group: ``nccl`` when CUDA
is available (each rank on GPU ``LOCAL_RANK``), ``gloo`` otherwise. Without torchrun, or
with a world of one process, every function here is a cheap single-process no-op: ``rank()``
is 0, ``shard(items)`` is ``items``, ``all_gather(x)`` is ``[x]``.

Failures: torchrun ends the whole job as soon as one rank exits non-zero (it sends SIGTERM to
the others), so a rank that raises only has to say which rank it was — an exception hook
prints ``pipeline: error: rank R of W failed: …`` after the traceback — and outputs are only
ever written by rank 0 through :func:`on_main` and ``pipeline.runs.atomic_path`` (temp name,
then rename), so a killed job leaves no half-written file. The process group has a timeout
(``PIPELINE_DIST_TIMEOUT`` seconds, default 1800) so that a peer lost without torchrun noticing
(e.g. another machine gone) ends a collective with an error instead of a hang.

Example (``torchrun --nproc-per-node 2 script.py``):
    >>> from pipeline import distributed
    >>> mine = distributed.shard(list(range(10)))  # rank 0: [0, 2, 4, 6, 8], rank 1: [1, 3, 5, 7, 9]
    >>> everything = distributed.unshard(distributed.all_gather(mine))  # [0, 1, ..., 9] on every rank
    >>> distributed.on_main(print, "written once")  # rank 0 runs it; the others wait
    written once

torch is imported inside the functions, so importing this module costs nothing.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, TypeVar

from pipeline.errors import PipelineError

T = TypeVar("T")

# torch's own default for gloo; long enough for rank 0 to save a large checkpoint while the
# others wait at a barrier, short enough that a lost peer does not hang a job for a day.
DEFAULT_TIMEOUT_S = 1800.0

_state: dict[str, Any] = {"initialized": False, "failed": False}


# --- who am I ---------------------------------------------------------------------------
def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise PipelineError(f"environment variable {name}={value!r} is not an integer") from None


def launched_by_torchrun() -> bool:
    """True when torchrun (or another launcher) set ``RANK`` and ``WORLD_SIZE``."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def world_size() -> int:
    """Number of processes in the job (1 without torchrun).

    Example:
        >>> world_size()  # a plain `python` process
        1
    """
    return _env_int("WORLD_SIZE", 1) if launched_by_torchrun() else 1


def rank() -> int:
    """This process's global rank, 0 … world_size()-1 (0 without torchrun)."""
    return _env_int("RANK", 0) if launched_by_torchrun() else 0


def local_rank() -> int:
    """This process's rank on its machine (selects its GPU); 0 without torchrun."""
    return _env_int("LOCAL_RANK", 0) if launched_by_torchrun() else 0


def is_distributed() -> bool:
    """True when running as one of several processes (torchrun with a world size above 1)."""
    return world_size() > 1


def is_main() -> bool:
    """True on the one process that writes outputs and prints progress (global rank 0)."""
    return rank() == 0


def rank_prefix() -> str:
    """``"rank R of W: "`` in a distributed job, ``""`` otherwise: for one-line error messages.

    Example:
        >>> rank_prefix()
        ''
    """
    return f"rank {rank()} of {world_size()}: " if is_distributed() else ""


def backend() -> str:
    """The process-group backend: ``PIPELINE_DIST_BACKEND`` if set, else nccl with CUDA, gloo without."""
    chosen = os.environ.get("PIPELINE_DIST_BACKEND")
    if chosen:
        return chosen
    import torch

    return "nccl" if torch.cuda.is_available() else "gloo"


def device():
    """The torch device this rank computes on: ``cuda:LOCAL_RANK`` when CUDA is available, else CPU.

    Example:
        >>> str(device())  # on a CPU-only machine
        'cpu'
    """
    import torch

    if torch.cuda.is_available():
        return torch.device("cuda", local_rank() % max(torch.cuda.device_count(), 1))
    return torch.device("cpu")


# --- process group ---------------------------------------------------------------------
def init() -> bool:
    """Join the process group once (idempotent); return whether the job is distributed.

    Called by every collective below, so library code never has to; call it early yourself
    to pin this rank's GPU (``torch.cuda.set_device(LOCAL_RANK)``) before models are built,
    so that a bare ``"cuda"`` means this rank's GPU.
    """
    if not is_distributed():
        return False
    if _state["initialized"]:
        return True
    import torch
    import torch.distributed as dist

    timeout_s = float(os.environ.get("PIPELINE_DIST_TIMEOUT", DEFAULT_TIMEOUT_S))
    chosen = backend()
    kwargs: dict[str, Any] = {"backend": chosen, "timeout": datetime.timedelta(seconds=timeout_s)}
    if chosen == "nccl":
        dev = device()
        torch.cuda.set_device(dev)
        kwargs["device_id"] = dev  # binds the communicator to this GPU (no guessing in barrier())
    if not dist.is_initialized():
        dist.init_process_group(**kwargs)
    _state["initialized"] = True
    import atexit

    atexit.register(_shutdown)
    return True


def _shutdown() -> None:
    """Leave the process group at exit (torch warns otherwise); skipped after a failure."""
    if _state["failed"]:
        return
    import torch.distributed as dist

    if dist.is_initialized():
        with contextlib.suppress(Exception):
            dist.destroy_process_group()
    _state["initialized"] = False


def _install_excepthook() -> None:
    """After an uncaught exception's traceback, print one line naming the failing rank."""
    if _state.get("hook"):
        return
    _state["hook"] = True
    previous = sys.excepthook

    def hook(exc_type, exc, tb):
        _state["failed"] = True
        previous(exc_type, exc, tb)
        if issubclass(exc_type, PipelineError):
            message = str(exc) if str(exc).startswith(rank_prefix()) else f"{rank_prefix()}{exc}"
            print(f"pipeline: error: {message}", file=sys.stderr)
        elif exc_type is not KeyboardInterrupt:
            print(f"pipeline: error: {rank_prefix()}failed with {exc_type.__name__}: {exc}", file=sys.stderr)
        sys.stderr.flush()

    sys.excepthook = hook


def report_failure(exc: BaseException) -> str:
    """Mark this rank as failed and return the one-line message for ``exc`` (used by CLIs).

    Example:
        >>> report_failure(ValueError("bad"))
        'ValueError: bad'
    """
    _state["failed"] = True
    return f"{rank_prefix()}{type(exc).__name__}: {exc}"


def barrier() -> None:
    """Wait until every rank gets here (no-op without torchrun)."""
    if init():
        import torch.distributed as dist

        dist.barrier()


# --- sharding ---------------------------------------------------------------------------
def shard(items: Sequence[T]) -> list[T]:
    """This rank's share of ``items``: every ``world_size()``-th item starting at ``rank()``.

    Strided, not contiguous: over a list sorted by cost (e.g. batches sorted by length) every
    rank gets the same mix of long and short work. The shards are disjoint and together
    cover every item exactly once; :func:`unshard` puts gathered shards back in order.

    Example:
        >>> shard(["a", "b", "c"])  # single process: everything
        ['a', 'b', 'c']
    """
    return list(items[rank() :: world_size()]) if is_distributed() else list(items)


def shard_iter(items: Iterable[T]) -> Iterator[T]:
    """:func:`shard` for a stream: yields items ``rank()``, ``rank() + world_size()``, …

    Every rank reads the same stream (same seed, same order) and keeps its own items, so a
    window of ``B`` consecutive items — one global batch — is split across the ranks exactly
    as one process would have seen it.

    Example:
        >>> list(shard_iter(iter(range(3))))
        [0, 1, 2]
    """
    w, r = world_size(), rank()
    for i, item in enumerate(items):
        if i % w == r:
            yield item


def unshard(parts: Sequence[Sequence[T]]) -> list[T]:
    """Inverse of :func:`shard`: interleave per-rank shards (in rank order) into the original order.

    Example:
        >>> unshard([[0, 2, 4], [1, 3]])
        [0, 1, 2, 3, 4]
    """
    total = sum(len(p) for p in parts)
    w = len(parts)
    out: list[T] = []
    for i in range(total):
        part = parts[i % w]
        j = i // w
        if j >= len(part):
            raise PipelineError(f"unshard: shard sizes {[len(p) for p in parts]} are not a strided split")
        out.append(part[j])
    return out


# --- collectives on Python objects -------------------------------------------------------
def all_gather(obj: T) -> list[T]:
    """Every rank's ``obj``, in rank order, on every rank (pickled; fine for runs and metrics).

    Example:
        >>> all_gather({"q1": {"d1": 1.0}})
        [{'q1': {'d1': 1.0}}]
    """
    if not init():
        return [obj]
    import torch.distributed as dist

    out: list[Any] = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def gather(obj: T) -> list[T] | None:
    """Every rank's ``obj`` in rank order on rank 0; ``None`` on the other ranks."""
    if not init():
        return [obj]
    import torch.distributed as dist

    out: list[Any] | None = [None] * world_size() if is_main() else None
    dist.gather_object(obj, out, dst=0)
    return out


def broadcast(obj: T, src: int = 0) -> T:
    """Rank ``src``'s ``obj`` on every rank (the others' argument is ignored).

    Example:
        >>> broadcast("stop")
        'stop'
    """
    if not init():
        return obj
    import torch.distributed as dist

    box = [obj if rank() == src else None]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def merge_runs(parts: Iterable[dict[str, dict[str, float]]]) -> dict[str, dict[str, float]]:
    """Union of per-rank runs ``{qid: {docid: score}}``; a query in two parts is an error.

    Example:
        >>> merge_runs([{"q1": {"d": 1.0}}, {"q2": {"d": 2.0}}])
        {'q1': {'d': 1.0}, 'q2': {'d': 2.0}}
    """
    merged: dict[str, dict[str, float]] = {}
    for part in parts:
        for qid, hits in part.items():
            if qid in merged:
                raise PipelineError(f"merge_runs: query {qid!r} was scored by two ranks (shards overlap)")
            merged[qid] = hits
    return merged


def all_gather_run(run: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    """The union of every rank's run, on every rank (see :func:`merge_runs`)."""
    return merge_runs(all_gather(run)) if is_distributed() else run


# --- numeric all-reduce (metrics, decisions) ---------------------------------------------
def all_reduce(values: float | Sequence[float], op: str = "sum") -> float | list[float]:
    """Sum (``op="sum"``), maximum (``"max"``) or minimum (``"min"``) of numbers across ranks.

    Float64 on the wire; a list is reduced element-wise in one call. Use ``"sum"`` for
    metric numerators/denominators, ``"max"`` for "does any rank want to stop?".

    Example:
        >>> all_reduce([3.0, 4.0])
        [3.0, 4.0]
    """
    single = isinstance(values, (int, float))
    seq = [float(values)] if single else [float(v) for v in values]
    if init():
        import torch
        import torch.distributed as dist

        ops = {"sum": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX, "min": dist.ReduceOp.MIN}
        if op not in ops:
            raise PipelineError(f"all_reduce: unknown op {op!r} (sum, max, min)")
        dev = device() if backend() == "nccl" else torch.device("cpu")
        t = torch.tensor(seq, dtype=torch.float64, device=dev)
        dist.all_reduce(t, op=ops[op])
        seq = t.cpu().tolist()
    return seq[0] if single else seq


def all_mean(values: Sequence[float], counts: Sequence[float] | None = None) -> float:
    """The mean over every rank's ``values`` (e.g. per-query MRR), as if computed in one process.

    Example:
        >>> all_mean([0.5, 1.0])
        0.75
    """
    total, n = all_reduce([sum(values), float(len(values) if counts is None else sum(counts))])
    return total / n if n else 0.0


def any_rank(flag: bool) -> bool:
    """True on every rank if ``flag`` is true on at least one (e.g. "stop early?", "found a NaN?")."""
    return bool(all_reduce(1.0 if flag else 0.0, op="max"))


def agree(decision: T) -> T:
    """Rank 0's ``decision`` on every rank, so that all ranks take the same branch."""
    return broadcast(decision, src=0)


# --- one writer ----------------------------------------------------------------------------
def on_main(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run ``fn(*args, **kwargs)`` on rank 0 only; every rank returns its result (one writer).

    The other ranks wait until rank 0 is done. If ``fn`` raises on rank 0, every rank raises
    (the others a :class:`PipelineError` naming rank 0's error), so no rank carries on past a
    failed write. Write through ``pipeline.runs.atomic_path`` so an interrupted write leaves
    nothing under the final name.

    Example:
        >>> on_main(lambda: "path/written")
        'path/written'
    """
    if not is_distributed():
        return fn(*args, **kwargs)
    outcome: tuple[str, Any]
    if is_main():
        try:
            outcome = ("ok", fn(*args, **kwargs))
        except BaseException as exc:
            broadcast(("error", f"{type(exc).__name__}: {exc}"))
            raise
        broadcast(outcome)
        return outcome[1]
    status, value = broadcast(None)
    if status == "error":
        raise PipelineError(f"{rank_prefix()}stopping: rank 0 failed: {value}")
    return value


@contextlib.contextmanager
def main_first() -> Iterator[None]:
    """Run the body on rank 0 first, then on the other ranks (e.g. a cache one rank must build).

    For work that fills a shared cache on first use (an ir_datasets doc store, a Lucene
    index): rank 0 builds it while the others wait, then they find it ready. If rank 0 fails
    in the body it exits and torchrun ends the waiting ranks.

    Example:
        >>> with main_first():
        ...     pass  # e.g. data.docs_text(dataset_id)
    """
    if not is_main():
        barrier()
    yield
    if is_main():
        barrier()


# --- DistributedDataParallel ---------------------------------------------------------------
_method_wrapper_class: list[type] = []


def _method_wrapper(inner, method: str):
    """A module whose ``forward`` is ``inner.<method>`` (so DDP's gradient hooks see the call)."""
    if not hasattr(inner, method):
        raise PipelineError(f"wrap_ddp: {type(inner).__name__} has no method {method!r}")
    if not _method_wrapper_class:
        import torch

        class MethodAsForward(torch.nn.Module):
            def __init__(self, inner, method: str):
                super().__init__()
                self.inner = inner
                self.method = method

            def forward(self, *args, **kwargs):
                return getattr(self.inner, self.method)(*args, **kwargs)

        _method_wrapper_class.append(MethodAsForward)
    return _method_wrapper_class[0](inner, method)


def wrap_ddp(module, method: str | None = None, find_unused_parameters: bool = False):
    """Wrap ``module`` in ``DistributedDataParallel`` (the module itself without torchrun).

    DDP synchronises gradients only for computations that go through its ``forward``. A
    reranker trains through ``.loss(...)``, not ``forward``; pass ``method="loss"`` and call
    the wrapper as ``wrapped(queries, positives, negatives)``: its forward calls
    ``module.loss(...)``. Without torchrun the same call goes straight to ``module.loss``.
    DDP averages gradients over ranks: scale each rank's loss as if it were alone (see
    pipeline.training) and the averaged gradient is the one-process gradient of the global batch.

    Example:
        >>> import torch
        >>> step = wrap_ddp(torch.nn.Linear(2, 1))
        >>> step(torch.ones(1, 2)).shape
        torch.Size([1, 1])
    """
    target = module if method is None else _method_wrapper(module, method)
    if not init():
        return target
    from torch.nn.parallel import DistributedDataParallel

    dev = device()
    if dev.type == "cuda":
        module.to(dev)
        return DistributedDataParallel(
            target, device_ids=[dev.index], output_device=dev.index, find_unused_parameters=find_unused_parameters
        )
    return DistributedDataParallel(target, find_unused_parameters=find_unused_parameters)


def unwrap(module):
    """The model inside :func:`wrap_ddp`'s wrappers (what to save, validate or score with).

    Example:
        >>> import torch
        >>> lin = torch.nn.Linear(2, 1)
        >>> unwrap(wrap_ddp(lin)) is lin
        True
    """
    from torch.nn.parallel import DistributedDataParallel

    if isinstance(module, DistributedDataParallel):
        module = module.module
    if _method_wrapper_class and isinstance(module, _method_wrapper_class[0]):
        module = module.inner
    return module


# Under torchrun, an uncaught exception anywhere in the process names its rank, even one
# raised before the process group exists.
if is_distributed():
    _install_excepthook()
