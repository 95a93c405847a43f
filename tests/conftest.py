"""Session-wide test set-up: an isolated PIPELINE_HOME, the shared real collections.

PIPELINE_HOME and IR_DATASETS_HOME point at one temporary folder for the whole
session, set before anything imports ir_datasets, so tests never write into the
repository or into ../shared (read-only in CI).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

SESSION_HOME = Path(tempfile.mkdtemp(prefix="pipeline-tests-"))
os.environ["PIPELINE_HOME"] = str(SESSION_HOME)
os.environ["IR_DATASETS_HOME"] = str(SESSION_HOME / "ir_datasets")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` (CACM, Cranfield); read-only: copy before anything writes beside it."""
    if not SHARED_DATA.is_dir():
        pytest.fail(f"{SHARED_DATA} is missing: the real collections live in ../shared/data")
    return SHARED_DATA


# --- data: registered real collections (owner: data helper) ---------------------------
@pytest.fixture(scope="session")
def cacm(shared_data) -> str:
    """``../shared/data/cacm`` registered as dataset id ``cacm`` (3,204 docs, 64 queries, 796 qrels)."""
    from pipeline import data

    src = shared_data / "cacm"
    data.register("cacm", docs=src / "docs.jsonl", queries=src / "queries.tsv", qrels=src / "qrels.txt", force=True)
    return "cacm"


@pytest.fixture(scope="session")
def cranfield(shared_data) -> str:
    """``../shared/data/cranfield`` as ``cranfield`` plus ``cranfield/train|valid|test`` (0.6/0.2/0.2, seed 0).

    ``force=True`` because ``cranfield`` is also an ir_datasets built-in id (which would download).
    """
    from pipeline import data

    src = shared_data / "cranfield"
    data.register(
        "cranfield",
        docs=src / "docs.jsonl",
        queries=src / "queries.tsv",
        qrels=src / "qrels.txt",
        split="train=0.6,valid=0.2,test=0.2",
        seed=0,
        force=True,
    )
    return "cranfield"


# --- retrieval: Lucene indexes of the real collections (owner: retrieval helper) ------
# Session-scoped so module/session fixtures can use them. A test that re-registers cacm or
# cranfield with force=True deletes that index: call build_index(id) afterwards (reuse is instant).
@pytest.fixture(scope="session")
def cacm_index(cacm) -> Path:
    """The Lucene index of ``cacm`` in the session's PIPELINE_HOME (built on first use, ~2 s)."""
    from pipeline.retrieval import build_index

    return build_index(cacm, threads=2)


@pytest.fixture(scope="session")
def cranfield_index(cranfield) -> Path:
    """The Lucene index of the ``cranfield`` corpus, shared by ``cranfield/train|valid|test``."""
    from pipeline.retrieval import build_index

    return build_index(cranfield, threads=2)


# --- modelinit: offline T5 models (owner: model-init helper) ----------------------------
@pytest.fixture(scope="session")
def tiny_model(cranfield) -> Path:
    """A tiny random T5 (~0.5M parameters) with a tokenizer trained on the ``cranfield`` corpus, seed 0.

    Built once per session under the session PIPELINE_HOME (a few seconds). Shared: a test that
    trains or modifies a model must copy the folder to its own ``tmp_path`` first.
    """
    from pipeline.modelinit import init_model

    return init_model(cranfield, SESSION_HOME / "models" / "t5-tiny-cranfield-seed0", size="tiny", seed=0)
