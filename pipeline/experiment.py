"""``pipeline run``: a whole experiment from one config, as a plan of cached, atomic stages.

Stages, in order::

    demo              generate and register the demo collection (only with a [demo] table)
    index             the Lucene index of the corpus (indexes/<corpus id>/, shared by experiments)
    bm25 <split>      BM25 top-k of the training, validation and test queries
    init-model        the offline T5 (only with model.base = "init")
    train <type>      T5Ranker and T5WithRerankingLoss, validated each epoch on MRR@100
    rerank <run> <t>  each trained (and zero-shot) reranker on each test set's BM25 top-depth
    evaluate <t>      every run against BM25 with significance tests (ranx)

Everything goes under ``runs/<name>/``::

    config.toml, config.json      the config as resolved (defaults filled in)
    stages/<stage>.json           per stage: the hash of its inputs and settings, outputs, seconds
    runs/<dataset id>/*.trec      TREC runs, each with its JSON sidecar
    models/<type>/                the training output (best/, last/, train_log.jsonl, curves)
    evaluation/<dataset id>/      per test set: evaluation.{md,tex,json,txt}, per-query CSV, plots
    report.md, report.tex, report.json, timings.md

A stage is reused when its record holds the same hash (its inputs' hashes, its settings,
the package version) and its outputs exist; otherwise it runs again, and so do the stages
that depend on it. ``force`` redoes every stage. Each stage writes its outputs atomically
and its record last, so an interrupted run continues where it stopped; training resumes
from its last completed epoch. ``dry_run`` prints the plan, what is done and what would be
downloaded (Hugging Face models, ir_datasets files), and touches neither disk nor network.

Example:
    >>> report = run_experiment()  # doctest: +SKIP
    >>> report.name  # doctest: +SKIP
    'report.md'
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline import paths
from pipeline.config import BASELINE, RUN_NAMES, ExperimentConfig, load_config, to_toml
from pipeline.errors import PipelineError
from pipeline.runs import atomic_path, write_json

# Bump when a stage's outputs change meaning for the same inputs (invalidates old records).
STAGE_FORMAT = 1


# --- stages -------------------------------------------------------------------------------
@dataclass
class Stage:
    """One step of the plan: what it makes, the hash that decides reuse, how to run it."""

    id: str  # unique, used as the record's file name (slashes become "~")
    title: str
    key: str
    outputs: list[Path]
    action: Callable[[], dict | None]
    downloads: list[tuple[str, str]] = field(default_factory=list)  # (what, for what)
    # Under torchrun: True for stages every rank takes part in (training, reranking); the
    # others run on rank 0 while the rest wait.
    parallel: bool = False
    status: str = ""  # "done" / "to run" / "to redo (...)"; filled by the plan
    seconds: float | None = None  # of the run that made the outputs
    ran: bool = False  # ran in this invocation


def _hash(*parts: Any) -> str:
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _safe(name: str) -> str:
    return name.replace("/", "~")


class Experiment:
    """A loaded config turned into a plan of stages under ``runs/<name>/``.

    Example:
        >>> exp = Experiment(load_config())  # doctest: +SKIP
        >>> print(exp.plan_text())  # doctest: +SKIP
    """

    def __init__(self, cfg: ExperimentConfig, force: bool = False):
        from importlib import metadata

        self.cfg = cfg
        self.force = force
        self.root = paths.home() / "runs" / cfg.name
        self.version = (STAGE_FORMAT, metadata.version("pipeline"))
        self.stages: list[Stage] = []
        self._build()
        for stage in self.stages:
            stage.status = self._status(stage)

    # --- paths ------------------------------------------------------------------------
    def run_path(self, dataset_id: str, run: str) -> Path:
        return self.root / "runs" / dataset_id / f"{run}.trec"

    def model_dir(self, name: str) -> Path:
        return self.root / "models" / name

    def record_path(self, stage: Stage) -> Path:
        return self.root / "stages" / f"{_safe(stage.id)}.json"

    # --- building the plan ------------------------------------------------------------------
    def _add(self, stage: Stage) -> Stage:
        self.stages.append(stage)
        return stage

    def _build(self) -> None:
        cfg = self.cfg
        demo_key = None
        if cfg.demo is not None:
            demo_key = self._add_demo().key
        from pipeline import data

        def data_key(ds_id: str) -> Any:
            # A registered local dataset changes when re-registered; a demo id with its spec.
            if demo_key is not None and (ds_id == cfg.demo.name or ds_id.startswith(cfg.demo.name + "/")):
                return ["demo", demo_key, ds_id]
            rows = [r for r in data.list_datasets() if r["id"] == ds_id]
            return ["local", ds_id, rows[0]["registered_at"]] if rows else ["ir_datasets", ds_id]

        corpus = self._corpus_id(cfg.data.train)
        test_ids = [t.dataset for t in cfg.data.test]
        index = self._add_index(corpus, data_key(cfg.data.train))
        r = cfg.retrieval
        bm25 = {}
        splits = [("train", cfg.data.train)] if r.train else []
        splits += [("valid", cfg.data.valid)] + [("test", ds) for ds in test_ids]
        for split, ds_id in splits:
            if ds_id in bm25:
                continue
            if self._corpus_id(ds_id) != corpus:
                raise PipelineError(
                    f"{cfg.source}: '{ds_id}' ({split}) searches corpus {self._corpus_id(ds_id)!r}, "
                    f"but the training set's corpus is {corpus!r}: one experiment, one corpus"
                )
            bm25[ds_id] = self._add_bm25(split, ds_id, index, data_key(ds_id))

        base_key: Any = cfg.model.base
        base_path = cfg.model.base
        if cfg.model.base == "init":
            init = self._add_init(index, data_key(cfg.data.train))
            base_key, base_path = init.key, str(init.outputs[0].parent)
        trained = {}
        for model_type in cfg.model.types:
            trained[model_type] = self._add_train(
                model_type, base_path, base_key, bm25[cfg.data.valid], data_key(cfg.data.train)
            )
        rerankers = [(RUN_NAMES[t], str(self.model_dir(t) / "best"), s.key) for t, s in trained.items()]
        rerankers += [(z.name, z.model, ["zero-shot", z.model, z.model_type]) for z in cfg.zero_shot]
        for test in cfg.data.test:
            runs = {BASELINE: bm25[test.dataset]}
            for name, model, model_key in rerankers:
                runs[name] = self._add_rerank(name, model, model_key, test.dataset, bm25[test.dataset])
            self._add_evaluate(test, runs)

    def _corpus_id(self, ds_id: str) -> str:
        cfg = self.cfg
        if cfg.demo is not None and (ds_id == cfg.demo.name or ds_id.startswith(cfg.demo.name + "/")):
            return cfg.demo.name
        from pipeline import data

        return data.corpus_id(ds_id)

    def _add_demo(self) -> Stage:
        from pipeline import demo

        d = self.cfg.demo
        spec = demo.DemoSpec(name=d.name, seed=d.seed, entities=d.entities, negatives=d.negatives)

        def action():
            ids = demo.ensure(spec, force=self.force)
            return {"dataset_ids": ids, "source": str(demo.source_dir(spec))}

        return self._add(
            Stage(
                id="demo",
                title=f"generate + register the demo collection {d.name!r} ({spec.passages} passages)",
                key=_hash("demo", self.version, demo.FORMAT, spec.key()),
                outputs=[demo.source_dir(spec) / "spec.json"],
                action=action,
            )
        )

    def _add_index(self, corpus: str, data_key: Any) -> Stage:
        from pipeline import retrieval

        index = paths.index_dir(corpus)

        def action():
            path = retrieval.build_index(corpus, threads=self.cfg.retrieval.threads or None, force=self.force)
            return {"index": str(path), "marker": retrieval.read_marker(path)}

        return self._add(
            Stage(
                id="index",
                title=f"Lucene index of {corpus!r} -> {index}",
                key=_hash("index", self.version, corpus, data_key, retrieval.INDEX_SETTINGS),
                outputs=[index / retrieval.MARKER],
                action=action,
                downloads=self._downloads(corpus, ("docs",)),
            )
        )

    def _add_bm25(self, split: str, ds_id: str, index: Stage, data_key: Any) -> Stage:
        from pipeline import retrieval

        r = self.cfg.retrieval
        out = self.run_path(ds_id, "bm25")

        def action():
            retrieval.retrieve(ds_id, k=r.k, k1=r.k1, b=r.b, threads=r.threads or None, output=out)
            if split == "valid":  # the reference for the validation scores in the report
                return {"valid_mrr@100": _bm25_valid_mrr(self), "valid_queries": self._valid_queries()}

        return self._add(
            Stage(
                id=f"bm25/{ds_id}",
                title=f"BM25 k1={r.k1} b={r.b} top-{r.k} of {ds_id} ({split}) -> {self._rel(out)}",
                key=_hash("bm25", self.version, ds_id, data_key, index.key, r.k, r.k1, r.b),
                outputs=[out],
                action=action,
                downloads=self._downloads(ds_id, ("queries",)),
            )
        )

    def _add_init(self, index: Stage, data_key: Any) -> Stage:
        from pipeline import modelinit

        m = self.cfg.model
        corpus = self._corpus_id(self.cfg.data.train)
        out = self.model_dir(f"init-{m.init_size}")

        def action():
            # This stage runs only when its record does not match: whatever the folder holds was
            # made from other data or settings (init_model would keep a same-named corpus's model).
            _remove(out)
            modelinit.init_model(corpus, out, size=m.init_size, seed=m.init_seed)

        return self._add(
            Stage(
                id="init-model",
                title=f"offline T5 ({m.init_size}, seed {m.init_seed}) with a tokenizer trained on {corpus!r}",
                key=_hash("init", self.version, corpus, data_key, m.init_size, m.init_seed),
                outputs=[out / "config.json", out / "model.safetensors"],
                action=action,
            )
        )

    def _add_train(self, model_type: str, base_path: str, base_key: Any, valid_bm25: Stage, data_key: Any) -> Stage:
        from pipeline import training

        cfg = self.cfg
        settings = cfg.train_settings(model_type)
        out = self.model_dir(model_type)
        key = _hash(
            "train", self.version, model_type, cfg.data.train, data_key, cfg.data.valid, valid_bm25.key,
            base_key, settings.to_dict(),
        )  # fmt: skip

        def prepare() -> bool:
            started = self.root / "stages" / f"train~{model_type}.started"
            # Same stage hash as the interrupted attempt: resume it; anything else: start over.
            same = started.is_file() and started.read_text().strip() == key
            overwrite = self.force or not same
            if overwrite and out.exists() and not (out / training.SETTINGS_FILE).exists():
                _remove(out)  # a half-made folder of ours, not a training run
            with atomic_path(started) as tmp:
                tmp.write_text(key + "\n")
            return overwrite

        def action():
            from pipeline import distributed

            self._set_torch_threads()
            overwrite = distributed.on_main(prepare)
            _, best_epoch = training.train(
                cfg.data.train,
                cfg.data.valid,
                model_type,
                base_path,
                out,
                settings,
                resume=not overwrite,
                overwrite=overwrite,
                valid_run=valid_bm25.outputs[0],
            )
            log = training.read_log(out / training.LOG_FILE)
            return {"best_epoch": best_epoch, "log": log}

        downloads = [] if cfg.model.base == "init" else self._hub_downloads(cfg.model.base)
        downloads += self._downloads(cfg.data.train, ("docpairs", "queries", "qrels"))
        downloads += self._downloads(cfg.data.valid, ("qrels",))
        return self._add(
            Stage(
                id=f"train/{model_type}",
                title=f"train {RUN_NAMES[model_type]} ({model_type}) from {self._rel(base_path)} -> {self._rel(out)}",
                key=key,
                outputs=[out / "best" / "config.json", out / training.LOG_FILE],
                action=action,
                downloads=downloads,
                parallel=True,
            )
        )

    def _add_rerank(self, name: str, model: str, model_key: Any, ds_id: str, bm25: Stage) -> Stage:
        from pipeline import rerankers

        rr = self.cfg.rerank
        out = self.run_path(ds_id, name.lower() if name in RUN_NAMES.values() else name)
        if name in RUN_NAMES.values():
            out = self.run_path(ds_id, {v: k for k, v in RUN_NAMES.items()}[name])

        def action():
            self._set_torch_threads()
            model_type = None if name in RUN_NAMES.values() else self._zero_shot_type(name)
            reranker = rerankers.load_reranker(model, model_type=model_type)
            rerankers.rerank_dataset(
                ds_id,
                reranker,
                bm25.outputs[0],
                depth=rr.depth,
                batch_size=rr.batch_size or None,
                output=out,
                progress=sys.stderr.isatty(),
            )

        downloads = [] if name in RUN_NAMES.values() else self._hub_downloads(model)
        downloads += self._downloads(ds_id, ("docs",))
        return self._add(
            Stage(
                id=f"rerank/{name}/{ds_id}",
                title=f"rerank the BM25 top-{rr.depth} of {ds_id} with {name} -> {self._rel(out)}",
                key=_hash("rerank", self.version, name, model_key, bm25.key, rr.depth, rr.batch_size),
                outputs=[out],
                action=action,
                downloads=downloads,
                parallel=True,
            )
        )

    def _valid_queries(self) -> int | None:
        types = self.cfg.model.types
        return self.cfg.train_settings(types[0]).valid_queries if types else None

    def _set_torch_threads(self) -> None:
        if self.cfg.model.torch_threads:
            import torch

            torch.set_num_threads(self.cfg.model.torch_threads)

    def _zero_shot_type(self, name: str) -> str:
        return next(z.model_type for z in self.cfg.zero_shot if z.name == name)

    def _add_evaluate(self, test, runs: dict[str, Stage]) -> Stage:
        from pipeline import evaluation, report

        ev = self.cfg.evaluation
        out = self.root / "evaluation" / test.dataset

        def action():
            result = evaluation.compare(
                test.dataset,
                {name: stage.outputs[0] for name, stage in runs.items()},
                metrics=list(ev.metrics),
                baseline=BASELINE,
                stat_test=ev.stat_test,
                max_p=ev.max_p,
                correction=ev.correction,
                rel_level=test.rel_level,
            )
            report.write_report(result, out)

        return self._add(
            Stage(
                id=f"evaluate/{test.dataset}",
                title=f"evaluate {', '.join(runs)} on {test.dataset} (rel_level {test.rel_level}) -> {self._rel(out)}",
                key=_hash(
                    "evaluate",
                    self.version,
                    test.dataset,
                    test.rel_level,
                    {n: s.key for n, s in runs.items()},
                    ev.metrics,
                    ev.stat_test,
                    ev.correction,
                    ev.max_p,
                ),  # fmt: skip
                outputs=[out / "evaluation.json", out / "evaluation.md", out / "evaluation.tex"],
                action=action,
                downloads=self._downloads(test.dataset, ("qrels",)),
            )
        )

    # --- downloads (dry-run) ----------------------------------------------------------------
    def _downloads(self, ds_id: str, parts: tuple[str, ...]) -> list[str]:
        cfg = self.cfg
        if cfg.demo is not None and (ds_id == cfg.demo.name or ds_id.startswith(cfg.demo.name + "/")):
            return []
        found = missing_downloads(ds_id, parts)
        return [(f"{d['url']}{_size(d['size'])}", f"ir_datasets {ds_id}") for d in found]

    def _hub_downloads(self, model: str) -> list[str]:
        if Path(model).exists() or hub_cached(model):
            return []
        return [(f"https://huggingface.co/{model}", "Hugging Face model")]

    # --- status and running ------------------------------------------------------------------
    def _rel(self, path: str | Path) -> str:
        try:
            return str(Path(path).resolve().relative_to(paths.home()))
        except ValueError:
            return str(path)

    def _read_record(self, stage: Stage) -> dict | None:
        try:
            return json.loads(self.record_path(stage).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None

    def _status(self, stage: Stage) -> str:
        record = self._read_record(stage)
        if self.force:
            return "to redo (--force)" if record else "to run"
        if record is None:
            return "to run"
        if record.get("key") != stage.key:
            return "to redo (inputs or settings changed)"
        missing = [p for p in stage.outputs if not p.exists()]
        if missing:
            return f"to redo ({self._rel(missing[0])} is missing)"
        stage.seconds = record.get("seconds")
        return "done"

    def plan_text(self) -> str:
        """The plan: one line per stage with its status, then what would be downloaded."""
        lines = [f"experiment {self.cfg.name!r} ({self.cfg.source}) -> {self._rel(self.root)}/"]
        width = max(len(s.id) for s in self.stages)
        for i, s in enumerate(self.stages, 1):
            lines.append(f"  {i:2d}. {s.id:<{width}}  [{s.status}]  {s.title}")
        todo = [s for s in self.stages if s.status != "done"]
        downloads: dict[str, list[str]] = {}
        for s in todo:
            for what, why in s.downloads:
                if why not in downloads.setdefault(what, []):
                    downloads[what].append(why)
        if downloads:
            lines.append("would download:")
            lines += [f"  {what}  ({'; '.join(why)})" for what, why in downloads.items()]
        else:
            lines.append("would download: nothing")
        return "\n".join(lines)

    def run(self, log=None) -> Path:
        """Run every stage that is not done, in order; write the report; return its path.

        Progress lines go to ``log`` (default: stderr); the headline table to stdout. Under
        ``torchrun`` every rank runs this: training and reranking are shared by all ranks
        (:mod:`pipeline.distributed`), every other stage and every file is rank 0's.
        """
        from pipeline import distributed

        distributed.init()
        main = distributed.is_main()
        log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
        if not main:
            log = lambda msg: None  # noqa: E731
        distributed.on_main(self._write_config)
        for i, stage in enumerate(self.stages, 1):
            # Checked again now: an earlier stage may have removed outputs (a re-registered
            # collection drops its stale index). A stage's hash already includes its inputs'.
            stage.status = distributed.agree(self._status(stage))
            if stage.status == "done":
                log(f"[{i}/{len(self.stages)}] {stage.id}: reused ({_secs(stage.seconds)} when made)")
                continue
            log(f"[{i}/{len(self.stages)}] {stage.id}: {stage.title}")
            distributed.on_main(self.record_path(stage).unlink, missing_ok=True)
            started = time.perf_counter()
            info = (stage.action() if stage.parallel else distributed.on_main(stage.action)) or {}
            stage.seconds = time.perf_counter() - started
            stage.ran = True
            distributed.on_main(self._write_record, stage, info)
            log(f"[{i}/{len(self.stages)}] {stage.id}: done in {_secs(stage.seconds)}")
        return distributed.on_main(write_report, self)

    def _write_config(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        with atomic_path(self.root / "config.toml") as tmp:
            tmp.write_text(to_toml(self.cfg), encoding="utf-8")
        write_json(self.cfg.to_dict(), self.root / "config.json")

    def _write_record(self, stage: Stage, info: dict) -> None:
        missing = [p for p in stage.outputs if not p.exists()]
        if missing:
            raise PipelineError(f"stage {stage.id} finished without writing {missing[0]} (a bug)")
        record = {
            "stage": stage.id,
            "key": stage.key,
            "title": stage.title,
            "seconds": round(stage.seconds, 3),
            "outputs": [str(p) for p in stage.outputs],
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "info": info,
        }
        write_json(record, self.record_path(stage))


def _secs(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    return f"{seconds:.1f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def _size(size: int | None) -> str:
    if not size:
        return ""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if size >= scale:
            return f" ({size / scale:.1f} {unit})"
    return f" ({size} B)"


def _remove(path: Path) -> None:
    import shutil

    if not path.exists():
        return
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


# --- the report ----------------------------------------------------------------------------------
def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def verdicts(evaluation: dict, metric: str) -> list[str]:
    """One honest sentence per run vs the baseline on ``metric``, from an evaluation JSON.

    Example:
        >>> verdicts(json.load(open("runs/demo/evaluation/demo/test/evaluation.json")), "mrr@100")  # doctest: +SKIP
        ['T5Ranker: MRR@100 0.9512 vs BM25 0.3342 (+0.6170), significantly better (adjusted p < 0.0001, ...)']
    """
    from pipeline.evaluation import metric_label

    base = evaluation["baseline"]
    means = {n: r["mean"] for n, r in evaluation["results"].items()}
    lines = []
    for c in evaluation["comparisons"]:
        if c["metric"] != metric or c["reference"] != base:
            continue
        p = c["p_adjusted"]
        p_text = "n/a" if p is None else ("< 0.0001" if p < 1e-4 else f"{p:.4f}")
        if c["significant"]:
            word = "significantly better than" if c["difference"] > 0 else "significantly worse than"
        else:
            word = "not significantly different from"
        lines.append(
            f"{c['run']}: {metric_label(metric)} {means[c['run']][metric]:.4f} vs {base} {means[base][metric]:.4f} "
            f"({c['difference']:+.4f}), {word} {base} (adjusted p {p_text}; "
            f"better on {c['win']}, equal on {c['tie']}, worse on {c['loss']} queries)"
        )
    return lines


def _headline(exp: Experiment, test, evaluation: dict) -> str:
    """The text table (means with markers) of one test set, then the verdicts on the first metric."""
    table = (exp.root / "evaluation" / test.dataset / "evaluation.txt").read_text(encoding="utf-8")
    means_table = table.split("\n\n")[0]
    lines = [f"{test.dataset} ({evaluation['queries']['evaluated']} queries, relevant: grade >= {test.rel_level})"]
    lines += [means_table, evaluation.get("legend", "")]
    lines += verdicts(evaluation, exp.cfg.evaluation.metrics[0])
    return "\n".join(x for x in lines if x)


def write_report(exp: Experiment) -> Path:
    """Write ``report.md``, ``report.tex``, ``report.json`` and ``timings.md``; print the headline.

    The per-test-set tables, plots and significance tests come from the evaluation stages
    (:mod:`pipeline.report`); this adds the verdicts, training summaries, timings and files.
    """
    from pipeline.evaluation import metric_label

    cfg, root = exp.cfg, exp.root
    rel = lambda p: str(Path(p).relative_to(root))  # noqa: E731
    first = cfg.evaluation.metrics[0]
    md = [f"# Experiment `{cfg.name}`", ""]
    if cfg.description:
        md += [cfg.description, ""]
    md += [
        f"Config: [`config.toml`](config.toml) (resolved from `{cfg.source}`). "
        f"Training: `{cfg.data.train}`; validation: `{cfg.data.valid}`; base model: `{cfg.model.base}`"
        + (f" ({cfg.model.init_size}, made offline by `pipeline init-model`)" if cfg.model.base == "init" else "")
        + f"; BM25 k1={cfg.retrieval.k1} b={cfg.retrieval.b}, reranking the top {cfg.rerank.depth}.",
        "",
    ]
    tex = ["% Tables of experiment " + cfg.name + "; needs \\usepackage{booktabs}", ""]
    summary: dict[str, Any] = {"name": cfg.name, "config": cfg.to_dict(), "tests": {}, "training": {}, "stages": []}
    headlines = []
    for test in cfg.data.test:
        folder = root / "evaluation" / test.dataset
        evaluation = _read_json(folder / "evaluation.json")
        if evaluation is None:
            continue
        summary["tests"][test.dataset] = {
            "rel_level": test.rel_level,
            "means": {n: r["mean"] for n, r in evaluation["results"].items()},
            "comparisons": evaluation["comparisons"],
            "files": {k: rel(folder / f"evaluation.{k}") for k in ("md", "tex", "json", "txt")},
        }
        headlines.append(_headline(exp, test, evaluation))
        md += [f"## Test: `{test.dataset}`", ""]
        md += [(folder / "evaluation.md").read_text(encoding="utf-8").rstrip(), ""]
        verdict = verdicts(evaluation, first)
        if verdict:
            md += [f"**Against {BASELINE} on {metric_label(first)}:**", ""] + [f"- {v}" for v in verdict] + [""]
        for png, caption in (("means", "means with 95% CIs"), ("per-query-diff", "per-query differences")):
            if (folder / f"evaluation.{png}.png").exists():
                md += [f"![{test.dataset}: {caption}]({rel(folder / f'evaluation.{png}.png')})", ""]
        tex += [f"% --- {test.dataset}", (folder / "evaluation.tex").read_text(encoding="utf-8")]

    training_rows = []
    for model_type in cfg.model.types:
        folder = exp.model_dir(model_type)
        log = [json.loads(line) for line in _lines(folder / "train_log.jsonl")]
        if not log:
            continue
        best = max((r for r in log if r["epoch"] > 0), key=lambda r: r["valid_mrr@100"], default=log[0])
        info = {
            "untrained_valid_mrr@100": log[0]["valid_mrr@100"],
            "best_epoch": best["epoch"],
            "best_valid_mrr@100": best["valid_mrr@100"],
            "epochs": len(log) - 1,
            "train_seconds": round(sum(r.get("seconds") or 0 for r in log), 1),
        }
        summary["training"][model_type] = info
        training_rows.append(
            f"| {RUN_NAMES[model_type]} | {info['untrained_valid_mrr@100']:.4f} | {info['best_valid_mrr@100']:.4f} "
            f"| {info['best_epoch']} | {info['epochs']} | {_secs(info['train_seconds'])} |"
        )
    if training_rows:
        md += ["## Training", "", f"Validated on `{cfg.data.valid}` each epoch (MRR@100 of the reranked BM25 top "
               f"{cfg.train_settings(cfg.model.types[0]).valid_depth}).", ""]  # fmt: skip
        md += ["| Model | valid MRR@100 untrained | best | best epoch | epochs | time |", "|---|---|---|---|---|---|"]
        md += training_rows
        record = exp._read_record(next(st for st in exp.stages if st.id == f"bm25/{cfg.data.valid}")) or {}
        info = record.get("info") or {}
        # Only for the same validation queries as training used (valid_queries may have changed since).
        bm25_valid = info.get("valid_mrr@100") if info.get("valid_queries") == exp._valid_queries() else None
        if bm25_valid is not None:
            summary["bm25_valid_mrr@100"] = bm25_valid
            md += [f"| BM25 (the candidates, for reference) | | {bm25_valid:.4f} | | | |"]
        md += [""]
        for model_type in cfg.model.types:
            png = exp.model_dir(model_type) / "train_curves.png"
            if png.exists():
                md += [f"![{RUN_NAMES[model_type]} training curves]({rel(png)})", ""]

    timing = ["| # | Stage | This invocation | Seconds (when made) |", "|---|---|---|---|"]
    total = 0.0
    for i, stage in enumerate(exp.stages, 1):
        total += stage.seconds or 0
        timing.append(f"| {i} | `{stage.id}` | {'ran' if stage.ran else 'reused'} | {_secs(stage.seconds)} |")
        summary["stages"].append({"stage": stage.id, "ran": stage.ran, "seconds": stage.seconds, "key": stage.key})
    timing.append(f"| | total | {sum(s.ran for s in exp.stages)} ran | {_secs(total)} |")
    md += ["## Stages and timings", ""] + timing + [""]
    md += [
        "## Files",
        "",
        "- `runs/<dataset id>/*.trec`: TREC runs (each with a `.json` sidecar: settings, versions, timings)",
        "- `models/<model type>/`: trained rerankers (`best/` loads with `pipeline rerank --model`), logs, curves",
        "- `evaluation/<dataset id>/`: per test set, the report as Markdown, LaTeX, JSON, text, per-query CSV, plots",
        "- `stages/*.json`: per stage, the hash of its inputs and settings that decides reuse",
        "",
    ]
    summary["total_seconds"] = total
    with atomic_path(root / "timings.md") as tmp:
        tmp.write_text("\n".join(["# Stage timings", ""] + timing) + "\n", encoding="utf-8")
    with atomic_path(root / "report.tex") as tmp:
        tmp.write_text("\n".join(tex), encoding="utf-8")
    write_json(summary, root / "report.json")
    report = root / "report.md"
    with atomic_path(report) as tmp:
        tmp.write_text("\n".join(md), encoding="utf-8")
    print("\n" + "\n\n".join(headlines))
    print(f"\nreport: {report}")
    return report


def _bm25_valid_mrr(exp: Experiment) -> float | None:
    """BM25's MRR@100 on the queries training validates on (the same subset, same function)."""
    from pipeline import data, training
    from pipeline.runs import read_run

    cfg = exp.cfg
    path = exp.run_path(cfg.data.valid, "bm25")
    if not cfg.model.types or not path.exists():
        return None
    settings = cfg.train_settings(cfg.model.types[0])
    qrels = data.qrels(cfg.data.valid)
    judged = [q for q in data.queries(cfg.data.valid) if any(r > 0 for r in qrels.get(q, {}).values())]
    if settings.valid_queries:
        judged = judged[: settings.valid_queries]  # as pipeline.training.Validation picks them
    subset = {q: {d: r for d, r in qrels[q].items() if r > 0} for q in judged}
    return training.mrr_at_100(subset, read_run(path))


def _lines(path: Path) -> list[str]:
    try:
        return [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except OSError:
        return []


# --- what a dry run would download ----------------------------------------------------------
def missing_downloads(dataset_id: str, parts: tuple[str, ...] = ("docs", "queries", "qrels", "docpairs")) -> list[dict]:
    """Files ir_datasets would download to provide ``parts`` of a dataset (none for local data).

    Walks the dataset's components to their ``Download`` objects without calling them (no
    network): a file whose cached copy (or the extracted file made from it) exists is not listed.
    Returns ``[{"url", "size", "part"}]`` with ir_datasets' size hints (bytes, may be None).

    Example:
        >>> missing_downloads("msmarco-passage/dev/small", ("queries",))[0]["url"]  # doctest: +SKIP
        'https://msmarco.z22.web.core.windows.net/msmarcoranking/collectionandqueries.tar.gz'
    """
    from ir_datasets.util import download as dl

    from pipeline import data

    dataset = data.load(dataset_id)
    found: dict[str, dict] = {}

    def walk(obj: Any, part: str, seen: set[int], depth: int = 0) -> None:
        if id(obj) in seen or depth > 40 or isinstance(obj, (str, bytes, int, float, type, Path)):
            return
        seen.add(id(obj))
        if isinstance(obj, dl.LocalDownload):
            return  # a local file (a registered collection): nothing to download
        cache_path = getattr(obj, "_path", None)
        if type(obj).__name__ == "Cache" and cache_path is not None and Path(cache_path).exists():
            return  # already extracted/cached: its source is not needed
        if isinstance(obj, dl.Download):
            if obj._cache_path and Path(obj._cache_path).exists():
                return
            urls = [m.url for m in obj.mirrors if isinstance(m, dl.RequestsDownload)]
            if urls:
                found.setdefault(urls[0], {"url": urls[0], "size": obj._size_hint, "part": part})
            return
        if isinstance(obj, dict):
            children = obj.values()
        elif isinstance(obj, (list, tuple, set)):
            children = obj
        elif hasattr(obj, "__dict__"):
            children = vars(obj).values()
        else:
            return
        for child in children:
            walk(child, part, seen, depth + 1)

    for part in parts:
        if getattr(dataset, f"has_{part}")():
            walk(getattr(dataset, f"{part}_handler")(), part, set())
    return list(found.values())


def hub_cached(model: str) -> bool:
    """Whether a Hugging Face model's config is in the local cache (no network)."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return False
    try:
        return isinstance(try_to_load_from_cache(model, "config.json"), str)
    except Exception:  # an id the hub library refuses (e.g. a path): not cached
        return False


# --- the public verb ---------------------------------------------------------------------------
def run_experiment(config: str | os.PathLike | None = None, force: bool = False, dry_run: bool = False) -> Path | None:
    """Run the experiment of ``config`` (default: the embedded offline demo); return the report path.

    Everything in the config is checked before any stage runs. ``force`` redoes every stage;
    ``dry_run`` prints the plan (what is done, what would run, what would be downloaded) and
    returns None without writing anything or touching the network.

    Example:
        >>> run_experiment("pipeline/configs/msmarco.toml", dry_run=True)  # doctest: +SKIP
    """
    cfg = load_config(config)
    from pipeline import distributed

    exp = Experiment(cfg, force=force)
    if distributed.is_main():  # under torchrun: one plan, not one per rank
        print(exp.plan_text(), flush=True)
    if dry_run:
        return None
    return exp.run()
