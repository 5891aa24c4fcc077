"""The training loop shared by MMM pre-training and contrastive training.

One process, or several under `torchrun` (DDP; NCCL on GPUs, gloo on CPU). Exact resume:
the data order is a pure function of (seed, epoch) and the step, MMM masking and text dropout
are seeded per step/sample, and checkpoints carry model, optimizer, scheduler and RNG state.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset, Sampler

from clamp.model.device import pick_device
from clamp.train.checkpoint import (
    checkpoint_to_resume,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from clamp.train.config import RUN_IDENTITY, TrainConfig
from clamp.train.progress import TrainingProgress

log = logging.getLogger("clamp.train")


# --- data order ---------------------------------------------------------------------------
class ResumableBatchSampler(Sampler[list[int]]):
    """Endless batches of indices; global batch g is a pure function of (seed, g).

    Each epoch is a fresh permutation seeded by (seed, epoch); with several processes,
    a global batch of `batch_size * world` indices is split by rank.

    With `lengths`, batches are grouped by length: the permutation is cut into groups of
    `group_batches` global batches, each group is sorted by length and cut into batches, and
    the epoch's batches are shuffled. Batches then hold tunes of similar length, so padding
    to the longest (most tunes are far shorter than `max_patches`) wastes little compute.
    """

    def __init__(
        self,
        n: int,
        batch_size: int,
        seed: int,
        start_batch: int = 0,
        rank: int = 0,
        world: int = 1,
        lengths: np.ndarray | None = None,
        group_batches: int = 64,
    ) -> None:
        self.n, self.batch_size, self.seed, self.start, self.rank, self.world = (
            n,
            batch_size,
            seed,
            start_batch,
            rank,
            world,
        )
        self.global_batch = batch_size * world
        if n < self.global_batch:
            raise ValueError(f"dataset of {n} items is smaller than one global batch of {self.global_batch}")
        if lengths is not None and len(lengths) != n:
            raise ValueError(f"{len(lengths)} lengths for {n} items")
        self.per_epoch = n // self.global_batch
        self.lengths = lengths
        self.group_batches = group_batches
        self._epoch: tuple[int, np.ndarray] | None = None

    def epoch_batches(self, epoch: int) -> np.ndarray:
        """(per_epoch, global_batch) item indices of one epoch."""
        if self._epoch is not None and self._epoch[0] == epoch:
            return self._epoch[1]
        perm = np.random.default_rng([self.seed, epoch]).permutation(self.n)[: self.per_epoch * self.global_batch]
        if self.lengths is not None:
            span = self.group_batches * self.global_batch
            groups = [perm[i : i + span] for i in range(0, len(perm), span)]
            perm = np.concatenate([g[np.argsort(self.lengths[g], kind="stable")] for g in groups])
        batches = perm.reshape(self.per_epoch, self.global_batch)
        if self.lengths is not None:
            batches = batches[np.random.default_rng([self.seed, epoch, 1]).permutation(self.per_epoch)]
        self._epoch = (epoch, batches)
        return batches

    def batch(self, g: int) -> list[tuple[int, int]]:
        """(item index, global batch number) pairs: the number seeds per-sample randomness."""
        epoch, pos = divmod(g, self.per_epoch)
        chunk = self.epoch_batches(epoch)[pos]
        return [(int(i), g) for i in chunk[self.rank * self.batch_size : (self.rank + 1) * self.batch_size]]

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        g = self.start
        while True:
            yield self.batch(g)
            g += 1

    def __len__(self) -> int:  # endless; DataLoader only needs it for len()
        return 2**31


class IndexedDataset(Dataset):
    """Takes (index, draw) keys from the sampler and adds both to the item, so per-sample
    randomness (text dropout) is seeded by them, whichever worker process collates."""

    def __init__(self, base: Dataset) -> None:
        self.base = base

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, key: tuple[int, int]) -> dict:
        index, draw = key
        return {**self.base[index], "index": index, "draw": draw}


# --- schedule -----------------------------------------------------------------------------
def cosine_schedule(optimizer: torch.optim.Optimizer, cfg: TrainConfig) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up, then cosine decay to `min_lr_ratio` of the peak (transformers' schedule)."""
    from transformers import get_cosine_with_min_lr_schedule_with_warmup

    return get_cosine_with_min_lr_schedule_with_warmup(
        optimizer, num_warmup_steps=cfg.warmup_steps, num_training_steps=cfg.steps, min_lr_rate=cfg.min_lr_ratio
    )


# --- distributed --------------------------------------------------------------------------
@dataclass
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup_distributed(device: torch.device) -> DistInfo:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    if device.type == "cuda":
        torch.cuda.set_device(device)  # before NCCL starts: collectives stage on the current device
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    if precision == "bf16" or (precision == "auto" and device.type == "cuda"):
        return torch.bfloat16
    return None


# --- the loop -----------------------------------------------------------------------------
@dataclass
class StepResult:
    """One micro-step. Metrics and the patch count may stay tensors on the device: the loop
    reads them in one transfer per logging window instead of stalling every step."""

    loss_tensor: torch.Tensor
    metrics: dict[str, float | torch.Tensor]
    samples: int
    patches: int | torch.Tensor


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def compile_towers(model: torch.nn.Module) -> None:
    """torch.compile the encoders and decoder in place (state-dict keys stay as they are).

    `dynamic=True` because real batches vary in patch count and text length.
    """
    for name in ("encoder", "decoder", "music_encoder", "text_encoder"):
        tower = getattr(model, name, None)
        if isinstance(tower, torch.nn.Module):
            tower.compile(dynamic=True)


def run_loop(
    cfg: TrainConfig,
    model: torch.nn.Module,
    dataset: Dataset,
    collate,
    step_fn,
    param_groups: list[dict],
    on_log=None,
    dinfo: DistInfo | None = None,
    device: torch.device | None = None,
    dataset_fingerprint: str = "",
    lengths: np.ndarray | None = None,
    validate_fn: Callable[[], dict[str, float]] | None = None,
    on_validation: Callable[[int, dict[str, float]], None] | None = None,
) -> dict:
    """Generic loop: `step_fn(model, batch, step) -> StepResult` does forward+loss (not backward).

    `lengths` (one per dataset item) turns on length-grouped batches. `validate_fn` (main
    process) runs every `cfg.eval_every` steps; its `valid/text_to_music/mrr` picks the best
    model (kept in memory, `cfg.keep_best`) and drives early stopping. Returns the loss history
    of this process (step -> loss), the validation history and the best state.
    """
    device = device or pick_device(cfg.device)
    dinfo = dinfo or DistInfo()
    out_dir = Path(cfg.output_dir)
    ckpt_dir = out_dir / "checkpoints" / "latest"
    model.to(device)
    if cfg.compile:
        compile_towers(model)
    ddp_model = model
    if dinfo.world > 1:
        ddp_model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None, find_unused_parameters=False
        )
    # fused: one kernel for the whole update instead of several per parameter
    optimizer = torch.optim.AdamW(param_groups, weight_decay=cfg.weight_decay, fused=device.type == "cuda")
    scheduler = cosine_schedule(optimizer, cfg)
    start_step = 0
    history: dict[int, float] = {}
    identity = {
        **{k: getattr(cfg, k) for k in RUN_IDENTITY},
        "dataset_fingerprint": dataset_fingerprint,
        "world_size": dinfo.world,
    }
    for newer in ("midi_view", "chord_view"):  # settings newer than some checkpoints: off, it is what they did
        if not getattr(cfg, newer):
            identity.pop(newer)
    resume_from = checkpoint_to_resume(ckpt_dir)
    state = load_checkpoint(resume_from) if resume_from is not None else None
    if state is not None and state.get("identity") != identity:
        saved = state.get("identity") or {}
        changed = sorted(k for k in set(identity) | set(saved) if saved.get(k) != identity.get(k))
        what = (
            f"different {', '.join(changed)}"
            if state.get("identity")
            else "written by an older version, settings unknown"
        )
        raise ValueError(
            f"{out_dir} holds a checkpoint of another run ({what}): use a new output folder or delete it to start over"
        )
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        start_step = int(state["step"])
        history = {int(k): float(v) for k, v in state.get("history", {}).items()}
        if dinfo.is_main:
            log.info("resumed from %s at step %d", ckpt_dir, start_step)
    sampler = ResumableBatchSampler(
        len(dataset), cfg.batch_size, cfg.seed, start_step * cfg.grad_accum, dinfo.rank, dinfo.world, lengths=lengths
    )
    loader = DataLoader(
        dataset,
        batch_sampler=sampler,
        collate_fn=collate,
        num_workers=cfg.num_workers,
        persistent_workers=cfg.num_workers > 0,
        pin_memory=device.type == "cuda",
    )
    batches = iter(loader)  # draws a base seed from the torch RNG: before the RNG is restored
    if state is not None:
        set_rng_state(state["rng"][dinfo.rank] if isinstance(state["rng"], list) else state["rng"])
    amp = autocast_dtype(cfg.precision, device)
    metrics_file = out_dir / f"metrics-rank{dinfo.rank}.jsonl"
    out_dir.mkdir(parents=True, exist_ok=True)
    if start_step == 0:
        metrics_file.unlink(missing_ok=True)  # a fresh run: no lines from an earlier one
    ddp_model.train()
    t_last, samples_since, patches_since, data_wait = time.perf_counter(), 0, 0, 0.0
    pending: list[dict] = []  # records of finished steps whose numbers are still on the device

    def flush(log_step: bool) -> None:
        nonlocal t_last, samples_since, patches_since, data_wait
        records = _to_host(pending)
        pending.clear()
        if log_step:
            now = time.perf_counter()  # after _to_host: the device has finished these steps
            elapsed = now - t_last
            records[-1]["samples_per_s"] = samples_since * dinfo.world / elapsed
            records[-1]["patches_per_s"] = float(patches_since) * dinfo.world / elapsed
            records[-1]["data_wait_fraction"] = data_wait / elapsed
            t_last, samples_since, patches_since, data_wait = now, 0, 0, 0.0
        with metrics_file.open("a") as fh:
            for record in records:
                history[record["step"] - 1] = record["loss"]
                fh.write(json.dumps(record) + "\n")
        if log_step and dinfo.is_main:
            progress.log(records[-1]["step"], records[-1])
            if on_log:
                on_log(records[-1]["step"], records[-1])

    progress = TrainingProgress(
        cfg.steps, start_step, f"{cfg.objective} {cfg.preset}", cfg.progress if dinfo.is_main else "off"
    )
    validations: list[dict] = []
    best: dict = {"mrr": -1.0, "step": None, "state": None}
    evaluations_since_best = 0
    early_stop = False
    out_of_time = False
    started = time.monotonic()

    def over_budget() -> bool:
        """True once the wall-clock budget is spent, agreed by all processes."""
        over = cfg.max_minutes is not None and time.monotonic() - started >= cfg.max_minutes * 60
        if dinfo.world > 1:
            flag = torch.tensor([float(over)], device=device)
            dist.broadcast(flag, 0)
            over = bool(flag.item())
        return over

    def run_validation(done: int) -> bool:
        """Validate (main process); True when early stopping says stop, agreed by all processes."""
        nonlocal evaluations_since_best
        stop = False
        if dinfo.is_main and validate_fn is not None:
            metrics = validate_fn()
            validations.append({"step": done, **metrics})
            mrr = metrics.get("valid/text_to_music/mrr", -1.0)
            if mrr > best["mrr"]:
                best.update(mrr=mrr, step=done)
                if cfg.keep_best:
                    best["state"] = {k: v.detach().clone() for k, v in model.state_dict().items()}
                evaluations_since_best = 0
            else:
                evaluations_since_best += 1
            progress.validation(done, metrics)
            if on_validation:
                on_validation(done, {**metrics, "valid/best_mrr": best["mrr"]})
            stop = cfg.early_stopping_patience is not None and evaluations_since_best >= cfg.early_stopping_patience
        if dinfo.world > 1:
            flag = torch.tensor([float(stop)], device=device)
            dist.broadcast(flag, 0)
            stop = bool(flag.item())
        return stop

    for step in range(start_step, cfg.steps):
        if cfg.stop_after is not None and step >= cfg.stop_after:
            break
        if early_stop or out_of_time:
            break
        optimizer.zero_grad(set_to_none=True)
        loss_sum: torch.Tensor | float = 0.0
        extra: dict[str, float | torch.Tensor] = {}
        for micro in range(cfg.grad_accum):
            t0 = time.perf_counter()
            batch = next(batches)
            data_wait += time.perf_counter() - t0
            batch = {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}
            sync = micro == cfg.grad_accum - 1 or dinfo.world == 1
            ctx = ddp_model.no_sync() if (not sync and dinfo.world > 1) else contextlib.nullcontext()
            with ctx, torch.autocast(device.type, dtype=amp, enabled=amp is not None):
                result = step_fn(ddp_model, batch, step * cfg.grad_accum + micro)
            (result.loss_tensor / cfg.grad_accum).backward()
            loss_sum = loss_sum + result.loss_tensor.detach().float() / cfg.grad_accum
            samples_since += result.samples
            patches_since = patches_since + result.patches
            for k, v in result.metrics.items():
                v = v.detach().float() if torch.is_tensor(v) else v
                extra[k] = extra.get(k, 0.0) + v / cfg.grad_accum
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
        optimizer.step()
        scheduler.step()
        done = step + 1
        pending.append(
            {"step": done, "loss": loss_sum, "lr": scheduler.get_last_lr()[0], "grad_norm": grad_norm.detach(), **extra}
        )
        log_now = done % cfg.log_every == 0 or done == cfg.steps
        checkpoint_now = bool(cfg.checkpoint_every) and done % cfg.checkpoint_every == 0 and done < cfg.steps
        stopping = cfg.stop_after is not None and done >= cfg.stop_after
        if log_now or checkpoint_now or stopping:
            flush(log_now)
        progress.step(done)
        validated = bool(cfg.eval_every) and (done % cfg.eval_every == 0 or done == cfg.steps)
        if validated:
            early_stop = run_validation(done)
        if cfg.max_minutes is not None and done < cfg.steps and (log_now or validated) and over_budget():
            out_of_time = True
            if cfg.eval_every and not validated:
                run_validation(done)  # so the model kept is judged on the last steps too
            if pending:
                flush(True)
            break
        if checkpoint_now:
            _save(ckpt_dir, model, optimizer, scheduler, done, history, dinfo, identity)
    progress.close()
    completed = early_stop or out_of_time or cfg.stop_after is None or cfg.stop_after >= cfg.steps
    if completed and dinfo.is_main:
        # the run is over: a later run in this folder starts afresh instead of resuming it
        import shutil

        for stale in (ckpt_dir, ckpt_dir.with_name(f"{ckpt_dir.name}.old")):
            shutil.rmtree(stale, ignore_errors=True)
    return {
        "history": history,
        "completed": completed,
        "validations": validations,
        "best_step": best["step"],
        "best_mrr": best["mrr"] if best["step"] is not None else None,
        "best_state": best["state"],
        "early_stopped": early_stop,
        "out_of_time": out_of_time,
    }


def _to_host(records: list[dict]) -> list[dict]:
    """Device tensors in `records` -> Python floats, with a single device-to-host transfer."""
    tensors = [v for r in records for v in r.values() if torch.is_tensor(v)]
    values = iter(torch.stack([t.reshape(()).float() for t in tensors]).tolist()) if tensors else iter(())
    return [{k: next(values) if torch.is_tensor(v) else v for k, v in r.items()} for r in records]


def _save(
    ckpt_dir: Path, model, optimizer, scheduler, step: int, history: dict, dinfo: DistInfo, identity: dict
) -> None:
    rngs = [rng_state()]
    if dinfo.world > 1:
        gathered: list = [None] * dinfo.world
        dist.all_gather_object(gathered, rngs[0])
        rngs = gathered
    if dinfo.is_main:
        save_checkpoint(
            ckpt_dir,
            {
                "step": step,
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "rng": rngs if dinfo.world > 1 else rngs[0],
                "history": {str(k): v for k, v in history.items()},
                "identity": identity,
            },
        )
    if dinfo.world > 1:
        dist.barrier()
