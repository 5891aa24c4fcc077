"""Model pieces: patch-embedding equivalence, MMM masking rules, joint model save/load."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from clamp.model.config import ClampConfig, music_preset
from clamp.model.mmm import MMMModel, decode_groups, mask_patches
from clamp.model.music_encoder import MusicEncoder, PatchEmbedding, patch_mask


@pytest.mark.parametrize("vocab", [98, 128])
def test_patch_embedding_equals_the_one_hot_linear_of_the_reference(vocab):
    torch.manual_seed(0)
    linear = nn.Linear(64 * vocab, 48)
    emb = PatchEmbedding.from_linear(linear, 64, vocab)
    patches = torch.randint(0, vocab, (3, 7, 64))
    one_hot = torch.nn.functional.one_hot(patches, vocab).float().reshape(3, 7, 64 * vocab)
    torch.testing.assert_close(emb(patches), linear(one_hot), atol=1e-5, rtol=1e-5)


def test_mean_pooling_ignores_padding():
    hidden = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]]])
    mask = torch.tensor([[True, True, False]])
    assert MusicEncoder.pool(hidden, mask).tolist() == [[2.0, 3.0]]


def test_padding_does_not_change_the_encoding():
    torch.manual_seed(0)
    enc = MusicEncoder(music_preset("tiny", dropout=0.0)).eval()
    x = torch.randint(1, 96, (1, 5, 64))
    padded = torch.cat([x, torch.zeros(1, 3, 64, dtype=torch.long)], 1)
    a = MusicEncoder.pool(enc(x, patch_mask(x)), patch_mask(x))
    b = MusicEncoder.pool(enc(padded, patch_mask(padded)), patch_mask(padded))
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_mmm_selects_ceil_45_percent_of_real_patches_and_masks_them():
    torch.manual_seed(0)
    patches = torch.randint(1, 96, (64, 10, 64))
    patches[:, 7:] = 0  # 7 real patches per sample -> ceil(3.15) = 4 selected
    gen = torch.Generator().manual_seed(1)
    batch = mask_patches(patches, mask_id=96, pad_id=0, generator=gen)
    assert batch.selected.sum(1).tolist() == [4] * 64
    assert not batch.selected[:, 7:].any()
    modes = batch.mode.tolist()
    for i, mode in enumerate(modes):
        sel = batch.selected[i]
        if mode == 0:
            assert (batch.inputs[i][sel] == 96).all()
        elif mode == 1:  # same characters, another order
            assert torch.equal(batch.inputs[i][sel].sort(1).values, patches[i][sel].sort(1).values)
        else:
            assert torch.equal(batch.inputs[i][sel], patches[i][sel])
        assert torch.equal(batch.inputs[i][~sel], patches[i][~sel])
    # 80/10/10 per sample: with 64 samples, masking is the large majority
    assert modes.count(0) > 40


def test_mmm_loss_falls_on_a_repeated_batch():
    torch.manual_seed(0)
    model = MMMModel(music_preset("tiny", dropout=0.0))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    patches = torch.randint(1, 20, (4, 6, 64))
    losses = []
    for step in range(30):
        out = model(patches, generator=torch.Generator().manual_seed(step))
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        losses.append(float(out.loss))
    assert losses[0] == pytest.approx(math.log(98), rel=0.1)  # chance level at the start
    assert losses[-1] < 0.7 * losses[0]


def test_mmm_length_grouped_decoding_equals_full_length_decoding():
    """Decoding each selected patch only up to its last character (in length groups) gives the
    same loss, accuracy and gradients as decoding all 64 positions."""
    torch.manual_seed(0)
    model = MMMModel(music_preset("tiny", dropout=0.0))
    patches = torch.randint(1, 96, (3, 12, 64))
    ends = torch.tensor([1, 3, 8, 9, 17, 30, 64, 12, 5, 40, 2, 64] * 3).reshape(3, 12, 1)
    patches = torch.where(torch.arange(64) < ends, patches, 0)
    patches[2, 9:] = 0  # padding patches

    out = model(patches, generator=torch.Generator().manual_seed(3))
    grouped_grads = torch.autograd.grad(out.loss, list(model.parameters()))

    batch = mask_patches(patches, model.cfg.mask_id, 0, torch.Generator().manual_seed(3))
    hidden = model.encoder(batch.inputs, patch_mask(patches))
    targets = patches[batch.selected]
    logits = model.decoder(hidden[batch.selected], targets)  # all 64 positions
    ref_loss = torch.nn.functional.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=0
    )
    real = targets != 0
    ref_acc = (logits.argmax(-1)[real] == targets[real]).float().mean()
    ref_grads = torch.autograd.grad(ref_loss, list(model.parameters()))

    torch.testing.assert_close(out.loss, ref_loss, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(out.accuracy, ref_acc)
    for g, r in zip(grouped_grads, ref_grads, strict=True):
        torch.testing.assert_close(g, r, atol=1e-6, rtol=1e-5)
    assert out.n_selected == int(batch.selected.sum())
    # positions decoded: each selected patch's end rounded up to a multiple of 8, far below 64 each
    expected = sum(-(-int(e) // 8) * 8 for e in real.int().sum(1))
    assert out.decoded_positions == expected < 64 * out.n_selected
    # off the CPU every selected patch is decoded at full length, in one call
    assert decode_groups(targets.to("meta"), 0) == [(None, 64)]


def test_char_decoder_is_causal():
    """Logits at character t depend on the patch feature and characters < t only."""
    torch.manual_seed(0)
    decoder = MMMModel(music_preset("tiny", dropout=0.0)).decoder.eval()
    features = torch.randn(2, 32)
    targets = torch.randint(1, 96, (2, 64))
    changed = targets.clone()
    changed[:, 40:] = torch.randint(1, 96, (2, 24))
    a, b = decoder(features, targets), decoder(features, changed)
    # input position t holds character t-1, so changing characters >= 40 leaves logits 0..40 alone
    torch.testing.assert_close(a[:, :41], b[:, :41])
    assert not torch.allclose(a[:, 41:], b[:, 41:])


@pytest.fixture(scope="module")
def tiny_text():
    from transformers import AutoTokenizer, BertConfig, BertModel

    from clamp.model.text import resolve_text_model

    tok = AutoTokenizer.from_pretrained(resolve_text_model("all-MiniLM-L6-v2"), local_files_only=True)
    torch.manual_seed(0)
    model = BertModel(
        BertConfig(
            vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64
        )
    )
    return model, tok


def test_clamp_model_save_and_load_round_trip(tmp_path, tiny_text):
    from clamp.model.clamp_model import ClampModel

    text_model, tok = tiny_text
    model = ClampModel(ClampConfig(music=music_preset("tiny"), projection_dim=16), text_model, tok).eval()
    model.save_pretrained(tmp_path / "m")
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == [
        "config.json",
        "model.safetensors",
        "text_config.json",
        "tokenizer",
    ]
    loaded = ClampModel.from_pretrained(tmp_path / "m").eval()
    music = torch.randint(1, 96, (2, 5, 64))
    enc = tok(["a jig", "a slow air"], padding=True, return_tensors="pt")
    torch.testing.assert_close(loaded.encode_music(music), model.encode_music(music))
    torch.testing.assert_close(
        loaded.encode_text(enc["input_ids"], enc["attention_mask"]),
        model.encode_text(enc["input_ids"], enc["attention_mask"]),
    )
    with pytest.raises(FileNotFoundError, match="model folder not found"):
        ClampModel.from_pretrained(tmp_path / "missing")


def test_long_music_is_embedded_in_windows_averaged_by_length(tiny_text):
    """`embed_music` (the CLI's and evaluation's path) cuts a long tune into windows of
    max_positions, encodes each, and averages them weighted by window length."""
    from clamp.inference.embed import embed_music, music_inputs
    from clamp.model.clamp_model import ClampModel

    text_model, tok = tiny_text
    torch.manual_seed(0)
    model = ClampModel(
        ClampConfig(music=music_preset("tiny", max_positions=8), projection_dim=16), text_model, tok
    ).eval()
    abc = "X:1\nT:long\nM:4/4\nL:1/8\nK:D\n" + "".join(f"|{'dAFA' * (1 + i % 3)}" for i in range(19)) + "|\n"
    patches = music_inputs(model, abc)
    n = len(patches)
    assert n > 16  # three windows or more: 8, 8, and the rest
    starts = range(0, n, 8)
    with torch.no_grad():
        parts = [model.encode_music(patches[i : i + 8][None])[0] * len(patches[i : i + 8]) for i in starts]
    expected = torch.nn.functional.normalize(torch.stack(parts).sum(0) / n, dim=-1).numpy()
    got = embed_music(model, [abc], batch_size=2)[0]
    assert got == pytest.approx(expected, abs=1e-5)


def test_fixed_temperature_is_not_trained(tiny_text):
    from clamp.model.clamp_model import ClampModel

    text_model, tok = tiny_text
    model = ClampModel(
        ClampConfig(music=music_preset("tiny"), projection_dim=16, learnable_temperature=False), text_model, tok
    )
    assert not model.logit_scale.requires_grad
    assert float(model.scale()) == pytest.approx(1 / 0.07, rel=1e-4)


def test_contrastive_loss_hand_computed():
    from clamp.model.loss import contrastive_loss

    music = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    text = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    loss, logits = contrastive_loss(music, text, torch.tensor(2.0))
    # each row: logits [2, 0] -> CE = log(1 + e^-2)
    assert float(loss) == pytest.approx(math.log(1 + math.exp(-2)), rel=1e-6)
    assert logits.tolist() == [[2.0, 0.0], [0.0, 2.0]]


def test_shared_text_targets_and_loss_hand_computed():
    from clamp.model.loss import contrastive_loss, shared_text_targets

    # tunes 0 and 2 drew the same sentence: each is a right answer for the other's text
    targets = shared_text_targets(torch.tensor([7, 9, 7]))
    assert targets.tolist() == [[0.5, 0.0, 0.5], [0.0, 1.0, 0.0], [0.5, 0.0, 0.5]]

    # texts 0 and 2 are the same sentence (e1); music 2 looks like music 1 (e2). Scale 2:
    # music x text logits: m0 [2, 0, 2], m1 [0, 2, 0], m2 [0, 2, 0]
    music = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    text = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    e2, log = math.exp(2), math.log
    shared, _ = contrastive_loss(music, text, torch.tensor(2.0), torch.tensor([7, 9, 7]))
    music_to_text = [log(2 * e2 + 1) - 2, log(e2 + 2) - 2, log(e2 + 2)]  # m2's half-half targets on 0 and 2
    text_to_music = [
        log(e2 + 2) - 1,
        log(2 * e2 + 1) - 2,
        log(e2 + 2) - 1,
    ]  # t0 = t2: half on m0 (logit 2), half on m2 (0)
    assert float(shared) == pytest.approx((sum(music_to_text) + sum(text_to_music)) / 6, rel=1e-6)
    one_hot, _ = contrastive_loss(music, text, torch.tensor(2.0))  # the paper: t2 belongs to m2 only
    music_to_text = [log(2 * e2 + 1) - 2, log(e2 + 2) - 2, log(e2 + 2)]
    text_to_music = [log(e2 + 2) - 2, log(2 * e2 + 1) - 2, log(e2 + 2)]
    assert float(one_hot) == pytest.approx((sum(music_to_text) + sum(text_to_music)) / 6, rel=1e-6)
    # distinct ids: exactly the paper's loss
    distinct, _ = contrastive_loss(music, text, torch.tensor(2.0), torch.tensor([1, 2, 3]))
    assert float(distinct) == pytest.approx(float(one_hot), rel=1e-6)


def test_collators_mark_identical_texts_with_equal_ids():
    import numpy as np

    from clamp.train.data import text_id
    from clamp.train.text_bank import LockedTextCollator, TextFeatureBank

    texts = ["In D major.", "Title: A", "Title: B"]
    bank = TextFeatureBank(texts, torch.eye(3))
    patches = torch.from_numpy(np.zeros((2, 64), dtype=np.uint8)).long()
    items = [{"texts": ["In D major."], "patches": patches, "index": i, "draw": 0} for i in range(2)]
    items.append({"texts": ["Title: A"], "patches": patches, "index": 2, "draw": 0})
    batch = LockedTextCollator(bank, 8, shared_text_positives=True)(items)
    ids = batch["text_ids"].tolist()
    assert ids[0] == ids[1] == text_id("In D major.") and ids[2] == text_id("Title: A") != ids[0]
    assert batch["text_features"].tolist() == [[1.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]
    assert "text_ids" not in LockedTextCollator(bank, 8)(items)  # the paper's targets: no ids
    assert text_id("In D major.") == text_id("In D major.") >= 0  # stable across processes (not hash())


def test_text_views_draw_several_texts_per_tune_and_average_their_losses(tiny_text):
    import numpy as np

    from clamp.model.clamp_model import ClampModel
    from clamp.model.loss import contrastive_loss
    from clamp.train.text_bank import LockedTextCollator, TextFeatureBank

    texts = ["In D major.", "In 6/8 time.", "Title: A", "Title: B"]
    bank = TextFeatureBank(texts, torch.eye(4))
    patches = torch.from_numpy(np.zeros((2, 64), dtype=np.uint8)).long()
    items = [{"texts": texts[:3] if i == 0 else texts[3:], "patches": patches, "index": i, "draw": 5} for i in range(2)]
    one = LockedTextCollator(bank, 8)(items)
    three = LockedTextCollator(bank, 8, text_views=3, shared_text_positives=True)(items)
    assert three["text_features"].shape == (2, 3, 4) and three["text_ids"].shape == (2, 3)
    # view 0 is exactly what a one-view run draws (resume and comparisons stay exact)
    assert torch.equal(three["text_features"][:, 0], one["text_features"])
    # every view of item 0 is one of its own candidates; item 1 has only "Title: B"
    assert all(int(row.argmax()) in (0, 1, 2) for row in three["text_features"][0])
    assert all(int(row.argmax()) == 3 for row in three["text_features"][1])
    assert LockedTextCollator(bank, 8, text_dropout=False, text_views=3)(items)["text_features"].shape == (2, 4)

    text_model, tok = tiny_text
    torch.manual_seed(0)
    model = ClampModel(ClampConfig(music=music_preset("tiny"), projection_dim=16), text_model, tok).eval()
    feats = torch.randn(2, 3, model.text_proj.in_features)
    music = torch.randint(1, 90, (2, 4, 64))
    out = model(music, text_features=feats)
    m = model.encode_music(music)
    per_view = [contrastive_loss(m, model.project_text(feats[:, v]), model.scale())[0] for v in range(3)]
    assert float(out.loss) == pytest.approx(float(torch.stack(per_view).mean()), rel=1e-5)


def test_text_dropout_rules():
    import random

    from clamp.train.data import text_dropout

    texts = ["Title: A\nRhythm: jig", "", "Origin: Ireland"]
    assert text_dropout(texts, random.Random(0), " | ", enabled=False) == "Title: A | Rhythm: jig | Origin: Ireland"
    seen = set()
    for seed in range(200):
        out = text_dropout(texts, random.Random(seed), " | ")
        parts = out.split(" | ")
        assert parts and set(parts) <= {"Title: A", "Rhythm: jig", "Origin: Ireland"} and len(parts) == len(set(parts))
        seen.add(out)
    assert len(seen) > 8  # subsets in several orders
