"""Test oracle, run in its own process by tests/model/test_imports.py: builds the reference
CLaMP 1/2/3 model (/work/shared/reference, MIT) with small random weights, saves it in the
published format and writes what the reference computes for the given inputs.

Never imported by the package. It runs in a subprocess because the reference modules are
called `utils` and `config` (`from config import *`) and differ between versions.

Usage: python tests/model/reference_oracle.py SPEC.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np


def main(spec_file: str) -> None:
    spec = json.loads(Path(spec_file).read_text())
    fmt, out = spec["format"], Path(spec["out"])
    sys.path.insert(0, spec["reference_dir"])
    import torch
    import utils  # the reference module (its folder is first on sys.path)
    from transformers import BertConfig

    m = spec["music"]
    torch.manual_seed(spec["seed"])
    music_cfg = BertConfig(
        vocab_size=1,
        hidden_size=m["hidden"],
        num_hidden_layers=m["layers"],
        num_attention_heads=m["heads"],
        intermediate_size=m["intermediate"],
        max_position_embeddings=m["positions"],
    )
    if fmt == "clamp1":
        model = utils.CLaMP(music_cfg, text_model_name=spec["text_model"])
        music_tower, music_proj, text_tower = model.music_enc, model.music_proj, model.text_enc
    else:
        utils.M3_HIDDEN_SIZE = m["hidden"]  # the module sizes the patch embedding and projections from it
        if fmt == "clamp2":
            model = utils.CLaMP2Model(
                music_cfg, text_model_name=spec["text_model"], hidden_size=spec["projection"], load_m3=False
            )
            music_tower, music_proj = model.music_model, model.music_proj
        else:
            a = spec["audio"]
            audio_cfg = BertConfig(
                vocab_size=1,
                hidden_size=a["hidden"],
                num_hidden_layers=a["layers"],
                num_attention_heads=a["heads"],
                intermediate_size=2 * a["hidden"],
                max_position_embeddings=a["positions"],
            )
            model = utils.CLaMP3Model(
                audio_cfg, music_cfg, text_model_name=spec["text_model"], hidden_size=spec["projection"], load_m3=False
            )
            music_tower, music_proj = model.symbolic_model, model.symbolic_proj
        text_tower = model.text_model
    # every weight moved off its initial value, so biases, LayerNorms and the token-type row all matter
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * spec["noise"])
    model.eval()

    # --- the published format
    state = model.state_dict()
    if fmt == "clamp1":
        folder = out / "published"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "config.json").write_text(
            json.dumps({**music_cfg.to_dict(), "max_length": m["max_length"]}, indent=2)
        )
        torch.save(state, folder / "pytorch_model.bin")
    else:
        torch.save({"model": state, "epoch": 3, "min_eval_loss": 0.5}, out / "published.pth")

    # --- patches of the reference patchilizer
    if fmt == "clamp1":
        patchilizer = utils.MusicPatchilizer()
        patches = [patchilizer.encode(t, music_length=10**6, add_eos_patch=True) for t in spec["tunes"]]
    else:
        patchilizer = utils.M3Patchilizer()
        patches = [patchilizer.encode(t, add_special_patches=True) for t in spec["tunes"]]
    counts = np.array([len(p) for p in patches])
    flat = np.concatenate([np.array(p, dtype=np.int64).reshape(-1, 64) for p in patches])

    # --- music and text features, pooled (avg_pooling) and projected
    window = m["max_length"]
    music_pooled, music_projected = [], []
    with torch.no_grad():
        for i in spec["embed"]:
            x = torch.tensor(patches[i][:window], dtype=torch.long).unsqueeze(0)
            mask = torch.ones(1, x.shape[1])
            hidden = music_tower(x, mask)["last_hidden_state"]
            pooled = model.avg_pooling(hidden, mask)
            music_pooled.append(pooled[0].numpy())
            music_projected.append(music_proj(pooled)[0].numpy())
        ids, mask = torch.tensor(spec["text_ids"]), torch.tensor(spec["text_mask"])
        hidden = text_tower(ids, attention_mask=mask)["last_hidden_state"]
        text_pooled = model.avg_pooling(hidden, mask)
        text_projected = model.text_proj(text_pooled)
        # the reference's own entry points, for the formats that have them
        if fmt == "clamp2":
            x = torch.tensor(patches[spec["embed"][0]][:window]).unsqueeze(0)
            direct = model.get_music_features(x, torch.ones(1, x.shape[1]), get_normalized=True)[0].numpy()
            assert np.allclose(direct, music_projected[0], atol=1e-6)
            assert np.allclose(
                model.get_text_features(ids, mask, get_normalized=True).numpy(), text_projected.numpy(), atol=1e-6
            )
        if fmt == "clamp3":
            x = torch.tensor(patches[spec["embed"][0]][:window]).unsqueeze(0)
            direct = model.get_symbolic_features(x, torch.ones(1, x.shape[1]), get_global=True)[0].numpy()
            assert np.allclose(direct, music_projected[0], atol=1e-6)
    np.savez(
        out / "oracle.npz",
        patch_counts=counts,
        patches=flat.astype(np.uint8),
        music_pooled=np.stack(music_pooled),
        music_projected=np.stack(music_projected),
        text_pooled=text_pooled.numpy(),
        text_projected=text_projected.numpy(),
    )


if __name__ == "__main__":
    main(sys.argv[1])
