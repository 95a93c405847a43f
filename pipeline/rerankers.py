"""The two T5 rerankers, their checkpoints, and reranking a TREC run.

Both models wrap a Hugging Face ``T5ForConditionalGeneration`` and its tokenizer and
read ONE decoder step from the decoder start token; they differ in input and score:

``T5Ranker`` (monoT5, pointwise)
    input ``query: q document: d relevant:`` + EOS; score = log P(true) from a
    log-softmax over the (true, false) logits; loss = seq2seq cross-entropy of the
    target ``true``/``false`` followed by EOS (labels ``[token, eos]``, as monoT5 was
    trained in pygaggle and pyterrier_t5).
``T5WithRerankingLoss`` (the seed's ``T5_with_reranking_loss``, RankT5-style)
    input ``query: q document: d`` + EOS; score = the raw logit of the score token
    (``true`` unless configured, RankT5 checkpoints use a sentinel such as
    ``<extra_id_10>``); loss = softmax cross-entropy over ``[positive, negatives…]``
    (``listwise``) or the mean over the k (positive, negative_i) pairs (``pairwise``).

Inputs are built from token ids, not strings: the query is capped at
``max_query_tokens``; a document too long for ``max_length`` with the query and the
prompt words is cut into chunks of the remaining budget, each chunk scored with the
full query, so ``relevant:`` and EOS are never truncated away. Chunk scores are
combined by ``aggregation``: ``mean`` (the seed: average the first-step logits over
chunks, then apply the score rule), ``max`` (best chunk score) or ``first`` (only the
first chunk is scored: plain truncation, as pyterrier_t5 does).

Scoring is built for speed: every distinct passage is tokenized once, sequences are
sorted by length into batches padded only to their longest member, the forward pass
runs the encoder and a single decoder step under ``torch.inference_mode()`` and
multiplies the decoder state by the lm_head rows of the score tokens only (never
``generate()``, never the full vocabulary); bf16 autocast on CUDA, fp32 on CPU.

A checkpoint is an ordinary Hugging Face folder (``model.safetensors``, config,
tokenizer) plus ``reranker.json`` with the settings below. A folder or hub name
without ``reranker.json`` (e.g. ``castorini/monot5-base-msmarco``) loads as a
``T5Ranker`` with the published monoT5 prompt ``Query: q Document: d Relevant:`` and
tokens ``▁true``/``▁false``. Weights are read from safetensors only (no pickle).

Example:
    >>> r = load_reranker("models/tiny")  # doctest: +SKIP
    >>> r.score("fast sorting", ["quicksort in place", "a poem"])  # doctest: +SKIP
    [-0.61, -0.83]
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import ClassVar

# This module IS the torch part of the package: it imports torch at module level. The
# CLI imports it inside its handlers, so `pipeline --help` never pays for torch.
import torch

from pipeline.errors import PipelineError

SETTINGS_FILE = "reranker.json"
SETTINGS_FORMAT = 1
AGGREGATIONS = ("mean", "max", "first")
LOSSES = ("listwise", "pairwise")

# The seed's prompt, kept by every checkpoint trained here.
SEED_CONVENTION = {
    "query_prefix": "query:",
    "document_prefix": "document:",
    "relevant_prefix": "relevant:",
    "true_token": "true",
    "false_token": "false",
}
# The published monoT5 prompt (pygaggle T5BatchTokenizer, pyterrier_t5 MonoT5ReRanker)
# and its prediction tokens (▁true = 1176, ▁false = 6136 in the T5 vocabulary).
MONOT5_CONVENTION = {
    "query_prefix": "Query:",
    "document_prefix": "Document:",
    "relevant_prefix": "Relevant:",
    "true_token": "▁true",
    "false_token": "▁false",
}
CONVENTIONS = {"seed": SEED_CONVENTION, "monot5": MONOT5_CONVENTION}

# CPU: large enough to amortise per-batch overhead, small enough that one batch of
# 512-token T5-base inputs stays well under a few GB. CUDA: bf16 T5-base fits easily.
DEFAULT_BATCH_SIZE = {"cpu": 32, "cuda": 128}
# rerank() scores the run in blocks of about this many pairs, so token lists of a
# 700k-pair run never sit in memory at once; large enough for good length sorting.
BLOCK_PAIRS = 20_000


# --- settings ---------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class RerankerSettings:
    """Everything besides weights and tokenizer that decides a reranker's scores.

    Saved as ``reranker.json`` beside the Hugging Face files. Frozen: the prompt and
    token ids are resolved when a reranker is built; change settings with
    ``Reranker.with_settings(...)`` or ``from_pretrained(..., setting=value)``.

    Args:
        model_type: ``t5ranker`` or ``t5-reranking-loss``.
        query_prefix, document_prefix, relevant_prefix: prompt words placed before the
            query, before the document and after it (``relevant_prefix`` is empty for
            ``t5-reranking-loss``).
        true_token: the token whose first-step logit scores relevance. A word
            (``true``, looked up as the tokenizer writes it after a space) or an
            exact piece name (``▁true``, ``<extra_id_10>``).
        false_token: ``T5Ranker`` only: the token opposed to ``true_token``.
        aggregation: ``mean``, ``max`` or ``first`` over a long document's chunks.
        max_query_tokens: query tokens kept (default 64).
        max_length: encoder input length, prompt and EOS included (default 512).
        loss: ``T5WithRerankingLoss`` only: ``listwise`` or ``pairwise``.

    Example:
        >>> RerankerSettings(aggregation="max").max_length
        512
    """

    model_type: str = "t5ranker"
    query_prefix: str = "query:"
    document_prefix: str = "document:"
    relevant_prefix: str = "relevant:"
    true_token: str = "true"
    false_token: str = "false"
    aggregation: str = "mean"
    max_query_tokens: int = 64
    max_length: int = 512
    loss: str = "listwise"

    def validate(self, where: str = "settings") -> RerankerSettings:
        """Check values; raise a one-line PipelineError naming the key."""
        if self.model_type not in _CANONICAL_TYPES:
            raise PipelineError(f"{where}: model_type {self.model_type!r} is not one of {', '.join(_CANONICAL_TYPES)}")
        if self.aggregation not in AGGREGATIONS:
            raise PipelineError(f"{where}: aggregation {self.aggregation!r} is not one of {', '.join(AGGREGATIONS)}")
        if self.loss not in LOSSES:
            raise PipelineError(f"{where}: loss {self.loss!r} is not one of {', '.join(LOSSES)}")
        for key in ("max_query_tokens", "max_length"):
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise PipelineError(f"{where}: {key} must be a positive integer, not {value!r}")
        for key in ("query_prefix", "document_prefix", "relevant_prefix", "true_token", "false_token"):
            if not isinstance(getattr(self, key), str):
                raise PipelineError(f"{where}: {key} must be a string")
        if not self.true_token:
            raise PipelineError(f"{where}: true_token must not be empty")
        if self.model_type == "t5ranker" and not self.false_token:
            raise PipelineError(f"{where}: false_token must not be empty for a t5ranker")
        return self

    def to_dict(self) -> dict:
        return {"format": SETTINGS_FORMAT, **dataclasses.asdict(self)}

    @classmethod
    def from_dict(cls, data: Mapping, where: str = "settings") -> RerankerSettings:
        """Settings from a dict (e.g. ``reranker.json``); unknown keys are an error."""
        data = dict(data)
        data.pop("format", None)
        known = {f.name for f in dataclasses.fields(cls)}
        for key in data:
            if key not in known:
                raise PipelineError(f"{where}: unknown reranker setting {key!r} (known: {', '.join(sorted(known))})")
        if "model_type" in data:
            data["model_type"] = canonical_model_type(data["model_type"], where=where)
        return cls(**data).validate(where)


# --- pure pieces (tested on their own) --------------------------------------------------
def t5ranker_scores(logits: torch.Tensor) -> torch.Tensor:
    """monoT5 score from first-step ``[logit_true, logit_false]`` rows: log P(true).

    Example:
        >>> import torch
        >>> round(t5ranker_scores(torch.tensor([[2.0, 1.0]])).item(), 4)  # -log(1 + e**-1)
        -0.3133
    """
    return torch.log_softmax(logits.float(), dim=-1)[..., 0]


def reranking_loss_scores(logits: torch.Tensor) -> torch.Tensor:
    """RankT5 score: the raw first-step logit of the score token (column 0)."""
    return logits.float()[..., 0]


def listwise_softmax_ce(scores: torch.Tensor) -> torch.Tensor:
    """Mean over queries of the softmax cross-entropy of rows ``[pos, neg_1, …, neg_k]``, target 0.

    Example:
        >>> import torch
        >>> round(listwise_softmax_ce(torch.tensor([[1.0, 0.0]])).item(), 4)  # log(1 + e**-1)
        0.3133
    """
    target = torch.zeros(scores.shape[0], dtype=torch.long, device=scores.device)
    return torch.nn.functional.cross_entropy(scores.float(), target)


def pairwise_softmax_ce(scores: torch.Tensor) -> torch.Tensor:
    """Mean over queries and their k pairs of the softmax CE over ``[pos, neg_i]``, target 0.

    With k = 1 it equals :func:`listwise_softmax_ce`. CE over two logits is
    ``softplus(neg - pos)``.

    Example:
        >>> import torch
        >>> round(pairwise_softmax_ce(torch.tensor([[1.0, 0.0, 1.0]])).item(), 4)  # mean of 0.3133, 0.6931
        0.5032
    """
    scores = scores.float()
    return torch.nn.functional.softplus(scores[:, 1:] - scores[:, :1]).mean()


def chunk_input_ids(
    query_ids: Sequence[int],
    doc_ids: Sequence[int],
    *,
    query_prefix_ids: Sequence[int],
    document_prefix_ids: Sequence[int],
    relevant_prefix_ids: Sequence[int],
    eos_id: int,
    max_query_tokens: int,
    max_length: int,
    first_only: bool = False,
) -> list[list[int]]:
    """Encoder inputs for one (query, document) pair: one list of ids per document chunk.

    Each chunk is ``query_prefix + query[:max_query_tokens] + document_prefix + chunk
    + relevant_prefix + [eos]``, at most ``max_length`` ids; the document is cut into
    consecutive chunks of the room left, so the prompt's tail is never cut.

    Example:
        >>> chunk_input_ids([7], [1, 2, 3], query_prefix_ids=[5], document_prefix_ids=[6],
        ...                 relevant_prefix_ids=[8], eos_id=1, max_query_tokens=64, max_length=6)
        [[5, 7, 6, 1, 8, 1], [5, 7, 6, 2, 8, 1], [5, 7, 6, 3, 8, 1]]
    """
    head = [*query_prefix_ids, *query_ids[:max_query_tokens], *document_prefix_ids]
    tail = [*relevant_prefix_ids, eos_id]
    budget = max_length - len(head) - len(tail)
    if budget < 1:
        raise PipelineError(
            f"max_length {max_length} leaves no room for the document: the prompt and query take "
            f"{len(head) + len(tail)} tokens (lower max_query_tokens or raise max_length)"
        )
    doc_ids = list(doc_ids)
    if first_only or len(doc_ids) <= budget:
        return [head + doc_ids[:budget] + tail]
    return [head + doc_ids[i : i + budget] + tail for i in range(0, len(doc_ids), budget)]


def token_id(tokenizer, token: str) -> int:
    """The id of a score token: an exact piece (``▁true``, ``<extra_id_10>``) or a word.

    A word is looked up as the tokenizer writes it after a space (``true`` -> ``▁true``
    in T5's vocabulary, as pyterrier_t5's ``tokenizer.encode('true')[0]``); it must be
    a single piece.
    """
    vocab = tokenizer.get_vocab()
    if token.startswith("▁") or (token.startswith("<") and token.endswith(">")):
        if token in vocab:
            return vocab[token]
        raise PipelineError(f"score token {token!r} is not in the tokenizer's vocabulary")
    pieces = tokenizer.tokenize(token)
    if len(pieces) > 1 and pieces[0] == "▁":  # a bare word-boundary piece before the word
        pieces = pieces[1:]
    if len(pieces) == 1:
        return tokenizer.convert_tokens_to_ids(pieces[0])
    if token in vocab:
        return vocab[token]
    raise PipelineError(f"score token {token!r} is not a single token of this tokenizer (pieces: {pieces})")


def _pick_device(device=None):
    from pipeline import distributed

    if device is not None:
        return torch.device(device)
    return distributed.device()  # cuda:LOCAL_RANK under torchrun (cuda:0 alone), else CPU


# --- the models -------------------------------------------------------------------------
class Reranker(torch.nn.Module):
    """Shared base of the two rerankers: input building, fast scoring, save and load.

    Attributes:
        t5: the ``T5ForConditionalGeneration``.
        tokenizer: its tokenizer.
        settings: a :class:`RerankerSettings`.
        model_type: ``t5ranker`` or ``t5-reranking-loss``.

    ``forward(queries, positives, negatives)`` is the training loss, so the module
    can be wrapped by DistributedDataParallel as it is.
    """

    model_type: ClassVar[str] = ""
    plain_convention: ClassVar[str] = "seed"  # prompt of a plain HF checkpoint loaded via this class

    def __init__(self, t5, tokenizer, settings: RerankerSettings | None = None):
        super().__init__()
        if type(self) is Reranker:
            raise TypeError("Reranker is abstract: use T5Ranker, T5WithRerankingLoss or load_reranker()")
        settings = settings or self.default_settings()
        if settings.model_type != self.model_type:
            raise PipelineError(
                f"settings are for a {settings.model_type} model, not {type(self).__name__} ({self.model_type})"
            )
        settings.validate()
        self.t5 = t5
        self.tokenizer = tokenizer
        self.settings = settings
        self.train(t5.training)  # mirror the wrapped model's mode (a new Module starts in training mode)
        self.name_or_path: str | None = None  # where it was loaded from (set by from_pretrained)
        if tokenizer.eos_token_id is None or tokenizer.pad_token_id is None:
            raise PipelineError("the tokenizer has no EOS or pad token: not a T5 tokenizer")
        self.eos_id = tokenizer.eos_token_id
        self.pad_id = tokenizer.pad_token_id
        self._prefix = {
            name: self._encode([getattr(settings, name)])[0] if getattr(settings, name) else []
            for name in ("query_prefix", "document_prefix", "relevant_prefix")
        }
        self.score_token_ids = [token_id(tokenizer, t) for t in self._score_token_names()]
        config = t5.config
        scale = getattr(config, "scale_decoder_outputs", None)
        if scale is None:  # transformers 4 convention: tied embeddings => scaled outputs
            scale = config.model_type == "t5" and getattr(config, "tie_word_embeddings", True)
        # T5 (v1.0) rescales the decoder output by d_model**-0.5 before its tied lm_head.
        self._output_scale = config.d_model**-0.5 if scale else 1.0

    # -- construction ---------------------------------------------------------------
    @classmethod
    def default_settings(cls, convention: str = "seed") -> RerankerSettings:
        """This class's settings with a prompt convention (``seed`` or ``monot5``)."""
        return RerankerSettings(model_type=cls.model_type, **CONVENTIONS[convention])

    def _score_token_names(self) -> list[str]:
        raise NotImplementedError

    @classmethod
    def from_pretrained(
        cls, name_or_dir: str | os.PathLike, *, convention: str | None = None, device=None, **overrides
    ) -> Reranker:
        """Load a reranker folder or a Hugging Face model name.

        With ``reranker.json`` present its settings apply (the class must match its
        ``model_type``; ``Reranker.from_pretrained`` picks the class). Without it,
        ``T5Ranker``/``Reranker`` use the monoT5 prompt and ``T5WithRerankingLoss``
        the seed's; ``convention="seed"|"monot5"`` chooses explicitly (training a
        T5Ranker from ``t5-base`` passes ``convention="seed"``). ``overrides`` set
        single settings (``aggregation="max"``). Weights are read from safetensors.

        Example:
            >>> T5Ranker.from_pretrained("castorini/monot5-base-msmarco")  # doctest: +SKIP
        """
        return _load(cls, name_or_dir, convention=convention, device=device, overrides=overrides)

    def save_pretrained(self, directory: str | os.PathLike) -> Path:
        """Write the HF folder (safetensors, config, tokenizer) and ``reranker.json``.

        The folder is written beside its final name and moved into place, so an
        interrupted save leaves the previous checkpoint (if any) intact.
        """
        directory = Path(directory)
        directory.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
        umask = os.umask(0)
        os.umask(umask)
        tmp.chmod(0o777 & ~umask)  # mkdtemp makes it private; a checkpoint is an ordinary folder
        try:
            self.t5.save_pretrained(tmp)  # transformers 5 writes safetensors only
            self.tokenizer.save_pretrained(tmp)
            (tmp / SETTINGS_FILE).write_text(
                json.dumps(self.settings.to_dict(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
            )
            old = None
            if directory.exists():
                old = directory.with_name(f".{directory.name}.old-{os.getpid()}")
                os.replace(directory, old)
            os.replace(tmp, directory)
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        return directory

    def with_settings(self, **changes) -> Reranker:
        """A reranker of the same class sharing this one's weights and tokenizer, some settings changed.

        Example:
            >>> r.with_settings(aggregation="max", max_length=256)  # doctest: +SKIP
        """
        if "model_type" in changes:
            raise PipelineError("model_type cannot be changed: build the other class instead")
        other = type(self)(self.t5, self.tokenizer, dataclasses.replace(self.settings, **changes))
        other.name_or_path = self.name_or_path
        return other

    @property
    def device(self):
        return next(self.t5.parameters()).device

    # -- inputs ---------------------------------------------------------------------
    def _encode(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids of each text, no special tokens (one fast batch call)."""
        if not texts:
            return []
        return self.tokenizer(list(texts), add_special_tokens=False, verbose=False)["input_ids"]

    def _chunks(self, query_ids, doc_ids, first_only: bool = False) -> list[list[int]]:
        s = self.settings
        return chunk_input_ids(
            query_ids,
            doc_ids,
            query_prefix_ids=self._prefix["query_prefix"],
            document_prefix_ids=self._prefix["document_prefix"],
            relevant_prefix_ids=self._prefix["relevant_prefix"],
            eos_id=self.eos_id,
            max_query_tokens=s.max_query_tokens,
            max_length=s.max_length,
            first_only=first_only or s.aggregation == "first",
        )

    def build_inputs(self, query: str, text: str) -> list[list[int]]:
        """The encoder input ids of one pair, one list per document chunk.

        Example:
            >>> r.tokenizer.decode(r.build_inputs("q", "d")[0])  # doctest: +SKIP
            'query: q document: d relevant:</s>'
        """
        (q,), (d,) = self._encode([query]), self._encode([text])
        _check_nonempty([q], [query], "query")
        _check_nonempty([d], [text], "passage")
        return self._chunks(q, d)

    def _padded(self, seqs: Sequence[Sequence[int]]):
        width = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for i, s in enumerate(seqs):
            ids[i, : len(s)] = torch.as_tensor(s, dtype=torch.long)
            mask[i, : len(s)] = 1
        return ids.to(self.device), mask.to(self.device)

    # -- the forward pass -----------------------------------------------------------
    def first_step_logits(self, input_ids, attention_mask, token_ids: Sequence[int] | None = None):
        """Logits of ``token_ids`` (default: the score tokens) at the first decoder step.

        Runs the encoder and one decoder step from the decoder start token and
        multiplies the decoder state by those lm_head rows only; equal to
        ``t5(...).logits[:, 0, token_ids]`` at a fraction of the cost.
        """
        token_ids = self.score_token_ids if token_ids is None else list(token_ids)
        t5 = self.t5
        encoded = t5.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        start = torch.full(
            (input_ids.shape[0], 1), t5.config.decoder_start_token_id, dtype=torch.long, device=input_ids.device
        )
        hidden = t5.decoder(
            input_ids=start,
            encoder_hidden_states=encoded,
            encoder_attention_mask=attention_mask,
            use_cache=False,
        ).last_hidden_state[:, 0]
        hidden = hidden * self._output_scale
        rows = t5.get_output_embeddings().weight[torch.as_tensor(token_ids, device=hidden.device)]
        return hidden @ rows.T

    def scores_from_logits(self, logits):
        """Chunk scores from first-step score-token logits (the class's score rule)."""
        raise NotImplementedError

    def _aggregate(self, logits):
        """One pair's score from its chunks' logits ``(n_chunks, n_tokens)``."""
        agg = self.settings.aggregation
        if logits.shape[0] == 1 or agg == "first":
            return float(self.scores_from_logits(logits[:1])[0])
        if agg == "mean":  # the seed: average the first-step logits, then score
            return float(self.scores_from_logits(logits.mean(dim=0, keepdim=True))[0])
        return float(self.scores_from_logits(logits).max())

    def _autocast(self):
        import contextlib

        if self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)  # never fp16: T5 overflows
        return contextlib.nullcontext()

    def _run_sequences(self, seqs: list[list[int]], batch_size: int, on_batch=None, shard: bool = False):
        """First-step score-token logits (float32, CPU) of every sequence, in input order.

        Sequences are sorted by length (longest first, so memory peaks at once) and
        batched with padding to each batch's longest member. With ``shard`` under torchrun
        (a collective: every rank calls it with the same sequences) the batches are dealt
        round-robin to the ranks and the logits all-gathered: every batch is the one a single
        process would run, so every score is bit-for-bit the single-process score.
        """
        from pipeline import distributed

        out = torch.empty((len(seqs), len(self.score_token_ids)), dtype=torch.float32)
        order = sorted(range(len(seqs)), key=lambda i: (-len(seqs[i]), i))
        starts = list(range(0, len(order), batch_size))
        sharded = shard and distributed.is_distributed()
        if sharded:
            starts = distributed.shard(starts)
        was_training = self.training
        self.eval()  # dropout off: scores must not depend on chance
        try:
            with torch.inference_mode(), self._autocast():
                for start in starts:
                    idx = order[start : start + batch_size]
                    ids, mask = self._padded([seqs[i] for i in idx])
                    logits = self.first_step_logits(ids, mask)
                    out[torch.as_tensor(idx)] = logits.float().cpu()
                    self.batches_scored += 1
                    if on_batch is not None:
                        on_batch(idx)
        finally:
            self.train(was_training)
        if sharded:
            mine = [(start, out[torch.as_tensor(order[start : start + batch_size])]) for start in starts]
            for rank, part in enumerate(distributed.all_gather(mine)):
                for start, logits in part:
                    idx = order[start : start + batch_size]
                    out[torch.as_tensor(idx)] = logits
                    if on_batch is not None and rank != distributed.rank():
                        on_batch(idx)
        return out

    # Batches of sequences this process has scored (per rank under torchrun).
    batches_scored: int = 0

    def default_batch_size(self) -> int:
        return DEFAULT_BATCH_SIZE.get(self.device.type, DEFAULT_BATCH_SIZE["cpu"])

    # -- scoring --------------------------------------------------------------------
    def score(self, query: str, texts: Sequence[str], batch_size: int | None = None) -> list[float]:
        """Score each text against ``query`` (higher = more relevant).

        Example:
            >>> r.score("sorting", ["quicksort", "poetry"])  # doctest: +SKIP
            [-0.52, -0.90]
        """
        return self.score_pairs([(query, t) for t in texts], batch_size=batch_size)

    def score_pairs(
        self, pairs: Sequence[tuple[str, str]], batch_size: int | None = None, progress=None, shard: bool = False
    ) -> list[float]:
        """Score (query, text) pairs; each distinct query and text is tokenized once.

        A pair's score does not depend on the batch size or on the other pairs.
        ``progress`` is an optional tqdm bar advanced by pairs done. ``shard=True`` under
        torchrun splits the batches across the ranks (every rank must call it with the same
        pairs) and returns all scores on every rank.
        """
        if not pairs:
            return []
        batch_size = batch_size or self.default_batch_size()
        if batch_size < 1:
            raise PipelineError(f"batch size must be positive, not {batch_size}")
        q_index: dict[str, int] = {}
        t_index: dict[str, int] = {}
        for q, t in pairs:
            q_index.setdefault(q, len(q_index))
            t_index.setdefault(t, len(t_index))
        q_ids = self._encode(list(q_index))
        t_ids = self._encode(list(t_index))
        _check_nonempty(q_ids, list(q_index), "query")
        _check_nonempty(t_ids, list(t_index), "passage")
        seqs: list[list[int]] = []
        owner: list[int] = []  # pair index of each sequence
        for p, (q, t) in enumerate(pairs):
            chunks = self._chunks(q_ids[q_index[q]], t_ids[t_index[t]])
            seqs.extend(chunks)
            owner.extend([p] * len(chunks))
        n_chunks = [0] * len(pairs)
        for p in owner:
            n_chunks[p] += 1
        on_batch = None
        if progress is not None:
            remaining = list(n_chunks)

            def on_batch(idx):  # advance by the pairs whose last chunk is now scored
                done = 0
                for i in idx:
                    remaining[owner[i]] -= 1
                    done += remaining[owner[i]] == 0
                progress.update(done)

        logits = self._run_sequences(seqs, batch_size, on_batch, shard=shard)
        if len(seqs) == len(pairs):  # no long documents: one vectorised score rule
            return self.scores_from_logits(logits).tolist()
        scores: list[float] = []
        pos = 0
        for n in n_chunks:
            scores.append(self._aggregate(logits[pos : pos + n]))
            pos += n
        return scores

    # -- training -------------------------------------------------------------------
    def _batch_inputs(self, queries: Sequence[str], texts: Sequence[str]):
        """Padded encoder inputs for training pairs: the first chunk (truncated document)."""
        q_ids = self._encode(queries)
        t_ids = self._encode(texts)
        _check_nonempty(q_ids, queries, "query")
        _check_nonempty(t_ids, texts, "passage")
        seqs = [self._chunks(q, t, first_only=True)[0] for q, t in zip(q_ids, t_ids, strict=True)]
        return self._padded(seqs)

    def loss(self, queries: Sequence[str], positives: Sequence[str], negatives: Sequence[Sequence[str]]):
        """The training loss (scalar tensor, mean over the batch); see the subclass."""
        raise NotImplementedError

    def forward(self, queries, positives, negatives):
        """Training loss (see :meth:`loss`): DDP wraps the module and calls this."""
        return self.loss(queries, positives, negatives)

    def extra_repr(self) -> str:
        return f"model_type={self.model_type!r}, settings={self.settings}"


class T5Ranker(Reranker):
    """monoT5: ``query: q document: d relevant:`` -> log P(true) at the first decoder step.

    Loss: seq2seq cross-entropy of ``true``/``false`` + EOS (labels ``[token, eos]``,
    as pygaggle and pyterrier_t5 train monoT5: target text ``"true"`` tokenizes to
    ``[▁true, </s>]``), averaged over all 1 + k pairs of every query.

    Example:
        >>> r = T5Ranker.from_pretrained("models/tiny", convention="seed")  # doctest: +SKIP
        >>> r.loss(["q"], ["relevant text"], [["other text"]])  # doctest: +SKIP
    """

    model_type = "t5ranker"
    plain_convention = "monot5"

    def _score_token_names(self):
        return [self.settings.true_token, self.settings.false_token]

    def scores_from_logits(self, logits):
        return t5ranker_scores(logits)

    def loss(self, queries, positives, negatives):
        _check_batch(queries, positives, negatives, min_negatives=0)
        qs, texts, labels = [], [], []
        true_id, false_id = self.score_token_ids
        for q, pos, negs in zip(queries, positives, negatives, strict=True):
            qs.append(q)
            texts.append(pos)
            labels.append(true_id)
            for neg in negs:
                qs.append(q)
                texts.append(neg)
                labels.append(false_id)
        ids, mask = self._batch_inputs(qs, texts)
        target = torch.tensor([[label, self.eos_id] for label in labels], dtype=torch.long, device=ids.device)
        # HF's loss: mean CE over all 2 x pairs label tokens (none is padding).
        return self.t5(input_ids=ids, attention_mask=mask, labels=target).loss


class T5WithRerankingLoss(Reranker):
    """RankT5-style: ``query: q document: d`` -> raw first-step logit of the score token.

    Loss (``settings.loss``): ``listwise`` softmax cross-entropy over
    ``[positive, negatives…]`` of each query with target 0; ``pairwise``: the mean
    over the k pairs of the softmax CE over ``[positive, negative_i]``. Both are
    the same when k = 1. Every query needs the same number (>= 1) of negatives.

    Example:
        >>> r = T5WithRerankingLoss.from_pretrained("t5-base", true_token="<extra_id_10>")  # doctest: +SKIP
    """

    model_type = "t5-reranking-loss"
    plain_convention = "seed"

    @classmethod
    def default_settings(cls, convention: str = "seed") -> RerankerSettings:
        """As the base, without ``relevant:``: the seed's input ends with the document."""
        return dataclasses.replace(super().default_settings(convention), relevant_prefix="")

    def _score_token_names(self):
        return [self.settings.true_token]

    def scores_from_logits(self, logits):
        return reranking_loss_scores(logits)

    def group_scores(self, queries, positives, negatives):
        """Scores ``(n_queries, 1 + k)``: column 0 the positive, then the negatives (with grad)."""
        _check_batch(queries, positives, negatives, min_negatives=1)
        k = len(negatives[0])
        if any(len(negs) != k for negs in negatives):
            raise PipelineError("every query needs the same number of negatives for the ranking loss")
        qs, texts = [], []
        for q, pos, negs in zip(queries, positives, negatives, strict=True):
            qs.extend([q] * (1 + k))
            texts.extend([pos, *negs])
        ids, mask = self._batch_inputs(qs, texts)
        logits = self.first_step_logits(ids, mask)
        return self.scores_from_logits(logits).view(len(queries), 1 + k)

    def loss(self, queries, positives, negatives):
        scores = self.group_scores(queries, positives, negatives)
        if self.settings.loss == "pairwise":
            return pairwise_softmax_ce(scores)
        return listwise_softmax_ce(scores)


def _check_nonempty(ids: Sequence[Sequence[int]], texts: Sequence[str], what: str) -> None:
    for i, seq in enumerate(ids):
        if not seq:
            raise PipelineError(f"empty {what} (text {texts[i][:40]!r}, no tokens): nothing to score")


def _check_batch(queries, positives, negatives, min_negatives: int) -> None:
    if not (len(queries) == len(positives) == len(negatives)):
        raise PipelineError(
            f"loss: {len(queries)} queries, {len(positives)} positives and {len(negatives)} negative lists differ"
        )
    if not queries:
        raise PipelineError("loss: empty batch")
    if any(len(negs) < min_negatives for negs in negatives):
        raise PipelineError(f"loss: every query needs at least {min_negatives} negative(s)")


_CANONICAL_TYPES = ("t5ranker", "t5-reranking-loss")
_ALIASES = {
    "t5ranker": "t5ranker",
    "vanilla_t5": "t5ranker",
    "t5-reranking-loss": "t5-reranking-loss",
    "T5_with_reranking_loss": "t5-reranking-loss",
}


def canonical_model_type(name: str, where: str = "model type") -> str:
    """``t5ranker`` or ``t5-reranking-loss`` for a model type name or seed alias.

    Example:
        >>> canonical_model_type("vanilla_t5")
        't5ranker'
    """
    try:
        return _ALIASES[name]
    except (KeyError, TypeError):
        raise PipelineError(f"{where}: unknown model type {name!r} (known: {', '.join(_ALIASES)})") from None


MODEL_TYPES: dict[str, type[Reranker]] = {
    "t5ranker": T5Ranker,
    "t5-reranking-loss": T5WithRerankingLoss,
    "vanilla_t5": T5Ranker,  # the seed's names
    "T5_with_reranking_loss": T5WithRerankingLoss,
}


# --- loading ----------------------------------------------------------------------------
_WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json")
_TOKENIZER_FILES = ("tokenizer.json", "spiece.model")


def _check_folder(path: Path) -> None:
    """A clear error naming what a local checkpoint folder lacks."""
    if not path.is_dir():
        raise PipelineError(f"{path}: not a model folder")
    missing = []
    if not (path / "config.json").is_file():
        missing.append("config.json")
    if not any((path / f).is_file() for f in _WEIGHT_FILES):
        if any((path / f).is_file() for f in ("pytorch_model.bin", "pytorch_model.bin.index.json")):
            raise PipelineError(
                f"{path}: weights are in pickle format (pytorch_model.bin), which is never loaded here; "
                "convert them to model.safetensors"
            )
        missing.append("weights (model.safetensors)")
    if not any((path / f).is_file() for f in _TOKENIZER_FILES):
        missing.append("tokenizer (tokenizer.json or spiece.model)")
    if missing:
        raise PipelineError(f"{path}: incomplete model folder: missing {', '.join(missing)}")


def read_settings(name_or_dir: str | os.PathLike) -> RerankerSettings | None:
    """The settings in ``<dir>/reranker.json``, or None for a plain HF checkpoint/folder."""
    path = Path(name_or_dir) / SETTINGS_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise PipelineError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise PipelineError(f"{path}: expected a JSON object")
    if "model_type" not in data:
        raise PipelineError(f"{path}: no 'model_type' (t5ranker or t5-reranking-loss)")
    return RerankerSettings.from_dict(data, where=str(path))


def _looks_like_path(name: str) -> bool:
    """A name that can only be a folder (hub ids are ``name`` or ``org/name``)."""
    return name.startswith((".", "/", "~")) or name.endswith("/") or name.count("/") > 1


def _load(cls, name_or_dir, *, convention, device, overrides) -> Reranker:
    path = Path(name_or_dir)
    local = path.exists()
    if local:
        _check_folder(path)
    elif _looks_like_path(str(name_or_dir)):
        raise PipelineError(f"{name_or_dir}: model folder not found")
    if convention is not None and convention not in CONVENTIONS:
        raise PipelineError(f"convention {convention!r} is not one of {', '.join(CONVENTIONS)}")
    settings = read_settings(path) if local else None
    if settings is not None:
        target = MODEL_TYPES[settings.model_type]
        if cls is not Reranker and cls is not target:
            raise PipelineError(
                f"{path} holds a {settings.model_type} checkpoint ({SETTINGS_FILE}), not a {cls.model_type}: "
                f"load it with {target.__name__} or pipeline.rerankers.load_reranker"
            )
        if convention is not None:
            prompt = target.default_settings(convention)
            settings = dataclasses.replace(settings, **{k: getattr(prompt, k) for k in CONVENTIONS[convention]})
    else:  # a plain HF checkpoint: the class's published prompt unless told otherwise
        target = T5Ranker if cls is Reranker else cls
        settings = target.default_settings(convention or target.plain_convention)
    if "model_type" in overrides:
        raise PipelineError("model_type cannot be overridden: load with the other class instead")
    known = sorted(f.name for f in dataclasses.fields(RerankerSettings) if f.name != "model_type")
    for key in overrides:
        if key not in known:
            raise PipelineError(f"unknown reranker setting {key!r} (known: {', '.join(known)})")
    settings = dataclasses.replace(settings, **overrides).validate(str(name_or_dir))

    t5, tokenizer = _load_hf(name_or_dir, local)
    reranker = target(t5, tokenizer, settings)
    reranker.to(_pick_device(device))
    reranker.eval()
    reranker.name_or_path = str(name_or_dir)
    return reranker


def _load_hf(name_or_dir, local: bool):
    """The T5 model (float32, safetensors only) and tokenizer of a folder or hub name."""
    from transformers import AutoConfig, AutoModelForSeq2SeqLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    where = str(name_or_dir)
    try:
        config = AutoConfig.from_pretrained(name_or_dir)
    except (OSError, ValueError) as exc:
        hint = "" if local else " (not a local folder, and the Hugging Face hub could not provide it)"
        raise PipelineError(f"{where}: cannot read the model config{hint}: {str(exc).splitlines()[0]}") from None
    if config.model_type not in ("t5", "mt5"):
        raise PipelineError(f"{where}: a {config.model_type!r} model, not a T5 (model_type 't5' or 'mt5')")
    # transformers draws a "Loading weights" bar per load; noise in `pipeline rerank` and training logs.
    bars_were_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        t5 = AutoModelForSeq2SeqLM.from_pretrained(name_or_dir, use_safetensors=True, dtype=torch.float32)
    except (OSError, ValueError) as exc:
        raise PipelineError(f"{where}: cannot load safetensors weights: {str(exc).splitlines()[0]}") from None
    finally:
        if bars_were_on:
            hf_logging.enable_progress_bar()
    try:
        tokenizer = AutoTokenizer.from_pretrained(name_or_dir)
    except (OSError, ValueError, TypeError) as exc:
        raise PipelineError(f"{where}: cannot load the tokenizer: {str(exc).splitlines()[0]}") from None
    return t5, tokenizer


def load_reranker(name_or_dir: str | os.PathLike, model_type: str | None = None, **kwargs) -> Reranker:
    """Load a reranker: the class named by ``reranker.json``, else ``model_type``, else T5Ranker.

    A plain HF checkpoint (no ``reranker.json``) loaded as ``t5ranker`` uses the
    published monoT5 prompt. ``model_type`` contradicting ``reranker.json`` is an error.

    Example:
        >>> load_reranker("castorini/monot5-base-msmarco")  # doctest: +SKIP
        >>> load_reranker("runs/train/best", model_type="t5-reranking-loss")  # doctest: +SKIP
    """
    if model_type is None:
        return Reranker.from_pretrained(name_or_dir, **kwargs)
    cls = MODEL_TYPES[canonical_model_type(model_type)]
    return cls.from_pretrained(name_or_dir, **kwargs)


# --- reranking runs ---------------------------------------------------------------------
def _progress(total: float, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="pair", desc="rerank", disable=not enabled, dynamic_ncols=True, smoothing=0.1)


def rerank(
    reranker: Reranker,
    run: Mapping[str, Mapping[str, float]],
    queries: Mapping[str, str],
    docs: Mapping[str, str],
    depth: int = 100,
    batch_size: int | None = None,
    progress: bool = True,
    shard: bool | None = None,
) -> dict[str, dict[str, float]]:
    """Rescore each query's top ``depth`` candidates of ``run``; returns a new run dict.

    Candidates below ``depth`` are dropped. ``queries`` maps qid -> text, ``docs``
    docid -> passage text (a dict or ``pipeline.data.docs_text``'s mapping). A query
    or document without text is a PipelineError (count and first few ids).

    Under torchrun (``shard`` None or True) this is a collective: every rank calls it with
    the same arguments, scores its share of the batches, and gets the whole run back,
    equal bit for bit to a single process's (see ``pipeline.distributed``).

    Example:
        >>> rerank(r, {"q1": {"d1": 3.0, "d2": 1.0}}, {"q1": "sorting"},
        ...        {"d1": "quicksort", "d2": "poetry"}, depth=100)  # doctest: +SKIP
        {'q1': {'d1': -0.52, 'd2': -0.9}}
    """
    from pipeline.runs import top_k

    if depth < 1:
        raise PipelineError(f"depth must be positive, not {depth}")
    candidates = top_k(run, depth)
    missing_q = [qid for qid in candidates if qid not in queries]
    if missing_q:
        raise PipelineError(
            f"{len(missing_q)} run queries have no text in the dataset (first: {', '.join(missing_q[:5])})"
        )
    texts = _fetch_texts(docs, sorted({d for hits in candidates.values() for d in hits}))
    missing_d = sorted({d for hits in candidates.values() for d in hits if d not in texts})
    if missing_d:
        raise PipelineError(f"{len(missing_d)} run docids are not in the corpus (first: {', '.join(missing_d[:5])})")
    empty = sorted(d for d, text in texts.items() if not str(text).strip())
    if empty:
        raise PipelineError(f"{len(empty)} run docids have empty text (first: {', '.join(empty[:5])})")
    from pipeline import distributed

    shard = distributed.is_distributed() if shard is None else shard
    total = sum(len(h) for h in candidates.values())
    result: dict[str, dict[str, float]] = {}
    with _progress(total, progress and distributed.is_main()) as bar:
        for block in _blocks(candidates, BLOCK_PAIRS):
            keys = [(qid, docid) for qid in block for docid in candidates[qid]]
            pairs = [(queries[qid], texts[docid]) for qid, docid in keys]
            scores = reranker.score_pairs(pairs, batch_size, progress=bar, shard=shard)
            for (qid, docid), score in zip(keys, scores, strict=True):
                result.setdefault(qid, {})[docid] = score
    return result


def _blocks(candidates: Mapping[str, Mapping[str, float]], size: int) -> Iterable[list[str]]:
    block, n = [], 0
    for qid in sorted(candidates):
        block.append(qid)
        n += len(candidates[qid])
        if n >= size:
            yield block
            block, n = [], 0
    if block:
        yield block


def _fetch_texts(docs: Mapping[str, str], ids: list[str]) -> dict[str, str]:
    """docid -> text for the ids present in ``docs`` (``get_many`` when the mapping has it)."""
    if hasattr(docs, "get_many"):
        return dict(docs.get_many(ids))
    out = {}
    for docid in ids:
        try:
            out[docid] = docs[docid]
        except KeyError:
            pass
    return out


def model_name(name_or_dir: str | os.PathLike) -> str:
    """A one-word name for a model: its folder name (the parent's for ``best``/``last``).

    Example:
        >>> model_name("castorini/monot5-base-msmarco"), model_name("out/t5ranker/best")
        ('monot5-base-msmarco', 't5ranker-best')
    """
    path = Path(str(name_or_dir).rstrip("/"))
    name = path.name
    if name in ("best", "last", "final") and path.parent.name:
        name = f"{path.parent.name}-{name}"
    return "_".join(name.split()) or "model"


def rerank_dataset(
    dataset_id: str,
    model: str | os.PathLike | Reranker,
    run_path: str | os.PathLike,
    depth: int = 100,
    batch_size: int | None = None,
    output: str | os.PathLike | None = None,
    skip_missing: bool = False,
    progress: bool = True,
) -> Path:
    """Rerank a TREC run of ``dataset_id`` and write ``runs/<dataset id>/<run>.<model>.trec``.

    Query and passage texts come from ir_datasets (``pipeline.data``). Run docids
    absent from the corpus (or with empty text) are an error naming how many and the
    first few, unless ``skip_missing`` drops them (reported on stderr and in the
    sidecar). Everything is checked before anything is written. The sidecar holds the
    model, its settings, device, timings and pairs/s; the TREC tag is
    ``<run>.<model>``.

    Example:
        >>> rerank_dataset("cacm", "models/tiny", "runs/cacm/bm25.trec")  # doctest: +SKIP
        PosixPath('runs/cacm/bm25.tiny.trec')
    """
    from pipeline import data, distributed
    from pipeline.paths import runs_dir
    from pipeline.runs import read_run, top_k, write_run

    distributed.init()  # under torchrun: join the group, pin this rank's GPU before the model loads
    t_start = time.perf_counter()
    if depth < 1:
        raise PipelineError(f"depth must be positive, not {depth}")
    if batch_size is not None and batch_size < 1:
        raise PipelineError(f"batch size must be positive, not {batch_size}")
    run_path = Path(run_path)
    candidates = top_k(read_run(run_path), depth)

    if isinstance(model, Reranker):
        reranker = model
        model_ref = model.name_or_path or type(model).__name__
    else:
        model_ref = str(model)
        reranker = load_reranker(model)
    t_model = time.perf_counter()

    with distributed.main_first():  # rank 0 builds the doc store on first use, the others reuse it
        queries = data.queries(dataset_id)
        docs_text = data.docs_text(dataset_id)
    missing_q = sorted(qid for qid in candidates if qid not in queries)
    if missing_q:
        raise PipelineError(
            f"{run_path}: {len(missing_q)} of its {len(candidates)} queries are not queries of {dataset_id} "
            f"(first: {', '.join(missing_q[:5])})"
        )
    all_ids = sorted({d for hits in candidates.values() for d in hits})
    texts = _fetch_texts(docs_text, all_ids)
    absent = [d for d in all_ids if d not in texts]
    empty = [d for d in all_ids if d in texts and not str(texts[d]).strip()]
    bad = set(absent) | set(empty)
    skipped = {"docids": 0, "pairs": 0}
    if bad:
        n_pairs_bad = sum(1 for hits in candidates.values() for d in hits if d in bad)
        detail = ", ".join(
            part
            for part in (
                f"{len(absent)} not in the corpus (first: {', '.join(absent[:5])})" if absent else "",
                f"{len(empty)} with empty text (first: {', '.join(empty[:5])})" if empty else "",
            )
            if part
        )
        if not skip_missing:
            raise PipelineError(
                f"{run_path}: {len(bad)} docids of the run cannot be scored on {dataset_id}: {detail}; "
                "pass --skip-missing (skip_missing=True) to drop them"
            )
        candidates = {qid: {d: s for d, s in hits.items() if d not in bad} for qid, hits in candidates.items()}
        candidates = {qid: hits for qid, hits in candidates.items() if hits}
        if not candidates:
            raise PipelineError(f"{run_path}: no docid of the run can be scored on {dataset_id}: {detail}")
        skipped = {
            "docids": len(bad),
            "pairs": n_pairs_bad,
            "not_in_corpus": absent[:20],
            "empty_text": empty[:20],
        }
        if distributed.is_main():
            print(
                f"pipeline rerank: skipped {len(bad)} docids ({n_pairs_bad} pairs) of {run_path}: {detail}",
                file=sys.stderr,
            )
    t_data = time.perf_counter()

    n_pairs = sum(len(h) for h in candidates.values())
    batches_before = reranker.batches_scored
    reranked = rerank(reranker, candidates, queries, texts, depth=depth, batch_size=batch_size, progress=progress)
    t_score = time.perf_counter()
    batches_per_rank = distributed.all_gather(reranker.batches_scored - batches_before)

    name = f"{'_'.join(run_path.stem.split())}.{model_name(model_ref)}"
    out = Path(output) if output else runs_dir(dataset_id) / f"{name}.trec"
    device = reranker.device
    metadata = {
        "stage": "rerank",
        "dataset": dataset_id,
        "input_run": str(run_path),
        "model": model_ref,
        "model_type": reranker.model_type,
        "settings": dataclasses.asdict(reranker.settings),
        "depth": depth,
        "batch_size": batch_size or reranker.default_batch_size(),
        "device": str(device),
        "precision": "bf16 autocast" if device.type == "cuda" else "float32",
        "pairs": n_pairs,
        "skipped": skipped,
        "seconds": {
            "load_model": round(t_model - t_start, 3),
            "load_data": round(t_data - t_model, 3),
            "score": round(t_score - t_data, 3),
            "total": round(time.perf_counter() - t_start, 3),
        },
        "pairs_per_s": round(n_pairs / max(t_score - t_data, 1e-9), 2),
        # torchrun: the processes that shared the scoring (1 without torchrun), batches each ran.
        "world_size": distributed.world_size(),
        "batches_per_rank": batches_per_rank,
    }
    distributed.on_main(write_run, reranked, out, tag=name, metadata=metadata)  # one writer
    return out


__all__ = [
    "AGGREGATIONS",
    "CONVENTIONS",
    "LOSSES",
    "MODEL_TYPES",
    "MONOT5_CONVENTION",
    "SEED_CONVENTION",
    "SETTINGS_FILE",
    "Reranker",
    "RerankerSettings",
    "T5Ranker",
    "T5WithRerankingLoss",
    "canonical_model_type",
    "chunk_input_ids",
    "listwise_softmax_ce",
    "load_reranker",
    "model_name",
    "pairwise_softmax_ce",
    "read_settings",
    "rerank",
    "rerank_dataset",
    "reranking_loss_scores",
    "t5ranker_scores",
    "token_id",
]
