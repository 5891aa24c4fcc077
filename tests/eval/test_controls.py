"""The quality report's controls: the header-only baseline, header dropout, user-style prompts
held out from the training captions, the quality targets' verdicts, and decisions that never read
the test split."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from clamp.abc.patching import drop_header_patches, patchify


def tune(meter: str, key: str = "D", body: str = "ABc dcB|ABc d2e|", length: str = "1/8", voices: int = 1) -> str:
    v = "".join(f'V:{i + 1} name="P{i}"\n' for i in range(voices - 1)) if voices > 1 else ""
    return f"X:1\nT:t\nM:{meter}\nL:{length}\n{v}K:{key}\n{body}\n"


# ------------------------------------------------------------------------ header-only baseline
def test_header_features_read_k_m_l_and_voices():
    from clamp.eval.controls import header_features

    assert header_features(tune("6/8", "Ador", voices=3)) == {"M": "6/8", "L": "1/8", "K": "Ador", "voices": "2"}
    assert header_features("X:1\nM: 3/4 % a comment\nK:G\nabc|\n") == {"M": "3/4", "K": "G", "voices": "1"}


def test_header_baseline_learns_the_meter_rule_and_nothing_the_header_does_not_say():
    from clamp.eval.controls import header_baseline

    train_abc = (
        [tune("6/8") for _ in range(10)] + [tune("4/4") for _ in range(10)] + [tune("4/4", "G") for _ in range(10)]
    )
    train_labels = ["jig"] * 10 + ["reel"] * 10 + ["hornpipe"] * 10
    test_abc = [tune("6/8"), tune("4/4"), tune("4/4", "G")]
    classes = ["hornpipe", "jig", "reel"]
    pred = header_baseline(train_abc, train_labels, test_abc, classes)
    # 6/8 is a jig; in 4/4 the key tells the (made-up) reels in D from the hornpipes in G
    assert [classes[i] for i in pred] == ["jig", "reel", "hornpipe"]
    # labels outside the classes are not fit; with one class left, every item gets it
    assert header_baseline(train_abc, ["jig"] * 10 + ["x"] * 20, test_abc, classes).tolist() == [1, 1, 1]


# ------------------------------------------------------------------------------ header dropout
@pytest.mark.parametrize("mode", ["clamp-v1", "m3"])
def test_header_dropout_removes_exactly_the_k_m_l_patches_and_voice_names(mode):
    full = tune("6/8", voices=3)
    # what notes_only leaves on text: no K:, M:, L: lines, voices without their names
    expected = "X:1\nT:t\nV:1\nV:2\nABc dcB|ABc d2e|\n"
    out = drop_header_patches(patchify(full, mode), mode)
    assert np.array_equal(out, patchify(expected, mode))
    assert len(out) == len(patchify(full, mode)) - 3
    as_tensor = drop_header_patches(torch.from_numpy(patchify(full, mode).astype(np.int64)), mode)
    assert isinstance(as_tensor, torch.Tensor) and np.array_equal(as_tensor.numpy(), out)
    # a body bar is never taken for a header line; a tune without those lines is unchanged
    plain = patchify("X:1\nT:t\nABc dcB|\n", mode)
    assert np.array_equal(drop_header_patches(plain, mode), plain)


def test_music_batch_drops_headers_with_the_configured_share_the_same_way_after_a_resume():
    from clamp.train.data import music_batch

    patches = torch.from_numpy(patchify(tune("6/8"), "clamp-v1").astype(np.int64))
    items = [{"patches": patches, "draw": 0, "index": i} for i in range(200)]
    full = music_batch(items, 64, header_dropout=0.0)
    assert (full != 0).any(-1).sum(1).tolist() == [len(patches)] * 200
    none_left = music_batch(items, 64, header_dropout=1.0)
    assert (none_left != 0).any(-1).sum(1).tolist() == [len(patches) - 3] * 200
    half = music_batch(items, 64, header_dropout=0.5, seed=7)
    dropped = ((half != 0).any(-1).sum(1) == len(patches) - 3).float().mean().item()
    assert 0.38 < dropped < 0.62
    assert torch.equal(half, music_batch(items, 64, header_dropout=0.5, seed=7))  # seeded per (seed, draw, item)
    assert not torch.equal(half, music_batch(items, 64, header_dropout=0.5, seed=8))


# --------------------------------------------------------------------------- held-out prompts
def _norm(text: str) -> str:
    return " ".join(re.sub(r"[^\w/ '-]+", " ", text.casefold()).split())


def _training_captions() -> set[str]:
    """The captions the build writes for a sample of the corpus's tunes (every phrasing), plus the
    short key and meter captions for every key and meter of the corpus."""
    from music21 import corpus

    from clamp.abc.tunes import split_tunes
    from clamp.text.captions import describe

    out: set[str] = set()
    paths = sorted(str(p) for p in corpus.getPaths(fileExtensions=["abc"]))
    for path in paths[::4]:
        with open(path, encoding="latin-1") as fh:
            tunes = split_tunes(fh.read())
        for i, abc in enumerate(tunes[:40]):
            out.update(describe(abc, [], {}, f"music21:{path}/{i}").captions)
    return {_norm(c) for c in out if c}


def test_no_user_prompt_equals_or_contains_a_training_caption():
    from clamp.eval.probes import USER_PROBES, USER_TASK_PROBES
    from clamp.inference.prompts import USER_TEMPLATES, article, spoken

    captions = _training_captions()
    assert len(captions) > 1000  # the sample is the real caption generator's output
    keys = [f"{t} {m}" for t in "ABCDEFG" for m in ("major", "minor", "dorian", "mixolydian")]
    labels = {
        "key": keys,
        "meter": ["2/4", "3/4", "4/4", "6/8", "9/8", "12/8", "2/2", "3/8"],
        "tune_type": ["reel", "jig", "hornpipe", "waltz", "polka", "slip jig", "air", "march", "strathspey"],
    }
    prompts = [p.query for p in USER_PROBES]
    for task, templates in USER_TEMPLATES.items():
        for label in labels.get(task, ["Ireland", "Bach", "O'Neill's Music of Ireland", "happy", "Pop"]):
            prompts += [t.format(label=label, article=article(label), spoken=spoken(label)) for t in templates]
    for task, template in USER_TASK_PROBES.items():
        prompts += [template.format(label=x, article=article(x), spoken=spoken(x)) for x in labels[task]]
    clashes = sorted({(p, c) for p in map(_norm, prompts) for c in captions if c == p or c in p})
    assert clashes == []
    # the check can fail: the training-style key template contains the key caption "In D major."
    assert any(c in _norm("A tune in D major.") for c in captions)


def test_spoken_meters():
    from clamp.inference.prompts import prompts_for, spoken

    assert spoken("3/4") == "three-four" and spoken("12/8") == "twelve-eight" and spoken("C") == "C"
    assert prompts_for(["3/4"], "meter", style="user") == [
        ["3/4 meter", "three-four time", "music with a three-four meter"]
    ]


# ------------------------------------------------------------------------------------ targets
def test_targets_are_judged_by_the_lower_bound_across_seeds_and_small_tasks_by_the_point():
    from clamp.eval.targets import Target, judge

    target = Target("x >= 0.5", "b/user_prompts/accuracy", lambda m, t: 0.5, "b/items")

    def runs(values, items):
        return [({"b/user_prompts/accuracy": v, "b/items": items}, {}) for v in values]

    # margins 0.1, 0.2, 0.3: mean 0.2, sd 0.1, t(2) 4.303: half-width 0.2484
    row = judge(target, runs([0.6, 0.7, 0.8], 150))
    assert row["margin"] == pytest.approx(0.2) and row["low"] == pytest.approx(0.2 - 0.24844, abs=1e-4)
    assert row["verdict"] == "not separable"
    assert judge(target, runs([0.6, 0.7, 0.8], 60))["verdict"] == "met"  # under 100 items: the point estimate
    assert judge(target, runs([0.68, 0.7, 0.72], 150))["verdict"] == "met"
    assert judge(target, runs([0.3, 0.32, 0.34], 150))["verdict"] == "missed"
    one = judge(
        target,
        [
            (
                {
                    "b/user_prompts/accuracy": 0.6,
                    "b/user_prompts/accuracy_ci_low": 0.45,
                    "b/user_prompts/accuracy_ci_high": 0.7,
                    "b/items": 300,
                },
                {},
            )
        ],
    )
    assert (one["low"], one["high"], one["verdict"]) == (pytest.approx(-0.05), pytest.approx(0.2), "not separable")
    assert judge(target, runs([0.6], 150)[:0] or [({}, {})])["verdict"] == "missing"


def test_notes_only_writing_targets_compare_with_notes_only_not_with_the_full_input():
    from clamp.eval.targets import cpu_targets, judge

    by_name = {t.name: t for t in cpu_targets()}
    target = by_name["tune type, notes only, chords added: within 0.05 of notes only"]
    tt = "corpus-tune_type"
    metrics = {
        f"{tt}/user_prompts/accuracy": 0.95,  # the full input: its bar would be 0.90
        f"{tt}.notes-only/user_prompts/accuracy": 0.80,  # the bar: 0.80 - 0.05 = 0.75
        f"{tt}.notes-only-chords-added/items": 61,  # under 100 items: the point estimate
    }
    chords = f"{tt}.notes-only-chords-added/user_prompts/accuracy"
    assert judge(target, [({**metrics, chords: 0.76}, {})])["verdict"] == "met"
    assert judge(target, [({**metrics, chords: 0.74}, {})])["verdict"] == "missed"
    assert "tune type, notes only, in L:1/4: within 0.05 of notes only" in by_name


# ---------------------------------------------------------------------- decisions: valid split
def test_retraining_refuses_a_test_split_metric_and_decides_on_the_valid_split():
    from clamp.workflows.ablations import DECISION_EVAL, AblationConfig
    from clamp.workflows.retrain import RetrainConfig

    with pytest.raises(ValueError, match="test-split metric; decide on the valid split instead .'valid-rhythm"):
        RetrainConfig(metric="corpus-rhythm/zero_shot/accuracy")
    assert RetrainConfig().metric.startswith("valid-")
    assert DECISION_EVAL["heldout_split"] == "valid"
    assert all(not m.startswith(("corpus-", "unseen-")) for m in AblationConfig().claim_metrics)


# ------------------------------------------------------------------------ composite controls
def test_notes_only_controls_change_the_notes_writing_then_drop_the_header():
    from clamp.eval.config import CONTROL_NAMES
    from clamp.eval.controls import INPUT_CONTROLS

    assert list(CONTROL_NAMES) == list(INPUT_CONTROLS)  # the config's names are the controls
    jig = "X:1\nT:j\nM:6/8\nL:1/8\nK:D\n|:dAF DFA|dAF GFE|\n"

    def apply(name: str, abc: str) -> str:  # as the evaluation applies it to an as-written model
        control = INPUT_CONTROLS[name]
        return control.after(control.before(abc))

    assert apply("notes-only-chords-added", jig) == 'X:1\nT:j\n|:"D"dAF DFA|"D"dAF GFE|\n'
    assert apply("notes-only-unit-1-4", jig) == "X:1\nT:j\n|:d/A/F/ D/F/A/|d/A/F/ G/F/E/|\n"
    assert INPUT_CONTROLS["notes-only-chords-added"].heldout_only
    assert INPUT_CONTROLS["notes-only-unit-1-4"].heldout_only
