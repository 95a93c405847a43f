"""Where outputs live. Everything is derived from dataset ids under one home folder.

The home folder is ``$PIPELINE_HOME`` if set, else the current directory, so a user
working in a clone of this repository gets ``indexes/``, ``runs/`` and ``qrels/`` at
its top level, and tests point ``PIPELINE_HOME`` at a temporary folder.

Example:
    >>> import os; os.environ["PIPELINE_HOME"] = "/tmp/p"
    >>> str(runs_dir("msmarco-passage/dev/small"))
    '/tmp/p/runs/msmarco-passage/dev/small'
"""

from __future__ import annotations

import os
from pathlib import Path


def home() -> Path:
    """The folder that holds ``data/``, ``indexes/``, ``runs/`` and ``qrels/``."""
    return Path(os.environ.get("PIPELINE_HOME", ".")).resolve()


def data_dir() -> Path:
    """Registered local datasets and everything ir_datasets derives from them."""
    return home() / "data"


def index_dir(corpus_id: str) -> Path:
    """The Lucene index of a corpus (one per corpus; subsets share their parent's)."""
    return home() / "indexes" / corpus_id


def runs_dir(dataset_id: str) -> Path:
    """The folder of TREC runs made on a dataset's queries."""
    return home() / "runs" / dataset_id


def qrels_path(dataset_id: str) -> Path:
    """The TREC qrels file exported for a dataset."""
    return home() / "qrels" / f"{dataset_id}.txt"
