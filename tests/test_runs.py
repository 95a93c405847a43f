"""TREC run I/O: sorting, tie-breaking, validation errors, atomic writes, sidecars."""

import json

import pytest

from pipeline.errors import PipelineError
from pipeline.runs import read_run, sidecar_path, write_run


def test_write_sorts_by_score_then_docid_and_reads_back(tmp_path):
    run = {"2": {"b": 1.0, "a": 1.0, "c": 3.5}, "10": {"x": -1.0}}
    path = write_run(run, tmp_path / "r.trec", tag="bm25", metadata={"k1": 0.9})
    assert path.read_text().splitlines() == [
        "10 Q0 x 1 -1.000000 bm25",
        "2 Q0 c 1 3.500000 bm25",
        "2 Q0 a 2 1.000000 bm25",
        "2 Q0 b 3 1.000000 bm25",
    ]
    assert read_run(path) == run
    side = json.loads(sidecar_path(path).read_text())
    assert side["k1"] == 0.9 and side["tag"] == "bm25" and "torch" in side["versions"]


@pytest.mark.parametrize(
    "text, message",
    [
        ("1 Q0 d1 1 2.0\n", "r.trec:1: not TREC run format"),
        ("1 Q0 d1 1 2.0 t\n1 Q0 d2 2 abc t\n", "r.trec:2: score 'abc' is not a number"),
        ("1 Q0 d1 1 2.0 t\n1 Q0 d1 2 1.0 t\n", "r.trec:2: document 'd1' appears twice for query '1'"),
        ("", "r.trec: run file is empty"),
        ("1 Q0 d1 1 nan t\n", "r.trec:1: score 'nan' is not finite"),
    ],
)
def test_read_run_names_file_and_line(tmp_path, text, message):
    path = tmp_path / "r.trec"
    path.write_text(text)
    with pytest.raises(PipelineError, match=message):
        read_run(path)


def test_interrupted_write_leaves_no_file(tmp_path):
    class Boom(dict):
        def items(self):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_run({"1": Boom(d=1.0)}, tmp_path / "r.trec", tag="t")
    assert list(tmp_path.iterdir()) == []
