"""Entry points: `train(cfg)` for MMM pre-training and contrastive training (also under torchrun)."""

from __future__ import annotations

import contextlib
import json
import logging
from pathlib import Path

import torch

from clamp.data.shards import load_manifest
from clamp.data.torch_dataset import ShardDataset
from clamp.model.clamp_model import ClampModel
from clamp.model.config import ClampConfig, MusicEncoderConfig, music_preset
from clamp.model.mmm import MMMModel
from clamp.model.music_encoder import patch_mask
from clamp.tracking import flatten, git_commit, mlflow_run
from clamp.train.data import ContrastiveCollator, PatchCollator
from clamp.train.loop import (
    IndexedDataset,
    StepResult,
    TrainConfig,
    pick_device,
    run_loop,
    seed_everything,
    setup_distributed,
)

log = logging.getLogger("clamp.train")
MMM_CONFIG = "mmm_config.json"


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return model.module if hasattr(model, "module") else model


def save_mmm(model: MMMModel, path: Path) -> None:
    from safetensors.torch import save_file

    path.mkdir(parents=True, exist_ok=True)
    (path / MMM_CONFIG).write_text(json.dumps(model.cfg.to_dict(), indent=2) + "\n")
    save_file({k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}, str(path / "model.safetensors"))


def load_mmm(path: str | Path) -> MMMModel:
    from safetensors.torch import load_file

    path = Path(path)
    if not (path / MMM_CONFIG).is_file():
        raise FileNotFoundError(f"not an MMM model folder: {path}")
    model = MMMModel(MusicEncoderConfig(**json.loads((path / MMM_CONFIG).read_text())))
    model.load_state_dict(load_file(str(path / "model.safetensors")))
    return model


def music_config(cfg: TrainConfig, manifest: dict) -> MusicEncoderConfig:
    music = music_preset(cfg.preset, patch_mode=manifest["patch_mode"], input_kind=cfg.input_kind)
    if cfg.max_patches:
        music.max_positions = cfg.max_patches
    return music


def decay_groups(module: torch.nn.Module, lr: float, weight_decay: float, skip: set[int] | None = None) -> list[dict]:
    """AdamW groups: weight decay on matrices only; none on biases, norms, embeddings' gains
    and the temperature (as in CLIP), which decay would pull toward zero."""
    decay, no_decay = [], []
    for name, p in module.named_parameters():
        if not p.requires_grad or (skip and id(p) in skip):
            continue
        (no_decay if p.ndim < 2 or "logit_scale" in name else decay).append(p)
    return [{"params": decay, "lr": lr, "weight_decay": weight_decay}, {"params": no_decay, "lr": lr, "weight_decay": 0.0}]


def mmm_step(model, batch, micro_step: int, seed: int, rank: int) -> StepResult:
    gen = torch.Generator().manual_seed(hash((seed, micro_step, rank)) % 2**63)
    out = model(batch["music"], generator=gen)
    real = patch_mask(batch["music"]).sum()
    return StepResult(out.loss, {"reconstruction_accuracy": out.accuracy}, len(batch["music"]), real)


def clamp_step(model, batch, micro_step: int) -> StepResult:
    out = model(batch["music"], batch["input_ids"], batch["attention_mask"])
    m = batch["music"]
    n_pos = (m != 0).any(-1).sum() if m.dim() == 3 else (m != 0).sum()
    return StepResult(out.loss, {"temperature": 1 / _unwrap(model).scale().detach()}, len(m), n_pos)


def register_model_folder(name: str, run_id: str, source: str) -> str:
    """Register the run's model folder (plain artifacts: config + safetensors) as a new version."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient()
    with contextlib.suppress(MlflowException):  # already registered: add a version
        client.create_registered_model(name)
    version = client.create_model_version(name, source=source, run_id=run_id)
    return str(version.version)


def train(cfg: TrainConfig) -> dict:
    """Train, log to MLflow, save the model folder; returns a result summary."""
    device = pick_device(cfg.device)
    dinfo = setup_distributed(device)
    manifest = load_manifest(cfg.dataset_dir)
    music = music_config(cfg, manifest)
    seed_everything(cfg.seed)  # same init on every rank (DDP also broadcasts rank 0's)
    base = ShardDataset(cfg.dataset_dir, split="train")
    dataset = IndexedDataset(base)
    if cfg.objective == "mmm":
        model: torch.nn.Module = MMMModel(music)
        collate = PatchCollator(music.max_positions)
        param_groups = decay_groups(model, cfg.lr, cfg.weight_decay)

        def step_fn(m, b, s):
            return mmm_step(m, b, s, cfg.seed, dinfo.rank)
    else:
        clamp_cfg = ClampConfig(music=music, text_model=cfg.text_model, projection_dim=cfg.projection_dim,
                                learnable_temperature=cfg.learnable_temperature)
        if cfg.init_from:
            model = ClampModel.from_pretrained(cfg.init_from)
            if model.config.music.to_dict() != music.to_dict():
                raise ValueError(f"{cfg.init_from} has another music encoder configuration than preset {cfg.preset}")
        else:
            model = ClampModel.from_config(clamp_cfg)
        if cfg.init_music_from:
            pre = load_mmm(cfg.init_music_from)
            keys = ("patch_mode", "input_kind", "hidden_size", "num_layers", "num_heads", "intermediate_size", "max_positions")
            if any(getattr(pre.cfg, k) != getattr(music, k) for k in keys):
                raise ValueError(
                    f"{cfg.init_music_from} was pre-trained with another encoder configuration "
                    f"(preset/patch mode/input kind differ from {cfg.preset}, {music.patch_mode}, {cfg.input_kind})"
                )
            model.music_encoder.load_state_dict(pre.encoder.state_dict())
        collate = ContrastiveCollator(model.tokenizer, music.max_positions, clamp_cfg.text_max_length, cfg.text_dropout,
                                      music.input_kind, music.pad_id, cfg.seed)
        text_params = list(model.text_encoder.parameters())
        text_ids = {id(p) for p in text_params}
        param_groups = decay_groups(model, cfg.lr, cfg.weight_decay, skip=text_ids) + decay_groups(
            model.text_encoder, cfg.text_lr, cfg.weight_decay)
        step_fn = clamp_step
    seed_everything(cfg.seed + 1000 * dinfo.rank)  # dropout differs per rank, as with separate batches
    n_params = sum(p.numel() for p in model.parameters())
    run_name = cfg.run_name or f"{cfg.objective}-{cfg.preset}"
    with mlflow_run(cfg.experiment, run_name, Path(cfg.tracking_dir) if cfg.tracking_dir else None,
                    enabled=cfg.mlflow and dinfo.is_main) as run:
        if run is not None:
            import mlflow

            mlflow.log_params(flatten({"train": cfg.to_dict(), "music": music.to_dict()}))
            mlflow.set_tags({"dataset_fingerprint": manifest.get("fingerprint", ""), "dataset_dir": str(cfg.dataset_dir),
                             "git_commit": git_commit(), "objective": cfg.objective, "n_params": str(n_params),
                             "world_size": str(dinfo.world), "device": str(device)})

        def on_log(step: int, record: dict) -> None:
            log.info("step %d loss %.4f", step, record["loss"])
            if run is not None:
                import mlflow

                mlflow.log_metrics({k: float(v) for k, v in record.items() if k != "step"}, step=step)

        group = cfg.group_by_length if cfg.group_by_length is not None else cfg.objective == "mmm"
        lengths = None
        if group:  # lengths as the model sees them: cut at its positions
            lengths = base.lengths("n_chars" if music.input_kind == "char" else "n_patches").clip(max=music.max_positions)
        result = run_loop(cfg, model, dataset, collate, step_fn, param_groups, on_log, dinfo, device,
                          dataset_fingerprint=manifest.get("fingerprint", ""), lengths=lengths)
        model_dir = Path(cfg.output_dir) / "model"
        if result["completed"] and dinfo.is_main:
            if cfg.objective == "mmm":
                save_mmm(model, model_dir)
            else:
                model.save_pretrained(model_dir)
            (model_dir / "lineage.json").write_text(json.dumps({
                "training_run_id": run.info.run_id if run is not None else "",
                "dataset_fingerprint": manifest.get("fingerprint", ""),
                "dataset_dir": str(cfg.dataset_dir),
                "git_commit": git_commit(),
                "objective": cfg.objective,
            }, indent=2) + "\n")
            if run is not None:
                import mlflow

                mlflow.log_artifacts(str(model_dir), artifact_path="model")
                if cfg.register_as:
                    register_model_folder(cfg.register_as, run.info.run_id, f"{run.info.artifact_uri}/model")
        history = result["history"]
        steps = sorted(history)
        summary = {
            "run_id": run.info.run_id if run is not None else None,
            "model_dir": str(model_dir) if result["completed"] else None,
            "steps": len(steps),
            "first_loss": history[steps[0]] if steps else None,
            "last_loss": history[steps[-1]] if steps else None,
            "n_params": n_params,
            "train_items": len(base),
            "history": history,
        }
    return summary
