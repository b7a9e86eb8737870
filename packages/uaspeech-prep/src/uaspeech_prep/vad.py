"""Energy voice-activity detection for the optional trimmed audio (``DST/audio/vad/<SPK>/*.wav``).

UASpeech words are recorded with long, variable silences around them (the recording window is set by
the operator, not by the speaker). Trimming them shortens training, but the video must stay aligned, so
the trim is one interval per utterance, the same for all its microphones (the union of what each
microphone hears), recorded in the manifest (``vad_start_s``, ``vad_end_s``, in seconds of the original
wav) and never applied to the clips or ROIs themselves.

Detector: log energy of 25 ms frames every 10 ms; the noise floor is the 10th percentile, the peak the
maximum; frames above ``floor + max(min_snr_db, rel * (peak - floor))`` are speech. The interval runs from
the first to the last speech frame, widened by ``pad_s`` on both sides. When the peak is less than
``min_snr_db`` above the floor (silence, or stationary noise only) nothing is trimmed.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from uaspeech_prep.video_io import temp_path_for


@dataclass(frozen=True)
class VadParams:
    frame_s: float = 0.025
    hop_s: float = 0.010
    rel: float = 0.25
    """Threshold as a fraction of the peak-to-floor range (dB)."""
    min_snr_db: float = 6.0
    pad_s: float = 0.15
    """Kept around the detected speech: the quiet onsets and codas of dysarthric speech."""

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Trim:
    start: int
    """First kept sample."""
    end: int
    """One past the last kept sample."""
    sr: int
    speech_found: bool

    @property
    def start_s(self) -> float:
        return self.start / self.sr

    @property
    def end_s(self) -> float:
        return self.end / self.sr


def _mono(x: np.ndarray) -> np.ndarray:
    return x.mean(axis=1) if x.ndim == 2 else x


def speech_interval(x: np.ndarray, sr: int, params: VadParams | None = None) -> Trim:
    """The speech interval of signal ``x`` (samples; mono or (n, channels))."""
    p = params or VadParams()
    x = _mono(np.asarray(x, dtype=np.float64))
    n = len(x)
    win, hop = max(1, int(round(p.frame_s * sr))), max(1, int(round(p.hop_s * sr)))
    if n < win:
        return Trim(0, n, sr, False)
    starts = np.arange(0, n - win + 1, hop)
    c = np.concatenate([[0.0], np.cumsum(x * x)])
    energy = (c[starts + win] - c[starts]) / win
    db = 10.0 * np.log10(energy + 1e-12)
    floor, peak = float(np.percentile(db, 10)), float(db.max())
    if peak - floor < p.min_snr_db:
        return Trim(0, n, sr, False)
    speech = np.flatnonzero(db > floor + max(p.min_snr_db, p.rel * (peak - floor)))
    pad = int(round(p.pad_s * sr))
    a = max(0, int(starts[speech[0]]) - pad)
    b = min(n, int(starts[speech[-1]]) + win + pad)
    return Trim(a, b, sr, True)


def union(trims: list[Trim]) -> Trim:
    """One interval covering every microphone's speech (microphones are recorded together)."""
    found = [t for t in trims if t.speech_found]
    if not found:
        t = trims[0]
        return Trim(0, max(x.end for x in trims), t.sr, False)
    return Trim(min(t.start for t in found), max(t.end for t in found), found[0].sr, True)


def utterance_trim(wavs: list[str | Path], params: VadParams | None = None) -> Trim:
    """The shared trim of an utterance's wavs (all at one sample rate, as UASpeech's 16 kHz)."""
    trims = []
    for w in wavs:
        x, sr = sf.read(str(w), always_2d=False)
        trims.append(speech_interval(x, sr, params))
    rates = {t.sr for t in trims}
    if len(rates) != 1:
        raise ValueError(f"microphones of one utterance at different sample rates {sorted(rates)}: {wavs}")
    return union(trims)


def write_trimmed(src: str | Path, dst: str | Path, trim: Trim) -> None:
    """Samples [start, end) of ``src`` into ``dst`` (same rate and sample format), atomically."""
    src, dst = Path(src), Path(dst)
    info = sf.info(str(src))
    x, sr = sf.read(str(src), always_2d=False, dtype="int16" if info.subtype == "PCM_16" else "float64")
    if sr != trim.sr:
        raise ValueError(f"{src}: {sr} Hz, but the trim was computed at {trim.sr} Hz")
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path_for(dst)
    try:
        sf.write(str(tmp), x[trim.start:min(trim.end, len(x))], sr, subtype=info.subtype, format="WAV")
        tmp.replace(dst)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
