"""Training checkpoints without pickle: tensors in safetensors, everything else in JSON.

A checkpoint folder holds `state.safetensors` (model, optimizer and RNG tensors, keyed by
their path in the state tree) and `state.json` (the tree with tensors replaced by their key).
It is written to a temp folder and renamed, so a kill never leaves a half checkpoint.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path

import numpy as np
import torch

TENSOR = "__tensor__"
TUPLE = "__tuple__"


def _flatten(obj, prefix: str, tensors: dict[str, torch.Tensor]):
    if isinstance(obj, torch.Tensor):
        key = prefix or "root"
        tensors[key] = obj.detach().contiguous().cpu()
        return {TENSOR: key}
    if isinstance(obj, dict):
        if not all(isinstance(k, str | int) for k in obj):
            raise TypeError(f"unsupported key types in {prefix}")
        return {"__dict__": [[k, _flatten(v, f"{prefix}.{k}", tensors)] for k, v in obj.items()]}
    if isinstance(obj, tuple):
        return {TUPLE: [_flatten(v, f"{prefix}.{i}", tensors) for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [_flatten(v, f"{prefix}.{i}", tensors) for i, v in enumerate(obj)]
    if isinstance(obj, float | int | str | bool) or obj is None:
        return obj
    raise TypeError(f"cannot checkpoint {type(obj).__name__} at {prefix}")


def _unflatten(obj, tensors: dict[str, torch.Tensor]):
    if isinstance(obj, dict):
        if TENSOR in obj:
            return tensors[obj[TENSOR]]
        if TUPLE in obj:
            return tuple(_unflatten(v, tensors) for v in obj[TUPLE])
        return {k: _unflatten(v, tensors) for k, v in obj["__dict__"]}
    if isinstance(obj, list):
        return [_unflatten(v, tensors) for v in obj]
    return obj


def rng_state() -> dict:
    state = {
        "python": random.getstate(),
        "numpy": [
            np.random.get_state()[0],
            torch.from_numpy(np.random.get_state()[1].astype(np.int64)),
            *np.random.get_state()[2:],
        ],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(_as_tuple(state["python"]))
    np_state = state["numpy"]
    np.random.set_state((np_state[0], np_state[1].numpy().astype(np.uint32), *np_state[2:]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _as_tuple(x):
    return tuple(_as_tuple(v) for v in x) if isinstance(x, list | tuple) else x


def save_checkpoint(path: str | Path, state: dict) -> None:
    from safetensors.torch import save_file

    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    tensors: dict[str, torch.Tensor] = {}
    tree = _flatten(state, "", tensors)
    save_file(tensors, str(tmp / "state.safetensors"))
    (tmp / "state.json").write_text(json.dumps(tree))
    # Move the old checkpoint aside before the new one takes its name, so a kill at any point
    # leaves one complete checkpoint (`latest` or `latest.old`).
    old = path.with_name(f"{path.name}.old")
    if path.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.replace(path, old)
    os.replace(tmp, path)
    shutil.rmtree(old, ignore_errors=True)


def checkpoint_to_resume(path: str | Path) -> Path | None:
    """`latest`, or `latest.old` when a kill came between the two renames of a save."""
    path = Path(path)
    for candidate in (path, path.with_name(f"{path.name}.old")):
        if (candidate / "state.json").is_file() and (candidate / "state.safetensors").is_file():
            return candidate
    return None


def load_checkpoint(path: str | Path) -> dict:
    from safetensors.torch import load_file

    path = Path(path)
    tensors = load_file(str(path / "state.safetensors"))
    return _unflatten(json.loads((path / "state.json").read_text()), tensors)
