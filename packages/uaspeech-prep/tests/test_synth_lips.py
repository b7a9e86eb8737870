"""Lip visibility (``synth --lip-visibility``): weaker lips change the video only, deterministically."""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from uaspeech_prep.synth import command
from uaspeech_prep.synth import lips as lp
from uaspeech_prep.synth import video as vid
from uaspeech_prep.synth.corpus_writer import INFO_FILE, SynthConfig, build_corpus
from uaspeech_prep.synth.visemes import VISEMES, keyframes, trajectory, visemes_of

# "bravo" as espeak times it (test_synth_video): b r 'A: v oU _:
BRAVO = [(0.012, "b"), (0.030, "r"), (0.094, "'A:"), (0.239, "v"), (0.311, "oU"), (0.467, "_:")]


def _hashes(root: Path, pattern: str) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob(pattern))}


def _micro(out: Path, **kw) -> dict:
    cfg = dict(output=out, speakers=("F02",), blocks=("B2",), words_per_block=2, seed=7, jobs=1)
    cfg.update(kw)
    return build_corpus(SynthConfig(**cfg))


def _shape(phoneme: str, shapes: dict) -> np.ndarray:
    return shapes[visemes_of(phoneme)[0]].as_array()


def test_a_weaker_setting_changes_only_the_video_and_is_deterministic(tmp_path):
    full = _micro(tmp_path / "full")
    weak = _micro(tmp_path / "weak", lip_visibility=0.3)
    again = _micro(tmp_path / "again", lip_visibility=0.3)
    for pattern in ("*.wav", "*.mlf", "*.xls", "*_frame_index.txt"):
        a, b = _hashes(tmp_path / "full", pattern), _hashes(tmp_path / "weak", pattern)
        assert a and a == b, pattern  # the audio (and every other non-video file) is byte for byte V = 1's
    divx = _hashes(tmp_path / "weak", "*.divx")
    assert divx and all(h != _hashes(tmp_path / "full", "*.divx")[k] for k, h in divx.items())
    assert divx == _hashes(tmp_path / "again", "*.divx")  # same seed, same weak corpus
    assert "lip_visibility" not in full["video"]  # V = 1: synth_info.json as it always was
    info = json.loads((tmp_path / "weak" / INFO_FILE).read_text())
    assert info["video"]["lip_visibility"]["visibility"] == 0.3 and info["video"]["lip_visibility"]["merge"] == 1.0
    assert weak["files"] == full["files"]


def test_visibility_one_leaves_the_mouth_untouched():
    assert lp.weak_lips(1.0, "very_low", seed=3) is None
    assert lp.confused_shapes(lp.merge_weight(1.0)) == VISEMES
    assert lp.amplitude(1.0, "very_low") == 1.0
    track = vid.WordTrack("X_B1_D0", 0.6, BRAVO, mouth_scale=1.1)
    p = vid.mouth_params(track)
    want = trajectory(keyframes(BRAVO, 0.6), np.arange(len(p)) / vid.FPS)
    want[:, 0] = np.clip(want[:, 0] * 1.1, 0.0, vid.MAX_OPEN_PARAM)
    np.testing.assert_array_equal(p, want)


@pytest.mark.parametrize("group", [
    ("p", "b", "m"), ("f", "v"), ("t", "d", "n", "l", "s", "z", "k", "g", "N", "h", "T", "D", "j"),
    ("w", "r"), ("S", "Z", "tS", "dZ"), ("'A:", "a", "V", "E", "@", "3:"), ("i:", "I"), ("O:", "0"), ("u:", "U"),
])
def test_confusions_give_the_listed_phonemes_one_mouth_shape(group):
    merged = lp.confused_shapes(lp.merge_weight(0.5))  # V <= MERGE_FULL_AT: merged completely
    for ph in group[1:]:
        np.testing.assert_allclose(_shape(ph, merged), _shape(group[0], merged), atol=1e-12)
    # ... and a shape no other group has
    others = {lp.group_of(v) for v in VISEMES} - {lp.group_of(visemes_of(group[0])[0])}
    for g in others:
        assert not np.allclose(merged[lp.CONFUSION_GROUPS[g][0]].as_array(), _shape(group[0], merged))


def test_confusions_grow_as_visibility_falls():
    t, s = VISEMES["alveolar"].as_array(), VISEMES["velar"].as_array()
    gaps = [np.abs(_shape("t", lp.confused_shapes(lp.merge_weight(v))) - _shape("k", lp.confused_shapes(
        lp.merge_weight(v)))).sum() for v in (1.0, 0.9, 0.75, 0.5, 0.2)]
    assert gaps[0] == pytest.approx(np.abs(t - s).sum())
    assert gaps[0] > gaps[1] > gaps[2] > gaps[3] == pytest.approx(0.0) and gaps[4] == pytest.approx(0.0)
    assert lp.merge_weight(0.75) == pytest.approx(0.5)  # half way at V = 0.75
    # the keyframes take their targets from the table they are given
    ks = keyframes([(0.1, "t"), (0.3, "k")], 0.5, shapes=lp.confused_shapes(1.0))
    assert ks[2][1] == ks[3][1]


def test_amplitude_moves_shapes_towards_rest_by_the_stated_factor():
    rest = VISEMES["rest"].as_array()
    shapes = np.stack([v.as_array() for v in VISEMES.values()])
    for a in (0.0, 0.3, 0.7, 1.0):
        moved = lp.towards_rest(shapes, a)
        np.testing.assert_allclose(moved - rest, a * (shapes - rest), atol=1e-12)
    v = 0.3
    amps = {lv: lp.amplitude(v, lv) for lv in ("high", "mid", "low", "very_low")}
    assert amps == {lv: pytest.approx(v ** lp.AMPLITUDE_EXPONENT[lv]) for lv in amps}
    assert lp.amplitude(v, None) == amps["high"]  # controls articulate like the high level
    assert amps["high"] > amps["mid"] > amps["low"] > amps["very_low"]  # very_low speakers articulate least
    # in a word's video, without jitter or confusions: the whole trajectory scaled about rest
    plain = vid.mouth_params(vid.WordTrack("X_B1_D0", 0.6, BRAVO))
    weak = vid.mouth_params(vid.WordTrack("X_B1_D0", 0.6, BRAVO, lips=lp.WeakLips(0.0, 0.4, 0.0, seed=0)))
    np.testing.assert_allclose(weak - rest, 0.4 * (plain - rest), atol=1e-9)


def test_jitter_is_per_utterance_seeded_and_scaled_by_one_minus_visibility():
    def params(seed: int, visibility: float = 0.3) -> np.ndarray:
        return vid.mouth_params(vid.WordTrack("X_B1_D0", 0.6, BRAVO, lips=lp.weak_lips(visibility, "mid", seed)))

    a, b, c = params(1), params(1), params(2)
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).max() > 0.02
    assert lp.weak_lips(0.3, "mid", 1).jitter == pytest.approx(0.7)
    rng = np.random.default_rng(0)
    drift = lp.jitter(3000, vid.FPS, 0.5, rng)
    assert drift.std(0) == pytest.approx([0.5 * lp.DRIFT_JITTER[k] for k in ("open", "width", "round", "teeth", "tuck")],
                                         abs=1e-9)
    # within the drawable range, whatever the draws
    for seed in range(20):
        p = params(seed, 0.05)
        assert p[:, 0].min() >= 0 and p[:, 0].max() <= vid.MAX_OPEN_PARAM
        assert p[:, 1].min() >= 0.6 and p[:, 2:].min() >= 0 and p[:, 2:].max() <= 1


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="uaspeech-prep")
    command.register(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


def test_cli_option_and_its_limits(tmp_path, capsys):
    assert command.config_from_args(_parse(["synth", "-o", str(tmp_path / "d")])).lip_visibility == 1.0
    assert command.config_from_args(_parse(["synth", "-o", str(tmp_path / "d"), "--lip-visibility", "0.3"])
                                    ).lip_visibility == 0.3
    for bad in ("0", "-0.1", "1.5"):
        args = _parse(["synth", "-o", str(tmp_path / "b"), "--lip-visibility", bad, "--no-progress"])
        assert args.func(args) == 2
        assert "lip visibility must be within (0, 1]" in capsys.readouterr().err
    assert not (tmp_path / "b").exists()
