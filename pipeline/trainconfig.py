"""Training settings: one frozen dataclass, its documented defaults, TOML and CLI overrides.

Precedence: the defaults below < a TOML file (``pipeline train --config FILE``) < CLI flags.
Each default's ``source`` says where the value comes from:

* **seed** — the research code this project grew from (``train.py`` of the seed repository:
  ``SEED = 42``, ``LR = 0.001``, ``T5_LR = 1e-3``, ``MAX_EPOCH = 20``, ``BATCH_SIZE = 32``,
  ``BATCHES_PER_EPOCH = 1024``, ``GRAD_ACC_SIZE = 8``, ``PATIENCE = 5``, one positive and one
  negative per training example, validation on MRR@100 of the reranked top 100).
* **monoT5** — Nogueira et al. 2020, *Document Ranking with a Pretrained Sequence-to-Sequence Model*,
  which fine-tunes T5 the way T5 itself was fine-tuned (Raffel et al. 2020, §3.1.2): Adafactor with
  a constant learning rate of 1e-3. ``transformers.optimization.Adafactor`` with
  ``scale_parameter=False, relative_step=False, warmup_init=False`` is that set-up.
* **pygaggle** — castorini/pygaggle ``pygaggle/run/finetune_monot5.py`` (HF ``Seq2SeqTrainer`` with
  ``adafactor=True``, lr 3e-4, ``warmup_steps=1000``, linear decay, ``weight_decay=5e-5``,
  8 × 16 = 128 examples per step) and the HF Trainer default ``max_grad_norm=1.0``.

Example:
    >>> s = load_settings(overrides={"batch_size": 8, "grad_acc_size": 4})
    >>> s.batch_size, s.micro_batches
    (8, 2)
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.errors import PipelineError

OPTIMIZERS = ("adafactor", "adamw")
SCHEDULES = ("constant", "linear")


def _opt(default, help: str, choices: tuple[str, ...] | None = None):
    return field(default=default, metadata={"help": help, "choices": choices})


@dataclass(frozen=True)
class TrainSettings:
    """Hyperparameters of :func:`pipeline.training.train` (all overridable by TOML and CLI).

    Batch vocabulary, used everywhere in this package:

    * a **training example** is one query with one positive passage and ``negatives`` negative
      passages, i.e. ``1 + negatives`` query–passage *pairs* (T5Ranker learns ``true`` for the
      positive and ``false`` for each negative; T5WithRerankingLoss ranks the positive first);
    * an **optimizer step** consumes ``batch_size`` examples;
    * they are processed in ``batch_size / grad_acc_size`` **micro-batches** of ``grad_acc_size``
      examples each (gradient accumulation, as in the seed where ``GRAD_ACC_SIZE`` examples go
      through the model at once), so peak memory follows ``grad_acc_size`` and the gradient
      equals that of one batch of ``batch_size`` examples (each micro-batch loss is weighted by
      ``grad_acc_size / batch_size``);
    * an **epoch** is ``batches_per_epoch`` optimizer steps followed by one validation.
    """

    # seed: SEED = 42.
    seed: int = _opt(42, "seed of Python, NumPy, torch (CPU and CUDA) and of the example stream (seed: 42)")
    # seed: LR = 0.001 for the parameters outside the T5 body (none in the two rerankers here).
    lr: float = _opt(1e-3, "learning rate of parameters outside the T5 body, if any (seed: 1e-3)")
    # seed: T5_LR = 1e-3; monoT5/T5 fine-tuning: constant 1e-3 with Adafactor.
    t5_lr: float = _opt(1e-3, "learning rate of the T5 parameters (seed and monoT5: 1e-3)")
    # seed: MAX_EPOCH = 20.
    max_epoch: int = _opt(20, "most epochs to train (seed: 20)")
    # seed: BATCH_SIZE = 32 examples per optimizer step (monoT5 used 128).
    batch_size: int = _opt(32, "training examples per optimizer step (seed: 32; monoT5: 128)")
    # seed: BATCHES_PER_EPOCH = 1024.
    batches_per_epoch: int = _opt(1024, "optimizer steps per epoch (seed: 1024)")
    # seed: GRAD_ACC_SIZE = 8 examples per forward/backward pass.
    grad_acc_size: int = _opt(8, "examples per micro-batch; batch_size must be a multiple (seed: 8)")
    # seed: PATIENCE = 5.
    patience: int = _opt(5, "stop after this many epochs without a better validation MRR@100 (seed: 5)")
    # seed: the top 100 of the first stage is reranked for validation; the issue fixes 100.
    valid_depth: int = _opt(100, "BM25 candidates reranked per validation query (seed: 100)")
    # 0 = all. The seed scored a random 20% of the validation queries each epoch; all of them,
    # always the same, keeps epochs comparable.
    valid_queries: int = _opt(0, "validate on the first N validation query ids only (0 = all)")
    # seed: one negative per positive (pairs); MS MARCO triples have exactly one.
    negatives: int = _opt(1, "negative passages per positive (seed and MS MARCO triples: 1)")
    # Candidate depth of the first stage at test time (valid_depth), used for the negatives too.
    negatives_depth: int = _opt(100, "qrels datasets: negatives are sampled from BM25 top-N minus relevant docs")
    # HF Trainer's group_by_length sorts "mega-batches" of 50 batches by length (get_length_grouped_indices).
    group_steps: int = _opt(50, "sort each pool of this many steps' examples by length into steps (HF: 50; 1 = off)")
    # Buffer large enough to mix neighbouring lines of a sorted triples file, small enough for RAM.
    shuffle_buffer: int = _opt(10_000, "docpairs datasets: size of the seeded shuffle buffer")
    # monoT5 / T5: Adafactor. (The seed used Adam, which is unstable for pretrained T5 at 1e-3.)
    optimizer: str = _opt("adafactor", "adafactor (monoT5/T5) or adamw", OPTIMIZERS)
    # AdamW default of torch is 0.01; Adafactor's 0.0; pygaggle: 5e-5. monoT5: none.
    weight_decay: float = _opt(0.0, "decoupled weight decay (monoT5: 0; pygaggle: 5e-5)")
    # monoT5: no warm-up (constant lr); pygaggle: 1000 steps.
    warmup_steps: int = _opt(0, "optimizer steps of linear warm-up from 0 (monoT5: 0; pygaggle: 1000)")
    # monoT5: constant; pygaggle (HF Trainer default): linear decay to 0 at the last step.
    schedule: str = _opt("constant", "after warm-up: constant (monoT5) or linear decay to 0 (pygaggle)", SCHEDULES)
    # HF Trainer default 1.0 (pygaggle). 0 disables clipping (the seed did not clip).
    max_grad_norm: float = _opt(1.0, "clip the gradient norm to this (HF Trainer/pygaggle: 1.0; 0 = off)")
    # None = the reranker's own default (T5WithRerankingLoss: see pipeline.rerankers).
    loss: str | None = _opt(None, "T5WithRerankingLoss only: its ranking loss (default: the reranker's default)")

    @property
    def micro_batches(self) -> int:
        """Micro-batches per optimizer step (``batch_size / grad_acc_size``)."""
        return self.batch_size // self.grad_acc_size

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of every setting (JSON-ready)."""
        return dataclasses.asdict(self)


FIELDS = {f.name: f for f in dataclasses.fields(TrainSettings)}


def field_type(name: str) -> type:
    """The Python type of a setting (``int``, ``float`` or ``str``)."""
    default = FIELDS[name].default
    return str if default is None else type(default)


def _coerce(name: str, value: Any, where: str) -> Any:
    kind = field_type(name)
    if name == "loss" and value is None:
        return None
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise PipelineError(f"{where}: '{name}' must be {kind.__name__}, got {value!r}")
    choices = FIELDS[name].metadata.get("choices")
    if choices and value not in choices:
        raise PipelineError(f"{where}: '{name}' must be one of {', '.join(choices)}, got {value!r}")
    return value


def read_toml(path: str | Path) -> dict[str, Any]:
    """Settings from a TOML file: top-level keys, or a ``[train]`` table.

    Example:
        >>> read_toml("train.toml")  # doctest: +SKIP
        {'lr': 0.0001, 'optimizer': 'adamw'}
    """
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PipelineError(f"{path}: settings file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise PipelineError(f"{path}: not valid TOML: {exc}") from None
    table, where = (data["train"], f"{path} [train]") if isinstance(data.get("train"), dict) else (data, str(path))
    for key in table:
        if key not in FIELDS:
            raise PipelineError(f"{where}: unknown key '{key}' (known: {', '.join(FIELDS)})")
    return {key: _coerce(key, value, where) for key, value in table.items()}


def load_settings(toml: str | Path | None = None, overrides: dict[str, Any] | None = None) -> TrainSettings:
    """Defaults, then the TOML file, then ``overrides`` (e.g. CLI flags; ``None`` values ignored).

    Raises :class:`PipelineError` naming the key for unknown keys, wrong types and bad values.

    Example:
        >>> load_settings(overrides={"lr": 0, "patience": 1}).t5_lr
        0.001
    """
    values: dict[str, Any] = {}
    if toml is not None:
        values.update(read_toml(toml))
    for key, value in (overrides or {}).items():
        if key not in FIELDS:
            raise PipelineError(f"unknown training setting '{key}' (known: {', '.join(FIELDS)})")
        if value is not None:
            values[key] = _coerce(key, value, "settings")
    settings = TrainSettings(**values)
    check_settings(settings)
    return settings


def check_settings(s: TrainSettings) -> None:
    """Raise :class:`PipelineError` for values training cannot run with."""
    for name in ("max_epoch", "batch_size", "batches_per_epoch", "grad_acc_size", "patience", "valid_depth"):
        if getattr(s, name) < 1:
            raise PipelineError(f"setting '{name}' must be >= 1, got {getattr(s, name)}")
    for name in ("negatives", "negatives_depth", "shuffle_buffer", "group_steps"):
        if getattr(s, name) < 1:
            raise PipelineError(f"setting '{name}' must be >= 1, got {getattr(s, name)}")
    for name in ("lr", "t5_lr", "weight_decay", "max_grad_norm", "warmup_steps", "valid_queries"):
        if getattr(s, name) < 0:
            raise PipelineError(f"setting '{name}' must be >= 0, got {getattr(s, name)}")
    if s.batch_size % s.grad_acc_size:
        raise PipelineError(
            f"setting 'batch_size' ({s.batch_size}) is not divisible by 'grad_acc_size' ({s.grad_acc_size}): "
            "each optimizer step is batch_size examples in micro-batches of grad_acc_size"
        )
    if s.optimizer not in OPTIMIZERS:
        raise PipelineError(f"setting 'optimizer' must be one of {', '.join(OPTIMIZERS)}, got {s.optimizer!r}")
    if s.schedule not in SCHEDULES:
        raise PipelineError(f"setting 'schedule' must be one of {', '.join(SCHEDULES)}, got {s.schedule!r}")


def add_arguments(parser) -> None:
    """Add one ``--flag`` per setting to an argparse parser (default ``None`` = not given)."""
    for name, f in FIELDS.items():
        kind = field_type(name)
        flag = "--" + name.replace("_", "-")
        default = f.default
        parser.add_argument(
            flag,
            dest=name,
            type=kind,
            default=None,
            choices=f.metadata.get("choices"),
            help=f"{f.metadata['help']} [default: {default}]",
        )


def overrides_from_args(args) -> dict[str, Any]:
    """The settings given as CLI flags (``None`` for the ones not given)."""
    return {name: getattr(args, name, None) for name in FIELDS}
