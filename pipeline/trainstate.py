"""Resumable training state without pickle: tensors in safetensors, everything else in JSON.

``save_state(folder, ...)`` writes

* ``model/``            the reranker's ``save_pretrained`` folder (safetensors + tokenizer + settings);
* ``optimizer.safetensors`` every tensor of the optimizer state, keyed ``<param index>/<name>``;
* ``rng.safetensors``   torch's CPU RNG state and each CUDA device's;
* ``state.json``        optimizer hyperparameters and non-tensor state, scheduler state,
  Python and NumPy RNG states, and the caller's ``extra`` (epoch, data position, log, best);

into a temporary folder that then replaces ``folder`` (the previous one is removed only after
the new one is in place), so an interrupted save leaves the last complete state readable.

Example:
    >>> save_state("out/last", reranker, optimizer, scheduler, {"epoch": 3})  # doctest: +SKIP
    >>> extra = load_state("out/last", optimizer, scheduler)  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import json
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np

STATE_FILE = "state.json"


def _swap_in(tmp: Path, folder: Path) -> None:
    """Replace ``folder`` by ``tmp``; the old copy is kept as ``<folder>.old`` until the swap is done."""
    old = folder.with_name(folder.name + ".old")
    if old.exists():
        shutil.rmtree(old)
    if folder.exists():
        folder.rename(old)
    tmp.rename(folder)
    if old.exists():
        shutil.rmtree(old)


def recover(folder: str | Path) -> None:
    """Finish an interrupted :func:`_swap_in`: if only ``<folder>.old`` exists, it is the state."""
    folder = Path(folder)
    old = folder.with_name(folder.name + ".old")
    if not folder.exists() and old.exists():
        old.rename(folder)
    tmp = folder.with_name(folder.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)


@contextlib.contextmanager
def _quiet_saving():
    """No "Writing model shards" bar from transformers for each per-epoch checkpoint."""
    from transformers.utils import logging as hf_logging

    enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if enabled:
            hf_logging.enable_progress_bar()


def save_model(reranker, folder: str | Path, extra: dict | None = None) -> None:
    """``reranker.save_pretrained`` into ``folder`` atomically (plus ``training.json`` if ``extra``)."""
    folder = Path(folder)
    tmp = folder.with_name(folder.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    with _quiet_saving():
        reranker.save_pretrained(tmp)
    if extra is not None:
        (tmp / "training.json").write_text(json.dumps(extra, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    _swap_in(tmp, folder)


def _optimizer_to_files(optimizer) -> tuple[dict[str, Any], dict[str, Any]]:
    import torch

    sd = optimizer.state_dict()
    tensors, plain = {}, {}
    for index, state in sd["state"].items():
        for name, value in state.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{index}/{name}"] = value.detach().cpu().contiguous()
            else:
                plain[f"{index}/{name}"] = value
    return tensors, {"param_groups": sd["param_groups"], "plain": plain}


def _optimizer_from_files(optimizer, tensors: dict, meta: dict) -> None:
    state: dict[int, dict[str, Any]] = {}
    for key, value in list(tensors.items()) + list(meta["plain"].items()):
        index, name = key.split("/", 1)
        state.setdefault(int(index), {})[name] = value
    groups = []
    for saved, current in zip(meta["param_groups"], optimizer.state_dict()["param_groups"], strict=True):
        # JSON turned tuples (betas, eps) into lists: give them their type back.
        groups.append({k: tuple(v) if isinstance(current.get(k), tuple) else v for k, v in saved.items()})
    optimizer.load_state_dict({"state": state, "param_groups": groups})


def _rng_states() -> tuple[dict[str, Any], dict[str, Any]]:
    import torch

    tensors = {"torch_cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"torch_cuda_{i}"] = s
    version, keys, pos, has_gauss, cached = np.random.get_state()
    plain = {
        "python": [random.getstate()[0], list(random.getstate()[1]), random.getstate()[2]],
        "numpy": [version, keys.tolist(), pos, has_gauss, cached],
    }
    return tensors, plain


def _set_rng_states(tensors: dict, plain: dict) -> None:
    import torch

    torch.set_rng_state(tensors["torch_cpu"])
    if torch.cuda.is_available():
        cuda = [tensors[k] for k in sorted(tensors) if k.startswith("torch_cuda_")]
        if len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)
    v, internal, gauss = plain["python"]
    random.setstate((v, tuple(internal), gauss))
    version, keys, pos, has_gauss, cached = plain["numpy"]
    np.random.set_state((version, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))


def save_state(folder: str | Path, reranker, optimizer, scheduler, extra: dict[str, Any]) -> None:
    """Write the full training state to ``folder`` atomically (see the module docstring)."""
    from safetensors.torch import save_file

    folder = Path(folder)
    tmp = folder.with_name(folder.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    with _quiet_saving():
        reranker.save_pretrained(tmp / "model")
    opt_tensors, opt_meta = _optimizer_to_files(optimizer)
    save_file(opt_tensors, str(tmp / "optimizer.safetensors"))
    rng_tensors, rng_plain = _rng_states()
    save_file(rng_tensors, str(tmp / "rng.safetensors"))
    state = {
        "optimizer": opt_meta,
        "scheduler": scheduler.state_dict(),
        "rng": rng_plain,
        "extra": extra,
    }
    (tmp / STATE_FILE).write_text(json.dumps(state, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    _swap_in(tmp, folder)


def read_extra(folder: str | Path) -> dict[str, Any] | None:
    """The ``extra`` dict of a saved state, or ``None`` if ``folder`` holds no complete state."""
    path = Path(folder) / STATE_FILE
    if not path.is_file():
        return None
    return json.loads(path.read_text(encoding="utf-8"))["extra"]


def load_state(folder: str | Path, optimizer, scheduler) -> dict[str, Any]:
    """Restore optimizer, scheduler and RNG states from ``folder``; return its ``extra``.

    The model weights are in ``folder/model`` (load them with the reranker's ``from_pretrained``
    before building the optimizer).
    """
    from safetensors.torch import load_file

    folder = Path(folder)
    state = json.loads((folder / STATE_FILE).read_text(encoding="utf-8"))
    _optimizer_from_files(optimizer, load_file(str(folder / "optimizer.safetensors")), state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    _set_rng_states(load_file(str(folder / "rng.safetensors")), state["rng"])
    return state["extra"]
