"""The ``pipeline`` command: argparse subcommands mapped onto the library's functions.

Each subcommand has an ``_add_<name>`` function that declares its arguments and a
``_cmd_<name>`` handler that calls the library. Heavy modules (torch, transformers,
the JVM) are imported inside handlers so ``pipeline --help`` starts fast.

Example:
    >>> main(["datasets", "list"])  # doctest: +SKIP
"""

from __future__ import annotations

import argparse
import os
import sys

from pipeline.errors import PipelineError


# --- datasets -------------------------------------------------------------------------
def _add_datasets(sub) -> None:
    p = sub.add_parser("datasets", help="register local collections as ir_datasets ids; list them")
    dsub = p.add_subparsers(dest="datasets_command", required=True)
    add = dsub.add_parser("add", help="register a local collection under NAME")
    add.add_argument("name", help="the dataset id to register, e.g. cacm")
    add.add_argument("--docs", required=True, help="JSONL ({'id':…, 'contents':…}) or TSV (id<TAB>text)")
    add.add_argument("--queries", required=True, help="TSV: qid<TAB>text")
    add.add_argument("--qrels", help="TREC qrels: qid 0 docid relevance")
    add.add_argument("--docpairs", help="TSV: qid<TAB>pos_docid<TAB>neg_docid")
    add.add_argument("--split", help="e.g. train=0.6,valid=0.2,test=0.2: makes NAME/train, NAME/valid, …")
    add.add_argument("--seed", type=int, default=0, help="seed of the query split (default 0)")
    add.add_argument("--force", action="store_true", help="replace an existing registration of NAME")
    add.set_defaults(func=_cmd_datasets_add)
    lst = dsub.add_parser("list", help="list registered local datasets")
    lst.set_defaults(func=_cmd_datasets_list)


def _cmd_datasets_add(args) -> int:
    from pipeline import data

    ids = data.register(
        args.name,
        docs=args.docs,
        queries=args.queries,
        qrels=args.qrels,
        docpairs=args.docpairs,
        split=args.split,
        seed=args.seed,
        force=args.force,
    )
    rows = {row["id"]: row for row in data.list_datasets()}
    print(f"registered {', '.join(ids)} (files under {data.dataset_dir(args.name)}):")
    _print_datasets_table([rows[ds_id] for ds_id in ids], sources=False)
    if rows[ids[0]].get("empty_docs"):
        print(f"note: {rows[ids[0]]['empty_docs']} document(s) have empty text (Anserini skips them when indexing)")
    return 0


def _print_datasets_table(rows, sources=True) -> None:
    cols = ["id", "docs", "queries", "judged", "qrels", "docpairs"] + (["sources"] if sources else [])
    table = [cols]
    for row in rows:
        cells = [row["id"], row["docs"], row["queries"], row["judged_queries"], row["qrels"], row["docpairs"]]
        if sources:
            kinds = ("docs", "queries", "qrels", "docpairs")
            files = " ".join(f"--{k} {row['sources'][k]}" for k in kinds if k in row["sources"])
            cells.append(files if row["id"] == row["name"] else f"split {row['split']} seed {row['seed']}")
        table.append([str(c) for c in cells])
    widths = [max(len(r[i]) for r in table) for i in range(len(cols))]
    for r in table:
        cells = [
            c.ljust(w) if col in ("id", "sources") else c.rjust(w) for col, c, w in zip(cols, r, widths, strict=True)
        ]
        print("  ".join(cells).rstrip())


def _cmd_datasets_list(args) -> int:
    from pipeline import data

    rows = data.list_datasets()
    if not rows:
        print("no local datasets registered; add one with `pipeline datasets add NAME --docs FILE --queries FILE`")
        return 0
    _print_datasets_table(rows)
    return 0


# --- index / retrieve -----------------------------------------------------------------
def _add_index(sub) -> None:
    p = sub.add_parser("index", help="build the Lucene index of a dataset's corpus")
    p.add_argument("dataset", help="dataset id, e.g. cacm or msmarco-passage")
    p.add_argument("--threads", type=int, default=None, help="indexing threads (default: all cores)")
    p.add_argument("--force", action="store_true", help="rebuild even if a complete or incomplete index exists")
    p.set_defaults(func=_cmd_index)


def _cmd_index(args) -> int:
    from pipeline.retrieval import build_index

    print(build_index(args.dataset, threads=args.threads, force=args.force))
    return 0


def _add_retrieve(sub) -> None:
    p = sub.add_parser("retrieve", help="BM25 first stage: write runs/<dataset id>/bm25.trec")
    p.add_argument("dataset", help="dataset id whose queries are searched")
    p.add_argument("--k", type=int, default=100, help="hits per query (default 100)")
    # None here means "not given", so --msmarco-params can refuse a contradicting --k1/--b.
    p.add_argument("--k1", type=float, default=None, help="BM25 k1 (default 0.9, Pyserini's API default)")
    p.add_argument("--b", type=float, default=None, help="BM25 b (default 0.4, Pyserini's API default)")
    p.add_argument(
        "--msmarco-params",
        action="store_true",
        help="k1=0.82 b=0.68, the values Pyserini's CLI picks silently on MS MARCO passage indexes",
    )
    p.add_argument("--threads", type=int, default=None, help="search threads (default: all cores)")
    p.add_argument("--output", help="run file to write (default runs/<dataset id>/bm25.trec)")
    p.set_defaults(func=_cmd_retrieve)


def _cmd_retrieve(args) -> int:
    from pipeline.retrieval import DEFAULT_B, DEFAULT_K1, MSMARCO_PARAMS, retrieve

    if args.msmarco_params:
        if args.k1 is not None or args.b is not None:
            raise PipelineError("give either --msmarco-params or --k1/--b, not both")
        k1, b = MSMARCO_PARAMS["k1"], MSMARCO_PARAMS["b"]
    else:
        k1 = DEFAULT_K1 if args.k1 is None else args.k1
        b = DEFAULT_B if args.b is None else args.b
    print(retrieve(args.dataset, k=args.k, k1=k1, b=b, threads=args.threads, output=args.output))
    return 0


# --- init-model / rerank --------------------------------------------------------------
def _add_init_model(sub) -> None:
    p = sub.add_parser("init-model", help="make an offline T5 (tokenizer trained on a corpus, random weights)")
    p.add_argument("--corpus", required=True, help="dataset id whose documents and queries train the tokenizer")
    p.add_argument("--output", required=True, help="folder to write the Hugging Face model to")
    p.add_argument("--size", choices=["tiny", "small"], default="tiny", help="tiny (~0.5M params) or t5-small")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_cmd_init_model)


def _cmd_init_model(args) -> int:
    import json

    from pipeline.modelinit import SIDECAR, init_model

    path = init_model(args.corpus, args.output, size=args.size, seed=args.seed)
    made = json.loads((path / SIDECAR).read_text(encoding="utf-8"))
    print(path)
    size, params, vocab = made["size"], made["parameters"], made["vocab_size"]
    print(f"{size} T5: {params:,} parameters, vocabulary {vocab:,} (seed {made['seed']})")
    return 0


def _add_rerank(sub) -> None:
    p = sub.add_parser("rerank", help="rerank a TREC run with a T5 reranker")
    p.add_argument("dataset", help="dataset id of the run's queries")
    p.add_argument("--model", required=True, help="reranker folder or Hugging Face model name")
    p.add_argument("--run", required=True, help="TREC run to rerank, e.g. runs/<dataset>/bm25.trec")
    p.add_argument("--depth", type=int, default=100, help="candidates per query (default 100)")
    p.add_argument("--batch-size", type=int, default=None, help="pairs per forward pass")
    p.add_argument("--skip-missing", action="store_true", help="drop run docids absent from the corpus")
    p.add_argument("--output", help="run file to write (default runs/<dataset id>/<run>.<model>.trec)")
    p.set_defaults(func=_cmd_rerank)


def _cmd_rerank(args) -> int:
    from pipeline.rerankers import rerank_dataset

    path = rerank_dataset(
        args.dataset,
        args.model,
        args.run,
        depth=args.depth,
        batch_size=args.batch_size,
        output=args.output,
        skip_missing=args.skip_missing,
    )
    print(path)
    return 0


# --- train ----------------------------------------------------------------------------
def _add_train(sub) -> None:
    from pipeline.trainconfig import add_arguments

    p = sub.add_parser(
        "train",
        help="train a reranker; validate with MRR@100 each epoch",
        description="Train a T5 reranker on a dataset's docpairs or qrels (+ BM25 negatives); after every epoch "
        "rerank the validation queries' BM25 top valid_depth and keep the best MRR@100 checkpoint in OUTPUT/best. "
        "Settings: defaults < --config TOML < flags.",
    )
    p.add_argument("dataset", help="training dataset id (docpairs, or qrels + BM25 negatives), e.g. cranfield/train")
    p.add_argument(
        "--model-type",
        required=True,
        metavar="TYPE",
        help="t5ranker or t5-reranking-loss (seed aliases: vanilla_t5, T5_with_reranking_loss)",
    )
    p.add_argument("--base-model", required=True, help="T5 checkpoint folder or hub name, e.g. google-t5/t5-base")
    p.add_argument("--valid", required=True, help="validation dataset id with qrels, e.g. cranfield/valid")
    p.add_argument("--output", required=True, help="run folder: best/, last/, train_log.jsonl, train_curves.png")
    p.add_argument("--valid-run", help="TREC run of the validation queries to rerank (default: BM25, retrieved here)")
    p.add_argument("--config", help="TOML file of settings (top-level keys or a [train] table)")
    p.add_argument("--resume", action="store_true", help="continue the run in --output from its last epoch")
    p.add_argument("--overwrite", action="store_true", help="discard the run in --output and start over")
    add_arguments(p.add_argument_group("settings (default: the TOML file, else the value shown)"))
    p.set_defaults(func=_cmd_train)


def _cmd_train(args) -> int:
    from pipeline.trainconfig import load_settings, overrides_from_args
    from pipeline.training import LOG_FILE, VALID_KEY, read_log, train

    settings = load_settings(args.config, overrides_from_args(args))
    _, best_epoch = train(
        args.dataset,
        args.valid,
        args.model_type,
        args.base_model,
        args.output,
        settings,
        resume=args.resume,
        overwrite=args.overwrite,
        valid_run=args.valid_run,
    )
    log = read_log(f"{args.output}/{LOG_FILE}")
    untrained = next((r[VALID_KEY] for r in log if r["epoch"] == 0), None)
    best = next(r[VALID_KEY] for r in log if r["epoch"] == best_epoch)
    print(
        f"best epoch {best_epoch} of {log[-1]['epoch']}: {VALID_KEY} {best:.4f}"
        + (f" (untrained {untrained:.4f})" if untrained is not None else "")
        + f"; model in {args.output}/best"
    )
    return 0


# --- evaluate -------------------------------------------------------------------------
def _add_evaluate(sub) -> None:
    from pipeline.evaluation import CORRECTIONS, DEFAULT_METRICS, STAT_TESTS, valid_metrics_text

    p = sub.add_parser(
        "evaluate",
        help="evaluate and compare runs with ranx: metrics, significance tests, reports, plots",
        description="Evaluate TREC runs on a dataset's qrels with ranx. Every judged query is evaluated for "
        "every run (missing queries score 0; queries without judgments are left out). Writes <name>.txt/.md/"
        ".tex/.json, <name>.per-query.csv and PNG plots to --output; prints the report.",
    )
    p.add_argument("dataset", help="dataset id whose qrels judge the runs, e.g. cacm")
    p.add_argument(
        "runs", nargs="+", metavar="RUN", help="TREC run file, or NAME=FILE to label it (default label: file name)"
    )
    p.add_argument(
        "--metrics",
        nargs="+",
        default=list(DEFAULT_METRICS),
        help=f"ranx metric names (default: {' '.join(DEFAULT_METRICS)}); valid: {valid_metrics_text()}",
    )
    p.add_argument("--baseline", help="compare each run against this one (a label or file); default: all pairs")
    p.add_argument(
        "--test", choices=STAT_TESTS, default="student", help="paired t-test (default), Fisher randomization, Tukey HSD"
    )
    p.add_argument(
        "--max-p", type=float, default=0.05, help="significance threshold on adjusted p-values (default 0.05)"
    )
    p.add_argument(
        "--correction",
        choices=CORRECTIONS,
        default=None,
        help="multiple-comparison correction per metric (default: holm; none with --test tukey)",
    )
    p.add_argument(
        "--rel-level",
        type=int,
        default=1,
        help="lowest grade counted relevant by binary metrics, as trec_eval -l (default 1); nDCG keeps grades",
    )
    p.add_argument(
        "--format",
        choices=("table", "markdown", "latex", "json"),
        default="table",
        help="what to print (all four are written)",
    )
    p.add_argument("--output", help="folder for the report files (default runs/<dataset id>/)")
    p.add_argument("--name", default="evaluation", help="base name of the report files (default evaluation)")
    p.add_argument("--permutations", type=int, default=1000, help="permutations of Fisher's test (default 1000)")
    p.add_argument("--seed", type=int, default=42, help="random seed of Fisher's test (default 42)")
    p.set_defaults(func=_cmd_evaluate)


def _cmd_evaluate(args) -> int:
    from pathlib import Path

    from pipeline import paths
    from pipeline.evaluation import check_metrics, compare, run_name

    metrics = check_metrics(args.metrics)  # before reading anything
    runs, by_path = {}, {}
    for spec in args.runs:
        name, sep, path = spec.partition("=")
        if not sep or not name or Path(spec).exists():
            name, path = run_name(spec), spec
        if name in runs:
            raise PipelineError(f"two runs are labelled {name!r}; label them with NAME=FILE")
        runs[name] = path
        by_path[str(Path(path))] = name
    baseline = args.baseline
    if baseline is not None and baseline not in runs:
        baseline = by_path.get(str(Path(baseline)), baseline)
    result = compare(
        args.dataset,
        runs,
        metrics=metrics,
        baseline=baseline,
        stat_test=args.test,
        max_p=args.max_p,
        correction=args.correction,
        rel_level=args.rel_level,
        n_permutations=args.permutations,
        random_seed=args.seed,
    )
    from pipeline.report import render, write_report

    written = write_report(result, args.output or paths.runs_dir(args.dataset), name=args.name)
    print(render(result, args.format), end="")
    print(f"wrote {len(written)} files: {', '.join(str(p) for p in written)}", file=sys.stderr)
    return 0


# --- run (whole experiment) -----------------------------------------------------------
def _add_run(sub) -> None:
    p = sub.add_parser(
        "run",
        help="run a whole experiment (default: the built-in offline demo)",
        description="Stages: [demo data] -> index -> BM25 (train/valid/test) -> [init-model] -> train T5Ranker "
        "and T5WithRerankingLoss -> rerank the test BM25 top-k -> evaluate against BM25. Outputs go to "
        "runs/<name>/; a stage whose inputs and settings are unchanged is reused.",
    )
    p.add_argument(
        "config",
        nargs="?",
        help="experiment TOML, or the name of a shipped config (demo, msmarco); default: the embedded demo",
    )
    p.add_argument("--force", action="store_true", help="redo every stage")
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="print the plan, what is done and what would be downloaded; run nothing, no network",
    )
    p.set_defaults(func=_cmd_run)


def _cmd_run(args) -> int:
    from pipeline.experiment import run_experiment

    run_experiment(args.config, force=args.force, dry_run=args.dry_run)
    return 0


# --- bench ----------------------------------------------------------------------------
def _add_bench(sub) -> None:
    p = sub.add_parser("bench", help="benchmarks against a baseline in the same run")
    bsub = p.add_subparsers(dest="bench_command", required=True)
    r = bsub.add_parser("retrieve", help="pipeline retrieve vs Pyserini's CLI, cold, on CACM")
    r.add_argument("dataset", nargs="?", default="cacm", help="registered dataset id (default cacm)")
    r.add_argument("--repeats", type=int, default=5, help="cold runs of each command (default 5)")
    r.add_argument("--threads", type=int, default=None, help="search threads for both (default: all cores)")
    r.set_defaults(func=_cmd_bench_retrieve)
    rr = bsub.add_parser("rerank", help="this scorer vs seed-style and reference-monoT5-style scorers")
    rr.add_argument("dataset", nargs="?", default="cacm", help="registered dataset id (default cacm)")
    rr.add_argument("--model", help="T5 folder (default: init-model --size small on the dataset, made if absent)")
    rr.add_argument("--queries", type=int, default=3, help="queries, evenly spread over the ids (default 3; 0 = all)")
    rr.add_argument("--depth", type=int, default=100, help="BM25 candidates per query (default 100)")
    rr.add_argument("--batch-size", type=int, default=32, help="pairs per forward pass, all scorers (default 32)")
    rr.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    rr.add_argument("--rounds", type=int, default=1, help="rounds of queries, scorers in rotating order (default 1)")
    rr.add_argument("--output", help="also write the figures as JSON to this file")
    rr.set_defaults(func=_cmd_bench_rerank)
    t = bsub.add_parser("train", help="training pairs/s: length-grouped dynamic padding vs fixed 512")
    _add_bench_train_args(t)
    t.set_defaults(func=_cmd_bench_train)


def _cmd_bench_retrieve(args) -> int:
    from pipeline.bench.retrieve import main as bench_retrieve

    return bench_retrieve(args.dataset, repeats=args.repeats, threads=args.threads)


def _cmd_bench_rerank(args) -> int:
    from pipeline.bench.rerank import main as bench_rerank

    return bench_rerank(
        args.dataset,
        args.model,
        queries=args.queries or None,
        depth=args.depth,
        batch_size=args.batch_size,
        threads=args.threads,
        rounds=args.rounds,
        output=args.output,
    )


def _add_bench_train_args(t) -> None:
    t.add_argument(
        "dataset", nargs="?", default="cranfield", help="registered dataset id with qrels (default cranfield)"
    )
    t.add_argument(
        "--model", help="T5 folder (default: init-model --size SIZE on the dataset's corpus, made if absent)"
    )
    t.add_argument(
        "--size", choices=["tiny", "small"], default="tiny", help="model made without --model (default tiny)"
    )
    t.add_argument("--model-type", default="t5ranker", help="t5ranker (default) or t5-reranking-loss")
    t.add_argument("--steps", type=int, default=20, help="timed optimizer steps per variant (default 20)")
    t.add_argument("--batch-size", type=int, default=8, help="examples per optimizer step (default 8)")
    t.add_argument("--grad-acc-size", type=int, default=8, help="examples per micro-batch (default 8)")
    t.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    t.add_argument("--output", help="also write the figures as JSON to this file")


def _cmd_bench_train(args) -> int:
    from pipeline.bench.train import main as bench_train

    return bench_train(
        dataset=args.dataset,
        model=args.model,
        size=args.size,
        model_type=args.model_type,
        steps=args.steps,
        batch_size=args.batch_size,
        grad_acc_size=args.grad_acc_size,
        threads=args.threads,
        output=args.output,
    )


# --- main -----------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (all subcommands)."""
    parser = argparse.ArgumentParser(
        prog="pipeline",
        description="BM25 (Pyserini) -> T5 rerankers -> TREC runs -> ranx evaluation.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for add in (
        _add_datasets,
        _add_index,
        _add_retrieve,
        _add_init_model,
        _add_rerank,
        _add_train,
        _add_evaluate,
        _add_run,
        _add_bench,
    ):
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``pipeline`` command; returns the exit status.

    A :class:`PipelineError` is printed as one line on stderr (exit status 2).
    """
    from pipeline import distributed

    args = build_parser().parse_args(argv)
    if not distributed.is_main():
        # Under torchrun only rank 0 reports results (paths, tables); errors still reach stderr.
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115
    try:
        return args.func(args) or 0
    except PipelineError as exc:
        print(f"pipeline: error: {distributed.rank_prefix()}{exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("pipeline: interrupted", file=sys.stderr)
        return 130
