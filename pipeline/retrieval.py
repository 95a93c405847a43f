"""BM25 first stage with Pyserini/Anserini: build a corpus's Lucene index, search it.

One index per corpus, ``indexes/<corpus id>/`` (subsets such as ``cacm/test`` share
their parent's index, see :func:`pipeline.data.corpus_id`). An index is built the way
``python -m pyserini.index.lucene`` builds one (Anserini's ``IndexCollection`` over a
``JsonCollection``, default English analyzer with Porter stemming) with positions,
document vectors and the raw document stored, so rerankers and Pyserini's own tools
can use it. It is built in a temporary folder beside the final one and renamed into
place only when complete, with a marker file ``pipeline-index.json`` (document
counts, settings, versions, timings): a folder without the marker is an incomplete
index and is refused with a clear error, never silently trusted or deleted.

Searching uses Anserini's ``SimpleSearcher`` exactly as Pyserini's ``LuceneSearcher``
does (``set_bm25(k1, b)``, ``batch_search(queries, qids, k, threads)``), so runs equal
those of ``python -m pyserini.search.lucene`` on the same index and parameters.
BM25 defaults are Pyserini's API defaults, k1=0.9 and b=0.4, always; the MS MARCO
values Pyserini's CLI picks from index names are available as :data:`MSMARCO_PARAMS`.

Example:
    >>> build_index("cacm")  # doctest: +SKIP
    PosixPath('/home/me/exp/indexes/cacm')
    >>> retrieve("cacm")  # doctest: +SKIP
    PosixPath('/home/me/exp/runs/cacm/bm25.trec')
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import sys
import tempfile
import time
from pathlib import Path

from pipeline import paths
from pipeline.errors import PipelineError

MARKER = "pipeline-index.json"
DEFAULT_K1 = 0.9  # Pyserini's LuceneSearcher.set_bm25 defaults
DEFAULT_B = 0.4
# Pyserini's CLI switches to these silently on MS MARCO passage indexes; here only on request.
MSMARCO_PARAMS = {"k1": 0.82, "b": 0.68}
# Queries handed to Java per batch_search call: bounds memory on very large query sets.
_QUERY_CHUNK = 10_000

# The IndexCollection settings, as `python -m pyserini.index.lucene` would be given them.
INDEX_SETTINGS = {
    "collection": "JsonCollection",
    "generator": "DefaultLuceneDocumentGenerator",
    "analyzer": "DefaultEnglishAnalyzer (Porter stemmer, Lucene English stopwords)",
    "storePositions": True,
    "storeDocvectors": True,
    "storeRaw": True,
}


def default_threads() -> int:
    """The CPU cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


# --- index state ----------------------------------------------------------------------
def read_marker(index: Path) -> dict | None:
    """The marker of a complete index, or None when the folder has none (or an unreadable one)."""
    try:
        return json.loads((index / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _incomplete_error(index: Path, corpus: str) -> PipelineError:
    return PipelineError(
        f"{index} is an incomplete index (no {MARKER}: its build was interrupted or it was not made by "
        f"`pipeline index`): delete the folder or rebuild it with `pipeline index {corpus} --force`"
    )


def index_path(dataset_id: str) -> Path:
    """The complete index of a dataset's corpus; PipelineError if it is missing or incomplete.

    Example:
        >>> index_path("cacm/test")  # doctest: +SKIP
        PosixPath('/home/me/exp/indexes/cacm')
    """
    from pipeline import data

    corpus = data.corpus_id(dataset_id)
    index = paths.index_dir(corpus)
    if not index.is_dir():
        raise PipelineError(f"no index for corpus {corpus!r} ({index}): run `pipeline index {corpus}` first")
    if read_marker(index) is None:
        raise _incomplete_error(index, corpus)
    return index


# --- indexing -------------------------------------------------------------------------
def _doc_text(doc) -> str:
    """The text to index: JsonCollection's ``contents`` when the doc has it, else ir_datasets' default."""
    contents = getattr(doc, "contents", None)
    return contents if isinstance(contents, str) else doc.default_text()


def _write_collection(dataset, folder: Path, shards: int, corpus: str) -> int:
    """Stream the corpus into ``shards`` JsonCollection files (round robin); the number of docs."""
    from tqdm import tqdm

    try:
        total = dataset.docs_count()
    except Exception:  # some local formats cannot count without a full pass
        total = None
    files = [open(folder / f"docs{i:03d}.jsonl", "w", encoding="utf-8") for i in range(shards)]
    count = 0
    try:
        docs = tqdm(dataset.docs_iter(), total=total, desc=f"writing {corpus} docs", unit="doc", file=sys.stderr)
        for count, doc in enumerate(docs, start=1):
            record = {"id": doc.doc_id, "contents": _doc_text(doc)}
            files[count % shards].write(json.dumps(record, ensure_ascii=False) + "\n")
    finally:
        for f in files:
            f.close()
    return count


def index_stats(index: Path) -> dict[str, int]:
    """Lucene statistics of an index: documents, non_empty_documents, unique_terms, total_terms.

    Example:
        >>> index_stats("indexes/cacm")["documents"]  # doctest: +SKIP
        3204
    """
    from pipeline.java import autoclass

    utils = autoclass("io.anserini.index.IndexReaderUtils")
    reader = utils.getReader(str(index))
    try:
        stats = utils.getIndexStats(reader)
        # Lucene reports -1 (unknown) for unique terms across several segments.
        return {key: int(stats.get(key)) if int(stats.get(key)) >= 0 else None for key in stats.keySet().toArray()}
    finally:
        reader.close()


def _build_prefix(final: Path) -> str:
    # Host name in the folder name: on a shared file system only this host can tell its pids apart.
    return f".{final.name}.building-{socket.gethostname()}-"


def _remove_dead_builds(final: Path) -> None:
    """Delete temporary build folders of this host whose process is gone (killed mid-build)."""
    prefix = _build_prefix(final)
    for folder in final.parent.glob(f"{prefix}*"):
        pid = folder.name[len(prefix) :].split("-", 1)[0]
        if not pid.isdigit():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(folder, ignore_errors=True)
        except PermissionError:  # alive, owned by someone else
            pass


def build_index(dataset_id: str, threads: int | None = None, force: bool = False) -> Path:
    """Build (or reuse) the Lucene index of a dataset's corpus in ``indexes/<corpus id>/``.

    Documents are streamed from ``docs_iter()`` into JsonCollection files in a
    temporary folder (never all in memory) and indexed by Anserini's IndexCollection
    with ``threads`` threads (default: all cores). A complete index is reused; an
    incomplete one (no marker) is refused unless ``force``, which also rebuilds a
    complete one. The index moves into place only once its document count checks out.

    Example:
        >>> build_index("cacm")  # doctest: +SKIP
        PosixPath('/home/me/exp/indexes/cacm')
    """
    from pipeline import data
    from pipeline.runs import package_versions, write_json

    threads = default_threads() if threads is None else threads
    if threads < 1:
        raise PipelineError(f"threads must be at least 1, got {threads}")
    dataset = data.load(dataset_id)
    corpus = data.corpus_id(dataset_id)
    final = paths.index_dir(corpus)
    if final.exists() and not force:
        if read_marker(final) is not None:
            return final
        raise _incomplete_error(final, corpus)

    from pipeline.java import autoclass  # boots the JVM: before writing anything, so no Java fails early

    index_collection = autoclass("io.anserini.index.IndexCollection")
    final.parent.mkdir(parents=True, exist_ok=True)
    _remove_dead_builds(final)
    build = Path(tempfile.mkdtemp(prefix=f"{_build_prefix(final)}{os.getpid()}-", dir=final.parent))
    try:
        start = time.perf_counter()
        collection, index = build / "collection", build / "index"
        collection.mkdir()
        written = _write_collection(dataset, collection, threads, corpus)
        if written == 0:
            raise PipelineError(f"dataset {dataset_id!r} has no documents to index")
        wrote_s = time.perf_counter() - start

        args = autoclass("io.anserini.index.IndexCollection$Args")()
        args.input, args.index = str(collection), str(index)
        args.collectionClass, args.generatorClass = INDEX_SETTINGS["collection"], INDEX_SETTINGS["generator"]
        args.threads = threads
        args.storePositions = args.storeDocvectors = args.storeRaw = True
        args.quiet = True  # Anserini logs INFO to stdout, which carries only the index path here
        print(f"indexing {written:,} documents with Lucene ({threads} threads)...", file=sys.stderr, flush=True)
        indexer = index_collection(args)
        indexer.run()
        lucene_s = time.perf_counter() - start - wrote_s
        counters = indexer.getCounters()
        counts = {name: int(getattr(counters, name).get()) for name in ("indexed", "empty", "skipped", "errors")}
        counts["unindexable"] = int(counters.unindexable.get())
        stats = index_stats(index)
        # Anserini skips documents with empty text; everything else must be in the index.
        if counts["errors"] or stats["documents"] != written - counts["empty"]:
            raise PipelineError(
                f"indexing {corpus!r} went wrong: wrote {written} documents, Lucene holds {stats['documents']} "
                f"(counters {counts}); nothing was moved to {final}"
            )
        marker = {
            "corpus_id": corpus,
            "built_from_dataset": dataset_id,
            "documents_written": written,
            "counters": counts,
            "index_stats": stats,
            "settings": {**INDEX_SETTINGS, "threads": threads},
            "timings_s": {"write_docs": round(wrote_s, 3), "lucene": round(lucene_s, 3)},
            "versions": package_versions(),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        print(
            f"indexed {stats['documents']:,} documents in {lucene_s:.1f} s"
            + (f"; {counts['empty']:,} with empty text were skipped" if counts["empty"] else ""),
            file=sys.stderr,
        )
        write_json(marker, index / MARKER)  # last file written: its presence means complete
        if final.exists():
            if not force and read_marker(final) is not None:
                return final  # another process finished the same index first; ours is dropped
            # Move the old folder aside (into the build folder, removed below), then swap in.
            os.replace(final, build / "replaced")
        os.replace(index, final)
    finally:
        shutil.rmtree(build, ignore_errors=True)
    return final


# --- searching ------------------------------------------------------------------------
def _check_params(k: int, k1: float, b: float, threads: int) -> None:
    if k < 1:
        raise PipelineError(f"k must be at least 1, got {k}")
    if k1 < 0:
        raise PipelineError(f"BM25 k1 must be >= 0, got {k1}")
    if not 0 <= b <= 1:
        raise PipelineError(f"BM25 b must be between 0 and 1, got {b}")
    if threads < 1:
        raise PipelineError(f"threads must be at least 1, got {threads}")


def search_index(
    index: str | os.PathLike,
    queries: dict[str, str],
    k: int = 100,
    k1: float = DEFAULT_K1,
    b: float = DEFAULT_B,
    threads: int = 1,
) -> dict[str, dict[str, float]]:
    """BM25 search of ``{qid: text}`` in a Lucene index: ``{qid: {docid: score}}``.

    Calls Anserini's SimpleSearcher exactly as Pyserini's ``LuceneSearcher.set_bm25``
    and ``batch_search`` do, so the hits and scores are Pyserini's. Queries without
    any hit are absent from the result.

    Example:
        >>> search_index("indexes/cacm", {"q1": "time sharing"}, k=3)  # doctest: +SKIP
        {'q1': {'CACM-1938': 10.4288, 'CACM-1071': 9.7731, 'CACM-1410': 9.6007}}
    """
    from pipeline.java import autoclass

    _check_params(k, k1, b, threads)
    try:
        searcher = autoclass("io.anserini.search.SimpleSearcher")(str(index))
    except PipelineError:
        raise
    except Exception as exc:  # a JavaException: corrupt or foreign folder
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise PipelineError(f"{index}: cannot open the Lucene index ({first_line})") from exc
    array_list = autoclass("java.util.ArrayList")
    try:
        searcher.set_bm25(float(k1), float(b))
        run: dict[str, dict[str, float]] = {}
        items = list(queries.items())
        for start in range(0, len(items), _QUERY_CHUNK):
            texts, qids = array_list(), array_list()
            for qid, text in items[start : start + _QUERY_CHUNK]:
                qids.add(qid)
                texts.add(text)
            results = searcher.batch_search(texts, qids, int(k), int(threads))
            for entry in results.entrySet().toArray():
                # Pyserini's TREC writer strips docids the same way.
                run[entry.getKey()] = {hit.docid.strip(): float(hit.score) for hit in entry.getValue()}
    finally:
        searcher.close()
    return run


def bm25(
    dataset_id: str, k: int = 100, k1: float = DEFAULT_K1, b: float = DEFAULT_B, threads: int | None = None
) -> dict[str, dict[str, float]]:
    """BM25 top-``k`` of every query of a dataset: ``{qid: {docid: score}}``.

    Queries that match no document are absent. Needs the corpus index
    (:func:`build_index`); a missing or incomplete one is a PipelineError.

    Example:
        >>> run = bm25("cacm", k=10)  # doctest: +SKIP
        >>> len(run["1"])  # doctest: +SKIP
        10
    """
    return _bm25(dataset_id, k, k1, b, threads)["run"]


def _bm25(dataset_id: str, k: int, k1: float, b: float, threads: int | None) -> dict:
    from pipeline import data

    threads = default_threads() if threads is None else threads
    _check_params(k, k1, b, threads)
    start = time.perf_counter()
    queries = data.queries(dataset_id)
    index = index_path(dataset_id)
    loaded = time.perf_counter()
    from pipeline.java import start_jvm

    start_jvm()
    booted = time.perf_counter()
    run = search_index(index, queries, k, k1, b, threads)
    searched = time.perf_counter()
    return {
        "run": run,
        "index": index,
        "queries": queries,
        "timings_s": {
            "load_queries": round(loaded - start, 3),
            "jvm_start": round(booted - loaded, 3),
            "search": round(searched - booted, 3),
        },
        "threads": threads,
    }


def retrieve(
    dataset_id: str,
    k: int = 100,
    k1: float = DEFAULT_K1,
    b: float = DEFAULT_B,
    threads: int | None = None,
    output: str | os.PathLike | None = None,
) -> Path:
    """Write the BM25 run of a dataset's queries (default ``runs/<dataset id>/bm25.trec``) and its sidecar.

    The sidecar (``<run>.json``) records the parameters, the index and its
    statistics, queries without hits, timings and package versions.

    Example:
        >>> retrieve("cacm", k1=0.82, b=0.68)  # doctest: +SKIP
        PosixPath('/home/me/exp/runs/cacm/bm25.trec')
    """
    from pipeline.runs import write_run

    start = time.perf_counter()
    output = Path(output) if output else paths.runs_dir(dataset_id) / "bm25.trec"
    result = _bm25(dataset_id, k, k1, b, threads)
    run, index = result["run"], result["index"]
    if not run:
        raise PipelineError(f"BM25 found no document for any query of {dataset_id!r}; nothing written")
    marker = read_marker(index) or {}
    metadata = {
        "system": "bm25",
        "dataset_id": dataset_id,
        "parameters": {"k": k, "k1": k1, "b": b, "threads": result["threads"]},
        "index": {
            "path": str(index),
            "corpus_id": marker.get("corpus_id"),
            "stats": marker.get("index_stats"),
            "settings": marker.get("settings"),
        },
        "queries_searched": len(result["queries"]),
        "queries_without_hits": sorted(set(result["queries"]) - set(run)),
        "timings_s": {**result["timings_s"], "total": round(time.perf_counter() - start, 3)},
    }
    return write_run(run, output, tag="bm25", metadata=metadata)
