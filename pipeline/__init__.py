"""BM25 (Pyserini) -> T5 rerankers -> TREC runs -> ranx evaluation.

The public API is filled in as the stages land; see README.md.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
