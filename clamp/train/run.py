"""Entry points: `train(cfg)` for MMM pre-training and contrastive training (also under torchrun)."""

from __future__ import annotations

import contextlib
import json
import logging
import sys
from pathlib import Path

import torch

from clamp.data.executors import progress_bar
from clamp.data.shards import load_manifest
from clamp.data.torch_dataset import ShardDataset
from clamp.data.views import CHORD_VIEW, MIDI_VIEW
from clamp.errors import UserError
from clamp.model.clamp_model import ClampModel
from clamp.model.config import ClampConfig, MusicEncoderConfig, music_preset
from clamp.model.device import pick_device
from clamp.model.mmm import MMMModel
from clamp.model.music_encoder import patch_mask
from clamp.tracking import flatten, git_commit, mlflow_run
from clamp.train.data import ContrastiveCollator, PatchCollator
from clamp.train.loop import (
    IndexedDataset,
    StepResult,
    TrainConfig,
    run_loop,
    seed_everything,
    setup_distributed,
)
from clamp.train.mlflow_outbox import MlflowOutbox, quick_mlflow_requests
from clamp.train.text_bank import LockedTextCollator, TextFeatureBank, candidates
from clamp.train.validate import COLLAPSE_COSINE, validate

log = logging.getLogger("clamp.train")
MMM_CONFIG = "mmm_config.json"


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return model.module if hasattr(model, "module") else model


def save_mmm(model: MMMModel, path: Path) -> None:
    from safetensors.torch import save_file

    path.mkdir(parents=True, exist_ok=True)
    (path / MMM_CONFIG).write_text(json.dumps(model.cfg.to_dict(), indent=2) + "\n")
    save_file(
        {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}, str(path / "model.safetensors")
    )


def load_mmm(path: str | Path) -> MMMModel:
    from safetensors.torch import load_file

    path = Path(path)
    if not (path / MMM_CONFIG).is_file():
        raise FileNotFoundError(f"not an MMM model folder: {path}")
    model = MMMModel(MusicEncoderConfig(**json.loads((path / MMM_CONFIG).read_text())))
    model.load_state_dict(load_file(str(path / "model.safetensors")))
    return model


def music_config(cfg: TrainConfig, manifest: dict) -> MusicEncoderConfig:
    music = music_preset(
        cfg.preset,
        patch_mode=manifest["patch_mode"],
        input_kind=cfg.input_kind,
        notation=manifest.get("notation", "as-written"),
    )
    if cfg.max_patches:
        music.max_positions = cfg.max_patches
    return music


def patch_budget_note(manifest: dict, music: MusicEncoderConfig) -> str | None:
    """One line when the dataset's `max_patches` (what its tunes were cut to at build time) and the
    run's `max_positions` (what the encoder reads) differ, with the fix; None when they agree."""
    built = manifest.get("max_patches")
    if music.input_kind != "patch" or not built or built == music.max_positions:
        return None
    reads = music.max_positions
    if built > reads:
        return (
            f"note: the dataset keeps up to {built} patches per tune and this run reads the first {reads}; "
            f"longer tunes are cut (train with --max-patches {built}, or build with max_patches {reads})"
        )
    return (
        f"note: the dataset's tunes were cut to {built} patches and this run's encoder has {reads} positions; "
        f"positions past {built} are never trained (train with --max-patches {built}, or rebuild with "
        f"max_patches {reads})"
    )


def init_music_config(loaded: MusicEncoderConfig, run: MusicEncoderConfig, source: str) -> MusicEncoderConfig:
    """The music encoder of a run that continues `init_from`: the loaded model's own architecture
    (a champion of another preset, an imported CLaMP checkpoint), which must read the dataset's
    patches the way it was trained to. It takes the dataset's notation: from now on it is trained
    on, and so reads, tunes written that way (an imported checkpoint reads them as written)."""
    for key in ("patch_mode", "input_kind"):
        if getattr(loaded, key) != getattr(run, key):
            raise UserError(
                f"{source} uses {key} {getattr(loaded, key)!r}, this run {getattr(run, key)!r} "
                "(the dataset's patch mode, the input kind): they must agree to continue training it"
            )
    loaded.notation = run.notation
    return loaded


def init_lineage(init_from: str | None) -> dict[str, str]:
    """What a continued model came from: the `init_from` folder and, for an imported checkpoint,
    its origin record (clamp.model.imports), so evaluation tags the fine-tuned model with it too."""
    if not init_from:
        return {}
    record = Path(init_from) / "lineage.json"
    prior = json.loads(record.read_text()) if record.is_file() else {}
    return {"init_from": str(init_from), **{k: str(v) for k, v in prior.items() if k.startswith("origin")}}


def decay_groups(module: torch.nn.Module, lr: float, weight_decay: float, skip: set[int] | None = None) -> list[dict]:
    """AdamW groups: weight decay on matrices only; none on biases, norms, embeddings' gains
    and the temperature (as in CLIP), which decay would pull toward zero."""
    decay, no_decay = [], []
    for name, p in module.named_parameters():
        if not p.requires_grad or (skip and id(p) in skip):
            continue
        (no_decay if p.ndim < 2 or "logit_scale" in name else decay).append(p)
    return [
        {"params": decay, "lr": lr, "weight_decay": weight_decay},
        {"params": no_decay, "lr": lr, "weight_decay": 0.0},
    ]


def mmm_step(model, batch, micro_step: int, seed: int, rank: int) -> StepResult:
    gen = torch.Generator().manual_seed(hash((seed, micro_step, rank)) % 2**63)
    out = model(batch["music"], generator=gen)
    real = patch_mask(batch["music"]).sum()
    return StepResult(out.loss, {"reconstruction_accuracy": out.accuracy}, len(batch["music"]), real)


def clamp_step(model, batch, micro_step: int) -> StepResult:
    ids = batch.get("text_ids")  # identical texts are positives for each other (shared_text_positives)
    if "text_features" in batch:  # a locked text tower: cached features
        out = model(batch["music"], text_features=batch["text_features"], text_ids=ids)
    else:
        out = model(batch["music"], batch["input_ids"], batch["attention_mask"], text_ids=ids)
    m = batch["music"]
    n_pos = (m != 0).any(-1).sum() if m.dim() == 3 else (m != 0).sum()
    return StepResult(out.loss, {"temperature": 1 / _unwrap(model).scale().detach()}, len(m), n_pos)


def build_text_bank(model, texts: list[str], cfg: TrainConfig, dinfo) -> TextFeatureBank:
    """The locked tower's features of every candidate; the main process fills the disk cache
    first, so the other processes of a DDP run only read it."""
    lines = [ln for t in texts for ln in candidates([t])]
    if dinfo.world > 1 and not dinfo.is_main:
        import torch.distributed as dist

        dist.barrier()  # wait for the main process's cache
    bar = dinfo.is_main and (cfg.progress == "bar" or (cfg.progress == "auto" and sys.stderr.isatty()))
    with progress_bar("text features (locked tower; cached afterwards)", len(set(lines)), bar) as advance:
        bank = TextFeatureBank.build(model, lines, cfg.cache_dir, progress=advance)
    if dinfo.is_main and not bar and cfg.progress in ("auto", "lines"):
        print(
            f"text features (locked tower): {len(bank)} candidates, {bank.computed} computed, the rest cached",
            file=sys.stderr,
            flush=True,
        )
    if dinfo.world > 1 and dinfo.is_main:
        import torch.distributed as dist

        dist.barrier()
    return bank


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
    shares = {MIDI_VIEW: cfg.midi_view, CHORD_VIEW: cfg.chord_view}
    base = ShardDataset(cfg.dataset_dir, split="train", views=tuple(v for v, p in shares.items() if p > 0))
    for name, n in base.view_counts().items():
        log.info("%s views: %d of %d train tunes, drawn with p %.2f", name, n, len(base), shares[name])
    dataset = IndexedDataset(base)
    validate_fn = None
    valid_items: list[dict] = []
    if cfg.eval_every and cfg.objective == "clamp" and dinfo.is_main:
        valid = ShardDataset(cfg.dataset_dir, split="valid")
        valid_items = [valid[i] for i in range(len(valid))]
        if not valid_items:
            log.warning("eval_every is set, but the dataset has no valid split: no validation")
    if cfg.objective == "mmm":
        model: torch.nn.Module = MMMModel(music)
        collate = PatchCollator(music.max_positions)
        param_groups = decay_groups(model, cfg.lr, cfg.weight_decay)

        def step_fn(m, b, s):
            return mmm_step(m, b, s, cfg.seed, dinfo.rank)
    else:
        clamp_cfg = ClampConfig(
            music=music,
            text_model=cfg.text_model,
            projection_dim=cfg.projection_dim,
            learnable_temperature=cfg.learnable_temperature,
        )
        if cfg.init_from:
            model = ClampModel.from_pretrained(cfg.init_from)
            music = init_music_config(model.config.music, music, cfg.init_from)
            clamp_cfg = model.config  # the loaded model's own settings (text length, origin), not the preset's
        else:
            model = ClampModel.from_config(clamp_cfg)
        if cfg.init_music_from:
            pre = load_mmm(cfg.init_music_from)
            keys = (
                "patch_mode",
                "input_kind",
                "hidden_size",
                "num_layers",
                "num_heads",
                "intermediate_size",
                "max_positions",
            )
            if any(getattr(pre.cfg, k) != getattr(music, k) for k in keys):
                raise ValueError(
                    f"{cfg.init_music_from} was pre-trained with another encoder configuration "
                    f"(preset/patch mode/input kind differ from {cfg.preset}, {music.patch_mode}, {cfg.input_kind})"
                )
            model.music_encoder.load_state_dict(pre.encoder.state_dict())
        text_ids = {id(p) for p in model.text_encoder.parameters()}
        param_groups = decay_groups(model, cfg.lr, cfg.weight_decay, skip=text_ids)
        if cfg.text_tower == "locked":
            model.text_encoder.requires_grad_(False)
            valid_texts = [t for it in valid_items for t in candidates(it["texts"])] if dinfo.is_main else []
            bank = build_text_bank(model, [*base.column_texts(), *valid_texts], cfg, dinfo)
            collate = LockedTextCollator(
                bank,
                music.max_positions,
                cfg.text_dropout,
                music.input_kind,
                music.pad_id,
                cfg.seed,
                cfg.shared_text_positives,
                cfg.text_views,
                patch_mode=music.patch_mode,
                header_dropout=cfg.header_dropout,
                midi_view=cfg.midi_view,
                chord_view=cfg.chord_view,
            )
        else:
            bank = None
            collate = ContrastiveCollator(
                model.tokenizer,
                music.max_positions,
                clamp_cfg.text_max_length,
                cfg.text_dropout,
                music.input_kind,
                music.pad_id,
                cfg.seed,
                cfg.shared_text_positives,
                patch_mode=music.patch_mode,
                header_dropout=cfg.header_dropout,
                midi_view=cfg.midi_view,
                chord_view=cfg.chord_view,
            )
            param_groups += decay_groups(model.text_encoder, cfg.text_lr, cfg.weight_decay)
        step_fn = clamp_step

        def text_embed(items: list[dict]) -> torch.Tensor:
            """Valid texts as training sees them without dropout: all candidates."""
            if bank is not None:
                return model.project_text(
                    torch.stack([bank.feature_of(candidates(it["texts"])) for it in items]).to(device)
                )
            enc = model.tokenizer(
                [" ".join(candidates(it["texts"])) for it in items],
                padding=True,
                truncation=True,
                max_length=model.config.text_max_length,
                return_tensors="pt",
            ).to(device)
            return model.encode_text(enc["input_ids"], enc["attention_mask"])

        if cfg.eval_every and valid_items:

            def validate_fn() -> dict[str, float]:
                return validate(model, valid_items, text_embed, device)

    note = patch_budget_note(manifest, music)  # the final encoder's (a continued model's own)
    if note and dinfo.is_main:
        print(note, file=sys.stderr, flush=True)
    seed_everything(cfg.seed + 1000 * dinfo.rank)  # dropout differs per rank, as with separate batches
    n_params = sum(p.numel() for p in model.parameters())
    run_name = cfg.run_name or f"{cfg.objective}-{cfg.preset}"
    # every record goes through the outbox: an MLflow outage neither stalls the loop nor loses a record
    with (
        quick_mlflow_requests(),
        mlflow_run(
            cfg.experiment,
            run_name,
            Path(cfg.tracking_dir) if cfg.tracking_dir else None,
            enabled=cfg.mlflow and dinfo.is_main,
        ) as run,
        MlflowOutbox.for_run(run, Path(cfg.output_dir), cfg.mlflow_flush_seconds) as outbox,
    ):
        if outbox is not None:
            outbox.log_params(flatten({"train": cfg.to_dict(), "music": music.to_dict()}))
            outbox.set_tags(
                {
                    "dataset_fingerprint": manifest.get("fingerprint", ""),
                    "dataset_dir": str(cfg.dataset_dir),
                    "git_commit": git_commit(),
                    "objective": cfg.objective,
                    "n_params": str(n_params),
                    "world_size": str(dinfo.world),
                    "device": str(device),
                }
            )
            outbox.log_dataset(
                manifest.get("name") or Path(cfg.dataset_dir).name,
                manifest.get("fingerprint", ""),
                cfg.dataset_dir,
                "training",
            )

        def on_log(step: int, record: dict) -> None:
            log.info("step %d loss %.4f", step, record["loss"])
            if outbox is not None:
                outbox.log_metrics({k: float(v) for k, v in record.items() if k != "step"}, step=step)

        group = cfg.group_by_length if cfg.group_by_length is not None else cfg.objective == "mmm"
        lengths = None
        if group:  # lengths as the model sees them: cut at its positions
            lengths = base.lengths("n_chars" if music.input_kind == "char" else "n_patches").clip(
                max=music.max_positions
            )

        def on_validation(step: int, metrics: dict[str, float]) -> None:
            log.info(
                "step %d valid MRR %.4f (mean cosine %.3f)",
                step,
                metrics.get("valid/text_to_music/mrr", float("nan")),
                metrics.get("valid/mean_cosine", float("nan")),
            )
            if outbox is not None:
                outbox.log_metrics(metrics, step=step)
            if dinfo.is_main:  # an MLflow-free record for `clamp report` (a resumed step overrides: last wins)
                with (Path(cfg.output_dir) / "validation.jsonl").open("a") as fh:
                    fh.write(json.dumps({"step": step, **{k: float(v) for k, v in metrics.items()}}) + "\n")

        result = run_loop(
            cfg,
            model,
            dataset,
            collate,
            step_fn,
            param_groups,
            on_log,
            dinfo,
            device,
            dataset_fingerprint=manifest.get("fingerprint", ""),
            lengths=lengths,
            validate_fn=validate_fn,
            on_validation=on_validation,
        )
        if result["best_state"] is not None:  # keep_best: the model with the best valid MRR
            model.load_state_dict(result["best_state"])
        model_dir = Path(cfg.output_dir) / "model"
        if result["completed"] and dinfo.is_main:
            if cfg.objective == "mmm":
                save_mmm(model, model_dir)
            else:
                model.save_pretrained(model_dir)
            (model_dir / "lineage.json").write_text(
                json.dumps(
                    {
                        "training_run_id": run.info.run_id if run is not None else "",
                        "dataset_fingerprint": manifest.get("fingerprint", ""),
                        "dataset_dir": str(cfg.dataset_dir),
                        "git_commit": git_commit(),
                        "objective": cfg.objective,
                        **(init_lineage(cfg.init_from) if cfg.objective == "clamp" else {}),
                    },
                    indent=2,
                )
                + "\n"
            )
            if outbox is not None:
                outbox.log_artifacts(model_dir, "model")
                if cfg.register_as:
                    outbox.register_model(cfg.register_as, "model")
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
            "out_of_time": result["out_of_time"],  # stopped by --max-minutes
        }
        if result["validations"]:
            last = result["validations"][-1]
            summary.update(
                {
                    "validation_steps": [v["step"] for v in result["validations"]],
                    "validation_mrr": [v.get("valid/text_to_music/mrr") for v in result["validations"]],
                    "best_step": result["best_step"],
                    "best_valid_mrr": result["best_mrr"],
                    "early_stopped": result["early_stopped"],
                    "last_valid": {k.removeprefix("valid/"): v for k, v in last.items() if k != "step"},
                }
            )
            if last.get("valid/mean_cosine", 0.0) > COLLAPSE_COSINE:
                summary["warning"] = (
                    f"embeddings have collapsed: mean pairwise cosine {last['valid/mean_cosine']:.3f} "
                    f"on the valid split (above {COLLAPSE_COSINE})"
                )
                log.warning(summary["warning"])
    return summary
