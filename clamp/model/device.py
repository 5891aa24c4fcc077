"""Which device a model runs on: one rule for training, evaluation, search and serving."""

from __future__ import annotations

import os

import torch


def pick_device(name: str = "auto") -> torch.device:
    """`auto`: this process's GPU (cuda:LOCAL_RANK under torchrun) when there is one, else CPU."""
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError("--device cuda, but CUDA is not available on this machine")
        if device.index is None:
            device = torch.device("cuda", local_rank)
    return device
