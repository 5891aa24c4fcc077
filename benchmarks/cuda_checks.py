"""CUDA correctness checks: run these on a GPU machine before trusting its speed figures.

    python benchmarks/cuda_checks.py --text-model all-MiniLM-L6-v2

Each check compares a CUDA result with a reference by relative error ||out - ref|| / ||ref||
on fresh random inputs, and prints one row: check, error, bound, verdict. Bounds: float32
on CUDA vs float64 on the CPU 1e-4; bf16 autocast vs float64 2e-2. Exit status 1 if a
check fails.
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

FP32_BOUND = 1e-4
BF16_BOUND = 2e-2


def rel_err(out: torch.Tensor, ref: torch.Tensor) -> float:
    out, ref = out.detach().double().cpu(), ref.detach().double().cpu()
    if not torch.isfinite(out).all():
        return float("nan")
    return float((out - ref).norm() / ref.norm().clamp_min(1e-30))


def random_patches(batch: int, n: int, vocab: int, pad_from: list[int] | None = None) -> torch.Tensor:
    x = torch.randint(1, min(vocab, 95), (batch, n, 64))
    lengths = torch.randint(4, 64, (batch, n, 1))
    x = torch.where(torch.arange(64) < lengths, x, 0)
    for i, start in enumerate(pad_from or []):
        x[i, start:] = 0
    return x


def check_patch_embedding(device: torch.device) -> list[tuple]:
    from clamp.model.music_encoder import PatchEmbedding

    rows = []
    for vocab in (98, 128):
        linear = torch.nn.Linear(64 * vocab, 768).double()
        emb = PatchEmbedding.from_linear(copy.deepcopy(linear).float(), 64, vocab).to(device)
        patches = torch.randint(0, vocab, (4, 33, 64))
        ref = linear(torch.nn.functional.one_hot(patches, vocab).double().reshape(4, 33, -1))
        rows.append(
            (
                f"patch embedding (vocab {vocab}) fp32 vs one-hot Linear fp64",
                rel_err(emb(patches.to(device)), ref),
                FP32_BOUND,
            )
        )
    return rows


def check_encoder(device: torch.device) -> list[tuple]:
    from clamp.model.config import music_preset
    from clamp.model.music_encoder import MusicEncoder, patch_mask

    cfg = music_preset("clamp-s-512", dropout=0.0)
    enc = MusicEncoder(cfg).eval()
    x = random_patches(4, 96, cfg.vocab_size, pad_from=[96, 50, 10, 80])
    mask = patch_mask(x)
    with torch.no_grad():
        ref = MusicEncoder.pool(enc.double()(x, mask), mask)
        enc = enc.float().to(device)
        xd, md = x.to(device), mask.to(device)
        fp32 = MusicEncoder.pool(enc(xd, md), md)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            bf16 = MusicEncoder.pool(enc(xd, md), md)
    return [
        ("clamp-s-512 encoder, padded batch, fp32 vs fp64", rel_err(fp32, ref), FP32_BOUND),
        ("clamp-s-512 encoder, padded batch, bf16 autocast vs fp64", rel_err(bf16, ref), BF16_BOUND),
    ]


def check_flash(device: torch.device) -> list[tuple]:
    """The unpadded encoder and the causal decoder must run on the flash kernel in bf16."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    from clamp.model.config import music_preset
    from clamp.model.mmm import MMMModel
    from clamp.model.music_encoder import patch_mask

    cfg = music_preset("clamp-s-512", dropout=0.0)
    model = MMMModel(cfg).to(device).eval()
    x = random_patches(2, 128, cfg.vocab_size).to(device)
    rows = []
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
        hidden_default = model.encoder(x, patch_mask(x))
        targets = x[0, :16]
        dec_default = model.decoder(hidden_default[0, :16], targets)
        try:
            with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
                hidden_flash = model.encoder(x, patch_mask(x))
                dec_flash = model.decoder(hidden_default[0, :16], targets)
            rows.append(
                (
                    "flash attention: encoder (no padding) vs default kernel",
                    rel_err(hidden_flash, hidden_default),
                    BF16_BOUND,
                )
            )
            rows.append(
                ("flash attention: causal char decoder vs default kernel", rel_err(dec_flash, dec_default), BF16_BOUND)
            )
        except RuntimeError as exc:
            rows.append((f"flash attention unavailable: {str(exc).splitlines()[0][:60]}", float("nan"), BF16_BOUND))
    return rows


def check_gradients(device: torch.device, text_model: str) -> list[tuple]:
    """One contrastive step and one MMM step: CUDA fp32 loss and gradients equal CPU fp32's."""
    from clamp.model.clamp_model import ClampModel
    from clamp.model.config import ClampConfig, music_preset
    from clamp.model.mmm import MMMModel

    rows = []
    torch.manual_seed(0)
    cpu_model = ClampModel.from_config(
        ClampConfig(music=music_preset("small", dropout=0.0), text_model=text_model)
    ).eval()
    tok = cpu_model.tokenizer
    x = random_patches(8, 40, cpu_model.config.music.vocab_size, pad_from=[40, 30, 20, 10, 40, 5, 39, 12])
    enc = tok(
        [f"tune {i}: a {['jig', 'reel', 'waltz', 'march'][i % 4]} in {'DGAE'[i % 4]}" for i in range(8)],
        padding=True,
        return_tensors="pt",
    )

    def grads(model, dev):
        model.zero_grad(set_to_none=True)
        out = model(x.to(dev), enc["input_ids"].to(dev), enc["attention_mask"].to(dev))
        out.loss.backward()
        flat = torch.cat([p.grad.reshape(-1).double().cpu() for p in model.parameters() if p.grad is not None])
        return out.loss.detach(), flat

    loss_cpu, g_cpu = grads(cpu_model, torch.device("cpu"))
    loss_gpu, g_gpu = grads(cpu_model.to(device), device)
    rows.append(("contrastive loss, CUDA fp32 vs CPU fp32", rel_err(loss_gpu, loss_cpu), FP32_BOUND))
    rows.append(("contrastive gradients (all parameters), CUDA fp32 vs CPU fp32", rel_err(g_gpu, g_cpu), 1e-3))

    torch.manual_seed(0)
    mmm = MMMModel(music_preset("small", dropout=0.0))

    def mmm_loss(dev):
        mmm.zero_grad(set_to_none=True)
        out = mmm(x.to(dev), generator=torch.Generator().manual_seed(7))  # same selection on both devices
        out.loss.backward()
        return out.loss.detach(), torch.cat(
            [p.grad.reshape(-1).double().cpu() for p in mmm.parameters() if p.grad is not None]
        )

    l_cpu, gm_cpu = mmm_loss(torch.device("cpu"))
    mmm.to(device)
    l_gpu, gm_gpu = mmm_loss(device)
    rows.append(("MMM loss (same masking seed), CUDA fp32 vs CPU fp32", rel_err(l_gpu, l_cpu), FP32_BOUND))
    rows.append(("MMM gradients, CUDA fp32 vs CPU fp32", rel_err(gm_gpu, gm_cpu), 1e-3))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--text-model", default="all-MiniLM-L6-v2", help="text encoder name or local folder")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("cuda_checks: CUDA is not available on this machine")
    torch.backends.cuda.matmul.allow_tf32 = False  # the fp32 bounds are for true float32
    torch.backends.cudnn.allow_tf32 = False
    device = torch.device("cuda")
    torch.manual_seed(1234)
    rows = (
        check_patch_embedding(device)
        + check_encoder(device)
        + check_flash(device)
        + check_gradients(device, args.text_model)
    )
    width = max(len(r[0]) for r in rows)
    failed = 0
    print(f"{'check':<{width}}  {'rel. error':>10}  {'bound':>7}  verdict")
    for name, err, bound in rows:
        ok = err == err and err <= bound  # NaN never passes
        failed += not ok
        print(f"{name:<{width}}  {err:>10.2e}  {bound:>7.0e}  {'pass' if ok else 'FAIL'}")
    print(f"{len(rows) - failed}/{len(rows)} CUDA checks passed on {torch.cuda.get_device_name(device)}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
