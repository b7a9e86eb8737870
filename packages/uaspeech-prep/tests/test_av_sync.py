"""Audio-video sync estimation (uaspeech_prep.av_sync) and the tree's sync.csv (uaspeech_prep.sync_report,
``uaspeech-prep sync``), on signal pairs whose offset is known: a mouth that opens with the audio's envelope."""

from __future__ import annotations

import csv
import json

import cv2
import numpy as np
import pytest
import soundfile as sf
from scipy.ndimage import gaussian_filter1d

from uaspeech_prep.av_sync import (
    MIN_CONFIDENCE,
    correction_frames,
    delay_frames,
    estimate_offset,
    shift_frames,
)
from uaspeech_prep.cli import main as cli_main
from uaspeech_prep.sync_report import SYNC_CSV, read_sync_csv, sync_tree
from uaspeech_prep.video_io import read_frames, write_video

SR, FPS = 16000, 25.0


def envelope(seed: int, frames: int = 50) -> np.ndarray:
    """[frames] in [0, 1]: a few syllable-like bumps between rests (a word or two at 25 fps)."""
    rng = np.random.default_rng(seed)
    t = np.arange(frames, dtype=float)
    env = np.zeros(frames)
    for c in np.sort(rng.uniform(6, frames - 6, size=4)):
        env += rng.uniform(0.4, 1.0) * np.exp(-0.5 * ((t - c) / rng.uniform(1.2, 2.5)) ** 2)
    return np.clip(env, 0, 1)


def audio_for(env: np.ndarray, seed: int = 0) -> np.ndarray:
    """Noise whose amplitude follows ``env`` (frame t at time t / FPS), over a quiet floor."""
    n = int(round(len(env) / FPS * SR))
    amp = np.interp(np.arange(n) / SR * FPS, np.arange(len(env)), env)
    rng = np.random.default_rng(1000 + seed)
    return ((0.01 + 0.5 * amp) * rng.standard_normal(n)).astype(np.float32)


def mouth_for(env: np.ndarray) -> np.ndarray:
    """[T, 96, 96] uint8 crops: skin, lips, and a dark opening whose height follows ``env``."""
    frames = np.full((len(env), 96, 96), 190, np.uint8)
    for f, e in zip(frames, env):
        cv2.ellipse(f, (48, 62), (24, 9 + int(round(10 * e))), 0, 0, 360, 120, -1)  # lips
        cv2.ellipse(f, (48, 62), (18, 1 + int(round(10 * e))), 0, 0, 360, 30, -1)  # the opening
    return frames


@pytest.fixture(scope="module")
def pair():
    env = envelope(7)
    return audio_for(env), mouth_for(env)


def test_known_offsets_are_recovered_exactly(pair):
    audio, frames = pair
    for k in range(-10, 11):
        est = estimate_offset(audio, SR, delay_frames(frames, k))
        assert est.offset_frames == k, (k, est.scores)
        assert est.offset_ms == pytest.approx(1000 * k / FPS)
        assert est.confidence > 0.8
        assert list(est.lags) == list(range(-10, 11))


def test_other_rates_and_channels(pair):
    audio, frames = pair
    late = delay_frames(frames, 3)
    stereo = np.stack([audio, audio], axis=1)
    assert estimate_offset(stereo, SR, late).offset_frames == 3
    slow = audio[::2].copy()  # 8 kHz: the bands above 4 kHz drop out
    assert estimate_offset(slow, SR // 2, late).offset_frames == 3
    colour = np.repeat(late[..., None], 3, axis=3)
    assert estimate_offset(audio, SR, colour).offset_frames == 3


def test_sign_is_video_faults_late_early(pair):
    """late-<N>ms (video_faults: frame t shows frame t - k) is a positive offset; early-<N>ms a negative one."""
    audio, frames = pair
    t = np.arange(len(frames))
    late = frames[np.clip(t - 5, 0, len(t) - 1)]  # video_faults' offset_index(T, +5): late-200ms
    early = frames[np.clip(t + 3, 0, len(t) - 1)]  # early-120ms
    assert np.array_equal(late, delay_frames(frames, 5)) and np.array_equal(early, delay_frames(frames, -3))
    assert estimate_offset(audio, SR, late).offset_ms == 200.0
    assert estimate_offset(audio, SR, early).offset_ms == -120.0


def test_shift_frames_round_trip(pair):
    _, frames = pair
    for k in (-7, -1, 0, 4, 10):
        back = shift_frames(delay_frames(frames, k), k)
        keep = slice(0, len(frames) - k) if k >= 0 else slice(-k, len(frames))
        assert np.array_equal(back[keep], frames[keep])
        assert back.shape == frames.shape
    x = np.arange(6)
    assert shift_frames(x, 2).tolist() == [2, 3, 4, 5, 5, 5] and shift_frames(x, -2).tolist() == [0, 0, 0, 1, 2, 3]
    assert delay_frames(x, 2).tolist() == [0, 0, 0, 1, 2, 3]


def test_unrelated_lips_get_a_low_confidence(pair):
    """Lips that move at random (smoothed noise) agree with the sound far less than its own lips, at any lag.
    (Another word's lips agree more: both open and close once; docs/SYNC.md measures that case.)"""
    audio, frames = pair
    own = estimate_offset(audio, SR, frames).confidence
    others = []
    for seed in range(2, 10):
        x = gaussian_filter1d(np.random.default_rng(seed).standard_normal(len(frames)), 1.5)
        others.append(estimate_offset(audio, SR, mouth_for((x - x.min()) / np.ptp(x))).confidence)
    assert own > 0.9 and max(others) < 0.6 and np.mean(others) < 0.4


def test_what_cannot_be_measured(pair):
    audio, frames = pair
    still = np.repeat(frames[:1], len(frames), axis=0)
    for est in (estimate_offset(audio, SR, still), estimate_offset(np.zeros_like(audio), SR, frames),
                estimate_offset(audio, SR, frames[:4]), estimate_offset(audio[:100], SR, frames)):
        assert not est.measured and est.offset_frames == 0 and est.confidence == 0.0
        assert correction_frames(est) == 0
    json.dumps(estimate_offset(audio, SR, still).to_dict())  # NaN scores become null


def test_correction_rule(pair):
    audio, frames = pair
    est = estimate_offset(audio, SR, delay_frames(frames, 4))
    assert correction_frames(est) == 4
    assert correction_frames(est, min_confidence=0.99) == 0
    assert correction_frames(estimate_offset(audio, SR, delay_frames(frames, 1))) == 0  # within the estimate's +-1


# ------------------------------------------------------------------------------------------------- the tree
def make_tree(root, offsets: dict[str, int]):
    """A prepared tree of one speaker: per utterance a wav, a ROI delayed by ``offsets[utt]`` frames, a record."""
    lines = []
    for i, (uid, k) in enumerate(offsets.items()):
        env = envelope(20 + i)
        (root / "audio" / "F02").mkdir(parents=True, exist_ok=True)
        sf.write(root / "audio" / "F02" / f"{uid}_M5.wav", audio_for(env, i), SR)
        write_video(root / "video" / "roi" / "F02" / f"{uid}.mp4", list(delay_frames(mouth_for(env), k)), FPS)
        lines.append(json.dumps({"utt_id": uid, "speaker": "F02", "level": "low", "block": "B2", "split": "test",
                                 "word_id": "D0", "word": "Zero", "category": "digit",
                                 "audio": {"M5": f"audio/F02/{uid}_M5.wav"}, "clip": None,
                                 "roi": f"video/roi/F02/{uid}.mp4", "roi_fps": 25.0, "roi_frames": 50,
                                 "audio_offset_s": 0.0, "duration_s": 2.0}))
    lines.append(json.dumps({"utt_id": "F02_B2_NOVIDEO", "speaker": "F02", "level": "low", "block": "B2",
                             "split": "test", "word_id": "D1", "word": "One", "category": "digit",
                             "audio": {"M5": "audio/F02/x.wav"}, "clip": None, "roi": None, "roi_fps": None,
                             "roi_frames": None, "audio_offset_s": None, "duration_s": 1.0}))
    (root / "manifest.jsonl").write_text("\n".join(lines) + "\n")


def test_sync_report_then_correction_once(tmp_path, capsys):
    make_tree(tmp_path, {"F02_B2_A": 0, "F02_B2_B": 5, "F02_B2_C": -4})
    roi_b = tmp_path / "video/roi/F02/F02_B2_B.mp4"
    before = roi_b.read_bytes()
    s = sync_tree(tmp_path)  # report only
    rows = read_sync_csv(tmp_path / SYNC_CSV)
    assert list(rows) == ["F02_B2_A", "F02_B2_B", "F02_B2_C"]  # the clip without a ROI has no row
    assert [rows[u]["offset_ms"] for u in rows] == ["0", "200", "-160"]
    assert all(rows[u]["corrected"] == "false" and float(rows[u]["confidence"]) > MIN_CONFIDENCE for u in rows)
    assert roi_b.read_bytes() == before and (s.clips, s.measured, s.corrected) == (3, 3, 0)
    with open(tmp_path / SYNC_CSV, newline="") as f:
        assert next(csv.reader(f))[:4] == ["utt_id", "offset_ms", "confidence", "corrected"]

    # --correct: the two offset clips are re-timed in place, the in-sync one is left alone
    assert cli_main(["sync", str(tmp_path), "--correct", "--quiet"]) == 0
    assert "2 ROI(s) re-timed" in capsys.readouterr().out
    rows = read_sync_csv(tmp_path / SYNC_CSV)
    assert [rows[u]["corrected"] for u in rows] == ["false", "true", "true"]
    fixed = np.stack(read_frames(roi_b, gray=True))
    wav, _ = sf.read(tmp_path / "audio/F02/F02_B2_B_M5.wav", dtype="float32")
    assert estimate_offset(wav, SR, fixed).offset_frames == 0
    assert not list(tmp_path.rglob(".*tmp*"))  # atomic writes leave no temporary file

    # a rerun does not measure the corrected ROIs again (so never shifts them twice)
    stamp = roi_b.stat().st_mtime_ns
    s = sync_tree(tmp_path, correct_min=0.5)
    rows = read_sync_csv(tmp_path / SYNC_CSV)
    assert roi_b.stat().st_mtime_ns == stamp and s.kept == 2 and s.corrected == 0
    assert rows["F02_B2_B"]["offset_ms"] == "200" and rows["F02_B2_B"]["corrected"] == "true"
    assert rows["F02_B2_B"]["note"].startswith("corrected earlier")


def test_sync_command_errors(tmp_path, capsys):
    assert cli_main(["sync", str(tmp_path / "nothing")]) == 2
    assert "no manifest" in capsys.readouterr().err
    make_tree(tmp_path, {"F02_B2_A": 0})
    assert cli_main(["sync", str(tmp_path), "--correct", "3"]) == 2
    assert "between -1 and 1" in capsys.readouterr().err
    (tmp_path / "video/roi/F02/F02_B2_A.mp4").write_bytes(b"not a video")
    assert cli_main(["sync", str(tmp_path), "--quiet", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["not_measured"] == 1
    assert read_sync_csv(tmp_path / SYNC_CSV)["F02_B2_A"]["note"].startswith("not measured")
