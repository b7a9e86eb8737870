"""Energy VAD: interval on a known signal, the union over microphones, exact trimmed samples."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from uaspeech_prep.vad import Trim, VadParams, speech_interval, union, utterance_trim, write_trimmed

SR = 16000


def _word(pre_s: float, speech_s: float, post_s: float, seed: int = 0, amp: float = 0.3) -> np.ndarray:
    """Low background noise, then a 200 Hz tone with a 4 Hz envelope (speech-like loudness), then noise."""
    rng = np.random.default_rng(seed)
    n_pre, n_sp, n_post = (int(round(x * SR)) for x in (pre_s, speech_s, post_s))
    t = np.arange(n_sp) / SR
    speech = amp * (0.6 + 0.4 * np.sin(2 * np.pi * 4 * t)) * np.sin(2 * np.pi * 200 * t)
    x = np.concatenate([np.zeros(n_pre), speech, np.zeros(n_post)])
    return x + 0.002 * rng.standard_normal(len(x))


def test_interval_brackets_the_speech_with_padding():
    x = _word(0.6, 0.5, 0.7)
    tr = speech_interval(x, SR, VadParams(pad_s=0.1))
    assert tr.speech_found
    assert tr.start_s == pytest.approx(0.6 - 0.1, abs=0.03)
    assert tr.end_s == pytest.approx(1.1 + 0.1, abs=0.03)


def test_silence_and_stationary_noise_are_not_trimmed():
    rng = np.random.default_rng(1)
    for x in (np.zeros(SR), 0.05 * rng.standard_normal(SR)):
        tr = speech_interval(x, SR)
        assert (tr.start, tr.end, tr.speech_found) == (0, SR, False)
    assert speech_interval(np.zeros(10), SR).end == 10  # shorter than one frame


def test_union_over_microphones():
    a, b = Trim(100, 900, SR, True), Trim(50, 800, SR, True)
    assert union([a, b]) == Trim(50, 900, SR, True)
    assert union([a, Trim(0, 1000, SR, False)]) == a  # a mic that heard nothing does not widen it
    assert union([Trim(0, 1000, SR, False)]).speech_found is False


def test_trimmed_file_holds_exactly_the_interval(tmp_path):
    x = _word(0.5, 0.4, 0.5)
    y = _word(0.45, 0.4, 0.55, seed=3, amp=0.1)  # a second, quieter microphone, speech a bit earlier
    pa, pb = tmp_path / "F02_B1_D3_M5.wav", tmp_path / "F02_B1_D3_M6.wav"
    sf.write(str(pa), x, SR, subtype="PCM_16")
    sf.write(str(pb), y, SR, subtype="PCM_16")
    tr = utterance_trim([pa, pb])
    assert tr.start == min(speech_interval(sf.read(str(p))[0], SR).start for p in (pa, pb))
    out = tmp_path / "vad" / "F02_B1_D3_M5.wav"
    write_trimmed(pa, out, tr)
    got, sr = sf.read(str(out), dtype="int16")
    src, _ = sf.read(str(pa), dtype="int16")
    assert sr == SR and sf.info(str(out)).subtype == "PCM_16"
    np.testing.assert_array_equal(got, src[tr.start:tr.end])
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]
    sf.write(str(tmp_path / "other.wav"), x, 8000)
    with pytest.raises(ValueError, match="sample rates"):
        utterance_trim([pa, tmp_path / "other.wav"])
