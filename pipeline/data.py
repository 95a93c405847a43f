"""Data through ir_datasets: dataset ids for built-in benchmarks and registered local collections.

Every stage takes a dataset id. Built-in ids (``msmarco-passage/dev/small``, …) go straight
to ``ir_datasets.load``. Local collections are registered once with :func:`register`
(``pipeline datasets add``): their files are validated, normalised and copied under
``data/<name>/`` (ir_datasets writes its doc store beside the files it reads, so never beside
the user's), recorded in ``data/registry.json``, and turned into real ir_datasets datasets
(``ir_datasets.registry.register``) in every process by :func:`load`. The rest of the code
never special-cases them.

Layout of a registration ``NAME`` (``--split train=0.6,valid=0.2,test=0.2``)::

    data/registry.json            all registrations: source files, split, counts
    data/NAME/docs.jsonl          {"id": …, "contents": …} per line (+ docs.jsonl.pklz4 doc store)
    data/NAME/queries.tsv         qid<TAB>text
    data/NAME/qrels.txt           qid iteration docid relevance
    data/NAME/docpairs.tsv        qid<TAB>pos_docid<TAB>neg_docid
    data/NAME/train/queries.tsv   the split's queries, qrels and docpairs; documents are NAME's

Example:
    >>> register("cacm", docs="cacm/docs.jsonl", queries="cacm/queries.tsv", qrels="cacm/qrels.txt")  # doctest: +SKIP
    ['cacm']
    >>> load("cacm").docs_count(), corpus_id("cacm/train")  # doctest: +SKIP
    (3204, 'cacm')
"""

from __future__ import annotations

import contextlib
import gzip
import json
import math
import os
import random
import re
import shutil
import tempfile
import uuid
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path

from pipeline import paths
from pipeline.errors import PipelineError
from pipeline.runs import atomic_path, write_json

REGISTRY_FILE = "registry.json"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_SPLIT_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
_WHITESPACE = re.compile(r"\s")
_to_json = json.JSONEncoder(ensure_ascii=False).encode

# Per process: the ids this module put into ir_datasets' registry, with the token of the
# registration they came from, and the built-in datasets they shadow (restored when the
# registration disappears, e.g. when PIPELINE_HOME changes between tests).
_ACTIVE: dict[str, tuple[str, str]] = {}
_SHADOWED: dict[str, object] = {}


# --- registry file --------------------------------------------------------------------
def _registry_path() -> Path:
    return paths.data_dir() / REGISTRY_FILE


def _read_registry() -> dict[str, dict]:
    path = _registry_path()
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        entries = data["datasets"]
        if not isinstance(entries, dict):
            raise TypeError("'datasets' is not an object")
    except (ValueError, KeyError, TypeError) as exc:
        raise PipelineError(f"{path}: not a dataset registry ({exc}); remove it and register again") from None
    return entries


def _write_registry(entries: dict[str, dict]) -> None:
    write_json({"version": 1, "datasets": entries}, _registry_path())


# --- turning registrations into ir_datasets datasets ----------------------------------
def _build_datasets(name: str, entry: dict) -> dict[str, object]:
    """One ir_datasets Dataset per id of a registration, all sharing one docs handler."""
    import ir_datasets
    from ir_datasets.formats import JsonlDocs, TrecQrels, TsvDocPairs, TsvQueries
    from ir_datasets.util import LocalDownload
    from ir_datasets.util.metadata import MetadataComponent, MetadataProvider

    root = paths.data_dir()
    docs_file = root / entry["docs_file"]
    if not docs_file.exists():
        raise PipelineError(
            f"registered dataset {name!r} lost its files ({docs_file} is missing); "
            f"register it again with `pipeline datasets add {name} ... --force`"
        )
    counts = entry["counts"]
    # One handler object for all ids: ir_datasets.docs_parent_id() finds the corpus of a
    # subset by comparing docs handlers, so NAME/train must share NAME's.
    docs = JsonlDocs(
        LocalDownload(docs_file, mkdir=False),
        mapping={"doc_id": "id", "text": "contents"},
        count_hint=counts[name]["docs"],
    )
    result = {}
    for ds_id, files in entry["files"].items():
        parts = [docs, TsvQueries(LocalDownload(root / files["queries"], mkdir=False))]
        if files.get("qrels"):
            parts.append(TrecQrels(LocalDownload(root / files["qrels"], mkdir=False), entry.get("qrels_defs", {})))
        if files.get("docpairs"):
            parts.append(TsvDocPairs(LocalDownload(root / files["docpairs"], mkdir=False)))
        dataset = ir_datasets.Dataset(*parts)
        c = counts[ds_id]
        meta = {ds_id: {"docs": {"count": c["docs"]}, "queries": {"count": c["queries"]}}}
        if files.get("qrels"):
            meta[ds_id]["qrels"] = {"count": c["qrels"]}
        if files.get("docpairs"):
            meta[ds_id]["docpairs"] = {"count": c["docpairs"]}
        # Our own metadata, so a local "cranfield" never reports the built-in's counts.
        provider = MetadataProvider(lambda meta=meta: meta)
        result[ds_id] = ir_datasets.Dataset(MetadataComponent(ds_id, dataset, provider), dataset)
    return result


def _sync() -> None:
    """Make ir_datasets' registry in this process match ``data/registry.json``."""
    import ir_datasets

    # Registry.register refuses to overwrite; replacing an id (a forced re-registration, a
    # local collection shadowing a built-in, another PIPELINE_HOME) needs its dict.
    registered = ir_datasets.registry._registered
    entries = _read_registry()
    home = str(paths.data_dir())
    wanted = {ds_id: (home, entry["token"]) for entry in entries.values() for ds_id in entry["files"]}
    for ds_id in list(_ACTIVE):
        if wanted.get(ds_id) != _ACTIVE[ds_id]:
            registered.pop(ds_id, None)
            del _ACTIVE[ds_id]
            if ds_id in _SHADOWED:
                registered[ds_id] = _SHADOWED.pop(ds_id)
    for name, entry in entries.items():
        if all(ds_id in _ACTIVE for ds_id in entry["files"]):
            continue
        for ds_id, dataset in _build_datasets(name, entry).items():
            if ds_id in registered and ds_id not in _ACTIVE:
                _SHADOWED[ds_id] = registered.pop(ds_id)
            registered.pop(ds_id, None)
            ir_datasets.registry.register(ds_id, dataset)
            _ACTIVE[ds_id] = wanted[ds_id]


def _is_builtin(ds_id: str) -> bool:
    import ir_datasets

    _sync()  # this process may hold ids of another PIPELINE_HOME
    if ds_id in _SHADOWED:
        return True
    if ds_id in _ACTIVE:
        return False
    try:
        ir_datasets.registry[ds_id]
    except KeyError:
        return False
    return True


# --- public API -----------------------------------------------------------------------
def dataset_dir(name: str) -> Path:
    """The folder holding a registration's normalised files: ``data/<name>/``."""
    return paths.data_dir() / name


def load(dataset_id: str):
    """The ir_datasets Dataset of an id: a built-in one or a registered local collection.

    Example:
        >>> load("cacm").queries_count()  # doctest: +SKIP
        64
    """
    import ir_datasets

    _sync()
    try:
        return ir_datasets.load(dataset_id)
    except KeyError:
        local = sorted(ds_id for entry in _read_registry().values() for ds_id in entry["files"])
        known = f" (registered here: {', '.join(local)})" if local else ""
        raise PipelineError(
            f"unknown dataset id {dataset_id!r}: neither an ir_datasets id nor a registered local collection{known}; "
            "register a local collection with `pipeline datasets add NAME --docs FILE --queries FILE [--qrels FILE]`"
        ) from None


def corpus_id(dataset_id: str) -> str:
    """The id of the corpus a dataset's documents come from; subsets share their parent's.

    Example:
        >>> corpus_id("cacm/train"), corpus_id("msmarco-passage/dev/small")  # doctest: +SKIP
        ('cacm', 'msmarco-passage')
    """
    import ir_datasets

    dataset = load(dataset_id)
    if not dataset.has_docs():
        raise PipelineError(f"dataset {dataset_id!r} has no documents")
    return ir_datasets.docs_parent_id(dataset_id)


def queries(dataset_id: str) -> dict[str, str]:
    """``{query_id: text}`` of a dataset, in the dataset's order.

    Example:
        >>> queries("cacm")["2"]  # doctest: +SKIP
        'I am interested in articles written either by Prieve or Udo Pooch'
    """
    dataset = load(dataset_id)
    if not dataset.has_queries():
        raise PipelineError(f"dataset {dataset_id!r} has no queries")
    return {q.query_id: q.default_text() for q in dataset.queries_iter()}


def qrels(dataset_id: str) -> dict[str, dict[str, int]]:
    """``{query_id: {doc_id: relevance}}``, the shape of ranx dicts; error if there are none.

    Example:
        >>> qrels("cacm")["1"]["CACM-1410"]  # doctest: +SKIP
        1
    """
    dataset = load(dataset_id)
    if not dataset.has_qrels():
        raise PipelineError(f"dataset {dataset_id!r} has no qrels (register it with `--qrels FILE`)")
    return dataset.qrels_dict()


def export_qrels(dataset_id: str) -> Path:
    """Write ``qrels/<dataset id>.txt`` (TREC: ``qid iteration docid relevance``), atomically.

    Example:
        >>> export_qrels("cacm/test")  # doctest: +SKIP
        PosixPath('.../qrels/cacm/test.txt')
    """
    dataset = load(dataset_id)
    if not dataset.has_qrels():
        raise PipelineError(f"dataset {dataset_id!r} has no qrels (register it with `--qrels FILE`)")
    path = paths.qrels_path(dataset_id)
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as out:
        for q in dataset.qrels_iter():
            out.write(f"{q.query_id} {getattr(q, 'iteration', '0')} {q.doc_id} {q.relevance}\n")
    return path


class DocsText(Mapping):
    """Read-only ``{doc_id: text}`` over a dataset's ir_datasets doc store (random access by id).

    Example:
        >>> docs = docs_text("cacm")  # doctest: +SKIP
        >>> docs["CACM-0001"]  # doctest: +SKIP
        'Preliminary Report-International Algebraic Language'
        >>> docs.get_many(["CACM-0001", "nope"]).keys()  # doctest: +SKIP
        dict_keys(['CACM-0001'])
    """

    def __init__(self, dataset_id: str):
        dataset = load(dataset_id)
        if not dataset.has_docs():
            raise PipelineError(f"dataset {dataset_id!r} has no documents")
        self.dataset_id = dataset_id
        self._store = dataset.docs_store()

    def __getitem__(self, doc_id: str) -> str:
        try:
            return self._store.get(doc_id).default_text()
        except KeyError:
            raise KeyError(doc_id) from None

    def get_many(self, doc_ids: Iterable[str]) -> dict[str, str]:
        """``{doc_id: text}`` for the ids that exist (unknown ids are left out)."""
        return {doc_id: doc.default_text() for doc_id, doc in self._store.get_many(list(doc_ids)).items()}

    def __iter__(self) -> Iterator[str]:
        return (doc.doc_id for doc in self._store)

    def __len__(self) -> int:
        return self._store.count()

    def __contains__(self, doc_id) -> bool:
        return bool(self._store.get_many([doc_id]))


def docs_text(dataset_id: str) -> DocsText:
    """A mapping ``doc_id -> text`` of the dataset's documents (KeyError for unknown ids).

    Example:
        >>> docs_text("cacm").get_many(["CACM-0001"])  # doctest: +SKIP
        {'CACM-0001': 'Preliminary Report-International Algebraic Language'}
    """
    return DocsText(dataset_id)


def list_datasets() -> list[dict]:
    """One row per registered local dataset id (splits included), sorted by id.

    Keys: id, name (the registration), docs, empty_docs, queries, judged_queries, qrels, docpairs,
    split, seed, sources (the files given at registration), registered_at.

    Example:
        >>> [row["id"] for row in list_datasets()]  # doctest: +SKIP
        ['cacm', 'cranfield', 'cranfield/test', 'cranfield/train', 'cranfield/valid']
    """
    rows = []
    for name, entry in _read_registry().items():
        for ds_id in entry["files"]:
            rows.append(
                {
                    "id": ds_id,
                    "name": name,
                    **entry["counts"][ds_id],
                    "split": entry.get("split"),
                    "seed": entry.get("seed"),
                    "sources": entry["sources"],
                    "registered_at": entry.get("registered_at"),
                }
            )
    return sorted(rows, key=lambda row: row["id"])


# --- reading and checking input files -------------------------------------------------
def _lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, line without its end) of a UTF-8 text file, ``.gz`` included; blank lines skipped."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            for lineno, raw in enumerate(f, 1):
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as exc:
                    raise PipelineError(f"{path}:{lineno}: not UTF-8 text ({exc.reason})") from None
                line = line.rstrip("\n").removesuffix("\r")
                if lineno == 1:
                    line = line.removeprefix("\ufeff")  # a BOM would otherwise become part of the first id
                if line.strip():
                    yield lineno, line
    except OSError as exc:
        raise PipelineError(f"{path}: cannot read: {exc.strerror or exc}") from None


def _check_id(value: str, path: Path, lineno: int, what: str) -> str:
    if not value:
        raise PipelineError(f"{path}:{lineno}: empty {what} id")
    if _WHITESPACE.search(value):
        # TREC runs and qrels are whitespace-separated: such an id could never be written back.
        raise PipelineError(f"{path}:{lineno}: {what} id {value!r} contains whitespace")
    return value


def _tsv(path: Path, lineno: int, line: str, columns: tuple[str, ...]) -> list[str]:
    cols = line.split("\t")
    if len(cols) != len(columns):
        raise PipelineError(
            f"{path}:{lineno}: expected {len(columns)} tab-separated columns ({', '.join(columns)}), found {len(cols)}"
        )
    return cols


def _docs_format(path: Path) -> str:
    suffixes = [s.lower() for s in path.suffixes if s.lower() != ".gz"]
    if suffixes and suffixes[-1] in (".jsonl", ".json"):
        return "jsonl"
    if suffixes and suffixes[-1] == ".tsv":
        return "tsv"
    for _, line in _lines(path):  # unknown suffix: sniff the first line
        return "jsonl" if line.lstrip().startswith("{") else "tsv"
    return "tsv"


def _read_docs(path: Path) -> Iterator[tuple[int, str, str]]:
    """(line number, id, text) of a JSONL (``id``/``contents``) or TSV (``id<TAB>text``) docs file."""
    if _docs_format(path) == "tsv":
        for lineno, line in _lines(path):
            doc_id, text = _tsv(path, lineno, line, ("id", "text"))
            yield lineno, doc_id, text
        return
    for lineno, line in _lines(path):
        try:
            obj = json.loads(line)
        except ValueError as exc:
            raise PipelineError(f"{path}:{lineno}: malformed JSON ({exc})") from None
        if not isinstance(obj, dict):
            raise PipelineError(f"{path}:{lineno}: expected a JSON object with 'id' and 'contents'")
        for key in ("id", "contents"):
            if key not in obj:
                raise PipelineError(f"{path}:{lineno}: missing key {key!r}")
        doc_id, text = obj["id"], obj["contents"]
        if isinstance(doc_id, int) and not isinstance(doc_id, bool):
            doc_id = str(doc_id)
        if not isinstance(doc_id, str):
            raise PipelineError(f"{path}:{lineno}: 'id' must be a string, found {type(doc_id).__name__}")
        if not isinstance(text, str):
            raise PipelineError(f"{path}:{lineno}: 'contents' must be a string, found {type(text).__name__}")
        yield lineno, doc_id, text


def parse_split(spec: str) -> list[tuple[str, float]]:
    """``"train=0.6,valid=0.2,test=0.2"`` -> ``[("train", 0.6), ("valid", 0.2), ("test", 0.2)]``.

    Example:
        >>> parse_split("train=0.8,test=0.2")
        [('train', 0.8), ('test', 0.2)]
    """
    parts = []
    for item in spec.split(","):
        name, sep, value = item.strip().partition("=")
        name = name.strip()
        if not sep or not _SPLIT_NAME_RE.match(name):
            raise PipelineError(f"--split {spec!r}: {item.strip()!r} is not NAME=FRACTION (e.g. train=0.6)")
        try:
            fraction = float(value)
        except ValueError:
            raise PipelineError(f"--split {spec!r}: fraction {value.strip()!r} of {name!r} is not a number") from None
        if not 0 < fraction <= 1 or not math.isfinite(fraction):
            raise PipelineError(f"--split {spec!r}: fraction of {name!r} must be in (0, 1], found {value.strip()}")
        if name in (n for n, _ in parts):
            raise PipelineError(f"--split {spec!r}: {name!r} appears twice")
        parts.append((name, fraction))
    total = sum(f for _, f in parts)
    if abs(total - 1) > 1e-6:
        raise PipelineError(f"--split {spec!r}: fractions must sum to 1, they sum to {total:g}")
    return parts


def split_queries(qids: Iterable[str], parts: list[tuple[str, float]], seed: int = 0) -> dict[str, list[str]]:
    """Seeded split of query ids: sort, shuffle with ``random.Random(seed)``, cut by fractions.

    Sizes are ``floor(fraction * n)``, the leftover queries going one each to the parts with the
    largest remainders (earlier parts first on ties), so sizes differ from ``fraction * n`` by <1.

    Example:
        >>> {k: len(v) for k, v in split_queries(map(str, range(10)), [("a", 0.5), ("b", 0.5)]).items()}
        {'a': 5, 'b': 5}
    """
    order = sorted(set(qids))
    random.Random(seed).shuffle(order)
    n = len(order)
    sizes = [math.floor(f * n) for _, f in parts]
    by_remainder = sorted(range(len(parts)), key=lambda i: (-(parts[i][1] * n - sizes[i]), i))
    for i in by_remainder[: n - sum(sizes)]:
        sizes[i] += 1
    result, start = {}, 0
    for (name, _), size in zip(parts, sizes, strict=True):
        result[name] = order[start : start + size]
        start += size
    return result


# --- registration ---------------------------------------------------------------------
def _filter_pairs(source: Path, target: Path, qids: set[str]) -> int:
    """Copy the docpairs lines of ``qids`` (a split's queries); returns how many."""
    n = 0
    with open(source, encoding="utf-8") as f, open(target, "w", encoding="utf-8") as out:
        for line in f:
            if line.split("\t", 1)[0] in qids:
                out.write(line)
                n += 1
    return n


@contextlib.contextmanager
def _staging(root: Path, name: str) -> Iterator[Path]:
    """A temporary folder under ``data/``; removed (with ``data/`` if we made it) unless kept."""
    made_root = not root.exists()
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=".tmp", dir=root))
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if made_root and not any(root.iterdir()):
            root.rmdir()


def register(
    name: str,
    docs: str | os.PathLike,
    queries: str | os.PathLike,
    qrels: str | os.PathLike | None = None,
    docpairs: str | os.PathLike | None = None,
    split: str | None = None,
    seed: int = 0,
    force: bool = False,
) -> list[str]:
    """Register a local collection as ir_datasets ids; returns the ids (``NAME`` first, then splits).

    Everything is checked first (one streaming pass over the documents, written to a temporary
    folder); on any problem a one-line PipelineError names the file and line, and nothing is
    left behind. ``force`` replaces an earlier registration of ``NAME`` (and removes the index
    built from its old documents) or shadows an ir_datasets built-in id of the same name.

    Example:
        >>> register("cranfield", "cranfield/docs.jsonl", "cranfield/queries.tsv", "cranfield/qrels.txt",
        ...          split="train=0.6,valid=0.2,test=0.2", force=True)  # doctest: +SKIP
        ['cranfield', 'cranfield/train', 'cranfield/valid', 'cranfield/test']
    """
    # 1. Everything that needs no reading: the name, the split spec, the files' existence.
    if not _NAME_RE.match(name) or name == REGISTRY_FILE:
        raise PipelineError(
            f"dataset name {name!r}: use letters, digits, '_', '-', '.' (no '/'; splits add '/train' etc.)"
        )
    parts = parse_split(split) if split else None
    if parts and qrels is None:
        raise PipelineError("--split divides the judged queries: it needs --qrels")
    sources = {"docs": docs, "queries": queries, "qrels": qrels, "docpairs": docpairs}
    sources = {k: Path(v).resolve() for k, v in sources.items() if v is not None}
    for kind, path in sources.items():
        if not path.is_file():
            raise PipelineError(f"--{kind} {path}: no such file")
    entries = _read_registry()
    if name in entries and not force:
        raise PipelineError(
            f"dataset {name!r} is already registered (from {entries[name]['sources']['docs']}); "
            "pass --force to replace it"
        )
    if name not in entries and not force and _is_builtin(name):
        raise PipelineError(f"{name!r} is an ir_datasets built-in id; choose another name or pass --force to shadow it")

    root = paths.data_dir()
    with _staging(root, name) as tmp:
        # 2. Queries (kept in memory: needed to check qrels/docpairs and to write splits).
        query_text: dict[str, str] = {}
        for lineno, line in _lines(sources["queries"]):
            qid, text = _tsv(sources["queries"], lineno, line, ("qid", "text"))
            _check_id(qid, sources["queries"], lineno, "query")
            if qid in query_text:
                raise PipelineError(f"{sources['queries']}:{lineno}: duplicate query id {qid!r}")
            if not text.strip():
                raise PipelineError(f"{sources['queries']}:{lineno}: query {qid!r} has empty text")
            if "\r" in text:
                raise PipelineError(f"{sources['queries']}:{lineno}: query {qid!r} contains a carriage return")
            query_text[qid] = text
        if not query_text:
            raise PipelineError(f"{sources['queries']}: no queries")

        # 3. Documents: one streaming pass, normalised to {"id", "contents"} JSONL.
        doc_ids: set[str] = set()
        empty_docs = 0
        with open(tmp / "docs.jsonl", "w", encoding="utf-8") as out:
            for lineno, doc_id, text in _read_docs(sources["docs"]):
                _check_id(doc_id, sources["docs"], lineno, "document")
                if doc_id in doc_ids:
                    raise PipelineError(f"{sources['docs']}:{lineno}: duplicate document id {doc_id!r}")
                doc_ids.add(doc_id)
                empty_docs += not text.strip()
                out.write(_to_json({"id": doc_id, "contents": text}) + "\n")
        if not doc_ids:
            raise PipelineError(f"{sources['docs']}: no documents")

        # 4. Qrels and docpairs, checked against the queries and documents.
        judgments: list[tuple[str, str, str, int]] = []
        if "qrels" in sources:
            path, seen = sources["qrels"], set()
            for lineno, line in _lines(path):
                cols = line.split()
                if len(cols) != 4:
                    raise PipelineError(f"{path}:{lineno}: expected 4 columns (qid iteration docid relevance)")
                qid, iteration, doc_id, rel = cols
                try:
                    relevance = int(rel)
                except ValueError:
                    raise PipelineError(f"{path}:{lineno}: relevance {rel!r} is not an integer") from None
                if qid not in query_text:
                    raise PipelineError(f"{path}:{lineno}: unknown query {qid!r} (not in {sources['queries']})")
                if doc_id not in doc_ids:
                    raise PipelineError(f"{path}:{lineno}: unknown document {doc_id!r} (not in {sources['docs']})")
                if (qid, doc_id) in seen:
                    raise PipelineError(f"{path}:{lineno}: query {qid!r} judges document {doc_id!r} twice")
                seen.add((qid, doc_id))
                judgments.append((qid, iteration, doc_id, relevance))
            if not judgments:
                raise PipelineError(f"{path}: no judgments")
        n_pairs = 0
        if "docpairs" in sources:
            # Streamed to the staging folder: training pair files can hold tens of millions of lines.
            path = sources["docpairs"]
            with open(tmp / "docpairs.tsv", "w", encoding="utf-8") as out:
                for lineno, line in _lines(path):
                    qid, pos, neg = _tsv(path, lineno, line, ("qid", "pos_docid", "neg_docid"))
                    if qid not in query_text:
                        raise PipelineError(f"{path}:{lineno}: unknown query {qid!r} (not in {sources['queries']})")
                    for doc_id in (pos, neg):
                        if doc_id not in doc_ids:
                            raise PipelineError(
                                f"{path}:{lineno}: unknown document {doc_id!r} (not in {sources['docs']})"
                            )
                    out.write(f"{qid}\t{pos}\t{neg}\n")
                    n_pairs += 1
            if not n_pairs:
                raise PipelineError(f"{path}: no document pairs")

        # 5. Write queries/qrels/docpairs of NAME and of each split (file order kept).
        subsets = {name: None}
        judged = {qid for qid, _, _, _ in judgments}
        if parts:
            for part, qids in split_queries(judged, parts, seed).items():
                subsets[f"{name}/{part}"] = set(qids)
        files, counts = {}, {}
        for ds_id, members in subsets.items():
            rel = Path(ds_id)  # "NAME" or "NAME/train": the split folder sits inside NAME's
            folder = tmp / rel.relative_to(name)
            folder.mkdir(parents=True, exist_ok=True)
            keep = (lambda qid: True) if members is None else members.__contains__
            q = [(qid, text) for qid, text in query_text.items() if keep(qid)]
            j = [t for t in judgments if keep(t[0])]
            (folder / "queries.tsv").write_text("".join(f"{qid}\t{text}\n" for qid, text in q), encoding="utf-8")
            files[ds_id] = {"queries": str(rel / "queries.tsv"), "qrels": None, "docpairs": None}
            if "qrels" in sources:
                lines = "".join(f"{qid} {it} {doc} {r}\n" for qid, it, doc, r in j)
                (folder / "qrels.txt").write_text(lines, encoding="utf-8")
                files[ds_id]["qrels"] = str(rel / "qrels.txt")
            n_p = 0
            if "docpairs" in sources:
                files[ds_id]["docpairs"] = str(rel / "docpairs.tsv")
                n_p = n_pairs
                if members is not None:
                    n_p = _filter_pairs(tmp / "docpairs.tsv", folder / "docpairs.tsv", members)
            counts[ds_id] = {
                "docs": len(doc_ids),
                "empty_docs": empty_docs,
                "queries": len(q),
                "judged_queries": len({t[0] for t in j}),
                "qrels": len(j),
                "docpairs": n_p,
            }

        # 6. Move into place, replacing an earlier registration (whose index is now stale).
        final = dataset_dir(name)
        if final.exists():
            shutil.rmtree(final)
        if name in entries:
            shutil.rmtree(paths.index_dir(name), ignore_errors=True)
        tmp.chmod(0o755)  # mkdtemp makes it private; the data folder is not
        os.replace(tmp, final)
    entries[name] = {
        "token": uuid.uuid4().hex,
        "docs_file": f"{name}/docs.jsonl",
        "files": files,
        "counts": counts,
        "sources": {k: str(v) for k, v in sources.items()},
        "split": split,
        "seed": seed if parts else None,
        "registered_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    try:
        # Build the doc store now, so rerankers in parallel processes never race to build it.
        _write_registry(entries)
        load(name).docs_store().build()
    except BaseException:
        entries.pop(name)
        _write_registry(entries)
        shutil.rmtree(final, ignore_errors=True)
        raise
    return list(files)
