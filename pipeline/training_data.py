"""Training examples from ir_datasets: a deterministic, resumable stream of (query, positive, negatives).

Two sources, chosen by what the dataset has:

* **docpairs** (``msmarco-passage/train/triples-small``, or a local dataset registered with
  ``--docpairs``): ``docpairs_iter()`` is streamed (never loaded whole) through a seeded shuffle
  buffer; each triple is one example with one negative.
* **qrels only** (Cranfield and CACM splits): every judged-relevant (rel > 0) pair is a positive;
  negatives are drawn from the same query's BM25 top ``negatives_depth`` minus its judged-relevant
  documents. One pass visits every positive once, in a seeded order.

The stream is a pure function of its seed: example ``n`` is always the same, so the position in
the stream (examples consumed so far) is all a checkpoint needs to store; resuming replays the ids
(no passage text is read while skipping) up to that position.

Example:
    >>> source = example_source("cranfield/train", negatives=1, negatives_depth=100)  # doctest: +SKIP
    >>> next(source.stream(seed=42))  # doctest: +SKIP
    Example(qid='12', positive='173', negatives=('652',))
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator
from dataclasses import dataclass

from pipeline.errors import PipelineError


@dataclass(frozen=True)
class Example:
    """One training example: a query id, a positive doc id and its negative doc ids."""

    qid: str
    positive: str
    negatives: tuple[str, ...]


def _pass_rng(seed: int, n: int) -> random.Random:
    # One independent generator per pass over the data, derived from (seed, pass).
    return random.Random(seed * 1_000_003 + n)


class DocpairsSource:
    """Examples from a dataset's ``docpairs_iter()`` (query id, positive id, negative id)."""

    kind = "docpairs"

    def __init__(self, dataset_id: str, shuffle_buffer: int = 10_000):
        from pipeline import data

        self.dataset_id = dataset_id
        self.dataset = data.load(dataset_id)
        self.shuffle_buffer = shuffle_buffer

    def _one_pass(self, rng: random.Random) -> Iterator[Example]:
        buffer: list[Example] = []
        for pair in self.dataset.docpairs_iter():
            example = Example(str(pair.query_id), str(pair.doc_id_a), (str(pair.doc_id_b),))
            if len(buffer) < self.shuffle_buffer:
                buffer.append(example)
                continue
            i = rng.randrange(len(buffer))
            yield buffer[i]
            buffer[i] = example
        rng.shuffle(buffer)
        yield from buffer

    def stream(self, seed: int) -> Iterator[Example]:
        """Endless examples; pass ``n`` over the triples is shuffled with seed ``(seed, n)``."""
        for n in itertools.count():
            empty = True
            for example in self._one_pass(_pass_rng(seed, n)):
                empty = False
                yield example
            if empty:
                raise PipelineError(f"dataset '{self.dataset_id}' has no docpairs")


class QrelsSource:
    """Examples from qrels positives and BM25 negatives of the same split."""

    kind = "qrels"

    def __init__(self, dataset_id: str, negatives: int = 1, negatives_depth: int = 100):
        from pipeline import data, retrieval

        self.dataset_id = dataset_id
        self.negatives = negatives
        queries = data.queries(dataset_id)
        qrels = data.qrels(dataset_id)
        retrieval.build_index(dataset_id)  # reused when complete
        candidates = retrieval.bm25(dataset_id, k=negatives_depth)
        docs = data.docs_text(dataset_id)
        relevant = {qid: {d for d, rel in judged.items() if rel > 0} for qid, judged in qrels.items()}
        wanted = sorted({d for ds in relevant.values() for d in ds})
        texts = docs.get_many(wanted)
        # Empty passages (Cranfield 471, 995) cannot be scored; unknown ids cannot be read.
        usable = {d for d, t in texts.items() if t and t.strip()}
        self.positives: list[tuple[str, str]] = []
        self.negative_pool: dict[str, list[str]] = {}
        for qid in sorted(relevant):
            pool = sorted(d for d in candidates.get(qid, {}) if d not in relevant[qid])
            if qid not in queries or not pool:
                continue
            self.negative_pool[qid] = pool
            self.positives.extend((qid, d) for d in sorted(relevant[qid]) if d in usable)
        if not self.positives:
            raise PipelineError(
                f"dataset '{dataset_id}' yields no training examples: no query has a judged-relevant, "
                f"non-empty passage and a non-relevant passage in its BM25 top {negatives_depth}"
            )

    def stream(self, seed: int) -> Iterator[Example]:
        """Endless examples; pass ``n`` visits every positive once in an order seeded by ``(seed, n)``."""
        for n in itertools.count():
            rng = _pass_rng(seed, n)
            order = list(self.positives)
            rng.shuffle(order)
            for qid, positive in order:
                pool = self.negative_pool[qid]
                if len(pool) >= self.negatives:
                    negs = rng.sample(pool, self.negatives)
                else:  # fewer candidates than wanted: draw with replacement
                    negs = rng.choices(pool, k=self.negatives)
                yield Example(qid, positive, tuple(negs))


def example_source(
    dataset_id: str, negatives: int = 1, negatives_depth: int = 100, shuffle_buffer: int = 10_000
) -> DocpairsSource | QrelsSource:
    """The example source of a training dataset: its docpairs if it has any, else its qrels.

    Raises :class:`PipelineError` (before anything is trained or written) for a dataset with
    neither, and for ``negatives > 1`` on docpairs (a triple has one negative).

    Example:
        >>> example_source("msmarco-passage/train/triples-small").kind  # doctest: +SKIP
        'docpairs'
    """
    from pipeline import data

    dataset = data.load(dataset_id)
    if dataset.has_docpairs():
        if negatives != 1:
            raise PipelineError(
                f"dataset '{dataset_id}' has docpairs (one negative per positive): 'negatives' must be 1, "
                f"got {negatives}"
            )
        return DocpairsSource(dataset_id, shuffle_buffer)
    if dataset.has_qrels():
        return QrelsSource(dataset_id, negatives, negatives_depth)
    raise PipelineError(
        f"training dataset '{dataset_id}' has neither docpairs nor qrels: nothing to learn from "
        "(register it with --docpairs or --qrels)"
    )


def skip(stream: Iterator[Example], position: int) -> Iterator[Example]:
    """Advance ``stream`` past its first ``position`` examples (ids only, cheap) and return it."""
    next(itertools.islice(stream, position, position), None)
    return stream


def batches(stream: Iterator[Example], batch_size: int) -> Iterator[list[Example]]:
    """Consecutive lists of ``batch_size`` examples (one optimizer step each), in stream order."""
    while True:
        yield list(itertools.islice(stream, batch_size))


def length_grouped_batches(
    stream: Iterator[Example], batch_size: int, group_steps: int, lengths, seed: int, start_step: int = 0
) -> Iterator[list[Example]]:
    """Optimizer-step batches of similar-length examples (the ``group_by_length`` of HF's Trainer).

    Every ``group_steps * batch_size`` consecutive examples of the stream form a pool; the pool
    is sorted by length (``lengths(pool) -> list[int]``, ties in stream order), cut into
    batches, and the batches are yielded in an order shuffled with ``(seed, pool number)``. So
    each step pads little, steps of all lengths still alternate, and batch ``n`` is a pure
    function of the stream and ``n``: ``start_step`` resumes at any step, even inside a pool.
    ``group_steps=1`` keeps every step's examples as they come.

    Example:
        >>> steps = length_grouped_batches(stream, 32, 50, lengths, seed=42)  # doctest: +SKIP
    """
    pool_size = batch_size * group_steps
    pool_number, within = divmod(start_step, group_steps)
    skip(stream, pool_number * pool_size)
    while True:
        pool = list(itertools.islice(stream, pool_size))
        if not pool:
            return
        pool_lengths = lengths(pool)
        order = sorted(range(len(pool)), key=lambda i: (pool_lengths[i], i))
        ordered = [pool[i] for i in order]
        steps = [ordered[i : i + batch_size] for i in range(0, len(ordered), batch_size)]
        _pass_rng(seed, pool_number).shuffle(steps)
        yield from steps[within:]
        within = 0
        pool_number += 1


def micro_batches(examples: list[Example], size: int, length) -> list[list[Example]]:
    """Split one optimizer step's examples into micro-batches of ``size``, grouped by length.

    ``length(example)`` is the example's longest input in tokens. Sorting by it (ties in stream
    order) puts inputs of similar length together, so dynamic padding pads little; the
    accumulated gradient is the same whatever the grouping.
    """
    order = sorted(range(len(examples)), key=lambda i: (length(examples[i]), i))
    ordered = [examples[i] for i in order]
    return [ordered[i : i + size] for i in range(0, len(ordered), size)]
