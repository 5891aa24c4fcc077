"""Prefect flows `pretrain-mmm` and `train-clamp`: thin wrappers over `clamp.train.run.train`.

They run in the flow's process (CUDA when present). For several GPUs, launch
`torchrun --nproc_per_node N -m clamp.train.cli ...` instead (see the README).
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact

from clamp.train.loop import TrainConfig


def _train(objective: str, overrides: dict[str, Any]) -> dict:
    from clamp.train.run import train

    cfg = TrainConfig(**{**overrides, "objective": objective})
    logger = get_run_logger()
    logger.info("training %s (%s preset) on %s for %d steps", objective, cfg.preset, cfg.dataset_dir, cfg.steps)
    result = train(cfg)
    summary = {k: v for k, v in result.items() if k != "history"}
    create_markdown_artifact(
        key=f"{objective}-summary",
        markdown="\n".join([f"# {objective}", "", "| | |", "|---|---|", *[f"| {k} | {v} |" for k, v in summary.items()]]),
    )
    return summary


@flow(name="pretrain-mmm", log_prints=True)
def pretrain_mmm(
    dataset_dir: str = "data/datasets/music21-corpus",
    output_dir: str = "outputs/mmm-small",
    preset: str = "small",
    steps: int = 300,
    batch_size: int = 32,
    overrides: dict[str, Any] | None = None,
) -> dict:
    """Masked-music pre-training of the music encoder."""
    return _train("mmm", {"dataset_dir": dataset_dir, "output_dir": output_dir, "preset": preset, "steps": steps,
                          "batch_size": batch_size, "lr": 1e-3, "run_name": f"mmm-{preset}", **(overrides or {})})


@flow(name="train-clamp", log_prints=True)
def train_clamp(
    dataset_dir: str = "data/datasets/music21-corpus",
    output_dir: str = "outputs/clamp-small",
    preset: str = "small",
    steps: int = 150,
    batch_size: int = 32,
    init_music_from: str | None = "outputs/mmm-small/model",
    overrides: dict[str, Any] | None = None,
) -> dict:
    """Contrastive training of music and text encoders (optionally from an MMM encoder)."""
    return _train("clamp", {"dataset_dir": dataset_dir, "output_dir": output_dir, "preset": preset, "steps": steps,
                            "batch_size": batch_size, "init_music_from": init_music_from, "run_name": f"clamp-{preset}",
                            **(overrides or {})})
