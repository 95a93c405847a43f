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
