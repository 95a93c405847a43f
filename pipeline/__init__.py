"""BM25 (Pyserini) -> T5 rerankers -> TREC runs -> ranx evaluation.

Verbs are functions, models are classes; a run is ``{query_id: {doc_id: score}}``.
Names load lazily (PEP 562) so ``import pipeline`` does not pull in torch, the JVM or ranx.

Example:
    >>> import pipeline
    >>> pipeline.register("cacm", docs="docs.jsonl", queries="queries.tsv", qrels="qrels.txt")  # doctest: +SKIP
    ['cacm']
    >>> pipeline.build_index("cacm")  # doctest: +SKIP
    >>> run = pipeline.bm25("cacm", k=100)  # doctest: +SKIP
    >>> ranker = pipeline.T5Ranker.from_pretrained("castorini/monot5-base-msmarco")  # doctest: +SKIP
    >>> reranked = pipeline.rerank(ranker, run, pipeline.queries("cacm"), pipeline.docs_text("cacm"))  # doctest: +SKIP
    >>> pipeline.evaluate("cacm", reranked, metrics=["mrr@100"])  # doctest: +SKIP
"""

from __future__ import annotations

import importlib
import os

# MKL's small-matrix kernels give results that depend on the thread count; strict conditional
# bitwise reproducibility makes 1 thread, 2 threads and 2 torchrun ranks write identical runs.
# Set before torch loads (importing pipeline never imports torch itself).
os.environ.setdefault("MKL_CBWR", "AUTO,STRICT")

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS = {
    # data (ir_datasets)
    "register": "pipeline.data",
    "load": "pipeline.data",
    "queries": "pipeline.data",
    "qrels": "pipeline.data",
    "docs_text": "pipeline.data",
    "corpus_id": "pipeline.data",
    "export_qrels": "pipeline.data",
    "list_datasets": "pipeline.data",
    # first stage (Pyserini / Lucene)
    "build_index": "pipeline.retrieval",
    "bm25": "pipeline.retrieval",
    "retrieve": "pipeline.retrieval",
    # TREC runs
    "read_run": "pipeline.runs",
    "write_run": "pipeline.runs",
    # rerankers (transformers T5)
    "Reranker": "pipeline.rerankers",
    "T5Ranker": "pipeline.rerankers",
    "T5WithRerankingLoss": "pipeline.rerankers",
    "MODEL_TYPES": "pipeline.rerankers",
    "load_reranker": "pipeline.rerankers",
    "rerank": "pipeline.rerankers",
    "rerank_dataset": "pipeline.rerankers",
    "init_model": "pipeline.modelinit",
    # training
    "train": "pipeline.training",
    "TrainSettings": "pipeline.trainconfig",
    # evaluation (ranx)
    "evaluate": "pipeline.evaluation",
    "compare": "pipeline.evaluation",
    "write_report": "pipeline.report",
    "render": "pipeline.report",
    # errors
    "PipelineError": "pipeline.errors",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'pipeline' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
