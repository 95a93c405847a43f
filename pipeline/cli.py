"""The ``pipeline`` command: argparse subcommands mapped onto the library's functions.

Each subcommand has an ``_add_<name>`` function that declares its arguments and a
``_cmd_<name>`` handler that calls the library. Heavy modules (torch, transformers,
the JVM) are imported inside handlers so ``pipeline --help`` starts fast.

Example:
    >>> main(["datasets", "list"])  # doctest: +SKIP
"""

from __future__ import annotations

import argparse
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
    raise PipelineError("datasets add: not implemented yet")


def _cmd_datasets_list(args) -> int:
    raise PipelineError("datasets list: not implemented yet")


# --- index / retrieve -----------------------------------------------------------------
def _add_index(sub) -> None:
    p = sub.add_parser("index", help="build the Lucene index of a dataset's corpus")
    p.add_argument("dataset", help="dataset id, e.g. cacm or msmarco-passage")
    p.add_argument("--threads", type=int, default=None, help="indexing threads (default: all cores)")
    p.set_defaults(func=_cmd_index)


def _cmd_index(args) -> int:
    raise PipelineError("index: not implemented yet")


def _add_retrieve(sub) -> None:
    p = sub.add_parser("retrieve", help="BM25 first stage: write runs/<dataset id>/bm25.trec")
    p.add_argument("dataset", help="dataset id whose queries are searched")
    p.add_argument("--k", type=int, default=100, help="hits per query (default 100)")
    p.add_argument("--k1", type=float, default=0.9, help="BM25 k1 (default 0.9, Pyserini's API default)")
    p.add_argument("--b", type=float, default=0.4, help="BM25 b (default 0.4, Pyserini's API default)")
    p.add_argument(
        "--msmarco-params",
        action="store_true",
        help="k1=0.82 b=0.68, the values Pyserini's CLI picks silently on MS MARCO passage indexes",
    )
    p.add_argument("--threads", type=int, default=None, help="search threads (default: all cores)")
    p.add_argument("--output", help="run file to write (default runs/<dataset id>/bm25.trec)")
    p.set_defaults(func=_cmd_retrieve)


def _cmd_retrieve(args) -> int:
    raise PipelineError("retrieve: not implemented yet")


# --- init-model / rerank --------------------------------------------------------------
def _add_init_model(sub) -> None:
    p = sub.add_parser("init-model", help="make an offline T5 (tokenizer trained on a corpus, random weights)")
    p.add_argument("--corpus", required=True, help="dataset id whose documents and queries train the tokenizer")
    p.add_argument("--output", required=True, help="folder to write the Hugging Face model to")
    p.add_argument("--size", choices=["tiny", "small"], default="tiny", help="tiny (~0.5M params) or t5-small")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_cmd_init_model)


def _cmd_init_model(args) -> int:
    raise PipelineError("init-model: not implemented yet")


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
    raise PipelineError("rerank: not implemented yet")


# --- train ----------------------------------------------------------------------------
def _add_train(sub) -> None:
    p = sub.add_parser("train", help="train a reranker; validate with MRR@100 each epoch")
    p.add_argument("dataset", help="training dataset id (docpairs or qrels)")
    p.set_defaults(func=_cmd_train)


def _cmd_train(args) -> int:
    raise PipelineError("train: not implemented yet")


# --- evaluate -------------------------------------------------------------------------
def _add_evaluate(sub) -> None:
    p = sub.add_parser("evaluate", help="evaluate and compare runs with ranx")
    p.add_argument("dataset", help="dataset id whose qrels judge the runs")
    p.add_argument("runs", nargs="+", help="TREC run files")
    p.set_defaults(func=_cmd_evaluate)


def _cmd_evaluate(args) -> int:
    raise PipelineError("evaluate: not implemented yet")


# --- run (whole experiment) -----------------------------------------------------------
def _add_run(sub) -> None:
    p = sub.add_parser("run", help="run a whole experiment (default: the built-in offline demo)")
    p.add_argument("config", nargs="?", help="experiment TOML (default: the embedded demo)")
    p.add_argument("--force", action="store_true", help="redo every stage")
    p.add_argument("--dry-run", action="store_true", help="print the plan and what is done; do nothing")
    p.set_defaults(func=_cmd_run)


def _cmd_run(args) -> int:
    raise PipelineError("run: not implemented yet")


# --- bench ----------------------------------------------------------------------------
def _add_bench(sub) -> None:
    p = sub.add_parser("bench", help="benchmarks against a baseline in the same run")
    bsub = p.add_subparsers(dest="bench_command", required=True)
    r = bsub.add_parser("retrieve", help="pipeline retrieve vs Pyserini's CLI, cold, on CACM")
    r.set_defaults(func=_cmd_bench_retrieve)
    rr = bsub.add_parser("rerank", help="this scorer vs seed-style and reference-monoT5-style scorers")
    rr.set_defaults(func=_cmd_bench_rerank)
    t = bsub.add_parser("train", help="training pairs/s: length-grouped dynamic padding vs fixed 512")
    t.set_defaults(func=_cmd_bench_train)


def _cmd_bench_retrieve(args) -> int:
    raise PipelineError("bench retrieve: not implemented yet")


def _cmd_bench_rerank(args) -> int:
    raise PipelineError("bench rerank: not implemented yet")


def _cmd_bench_train(args) -> int:
    raise PipelineError("bench train: not implemented yet")


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
    args = build_parser().parse_args(argv)
    try:
        return args.func(args) or 0
    except PipelineError as exc:
        print(f"pipeline: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("pipeline: interrupted", file=sys.stderr)
        return 130
