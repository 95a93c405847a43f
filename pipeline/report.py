"""Reports of a :class:`pipeline.evaluation.ComparisonResult`: text, Markdown, LaTeX, JSON, CSV, plots.

Significance is marked the way IR papers do and explained under every table:

* against a baseline: ``†`` significantly better than the baseline, ``‡`` significantly worse;
* all pairs: each run has a letter (a, b, …); a score carries the letters of the runs it is
  significantly better than.

Example:
    >>> from pipeline.evaluation import compare  # doctest: +SKIP
    >>> result = compare("cacm", ["runs/cacm/bm25.trec", "runs/cacm/t5.trec"], baseline="bm25")  # doctest: +SKIP
    >>> print(render(result, "markdown"))  # doctest: +SKIP
    >>> write_report(result, "runs/cacm")  # doctest: +SKIP
"""

from __future__ import annotations

import csv
import json
import math
import os
import string
from pathlib import Path

from pipeline.errors import PipelineError
from pipeline.evaluation import ComparisonResult, metric_label
from pipeline.runs import atomic_path, git_commit, package_versions, write_json

FORMATS = ("table", "markdown", "latex", "json")
LETTERS = string.ascii_lowercase
_SUPERSCRIPT = dict(zip(LETTERS, "ᵃᵇᶜᵈᵉᶠᵍʰⁱʲᵏˡᵐⁿᵒᵖᑫʳˢᵗᵘᵛʷˣʸᶻ", strict=True))
BETTER, WORSE = "†", "‡"
DIGITS = 4


# --- markers ----------------------------------------------------------------------------
def letter(result: ComparisonResult, name: str) -> str:
    """The letter a run is referred to by in all-pairs tables (a, b, …; aa… past 26)."""
    i = result.run_names.index(name)
    return LETTERS[i] if i < 26 else LETTERS[i // 26 - 1] + LETTERS[i % 26]


def markers(result: ComparisonResult, name: str, metric: str) -> list[str]:
    """Significance markers of one cell: ``['†']``/``['‡']`` vs a baseline, else run letters.

    Example:
        >>> markers(result, "t5", "mrr@100")  # doctest: +SKIP
        ['†']
    """
    out = []
    if result.baseline:
        if name == result.baseline:
            return out
        c = result.comparison(name, result.baseline, metric)
        if c is not None and c.significant:
            out.append(BETTER if result.means[name][metric] > result.means[result.baseline][metric] else WORSE)
        return out
    for other in result.run_names:
        if other == name:
            continue
        c = result.comparison(name, other, metric)
        if c is not None and c.significant and result.means[name][metric] > result.means[other][metric]:
            out.append(letter(result, other))
    return out


def legend(result: ComparisonResult) -> str:
    """The sentence under a table that explains its markers."""
    if len(result.run_names) < 2:
        return ""
    if result.baseline:
        return (
            f"{BETTER} significantly better than the baseline ({result.baseline}), "
            f"{WORSE} significantly worse (adjusted p <= {result.max_p:g})."
        )
    return (
        "A letter marks a score significantly higher than that of the run with that letter "
        f"(adjusted p <= {result.max_p:g})."
    )


def _best(result: ComparisonResult, metric: str) -> set[str]:
    top = max(round(result.means[n][metric], DIGITS) for n in result.run_names)
    return {n for n in result.run_names if round(result.means[n][metric], DIGITS) == top}


def _fmt(x: float) -> str:
    return f"{x:.{DIGITS}f}"


def _p(x: float) -> str:
    if x is None or math.isnan(x):
        return "n/a"
    return f"{x:.4f}" if x >= 1e-4 else "<0.0001"


# --- text -------------------------------------------------------------------------------
def _aligned(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _mean_rows(result: ComparisonResult, sup) -> list[list[str]]:
    rows = [["#", "Run"] + [metric_label(m) for m in result.metrics]]
    for name in result.run_names:
        row = [letter(result, name), name + (" (baseline)" if name == result.baseline else "")]
        row += [_fmt(result.means[name][m]) + sup(markers(result, name, m)) for m in result.metrics]
        rows.append(row)
    return rows


def _comparison_rows(result: ComparisonResult) -> list[list[str]]:
    rows = [["Run", "vs", "Metric", "Delta", "p", "p adj.", "W/T/L", "Sig."]]
    for c in result.comparisons:
        rows.append(
            [
                c.run,
                c.reference,
                metric_label(c.metric),
                f"{c.difference:+.{DIGITS}f}",
                _p(c.p_value),
                _p(c.p_adjusted),
                f"{c.wins}/{c.ties}/{c.losses}",
                "yes" if c.significant else "no",
            ]
        )
    return rows


def _notes(result: ComparisonResult) -> list[str]:
    notes = [x for x in (legend(result), result.method_text()) if x]
    notes += result.query_text()
    notes.append(
        f"Binary metrics count grades >= {result.rel_level} as relevant (trec_eval -l); nDCG/DCG use the grades."
    )
    return notes


def to_text(result: ComparisonResult) -> str:
    """A plain-text report: means table, notes, and the comparisons with W/T/L."""
    sup = lambda ms: "".join(_SUPERSCRIPT.get(m, m) for m in ms)  # noqa: E731
    parts = [_aligned(_mean_rows(result, sup)), "", *_notes(result)]
    if result.comparisons:
        parts += ["", _aligned(_comparison_rows(result))]
    return "\n".join(parts) + "\n"


def _md_table(rows: list[list[str]]) -> str:
    esc = [[cell.replace("|", "\\|") for cell in row] for row in rows]
    lines = ["| " + " | ".join(esc[0]) + " |", "|" + "|".join("---" for _ in esc[0]) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in esc[1:]]
    return "\n".join(lines)


def to_markdown(result: ComparisonResult) -> str:
    """A Markdown report (GitHub tables, ``<sup>`` markers, best score in bold)."""
    rows = _mean_rows(result, lambda ms: f"<sup>{''.join(ms)}</sup>" if ms else "")
    for r, name in zip(rows[1:], result.run_names, strict=True):
        for j, m in enumerate(result.metrics):
            if name in _best(result, m) and len(result.run_names) > 1:
                score, _, rest = r[2 + j].partition("<sup>")
                r[2 + j] = f"**{score}**" + (f"<sup>{rest}" if rest else "")
    parts = [_md_table(rows), ""]
    parts += [f"- {n}" for n in _notes(result)]
    if result.comparisons:
        parts += ["", _md_table(_comparison_rows(result))]
    return "\n".join(parts) + "\n"


_TEX_ESCAPES = {
    "\\": "\\textbackslash{}",
    "&": "\\&",
    "%": "\\%",
    "$": "\\$",
    "#": "\\#",
    "_": "\\_",
    "{": "\\{",
    "}": "\\}",
    "~": "\\textasciitilde{}",
    "^": "\\textasciicircum{}",
}


def _tex(s: str) -> str:
    """Escape LaTeX specials in one pass; write <= and >= as math."""
    s = "".join(_TEX_ESCAPES.get(c, c) for c in s)
    return s.replace(">=", "$\\geq$").replace("<=", "$\\leq$")


def to_latex(result: ComparisonResult) -> str:
    """A booktabs LaTeX table; markers as superscripts, best score bold, caption explains the test."""
    tex_marker = {BETTER: "\\dagger", WORSE: "\\ddagger"}
    cols = "cl" + "c" * len(result.metrics)
    lines = [
        "% needs \\usepackage{booktabs}",
        "\\begin{table}[t]",
        "\\centering",
        f"\\begin{{tabular}}{{{cols}}}",
        "\\toprule",
        " & ".join(["\\#", "Run"] + [_tex(metric_label(m)) for m in result.metrics]) + " \\\\",
        "\\midrule",
    ]
    for name in result.run_names:
        cells = [letter(result, name), _tex(name)]
        for m in result.metrics:
            score = _fmt(result.means[name][m])
            if name in _best(result, m) and len(result.run_names) > 1:
                score = f"\\textbf{{{score}}}"
            ms = markers(result, name, m)
            if ms:
                score += "$^{" + "".join(tex_marker.get(x, x) for x in ms) + "}$"
            cells.append(score)
        lines.append(" & ".join(cells) + " \\\\")
    caption = " ".join(_tex(n) for n in _notes(result))
    caption = caption.replace(BETTER, "$^{\\dagger}$").replace(WORSE, "$^{\\ddagger}$")
    lines += [
        "\\bottomrule",
        "\\end{tabular}",
        f"\\caption{{{caption}}}",
        "\\label{tab:results}",
        "\\end{table}",
    ]
    return "\n".join(lines) + "\n"


def _num(x: float) -> float | None:
    return None if x is None or math.isnan(x) else x


def to_dict(result: ComparisonResult) -> dict:
    """Everything in JSON-ready form: settings, query sets, means with CIs, per-query scores, tests."""
    qs = result.query_set
    return {
        "dataset": result.dataset_id,
        "metrics": result.metrics,
        "runs": result.run_names,
        "baseline": result.baseline,
        "stat_test": result.stat_test,
        "correction": result.correction,
        "comparisons_per_metric": result.n_comparisons if len(result.run_names) > 1 else 0,
        "max_p": result.max_p,
        "rel_level": result.rel_level,
        "n_permutations": result.n_permutations,
        "random_seed": result.random_seed,
        "method": result.method_text(),
        "legend": legend(result),
        "queries": {
            "evaluated": len(qs.queries),
            "no_relevant": qs.no_relevant,
            "missing": {n: qs.missing[n] for n in result.run_names},
            "unjudged": {n: qs.unjudged[n] for n in result.run_names},
        },
        "results": {
            n: {
                "source": result.sources[n],
                "mean": result.means[n],
                "ci95": {m: list(result.ci95[n][m]) for m in result.metrics},
                "markers": {m: markers(result, n, m) for m in result.metrics},
                "per_query": result.per_query[n],
            }
            for n in result.run_names
        },
        "comparisons": [
            {
                "run": c.run,
                "reference": c.reference,
                "metric": c.metric,
                "difference": c.difference,
                "p_value": _num(c.p_value),
                "p_adjusted": _num(c.p_adjusted),
                "significant": c.significant,
                "win": c.wins,
                "tie": c.ties,
                "loss": c.losses,
            }
            for c in result.comparisons
        ],
    }


def render(result: ComparisonResult, fmt: str = "table") -> str:
    """The report in one format: ``table`` (plain text), ``markdown``, ``latex`` or ``json``."""
    if fmt == "table":
        return to_text(result)
    if fmt == "markdown":
        return to_markdown(result)
    if fmt == "latex":
        return to_latex(result)
    if fmt == "json":
        return json.dumps(to_dict(result), indent=2, sort_keys=True) + "\n"
    raise PipelineError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")


# --- plots ------------------------------------------------------------------------------
def _figure(width: float, height: float):
    # The object-oriented Agg API: no pyplot global state, no display needed.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _save_png(fig, path: Path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", metadata={"Software": None})
    return path


def plot_differences(result: ComparisonResult, path: str | os.PathLike) -> Path | None:
    """Per-query difference of each run minus the reference on the first metric, sorted bars.

    Returns None with a single run (nothing to compare).
    """
    others = [n for n in result.run_names if n != result.reference]
    if not others:
        return None
    metric = result.metrics[0]
    ref = result.reference
    queries = result.query_set.queries
    fig = _figure(10, 2.6 * len(others) + 0.6)
    axes = fig.subplots(len(others), 1, squeeze=False)[:, 0]
    for ax, name in zip(axes, others, strict=True):
        diffs = sorted(
            ((result.per_query[name][metric][q] - result.per_query[ref][metric][q], q) for q in queries),
            key=lambda x: (-x[0], x[1]),
        )
        values = [d for d, _ in diffs]
        colors = ["tab:green" if d > 0 else "tab:red" if d < 0 else "tab:gray" for d in values]
        ax.bar(range(len(values)), values, color=colors, width=1.0 if len(values) > 60 else 0.8)
        ax.axhline(0, color="black", linewidth=0.8)
        wins = sum(d > 0 for d in values)
        losses = sum(d < 0 for d in values)
        ax.set_title(
            f"{name} − {ref}: {metric_label(metric)} per query "
            f"(better {wins}, equal {len(values) - wins - losses}, worse {losses}; "
            f"mean {result.means[name][metric] - result.means[ref][metric]:+.4f})",
            fontsize=9,
        )
        ax.set_ylabel(f"Δ {metric_label(metric)}")
        if len(values) <= 40:
            ax.set_xticks(range(len(values)), [q for _, q in diffs], rotation=90, fontsize=6)
        else:
            ax.set_xticks([])
            ax.set_xlabel(f"{len(values)} queries, sorted by difference")
    fig.tight_layout()
    return _save_png(fig, Path(path))


def plot_means(result: ComparisonResult, path: str | os.PathLike) -> Path:
    """Metric means per run with 95% confidence intervals (grouped bars)."""
    names, metrics = result.run_names, result.metrics
    fig = _figure(max(5, 1.6 * len(metrics) * max(1, len(names)) ** 0.5 + 2), 4)
    ax = fig.subplots()
    width = 0.8 / len(names)
    for i, name in enumerate(names):
        xs = [j + (i - (len(names) - 1) / 2) * width for j in range(len(metrics))]
        means = [result.means[name][m] for m in metrics]
        err = [
            [means[j] - result.ci95[name][m][0] for j, m in enumerate(metrics)],
            [result.ci95[name][m][1] - means[j] for j, m in enumerate(metrics)],
        ]
        ax.bar(xs, means, width=width, yerr=err, capsize=3, label=name)
    ax.set_xticks(range(len(metrics)), [metric_label(m) for m in metrics])
    ax.set_ylabel("mean over queries (95% CI)")
    ax.set_title(f"{result.dataset_id}: {len(result.query_set.queries)} judged queries", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _save_png(fig, Path(path))


# --- files ------------------------------------------------------------------------------
def write_per_query_csv(result: ComparisonResult, path: str | os.PathLike) -> Path:
    """``query_id,run,metric,value,in_run``: one row per query, run and metric (long format)."""
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["query_id", "run", "metric", "value", "in_run"])
        for name in result.run_names:
            missing = set(result.query_set.missing[name])
            for m in result.metrics:
                for q in result.query_set.queries:
                    writer.writerow([q, name, m, repr(result.per_query[name][m][q]), int(q not in missing)])
    return path


def _write_text(text: str, path: Path) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path


def write_report(result: ComparisonResult, output_dir: str | os.PathLike, name: str = "evaluation") -> list[Path]:
    """Write ``<name>.txt/.md/.tex/.json``, ``<name>.per-query.csv`` and the PNG plots; return the paths.

    Each file is written atomically. The JSON also records package versions and the git commit.

    Example:
        >>> write_report(result, "runs/cacm")  # doctest: +SKIP
        [PosixPath('runs/cacm/evaluation.txt'), ...]
    """
    out = Path(output_dir)
    if not name or "/" in name:
        raise PipelineError(f"report name {name!r} must be a plain file name")
    data = to_dict(result)
    data["versions"] = package_versions()
    data["git_commit"] = git_commit()
    paths = [
        _write_text(to_text(result), out / f"{name}.txt"),
        _write_text(to_markdown(result), out / f"{name}.md"),
        _write_text(to_latex(result), out / f"{name}.tex"),
        write_json(data, out / f"{name}.json"),
        write_per_query_csv(result, out / f"{name}.per-query.csv"),
        plot_means(result, out / f"{name}.means.png"),
    ]
    diff = plot_differences(result, out / f"{name}.per-query-diff.png")
    if diff is not None:
        paths.append(diff)
    return paths
