"""Importing published CLaMP 1/2/3 checkpoints (clamp.model.imports, docs/checkpoints.md).

Equivalence: the reference code (/work/shared/reference, MIT; `CLAMP_REFERENCE_DIR`) builds each
model with small random weights and a tiny local text model, saves it in the published format
and computes its features in a subprocess (tests/model/reference_oracle.py); the imported model
must give the same patch ids (our patcher against the reference patchilizers) and the same
pooled, projected and normalised music and text features on WikiMT, to 1e-5.

Then the imported model goes through `clamp eval`, `search`, `classify` and a fine-tuning step,
and wrong, truncated and foreign files get one-line errors that name the keys.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from clamp.abc.patching import get_patch_mode
from clamp.cli import app
from clamp.config import REPO_ROOT
from clamp.model.clamp_model import ClampModel
from clamp.model.imports import import_checkpoint
from clamp.model.music_encoder import MusicEncoder
from clamp.model.text import mean_pool
from tests.conftest import one_line_error as _error
from tests.conftest import write_tunes

REFERENCE_DIR = Path(os.environ.get("CLAMP_REFERENCE_DIR") or REPO_ROOT.parent / "shared" / "reference")
ORACLE = Path(__file__).with_name("reference_oracle.py")
ATOL = 1e-5
runner = CliRunner()

# The published shapes, scaled down in width and depth (the 512-patch window is kept).
SHAPES: dict[str, dict] = {
    # CLaMP 1 S/512: 98-symbol patches; its text projection is square, so the text tower is as
    # wide as the music encoder (DistilRoBERTa and BERT-base are both 768 wide)
    "clamp1": {
        "music": dict(hidden=64, layers=2, heads=4, intermediate=128, positions=512, max_length=512),
        "text": ("roberta", 64),
        "projection": 64,
    },
    # CLaMP 2: the M3 encoder (one head per 64 channels, 128-symbol patches), an XLM-R-shaped text
    # tower of another width, and a projection of a third width
    "clamp2": {
        "music": dict(hidden=128, layers=2, heads=2, intermediate=256, positions=512, max_length=512),
        "text": ("xlm-roberta", 96),
        "projection": 80,
    },
    # CLaMP 3: the same symbolic parts, and an audio tower that is not imported
    "clamp3": {
        "music": dict(hidden=128, layers=2, heads=2, intermediate=256, positions=512, max_length=512),
        "text": ("xlm-roberta", 96),
        "projection": 80,
        "audio": dict(hidden=64, layers=1, heads=2, positions=128),
    },
}
EMBEDDED = 12  # WikiMT tunes run through both models (all 1010 are patched)
CORPUS = [
    "a lively jig in D major",
    "a slow waltz in three four time",
    "a reel in G for the fiddle",
    "This song is a jazz standard written by a famous composer in the swing era",
    "The piece is a folk dance tune from Ireland, played at sessions",
    "A classical sonata movement with a lyrical melody and a bright accompaniment",
]


# ------------------------------------------------------------------------------------ fixtures
def make_text_model(folder: Path, kind: str, hidden: int, seed: int = 0) -> Path:
    """A tiny RoBERTa / XLM-R with a byte-level BPE tokenizer trained here (nothing downloaded),
    saved with save_pretrained: the stand-in for distilroberta-base / xlm-roberta-base."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import (
        PreTrainedTokenizerFast,
        RobertaConfig,
        RobertaModel,
        XLMRobertaConfig,
        XLMRobertaModel,
    )

    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]  # the RoBERTa / XLM-R ids: <s> 0, <pad> 1, </s> 2
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(
        CORPUS * 3,
        trainers.BpeTrainer(
            vocab_size=400, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
        ),
    )
    tok.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0))
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
        mask_token="<mask>",
        cls_token="<s>",
        sep_token="</s>",
        model_max_length=512,
    )
    config_cls, model_cls = (RobertaConfig, RobertaModel) if kind == "roberta" else (XLMRobertaConfig, XLMRobertaModel)
    config = config_cls(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=2 * hidden,
        max_position_embeddings=130,
        type_vocab_size=1,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
    )
    torch.manual_seed(seed)
    model_cls(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def reference_input(fmt: str, tune: str) -> str:
    """What the reference patchilizer is given: CLaMP 1's expects ABC already normalised (its
    preprocessing is not in utils.py; ours is clamp-v1's `prepare`); M3's takes the tune as written."""
    return get_patch_mode("clamp-v1").prepare(tune) if fmt == "clamp1" else tune


def run_oracle(fmt: str, work: Path, tunes: list[str], embed: list[int], texts: list[str]) -> dict:
    """The reference model of `fmt` saved in the published format, and its outputs."""
    from transformers import AutoTokenizer

    if not (REFERENCE_DIR / fmt / "utils.py").is_file():
        pytest.skip(f"reference code not found: {REFERENCE_DIR / fmt} (set CLAMP_REFERENCE_DIR)")
    shape = SHAPES[fmt]
    work.mkdir(parents=True, exist_ok=True)
    text_dir = make_text_model(work / "text-model", *shape["text"])
    enc = AutoTokenizer.from_pretrained(str(text_dir), local_files_only=True)(
        texts, padding=True, truncation=True, max_length=128
    )
    spec = {
        "format": fmt,
        "reference_dir": str(REFERENCE_DIR / fmt),
        "text_model": str(text_dir),
        "out": str(work),
        "music": shape["music"],
        "projection": shape["projection"],
        "audio": shape.get("audio"),
        "seed": 0,
        "noise": 0.05,
        "tunes": [reference_input(fmt, t) for t in tunes],
        "embed": embed,
        "text_ids": enc["input_ids"],
        "text_mask": enc["attention_mask"],
    }
    (work / "spec.json").write_text(json.dumps(spec))
    proc = subprocess.run(
        [sys.executable, str(ORACLE), str(work / "spec.json")], cwd=work, capture_output=True, text=True, timeout=900
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    published = work / "published" if fmt == "clamp1" else work / "published.pth"
    return {
        "published": published,
        "text_dir": text_dir,
        "oracle": dict(np.load(work / "oracle.npz")),
        "input_ids": torch.tensor(enc["input_ids"]),
        "attention_mask": torch.tensor(enc["attention_mask"]),
    }


def _synthetic_tunes(tmp: Path, n: int = 8) -> list[str]:
    write_tunes(tmp, n)
    return [p.read_text(encoding="utf-8") for p in sorted(tmp.glob("*.abc"))]


@pytest.fixture(scope="module")
def published_clamp1(tmp_path_factory) -> dict:
    """A CLaMP 1 checkpoint in the published format (synthetic tunes: needs no benchmarks)."""
    tmp = tmp_path_factory.mktemp("clamp1-published")
    tunes = _synthetic_tunes(tmp / "tunes")
    return run_oracle("clamp1", tmp / "oracle", tunes, [0, 1], CORPUS[:2])


# ------------------------------------------------------------------------------------ equivalence
def _our_features(model: ClampModel, patches: list[torch.Tensor], input_ids, attention_mask):
    """Our pooled and projected features, one tune at a time (as the oracle ran them)."""
    pooled, projected = [], []
    with torch.no_grad():
        for x in patches:
            x = x[: model.config.music.max_positions].unsqueeze(0)
            mask = torch.ones(x.shape[:2], dtype=torch.bool)
            p = MusicEncoder.pool(model.music_encoder(x, mask), mask)
            pooled.append(p[0])
            projected.append(model.music_proj(p)[0])
        hidden = model.text_encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        text_pooled = mean_pool(hidden, attention_mask)
        return torch.stack(pooled), torch.stack(projected), text_pooled, model.text_proj(text_pooled)


def _close(ours: torch.Tensor | np.ndarray, reference: np.ndarray, what: str) -> None:
    ours = ours.detach().numpy() if isinstance(ours, torch.Tensor) else ours
    diff = float(np.abs(ours - reference).max())
    assert diff <= ATOL, f"{what}: max |ours - reference| = {diff:.2e} > {ATOL}"


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["clamp1", "clamp2", "clamp3"])
def test_imported_model_equals_the_reference(fmt, wikimt, tmp_path):
    from clamp.inference.embed import embed_music, embed_text, music_inputs

    tunes = [item["music"] for item in wikimt]
    embed = np.linspace(0, len(tunes) - 1, EMBEDDED).astype(int).tolist()
    texts = [wikimt[i]["text"] for i in embed]
    run = run_oracle(fmt, tmp_path / "oracle", tunes, embed, texts)
    oracle = run["oracle"]
    result = import_checkpoint(fmt, run["published"], tmp_path / "model", text_model=str(run["text_dir"]))
    model = ClampModel.from_pretrained(tmp_path / "model").eval()  # through the saved folder
    mode = {"clamp1": "clamp-v1"}.get(fmt, "m3")
    assert model.config.music.patch_mode == mode and model.config.origin == fmt
    assert model.config.music.max_positions == 512 and model.config.projection_dim == SHAPES[fmt]["projection"]

    # patch ids: our patcher against the reference patchilizer, on every WikiMT tune
    reference = np.split(oracle["patches"].astype(np.int64), np.cumsum(oracle["patch_counts"])[:-1])
    ours = [music_inputs(model, t, max_patches=10**6) for t in tunes]
    if fmt == "clamp3":
        # CLaMP 3's patchilizer deletes "L:1/8\n" (the default unit length) before patching; our
        # m3 mode keeps it (docs/checkpoints.md): equal once the line is gone
        ours = [music_inputs(model, t.replace("L:1/8\n", ""), max_patches=10**6) for t in tunes]
        assert sum("L:1/8\n" in t for t in tunes) > 0
    mismatched = [i for i, (a, b) in enumerate(zip(ours, reference, strict=True)) if not np.array_equal(a.numpy(), b)]
    assert not mismatched, f"{len(mismatched)} tunes patch differently, first: {mismatched[:5]}"

    # pooling and projections of both towers, to 1e-5
    m_pooled, m_proj, t_pooled, t_proj = _our_features(
        model, [ours[i] for i in embed], run["input_ids"], run["attention_mask"]
    )
    _close(m_pooled, oracle["music_pooled"], "music features, mean-pooled")
    _close(m_proj, oracle["music_projected"], "music features, projected")
    _close(t_pooled, oracle["text_pooled"], "text features, mean-pooled")
    _close(t_proj, oracle["text_projected"], "text features, projected")

    # the embeddings every command uses (normalised); a tune within the window is one window
    short = [j for j, i in enumerate(embed) if len(ours[i]) <= 512]
    assert len(short) >= EMBEDDED - 2
    if fmt != "clamp3":  # clamp3: embed_music patches with m3 as written (see above)
        got = embed_music(model, [tunes[embed[j]] for j in short], batch_size=4)
        _close(got, _unit(oracle["music_projected"][short]), "embed_music")
    padded_batch = torch.nn.utils.rnn.pad_sequence([ours[embed[j]] for j in short], batch_first=True)
    with torch.no_grad():
        _close(model.encode_music(padded_batch), _unit(oracle["music_projected"][short]), "encode_music, padded batch")
    _close(
        model.encode_text(run["input_ids"], run["attention_mask"]).detach(),
        _unit(oracle["text_projected"]),
        "encode_text",
    )
    # embed_text tokenizes as the oracle's input was (truncated at text_max_length = 128)
    _close(embed_text(model, texts, batch_size=5), _unit(oracle["text_projected"]), "embed_text")

    lineage = json.loads((tmp_path / "model" / "lineage.json").read_text())
    assert lineage["origin"] == fmt and len(lineage["origin_sha256"]) == 64
    weights = run["published"] / "pytorch_model.bin" if fmt == "clamp1" else run["published"]
    assert lineage["origin_path"] == str(weights.resolve())
    if fmt == "clamp3":
        assert result.skipped["audio_model."] > 0 and "audio_model" in lineage["origin_skipped"]


# ------------------------------------------------------------------------------------ errors


def test_wrong_truncated_and_foreign_files_get_one_line_errors(published_clamp1, tmp_path):
    folder, text = published_clamp1["published"], ["--text-model", str(published_clamp1["text_dir"])]
    weights = folder / "pytorch_model.bin"

    # a CLaMP 1 state dict given as CLaMP 2: the keys say what is wrong
    line = _error(runner.invoke(app, ["import", "clamp2", str(weights), "--out", str(tmp_path / "a"), *text]))
    assert "is not a CLaMP 2 checkpoint" in line
    assert "missing keys: music_model.base.embeddings.position_embeddings.weight" in line
    assert "unexpected keys: music_enc." in line and "more)" in line

    # truncated
    cut = tmp_path / "cut"
    cut.mkdir()
    (cut / "config.json").write_text((folder / "config.json").read_text())
    (cut / "pytorch_model.bin").write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    assert "cannot read" in _error(
        runner.invoke(app, ["import", "clamp1", str(cut), "--out", str(tmp_path / "b"), *text])
    )

    # a layer missing, a stray tensor
    state = torch.load(weights, weights_only=True)
    state = {k: v for k, v in state.items() if not k.startswith("music_enc.enc.encoder.layer.1.attention.self.")}
    state["extra.weight"] = torch.zeros(2)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text((folder / "config.json").read_text())
    torch.save(state, broken / "pytorch_model.bin")
    line = _error(runner.invoke(app, ["import", "clamp1", str(broken), "--out", str(tmp_path / "c"), *text]))
    assert "missing keys: music_enc.enc.encoder.layer.1.attention.self.key.bias" in line
    assert "unexpected keys: extra.weight" in line

    # pickled code is refused (weights_only), not run
    evil = tmp_path / "evil.pth"
    torch.save({"model": {"w": torch.zeros(1)}, "note": Path("x")}, evil)
    assert "cannot read" in _error(
        runner.invoke(app, ["import", "clamp2", str(evil), "--out", str(tmp_path / "d"), *text])
    )

    # a foreign file, a folder that is not CLaMP 1's, a text model of the wrong shape, no text model
    foreign = tmp_path / "foreign.pth"
    torch.save({"encoder.weight": torch.zeros(3, 3)}, foreign)
    line = _error(runner.invoke(app, ["import", "clamp3", str(foreign), "--out", str(tmp_path / "e"), *text]))
    assert "is not a CLaMP 3 checkpoint" in line and "unexpected keys: encoder.weight" in line
    assert "no config.json" in _error(
        runner.invoke(app, ["import", "clamp1", str(tmp_path), "--out", str(tmp_path / "f")])
    )
    wide = make_text_model(tmp_path / "wide-text", "roberta", 32)
    line = _error(
        runner.invoke(app, ["import", "clamp1", str(folder), "--out", str(tmp_path / "g"), "--text-model", str(wide)])
    )
    assert "has shape" in line and "--text-model" in line
    line = _error(
        runner.invoke(
            app,
            ["import", "clamp1", str(folder), "--out", str(tmp_path / "h"), "--text-model", str(tmp_path / "nowhere")],
        )
    )
    assert "--text-model" in line
    assert not any((tmp_path / x).exists() for x in "abcdefgh")  # nothing half-written


# ------------------------------------------------------------------------------------ commands
@pytest.fixture(scope="module")
def imported_clamp1(published_clamp1, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("imported") / "clamp1"
    result = runner.invoke(
        app,
        [
            "import",
            "clamp1",
            str(published_clamp1["published"]),
            "--out",
            str(out),
            "--text-model",
            str(published_clamp1["text_dir"]),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    info = json.loads(result.output)
    assert info["origin"] == "clamp1" and info["patch_mode"] == "clamp-v1" and info["max_positions"] == 512
    return out


def test_imported_model_classifies_and_searches(imported_clamp1, tiny_dataset, tmp_path):
    tune = tmp_path / "t.abc"
    tune.write_text("X:1\nT:Test Jig\nR:jig\nM:6/8\nL:1/8\nK:D\n|:dAF DFA|dAF GFE|dAF DFA|GFE D3:|\n")
    result = runner.invoke(
        app, ["classify", str(tune), "--labels", "jig,reel,waltz", "--model", str(imported_clamp1), "--json"]
    )
    assert result.exit_code == 0, result.output
    labels = json.loads(result.output)[0]["labels"]
    assert sorted(x["label"] for x in labels) == ["jig", "reel", "waltz"]
    result = runner.invoke(
        app,
        [
            "search",
            "a lively jig",
            "--index",
            str(tiny_dataset),
            "--model",
            str(imported_clamp1),
            "--top",
            "3",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    hits = json.loads(result.output)
    assert [h["rank"] for h in hits] == [1, 2, 3] and all(-1 <= h["score"] <= 1 for h in hits)


@pytest.mark.slow
def test_imported_model_is_evaluated_with_its_origin_tagged(imported_clamp1, benchmarks_dir, tmp_path, monkeypatch):
    from mlflow import MlflowClient

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)  # the default store: ./mlruns-store
    result = runner.invoke(
        app,
        [
            "eval",
            "--model",
            str(imported_clamp1),
            "--benchmarks",
            "wikimt",
            "--max-items",
            "12",
            "--no-untrained",
            "--resamples",
            "0",
            "--out",
            str(tmp_path / "eval"),
        ],
    )
    assert result.exit_code == 0, result.output
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlruns-store' / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("clamp-eval").experiment_id])
    assert len(runs) == 1
    tags = runs[0].data.tags
    assert tags["origin"] == "clamp1" and tags["benchmark"] == "wikimt" and len(tags["origin_sha256"]) == 64
    assert runs[0].data.params["patch_mode"] == "clamp-v1"
    assert "wikimt/zero_shot/accuracy" in runs[0].data.metrics
    # what it read is the run's evaluation dataset input: the benchmark, by a digest of its content
    [given] = runs[0].inputs.dataset_inputs
    assert given.dataset.name == "wikimt" and re.fullmatch(r"[0-9a-f]{32}", given.dataset.digest)
    assert json.loads(given.dataset.source)["uri"].startswith(str(Path(benchmarks_dir).resolve()))
    assert [(t.key, t.value) for t in given.tags] == [("mlflow.data.context", "evaluation")]


def test_imported_model_fine_tunes_one_step(imported_clamp1, tiny_dataset, tmp_path):
    before = ClampModel.from_pretrained(imported_clamp1)
    config = tmp_path / "train.yaml"
    config.write_text("warmup_steps: 0\n")  # the one step at the full learning rate
    result = runner.invoke(
        app,
        [
            "train",
            "--config",
            str(config),
            "--init-from",
            str(imported_clamp1),
            "--dataset",
            str(tiny_dataset),
            "--output",
            str(tmp_path / "run"),
            "--steps",
            "1",
            "--batch-size",
            "4",
            "--checkpoint-every",
            "0",
            "--no-mlflow",
            "--progress",
            "off",
            "--text-tower",
            "train",
        ],
    )
    assert result.exit_code == 0, result.output
    model_dir = tmp_path / "run" / "model"
    after = ClampModel.from_pretrained(model_dir)
    # the imported architecture (not the preset's) was trained, and its origin carried along; it now
    # reads tunes in the notation it was fine-tuned on (the dataset's), the imported one as written
    assert before.config.music.notation == "as-written" and after.config.music.notation == "canonical"
    assert after.config.music.model_copy(update={"notation": "as-written"}) == before.config.music
    assert after.config.origin == "clamp1"
    moved = [k for k, v in after.state_dict().items() if not torch.equal(v, before.state_dict()[k])]
    assert any(k.startswith("music_encoder.") for k in moved) and any(k.startswith("text_encoder.") for k in moved)
    lineage = json.loads((model_dir / "lineage.json").read_text())
    assert lineage["init_from"] == str(imported_clamp1) and lineage["origin"] == "clamp1"
    # a dataset of another patch mode is refused in one line
    line = _error(
        runner.invoke(
            app,
            [
                "train",
                "--init-from",
                str(imported_clamp1),
                "--dataset",
                str(tiny_dataset),
                "--output",
                str(tmp_path / "run2"),
                "--input-kind",
                "char",
                "--no-mlflow",
            ],
        )
    )
    assert "input_kind" in line


# ------------------------------------------------------------------------------------ workflows
@pytest.fixture()
def registry(tmp_path, monkeypatch):
    import mlflow

    monkeypatch.chdir(tmp_path)  # any default store or artifact folder lands in the temp dir
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    mlflow.set_tracking_uri(uri)
    for name in ("clamp-imports", "clamp-retrain"):
        mlflow.create_experiment(name, artifact_location=(tmp_path / "artifacts" / name).as_uri())
    return uri


@pytest.mark.slow
def test_retrain_takes_an_imported_champion(published_clamp1, tiny_dataset, benchmarks_dir, registry, tmp_path):
    from mlflow import MlflowClient

    from clamp.data.shards import load_manifest
    from clamp.workflows.retrain import RetrainConfig, champion, retrain

    result = runner.invoke(
        app,
        [
            "import",
            "clamp1",
            str(published_clamp1["published"]),
            "--out",
            str(tmp_path / "imported"),
            "--text-model",
            str(published_clamp1["text_dir"]),
            "--register-as",
            "clamp-test",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["registered"]["champion"] == "True"
    client = MlflowClient(registry)
    current = champion(client, "clamp-test")
    assert str(current.version) == "1" and current.tags["origin"] == "clamp1"

    decision = retrain(
        RetrainConfig(
            dataset_dir=str(tiny_dataset),
            model_name="clamp-test",
            out_dir=str(tmp_path / "retrain"),
            train={"preset": "tiny", "steps": 2, "batch_size": 8, "checkpoint_every": 0},
            benchmarks=["wikimt"],
            metric="wikimt/items",
            max_items=12,
        )
    )
    # the imported champion was trained further (its own architecture) and evaluated beside the challenger
    assert decision.action == "kept-champion" and decision.champion_version == "1"  # a tying metric keeps it
    assert decision.champion_metrics["wikimt/items"] == decision.challenger_metrics["wikimt/items"] == 12
    fingerprint = load_manifest(tiny_dataset)["fingerprint"]
    challenger = ClampModel.from_pretrained(tmp_path / "retrain" / fingerprint[:12] / "challenger" / "model")
    assert (
        challenger.config.origin == "clamp1"
        and challenger.config.music.hidden_size == SHAPES["clamp1"]["music"]["hidden"]
    )


@pytest.mark.slow
def test_ablations_compare_with_an_imported_champion(
    imported_clamp1, tiny_dataset, benchmarks_dir, tmp_path, monkeypatch
):
    from clamp.workflows.ablations import AblationCell, AblationConfig, run_ablations

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    cfg = AblationConfig(
        dataset_dir=str(tiny_dataset),
        out_dir=str(tmp_path / "abl"),
        benchmarks=["wikimt"],
        train={"preset": "tiny", "steps": 2, "batch_size": 8, "projection_dim": 16, "checkpoint_every": 0},
        tracking_dir=str(tmp_path / "mlflow"),
        max_items=12,
        seeds=[0],
        champion_dir=str(imported_clamp1),
    )
    result = run_ablations(cfg, [AblationCell(True, "patch", False)])
    assert [r["cell"] for r in result["rows"]] == ["patch-td-scratch", "champion"]
    assert "wikimt/zero_shot/accuracy" in result["rows"][1]
    assert "| champion |" in (tmp_path / "abl" / "ablations.md").read_text()
