"""Training-step speed: samples/s and patches/s of the MMM and contrastive steps.

    .venv/bin/python benchmarks/bench_train.py --preset small --batch 16          # CPU
    python benchmarks/bench_train.py --preset clamp-s-512 --batch 128 --device cuda --compile

On CUDA it also reports model FLOPs utilization (MFU) against the card's dense bf16 peak and
the standalone data-loader rate over a built dataset (`--dataset`), to show whether loading
can keep up with the step. Figures are medians over `--steps` timed steps after `--warmup`.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# Dense bf16 tensor-core peaks (no sparsity), TFLOP/s.
BF16_PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "L40S": 362.0, "A10": 125.0}


def peak_tflops(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in BF16_PEAK_TFLOPS.items() if k in name), None)


def encoder_flops(cfg, batch: int, n: int) -> float:
    """Training FLOPs of the encoder for one batch (6 * params * tokens + attention)."""
    h, layers, inter = cfg.hidden_size, cfg.num_layers, cfg.intermediate_size
    per_token_layer = 2 * (4 * h * h + 2 * h * inter)  # forward matmuls
    attn = 2 * 2 * n * h  # QK^T and AV per token per layer
    embed = 2 * cfg.patch_size * h  # the 64-row gather-sum, as a matmul would count it
    return 3 * batch * n * (layers * (per_token_layer + attn) + embed)


def decoder_flops(cfg, decoded_positions: int) -> float:
    """Training FLOPs of the character decoder over the positions it actually ran."""
    h, layers = cfg.decoder_hidden_size, cfg.decoder_layers
    t = cfg.patch_size  # attention span bound: at most 64 characters
    per_token = layers * 2 * (4 * h * h + 2 * h * 4 * h) + 2 * h * cfg.vocab_size + layers * 2 * t * h
    return 3 * decoded_positions * per_token


def synthetic_patches(batch: int, n: int, vocab: int, gen: torch.Generator) -> torch.Tensor:
    """Bars of 8..40 characters then end-of-patch, like real ABC (no padding patches)."""
    x = torch.zeros(batch, n, 64, dtype=torch.long)
    lengths = torch.randint(8, 40, (batch, n), generator=gen)
    chars = torch.randint(1, min(vocab, 95), (batch, n, 64), generator=gen)
    pos = torch.arange(64)
    x = torch.where(pos < lengths[..., None], chars, x)
    return x


def time_steps(step, warmup: int, steps: int, device: torch.device) -> list[float]:
    times = []
    for i in range(warmup + steps):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i >= warmup:
            times.append(time.perf_counter() - t)
    return times


def bench_mmm(args, device) -> dict:
    """The MMM step; on a CUDA out-of-memory error the batch is halved (the figures name it)."""
    batch = args.mmm_batch or args.batch
    while True:
        try:
            return _bench_mmm(args, device, batch)
        except torch.cuda.OutOfMemoryError:
            if batch == 1:
                raise
        # outside the except block: its traceback no longer pins the failed step's tensors
        print(f"mmm: batch {batch} does not fit in GPU memory; trying {batch // 2}", file=sys.stderr)
        batch //= 2
        torch._dynamo.reset()
        torch.cuda.empty_cache()


def _bench_mmm(args, device, batch: int) -> dict:
    from clamp.model.config import music_preset
    from clamp.model.mmm import MMMModel

    cfg = music_preset(args.preset)
    n = args.patches or cfg.max_positions
    model = MMMModel(cfg).to(device)
    if args.compile:
        model.encoder.compile()
        model.decoder.compile(dynamic=True)  # the number of selected patches varies per step
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=device.type == "cuda")
    gen = torch.Generator().manual_seed(0)
    patches = synthetic_patches(batch, n, cfg.vocab_size, gen).to(device)
    amp = torch.bfloat16 if device.type == "cuda" else None
    decoded: list[int] = []

    def step():
        with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
            out = model(patches, generator=gen)
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        opt.step()
        decoded.append(out.decoded_positions)

    times = time_steps(step, args.warmup, args.steps, device)
    t = statistics.median(times)
    flops = encoder_flops(cfg, batch, n) + decoder_flops(cfg, int(statistics.median(decoded)))
    return _figures("mmm", batch, t, n, flops, device)


def bench_clamp(args, device) -> dict:
    from clamp.model.clamp_model import ClampModel
    from clamp.model.config import ClampConfig, music_preset

    cfg = ClampConfig(music=music_preset(args.preset), text_model=args.text_model)
    n = args.patches or cfg.music.max_positions
    model = ClampModel.from_config(cfg).to(device)
    if args.compile:
        model.music_encoder.compile()
        model.text_encoder.compile()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=device.type == "cuda")
    gen = torch.Generator().manual_seed(0)
    patches = synthetic_patches(args.batch, n, cfg.music.vocab_size, gen).to(device)
    texts = [
        f"Title: Tune {i} | Rhythm: reel | Origin: Ireland | a lively dance tune in D major" for i in range(args.batch)
    ]
    enc = model.tokenizer(texts, padding="max_length", truncation=True, max_length=128, return_tensors="pt").to(device)
    amp = torch.bfloat16 if device.type == "cuda" else None

    def step():
        with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
            out = model(patches, enc["input_ids"], enc["attention_mask"])
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        opt.step()

    times = time_steps(step, args.warmup, args.steps, device)
    t = statistics.median(times)
    flops = encoder_flops(cfg.music, args.batch, n) + text_flops(model.text_encoder, args.batch, 128)
    return _figures("clamp", args.batch, t, n, flops, device)


def _figures(name: str, batch: int, t: float, n: int, flops: float, device) -> dict:
    out = {
        f"{name} batch": batch,
        f"{name} step (s)": round(t, 4),
        f"{name} samples/s": round(batch / t, 1),
        f"{name} patches/s": round(batch * n / t),
        f"{name} model TFLOP/s": round(flops / t / 1e12, 1),
    }
    peak = peak_tflops(device)
    if peak:
        out[f"{name} MFU (bf16 peak {peak:.0f} TFLOP/s)"] = f"{flops / t / 1e12 / peak:.1%}"
    if device.type == "cuda":
        out[f"{name} peak GPU memory (GiB)"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 1)
        torch.cuda.reset_peak_memory_stats(device)
    return out


def text_flops(text_model: torch.nn.Module, batch: int, seq: int) -> float:
    """Training FLOPs of the text encoder: 6 * non-embedding params * tokens + attention."""
    cfg = text_model.config
    embedding = sum(
        p.numel() for m in text_model.modules() if isinstance(m, torch.nn.Embedding) for p in m.parameters()
    )
    params = sum(p.numel() for p in text_model.parameters()) - embedding
    attn = 3 * 2 * 2 * seq * cfg.hidden_size * cfg.num_hidden_layers
    return batch * seq * (6 * params + attn)


def matmul_tflops(device: torch.device) -> float:
    """Achieved bf16 TFLOP/s of a large matrix product on this card: the practical ceiling."""
    a = torch.randn(8192, 8192, device=device, dtype=torch.bfloat16)
    b = torch.randn(8192, 8192, device=device, dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    times = []
    for _ in range(10):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        a @ b
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end) / 1e3)
    return 2 * 8192**3 / statistics.median(times) / 1e12


def bench_loader(args) -> dict:
    """Batches/s of the real data path (shards -> dataset -> collate) with worker processes."""
    from torch.utils.data import DataLoader

    from clamp.data.torch_dataset import ShardDataset
    from clamp.model.config import music_preset
    from clamp.model.text import load_text_encoder
    from clamp.train.data import ContrastiveCollator
    from clamp.train.loop import IndexedDataset, ResumableBatchSampler

    cfg = music_preset(args.preset)
    _, tok = load_text_encoder(args.text_model)
    ds = IndexedDataset(ShardDataset(args.dataset, split="train"))
    loader = DataLoader(
        ds,
        batch_sampler=ResumableBatchSampler(len(ds.base), args.batch, 0),
        num_workers=args.num_workers,
        collate_fn=ContrastiveCollator(tok, cfg.max_positions),
        persistent_workers=args.num_workers > 0,
    )
    it = iter(loader)
    for _ in range(3):
        next(it)
    t = time.perf_counter()
    k = 30
    for _ in range(k):
        next(it)
    rate = k / (time.perf_counter() - t)
    return {
        f"data loader batches/s ({args.num_workers} workers)": round(rate, 1),
        "data loader samples/s": round(rate * args.batch),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="small")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--mmm-batch", type=int, help="batch of the MMM step (default: --batch)")
    parser.add_argument("--patches", type=int, help="patches per sample (default: the preset's max)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--objective", choices=["mmm", "clamp", "both"], default="both")
    parser.add_argument("--steps", type=int, default=5, help="timed steps (median reported)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--compile", action="store_true", help="torch.compile the encoders")
    parser.add_argument("--text-model", default="all-MiniLM-L6-v2")
    parser.add_argument("--dataset", help="a built dataset, to time the data loader")
    parser.add_argument("--num-workers", type=int, default=2)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
    figures = {
        "device": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"cpu ({torch.get_num_threads()} threads)",
        "preset": args.preset,
        "batch": args.batch,
    }
    if device.type == "cuda":
        figures["bf16 matmul 8192^3 (TFLOP/s)"] = round(matmul_tflops(device), 1)
    if args.objective in ("mmm", "both"):
        figures.update(bench_mmm(args, device))
    if args.objective in ("clamp", "both"):
        figures.update(bench_clamp(args, device))
    if args.dataset:
        figures.update(bench_loader(args))
    if args.json:
        print(json.dumps(figures))
        return
    width = max(map(len, figures))
    for k, v in figures.items():
        print(f"{k:<{width}}  {v}")


if __name__ == "__main__":
    main()
