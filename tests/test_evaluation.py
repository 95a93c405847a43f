"""Evaluation and comparison: checked against trec_eval, ranx's own compare, hand-computed values.

References used:
* Pyserini's bundled trec_eval (run as a subprocess) for MAP, MRR@100, nDCG@10, recall@100
  and for ``-l`` (``--rel-level``) on real BM25 runs of CACM and Cranfield;
* ranx's own ``compare()`` on ranx objects built the plain way, for p-values;
* hand-computed Bonferroni/Holm adjustments and metric values on tiny cases.
"""

from __future__ import annotations

import csv
import json
import math
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.cli import main
from pipeline.errors import PipelineError
from pipeline.evaluation import adjust_p_values, check_metrics, compare, compare_runs, evaluate, query_set
from pipeline.report import render, write_report
from pipeline.runs import read_run, write_run

ROOT = Path(__file__).resolve().parents[1]
TREC_EVAL_NAMES = {"map": "map", "mrr@100": "recip_rank", "ndcg@10": "ndcg_cut_10", "recall@100": "recall_100"}


def trec_eval(qrels: Path, run: Path, *options: str) -> dict[str, dict[str, float]]:
    """Pyserini's trec_eval as a subprocess: ``{measure: {qid or 'all': value}}`` (with ``-q``)."""
    # `python -m pipeline.java` puts its Java 21 first on PATH for trec_eval's own `java` call.
    cmd = [sys.executable, "-m", "pipeline.java", "pyserini.eval.trec_eval", *options, "-q", str(qrels), str(run)]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert out.returncode == 0, out.stderr
    values: dict[str, dict[str, float]] = {}
    for line in out.stdout.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0] != "runid":
            values.setdefault(parts[0], {})[parts[1]] = float(parts[2])
    assert values, f"no trec_eval output: {out.stdout!r} {out.stderr!r}"
    return values


def cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# --- pure functions ---------------------------------------------------------------------
def test_bonferroni_and_holm_on_hand_computed_case():
    p = [0.01, 0.02, 0.03]
    # Bonferroni: m * p, capped at 1.
    assert adjust_p_values(p, "bonferroni") == pytest.approx([0.03, 0.06, 0.09])
    # Holm: sorted p * (m, m-1, m-2) = 0.03, 0.04, 0.03, then a running maximum: 0.03, 0.04, 0.04.
    assert adjust_p_values(p, "holm") == pytest.approx([0.03, 0.04, 0.04])
    assert adjust_p_values(p, "none") == p
    # Unsorted input, caps at 1, a NaN (t-test on identical scores) taken as 1.
    assert adjust_p_values([0.04, 0.5, 0.005, float("nan")], "holm") == pytest.approx([0.12, 1.0, 0.02, 1.0])
    assert adjust_p_values([0.4, 0.3], "bonferroni") == pytest.approx([0.8, 0.6])
    # At 0.05, Holm keeps all three significant where Bonferroni keeps one.
    assert [x <= 0.05 for x in adjust_p_values(p, "bonferroni")] == [True, False, False]
    assert [x <= 0.05 for x in adjust_p_values(p, "holm")] == [True, True, True]


def test_metric_names_ranx_style_and_unknown_ones():
    names = ["mrr@100", "ndcg@10", "recall@100", "map", "map@100", "precision@10", "rbp.95", "f1@5", "r-precision"]
    assert check_metrics(names) == names
    for bad in ["mrr@", "nDCG@10", "mrr@0", "foo", "recall@x", "rbp", "map-l2", "ndcg.5"]:
        with pytest.raises(PipelineError) as err:
            check_metrics([bad])
        assert repr(bad) in str(err.value)
    with pytest.raises(PipelineError, match=r"unknown metric 'foo'; valid metrics: hits\[@k\].*mrr\[@k\].*ndcg\[@k\]"):
        check_metrics(["map", "foo"])


def test_hand_computed_metrics_query_sets_and_rel_level():
    qrels = {"q1": {"a": 1, "b": 2}, "q2": {"c": 2}, "q3": {"d": 0}}
    runs = {
        "r": {"q1": {"a": 2.0, "b": 1.0}, "q9": {"a": 1.0}},  # lacks q2 and q3; q9 is not judged
        "s": {"q1": {"b": 1.0, "a": 1.0}, "q2": {"x": 3.0, "c": 2.0}, "q3": {"d": 1.0}},  # q1: a tie
    }
    res = compare_runs(qrels, runs, ["mrr@100", "map", "ndcg@10"], rel_level=2, baseline="r")
    qs = res.query_set
    assert qs.queries == ["q1", "q2", "q3"]
    assert qs.missing == {"r": ["q2", "q3"], "s": []}
    assert qs.unjudged == {"r": ["q9"], "s": []}
    assert qs.no_relevant == ["q3"]  # judged (grade 0) but nothing relevant: counts, scores 0
    assert query_set(qrels, {"e": {"q1": {"a": 1.0}, "q2": {}}}).missing == {"e": ["q2", "q3"]}  # empty = missing
    # rel_level=2: only b (q1) and c (q2) are relevant for MRR/MAP; nDCG keeps grades 1 and 2.
    assert res.per_query["r"]["mrr@100"] == {"q1": 0.5, "q2": 0.0, "q3": 0.0}
    assert res.means["r"]["mrr@100"] == pytest.approx(0.5 / 3)
    # s ranks q1 by (score desc, doc id asc): a then b -> RR 1/2; q2: x then c -> 1/2.
    assert res.per_query["s"]["mrr@100"] == {"q1": 0.5, "q2": 0.5, "q3": 0.0}
    dcg = 1 / math.log2(2) + 2 / math.log2(3)
    idcg = 2 / math.log2(2) + 1 / math.log2(3)
    assert res.per_query["r"]["ndcg@10"]["q1"] == pytest.approx(dcg / idcg)
    assert res.means["s"]["map"] == pytest.approx((0.5 + 0.5 + 0) / 3)
    c = res.comparison("s", "r", "mrr@100")
    assert (c.wins, c.ties, c.losses) == (1, 2, 0)
    assert c.difference == pytest.approx(1 / 6)
    text = render(res, "table")
    assert "3 judged queries evaluated" in text
    assert "Judged queries missing from a run (scored 0): r 2, s 0." in text
    assert "Run queries without judgments (left out): r 1, s 0." in text
    assert "1 of them have no document relevant at level >= 2" in text


def test_report_files_markers_and_csv(tmp_path):
    qrels = {str(q): {f"d{q}": 1} for q in range(12)}
    good = {str(q): {f"d{q}": 2.0, "x": 1.0} for q in range(12)}  # relevant first everywhere
    bad = {str(q): {"x": 2.0, f"d{q}": 1.0} for q in range(12)}  # relevant second everywhere
    mixed = {str(q): ({f"d{q}": 2.0, "x": 1.0} if q % 2 else {"x": 2.0, f"d{q}": 1.0}) for q in range(11)}
    res = compare_runs(qrels, {"bad": bad, "good": good, "mixed": mixed}, ["mrr@10", "ndcg@10"], dataset_id="toy")
    # good > bad on every query: significant; letters name the run beaten.
    assert res.comparison("good", "bad", "mrr@10").significant
    text = render(res, "table")
    assert "good   1.0000ᵃᶜ" in text
    assert "Holm-Bonferroni correction over 3 comparison(s) per metric" in text
    paths = write_report(res, tmp_path / "out", name="rep")
    names = sorted(p.name for p in paths)
    assert names == sorted(
        ["rep.txt", "rep.md", "rep.tex", "rep.json", "rep.per-query.csv", "rep.means.png", "rep.per-query-diff.png"]
    )
    assert sorted(os.listdir(tmp_path / "out")) == names  # no temporary files left behind
    for png in ("rep.means.png", "rep.per-query-diff.png"):
        assert (tmp_path / "out" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    tex = (tmp_path / "out" / "rep.tex").read_text()
    assert "\\textbf{1.0000}$^{ac}$" in tex  # good beats bad (a) and mixed (c)
    assert "\\begin{tabular}" in tex and "\\end{table}" in tex
    md = (tmp_path / "out" / "rep.md").read_text()
    assert "**1.0000**<sup>ac</sup>" in md
    with open(tmp_path / "out" / "rep.per-query.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 12 * 3 * 2
    missing = [r for r in rows if r["in_run"] == "0"]
    assert {(r["query_id"], r["run"]) for r in missing} == {("11", "mixed")}
    assert all(float(r["value"]) == 0.0 for r in missing)
    data = json.loads((tmp_path / "out" / "rep.json").read_text())
    gb = [c for c in data["comparisons"] if (c["run"], c["reference"], c["metric"]) == ("good", "bad", "mrr@10")][0]
    assert (gb["win"], gb["tie"], gb["loss"]) == (12, 0, 0)
    assert data["queries"]["missing"]["mixed"] == ["11"]
    assert data["results"]["mixed"]["mean"]["mrr@10"] == pytest.approx((5 * 1.0 + 6 * 0.5 + 0) / 12)


# --- real CACM: trec_eval -------------------------------------------------------------------
@pytest.fixture(scope="module")
def cacm_runs(cacm, tmp_path_factory) -> dict[str, Path]:
    """Three real runs on CACM: BM25 (0.9, 0.4), BM25 (1.2, 0.75), and BM25 shuffled (seed 0)."""
    from pipeline.retrieval import bm25, build_index, retrieve

    build_index(cacm, threads=2)  # reused when complete (cacm_index is function-scoped)
    folder = tmp_path_factory.mktemp("cacm-runs")
    default = retrieve(cacm, threads=2, output=folder / "bm25.trec")
    other = bm25(cacm, k1=1.2, b=0.75, threads=2)
    rng = random.Random(0)
    shuffled = {}
    for qid, hits in sorted(read_run(default).items()):
        docids = sorted(hits)
        rng.shuffle(docids)
        shuffled[qid] = {d: float(len(docids) - i) for i, d in enumerate(docids)}
    return {
        "bm25": default,
        "bm25_k1.2_b0.75": write_run(other, folder / "bm25_k1.2_b0.75.trec", tag="bm25_k1.2_b0.75"),
        "shuffled": write_run(shuffled, folder / "shuffled.trec", tag="shuffled"),
    }


@pytest.mark.slow
@pytest.mark.java
def test_cacm_bm25_metrics_equal_trec_eval(cacm, cacm_runs, tmp_path, capsys):
    from pipeline.data import export_qrels

    run = cacm_runs["bm25"]
    code, out, err = cli(capsys, "evaluate", cacm, str(run), "--format", "json", "--output", str(tmp_path))
    assert code == 0, err
    ours = json.loads(out)
    assert ours["metrics"] == ["mrr@100", "ndcg@10", "recall@100", "map"]  # default set, MRR@100 first
    assert ours["queries"]["evaluated"] == 52

    # -c: average over every judged query (ours counts missing queries as 0); -M 100: depth 100.
    ref = trec_eval(export_qrels(cacm), run, "-c", "-M", "100", "-m", "map", "-m", "recip_rank", "-m", "ndcg_cut.10",
                    "-m", "recall.100", "-m", "num_q")  # fmt: skip
    assert ref["num_q"]["all"] == 52
    for metric, name in TREC_EVAL_NAMES.items():
        assert round(ours["results"]["bm25"]["mean"][metric], 4) == ref[name]["all"], metric
        per_query = ours["results"]["bm25"]["per_query"][metric]
        assert set(per_query) == set(ref[name]) - {"all"}
        for qid, value in per_query.items():
            assert round(value, 4) == pytest.approx(ref[name][qid], abs=1e-9), (metric, qid)
    # The Python function gives the same means.
    assert evaluate(cacm, run) == pytest.approx(ours["results"]["bm25"]["mean"])


@pytest.mark.slow
@pytest.mark.java
def test_rel_level_equals_trec_eval_l(cranfield, cranfield_index, tmp_path, capsys):
    from pipeline.data import export_qrels
    from pipeline.retrieval import retrieve

    run = retrieve(cranfield, threads=2, output=tmp_path / "bm25.trec")
    code, out, err = cli(
        capsys, "evaluate", cranfield, str(run), "--rel-level", "3", "--format", "json", "--output", str(tmp_path)
    )
    assert code == 0, err
    ours = json.loads(out)["results"]["bm25"]["mean"]
    ref = trec_eval(export_qrels(cranfield), run, "-c", "-l", "3", "-M", "100", "-m", "map", "-m", "recip_rank",
                    "-m", "ndcg_cut.10", "-m", "recall.100")  # fmt: skip
    for metric, name in TREC_EVAL_NAMES.items():
        assert round(ours[metric], 4) == ref[name]["all"], metric
    # The level changes the binary metrics and leaves nDCG (graded) alone.
    level1 = evaluate(cranfield, run)
    assert level1["map"] != pytest.approx(ours["map"])
    assert level1["ndcg@10"] == pytest.approx(ours["ndcg@10"])


# --- three runs: ranx's own compare ---------------------------------------------------------
@pytest.mark.slow
@pytest.mark.java  # the cacm_runs fixture runs BM25 on Lucene
@pytest.mark.parametrize("stat_test", ["student", "fisher", "tukey"])
def test_three_runs_p_values_equal_ranx_compare(cacm, cacm_runs, stat_test, tmp_path):
    import ranx

    from pipeline.data import qrels

    metrics = ["mrr@100", "ndcg@10", "map"]
    res = compare(cacm, cacm_runs, metrics=metrics, stat_test=stat_test)
    # Reference: ranx used the plain way on the same files and qrels.
    ref_runs = []
    for name, path in cacm_runs.items():
        run = ranx.Run.from_file(str(path), kind="trec")
        run.name = name
        ref_runs.append(run)
    ref = ranx.compare(ranx.Qrels(qrels(cacm)), ref_runs, metrics=metrics, stat_test=stat_test, make_comparable=True)
    ref_dict = ref.to_dict()
    assert len(res.comparisons) == 3 * len(metrics)
    for c in res.comparisons:
        expected_p = float(ref_dict[c.run]["comparisons"][c.reference][c.metric])
        if stat_test == "fisher":
            # ranx 0.3.21's randomization test ignores its seed inside the parallel loop, so two
            # calls differ by Monte Carlo error (ranx issue #70): allow 5 standard errors of both.
            se = math.sqrt(max(expected_p * (1 - expected_p), 1e-3) / res.n_permutations)
            assert abs(c.p_value - expected_p) <= 5 * math.sqrt(2) * se, (c, expected_p)
        else:
            assert c.p_value == pytest.approx(expected_p, rel=1e-12)
        wtl = ref_dict[c.run]["win_tie_loss"][c.reference][c.metric]
        assert (c.wins, c.ties, c.losses) == (wtl["W"], wtl["T"], wtl["L"])
    for name in cacm_runs:
        assert res.means[name] == pytest.approx(ref.results[name])
    # Adjusted p-values: the correction applied to ranx's p-values, per metric over 3 pairs.
    expected = "none" if stat_test == "tukey" else "holm"
    assert res.correction == expected and res.n_comparisons == 3
    for m in metrics:
        family = [c for c in res.comparisons if c.metric == m]
        assert [c.p_adjusted for c in family] == pytest.approx(adjust_p_values([c.p_value for c in family], expected))


@pytest.mark.slow
@pytest.mark.java  # the cacm_runs fixture runs BM25 on Lucene
def test_three_runs_cli_latex_markers(cacm, cacm_runs, tmp_path, capsys):
    runs = [f"{name}={path}" for name, path in cacm_runs.items()]
    code, out, err = cli(
        capsys, "evaluate", cacm, *runs, "--baseline", "shuffled", "--correction", "bonferroni", "--format", "latex",
        "--output", str(tmp_path),
    )  # fmt: skip
    assert code == 0, err
    assert out == (tmp_path / "evaluation.tex").read_text()
    data = json.loads((tmp_path / "evaluation.json").read_text())
    assert data["correction"] == "bonferroni" and data["comparisons_per_metric"] == 2
    assert [c["reference"] for c in data["comparisons"]] == ["shuffled"] * 8
    bm25_mrr = [c for c in data["comparisons"] if c["run"] == "bm25" and c["metric"] == "mrr@100"][0]
    # BM25 beats a random order of its own hits on CACM by far.
    assert bm25_mrr["significant"] and bm25_mrr["p_adjusted"] == pytest.approx(min(1, 2 * bm25_mrr["p_value"]))
    assert data["results"]["bm25"]["markers"]["mrr@100"] == ["†"]
    # The LaTeX table marks it, and its caption explains marker, test and correction.
    line = [x for x in out.splitlines() if x.startswith("a & bm25 &")][0]
    assert "$^{\\dagger}$" in line
    assert "$^{\\dagger}$ significantly better than the baseline (shuffled)" in out
    assert "Bonferroni correction over 2 comparison(s) per metric" in out
    assert "Two-sided paired Student's t-test, each run vs the baseline shuffled" in out
    # Every significant comparison, and only those, carries a marker.
    for c in data["comparisons"]:
        assert bool(data["results"][c["run"]]["markers"][c["metric"]]) == c["significant"]
    # W/T/L in the JSON agree with the per-query CSV.
    with open(tmp_path / "evaluation.per-query.csv", newline="") as f:
        scores = {(r["run"], r["metric"], r["query_id"]): float(r["value"]) for r in csv.DictReader(f)}
    for c in data["comparisons"]:
        qids = {q for (run, m, q) in scores if run == c["run"] and m == c["metric"]}
        diffs = [scores[(c["run"], c["metric"], q)] - scores[(c["reference"], c["metric"], q)] for q in qids]
        assert (c["win"], c["tie"], c["loss"]) == (
            sum(d > 0 for d in diffs),
            sum(d == 0 for d in diffs),
            sum(d < 0 for d in diffs),
        )


# --- bad input: one clear line, nothing written ----------------------------------------------
GOOD = "1 Q0 CACM-1410 1 2.0 t\n1 Q0 CACM-1572 2 1.0 t\n"


@pytest.mark.parametrize(
    "content, message",
    [
        (GOOD + "2 Q0 CACM-1 1 1.0\n", r"bad\.trec:3: not TREC run format"),
        (GOOD + "2 Q0 CACM-1 1 abc t\n", r"bad\.trec:3: score 'abc' is not a number"),
        (GOOD + "1 Q0 CACM-1410 3 0.5 t\n", r"bad\.trec:3: document 'CACM-1410' appears twice for query '1'"),
        ("", r"bad\.trec: run file is empty"),
        ("301 Q0 d1 1 1.0 t\n302 Q0 d2 1 1.0 t\n", r"bad\.trec: no query in common with the qrels"),
    ],
    ids=["malformed-line", "non-numeric-score", "duplicate-pair", "empty", "other-dataset"],
)
def test_bad_run_clear_error_nothing_written(cacm, tmp_path, capsys, content, message):
    import re

    good = tmp_path / "good.trec"
    good.write_text(GOOD)
    bad = tmp_path / "bad.trec"
    bad.write_text(content)
    out_dir = tmp_path / "out"
    code, out, err = cli(capsys, "evaluate", cacm, str(good), str(bad), "--output", str(out_dir))
    assert code == 2
    assert err.startswith("pipeline: error: ") and err.count("\n") == 1
    assert re.search(message, err), err
    assert not out_dir.exists()


def test_unknown_metric_clear_error_nothing_written(tmp_path, capsys):
    out_dir = tmp_path / "out"
    # The metric is checked before the dataset or the runs are even looked at.
    code, out, err = cli(
        capsys, "evaluate", "no-such-dataset", "missing.trec", "--metrics", "map", "mrr@ten", "--output", str(out_dir)
    )
    assert code == 2
    assert "unknown metric 'mrr@ten'; valid metrics:" in err and "ndcg[@k]" in err
    assert not out_dir.exists()


def test_tukey_refuses_extra_correction_and_unknown_baseline():
    qrels = {"1": {"a": 1}, "2": {"b": 1}}
    runs = {"x": {"1": {"a": 1.0}}, "y": {"2": {"b": 1.0}}}
    with pytest.raises(PipelineError, match="Tukey's HSD already controls"):
        compare_runs(qrels, runs, ["map"], stat_test="tukey", correction="holm")
    with pytest.raises(PipelineError, match="baseline 'z' is not one of the runs: x, y"):
        compare_runs(qrels, runs, ["map"], baseline="z")
