"""`pipeline run`: config checking, the MS MARCO dry run offline, a small experiment end to end."""

from __future__ import annotations

import json
import re
import socket
from pathlib import Path

import pytest

from pipeline import cli, paths
from pipeline.config import load_config, shipped_config, to_toml

SMALL = """
name = "{name}"

[demo]
name = "{demo}"
seed = 1
entities = 20          # 160 passages; 112 / 16 / 32 train / valid / test questions
negatives = 2

[data]
train = "{demo}/train"
valid = "{demo}/valid"
test = ["{demo}/test"]

[retrieval]
k = 50
threads = 1

[model]
base = "init"
torch_threads = 1

[train]
optimizer = "adamw"
t5_lr = 3e-3
batch_size = 8
grad_acc_size = 8
batches_per_epoch = 4
max_epoch = {max_epoch}
patience = 2
valid_depth = 30

[rerank]
depth = 30

[evaluation]
metrics = ["mrr@100", "ndcg@10"]
max_p = {max_p}
"""


def _write(tmp_path: Path, text: str, name: str = "exp.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _plan(out: str) -> list[tuple[str, str]]:
    """(stage, status) of each plan line: ``  3. bm25/x  [to run]  …``."""
    return re.findall(r"^\s+\d+\. (\S+)\s+\[([^\]]+)\]", out, flags=re.M)


def _run(argv, capsys) -> tuple[int, str, str]:
    code = cli.main(argv)
    out, err = capsys.readouterr()
    return code, out, err


# --- config errors, before any stage runs --------------------------------------------------
BAD_CONFIGS = {
    "unknown top-level key": ("name = 'x'\nbogus = 1\n[data]\ntrain='a'\nvalid='b'\ntest=['c']\n", "'bogus'"),
    "unknown key in a table": (
        "name = 'x'\n[data]\ntrain='a'\nvalid='b'\ntest=['c']\nvalidation='d'\n",
        "unknown key 'data.validation'",
    ),
    "unknown training setting": (
        "name = 'x'\n[data]\ntrain='cacm'\nvalid='cacm'\ntest=['cacm']\n[train]\nlearning_rate = 0.1\n",
        "'train.learning_rate'",
    ),
    "missing required field": ("name = 'x'\n[data]\ntrain='cacm'\nvalid='cacm'\n", "'data.test'"),
    "missing name": ("[data]\ntrain='cacm'\nvalid='cacm'\ntest=['cacm']\n", "'name'"),
    "unknown dataset id": (
        "name = 'x'\n[data]\ntrain='cacm'\nvalid='cacm'\ntest=['no-such-collection/test']\n",
        "'data.test[0]': unknown dataset id 'no-such-collection/test'",
    ),
    "unknown model type": (
        "name = 'x'\n[data]\ntrain='cacm'\nvalid='cacm'\ntest=['cacm']\n[model]\ntypes=['t5ranker', 'bert']\n",
        "'model.types[1]': unknown model type 'bert'",
    ),
    "unknown model type of a zero-shot reranker": (
        "name = 'x'\n[data]\ntrain='cacm'\nvalid='cacm'\ntest=['cacm']\n"
        "[[zero_shot]]\nname='m'\nmodel='castorini/monot5-base-msmarco'\nmodel_type='colbert'\n",
        "'zero_shot[0].model_type': unknown model type 'colbert'",
    ),
    "training table of an unknown model type": (
        "name = 'x'\n[data]\ntrain='cacm'\nvalid='cacm'\ntest=['cacm']\n[train.bert]\nlr = 0.1\n",
        "table 'train.bert': unknown model type 'bert'",
    ),
    "wrong type": (
        "name = 'x'\n[data]\ntrain='cacm'\nvalid='cacm'\ntest=['cacm']\n[retrieval]\nk1 = 'high'\n",
        "'retrieval.k1' must be float",
    ),
    "settings that cannot train": (
        "name = 'x'\n[data]\ntrain='cacm'\nvalid='cacm'\ntest=['cacm']\n[train]\nbatch_size = 10\ngrad_acc_size = 4\n",
        "'batch_size' (10) is not divisible by 'grad_acc_size' (4)",
    ),
}


@pytest.mark.parametrize("case", list(BAD_CONFIGS))
def test_bad_config_is_refused_naming_the_key_before_any_stage(case, tmp_path, capsys, cacm):
    text, expected = BAD_CONFIGS[case]
    path = _write(tmp_path, text)
    code, out, err = _run(["run", str(path)], capsys)
    assert code == 2
    assert err.startswith("pipeline: error: ") and err.count("\n") == 1, err
    assert str(path) in err and expected in err, err
    assert not (paths.home() / "runs" / "x").exists()


def test_missing_config_file_and_bad_toml(tmp_path, capsys):
    code, _, err = _run(["run", str(tmp_path / "nope.toml")], capsys)
    assert code == 2 and "no such config file" in err and "demo, msmarco" in err
    bad = _write(tmp_path, "name = \n")
    code, _, err = _run(["run", str(bad)], capsys)
    assert code == 2 and f"{bad}: not valid TOML" in err


def test_shipped_configs_load_and_resolve_to_a_config_that_reloads(tmp_path):
    for name in ("demo", "msmarco"):
        cfg = load_config(shipped_config(name))
        again = load_config(_write(tmp_path, to_toml(cfg), f"{name}.toml"))
        assert again.to_dict() == cfg.to_dict()
    msmarco = load_config(shipped_config("msmarco"))
    assert msmarco.data.train == "msmarco-passage/train/triples-small"
    assert [(t.dataset, t.rel_level) for t in msmarco.data.test] == [
        ("msmarco-passage/dev/small", 1),
        ("msmarco-passage/trec-dl-2019/judged", 2),
        ("msmarco-passage/trec-dl-2020/judged", 2),
    ]
    assert (msmarco.retrieval.k1, msmarco.retrieval.b, msmarco.model.base) == (0.9, 0.4, "google-t5/t5-base")
    assert msmarco.train_settings("t5ranker").valid_queries == 500
    assert [z.model for z in msmarco.zero_shot] == ["castorini/monot5-base-msmarco"]


# --- MS MARCO: the plan, offline ----------------------------------------------------------------
def test_msmarco_dry_run_prints_the_plan_and_downloads_without_network(monkeypatch, capsys):
    def no_network(*args, **kwargs):
        raise AssertionError(f"network access during a dry run: {args}")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code, out, err = _run(["run", "msmarco", "--dry-run"], capsys)
    assert code == 0, err
    plan = _plan(out)
    assert [stage for stage, _ in plan] == [
        "index",
        "bm25/msmarco-passage/dev/small",
        "bm25/msmarco-passage/trec-dl-2019/judged",
        "bm25/msmarco-passage/trec-dl-2020/judged",
        "train/t5ranker",
        "train/t5-reranking-loss",
        *[
            f"{step}/msmarco-passage/{ds}"
            for ds in ("dev/small", "trec-dl-2019/judged", "trec-dl-2020/judged")
            for step in ("rerank/T5Ranker", "rerank/T5WithRerankingLoss", "rerank/monoT5-base", "evaluate")
        ],
    ]
    assert all(status == "to run" for _, status in plan)
    downloads = out.split("would download:")[1]
    for url in (
        "msmarcoranking/collectionandqueries.tar.gz (1.1 GB)",
        "msmarcoranking/triples.train.small.tar.gz (7.9 GB)",
        "msmarcoranking/msmarco-test2019-queries.tsv.gz",
        "https://trec.nist.gov/data/deep/2020qrels-pass.txt",
        "https://huggingface.co/google-t5/t5-base",
        "https://huggingface.co/castorini/monot5-base-msmarco",
    ):
        assert url in downloads, url
    assert not (paths.home() / "runs" / "msmarco").exists()


# --- a small experiment end to end ----------------------------------------------------------------
def _hand_mrr(run_path: Path, qrels: dict[str, dict[str, int]]) -> float:
    """MRR@100 from a TREC file's rank column: an independent check of ranx."""
    first: dict[str, int] = {}
    for line in run_path.read_text().splitlines():
        qid, _, docid, rank, _, _ = line.split()
        if qrels.get(qid, {}).get(docid, 0) > 0 and int(rank) <= 100:
            first[qid] = min(first.get(qid, 10**9), int(rank))
    return sum(1 / first[q] if q in first else 0.0 for q in qrels) / len(qrels)


@pytest.mark.slow
@pytest.mark.java
def test_small_experiment_end_to_end_interrupted_resumed_and_reused(tmp_path, capsys, monkeypatch):
    from pipeline import data, training

    name, demo = "small", "demo-small"
    config = _write(tmp_path, SMALL.format(name=name, demo=demo, max_epoch=2, max_p=0.05))
    root = paths.home() / "runs" / name

    # 1. Interrupted during T5Ranker's training, after its first epoch was saved.
    real_plot = training.write_plot
    calls = []

    def interrupt_once(*args, **kwargs):
        real_plot(*args, **kwargs)
        calls.append(1)
        if len(calls) == 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(training, "write_plot", interrupt_once)
    code, out, err = _run(["run", str(config)], capsys)
    assert code == 130, err
    assert not (root / "report.md").exists()
    for stage in ("demo", "index", "bm25~demo-small~train", "bm25~demo-small~test", "init-model"):
        assert (root / "stages" / f"{stage}.json").is_file(), stage
    assert not (root / "stages" / "train~t5ranker.json").exists()

    # 2. Invoked again: finished stages reused, training resumed after epoch 1, the rest run.
    code, out, err = _run(["run", str(config)], capsys)
    assert code == 0, err
    for stage in ("demo", "index", "bm25/demo-small/valid", "init-model"):
        assert f"{stage}: reused" in err, stage
    assert "resuming after epoch 1" in err
    log = [json.loads(x) for x in (root / "models" / "t5ranker" / "train_log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [0, 1, 2]

    # Files: runs with sidecars, models, resolved config, report in three formats, plots, timings.
    test_runs = root / "runs" / demo / "test"
    for run in ("bm25", "t5ranker", "t5-reranking-loss"):
        assert (test_runs / f"{run}.trec").is_file() and (test_runs / f"{run}.trec.json").is_file(), run
    for model_type in ("t5ranker", "t5-reranking-loss"):
        assert (root / "models" / model_type / "best" / "config.json").is_file()
        assert (root / "models" / model_type / "train_curves.png").is_file()
    evaluation = root / "evaluation" / demo / "test"
    for suffix in ("md", "tex", "json", "txt", "means.png", "per-query-diff.png"):
        assert (evaluation / f"evaluation.{suffix}").is_file(), suffix
    for f in ("report.md", "report.tex", "report.json", "timings.md", "config.toml", "config.json"):
        assert (root / f).is_file(), f
    assert load_config(root / "config.toml").to_dict() == load_config(config).to_dict()

    # The report: BM25 and both rerankers with MRR@100, verdicts against BM25, plots linked.
    report = (root / "report.md").read_text()
    for row in ("BM25 (baseline)", "T5Ranker", "T5WithRerankingLoss"):
        assert f"| {row}" in report or f"| {row} " in report, row
    assert "MRR@100" in report and "significantly" in report
    assert "evaluation.means.png" in report and "train_curves.png" in report
    assert "T5Ranker: MRR@100" in out and f"report: {root / 'report.md'}" in out
    summary = json.loads((root / "report.json").read_text())
    means = summary["tests"][f"{demo}/test"]["means"]
    assert set(means) == {"BM25", "T5Ranker", "T5WithRerankingLoss"}
    # ranx's MRR@100 of BM25 equals the hand-computed one from the TREC file.
    qrels = data.qrels(f"{demo}/test")
    assert means["BM25"]["mrr@100"] == pytest.approx(_hand_mrr(test_runs / "bm25.trec", qrels), abs=1e-9)
    assert means["T5Ranker"]["mrr@100"] == pytest.approx(_hand_mrr(test_runs / "t5ranker.trec", qrels), abs=1e-9)
    # Reranked runs hold exactly BM25's top 30 of each query (rerank depth 30).
    top30 = {(q, d) for q, _, d, rank, _, _ in map(str.split, (test_runs / "bm25.trec").read_text().splitlines())
             if int(rank) <= 30}  # fmt: skip
    reranked = {(q, d) for q, _, d, *_ in map(str.split, (test_runs / "t5ranker.trec").read_text().splitlines())}
    assert reranked == top30

    # 3. A third invocation reuses every stage.
    code, out, err = _run(["run", str(config)], capsys)
    assert code == 0, err
    assert all(s["ran"] is False for s in json.loads((root / "report.json").read_text())["stages"])
    assert err.count(": reused") == 11 and "done in" not in err

    # 4. A changed evaluation setting redoes the evaluation only.
    _write(tmp_path, SMALL.format(name=name, demo=demo, max_epoch=2, max_p=0.01))
    code, out, err = _run(["run", str(config), "--dry-run"], capsys)
    plan = dict(_plan(out))
    assert plan.pop("evaluate/demo-small/test") == "to redo (inputs or settings changed)"
    assert set(plan.values()) == {"done"} and len(plan) == 10
    code, out, err = _run(["run", str(config)], capsys)
    assert code == 0, err
    ran = [s["stage"] for s in json.loads((root / "report.json").read_text())["stages"] if s["ran"]]
    assert ran == ["evaluate/demo-small/test"]
