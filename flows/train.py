"""Prefect flows `pretrain-mmm` and `train-clamp`: thin wrappers over `clamp.train.run.train`.

Settings are `TrainConfig` fields (docs/configuration.md): the defaults < the YAML/JSON file at
`config_path` < `overrides`; a deployment passes only what differs. They run in the flow's
process (CUDA when present). For several GPUs, launch
`torchrun --nproc_per_node N -m clamp.cli train ...` instead (see the README).
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact

from clamp.tracking import set_entry_point
from clamp.train.config import TrainConfig


def _train(objective: str, config_path: str | None, overrides: dict[str, Any] | None) -> dict:
    from clamp.train.run import train

    cfg = TrainConfig.load(config_path, **{**(overrides or {}), "objective": objective})
    logger = get_run_logger()
    logger.info("training %s (%s preset) on %s for %d steps", objective, cfg.preset, cfg.dataset_dir, cfg.steps)
    result = train(cfg)
    summary = {k: v for k, v in result.items() if k != "history"}
    create_markdown_artifact(
        key=f"{objective}-summary",
        markdown="\n".join(
            [f"# {objective}", "", "| | |", "|---|---|", *[f"| {k} | {v} |" for k, v in summary.items()]]
        ),
    )
    return summary


@flow(name="pretrain-mmm", log_prints=True)
def pretrain_mmm(config_path: str | None = None, overrides: dict[str, Any] | None = None) -> dict:
    """Masked-music pre-training of the music encoder."""
    set_entry_point("flows.train:pretrain_mmm")
    return _train("mmm", config_path, overrides)


@flow(name="train-clamp", log_prints=True)
def train_clamp(config_path: str | None = None, overrides: dict[str, Any] | None = None) -> dict:
    """Contrastive training of music and text encoders (optionally from an MMM encoder)."""
    set_entry_point("flows.train:train_clamp")
    return _train("clamp", config_path, overrides)
