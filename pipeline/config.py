"""Experiment configuration for ``pipeline run``: TOML in, a checked, fully resolved config out.

A config names the datasets of each split, the base model, the settings of each stage and
optional extra rerankers scored zero-shot. Every key is checked before any stage runs: an
unknown key, a missing required field, an unknown dataset id or model type is a
:class:`PipelineError` that names the file and the key. Defaults are filled in, so the
resolved config (written to ``runs/<name>/config.toml``) says everything a run used and can
be run again as is.

Layout (see ``pipeline/configs/demo.toml`` and ``msmarco.toml`` for complete examples)::

    name = "demo"                    # required: outputs go to runs/<name>/
    description = "…"

    [demo]                           # optional: generate and register the demo collection
    name = "demo"                    #   registered as demo, demo/train, demo/valid, demo/test
    entities = 300
    seed = 0

    [data]                           # required
    train = "demo/train"             # docpairs or qrels
    valid = "demo/valid"             # qrels
    test = ["demo/test"]             # ids, or tables {dataset = "…", rel_level = 2}

    [retrieval]                      # BM25 (Pyserini): k, k1, b, threads, train
    [model]                          # base = "init" (offline, pipeline init-model) or a T5 name/folder
    [train]                          # pipeline.trainconfig.TrainSettings for both rerankers;
    [train.t5ranker]                 #   tables named after a model type override it for that type
    [rerank]                         # depth, batch_size
    [[zero_shot]]                    # name, model, model_type: extra rerankers scored as they are
    [evaluation]                     # metrics, baseline test, correction, max_p

Example:
    >>> cfg = load_config(default_config_path())
    >>> cfg.name, cfg.model.types
    ('demo', ('t5ranker', 't5-reranking-loss'))
"""

from __future__ import annotations

import dataclasses
import json
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.errors import PipelineError

DEFAULT_CONFIG = "demo"
# Display names of the two trained rerankers: the TREC tag and the report's row name.
RUN_NAMES = {"t5ranker": "T5Ranker", "t5-reranking-loss": "T5WithRerankingLoss"}
BASELINE = "BM25"


# --- the resolved config -----------------------------------------------------------------
@dataclass(frozen=True)
class DemoConfig:
    """Parameters of the generated demo collection (:class:`pipeline.demo.DemoSpec`)."""

    name: str = "demo"
    seed: int = 0
    entities: int = 300
    negatives: int = 6


@dataclass(frozen=True)
class TestSet:
    """One test dataset and the lowest grade counted relevant by binary metrics (``trec_eval -l``)."""

    dataset: str
    rel_level: int = 1


@dataclass(frozen=True)
class DataConfig:
    train: str
    valid: str
    test: tuple[TestSet, ...]


@dataclass(frozen=True)
class RetrievalConfig:
    """BM25 over the corpus index; defaults are Pyserini's API defaults."""

    k: int = 100
    k1: float = 0.9
    b: float = 0.4
    threads: int = 0  # 0: all cores
    # BM25 of the training queries too. Training from qrels samples its negatives from BM25
    # itself; the run is for inspection (e.g. comparing the splits' difficulty).
    train: bool = True


@dataclass(frozen=True)
class ModelConfig:
    """The T5 both rerankers start from, and which rerankers to train."""

    # "init": the offline model `pipeline init-model` makes from the training corpus;
    # otherwise a Hugging Face name (e.g. google-t5/t5-base) or a local folder.
    base: str = "init"
    init_size: str = "tiny"
    init_seed: int = 0
    types: tuple[str, ...] = ("t5ranker", "t5-reranking-loss")
    # torch intra-op threads for training and reranking (0: torch's default, one per core).
    # A tiny model on a few busy cores is many times faster with 1 (see the demo config).
    torch_threads: int = 0


@dataclass(frozen=True)
class RerankConfig:
    depth: int = 100
    batch_size: int = 0  # 0: the reranker's default


@dataclass(frozen=True)
class ZeroShot:
    """An extra reranker scored as it is (e.g. castorini/monot5-base-msmarco)."""

    name: str
    model: str
    model_type: str = "t5ranker"


@dataclass(frozen=True)
class EvaluationConfig:
    metrics: tuple[str, ...] = ("mrr@100", "mrr@10", "ndcg@10", "recall@100", "map")
    stat_test: str = "student"
    correction: str = "holm"
    max_p: float = 0.05


@dataclass(frozen=True)
class ExperimentConfig:
    """A checked experiment config; :func:`load_config` makes one from TOML."""

    name: str
    data: DataConfig
    description: str = ""
    demo: DemoConfig | None = None
    retrieval: RetrievalConfig = field(default_factory=RetrievalConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: dict[str, Any] = field(default_factory=dict)  # TrainSettings fields for all types
    train_by_type: dict[str, dict[str, Any]] = field(default_factory=dict)
    rerank: RerankConfig = field(default_factory=RerankConfig)
    zero_shot: tuple[ZeroShot, ...] = ()
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    source: str = ""  # the file it came from

    def train_settings(self, model_type: str):
        """The :class:`~pipeline.trainconfig.TrainSettings` of one model type."""
        from pipeline.trainconfig import load_settings

        return load_settings(overrides={**self.train, **self.train_by_type.get(model_type, {})})

    def to_dict(self) -> dict[str, Any]:
        """The resolved config as plain data (what ``config.toml``/``config.json`` hold)."""
        out: dict[str, Any] = {"name": self.name, "description": self.description}
        if self.demo is not None:
            out["demo"] = dataclasses.asdict(self.demo)
        out["data"] = {
            "train": self.data.train,
            "valid": self.data.valid,
            "test": [dataclasses.asdict(t) for t in self.data.test],
        }
        out["retrieval"] = dataclasses.asdict(self.retrieval)
        out["model"] = {**dataclasses.asdict(self.model), "types": list(self.model.types)}
        from pipeline.trainconfig import load_settings

        # Every setting shared by the types, then each type's own overrides as a sub-table.
        common = load_settings(overrides=self.train).to_dict()
        train: dict[str, Any] = {k: v for k, v in common.items() if v is not None}
        for model_type in self.model.types:
            if self.train_by_type.get(model_type):
                train[model_type] = dict(self.train_by_type[model_type])
        out["train"] = train
        out["rerank"] = dataclasses.asdict(self.rerank)
        out["zero_shot"] = [dataclasses.asdict(z) for z in self.zero_shot]
        out["evaluation"] = {**dataclasses.asdict(self.evaluation), "metrics": list(self.evaluation.metrics)}
        return out


# --- loading and checking ----------------------------------------------------------------
_SECTIONS = {
    "name",
    "description",
    "demo",
    "data",
    "retrieval",
    "model",
    "train",
    "rerank",
    "zero_shot",
    "evaluation",
}


def _configs_folder() -> Path:
    # Package data of `pipeline` (pyproject: package-data configs/*.toml), beside this module.
    # (importlib.resources trips over the editable install's namespace path here.)
    return Path(__file__).parent / "configs"


def default_config_path() -> Path:
    """The embedded default experiment: ``pipeline/configs/demo.toml``."""
    return shipped_config(DEFAULT_CONFIG)


def shipped_configs() -> list[str]:
    """Names of the configs shipped with the package (``demo``, ``msmarco``)."""
    folder = _configs_folder()
    return sorted(p.name[: -len(".toml")] for p in folder.iterdir() if p.name.endswith(".toml"))


def shipped_config(name: str) -> Path:
    """The path of a shipped config by name, e.g. ``shipped_config("msmarco")``."""
    path = _configs_folder() / f"{name}.toml"
    if not path.is_file():
        raise PipelineError(f"no shipped config {name!r} (shipped: {', '.join(shipped_configs())})")
    return path


def resolve_config_path(config: str | os.PathLike | None) -> Path:
    """A config file: the given path, a shipped config's name (``msmarco``), or the default."""
    if config is None:
        return default_config_path()
    path = Path(config)
    if path.is_file():
        return path
    if not path.suffix and os.sep not in str(config) and str(config) in shipped_configs():
        return shipped_config(str(config))
    raise PipelineError(f"{config}: no such config file (shipped configs: {', '.join(shipped_configs())})")


class _Table:
    """One TOML table being checked: typed getters that name ``file [table] key`` on error."""

    def __init__(self, data: Any, where: str, path: str):
        if not isinstance(data, dict):
            raise PipelineError(f"{where}: must be a table, got {type(data).__name__}")
        self.data, self.where, self.path = data, where, path

    def _name(self, key: str) -> str:
        return f"{self.path}{key}"

    def check_keys(self, allowed) -> None:
        for key in self.data:
            if key not in allowed:
                raise PipelineError(
                    f"{self.where}: unknown key '{self._name(key)}' (known: {', '.join(sorted(allowed))})"
                )

    def require(self, key: str):
        if key not in self.data:
            raise PipelineError(f"{self.where}: missing required key '{self._name(key)}'")
        return self.data[key]

    def get(self, key: str, kind: type | tuple[type, ...], default):
        if key not in self.data:
            return default
        value = self.data[key]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if float in kinds and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if isinstance(value, bool) and bool not in kinds or not isinstance(value, kinds):
            names = " or ".join(k.__name__ for k in kinds)
            raise PipelineError(f"{self.where}: '{self._name(key)}' must be {names}, got {value!r}")
        return value

    def string(self, key: str, default=None, required: bool = False) -> str:
        if required:
            self.require(key)
        value = self.get(key, str, default)
        if required and not value.strip():
            raise PipelineError(f"{self.where}: '{self._name(key)}' must not be empty")
        return value

    def integer(self, key: str, default: int, minimum: int = 0) -> int:
        value = self.get(key, int, default)
        if value < minimum:
            raise PipelineError(f"{self.where}: '{self._name(key)}' must be >= {minimum}, got {value}")
        return value

    def table(self, key: str) -> _Table:
        return _Table(self.data.get(key, {}), f"{self.where.split(' [')[0]} [{self._name(key)}]", f"{key}.")


def _dataclass_from(cls, table: _Table, kinds: dict[str, type | tuple[type, ...]]):
    table.check_keys(kinds)
    defaults = cls()
    return cls(**{key: table.get(key, kind, getattr(defaults, key)) for key, kind in kinds.items()})


def _parse(data: dict[str, Any], where: str) -> ExperimentConfig:
    from pipeline import trainconfig

    top = _Table(data, where, "")
    top.check_keys(_SECTIONS)
    name = top.string("name", required=True)
    if "/" in name or name.startswith(".") or any(c.isspace() for c in name):
        raise PipelineError(f"{where}: 'name' {name!r} must be a plain folder name (no '/', spaces or leading '.')")
    description = top.string("description", "")

    demo = None
    if "demo" in data:
        t = top.table("demo")
        demo = _dataclass_from(DemoConfig, t, {"name": str, "seed": int, "entities": int, "negatives": int})

    t = top.table("data")
    if "data" not in data:
        raise PipelineError(f"{where}: missing required table '[data]' (train, valid, test dataset ids)")
    t.check_keys({"train", "valid", "test"})
    train_ds = t.string("train", required=True)
    valid_ds = t.string("valid", required=True)
    raw_tests = t.require("test")
    if isinstance(raw_tests, (str, dict)):
        raw_tests = [raw_tests]
    if not isinstance(raw_tests, list) or not raw_tests:
        raise PipelineError(f"{t.where}: 'data.test' must be a dataset id or a non-empty list of them")
    tests = []
    for i, item in enumerate(raw_tests):
        if isinstance(item, str):
            item = {"dataset": item}
        tt = _Table(item, t.where, f"data.test[{i}].")
        tt.check_keys({"dataset", "rel_level"})
        tests.append(TestSet(tt.string("dataset", required=True), tt.integer("rel_level", 1, minimum=1)))
    if len({x.dataset for x in tests}) != len(tests):
        raise PipelineError(f"{t.where}: 'data.test' names a dataset twice")
    data_cfg = DataConfig(train_ds, valid_ds, tuple(tests))

    t = top.table("retrieval")
    retrieval = _dataclass_from(RetrievalConfig, t, {"k": int, "k1": float, "b": float, "threads": int, "train": bool})
    if retrieval.k < 1 or retrieval.k1 < 0 or not 0 <= retrieval.b <= 1 or retrieval.threads < 0:
        raise PipelineError(f"{t.where}: need k >= 1, k1 >= 0, 0 <= b <= 1, threads >= 0; got {retrieval}")

    t = top.table("model")
    t.check_keys({"base", "init_size", "init_seed", "types", "torch_threads"})
    types = t.get("types", list, list(ModelConfig.types))
    from pipeline.rerankers import canonical_model_type

    canonical = []
    for i, model_type in enumerate(types):
        canonical.append(canonical_model_type(model_type, where=f"{t.where}: 'model.types[{i}]'"))
    if len(set(canonical)) != len(canonical):
        raise PipelineError(f"{t.where}: 'model.types' names a model type twice")
    model = ModelConfig(
        base=t.string("base", "init"),
        init_size=t.string("init_size", "tiny"),
        init_seed=t.integer("init_seed", 0),
        types=tuple(canonical),
        torch_threads=t.integer("torch_threads", 0),
    )
    from pipeline.modelinit import SIZES

    if model.init_size not in SIZES:
        raise PipelineError(f"{t.where}: 'model.init_size' must be one of {', '.join(SIZES)}, got {model.init_size!r}")

    t = top.table("train")
    train_common: dict[str, Any] = {}
    train_by_type: dict[str, dict[str, Any]] = {}
    for key, value in t.data.items():
        if isinstance(value, dict):
            model_type = canonical_model_type(key, where=f"{t.where}: table 'train.{key}'")
            sub = _Table(value, t.where, f"train.{key}.")
            sub.check_keys(trainconfig.FIELDS)
            train_by_type[model_type] = {k: _train_value(k, v, sub) for k, v in value.items()}
        elif key in trainconfig.FIELDS:
            train_common[key] = _train_value(key, value, t)
        else:
            raise PipelineError(
                f"{t.where}: unknown key 'train.{key}' (known: {', '.join(trainconfig.FIELDS)}, "
                "or a table named after a model type)"
            )

    t = top.table("rerank")
    rerank = _dataclass_from(RerankConfig, t, {"depth": int, "batch_size": int})
    if rerank.depth < 1 or rerank.batch_size < 0:
        raise PipelineError(f"{t.where}: need depth >= 1 and batch_size >= 0, got {rerank}")

    zero_shot = []
    raw_zero = data.get("zero_shot", [])
    if not isinstance(raw_zero, list):
        raise PipelineError(f"{where}: 'zero_shot' must be an array of tables ([[zero_shot]])")
    for i, item in enumerate(raw_zero):
        zt = _Table(item, f"{where} [[zero_shot]] #{i + 1}", f"zero_shot[{i}].")
        zt.check_keys({"name", "model", "model_type"})
        z = ZeroShot(
            name=zt.string("name", required=True),
            model=zt.string("model", required=True),
            model_type=canonical_model_type(
                zt.string("model_type", "t5ranker"), where=f"{zt.where}: 'zero_shot[{i}].model_type'"
            ),
        )
        if any(c.isspace() or c == "/" for c in z.name):
            raise PipelineError(f"{zt.where}: 'zero_shot[{i}].name' {z.name!r} must be one word without '/'")
        zero_shot.append(z)
    names = [BASELINE] + [RUN_NAMES[m] for m in model.types] + [z.name for z in zero_shot]
    if len(set(names)) != len(names):
        raise PipelineError(f"{where}: run names must differ, got {', '.join(names)}")

    t = top.table("evaluation")
    evaluation = _dataclass_from(
        EvaluationConfig,
        t,
        {"metrics": list, "stat_test": str, "correction": str, "max_p": float},
    )
    from pipeline.evaluation import CORRECTIONS, STAT_TESTS, check_metrics

    try:
        metrics = tuple(check_metrics(list(evaluation.metrics)))
    except PipelineError as exc:
        raise PipelineError(f"{t.where}: 'evaluation.metrics': {exc}") from None
    if evaluation.stat_test not in STAT_TESTS:
        raise PipelineError(f"{t.where}: 'evaluation.stat_test' must be one of {', '.join(STAT_TESTS)}")
    if evaluation.correction not in CORRECTIONS:
        raise PipelineError(f"{t.where}: 'evaluation.correction' must be one of {', '.join(CORRECTIONS)}")
    if not 0 < evaluation.max_p < 1:
        raise PipelineError(f"{t.where}: 'evaluation.max_p' must be between 0 and 1")
    evaluation = dataclasses.replace(evaluation, metrics=metrics)

    cfg = ExperimentConfig(
        name=name,
        description=description,
        demo=demo,
        data=data_cfg,
        retrieval=retrieval,
        model=model,
        train=train_common,
        train_by_type=train_by_type,
        rerank=rerank,
        zero_shot=tuple(zero_shot),
        evaluation=evaluation,
        source=where,
    )
    for model_type in model.types:  # the combined settings must make sense (e.g. batch divisibility)
        try:
            cfg.train_settings(model_type)
        except PipelineError as exc:
            raise PipelineError(f"{where}: [train] for {model_type}: {exc}") from None
    return cfg


def _train_value(key: str, value: Any, table: _Table) -> Any:
    from pipeline import trainconfig

    try:
        return trainconfig._coerce(key, value, f"{table.where}")
    except PipelineError as exc:
        raise PipelineError(str(exc).replace(f"'{key}'", f"'{table.path}{key}'")) from None


def check_datasets(cfg: ExperimentConfig) -> None:
    """Every dataset id must exist (ir_datasets or registered), except those the demo stage makes.

    Loading an ir_datasets id reads only its metadata: nothing is downloaded.
    """
    from pipeline import data

    made_by_demo = set()
    if cfg.demo is not None:
        made_by_demo = {cfg.demo.name} | {f"{cfg.demo.name}/{s}" for s in ("train", "valid", "test")}
    keys = [("data.train", cfg.data.train), ("data.valid", cfg.data.valid)]
    keys += [(f"data.test[{i}]", t.dataset) for i, t in enumerate(cfg.data.test)]
    for key, ds_id in keys:
        if ds_id in made_by_demo:
            continue
        try:
            data.load(ds_id)
        except PipelineError as exc:
            raise PipelineError(f"{cfg.source}: '{key}': {exc}") from None


def load_config(path: str | os.PathLike | None = None, check_ids: bool = True) -> ExperimentConfig:
    """Read and check an experiment TOML (default: the embedded demo); nothing is written.

    Example:
        >>> load_config("pipeline/configs/msmarco.toml").model.base  # doctest: +SKIP
        'google-t5/t5-base'
    """
    path = resolve_config_path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise PipelineError(f"{path}: not valid TOML: {exc}") from None
    except OSError as exc:
        raise PipelineError(f"{path}: cannot read: {exc}") from None
    cfg = _parse(raw, str(path))
    if check_ids:
        check_datasets(cfg)
    return cfg


# --- writing -------------------------------------------------------------------------------
def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # JSON string escapes are valid TOML basic strings
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"cannot write {value!r} as TOML")


def _toml_key(key: str) -> str:
    return key if key.replace("-", "").replace("_", "").isalnum() else json.dumps(key)


def to_toml(cfg: ExperimentConfig) -> str:
    """The resolved config as TOML; :func:`load_config` reads it back to an equal config."""
    data = cfg.to_dict()
    lines = [f"# Resolved experiment config (from {cfg.source}); `pipeline run` this file to redo it."]
    for key in ("name", "description"):
        lines.append(f"{key} = {_toml_value(data[key])}")
    for section in ("demo", "data", "retrieval", "model", "train", "rerank", "evaluation"):
        if section not in data:
            continue
        table = data[section]
        lines += ["", f"[{section}]"]
        subtables = {k: v for k, v in table.items() if isinstance(v, dict)}
        for key, value in table.items():
            if key not in subtables and value is not None:
                lines.append(f"{_toml_key(key)} = {_toml_value(value)}")
        for key, value in subtables.items():
            lines += ["", f"[{section}.{_toml_key(key)}]"]
            lines += [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items() if v is not None]
    for z in data["zero_shot"]:
        lines += ["", "[[zero_shot]]"] + [f"{k} = {_toml_value(v)}" for k, v in z.items()]
    return "\n".join(lines) + "\n"
