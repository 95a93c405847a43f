"""pipeline.distributed under a real ``torchrun`` with 2 CPU processes (gloo).

Small scripts launched with ``python -m torch.distributed.run --nproc-per-node 2 --standalone``
check the module: shards are disjoint and cover everything, gathers return every rank's part,
rank 0 is the one writer, DDP gives the one-process gradient, and a failing or killed rank ends
the job with a clear error and no output file. Then the real commands: ``pipeline rerank`` with
2 processes writes the single-process run file byte for byte; ``pipeline train`` with 2 processes
logs the single-process validation MRR@100 per epoch (tolerances below); a run interrupted or
killed (a rank, or the writer mid-checkpoint) resumes to the uninterrupted result. The
single-process (no torchrun) behaviour of the module is tested in-process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pipeline import distributed

REPO = Path(__file__).resolve().parents[1]


def torchrun(script: str, tmp_path: Path, *args: str, nproc: int = 2) -> subprocess.CompletedProcess:
    """Run ``script`` (Python source) under torchrun with ``nproc`` CPU processes."""
    path = tmp_path / "script.py"
    path.write_text(textwrap.dedent(script), encoding="utf-8")
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS="1", PIPELINE_DIST_BACKEND="gloo", CUDA_VISIBLE_DEVICES="")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(nproc), "--standalone"]
    return subprocess.run([*cmd, str(path), *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


# --- without torchrun: single-process no-ops -----------------------------------------------
def test_single_process_is_a_no_op(monkeypatch, tmp_path):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    assert (distributed.rank(), distributed.world_size(), distributed.is_distributed()) == (0, 1, False)
    assert distributed.is_main() and distributed.rank_prefix() == ""
    assert distributed.init() is False
    items = list(range(7))
    assert distributed.shard(items) == items and list(distributed.shard_iter(iter(items))) == items
    assert distributed.all_gather({"a": 1}) == [{"a": 1}] and distributed.gather(3) == [3]
    assert distributed.broadcast("x") == "x" and distributed.agree(True) is True
    assert distributed.all_reduce(2.5) == 2.5 and distributed.all_reduce([1.0, 2.0], op="max") == [1.0, 2.0]
    assert distributed.all_mean([0.25, 0.75]) == 0.5 and distributed.any_rank(False) is False
    distributed.barrier()
    target = tmp_path / "out.txt"
    assert distributed.on_main(target.write_text, "x") == 1 and target.read_text() == "x"


def test_torchrun_env_without_peers_is_single_process(monkeypatch):
    # `torchrun --nproc-per-node 1` sets RANK=0 WORLD_SIZE=1: no process group is needed.
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "1")
    monkeypatch.setenv("LOCAL_RANK", "0")
    assert distributed.launched_by_torchrun() and not distributed.is_distributed()
    assert distributed.init() is False


def test_unshard_inverts_shard_and_merge_runs_rejects_overlap(monkeypatch):
    items = list(range(11))
    for w in (1, 2, 3, 4):
        monkeypatch.setenv("WORLD_SIZE", str(w))
        parts = []
        for r in range(w):
            monkeypatch.setenv("RANK", str(r))
            parts.append(distributed.shard(items))
            assert list(distributed.shard_iter(iter(items))) == parts[-1]
        assert sorted(x for p in parts for x in p) == items  # disjoint and complete
        assert distributed.unshard(parts) == items
    with pytest.raises(distributed.PipelineError, match="query 'q1' was scored by two ranks"):
        distributed.merge_runs([{"q1": {"d": 1.0}}, {"q1": {"d": 1.0}}])


# --- 2 processes ------------------------------------------------------------------------------
COLLECTIVES = """
    import json, sys
    from pathlib import Path
    from pipeline import distributed
    from pipeline.runs import write_run

    out = Path(sys.argv[1])
    items = [f"q{i}" for i in range(11)]
    mine = distributed.shard(items)
    stream = list(distributed.shard_iter(iter(items)))
    gathered = distributed.all_gather(mine)
    run = distributed.all_gather_run({q: {"d": float(i)} for i, q in enumerate(items) if q in mine})
    at_main = distributed.gather(distributed.rank())
    sums = distributed.all_reduce([1.0, float(distributed.rank())])
    mean = distributed.all_mean([float(distributed.rank())] * (distributed.rank() + 1))
    stop = distributed.any_rank(distributed.rank() == 1)
    agreed = distributed.agree(f"from rank {distributed.rank()}")
    path = distributed.on_main(write_run, run, out / "merged.trec", tag="t")
    with distributed.main_first():  # rank 0 creates the cache; rank 1 then finds it
        cache = out / "cache.txt"
        first = not cache.exists()
        if first:
            cache.write_text(f"built by rank {distributed.rank()}")
    distributed.barrier()
    report = dict(rank=distributed.rank(), world=distributed.world_size(), mine=mine, stream=stream,
                  unsharded=distributed.unshard(gathered), run_queries=sorted(run), at_main=at_main,
                  sums=sums, mean=mean, stop=stop, agreed=agreed, path=str(path), first=first)

    # DDP: each rank takes half of a global batch of 8; DDP averages the half-batch gradients,
    # which is the gradient of the full-batch mean.
    import torch

    class Model(torch.nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.lin = torch.nn.Linear(3, 1)

        def loss(self, x, y):
            return torch.nn.functional.mse_loss(self.lin(x).squeeze(-1), y)

    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(8, 3, generator=g), torch.randn(8, generator=g)
    model = Model()
    report["weights_before"] = torch.cat([p.detach().flatten() for p in model.parameters()]).tolist()
    step = distributed.wrap_ddp(model, method="loss")
    assert distributed.unwrap(step) is model
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(3):
        opt.zero_grad()
        idx = distributed.shard(list(range(8)))
        step(x[idx], y[idx]).backward()
        opt.step()
    report["weights"] = torch.cat([p.detach().flatten() for p in model.parameters()]).tolist()
    (out / f"rank{distributed.rank()}.json").write_text(json.dumps(report))
"""


@pytest.mark.distributed
@pytest.mark.slow
def test_two_ranks_shard_gather_reduce_one_writer_and_ddp(tmp_path):
    import torch

    proc = torchrun(COLLECTIVES, tmp_path, str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    reports = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    items = [f"q{i}" for i in range(11)]
    assert [r["world"] for r in reports] == [2, 2]
    assert reports[0]["mine"] == items[0::2] and reports[1]["mine"] == items[1::2]
    assert [r["stream"] for r in reports] == [r["mine"] for r in reports]
    for r in reports:
        assert r["unsharded"] == items  # gathered shards, back in the original order
        assert r["run_queries"] == sorted(items)
        assert r["sums"] == [2.0, 1.0]
        assert r["mean"] == pytest.approx(2 / 3)  # (0 + 1 + 1) / 3 values
        assert r["stop"] is True  # rank 1 wanted to stop: every rank stops
        assert r["agreed"] == "from rank 0"
        assert r["path"] == str(tmp_path / "merged.trec")  # rank 0's return value, everywhere
    assert reports[0]["at_main"] == [0, 1] and reports[1]["at_main"] is None
    assert [r["first"] for r in reports] == [True, False]
    assert (tmp_path / "cache.txt").read_text() == "built by rank 0"
    lines = (tmp_path / "merged.trec").read_text().splitlines()
    assert len(lines) == 11 and {line.split()[0] for line in lines} == set(items)
    assert not list(tmp_path.glob(".*.tmp"))

    # DDP: the same model trained in one process on the whole batch of 8.
    torch.manual_seed(0)
    lin = torch.nn.Linear(3, 1)
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(8, 3, generator=g), torch.randn(8, generator=g)
    opt = torch.optim.SGD(lin.parameters(), lr=0.1)
    for _ in range(3):
        opt.zero_grad()
        torch.nn.functional.mse_loss(lin(x).squeeze(-1), y).backward()
        opt.step()
    expected = torch.cat([p.detach().flatten() for p in lin.parameters()]).tolist()
    assert reports[0]["weights"] == reports[1]["weights"]  # gradients synchronised: identical replicas
    assert reports[0]["weights"] != pytest.approx(reports[0]["weights_before"], abs=1e-3)  # it trained
    # Mean of two half-batch means vs one full-batch mean: equal up to float32 summation order.
    assert reports[0]["weights"] == pytest.approx(expected, abs=1e-6)


FAILING = """
    import os, signal, sys
    from pathlib import Path
    from pipeline import distributed
    from pipeline.runs import write_run

    out, how = Path(sys.argv[1]), sys.argv[2]
    mine = {q: {"d": 1.0} for q in distributed.shard([f"q{i}" for i in range(6)])}
    if distributed.rank() == 1:
        if how == "exception":
            raise RuntimeError("boom in the scorer")
        if how == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
    run = distributed.all_gather_run(mine)  # rank 0 waits here for the dead peer

    def write_half_then_fail(path):
        from pipeline.runs import atomic_path
        with atomic_path(path) as tmp:
            tmp.write_text("q0 Q0 d 1 1.0 t\\n")  # half-written ...
            raise OSError("disk full")  # ... and failing

    if how == "writer":
        distributed.on_main(write_half_then_fail, out / "run.trec")
    else:
        distributed.on_main(write_run, run, out / "run.trec", tag="t")
    print(f"rank {distributed.rank()} carried on", flush=True)
"""


@pytest.mark.distributed
@pytest.mark.slow
@pytest.mark.parametrize("how", ["exception", "kill", "writer"])
def test_a_failing_rank_ends_the_job_with_a_clear_error_and_no_output(tmp_path, how):
    out = tmp_path / "out"
    out.mkdir()
    proc = torchrun(FAILING, tmp_path, str(out), how)
    assert proc.returncode != 0
    assert list(out.iterdir()) == []  # no run file, no sidecar, no temp file
    assert "carried on" not in proc.stdout
    if how == "exception":
        assert "pipeline: error: rank 1 of 2: failed with RuntimeError: boom in the scorer" in proc.stderr
    elif how == "kill":
        # torchrun's summary names the killed rank as the root cause.
        root_cause = proc.stderr.split("Root Cause")[-1]
        assert "rank      : 1 (local_rank: 1)" in root_cause and "Signal 9 (SIGKILL)" in root_cause
    else:
        assert "pipeline: error: rank 0 of 2: failed with OSError: disk full" in proc.stderr
        # The other rank stops too, saying why, instead of waiting for a file that never comes.
        assert "pipeline: error: rank 1 of 2: stopping: rank 0 failed: OSError: disk full" in proc.stderr


# --- reranking under torchrun ------------------------------------------------------------
# MKL's float results for small matrix products depend on the thread count (a 1-thread and a
# 2-thread T5 forward differ in the last bits); torchrun gives each rank 1 thread, a single
# process uses every core. MKL's strict reproducibility mode makes results thread-independent,
# so the comparison below is one process at its default threads vs 2 ranks at 1 thread each.
REPRODUCIBLE = {"MKL_CBWR": "AUTO,STRICT"}
TIMING_KEYS = {"seconds", "pairs_per_s", "world_size", "batches_per_rank"}


def pipeline_cli(
    *args: str, tmp_path: Path, nproc: int | None = None, threads: int | None = None
) -> subprocess.CompletedProcess:
    """``python -m pipeline ARGS`` (``threads``: its torch threads), or under torchrun with ``nproc`` CPU processes."""
    env = {**os.environ, **REPRODUCIBLE, "PIPELINE_DIST_BACKEND": "gloo", "CUDA_VISIBLE_DEVICES": ""}
    if nproc is None:
        if threads is not None:
            env["OMP_NUM_THREADS"] = str(threads)
        cmd = [sys.executable, "-m", "pipeline", *args]
    else:
        env["OMP_NUM_THREADS"] = "1"
        launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(nproc), "--standalone"]
        # `--` ends torchrun's own options: without it torchrun's parser takes `--run` for an
        # abbreviation of its `--run-path` and stops.
        cmd = [*launcher, "-m", "pipeline", "--", *args]
    return subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.distributed
@pytest.mark.slow
def test_two_rank_rerank_writes_the_single_process_run_byte_for_byte(tmp_path, cranfield, cranfield_index, tiny_model):
    from pipeline.retrieval import retrieve
    from pipeline.runs import read_run

    bm25 = retrieve("cranfield/test", k=20, output=tmp_path / "bm25.trec")
    common = ["rerank", "cranfield/test", "--model", str(tiny_model), "--run", str(bm25), "--depth", "20"]
    # Batches of 8 pairs: ~110 batches for the 2 ranks to share.
    single = pipeline_cli(*common, "--batch-size", "8", "--output", str(tmp_path / "single.trec"), tmp_path=tmp_path)
    assert single.returncode == 0, single.stderr
    two = pipeline_cli(*common, "--batch-size", "8", "--output", str(tmp_path / "two.trec"), tmp_path=tmp_path, nproc=2)
    assert two.returncode == 0, two.stderr

    single_bytes = (tmp_path / "single.trec").read_bytes()
    assert (tmp_path / "two.trec").read_bytes() == single_bytes
    run = read_run(tmp_path / "single.trec")
    assert set(run) == set(read_run(bm25)) and all(len(h) == 20 for h in run.values())
    assert len({s for hits in run.values() for s in hits.values()}) > 100  # real, varied scores
    # Sidecars: equal except timings and the world size.
    side_single = json.loads((tmp_path / "single.trec.json").read_text())
    side_two = json.loads((tmp_path / "two.trec.json").read_text())
    assert side_two["world_size"] == 2 and side_single["world_size"] == 1
    # The 2 ranks shared the batches (round-robin), together exactly the single process's.
    (total,) = side_single["batches_per_rank"]
    assert sorted(side_two["batches_per_rank"]) == [total // 2, total - total // 2] and total > 50
    assert {k: v for k, v in side_two.items() if k not in TIMING_KEYS | {"file", "tag"}} == {
        k: v for k, v in side_single.items() if k not in TIMING_KEYS | {"file", "tag"}
    }
    # Only rank 0 wrote: one run file, one sidecar, no temporary files.
    assert sorted(p.name for p in tmp_path.glob("two.trec*")) == ["two.trec", "two.trec.json"]
    assert not list(tmp_path.glob(".*.tmp"))


# --- training under torchrun ---------------------------------------------------------------
# A step of 16 examples in micro-batches of 4: 4 micro-batches, 2 per rank.
TRAIN_FLAGS = [
    "--model-type", "t5ranker", "--valid", "cranfield/valid", "--optimizer", "adamw", "--seed", "3",
    "--max-epoch", "3", "--batches-per-epoch", "4", "--batch-size", "16", "--grad-acc-size", "4",
    "--patience", "3", "--valid-depth", "20", "--valid-queries", "20",
]  # fmt: skip
# Tolerances, and why. The 2-rank step gradient is the 1-process one summed in another order: each
# rank adds up 2 micro-batch gradients and the all-reduce adds the 2 partial sums (the 1/2 of the
# average and the factor 2 in the loss weights are exact in binary), and dropout masks are seeded
# per micro-batch, so the runs differ by float32 rounding only (~1e-7 relative in a gradient).
# - Validation scores move by about as much, which changes a ranking only if two candidates' scores
#   are within ~1e-6: MRR@100 is compared to 1e-6, i.e. identical rankings (measured: equal).
# - The logged loss is a float sum: 1e-5 relative (measured: 2e-7).
# - Weights: AdamW divides each coordinate's step by its gradient's running RMS, so where a gradient
#   coordinate is close to 0 its rounding noise becomes a visible step difference, and differences
#   grow with every step. Compared as a distance relative to how far training moved the weights:
#   |w_2 - w_1| / |w_1 - w_base| < 1e-3 (measured: 5e-5 after 8 steps, 1.6e-4 after 12).
MRR_TOL, LOSS_RTOL, WEIGHT_RTOL = 1e-6, 1e-5, 1e-3


@pytest.fixture(scope="module")
def train_base(tiny_model, cranfield_index, tmp_path_factory) -> Path:
    """The tiny T5 as an untrained T5Ranker folder with 64-token inputs (fast)."""
    from pipeline.rerankers import T5Ranker

    reranker = T5Ranker.from_pretrained(tiny_model, convention="seed", max_length=64, aggregation="first")
    return reranker.save_pretrained(tmp_path_factory.mktemp("base") / "t5ranker")


def _train(base: Path, output: Path, *extra: str, nproc: int | None = None) -> subprocess.CompletedProcess:
    args = ["train", "cranfield/train", "--base-model", str(base), "--output", str(output), *TRAIN_FLAGS, *extra]
    # The single-process reference on 1 thread, for speed only: with MKL_CBWR=AUTO,STRICT the
    # thread count does not change results (the rerank test above compares 2 threads with 1).
    return pipeline_cli(*args, tmp_path=output.parent, nproc=nproc, threads=1 if nproc is None else None)


def _log(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "train_log.jsonl").read_text().splitlines()]


def _relative_weight_distance(a: Path, b: Path, base: Path) -> float:
    """|w_b - w_a| / |w_a - w_base| over all weights (L2)."""
    from safetensors.torch import load_file

    wa, wb, w0 = (load_file(str(p / "model.safetensors")) for p in (a, b, base))
    assert wa.keys() == wb.keys() == w0.keys()
    apart = sum(float(((wb[k].double() - wa[k].double()) ** 2).sum()) for k in wa) ** 0.5
    moved = sum(float(((wa[k].double() - w0[k].double()) ** 2).sum()) for k in wa) ** 0.5
    return apart / moved


def _assert_same_training(one: Path, two: Path, base: Path) -> None:
    log1, log2 = _log(one), _log(two)
    assert [r["epoch"] for r in log2] == [r["epoch"] for r in log1] == [0, 1, 2, 3]
    for r1, r2 in zip(log1, log2, strict=True):
        assert r2["valid_mrr@100"] == pytest.approx(r1["valid_mrr@100"], abs=MRR_TOL)
        assert r2["pairs"] == r1["pairs"] and r2["best"] == r1["best"]
        if r1["epoch"]:
            assert r2["train_loss"] == pytest.approx(r1["train_loss"], rel=LOSS_RTOL)
    for folder in ("best", "last/model"):
        assert _relative_weight_distance(one / folder, two / folder, base) < WEIGHT_RTOL


@pytest.fixture(scope="module")
def single_training(train_base, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("train1") / "run"
    proc = _train(train_base, out)
    assert proc.returncode == 0, proc.stderr
    return out


@pytest.mark.distributed
@pytest.mark.slow
@pytest.mark.java
def test_two_rank_training_matches_single_process_training(train_base, single_training, tmp_path):
    out = tmp_path / "run"
    proc = _train(train_base, out, nproc=2)
    assert proc.returncode == 0, proc.stderr
    _assert_same_training(single_training, out, train_base)
    log = _log(out)
    assert (
        log[-1]["train_loss"] < log[1]["train_loss"]
        or max(r["valid_mrr@100"] for r in log[1:]) > log[0]["valid_mrr@100"]
    )  # it learned something (not a run where nothing moved)
    # One writer: the output folder holds exactly what a single-process run leaves, no temp files.
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in single_training.iterdir())
    assert proc.stderr.count("epoch 3: loss") == 1  # epoch lines printed by rank 0 only


@pytest.mark.distributed
@pytest.mark.slow
@pytest.mark.java
def test_two_rank_resume_of_an_interrupted_run(train_base, single_training, tmp_path):
    # A single-process run interrupted after epoch 1 (Ctrl-C), resumed by 2 processes.
    out = tmp_path / "run"
    script = (
        "import sys\n"
        "from pipeline.cli import main\n"
        "import pipeline.training as t\n"
        "real = t.train\n"
        "def stop(record):\n"
        "    if record['epoch'] == 1:\n"
        "        raise KeyboardInterrupt\n"
        "t.train = lambda *a, **k: real(*a, **k, on_epoch_end=stop)\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    args = ["train", "cranfield/train", "--base-model", str(train_base), "--output", str(out), *TRAIN_FLAGS]
    env = {**os.environ, **REPRODUCIBLE, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}
    first = subprocess.run(
        [sys.executable, "-c", script, *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    assert first.returncode == 130, first.stderr  # interrupted
    assert [r["epoch"] for r in _log(out)] == [0, 1]
    resumed = _train(train_base, out, "--resume", nproc=2)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming after epoch 1" in resumed.stderr
    _assert_same_training(single_training, out, train_base)


@pytest.mark.distributed
@pytest.mark.slow
def test_micro_batches_must_be_shared_evenly(train_base, tmp_path):
    out = tmp_path / "run"
    proc = _train(train_base, out, "--batch-size", "12", nproc=2)  # 3 micro-batches of 4 for 2 ranks
    assert proc.returncode != 0
    assert "3 micro-batches per step (batch_size 12 / grad_acc_size 4) cannot be shared by 2 processes" in proc.stderr
    assert not out.exists()


KILL_IN_EPOCH_2 = """
import json, os, signal, sys
import pipeline.trainstate as trainstate
import pipeline.training as training
from pipeline import distributed
from pipeline.cli import main

where = os.environ["KILL_WHERE"]
real_epoch, real_swap = training.train_epoch, trainstate._swap_in

def train_epoch(*args, **kwargs):
    if where == "rank 1, epoch 2 starts" and args[6] == 2 and distributed.rank() == 1:
        os.kill(os.getpid(), signal.SIGKILL)  # e.g. out of memory
    return real_epoch(*args, **kwargs)

def swap_in(tmp, folder):
    epoch = json.loads((tmp / "state.json").read_text())["extra"]["epoch"] if folder.name == "last" else None
    if where == "rank 0, saving epoch 2" and epoch == 2:
        folder.rename(folder.with_name("last.old"))  # half-way through replacing last/ ...
        os.kill(os.getpid(), signal.SIGKILL)  # ... the writer dies
    real_swap(tmp, folder)

training.train_epoch, trainstate._swap_in = train_epoch, swap_in
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.distributed
@pytest.mark.slow
@pytest.mark.java
@pytest.mark.parametrize("where", ["rank 1, epoch 2 starts", "rank 0, saving epoch 2"])
def test_a_killed_rank_leaves_a_resumable_checkpoint(train_base, single_training, tmp_path, where):
    out = tmp_path / "run"
    script = tmp_path / "kill.py"
    script.write_text(KILL_IN_EPOCH_2, encoding="utf-8")
    env = {**os.environ, **REPRODUCIBLE, "PIPELINE_DIST_BACKEND": "gloo", "CUDA_VISIBLE_DEVICES": ""}
    env.update(OMP_NUM_THREADS="1", KILL_WHERE=where)
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--standalone"]
    args = ["train", "cranfield/train", "--base-model", str(train_base), "--output", str(out), *TRAIN_FLAGS]
    proc = subprocess.run(
        [*launcher, str(script), *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode != 0
    root_cause = proc.stderr.split("Root Cause")[-1]
    killed = where[5]
    assert f"rank      : {killed} (local_rank: {killed})" in root_cause and "Signal 9 (SIGKILL)" in root_cause
    assert [r["epoch"] for r in _log(out)] == [0, 1]  # the log of the last completed epoch
    names = sorted(p.name for p in out.iterdir())
    if where.startswith("rank 1"):  # nothing of epoch 2 was written
        assert names == sorted(p.name for p in single_training.iterdir())
        assert json.loads((out / "last" / "state.json").read_text())["extra"]["epoch"] == 1
    else:  # killed mid-swap: epoch 1's state kept aside as last.old, epoch 2's complete in last.tmp
        assert names == ["best", "last.old", "last.tmp", "train_curves.png", "train_log.jsonl", "train_settings.json"]
        assert json.loads((out / "last.old" / "state.json").read_text())["extra"]["epoch"] == 1
    # Resumed by a single process, it ends as the uninterrupted run did.
    resumed = _train(train_base, out, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming after epoch 1" in resumed.stderr
    _assert_same_training(single_training, out, train_base)
