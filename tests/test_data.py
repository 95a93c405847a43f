"""pipeline.data: local collections as real ir_datasets datasets, checked against the input files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline import cli, data, paths
from pipeline.errors import PipelineError


def _lines(path: Path) -> list[str]:
    return [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


# --- CACM: counts, text, persistence ----------------------------------------------------
def test_cacm_counts_match_the_files(cacm, shared_data):
    src = shared_data / "cacm"
    ds = data.load(cacm)
    assert ds.docs_count() == 3204
    assert sum(1 for _ in ds.docs_iter()) == 3204
    assert ds.queries_count() == 64
    queries = data.queries(cacm)
    assert len(queries) == 64
    assert queries == dict(line.split("\t") for line in _lines(src / "queries.tsv"))
    n_qrels = len(_lines(src / "qrels.txt"))
    assert n_qrels == 796
    assert ds.qrels_count() == n_qrels
    qrels = data.qrels(cacm)
    assert sum(len(docs) for docs in qrels.values()) == n_qrels
    assert len(qrels) == 52  # 12 CACM queries have no judgment (SOURCE.md)
    assert qrels["1"]["CACM-1410"] == 1
    assert data.corpus_id(cacm) == "cacm"


def test_docs_store_returns_the_exact_text_of_docs_jsonl(cacm, shared_data):
    lines = (shared_data / "cacm" / "docs.jsonl").read_text(encoding="utf-8").splitlines()
    docs = data.docs_text(cacm)
    for lineno in (0, 1234, 3203):
        obj = json.loads(lines[lineno])
        assert docs[obj["id"]] == obj["contents"]
    first = json.loads(lines[0])
    doc = next(iter(data.load(cacm).docs_iter()))
    assert (doc.doc_id, doc.text) == (first["id"], first["contents"])
    many = docs.get_many(["CACM-0002", "no-such-doc", "CACM-3204"])
    assert set(many) == {"CACM-0002", "CACM-3204"}
    assert many["CACM-3204"] == json.loads(lines[3203])["contents"]
    assert "CACM-0001" in docs and "CACM-9999" not in docs
    assert len(docs) == 3204
    with pytest.raises(KeyError):
        docs["CACM-9999"]


def test_registration_persists_in_a_new_process(cacm):
    code = (
        "from pipeline import data; ds = data.load('cacm'); "
        "print(ds.docs_count(), ds.queries_count(), data.corpus_id('cacm'), data.docs_text('cacm')['CACM-0001'])"
    )
    env = dict(os.environ)  # conftest's PIPELINE_HOME and IR_DATASETS_HOME
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == f"3204 64 cacm {data.docs_text('cacm')['CACM-0001']}"


def test_export_qrels_equals_the_input_lines(cacm, shared_data):
    path = data.export_qrels(cacm)
    assert path == paths.qrels_path("cacm")
    assert path.read_bytes() == (shared_data / "cacm" / "qrels.txt").read_bytes()


# --- splits -----------------------------------------------------------------------------
def test_split_is_disjoint_covers_judged_queries_and_follows_fractions(cranfield):
    import ir_datasets

    ids = [f"{cranfield}/{part}" for part in ("train", "valid", "test")]
    split = {ds_id: set(data.queries(ds_id)) for ds_id in ids}
    judged = set(data.qrels(cranfield))
    assert len(judged) == 225
    assert set().union(*split.values()) == judged
    assert sum(len(q) for q in split.values()) == len(judged)  # disjoint
    assert [len(split[ds_id]) for ds_id in ids] == [135, 45, 45]  # 0.6/0.2/0.2 of 225
    parent_qrels = data.qrels(cranfield)
    for ds_id in ids:
        assert data.qrels(ds_id) == {qid: parent_qrels[qid] for qid in split[ds_id]}
        assert ir_datasets.docs_parent_id(ds_id) == cranfield
        assert data.corpus_id(ds_id) == cranfield
        assert data.load(ds_id).docs_count() == 1400
    # Deterministic: the seed-0 rule (sorted ids, seeded shuffle) reproduces the registered split.
    again = data.split_queries(reversed(sorted(judged)), data.parse_split("train=0.6,valid=0.2,test=0.2"), seed=0)
    assert {f"{cranfield}/{k}": set(v) for k, v in again.items()} == split
    other = data.split_queries(judged, data.parse_split("train=0.6,valid=0.2,test=0.2"), seed=1)
    assert set(other["train"]) != split[f"{cranfield}/train"]


def test_cranfield_counts_and_empty_documents(cranfield, shared_data):
    rows = {row["id"]: row for row in data.list_datasets()}
    row = rows[cranfield]
    assert (row["docs"], row["queries"], row["judged_queries"], row["qrels"]) == (1400, 225, 225, 1612)
    assert row["empty_docs"] == 2  # docs 471 and 995 (SOURCE.md)
    docs = data.docs_text(cranfield)
    assert docs["471"] == docs["995"] == ""
    # The local registration shadows ir_datasets' built-in "cranfield" (which would download).
    assert data.load(cranfield).docs_count() == 1400 and data.load(cranfield).qrels_count() == 1612


def test_bom_and_crlf_are_not_part_of_ids(tmp_path, cacm):
    f = _write(tmp_path, {"docs.tsv": "\ufeffd1\tone\r\nd2\ttwo\r\n", "queries.tsv": "\ufeff1\tq one\r\n"})
    data.register("bom", f["docs.tsv"], f["queries.tsv"])
    assert data.queries("bom") == {"1": "q one"}
    assert dict(data.docs_text("bom").items()) == {"d1": "one", "d2": "two"}


def test_split_sizes_use_largest_remainders():
    # 52 judged CACM queries: 31.2 / 10.4 / 10.4 -> floors 31/10/10, the one left over goes to valid.
    parts = data.parse_split("train=0.6,valid=0.2,test=0.2")
    sizes = {k: len(v) for k, v in data.split_queries(map(str, range(52)), parts, seed=0).items()}
    assert sizes == {"train": 31, "valid": 11, "test": 10}


def test_export_qrels_of_a_split_keeps_file_order(cranfield, shared_data):
    test_queries = set(data.queries(f"{cranfield}/test"))
    expected = [line for line in _lines(shared_data / "cranfield" / "qrels.txt") if line.split()[0] in test_queries]
    path = data.export_qrels(f"{cranfield}/test")
    assert path == paths.qrels_path("cranfield/test")
    assert _lines(path) == expected


# --- small collections built in tmp_path -------------------------------------------------
def _write(folder: Path, files: dict[str, str]) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for name, text in files.items():
        (folder / name).write_text(text, encoding="utf-8")
        out[name] = folder / name
    return out


DOCS = "".join(
    json.dumps({"id": f"d{i}", "contents": f"text of doc {i}", "title": f"t{i}"}) + "\n" for i in range(1, 7)
)
QUERIES = "1\tfirst query\n2\tsecond query\n3\tthird query\n4\tfourth query\n5\tunjudged query\n"
QRELS = "1 0 d1 1\n1 0 d2 0\n2 0 d3 2\n3 0 d4 1\n4 0 d5 1\n"
DOCPAIRS = "1\td1\td2\n2\td3\td4\n3\td4\td5\n4\td5\td6\n4\td5\td1\n"


def test_docpairs_tsv_docs_and_split_subsets(tmp_path, cacm):
    f = _write(
        tmp_path,
        {
            "docs.tsv": "".join(f"d{i}\ttext of doc {i}\n" for i in range(1, 7)),
            "queries.tsv": QUERIES,
            "qrels.txt": QRELS,
            "pairs.tsv": DOCPAIRS,
        },
    )
    ids = data.register(
        "tiny", f["docs.tsv"], f["queries.tsv"], f["qrels.txt"], f["pairs.tsv"], split="a=0.5,b=0.5", seed=3
    )
    assert ids == ["tiny", "tiny/a", "tiny/b"]
    assert data.docs_text("tiny/a")["d6"] == "text of doc 6"
    pairs = [tuple(p) for p in data.load("tiny").docpairs_iter()]
    assert pairs == [tuple(line.split("\t")) for line in DOCPAIRS.splitlines()]
    qa, qb = set(data.queries("tiny/a")), set(data.queries("tiny/b"))
    assert len(qa) == len(qb) == 2 and qa | qb == {"1", "2", "3", "4"}  # query 5 is unjudged
    for ds_id, qids in (("tiny/a", qa), ("tiny/b", qb)):
        assert [tuple(p) for p in data.load(ds_id).docpairs_iter()] == [p for p in pairs if p[0] in qids]
    rows = {row["id"]: row for row in data.list_datasets()}
    assert rows["tiny"]["docpairs"] == 5 and rows["tiny"]["queries"] == 5 and rows["tiny"]["judged_queries"] == 4
    assert rows["tiny/a"]["docpairs"] + rows["tiny/b"]["docpairs"] == 5


def test_force_replaces_a_registration_in_the_same_process(tmp_path, cacm):
    f = _write(tmp_path / "v1", {"docs.jsonl": DOCS, "queries.tsv": QUERIES})
    data.register("replaced", f["docs.jsonl"], f["queries.tsv"])
    assert data.docs_text("replaced")["d1"] == "text of doc 1"
    stale_index = paths.index_dir("replaced")
    stale_index.mkdir(parents=True)
    g = _write(tmp_path / "v2", {"docs.jsonl": '{"id": "d1", "contents": "new text"}\n', "queries.tsv": QUERIES})
    data.register("replaced", g["docs.jsonl"], g["queries.tsv"], force=True)
    assert data.docs_text("replaced")["d1"] == "new text"
    assert data.load("replaced").docs_count() == 1
    assert not stale_index.exists()  # an index of the old documents must not be reused


def test_another_home_sees_only_its_own_registrations(tmp_path, monkeypatch, cacm):
    monkeypatch.setenv("PIPELINE_HOME", str(tmp_path / "elsewhere"))
    with pytest.raises(PipelineError, match="unknown dataset id 'cacm'"):
        data.load("cacm")
    monkeypatch.undo()
    assert data.load("cacm").docs_count() == 3204


# --- bad input: one-line error naming file:line, nothing written ---------------------------
BAD_CASES = {
    "malformed-jsonl": ({"docs.jsonl": DOCS[:60] + "\n{not json\n"}, {}, r"docs\.jsonl:2: malformed JSON"),
    "missing-contents": ({"docs.jsonl": DOCS + '{"id": "d9"}\n'}, {}, r"docs\.jsonl:7: missing key 'contents'"),
    "missing-id": ({"docs.jsonl": '{"contents": "x"}\n'}, {}, r"docs\.jsonl:1: missing key 'id'"),
    "malformed-tsv-docs": (
        {"docs.tsv": "d1\tok\nd2\tone\ttab too many\n"},
        {"docs": "docs.tsv"},
        r"docs\.tsv:2: expected 2 tab-separated columns",
    ),
    "duplicate-doc": (
        {"docs.jsonl": DOCS + DOCS.splitlines(True)[2]},
        {},
        r"docs\.jsonl:7: duplicate document id 'd3'",
    ),
    "empty-query": ({"queries.tsv": "1\tfine\n2\t  \n"}, {}, r"queries\.tsv:2: query '2' has empty text"),
    "duplicate-query": ({"queries.tsv": QUERIES + "3\tagain\n"}, {}, r"queries\.tsv:6: duplicate query id '3'"),
    "malformed-query": ({"queries.tsv": "1 no tab here\n"}, {}, r"queries\.tsv:1: expected 2 tab-separated columns"),
    "qrels-unknown-query": ({"qrels.txt": QRELS + "9 0 d1 1\n"}, {}, r"qrels\.txt:6: unknown query '9'"),
    "qrels-unknown-doc": ({"qrels.txt": "1 0 d1 1\n1 0 nope 1\n"}, {}, r"qrels\.txt:2: unknown document 'nope'"),
    "qrels-columns": ({"qrels.txt": "1 d1 1\n"}, {}, r"qrels\.txt:1: expected 4 columns"),
    "qrels-relevance": ({"qrels.txt": "1 0 d1 high\n"}, {}, r"qrels\.txt:1: relevance 'high' is not an integer"),
    "docpairs-unknown-query": (
        {"pairs.tsv": DOCPAIRS + "7\td1\td2\n"},
        {"docpairs": "pairs.tsv"},
        r"pairs\.tsv:6: unknown query '7'",
    ),
    "docpairs-unknown-doc": (
        {"pairs.tsv": "1\td1\td99\n"},
        {"docpairs": "pairs.tsv"},
        r"pairs\.tsv:1: unknown document 'd99'",
    ),
    "docpairs-columns": ({"pairs.tsv": "1\td1\n"}, {"docpairs": "pairs.tsv"}, r"pairs\.tsv:1: expected 3 tab-sep"),
    "split-sum": ({}, {"split": "train=0.6,test=0.3"}, r"fractions must sum to 1, they sum to 0\.9"),
    "split-syntax": ({}, {"split": "train:0.5,test=0.5"}, r"'train:0\.5' is not NAME=FRACTION"),
    "split-twice": ({}, {"split": "a=0.5,a=0.5"}, r"'a' appears twice"),
    "split-without-qrels": ({}, {"split": "a=0.5,b=0.5", "qrels": None}, r"--split .* needs --qrels"),
    "missing-file": ({}, {"queries": "absent.tsv"}, r"--queries .*absent\.tsv: no such file"),
    "bad-name": ({}, {"name": "a/b"}, r"dataset name 'a/b'"),
    "name-clash": ({}, {"name": "cacm"}, r"dataset 'cacm' is already registered .* pass --force"),
    "builtin-clash": ({}, {"name": "vaswani"}, r"'vaswani' is an ir_datasets built-in id; .* --force"),
}


def _data_state() -> tuple[bytes, list[str], bool]:
    root = paths.data_dir()
    registry = root / data.REGISTRY_FILE
    return registry.read_bytes(), sorted(os.listdir(root)), paths.qrels_path("bad").exists()


@pytest.mark.parametrize("case", list(BAD_CASES), ids=list(BAD_CASES))
def test_bad_input_is_refused_before_anything_is_written(case, tmp_path, cacm):
    files, args, message = BAD_CASES[case]
    f = _write(tmp_path, {"docs.jsonl": DOCS, "queries.tsv": QUERIES, "qrels.txt": QRELS, **files})
    kwargs = {"docs": "docs.jsonl", "queries": "queries.tsv", "qrels": "qrels.txt", **args}
    name = kwargs.pop("name", "bad")
    for kind in ("docs", "queries", "qrels", "docpairs"):
        if kwargs.get(kind):
            kwargs[kind] = tmp_path / kwargs[kind]
    before = _data_state()
    with pytest.raises(PipelineError, match=message) as err:
        data.register(name, **kwargs)
    assert "\n" not in str(err.value)
    assert _data_state() == before  # registry unchanged, no data/bad, no staging folder left
    assert sorted(os.listdir(tmp_path)) == sorted(f)  # nothing written beside the inputs


def test_unknown_dataset_id_says_how_to_register(cacm):
    with pytest.raises(PipelineError, match=r"unknown dataset id 'nope/x'.*pipeline datasets add NAME --docs"):
        data.load("nope/x")


def test_dataset_without_qrels(tmp_path, cacm):
    f = _write(tmp_path, {"docs.jsonl": DOCS, "queries.tsv": QUERIES})
    data.register("noqrels", f["docs.jsonl"], f["queries.tsv"])
    with pytest.raises(PipelineError, match="'noqrels' has no qrels"):
        data.qrels("noqrels")
    with pytest.raises(PipelineError, match="'noqrels' has no qrels"):
        data.export_qrels("noqrels")


# --- CLI ------------------------------------------------------------------------------------
def test_cli_datasets_list_and_add(tmp_path, capsys, cacm, shared_data):
    assert cli.main(["datasets", "list"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["id", "docs", "queries", "judged", "qrels", "docpairs", "sources"]
    row = next(line for line in out if line.startswith("cacm "))
    assert row.split()[:6] == ["cacm", "3204", "64", "52", "796", "0"]
    assert f"--docs {(shared_data / 'cacm' / 'docs.jsonl').resolve()}" in row

    f = _write(tmp_path, {"docs.jsonl": DOCS, "queries.tsv": QUERIES, "qrels.txt": QRELS, "pairs.tsv": DOCPAIRS})
    argv = ["datasets", "add", "clitiny", "--docs", str(f["docs.jsonl"]), "--queries", str(f["queries.tsv"])]
    argv += ["--qrels", str(f["qrels.txt"]), "--docpairs", str(f["pairs.tsv"]), "--split", "x=0.5,y=0.5"]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("registered clitiny, clitiny/x, clitiny/y")
    counts = {line.split()[0]: line.split()[1:] for line in out[2:]}
    assert counts["clitiny"] == ["6", "5", "4", "5", "5"]
    for ds_id in ("clitiny/x", "clitiny/y"):
        ds = data.load(ds_id)
        expected = [6, ds.queries_count(), len(ds.qrels_dict()), ds.qrels_count(), ds.docpairs_count()]
        assert counts[ds_id] == [str(n) for n in expected]
    assert sum(int(counts[k][1]) for k in ("clitiny/x", "clitiny/y")) == 4

    assert cli.main(argv) == 2  # already registered
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("pipeline: error: dataset 'clitiny' is already registered")


def test_builtin_ids_go_straight_to_ir_datasets(cacm):
    import ir_datasets

    # Registry look-ups only: nothing here touches the network.
    assert data.load("msmarco-passage/dev/small") is ir_datasets.load("msmarco-passage/dev/small")
    assert data.corpus_id("msmarco-passage/dev/small") == "msmarco-passage"
    assert data.load("msmarco-passage/train/triples-small").has_docpairs()
