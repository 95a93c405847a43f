"""Lucene indexing and BM25 (pipeline.retrieval, `pipeline index`, `pipeline retrieve`).

References: Pyserini's own CLI on the same index (the must-show), the BM25 formula
computed by hand from the index's term statistics, and the CACM/Cranfield files.
"""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline import cli, data, paths, retrieval
from pipeline.errors import PipelineError
from pipeline.runs import read_run, sidecar_path

pytestmark = pytest.mark.java


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("pipeline: error: ")
    return lines[0]


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".building-" in p.name)


# --- indexing -------------------------------------------------------------------------
def test_cacm_index_holds_3204_documents_with_raw_text(cacm_index, shared_data):
    assert cacm_index == paths.index_dir("cacm")
    stats = retrieval.index_stats(cacm_index)  # read back from Lucene, not from our marker
    assert stats["documents"] == stats["non_empty_documents"] == 3204
    marker = retrieval.read_marker(cacm_index)
    assert marker["documents_written"] == 3204 and marker["counters"]["indexed"] == 3204
    assert marker["settings"]["storeRaw"] and marker["settings"]["storePositions"]
    assert leftovers(cacm_index.parent) == []

    # The raw document is stored: rerankers and Pyserini's doc() can fetch passages.
    from pipeline.java import autoclass

    utils = autoclass("io.anserini.index.IndexReaderUtils")
    reader = utils.getReader(str(cacm_index))
    with open(shared_data / "cacm" / "docs.jsonl", encoding="utf-8") as f:
        originals = [json.loads(line) for line in f]
    for doc in (originals[0], originals[1615], originals[-1]):
        stored = json.loads(utils.documentRaw(reader, doc["id"]))
        assert stored == {"id": doc["id"], "contents": doc["contents"]}
    reader.close()


def test_complete_index_is_reused(cacm_index):
    marker_file = cacm_index / retrieval.MARKER
    before = marker_file.stat().st_mtime_ns
    assert retrieval.build_index("cacm") == cacm_index
    assert marker_file.stat().st_mtime_ns == before


def test_subsets_share_their_corpus_index(cranfield_index):
    assert retrieval.build_index("cranfield/test") == cranfield_index == paths.index_dir("cranfield")
    assert retrieval.read_marker(cranfield_index)["built_from_dataset"] == "cranfield"
    whole = retrieval.bm25("cranfield", k=20, threads=2)
    subset = retrieval.bm25("cranfield/test", k=20, threads=2)
    test_qids = set(data.queries("cranfield/test"))
    assert set(subset) == test_qids and test_qids < set(whole)
    assert subset == {qid: whole[qid] for qid in test_qids}


def test_interrupted_build_leaves_nothing_behind(cacm, tmp_path, monkeypatch):
    monkeypatch.setattr(paths, "index_dir", lambda corpus: tmp_path / "indexes" / corpus)
    seen = []

    def failing_text(doc):
        seen.append(doc.doc_id)
        if len(seen) == 100:
            raise KeyboardInterrupt
        return doc.default_text()

    monkeypatch.setattr(retrieval, "_doc_text", failing_text)
    with pytest.raises(KeyboardInterrupt):
        retrieval.build_index("cacm", threads=1)
    assert list((tmp_path / "indexes").iterdir()) == []


# --- BM25 -----------------------------------------------------------------------------
@pytest.mark.slow
def test_bm25_run_equals_pyserini_cli(cacm_index, shared_data, tmp_path, capsys):
    """The must-show: `pipeline retrieve cacm` == `python -m pyserini.search.lucene` on the same index."""
    ours = tmp_path / "ours.trec"
    code, out, _ = run_cli(capsys, "retrieve", "cacm", "--output", str(ours), "--threads", "2")
    assert code == 0 and out == f"{ours}\n"

    # Pyserini picks its CACM-specific topic reader for any path containing "cacm"; ours is plain TSV.
    topics = tmp_path / "topics.tsv"
    assert "cacm" not in str(topics)
    topics.write_text("".join(f"{qid}\t{text}\n" for qid, text in data.queries("cacm").items()), encoding="utf-8")
    theirs = tmp_path / "pyserini.trec"
    subprocess.run(
        [sys.executable, "-m", "pipeline.java", "pyserini.search.lucene", "--index", str(cacm_index)]
        + ["--topics", str(topics), "--output", str(theirs), "--bm25", "--k1", "0.9", "--b", "0.4", "--hits", "100"],
        check=True,
        capture_output=True,
    )

    def lines_by_query(path: Path) -> list[list[str]]:
        # Pyserini writes queries in integer order, write_run in string order; within a query the
        # lines must agree exactly: docid, rank and the score printed to 6 decimals. Tags differ.
        rows = [line.split() for line in path.read_text().splitlines()]
        return sorted((row[:5] for row in rows), key=lambda row: row[0])

    ours_rows, their_rows = lines_by_query(ours), lines_by_query(theirs)
    assert len(ours_rows) == 64 * 100
    assert ours_rows == their_rows
    assert {line.split()[5] for line in ours.read_text().splitlines()} == {"bm25"}

    sidecar = json.loads(sidecar_path(ours).read_text())
    assert sidecar["parameters"] == {"k": 100, "k1": 0.9, "b": 0.4, "threads": 2}
    assert sidecar["index"]["stats"]["documents"] == 3204
    assert sidecar["queries_searched"] == 64 and sidecar["queries_without_hits"] == []
    assert set(sidecar["timings_s"]) >= {"jvm_start", "search", "total"}


def test_retrieve_default_output_and_msmarco_params(cacm_index, tmp_path, capsys):
    code, out, _ = run_cli(capsys, "retrieve", "cacm", "--k", "10", "--threads", "2")
    default = paths.runs_dir("cacm") / "bm25.trec"
    assert code == 0 and out == f"{default}\n"
    assert json.loads(sidecar_path(default).read_text())["parameters"]["k1"] == 0.9

    msmarco = default.with_name("bm25-msmarco.trec")
    code, out, _ = run_cli(capsys, "retrieve", "cacm", "--k", "10", "--msmarco-params", "--output", str(msmarco))
    assert code == 0
    params = json.loads(sidecar_path(msmarco).read_text())["parameters"]
    assert (params["k1"], params["b"]) == (0.82, 0.68)
    assert read_run(msmarco)["1"] != read_run(default)["1"]  # the parameters reach Lucene

    refused = tmp_path / "refused.trec"
    code, _, err = run_cli(capsys, "retrieve", "cacm", "--msmarco-params", "--k1", "1.2", "--output", str(refused))
    assert code == 2 and "either --msmarco-params or --k1/--b" in one_line_error(err)
    assert not refused.exists()


def test_bm25_scores_follow_the_formula(cacm_index):
    """One-term query, b=0 (no length normalisation): score = idf * tf / (tf + k1), Lucene's BM25.

    Anserini rounds scores to 4 decimals and then separates tied documents, taking
    1e-6 per earlier tie in docid order, so ranks are strict and deterministic.
    """
    from pipeline.java import autoclass

    k1 = 1.7
    run = retrieval.search_index(cacm_index, {"q": "compilers"}, k=1000, k1=k1, b=0.0)["q"]
    utils = autoclass("io.anserini.index.IndexReaderUtils")
    reader = utils.getReader(str(cacm_index))
    df = utils.getTermCounts(reader, "compilers").get("docFreq")
    n = retrieval.index_stats(cacm_index)["documents"]
    idf = math.log(1 + (n - df + 0.5) / (df + 0.5))
    assert len(run) == df  # every document containing the stem, and no other
    by_tf: dict[int, list[tuple[str, float]]] = {}
    for docid, score in run.items():
        by_tf.setdefault(utils.getDocumentVector(reader, docid).get("compil"), []).append((docid, score))
    reader.close()
    assert len(by_tf) > 3
    for tf, hits in by_tf.items():
        expected = round(idf * tf / (tf + k1), 4)
        hits.sort()  # docid order
        for ties_before, (_, score) in enumerate(hits):
            assert score == pytest.approx(expected - 1e-6 * ties_before, abs=2e-6)


def test_bad_parameters_are_refused_before_searching(cacm_index, tmp_path, capsys):
    never = tmp_path / "never.trec"
    for argv, problem in [
        (["--k", "0"], "k must be at least 1"),
        (["--b", "1.5"], "b must be between 0 and 1"),
        (["--threads", "0"], "threads must be at least 1"),
    ]:
        code, _, err = run_cli(capsys, "retrieve", "cacm", "--output", str(never), *argv)
        assert code == 2 and problem in one_line_error(err)
    assert list(tmp_path.iterdir()) == []


# --- missing and incomplete indexes -----------------------------------------------------
@pytest.fixture
def empty_indexes(tmp_path, monkeypatch) -> Path:
    """Point indexes/ at an empty folder (the registered datasets stay as they are)."""
    root = tmp_path / "indexes"
    root.mkdir()
    monkeypatch.setattr(paths, "index_dir", lambda corpus: root / corpus)
    return root


def test_missing_index_is_a_clear_error(cacm, empty_indexes, tmp_path, capsys):
    out = tmp_path / "run.trec"
    code, _, err = run_cli(capsys, "retrieve", "cacm", "--output", str(out))
    assert code == 2
    assert one_line_error(err) == (
        f"pipeline: error: no index for corpus 'cacm' ({empty_indexes / 'cacm'}): run `pipeline index cacm` first"
    )
    assert not out.exists() and not sidecar_path(out).exists()


def test_incomplete_index_is_refused_then_rebuilt_with_force(cacm, empty_indexes, tmp_path, capsys):
    stale = empty_indexes / "cacm"
    stale.mkdir()
    (stale / "half-copied.bin").write_bytes(b"half an index")
    out = tmp_path / "run.trec"
    for argv in (["retrieve", "cacm", "--output", str(out)], ["index", "cacm"]):
        code, _, err = run_cli(capsys, *argv)
        message = one_line_error(err)
        assert code == 2
        assert f"{stale} is an incomplete index" in message and "pipeline index cacm --force" in message
    assert not out.exists()
    assert (stale / "half-copied.bin").read_bytes() == b"half an index"  # never deleted behind the user's back

    # Build folders left by killed processes of this host go; live or other hosts' ones stay.
    host = socket.gethostname()
    dead = empty_indexes / f".cacm.building-{host}-999999999-x"  # above Linux's pid_max: no such process
    alive = empty_indexes / f".cacm.building-{host}-{os.getppid()}-x"
    elsewhere = empty_indexes / ".cacm.building-otherhost-999999999-x"
    for folder in (dead, alive, elsewhere):
        folder.mkdir()

    code, out_text, _ = run_cli(capsys, "index", "cacm", "--force", "--threads", "1")
    assert code == 0 and out_text == f"{stale}\n"
    assert not (stale / "half-copied.bin").exists()
    assert retrieval.index_stats(stale)["documents"] == 3204
    assert leftovers(empty_indexes) == sorted([alive.name, elsewhere.name])


def test_marker_without_lucene_files_is_a_clear_error(cacm, cacm_index, empty_indexes, capsys):
    broken = empty_indexes / "cacm"
    broken.mkdir()
    (broken / retrieval.MARKER).write_bytes((cacm_index / retrieval.MARKER).read_bytes())
    code, _, err = run_cli(capsys, "retrieve", "cacm", "--output", str(empty_indexes / "run.trec"))
    assert code == 2 and f"{broken}: cannot open the Lucene index" in one_line_error(err)
    assert not (empty_indexes / "run.trec").exists()


def test_index_errors_name_the_dataset(capsys):
    code, _, err = run_cli(capsys, "index", "no-such-dataset")
    assert code == 2 and "no-such-dataset" in one_line_error(err)
    with pytest.raises(PipelineError):
        retrieval.index_path("no-such-dataset")


def test_bench_explains_how_to_register_cacm(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PIPELINE_HOME", str(tmp_path))  # a home where nothing is registered
    code, out, err = run_cli(capsys, "bench", "retrieve")
    message = one_line_error(err)
    assert code == 2 and out == ""
    assert "dataset 'cacm' is not registered; register it with `pipeline datasets add cacm --docs " in message
    assert "shared/data/cacm/docs.jsonl" in message
    assert list(tmp_path.iterdir()) == []
