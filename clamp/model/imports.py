"""Import published CLaMP 1, 2 and 3 checkpoints as our model folders (docs/checkpoints.md).

The published formats:

- **CLaMP 1**: a Hugging Face folder: `config.json` (a `BertConfig` of the music encoder, with
  `max_length`, the patch window) and `pytorch_model.bin` (or `model.safetensors`), the state
  dict of the whole model: `music_enc.patch_embedding` (a one-hot `Linear(64*98 -> hidden)`),
  `music_enc.enc` (a `BertModel`), `music_proj`, `text_enc` (DistilRoBERTa) and `text_proj`.
- **CLaMP 2**: a `.pth` dict whose `model` entry is the state dict: `music_model` (the M3
  patch encoder: a one-hot `Linear(64*128 -> hidden)` and a `BertModel` under `base`),
  `music_proj`, `text_model` (XLM-R) and `text_proj`.
- **CLaMP 3**: the same, with `symbolic_model` / `symbolic_proj` for the music, and
  `audio_model` / `audio_proj` (over MERT features), which are not imported.

The mapping is exact (tests/model/test_imports.py checks it against the reference code): the
one-hot Linear is our embedding sum (`PatchEmbedding`), BERT's separate query/key/value are
our fused QKV, and BERT's token-type embedding (always type 0: the music encoders never pass
token types) is folded into the patch embedding's bias. The text towers stay `transformers`
models; their configs and tokenizers are not in the checkpoints and come from a local copy of
the published text model (`text_model`).

Files are read with `torch.load(..., weights_only=True)` or safetensors: nothing is unpickled.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from clamp.errors import UserError
from clamp.model.clamp_model import ClampModel
from clamp.model.config import ClampConfig, MusicEncoderConfig
from clamp.model.text import resolve_text_model

__all__ = ["FORMATS", "CheckpointFormat", "ImportResult", "import_checkpoint", "load_checkpoint", "read_state_dict"]

LINEAGE_NAME = "lineage.json"  # the model folder's provenance record (also written by training)
_SHOWN_KEYS = 6  # keys listed in a one-line error before "(+N more)"


@dataclass(frozen=True)
class CheckpointFormat:
    """Where a published format keeps each part of the model in its state dict."""

    name: str
    title: str
    patch_mode: str  # the patcher whose ids the checkpoint was trained on
    patch_embedding: str  # prefix of the one-hot Linear patch embedding
    bert: str  # prefix of the music encoder's BertModel
    music_proj: str
    text: str  # prefix of the text tower
    text_model: str  # the published text tower: tried offline when no --text-model is given
    skipped: tuple[str, ...] = ()  # prefixes present in the file but not imported
    vocab_size: int = 98


FORMATS: dict[str, CheckpointFormat] = {
    "clamp1": CheckpointFormat(
        "clamp1",
        "CLaMP 1",
        "clamp-v1",
        "music_enc.patch_embedding.",
        "music_enc.enc.",
        "music_proj.",
        "text_enc.",
        "distilroberta-base",
        vocab_size=98,
    ),
    "clamp2": CheckpointFormat(
        "clamp2",
        "CLaMP 2",
        "m3",
        "music_model.patch_embedding.",
        "music_model.base.",
        "music_proj.",
        "text_model.",
        "FacebookAI/xlm-roberta-base",
        vocab_size=128,
    ),
    "clamp3": CheckpointFormat(
        "clamp3",
        "CLaMP 3",
        "m3",
        "symbolic_model.patch_embedding.",
        "symbolic_model.base.",
        "symbolic_proj.",
        "text_model.",
        "FacebookAI/xlm-roberta-base",
        skipped=("audio_model.", "audio_proj."),
        vocab_size=128,
    ),
}

# Tensors a checkpoint may hold that carry nothing we use: BERT's word embeddings (the music
# encoders feed `inputs_embeds`), the [CLS] poolers (mean pooling replaces them) and the
# position/token-type id buffers that older `transformers` versions saved.
_IGNORED = re.compile(r"(^|\.)(pooler\.dense\.(weight|bias)|embeddings\.(position_ids|token_type_ids))$")


@dataclass
class ImportResult:
    model: ClampModel
    lineage: dict[str, str]
    skipped: dict[str, int] = field(default_factory=dict)  # prefix -> tensors left out


# ------------------------------------------------------------------------------------- reading
def read_state_dict(file: Path) -> dict[str, torch.Tensor]:
    """The state dict in a `.bin`/`.pth` (a dict, or a dict with a `model` entry) or `.safetensors` file."""
    if not file.is_file():
        raise UserError(f"checkpoint file not found: {file}")
    try:
        if file.suffix == ".safetensors":
            from safetensors.torch import load_file

            obj: Any = load_file(str(file), device="cpu")
        else:
            obj = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated zip, foreign pickle, code objects refused by weights_only, ...
        detail = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        raise UserError(
            f"cannot read {file} as a weights file (truncated or not a PyTorch/safetensors file): {detail}"
        ) from None
    if isinstance(obj, dict) and isinstance(obj.get("model"), dict):
        obj = obj["model"]  # CLaMP 2/3: {"model": state dict, "epoch": ..., "min_eval_loss": ...}
    if not isinstance(obj, dict) or not obj or not any(isinstance(v, torch.Tensor) for v in obj.values()):
        keys = ", ".join(map(str, list(obj)[:_SHOWN_KEYS])) if isinstance(obj, dict) else type(obj).__name__
        raise UserError(
            f"{file} holds no state dict (expected tensors, or a dict with a 'model' entry; found: {keys or 'nothing'})"
        )
    state = {str(k): v for k, v in obj.items()}
    if all(k.startswith("module.") for k in state):  # saved from a DistributedDataParallel wrapper
        state = {k.removeprefix("module."): v for k, v in state.items()}
    return state


def _key_list(keys: set[str] | list[str]) -> str:
    keys = sorted(keys)
    shown = ", ".join(keys[:_SHOWN_KEYS])
    return shown + (f" (+{len(keys) - _SHOWN_KEYS} more)" if len(keys) > _SHOWN_KEYS else "")


def _key_error(file: Path, fmt: CheckpointFormat, missing: set[str], unexpected: set[str]) -> UserError:
    parts = []
    if missing:
        parts.append(f"missing keys: {_key_list(missing)}")
    if unexpected:
        parts.append(f"unexpected keys: {_key_list(unexpected)}")
    return UserError(f"{file} is not a {fmt.title} checkpoint: {'; '.join(parts)}")


# ------------------------------------------------------------------------------------- shapes
def _layer_count(state: dict[str, torch.Tensor], bert: str) -> int:
    pattern = re.compile(re.escape(bert) + r"encoder\.layer\.(\d+)\.")
    indices = {int(m.group(1)) for k in state if (m := pattern.match(k))}
    return max(indices) + 1 if indices else 0


def _music_config(
    fmt: CheckpointFormat, state: dict[str, torch.Tensor], bert_config: dict | None, num_heads: int | None
) -> MusicEncoderConfig:
    """The music encoder's architecture: from CLaMP 1's config.json, else from the tensors' shapes
    (CLaMP 2/3 ship no config; M3 uses one head per 64 channels)."""
    emb = state[fmt.patch_embedding + "weight"]
    hidden, in_features = int(emb.shape[0]), int(emb.shape[1])
    positions = int(state[fmt.bert + "embeddings.position_embeddings.weight"].shape[0])
    layers = _layer_count(state, fmt.bert)
    ff = state.get(fmt.bert + "encoder.layer.0.intermediate.dense.weight")
    intermediate = int(ff.shape[0]) if ff is not None else 4 * hidden
    eps, dropout, window = 1e-12, 0.1, positions
    if bert_config is not None:
        act = bert_config.get("hidden_act", "gelu")
        if act != "gelu":
            raise UserError(f"config.json: hidden_act {act!r} is not supported (the CLaMP encoders use 'gelu')")
        if bert_config.get("position_embedding_type", "absolute") != "absolute":
            raise UserError("config.json: only absolute position embeddings are supported")
        hidden = int(bert_config.get("hidden_size", hidden))
        layers = int(bert_config.get("num_hidden_layers", layers))
        num_heads = num_heads or int(bert_config.get("num_attention_heads", 0)) or None
        intermediate = int(bert_config.get("intermediate_size", intermediate))
        eps = float(bert_config.get("layer_norm_eps", eps))
        dropout = float(bert_config.get("hidden_dropout_prob", dropout))
        positions = int(bert_config.get("max_position_embeddings", positions))
        window = int(bert_config.get("max_length", positions))
    if in_features % fmt.vocab_size or in_features // fmt.vocab_size != 64:
        raise UserError(
            f"{fmt.patch_embedding}weight has {in_features} inputs; {fmt.title} patches are 64 x "
            f"{fmt.vocab_size} one-hot ({64 * fmt.vocab_size})"
        )
    if num_heads is None:
        if hidden % 64:
            raise UserError(
                f"hidden size {hidden} is not a multiple of 64: give the number of attention heads (--num-heads)"
            )
        num_heads = hidden // 64
    try:
        return MusicEncoderConfig(
            patch_mode=fmt.patch_mode,
            hidden_size=hidden,
            num_layers=max(layers, 1),
            num_heads=num_heads,
            intermediate_size=intermediate,
            max_positions=min(window, positions),
            dropout=dropout,
            layer_norm_eps=eps,
        )
    except ValueError as exc:
        raise UserError(f"unsupported {fmt.title} architecture: {str(exc).splitlines()[0]}") from None


# ------------------------------------------------------------------------------------- mapping
def _music_state(
    fmt: CheckpointFormat, state: dict[str, torch.Tensor], music: MusicEncoderConfig, used: set[str], missing: set[str]
) -> dict[str, torch.Tensor]:
    """Our `music_encoder.*` and `music_proj.*` tensors from the checkpoint's."""

    def get(key: str) -> torch.Tensor:
        if key not in state:
            missing.add(key)
            return torch.empty(0)
        used.add(key)
        return state[key]

    b, out = fmt.bert, {}
    emb_w, emb_b = get(fmt.patch_embedding + "weight"), get(fmt.patch_embedding + "bias")
    token_type = get(b + "embeddings.token_type_embeddings.weight")
    out["music_encoder.embed.weight"] = emb_w.t()  # Linear (hidden, 64*vocab) -> table (64*vocab, hidden)
    if emb_b.numel() and token_type.numel():
        # BERT adds token_type_embeddings[0] to every input embedding: the same as a larger bias
        out["music_encoder.embed.bias"] = emb_b + token_type[0]
    # positions past the patch window are never used; our table is the window
    out["music_encoder.positions.weight"] = get(b + "embeddings.position_embeddings.weight")[: music.max_positions]
    out["music_encoder.ln.weight"] = get(b + "embeddings.LayerNorm.weight")
    out["music_encoder.ln.bias"] = get(b + "embeddings.LayerNorm.bias")
    for i in range(music.num_layers):
        src, dst = f"{b}encoder.layer.{i}.", f"music_encoder.layers.{i}."
        for part in ("weight", "bias"):
            qkv = [get(f"{src}attention.self.{name}.{part}") for name in ("query", "key", "value")]
            out[dst + "qkv." + part] = torch.cat(qkv) if all(t.numel() for t in qkv) else torch.empty(0)
            out[dst + "out." + part] = get(f"{src}attention.output.dense.{part}")
            out[dst + "ln1." + part] = get(f"{src}attention.output.LayerNorm.{part}")
            out[dst + "ff.0." + part] = get(f"{src}intermediate.dense.{part}")
            out[dst + "ff.2." + part] = get(f"{src}output.dense.{part}")
            out[dst + "ln2." + part] = get(f"{src}output.LayerNorm.{part}")
    for part in ("weight", "bias"):
        out["music_proj." + part] = get(fmt.music_proj + part)
        out["text_proj." + part] = get("text_proj." + part)
    # BERT's word embeddings are unused (the encoders feed `inputs_embeds`): dropped
    used.update(k for k in state if k.startswith(b + "embeddings.word_embeddings."))
    return out


def _text_state(
    fmt: CheckpointFormat, state: dict[str, torch.Tensor], model: ClampModel, used: set[str], missing: set[str]
) -> dict[str, torch.Tensor]:
    """Our `text_encoder.*` tensors: the checkpoint's text tower, key for key."""
    ours = set(model.text_encoder.state_dict())
    out = {}
    for key, tensor in state.items():
        if key.startswith(fmt.text):
            rest = key[len(fmt.text) :]
            if rest in ours:
                out["text_encoder." + rest] = tensor
                used.add(key)
    missing.update(fmt.text + k for k in ours if "text_encoder." + k not in out)
    return out


# ------------------------------------------------------------------------------------- text tower
def _text_tower(fmt: CheckpointFormat, path: Path, text_model: str | None):
    """(an untrained text model of the published architecture, its tokenizer, where they came from)."""
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    given = text_model is not None
    beside = (path if path.is_dir() else path.parent) / "text_model"  # a copy kept with the weights
    candidates = [text_model] if given else [str(beside)] * beside.is_dir() + [fmt.text_model]
    for name in candidates:
        resolved = resolve_text_model(str(name))
        try:
            config = AutoConfig.from_pretrained(resolved, local_files_only=True)
            tokenizer = AutoTokenizer.from_pretrained(resolved, local_files_only=True)
        except (OSError, ValueError) as exc:
            if given:
                detail = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
                raise UserError(
                    f"--text-model {text_model}: no text model config and tokenizer there ({detail})"
                ) from None
            continue
        return AutoModel.from_config(config), tokenizer, str(name)
    raise UserError(
        f"the {fmt.title} text tower needs its config and tokenizer: pass --text-model DIR, a local copy "
        f"of {fmt.text_model} (docs/checkpoints.md)"
    )


# ------------------------------------------------------------------------------------- import
def _sha256(file: Path) -> str:
    h = hashlib.sha256()
    with open(file, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _weights_file(fmt: CheckpointFormat, path: Path) -> tuple[Path, dict | None]:
    """(the weights file, CLaMP 1's BertConfig dict or None)."""
    if fmt.name != "clamp1":
        if path.is_dir():
            raise UserError(f"{fmt.title} checkpoints are .pth files, not folders: {path}")
        return path, None
    if not path.is_dir():
        raise UserError(f"{fmt.title} checkpoints are folders (config.json + pytorch_model.bin): {path}")
    config_file = path / "config.json"
    if not config_file.is_file():
        raise UserError(f"no config.json in {path}: not a {fmt.title} checkpoint folder")
    try:
        bert_config = json.loads(config_file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{config_file} is not valid JSON: {exc}") from None
    if not isinstance(bert_config, dict) or "hidden_size" not in bert_config:
        raise UserError(f"{config_file} is not a BertConfig (no hidden_size)")
    for name in ("pytorch_model.bin", "model.safetensors"):
        if (path / name).is_file():
            return path / name, bert_config
    raise UserError(f"no pytorch_model.bin or model.safetensors in {path}")


def load_checkpoint(
    fmt_name: str, path: str | Path, text_model: str | None = None, num_heads: int | None = None
) -> ImportResult:
    """Our model holding a published checkpoint's weights (see the module docstring)."""
    if fmt_name not in FORMATS:
        raise UserError(f"unknown checkpoint format {fmt_name!r}; choose one of {', '.join(FORMATS)}")
    fmt, path = FORMATS[fmt_name], Path(path).expanduser()
    if not path.exists():
        raise UserError(f"checkpoint not found: {path}")
    file, bert_config = _weights_file(fmt, path)
    state = {k: v for k, v in read_state_dict(file).items() if isinstance(v, torch.Tensor)}

    core = {
        fmt.patch_embedding + "weight",
        fmt.bert + "embeddings.position_embeddings.weight",
        fmt.music_proj + "weight",
        "text_proj.weight",
    }
    if core - set(state):  # not this format at all: say what is missing and what is there instead
        known = (fmt.patch_embedding, fmt.bert, fmt.music_proj, fmt.text, "text_proj.", *fmt.skipped)
        raise _key_error(file, fmt, core - set(state), {k for k in state if not k.startswith(known)})
    music = _music_config(fmt, state, bert_config, num_heads)
    text_encoder, tokenizer, text_source = _text_tower(fmt, path, text_model)
    config = ClampConfig(
        music=music,
        text_model=text_source,
        projection_dim=int(state[fmt.music_proj + "weight"].shape[0]),
        origin=fmt.name,
    )
    model = ClampModel(config, text_encoder, tokenizer)

    used: set[str] = set()
    missing: set[str] = set()
    mapped = _music_state(fmt, state, music, used, missing)
    mapped.update(_text_state(fmt, state, model, used, missing))
    skipped = {p: sum(k.startswith(p) for k in state) for p in fmt.skipped}
    unexpected = {k for k in state if k not in used and not _IGNORED.search(k) and not k.startswith(fmt.skipped)}
    if missing or unexpected:
        raise _key_error(file, fmt, missing, unexpected)

    target = model.state_dict()
    for key, tensor in mapped.items():
        if tuple(tensor.shape) != tuple(target[key].shape):
            hint = (
                f" (does --text-model {text_source} match the checkpoint's text tower?)"
                if key.startswith("text_")
                else ""
            )
            raise UserError(
                f"{file}: {key} has shape {tuple(tensor.shape)} in the checkpoint, the model expects "
                f"{tuple(target[key].shape)}{hint}"
            )
    mapped["logit_scale"] = target["logit_scale"]  # not in the published checkpoints: ours starts at init_temperature
    model.load_state_dict({k: v.to(target[k].dtype) for k, v in mapped.items()}, strict=True)
    lineage = {
        "origin": fmt.name,
        "origin_format": f"{fmt.title} ({'config.json + ' if bert_config is not None else ''}{file.name})",
        "origin_path": str(file.resolve()),
        "origin_sha256": _sha256(file),
        "origin_text_model": text_source,
        "objective": "import",
    }
    if any(skipped.values()):
        lineage["origin_skipped"] = ", ".join(f"{p}* ({n} tensors)" for p, n in skipped.items() if n)
    return ImportResult(model, lineage, skipped)


def import_checkpoint(
    fmt_name: str,
    path: str | Path,
    out: str | Path,
    text_model: str | None = None,
    num_heads: int | None = None,
    overwrite: bool = False,
) -> ImportResult:
    """Load a published checkpoint and save it as our model folder at `out`, with its provenance
    in `lineage.json` (evaluation tags its MLflow runs with it)."""
    out = Path(out).expanduser()
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not overwrite:
        raise UserError(f"{out} already exists and is not empty (use --overwrite to replace it)")
    result = load_checkpoint(fmt_name, path, text_model, num_heads)
    from clamp.tracking import git_commit

    result.lineage["git_commit"] = git_commit()
    # written beside `out` and moved into place: an interrupted import leaves no half model folder
    tmp = out.with_name(f".{out.name}.importing")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        result.model.save_pretrained(tmp)
        (tmp / LINEAGE_NAME).write_text(json.dumps(result.lineage, indent=2) + "\n")
        if out.is_dir():
            shutil.rmtree(out)
        elif out.exists():
            out.unlink()
        tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    result.model.source_dir = str(out.resolve())
    return result
