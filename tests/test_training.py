"""Training and validation on the real Cranfield collection with the tiny offline T5.

Cranfield is split 0.6/0.2/0.2 by the ``cranfield`` fixture. To stay within CI time every run
here reranks the BM25 top 20 of the 45 validation queries (``valid_depth=20``, not the default
100), and the base model is the tiny
T5 saved as a reranker with ``max_length=64, aggregation="first"`` (query + passage cut to 64
tokens instead of 512; Cranfield passages begin with their title). Each run is 4 epochs of 25
optimizer steps of 16 examples (AdamW, lr 1e-3).

torch runs on one intra-op thread in this module: the tiny model's matrices are 64 wide, and
two threads on a busy two-core machine made each step about 20x slower.
"""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import pytest

from pipeline.errors import PipelineError
from pipeline.trainconfig import TrainSettings

pytestmark = pytest.mark.java  # BM25 negatives and validation candidates come from Lucene

MODEL_TYPES = ("t5ranker", "t5-reranking-loss")
SETTINGS = TrainSettings(
    max_epoch=4,
    batches_per_epoch=25,
    batch_size=16,
    grad_acc_size=8,
    patience=4,
    valid_depth=20,
    optimizer="adamw",  # a randomly initialised model learns faster with AdamW than with Adafactor
)
TIMING = ("pairs_per_s", "train_seconds", "valid_seconds", "seconds")


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def base_models(tiny_model, cranfield_index, tmp_path_factory) -> dict[str, Path]:
    """The tiny T5 as an untrained reranker folder of each type (64-token inputs)."""
    from pipeline.rerankers import MODEL_TYPES as CLASSES

    root = tmp_path_factory.mktemp("base")
    out = {}
    for mt in MODEL_TYPES:
        reranker = CLASSES[mt].from_pretrained(tiny_model, convention="seed", max_length=64, aggregation="first")
        out[mt] = reranker.save_pretrained(root / mt)
    return out


@pytest.fixture(scope="module")
def runs(base_models, tmp_path_factory) -> dict[str, dict]:
    """One uninterrupted training run per model type (shared by several tests)."""
    from pipeline.training import read_log, train

    out = {}
    for mt in MODEL_TYPES:
        folder = tmp_path_factory.mktemp("run") / mt
        reranker, best_epoch = train("cranfield/train", "cranfield/valid", mt, str(base_models[mt]), folder, SETTINGS)
        out[mt] = {
            "folder": folder,
            "reranker": reranker,
            "best_epoch": best_epoch,
            "log": read_log(folder / "train_log.jsonl"),
        }
    return out


def _weights(folder: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(folder / "model.safetensors"))


def _same_weights(a: Path, b: Path) -> bool:
    import torch

    wa, wb = _weights(a), _weights(b)
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def _training_examples(n: int = 32):
    from pipeline import data
    from pipeline.training_data import example_source

    examples = list(itertools.islice(example_source("cranfield/train", 1, 100).stream(seed=7), n))
    queries = data.queries("cranfield/train")
    docs = data.docs_text("cranfield/train").get_many({d for e in examples for d in (e.positive, *e.negatives)})
    return examples, queries, docs


def _eval_loss(reranker, examples, queries, docs) -> float:
    import torch

    reranker.eval()  # no dropout: the same examples give the same loss
    with torch.no_grad():
        return float(
            reranker.loss(
                [queries[e.qid] for e in examples],
                [docs[e.positive] for e in examples],
                [[docs[d] for d in e.negatives] for e in examples],
            )
        )


# --- a full run -----------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_run_logs_validation_and_learns(runs, base_models, model_type):
    from pipeline.rerankers import load_reranker

    run = runs[model_type]
    folder, log = run["folder"], run["log"]
    # One line per epoch, epoch 0 = the untrained model; every field present and finite.
    assert [r["epoch"] for r in log] == list(range(SETTINGS.max_epoch + 1))
    for r in log[1:]:
        assert math.isfinite(r["train_loss"]) and 0 <= r["valid_mrr@100"] <= 1
        assert r["pairs"] == SETTINGS.batches_per_epoch * SETTINGS.batch_size * (1 + SETTINGS.negatives)
        assert r["pairs_per_s"] > 0 and r["seconds"] >= r["train_seconds"] > 0
        assert r["lr"] == SETTINGS.lr and r["t5_lr"] == SETTINGS.t5_lr
    assert (folder / "train_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    saved = json.loads((folder / "train_settings.json").read_text())
    assert saved["settings"] == SETTINGS.to_dict() and saved["model_type"] == model_type

    # The training loss goes down: same 32 training examples, no dropout, before vs after.
    examples, queries, docs = _training_examples()
    before = _eval_loss(load_reranker(base_models[model_type]), examples, queries, docs)
    after = _eval_loss(load_reranker(folder / "last" / "model"), examples, queries, docs)
    print(f"\n{model_type}: loss on 32 training examples {before:.4f} untrained -> {after:.4f} trained")
    assert after < before

    # The best epoch is the first maximum of the logged scores, and it beats the untrained model.
    scores = [r["valid_mrr@100"] for r in log]
    best = max(scores[1:])
    assert run["best_epoch"] == scores.index(best, 1)
    assert [r["epoch"] for r in log if r["best"]][-1] == run["best_epoch"]
    print(f"{model_type}: validation MRR@100 untrained {scores[0]:.4f}, per epoch {scores[1:]}, best {best:.4f}")
    assert best > scores[0]


@pytest.mark.slow
@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_reloaded_best_reproduces_logged_score(runs, model_type):
    from ranx import Qrels, Run, evaluate

    from pipeline import retrieval
    from pipeline.rerankers import load_reranker, rerank
    from pipeline.runs import top_k
    from pipeline.training import Validation

    run = runs[model_type]
    logged = run["log"][run["best_epoch"]]["valid_mrr@100"]
    best = load_reranker(run["folder"] / "best")
    assert best.model_type == model_type
    assert json.loads((run["folder"] / "best" / "training.json").read_text())["epoch"] == run["best_epoch"]
    assert Validation("cranfield/valid", SETTINGS).__class__  # importable API
    validation = Validation("cranfield/valid", SETTINGS)
    validation.prepare()
    assert validation.score(best) == logged  # exactly
    assert validation.score(run["reranker"]) == logged  # the returned model is the best one

    # Independently: every judged validation query, BM25 top 20, ranx MRR@100.
    from pipeline import data

    qrels = data.qrels("cranfield/valid")
    qids = [q for q in data.queries("cranfield/valid") if any(v > 0 for v in qrels.get(q, {}).values())]
    assert len(qids) == 45
    bm25 = top_k(retrieval.bm25("cranfield/valid", k=20), 20)
    docs = data.docs_text("cranfield/valid")
    reranked = rerank(best, {q: bm25[q] for q in qids if q in bm25}, data.queries("cranfield/valid"), docs, depth=20)
    expected = evaluate(
        Qrels.from_dict({q: {d: r for d, r in qrels[q].items() if r > 0} for q in qids}),
        Run.from_dict(reranked),
        "mrr@100",
        make_comparable=True,
    )
    assert logged == pytest.approx(expected, abs=1e-12)


@pytest.mark.slow
@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_early_stopping_with_patience_1_and_lr_0(base_models, tmp_path, model_type, capsys):
    from pipeline.cli import main
    from pipeline.training import read_log

    out = tmp_path / "run"
    argv = ["train", "cranfield/train", "--model-type", model_type, "--base-model", str(base_models[model_type])]
    argv += ["--valid", "cranfield/valid", "--output", str(out), "--lr", "0", "--t5-lr", "0", "--patience", "1"]
    argv += ["--max-epoch", "10", "--batches-per-epoch", "2", "--batch-size", "8", "--grad-acc-size", "8"]
    argv += ["--valid-depth", "20", "--valid-queries", "20"]  # lr 0: any validation set will do
    assert main(argv) == 0
    log = read_log(out / "train_log.jsonl")
    # Epoch 1 is the first score (best); epoch 2 cannot improve with lr 0: stop after it.
    assert [r["epoch"] for r in log] == [0, 1, 2]
    assert log[0]["valid_mrr@100"] == log[1]["valid_mrr@100"] == log[2]["valid_mrr@100"]
    assert "no improvement for 1 epoch(s) (patience 1)" in capsys.readouterr().err
    assert json.loads((out / "best" / "training.json").read_text())["epoch"] == 1
    assert _same_weights(out / "best", base_models[model_type])


# --- resume ---------------------------------------------------------------------------
@pytest.mark.slow
def test_resume_after_interrupt_equals_uninterrupted_run(runs, base_models, tmp_path, capsys):
    from pipeline.training import read_log, train

    mt = "t5ranker"
    out = tmp_path / "run"

    def interrupt(record):
        if record["epoch"] == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train("cranfield/train", "cranfield/valid", mt, str(base_models[mt]), out, SETTINGS, on_epoch_end=interrupt)
    assert [r["epoch"] for r in read_log(out / "train_log.jsonl")] == [0, 1]

    # Without --resume an unfinished run is refused, and nothing is touched.
    with pytest.raises(PipelineError, match="unfinished run.*--resume"):
        train("cranfield/train", "cranfield/valid", mt, str(base_models[mt]), out, SETTINGS)

    _, best_epoch = train("cranfield/train", "cranfield/valid", mt, str(base_models[mt]), out, SETTINGS, resume=True)
    reference = runs[mt]
    assert best_epoch == reference["best_epoch"]
    strip = [{k: v for k, v in r.items() if k not in TIMING} for r in read_log(out / "train_log.jsonl")]
    assert strip == [{k: v for k, v in r.items() if k not in TIMING} for r in reference["log"]]
    assert _same_weights(out / "best", reference["folder"] / "best")
    assert _same_weights(out / "last" / "model", reference["folder"] / "last" / "model")

    # A finished run is not trained again: a message, and the best model comes back.
    capsys.readouterr()
    _, again = train("cranfield/train", "cranfield/valid", mt, str(base_models[mt]), out, SETTINGS, resume=True)
    assert again == best_epoch and "already finished" in capsys.readouterr().err


# --- bad input: clear errors before anything is written --------------------------------
@pytest.fixture(scope="module")
def no_judgments(shared_data, cranfield) -> str:
    """Cranfield's documents and queries without qrels or docpairs."""
    from pipeline import data

    src = shared_data / "cranfield"
    data.register("cranfield-unjudged", docs=src / "docs.jsonl", queries=src / "queries.tsv", force=True)
    return "cranfield-unjudged"


@pytest.fixture(scope="module")
def not_a_t5(tiny_model, tmp_path_factory) -> Path:
    """A complete HF folder (safetensors + tokenizer) of a BERT model."""
    import shutil

    from transformers import BertConfig, BertModel

    folder = tmp_path_factory.mktemp("bert")
    config = BertConfig(
        vocab_size=100, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32
    )
    BertModel(config).save_pretrained(folder, safe_serialization=True)
    shutil.copy(Path(tiny_model) / "spiece.model", folder / "spiece.model")
    return folder


@pytest.mark.parametrize(
    "case, message",
    [
        ("no_examples", "has neither docpairs nor qrels"),
        ("valid_without_qrels", "validation dataset 'cranfield-unjudged' has no qrels"),
        ("indivisible", r"'batch_size' \(10\) is not divisible by 'grad_acc_size' \(4\)"),
        ("not_a_t5", "a 'bert' model, not a T5"),
        ("unknown_type", "unknown model type 'bert'"),
    ],
)
def test_bad_input_fails_before_writing(case, message, no_judgments, not_a_t5, base_models, tmp_path):
    from pipeline.training import train

    train_ds, valid_ds, mt, base = "cranfield/train", "cranfield/valid", "t5ranker", str(base_models["t5ranker"])
    settings = SETTINGS
    if case == "no_examples":
        train_ds = no_judgments
    elif case == "valid_without_qrels":
        valid_ds = no_judgments
    elif case == "indivisible":
        settings = TrainSettings(batch_size=10, grad_acc_size=4)
    elif case == "not_a_t5":
        base = str(not_a_t5)
    elif case == "unknown_type":
        mt = "bert"
    out = tmp_path / "run"
    with pytest.raises(PipelineError, match=message):
        train(train_ds, valid_ds, mt, base, out, settings)
    assert not out.exists()


@pytest.mark.slow
def test_output_holding_another_run_is_refused(runs, base_models, tmp_path):
    from pipeline.training import train

    folder = runs["t5ranker"]["folder"]
    before = {p: p.stat().st_mtime_ns for p in folder.rglob("*")}
    other = TrainSettings(**{**SETTINGS.to_dict(), "t5_lr": 1e-4})
    with pytest.raises(
        PipelineError, match=r"holds a different training run \(settings\.t5_lr: 0\.001 there, 0\.0001 now"
    ):
        train("cranfield/train", "cranfield/valid", "t5ranker", str(base_models["t5ranker"]), folder, other)
    with pytest.raises(PipelineError, match=r"model_type: 't5ranker' there, 't5-reranking-loss' now"):
        train(
            "cranfield/train",
            "cranfield/valid",
            "t5-reranking-loss",
            str(base_models["t5-reranking-loss"]),
            folder,
            SETTINGS,
        )
    assert {p: p.stat().st_mtime_ns for p in folder.rglob("*")} == before

    foreign = tmp_path / "photos"
    foreign.mkdir()
    (foreign / "cat.jpg").write_bytes(b"meow")
    with pytest.raises(PipelineError, match="not empty and holds no training run"):
        train(
            "cranfield/train",
            "cranfield/valid",
            "t5ranker",
            str(base_models["t5ranker"]),
            foreign,
            SETTINGS,
            overwrite=True,
        )
    assert sorted(p.name for p in foreign.iterdir()) == ["cat.jpg"]


def test_cli_error_is_one_line(base_models, tmp_path, capsys):
    from pipeline.cli import main

    argv = ["train", "cranfield/train", "--model-type", "vanilla_t5", "--base-model", str(base_models["t5ranker"])]
    argv += ["--valid", "cranfield/valid", "--output", str(tmp_path / "run"), "--batch-size", "6"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "'batch_size' (6) is not divisible by 'grad_acc_size' (8)" in err
    assert not (tmp_path / "run").exists()


# --- settings -------------------------------------------------------------------------
def test_defaults_toml_and_flags_in_that_order(tmp_path):
    from pipeline.cli import build_parser
    from pipeline.trainconfig import load_settings, overrides_from_args

    toml = tmp_path / "train.toml"
    toml.write_text('[train]\nt5_lr = 1e-4\nbatch_size = 16\noptimizer = "adamw"\n')
    args = build_parser().parse_args(
        ["train", "d", "--model-type", "t5ranker", "--base-model", "m", "--valid", "v", "--output", "o"]
        + ["--config", str(toml), "--batch-size", "64"]
    )
    s = load_settings(args.config, overrides_from_args(args))
    assert (s.t5_lr, s.batch_size, s.optimizer) == (1e-4, 64, "adamw")  # TOML, flag over TOML, TOML
    assert (s.seed, s.max_epoch, s.grad_acc_size, s.patience, s.valid_depth) == (42, 20, 8, 5, 100)  # defaults
    assert s.micro_batches == 8

    toml.write_text("lr = 1e-4\nlearning_rate = 3\n")
    with pytest.raises(PipelineError, match=r"train\.toml: unknown key 'learning_rate'"):
        load_settings(toml)
    toml.write_text('batch_size = "32"\n')
    with pytest.raises(PipelineError, match=r"train\.toml: 'batch_size' must be int"):
        load_settings(toml)
    with pytest.raises(PipelineError, match="'optimizer' must be one of adafactor, adamw"):
        load_settings(overrides={"optimizer": "sgd"})


def test_two_parameter_groups_and_warmup(base_models):
    from pipeline.rerankers import load_reranker
    from pipeline.training import build_optimizer, build_scheduler

    reranker = load_reranker(base_models["t5ranker"])
    s = TrainSettings(lr=1e-2, t5_lr=1e-3, warmup_steps=4)
    optimizer = build_optimizer(reranker, s)
    scheduler = build_scheduler(optimizer, s)
    groups = optimizer.param_groups
    # Both rerankers are a T5 body only: the first group (lr) is empty, the second holds everything.
    assert len(groups[0]["params"]) == 0
    assert len(groups[1]["params"]) == len(list(reranker.parameters()))
    lrs = []
    for _ in range(6):
        lrs.append([g["lr"] for g in optimizer.param_groups])
        optimizer.step()
        scheduler.step()
    assert lrs == [[1e-2 * f, 1e-3 * f] for f in (0, 0.25, 0.5, 0.75, 1, 1)]


# --- examples and batches -------------------------------------------------------------
@pytest.mark.slow
def test_qrels_examples_are_seeded_and_use_bm25_negatives(cranfield_index):
    from pipeline import data, retrieval
    from pipeline.training_data import example_source, skip

    source = example_source("cranfield/train", negatives=3, negatives_depth=50)
    assert source.kind == "qrels"
    first = list(itertools.islice(source.stream(seed=1), 200))
    assert first == list(itertools.islice(source.stream(seed=1), 200))
    assert first != list(itertools.islice(source.stream(seed=2), 200))
    assert list(itertools.islice(skip(source.stream(seed=1), 150), 50)) == first[150:]
    qrels = data.qrels("cranfield/train")
    bm25 = retrieval.bm25("cranfield/train", k=50)
    for e in first:
        assert qrels[e.qid][e.positive] > 0
        assert len(e.negatives) == 3
        for neg in e.negatives:
            assert neg in bm25[e.qid] and qrels[e.qid].get(neg, 0) <= 0
    # One pass visits every usable positive exactly once.
    n = len(source.positives)
    one_pass = list(itertools.islice(source.stream(seed=1), n))
    assert sorted((e.qid, e.positive) for e in one_pass) == sorted(source.positives)
    assert ("125", "995") not in source.positives  # doc 995 is empty: cannot be scored


@pytest.fixture(scope="module")
def cranfield_pairs(shared_data, tmp_path_factory, cranfield) -> tuple[str, list[tuple[str, str, str]]]:
    """A local dataset with docpairs: Cranfield docs/queries + 300 (query, judged, unjudged) triples."""
    from pipeline import data

    src = shared_data / "cranfield"
    qrels = data.qrels("cranfield")
    triples = []
    for qid in sorted(qrels, key=int)[:60]:
        relevant = sorted(d for d, r in qrels[qid].items() if r > 0)[:5]
        triples += [(qid, d, str(1 + (int(d) * 7 + int(qid)) % 1400)) for d in relevant]
    triples = [t for t in triples if t[2] not in qrels[t[0]]][:300]
    path = tmp_path_factory.mktemp("pairs") / "docpairs.tsv"
    path.write_text("".join("\t".join(t) + "\n" for t in triples))
    data.register("cranfield-pairs", docs=src / "docs.jsonl", queries=src / "queries.tsv", docpairs=path, force=True)
    return "cranfield-pairs", triples


def test_docpairs_stream_shuffles_with_a_buffer(cranfield_pairs):
    from pipeline.training_data import Example, example_source

    dataset, triples = cranfield_pairs
    source = example_source(dataset, shuffle_buffer=50)
    assert source.kind == "docpairs"
    n = len(triples)
    two_passes = list(itertools.islice(source.stream(seed=3), 2 * n))
    expected = sorted((Example(q, p, (neg,)) for q, p, neg in triples), key=repr)
    assert sorted(two_passes[:n], key=repr) == sorted(expected, key=repr)  # each triple once per pass
    assert sorted(two_passes[n:], key=repr) == sorted(expected, key=repr)
    in_file_order = [Example(q, p, (neg,)) for q, p, neg in triples]
    assert two_passes[:n] != in_file_order and two_passes[:n] != two_passes[n:]
    assert two_passes == list(itertools.islice(source.stream(seed=3), 2 * n))
    # A buffer of 50 cannot move a triple more than 50 places earlier than in the file.
    position = {t: i for i, t in enumerate(in_file_order)}
    assert all(i >= position[e] - 50 for i, e in enumerate(two_passes[:n]))
    with pytest.raises(PipelineError, match="'negatives' must be 1"):
        example_source(dataset, negatives=2)


def test_micro_batches_group_by_length():
    from pipeline.training_data import Example, micro_batches

    examples = [Example(str(i), f"d{i}", (f"n{i}",)) for i in range(8)]
    lengths = {e.qid: n for e, n in zip(examples, [50, 10, 40, 20, 80, 30, 70, 60], strict=True)}
    groups = micro_batches(examples, 4, lambda e: lengths[e.qid])
    assert [[lengths[e.qid] for e in g] for g in groups] == [[10, 20, 30, 40], [50, 60, 70, 80]]


def test_accumulated_gradient_equals_one_big_batch(base_models):
    import torch

    from pipeline.rerankers import load_reranker
    from pipeline.training import accumulate_gradients

    examples, queries, docs = _training_examples(8)
    grads = {}
    for micro in (8, 4, 2):
        reranker = load_reranker(base_models["t5-reranking-loss"])
        reranker.eval()  # no dropout, so the three computations see the same function
        loss = accumulate_gradients(reranker, examples, queries, docs, micro)
        grads[micro] = (loss, [p.grad.clone() for p in reranker.parameters()])
    for micro in (4, 2):
        assert grads[micro][0] == pytest.approx(grads[8][0], rel=1e-5)
        for a, b in zip(grads[micro][1], grads[8][1], strict=True):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_length_grouped_batches_pad_little_and_resume_inside_a_pool():
    from pipeline.training_data import Example, length_grouped_batches

    examples = [Example(str(i), f"d{i}", (f"n{i}",)) for i in range(200)]
    length = {e.qid: (int(e.qid) * 37) % 101 for e in examples}

    def lengths(pool):
        return [length[e.qid] for e in pool]

    def first(n, start_step=0):
        stream = iter(examples * 2)
        return list(itertools.islice(length_grouped_batches(stream, 8, 5, lengths, 42, start_step), n))

    steps = first(20)  # 4 pools of 5 steps of 8
    assert all(len(s) == 8 for s in steps)
    assert sorted(e.qid for s in steps for e in s) == sorted(e.qid for e in examples[:160])
    pool = sorted(examples[:40], key=lambda e: (length[e.qid], int(e.qid)))
    assert sorted(map(tuple, steps[:5]), key=repr) == sorted(
        (tuple(pool[i : i + 8]) for i in range(0, 40, 8)), key=repr
    )
    assert steps[:5] != [pool[i : i + 8] for i in range(0, 40, 8)]  # the pool's steps are shuffled
    assert first(13, start_step=7) == steps[7:]  # resume inside the second pool
    assert first(5, start_step=0) == steps[:5]


@pytest.mark.parametrize("optimizer", ["adafactor", "adamw"])
def test_state_round_trip_continues_identically(base_models, tmp_path, optimizer):
    import torch

    from pipeline import trainstate
    from pipeline.rerankers import load_reranker
    from pipeline.training import accumulate_gradients, build_optimizer, build_scheduler

    examples, queries, docs = _training_examples(6)
    settings = TrainSettings(optimizer=optimizer, warmup_steps=3, weight_decay=0.01)

    def step(reranker, opt, sched, batch):
        accumulate_gradients(reranker, batch, queries, docs, 2)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)

    a = load_reranker(base_models["t5ranker"])
    a.train()
    opt_a = build_optimizer(a, settings)
    sched_a = build_scheduler(opt_a, settings)
    torch.manual_seed(0)
    step(a, opt_a, sched_a, examples[:2])
    step(a, opt_a, sched_a, examples[2:4])
    trainstate.save_state(tmp_path / "last", a, opt_a, sched_a, {"epoch": 2})

    b = load_reranker(tmp_path / "last" / "model")
    b.train()
    opt_b = build_optimizer(b, settings)
    sched_b = build_scheduler(opt_b, settings)
    assert trainstate.load_state(tmp_path / "last", opt_b, sched_b) == {"epoch": 2}  # also restores torch RNG
    step(b, opt_b, sched_b, examples[4:])
    trainstate.load_state(tmp_path / "last", opt_a, sched_a)  # same RNG for a's dropout
    step(a, opt_a, sched_a, examples[4:])
    for (name, pa), pb in zip(a.named_parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb), name
    assert [g["lr"] for g in opt_a.param_groups] == [g["lr"] for g in opt_b.param_groups]


def test_interrupted_state_swap_is_recovered(tmp_path):
    from pipeline import trainstate

    last, old, tmp = tmp_path / "last", tmp_path / "last.old", tmp_path / "last.tmp"
    old.mkdir()
    (old / "state.json").write_text('{"extra": {"epoch": 3}}')
    tmp.mkdir()
    (tmp / "half-written").write_text("x")
    trainstate.recover(last)  # killed after last -> last.old, before last.tmp -> last
    assert trainstate.read_extra(last) == {"epoch": 3}
    assert not old.exists() and not tmp.exists()
