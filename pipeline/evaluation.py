"""Evaluate and compare TREC runs with ranx: metrics, significance tests, explicit query sets.

All metrics and statistical tests are computed by ranx; this module decides *which*
queries are evaluated, breaks score ties, maps graded judgments like ``trec_eval -l``,
and adjusts ranx's p-values for multiple comparisons (ranx has no correction).

Query sets are explicit and the same for every run (as ``trec_eval -c``):

* every query with at least one judgment in the qrels is evaluated;
* a judged query that a run lacks counts as zero for that run (reported per run);
* queries of a run without any judgment are left out of every mean (reported per run).

Rankings follow the order ``pipeline.runs.write_run`` writes: score descending, then
document id ascending. Ties are broken here, before ranx sees the run, so a run file is
evaluated exactly in the order of its rank column.

Example:
    >>> evaluate("cacm", "runs/cacm/bm25.trec")  # doctest: +SKIP
    {'mrr@100': 0.58, 'ndcg@10': 0.38, 'recall@100': 0.61, 'map': 0.29}
    >>> result = compare("cacm", {"bm25": "runs/cacm/bm25.trec", "t5": "runs/cacm/t5.trec"},
    ...                  baseline="bm25")  # doctest: +SKIP
    >>> from pipeline.report import write_report; write_report(result, "runs/cacm")  # doctest: +SKIP
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.errors import PipelineError
from pipeline.runs import Run, read_run, sorted_hits

Qrels = dict[str, dict[str, int]]

DEFAULT_METRICS = ("mrr@100", "ndcg@10", "recall@100", "map")
STAT_TESTS = ("student", "fisher", "tukey")
CORRECTIONS = ("bonferroni", "holm", "none")
STAT_TEST_LABELS = {
    "student": "two-sided paired Student's t-test",
    "fisher": "Fisher's randomization test",
    "tukey": "Tukey's HSD test",
}
CORRECTION_LABELS = {"bonferroni": "Bonferroni", "holm": "Holm-Bonferroni", "none": "no correction"}

# ranx 0.3.21's metric names (ranx.metrics.metric_switch). Graded metrics use the judgment
# grades as gains; the others see a binary "relevant at --rel-level" judgment.
GRADED_METRICS = ("dcg", "dcg_burges", "ndcg", "ndcg_burges")
BINARY_METRICS = ("hits", "hit_rate", "precision", "recall", "f1", "r-precision", "mrr", "map", "bpref", "rbp")
METRIC_LABELS = {
    "hits": "Hits",
    "hit_rate": "Hit Rate",
    "precision": "P",
    "recall": "Recall",
    "f1": "F1",
    "r-precision": "R-Prec",
    "mrr": "MRR",
    "map": "MAP",
    "dcg": "DCG",
    "dcg_burges": "DCG-Burges",
    "ndcg": "nDCG",
    "ndcg_burges": "nDCG-Burges",
    "bpref": "BPref",
    "rbp": "RBP",
}
_METRIC_RE = re.compile(r"^(?P<base>[a-z][a-z0-9_\-]*?)(?:@(?P<k>\d+)|\.(?P<p>\d+))?$")
RUN_SUFFIXES = (".trec", ".txt", ".run", ".tsv")


# --- metric names ---------------------------------------------------------------------
def valid_metrics_text() -> str:
    """The accepted metric names, for error messages and ``--help``."""
    names = [f"{m}[@k]" for m in BINARY_METRICS + GRADED_METRICS if m != "rbp"]
    return ", ".join(names + ["rbp.P (persistence, e.g. rbp.95)"])


def check_metrics(metrics: Sequence[str] | str) -> list[str]:
    """Validate ranx metric names (``mrr@100``, ``ndcg@10``, ``map``, ``rbp.95``); return them as a list.

    Raises PipelineError listing the valid names. ranx's own ``-lN`` suffix is refused:
    the relevance level is one setting for the whole evaluation (``rel_level``).

    Example:
        >>> check_metrics(["mrr@100", "map"])
        ['mrr@100', 'map']
    """
    if isinstance(metrics, str):
        metrics = [metrics]
    metrics = list(metrics)
    if not metrics:
        raise PipelineError(f"no metric given; valid metrics: {valid_metrics_text()}")
    for name in metrics:
        if "-l" in name:
            raise PipelineError(f"metric {name!r}: give the relevance level with --rel-level / rel_level, not '-l'")
        match = _METRIC_RE.match(name)
        base = match.group("base") if match else None
        ok = (
            match is not None
            and base in BINARY_METRICS + GRADED_METRICS
            and (base != "rbp" or match.group("p") is not None)
            and (base == "rbp" or match.group("p") is None)
            and (match.group("k") is None or int(match.group("k")) > 0)
        )
        if not ok:
            raise PipelineError(f"unknown metric {name!r}; valid metrics: {valid_metrics_text()}")
    if len(set(metrics)) != len(metrics):
        raise PipelineError(f"metric listed twice in {metrics}")
    return metrics


def metric_base(metric: str) -> str:
    """``'ndcg@10'`` -> ``'ndcg'``; ``'rbp.95'`` -> ``'rbp'``."""
    return re.split(r"[@.]", metric, maxsplit=1)[0]


def metric_label(metric: str) -> str:
    """How a metric is printed in tables: ``'mrr@100'`` -> ``'MRR@100'``.

    Example:
        >>> metric_label("ndcg@10")
        'nDCG@10'
    """
    base = metric_base(metric)
    return METRIC_LABELS[base] + metric[len(base) :]


def is_graded(metric: str) -> bool:
    """True for the metrics that use judgment grades as gains (the nDCG/DCG family)."""
    return metric_base(metric) in GRADED_METRICS


# --- multiple comparisons ---------------------------------------------------------------
def adjust_p_values(p_values: Sequence[float], method: str) -> list[float]:
    """Adjust a family of p-values for multiple comparisons.

    ``bonferroni``: ``min(1, m p)``. ``holm`` (step-down): with the p-values sorted
    ascending, the i-th (1-based) becomes ``min(1, max_{j<=i} (m - j + 1) p_(j))``.
    ``none`` returns them unchanged. A NaN p-value (ranx's t-test on identical scores)
    is taken as 1.

    Example:
        >>> adjust_p_values([0.01, 0.04, 0.03], "holm")
        [0.03, 0.06, 0.06]
        >>> adjust_p_values([0.01, 0.04, 0.03], "bonferroni")
        [0.03, 0.12, 0.09]
    """
    if method not in CORRECTIONS:
        raise PipelineError(f"unknown correction {method!r}; choose one of {', '.join(CORRECTIONS)}")
    ps = [1.0 if (p is None or math.isnan(p)) else float(p) for p in p_values]
    m = len(ps)
    if method == "none":
        return ps
    if method == "bonferroni":
        return [min(1.0, m * p) for p in ps]
    order = sorted(range(m), key=lambda i: ps[i])
    adjusted = [0.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * ps[i]))
        adjusted[i] = running
    return adjusted


# --- query sets and ties ----------------------------------------------------------------
def run_name(path: str | os.PathLike) -> str:
    """A run's label from its file name: ``runs/cacm/bm25.trec`` -> ``bm25``."""
    name = Path(path).name
    for suffix in RUN_SUFFIXES:
        if name.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return name


def _ranked(run: Run) -> Run:
    """Replace scores by rank-derived scores, so ranx ranks in (score desc, doc id asc) order."""
    out = {}
    for qid, hits in run.items():
        ordered = sorted_hits(hits)
        n = len(ordered)
        out[qid] = {docid: float(n - i) for i, (docid, _) in enumerate(ordered)}
    return out


def _binary_qrels(qrels: Qrels, rel_level: int) -> Qrels:
    """Judgments >= rel_level become 1, the rest 0 (``trec_eval -l``); every query is kept."""
    return {qid: {docid: int(rel >= rel_level) for docid, rel in docs.items()} for qid, docs in qrels.items()}


@dataclass
class QuerySet:
    """Which queries are evaluated, and what each run lacks or adds.

    ``queries``: the judged queries every run is evaluated on (sorted).
    ``missing[name]``: judged queries the run lacks (scored 0).
    ``unjudged[name]``: the run's queries without judgments (left out).
    ``no_relevant``: evaluated queries with no document relevant at the relevance level
    (they count, with 0 for recall/MAP/MRR, as in trec_eval).
    """

    queries: list[str]
    missing: dict[str, list[str]]
    unjudged: dict[str, list[str]]
    no_relevant: list[str]


def query_set(qrels: Qrels, runs: Mapping[str, Run], rel_level: int = 1, sources: Mapping[str, str] | None = None):
    """Build the one query set all runs are evaluated on; error if a run shares no query with the qrels.

    Example:
        >>> qs = query_set({"1": {"d": 1}, "2": {"e": 0}}, {"r": {"1": {"d": 1.0}, "9": {"d": 1.0}}})
        >>> qs.queries, qs.missing, qs.unjudged, qs.no_relevant
        (['1', '2'], {'r': ['2']}, {'r': ['9']}, ['2'])
    """
    judged = set(qrels)
    if not judged:
        raise PipelineError("the qrels hold no judgment")
    queries = sorted(judged)
    missing, unjudged = {}, {}
    for name, run in runs.items():
        present = {qid for qid, hits in run.items() if hits}  # an empty ranking counts as missing
        common = judged & present
        if not common:
            where = (sources or {}).get(name, name)
            raise PipelineError(
                f"{where}: no query in common with the qrels (run queries e.g. {sorted(run)[:3]}, "
                f"judged queries e.g. {queries[:3]}): is it a run for another dataset?"
            )
        missing[name] = sorted(judged - common)
        unjudged[name] = sorted(present - judged)
    no_relevant = [q for q in queries if not any(rel >= rel_level for rel in qrels[q].values())]
    return QuerySet(queries, missing, unjudged, no_relevant)


# --- results ----------------------------------------------------------------------------
@dataclass
class Comparison:
    """One significance test: ``run`` against ``reference`` on ``metric``.

    ``wins``/``ties``/``losses`` count queries where ``run`` scores higher/equal/lower.
    ``significant`` is ``p_adjusted <= max_p``.
    """

    run: str
    reference: str
    metric: str
    difference: float
    p_value: float
    p_adjusted: float
    significant: bool
    wins: int
    ties: int
    losses: int


@dataclass
class ComparisonResult:
    """Everything a report needs: settings, query sets, per-query scores, means, tests."""

    dataset_id: str
    metrics: list[str]
    run_names: list[str]
    sources: dict[str, str]
    baseline: str | None
    stat_test: str
    correction: str
    max_p: float
    rel_level: int
    n_permutations: int
    random_seed: int
    query_set: QuerySet
    per_query: dict[str, dict[str, dict[str, float]]]
    means: dict[str, dict[str, float]]
    ci95: dict[str, dict[str, tuple[float, float]]]
    comparisons: list[Comparison] = field(default_factory=list)

    @property
    def reference(self) -> str:
        """The run others are plotted against: the baseline, else the first run."""
        return self.baseline or self.run_names[0]

    @property
    def n_comparisons(self) -> int:
        """Size of each family of tests: the pairs compared on one metric."""
        return len(self.pairs())

    def pairs(self) -> list[tuple[str, str]]:
        """(run, reference) pairs tested: each run vs the baseline, or all pairs (later vs earlier)."""
        return _pairs(self.run_names, self.baseline)

    def comparison(self, run: str, reference: str, metric: str) -> Comparison | None:
        """The test of ``run`` vs ``reference`` on ``metric`` (either order), or None."""
        for c in self.comparisons:
            if c.metric == metric and {c.run, c.reference} == {run, reference}:
                return c
        return None

    def method_text(self) -> str:
        """One sentence naming the test, correction, family size and threshold."""
        if len(self.run_names) < 2:
            return "One run: no significance test."
        scope = f"each run vs the baseline {self.baseline}" if self.baseline else "all pairs of runs"
        test = STAT_TEST_LABELS[self.stat_test]
        if self.stat_test == "fisher":
            # ranx issue #70: the seed does not reach the parallel permutation loop.
            test += (
                f" ({self.n_permutations} permutations, seed {self.random_seed}; ranx 0.3.21 does not reproduce "
                f"these p-values exactly, they vary by about sqrt(p(1-p)/{self.n_permutations}))"
            )
        n = len(self.run_names)
        if self.stat_test == "tukey":
            # Tukey's HSD adjusts within ranx over all pairs of the runs, whatever pairs are shown.
            corr = f"Tukey's HSD adjusts for all {n * (n - 1) // 2} pairs of the {n} runs, no further correction"
        elif self.correction == "none":
            corr = f"no correction for the {self.n_comparisons} comparison(s) per metric"
        else:
            corr = f"{CORRECTION_LABELS[self.correction]} correction over {self.n_comparisons} comparison(s) per metric"
        text = f"{test}, {scope}; {corr}; significant if adjusted p <= {self.max_p:g}."
        return text[0].upper() + text[1:]

    def query_text(self) -> list[str]:
        """Lines stating the query set: evaluated, missing per run (zero), unjudged per run (left out)."""
        qs = self.query_set
        lines = [f"{len(qs.queries)} judged queries evaluated for every run (dataset {self.dataset_id})."]
        if qs.no_relevant:
            lines.append(
                f"{len(qs.no_relevant)} of them have no document relevant at level >= {self.rel_level} "
                "(they score 0 on binary metrics, as in trec_eval)."
            )
        missing = ", ".join(f"{n} {len(qs.missing[n])}" for n in self.run_names)
        unjudged = ", ".join(f"{n} {len(qs.unjudged[n])}" for n in self.run_names)
        lines.append(f"Judged queries missing from a run (scored 0): {missing}.")
        lines.append(f"Run queries without judgments (left out): {unjudged}.")
        return lines


# --- ranx -------------------------------------------------------------------------------
def _ranx_groups(qrels: Qrels, metrics: list[str], rel_level: int) -> list[tuple[Qrels, list[str]]]:
    """Split metrics by the qrels they need: binary-mapped (``-l``) or graded as judged."""
    binary = [m for m in metrics if not is_graded(m)]
    graded = [m for m in metrics if is_graded(m)]
    groups = []
    if binary:
        groups.append((_binary_qrels(qrels, rel_level), binary))
    if graded:
        groups.append((qrels, graded))
    return groups


def _ranx_objects(qrels: Qrels, runs: Mapping[str, Run], queries: list[str]):
    """ranx Qrels and named Runs on exactly ``queries`` (the evaluation boundary).

    A judged query a run lacks gets empty results (it scores 0); the run's unjudged
    queries are dropped. Doing this here rather than with ranx's ``make_comparable``
    keeps the query set visible and avoids numba compiling typed-dict look-ups on
    every start (several seconds).
    """
    import ranx

    rqrels = ranx.Qrels({q: qrels[q] for q in queries}, name="qrels")
    rruns = [ranx.Run({q: run.get(q, {}) for q in queries}, name=name) for name, run in runs.items()]
    return rqrels, rruns


def _prepare(qrels: Qrels, runs: Mapping[str, Run], metrics, rel_level: int, sources=None):
    metrics = check_metrics(metrics)
    if not isinstance(rel_level, int) or rel_level < 1:
        raise PipelineError(f"relevance level must be an integer >= 1, not {rel_level!r}")
    if not runs:
        raise PipelineError("no run to evaluate")
    qs = query_set(qrels, runs, rel_level, sources)
    return metrics, qs, {name: _ranked(run) for name, run in runs.items()}


def _ranx_compare(rqrels, rruns, metrics, stat_test, n_permutations, max_p, random_seed):
    """ranx ``compare`` on the prepared objects (``evaluate`` for a single run, returning None).

    ``make_comparable=False``: ``_ranx_objects`` already gave every run the same query set,
    and ranx asserts that. Per-query scores are left by ranx in each ``Run.scores``.
    """
    import ranx

    if len(rruns) == 1:
        ranx.evaluate(rqrels, rruns[0], metrics, make_comparable=False)
        return None
    return ranx.compare(
        rqrels,
        rruns,
        metrics=metrics,
        stat_test=stat_test,
        n_permutations=n_permutations,
        max_p=max_p,
        random_seed=random_seed,
        make_comparable=False,
    )


def _ci95(values: list[float]) -> tuple[float, float]:
    """Two-sided 95% confidence interval of the mean (Student's t, n - 1 degrees of freedom)."""
    import numpy as np
    from scipy import stats

    x = np.asarray(values, dtype=float)
    mean = float(x.mean())
    if len(x) < 2:
        return (mean, mean)
    half = float(stats.t.ppf(0.975, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x)))
    return (mean - half, mean + half)


def compare_runs(
    qrels: Qrels,
    runs: Mapping[str, Run],
    metrics: Sequence[str] | str = DEFAULT_METRICS,
    baseline: str | None = None,
    stat_test: str = "student",
    max_p: float = 0.05,
    correction: str | None = None,
    rel_level: int = 1,
    n_permutations: int = 1000,
    random_seed: int = 42,
    dataset_id: str = "",
    sources: Mapping[str, str] | None = None,
) -> ComparisonResult:
    """Evaluate named runs (dicts) against qrels (dict) with ranx and test their differences.

    ``correction`` defaults to ``holm`` for student/fisher and ``none`` for tukey (Tukey's
    HSD already controls the family-wise error; adding Bonferroni/Holm on top is refused).
    The family of each correction is the pairs tested on one metric.

    Example:
        >>> r = compare_runs({"1": {"a": 1}, "2": {"b": 1}},
        ...                  {"x": {"1": {"a": 2.0}, "2": {"b": 1.0}}, "y": {"1": {"z": 1.0}, "2": {"b": 1.0}}},
        ...                  metrics=["mrr"], baseline="x")
        >>> r.means["y"]["mrr"], r.comparisons[0].losses
        (0.5, 1)
    """
    if stat_test not in STAT_TESTS:
        raise PipelineError(f"unknown test {stat_test!r}; choose one of {', '.join(STAT_TESTS)}")
    if correction is None:
        correction = "none" if stat_test == "tukey" else "holm"
    if correction not in CORRECTIONS:
        raise PipelineError(f"unknown correction {correction!r}; choose one of {', '.join(CORRECTIONS)}")
    if stat_test == "tukey" and correction != "none":
        raise PipelineError(
            "Tukey's HSD already controls the family-wise error over all pairs; use correction 'none' with it"
        )
    if not 0 < max_p < 1:
        raise PipelineError(f"max p must be between 0 and 1, not {max_p}")
    runs = dict(runs)
    if baseline is not None and baseline not in runs:
        raise PipelineError(f"baseline {baseline!r} is not one of the runs: {', '.join(runs)}")
    if len(runs) < 2:
        baseline = None
    metrics, qs, ranked = _prepare(qrels, runs, metrics, rel_level, sources)

    import warnings

    names = list(runs)
    per_query: dict[str, dict[str, dict[str, float]]] = {name: {} for name in names}
    raw_tests: dict[tuple[str, str, str], tuple[float, int, int, int]] = {}
    for group_qrels, group_metrics in _ranx_groups(qrels, metrics, rel_level):
        rqrels, rruns = _ranx_objects(group_qrels, ranked, qs.queries)
        # ranx's numba kernels warn about a harmless uint64 -> int64 cast on every call.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="unsafe cast from uint64 to int64")
            # scipy's t-test on constant differences (e.g. one run better on every query by the
            # same amount) warns about precision; the p-value it returns (~0) is still right.
            warnings.filterwarnings("ignore", message="Precision loss occurred in moment calculation")
            report = _ranx_compare(rqrels, rruns, group_metrics, stat_test, n_permutations, max_p, random_seed)
        for rrun in rruns:
            for m in group_metrics:
                per_query[rrun.name][m] = {q: float(rrun.scores[m][q]) for q in qs.queries}
        if report is not None:
            for run, ref in _pairs(names, baseline):
                for m in group_metrics:
                    wtl = report.win_tie_loss[(run, ref)][m]
                    p = float(report.comparisons[run, ref][m]["p_value"])
                    raw_tests[(run, ref, m)] = (p, wtl["W"], wtl["T"], wtl["L"])

    means = {n: {m: sum(per_query[n][m].values()) / len(qs.queries) for m in metrics} for n in names}
    ci95 = {n: {m: _ci95(list(per_query[n][m].values())) for m in metrics} for n in names}

    comparisons = []
    pairs = _pairs(names, baseline)
    for m in metrics:
        raw = [raw_tests[(run, ref, m)][0] for run, ref in pairs]
        adjusted = adjust_p_values(raw, correction)
        for (run, ref), p, p_adj in zip(pairs, raw, adjusted, strict=True):
            _, w, t, losses = raw_tests[(run, ref, m)]
            comparisons.append(
                Comparison(
                    run=run,
                    reference=ref,
                    metric=m,
                    difference=means[run][m] - means[ref][m],
                    p_value=p,
                    p_adjusted=p_adj,
                    significant=p_adj <= max_p,
                    wins=w,
                    ties=t,
                    losses=losses,
                )
            )
    return ComparisonResult(
        dataset_id=dataset_id,
        metrics=metrics,
        run_names=names,
        sources={n: str((sources or {}).get(n, n)) for n in names},
        baseline=baseline,
        stat_test=stat_test,
        correction=correction,
        max_p=max_p,
        rel_level=rel_level,
        n_permutations=n_permutations,
        random_seed=random_seed,
        query_set=qs,
        per_query=per_query,
        means=means,
        ci95=ci95,
        comparisons=comparisons,
    )


def _pairs(names: list[str], baseline: str | None) -> list[tuple[str, str]]:
    if baseline:
        return [(n, baseline) for n in names if n != baseline]
    return [(names[j], names[i]) for i in range(len(names)) for j in range(i + 1, len(names))]


# --- the public verbs ---------------------------------------------------------------------
def load_runs(runs: Mapping[str, Run | str | os.PathLike] | Sequence[Run | str | os.PathLike]):
    """Named runs from paths or dicts: ``({name: run}, {name: source})``.

    A list is named after the files (``bm25.trec`` -> ``bm25``; dicts ``run_1``, ``run_2``, …);
    a mapping keeps its names. Every file is read and validated (file:line errors).
    """
    if isinstance(runs, Mapping):
        items = list(runs.items())
    else:
        items = []
        for i, run in enumerate(runs, start=1):
            items.append((run_name(run) if isinstance(run, (str, os.PathLike)) else f"run_{i}", run))
    loaded, sources = {}, {}
    for name, run in items:
        if not name or any(c.isspace() for c in name):
            raise PipelineError(f"run name {name!r} must be one word")
        if name in loaded:
            raise PipelineError(f"two runs are named {name!r}; name them with NAME=PATH")
        if isinstance(run, (str, os.PathLike)):
            loaded[name] = read_run(run)
            sources[name] = str(run)
        else:
            loaded[name] = run
            sources[name] = name
    return loaded, sources


def evaluate(
    dataset_id: str,
    run_or_path: Run | str | os.PathLike,
    metrics: Sequence[str] | str = DEFAULT_METRICS,
    rel_level: int = 1,
) -> dict[str, float]:
    """Mean of each metric over the dataset's judged queries (missing queries score 0).

    Metrics are ranx names (``mrr@100``, ``ndcg@10``, ``recall@100``, ``map``, ``precision@10``…);
    ``rel_level`` is the lowest grade counted as relevant by binary metrics (``trec_eval -l``);
    nDCG uses the grades.

    Example:
        >>> evaluate("cacm", "runs/cacm/bm25.trec", metrics=["map"])  # doctest: +SKIP
        {'map': 0.2961}
    """
    metrics = check_metrics(metrics)
    runs, sources = load_runs(
        {run_name(run_or_path) if isinstance(run_or_path, (str, os.PathLike)) else "run": run_or_path}
    )
    from pipeline import data

    result = compare_runs(
        data.qrels(dataset_id), runs, metrics, rel_level=rel_level, dataset_id=dataset_id, sources=sources
    )
    name = result.run_names[0]
    return dict(result.means[name])


def compare(
    dataset_id: str,
    runs: Mapping[str, Run | str | os.PathLike] | Sequence[Run | str | os.PathLike],
    metrics: Sequence[str] | str = DEFAULT_METRICS,
    baseline: str | None = None,
    stat_test: str = "student",
    max_p: float = 0.05,
    correction: str | None = None,
    rel_level: int = 1,
    n_permutations: int = 1000,
    random_seed: int = 42,
) -> ComparisonResult:
    """Evaluate runs on a dataset's qrels and test their differences (ranx ``compare``).

    ``runs``: ``{name: run dict or TREC file}`` or a list of files (named after the files).
    ``baseline``: compare each run against it only; otherwise all pairs.
    ``stat_test``: ``student`` (paired t-test), ``fisher`` (randomization), ``tukey`` (HSD).
    ``correction``: ``holm`` (default for student/fisher), ``bonferroni`` or ``none``.

    Example:
        >>> res = compare("cacm", ["runs/cacm/bm25.trec", "runs/cacm/t5.trec"], baseline="bm25")  # doctest: +SKIP
        >>> [(c.run, c.metric, c.p_adjusted) for c in res.comparisons]  # doctest: +SKIP
    """
    metrics = check_metrics(metrics)
    loaded, sources = load_runs(runs)
    from pipeline import data

    return compare_runs(
        data.qrels(dataset_id),
        loaded,
        metrics,
        baseline=baseline,
        stat_test=stat_test,
        max_p=max_p,
        correction=correction,
        rel_level=rel_level,
        n_permutations=n_permutations,
        random_seed=random_seed,
        dataset_id=dataset_id,
        sources=sources,
    )
