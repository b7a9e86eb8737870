"""Simulated dysarthric degradations of synthesized speech, by intelligibility level.

Each level has one fixed parameter set (below). Strength grows as the level gets worse: ``high``
is nearly clean, ``very_low`` is meant to defeat a speech recognizer on many words. Control
speakers (no level) get ``control``: no degradation at all.

The set was tuned so that zero-shot Whisper tiny.en (``experiments/zero_shot_levels.py`` on the prepared
demo corpus) gets worse strictly from ``high`` to ``very_low``, ``high`` near clean speech. Whisper is very
sensitive to pitch and tempo modulation of these short words: the former ``high`` set (tempo wobble 0.05,
tremor 0.3 semitones) alone took its zero-shot WER from 44 % (clean) to 62 %, and the former ``mid`` and
``low`` sets (tremor 1.0 / 1.8 st, low-pass 3.8 / 2.6 kHz) were as unrecognizable as ``very_low`` (97-100 %).

Processing chain, in order (every step keeps phoneme timing known):

1. **Slow rate**: espeak's own rate (words per minute, base 165-176 per speaker) is multiplied by
   ``rate_factor`` and by a per-word log-normal jitter of std ``rate_jitter``; phoneme events stay
   exact because espeak itself produces the slower speech. espeak cannot go below 80 wpm, so the
   worst levels are further slowed by ``stretch`` in step 3 (tape-like: it also lowers the pitch by
   12*log2(stretch) semitones, a strained low voice).
2. **Articulatory blur**: 4th-order Butterworth low-pass at ``lowpass_hz`` (imprecise consonants,
   muffled fricatives); done first, so step 3 cannot alias.
3. **Irregular rate and pitch instability**: the audio is read through one smooth, monotone
   time map ``t_in(t_out)``. Its mean slope is 1/``stretch`` and it wanders (low-pass random,
   ~3 Hz, log-std ``tempo_wobble``), which makes the local tempo irregular; on top of it a
   vibrato-like delay modulation (5.5 Hz + 2 Hz random, ``tremor_st`` semitones) makes the pitch
   unstable. Phoneme times are carried through the inverse of the same map, so they stay
   exact.
4. **Spectral smearing**: the STFT magnitude (32 ms window, 8 ms hop) is smoothed with a Gaussian of
   ``smear_hz`` along frequency and ``smear_ms`` along time, keeping the phase (Baer & Moore style
   smearing of formants). Does not move time.
5. **Dropped segments**: Poisson(``drop_rate`` per second of speech) segments of
   ``drop_ms`` (uniform range) inside the speech are attenuated by 40 dB (4 ms fades).
6. **Breath noise**: band-passed (300-4000 Hz) noise that follows the speech envelope plus a floor,
   at ``breath_snr_db`` relative to the speech's RMS.

| level    | rate_factor | stretch | rate_jitter | tempo_wobble | tremor_st | lowpass_hz | smear_hz | smear_ms | drop_rate /s | drop_ms | breath_snr_db |
|----------|-------------|---------|-------------|--------------|-----------|------------|----------|----------|--------------|---------|---------------|
| control  | 1.00        | 1.00    | 0.00        | 0.00         | 0.0       | none       | 0        | 0        | 0.0          | -       | none          |
| high     | 0.90        | 1.00    | 0.04        | 0.02         | 0.1       | 7000       | 0        | 0        | 0.0          | -       | 30            |
| mid      | 0.80        | 1.00    | 0.08        | 0.06         | 0.35      | 5500       | 40       | 4        | 0.3          | 20-40   | 24            |
| low      | 0.70        | 1.00    | 0.12        | 0.09         | 0.6       | 4500       | 80       | 6        | 0.6          | 25-50   | 20            |
| very_low | 0.47        | 1.35    | 0.18        | 0.35         | 3.0       | 1500       | 450      | 32       | 3.0          | 60-140  | 3             |

Microphones (applied after the degradation, see :data:`MICS`): each channel has its own gain,
band-pass (Butterworth 2nd order high-pass / low-pass) and a white noise floor (dBFS).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import gaussian_filter1d
from scipy.signal import butter, istft, sosfilt, stft

from uaspeech_prep.synth.tts import SAMPLE_RATE


@dataclass(frozen=True)
class LevelParams:
    rate_factor: float
    stretch: float
    rate_jitter: float
    tempo_wobble: float
    tremor_st: float
    lowpass_hz: float | None
    smear_hz: float
    smear_ms: float
    drop_rate: float
    drop_ms: tuple[float, float]
    breath_snr_db: float | None


LEVEL_PARAMS: dict[str, LevelParams] = {
    "control": LevelParams(1.00, 1.00, 0.00, 0.00, 0.0, None, 0.0, 0.0, 0.0, (0.0, 0.0), None),
    "high": LevelParams(0.90, 1.00, 0.04, 0.02, 0.1, 7000.0, 0.0, 0.0, 0.0, (0.0, 0.0), 30.0),
    "mid": LevelParams(0.80, 1.00, 0.08, 0.06, 0.35, 5500.0, 40.0, 4.0, 0.3, (20.0, 40.0), 24.0),
    "low": LevelParams(0.70, 1.00, 0.12, 0.09, 0.6, 4500.0, 80.0, 6.0, 0.6, (25.0, 50.0), 20.0),
    "very_low": LevelParams(0.47, 1.35, 0.18, 0.35, 3.0, 1500.0, 450.0, 32.0, 3.0, (60.0, 140.0), 3.0),
}
"""Degradation parameters per level ('control' for speakers without a level). See the module table."""


def params_for(level: str | None) -> LevelParams:
    key = "control" if level is None else level
    try:
        return LEVEL_PARAMS[key]
    except KeyError:
        raise ValueError(f"unknown intelligibility level {level!r}; expected one of {list(LEVEL_PARAMS)}") from None


@dataclass(frozen=True)
class MicParams:
    gain_db: float
    highpass_hz: float
    lowpass_hz: float
    noise_dbfs: float


MICS: dict[str, MicParams] = {
    "M2": MicParams(-3.0, 60.0, 7600.0, -66.0),
    "M3": MicParams(-1.5, 90.0, 7200.0, -64.0),
    "M4": MicParams(-4.0, 120.0, 6800.0, -62.0),
    "M5": MicParams(0.0, 70.0, 7800.0, -68.0),
    "M6": MicParams(-2.5, 140.0, 6400.0, -60.0),
    "M7": MicParams(-1.0, 100.0, 7000.0, -63.0),
    "M8": MicParams(-5.0, 160.0, 6000.0, -58.0),
}
"""The seven UASpeech microphone channels, each with its own gain, band and noise floor."""


# --- time maps ----------------------------------------------------------------------------------


@dataclass
class TimeMap:
    """Monotone map between output and input time (seconds), sampled at the output samples."""

    t_out: np.ndarray
    t_in: np.ndarray

    def to_output(self, t: np.ndarray | list[float]) -> np.ndarray:
        return np.interp(np.asarray(t, dtype=np.float64), self.t_in, self.t_out)


def _smooth_noise(rng: np.random.Generator, n: int, sr: int, cutoff_hz: float) -> np.ndarray:
    """Unit-std low-pass random signal of n samples (computed on a coarse 200 Hz grid, then interpolated)."""
    step = 200
    m = int(np.ceil(n / sr * step)) + 8
    white = rng.standard_normal(m)
    sm = gaussian_filter1d(white, sigma=step / (2 * np.pi * cutoff_hz), mode="wrap")
    sm = (sm - sm.mean()) / (sm.std() + 1e-12)
    return np.interp(np.arange(n) / sr * step, np.arange(m), sm)


def irregular_time_map(
    n_in: int, stretch: float, wobble: float, tremor_st: float, rng: np.random.Generator, sr: int = SAMPLE_RATE
) -> TimeMap:
    """Time map over ``round(n_in * stretch)`` output samples: mean slope 1/stretch, irregular tempo
    (log-slope std ``wobble``) and pitch tremor (``tremor_st`` semitones). Starts at 0, ends at the input's end."""
    n = max(2, int(round(n_in * stretch)))
    t_out = np.arange(n) / sr
    end_in = (n_in - 1) / sr
    if wobble <= 0 and tremor_st <= 0 and stretch == 1.0:
        return TimeMap(t_out, t_out.copy())
    slope = np.exp(wobble * _smooth_noise(rng, n, sr, 3.0)) if wobble > 0 else np.ones(n)
    t_in = np.concatenate([[0.0], np.cumsum(slope[:-1])])
    t_in *= end_in / max(t_in[-1], 1e-12)
    if tremor_st > 0:
        # delay d(t) with max slope ln2/12 * st gives +/- st semitones of pitch deviation
        f0 = 5.5 + 0.5 * rng.standard_normal()
        phase = 2 * np.pi * f0 * t_out + rng.uniform(0, 2 * np.pi) + 0.6 * _smooth_noise(rng, n, sr, 2.0)
        amp = tremor_st * np.log(2) / 12 / (2 * np.pi * f0)
        d = amp * np.sin(phase)
        # fade the delay in/out so the map still starts at 0 and ends at the end
        ramp = np.minimum(1.0, np.minimum(t_out, t_out[-1] - t_out) / 0.05)
        t_in = t_in - d * ramp
    t_in = np.maximum.accumulate(np.clip(t_in, 0.0, end_in))
    return TimeMap(t_out, t_in)


def apply_time_map(x: np.ndarray, tmap: TimeMap, sr: int = SAMPLE_RATE) -> np.ndarray:
    """Read ``x`` through the map (linear interpolation); output has len(tmap.t_out) samples."""
    return np.interp(tmap.t_in * sr, np.arange(len(x)), x).astype(np.float32)


# --- filters ------------------------------------------------------------------------------------


def lowpass(x: np.ndarray, cutoff_hz: float, sr: int = SAMPLE_RATE, order: int = 4) -> np.ndarray:
    if cutoff_hz >= sr / 2 * 0.98:
        return x
    sos = butter(order, cutoff_hz, btype="lowpass", fs=sr, output="sos")
    return sosfilt(sos, x).astype(np.float32)


def bandpass(x: np.ndarray, lo: float, hi: float, sr: int = SAMPLE_RATE, order: int = 2) -> np.ndarray:
    hi = min(hi, sr / 2 * 0.98)
    sos = butter(order, [lo, hi], btype="bandpass", fs=sr, output="sos")
    return sosfilt(sos, x).astype(np.float32)


def spectral_smear(x: np.ndarray, smear_hz: float, smear_ms: float, sr: int = SAMPLE_RATE) -> np.ndarray:
    """Smooth the STFT magnitude along frequency (Gaussian std ``smear_hz``) and time (``smear_ms``),
    keep the phase. Output has the input's length and timing."""
    if smear_hz <= 0 and smear_ms <= 0:
        return x
    nper, hop = 512, 128
    _, _, z = stft(x, fs=sr, nperseg=nper, noverlap=nper - hop, boundary="even", padded=True)
    mag, ph = np.abs(z), np.angle(z)
    if smear_hz > 0:
        mag = gaussian_filter1d(mag, sigma=smear_hz / (sr / nper), axis=0, mode="nearest")
    if smear_ms > 0:
        mag = gaussian_filter1d(mag, sigma=smear_ms / 1000 * sr / hop, axis=1, mode="nearest")
    _, y = istft(mag * np.exp(1j * ph), fs=sr, nperseg=nper, noverlap=nper - hop, boundary=True)
    y = y[: len(x)]
    if len(y) < len(x):
        y = np.pad(y, (0, len(x) - len(y)))
    return y.astype(np.float32)


def _moving_average(x: np.ndarray, width: int) -> np.ndarray:
    if width <= 1:
        return x
    c = np.cumsum(np.pad(x, (width // 2 + 1, width - width // 2), mode="edge"), dtype=np.float64)
    return ((c[width:] - c[:-width]) / width)[: len(x)]


def envelope(x: np.ndarray, sr: int = SAMPLE_RATE, smooth_ms: float = 20.0) -> np.ndarray:
    """Amplitude envelope: |x| smoothed by two passes of a moving average (triangular, ~``smooth_ms`` wide)."""
    w = max(1, int(smooth_ms / 1000 * sr))
    a = np.abs(np.asarray(x, dtype=np.float64))
    return _moving_average(_moving_average(a, w), w).astype(np.float32)


def speech_mask(x: np.ndarray, sr: int = SAMPLE_RATE, rel_db: float = -30.0) -> np.ndarray:
    env = envelope(x, sr)
    peak = float(env.max()) if len(env) else 0.0
    return env > peak * 10 ** (rel_db / 20) if peak > 0 else np.zeros(len(x), bool)


def drop_segments(
    x: np.ndarray, rate: float, drop_ms: tuple[float, float], rng: np.random.Generator, sr: int = SAMPLE_RATE
) -> tuple[np.ndarray, list[tuple[float, float]]]:
    """Attenuate random segments inside the speech by 40 dB; returns (audio, [(start_s, end_s)])."""
    if rate <= 0:
        return x, []
    active = np.flatnonzero(speech_mask(x, sr))
    if len(active) == 0:
        return x, []
    speech_s = len(active) / sr
    n = rng.poisson(rate * speech_s)
    gain = np.ones(len(x), np.float32)
    fade = int(0.004 * sr)
    segs = []
    for _ in range(n):
        start = int(active[rng.integers(len(active))])
        length = int(rng.uniform(*drop_ms) / 1000 * sr)
        end = min(len(x), start + length)
        g = np.full(end - start, 0.01, np.float32)
        f = min(fade, (end - start) // 2)
        if f > 0:
            r = 0.5 - 0.5 * np.cos(np.linspace(0, np.pi, f))  # 0 -> 1
            g[:f] = 1 - 0.99 * r  # fade down to -40 dB
            g[-f:] = 0.01 + 0.99 * r  # and back up
        gain[start:end] = np.minimum(gain[start:end], g)
        segs.append((start / sr, end / sr))
    return x * gain, sorted(segs)


def rms_active(x: np.ndarray, sr: int = SAMPLE_RATE) -> float:
    m = speech_mask(x, sr)
    v = x[m] if m.any() else x
    return float(np.sqrt(np.mean(np.square(v, dtype=np.float64)))) if len(v) else 0.0


def breath_noise(x: np.ndarray, snr_db: float, rng: np.random.Generator, sr: int = SAMPLE_RATE) -> np.ndarray:
    """Band-passed noise following the speech envelope (plus a 30 % floor) at ``snr_db`` below the speech RMS."""
    noise = bandpass(rng.standard_normal(len(x)).astype(np.float32), 300.0, 4000.0, sr)
    env = envelope(x, sr, smooth_ms=40.0)
    env = env / (env.max() + 1e-9)
    shaped = noise * (0.3 + 0.7 * env)
    target = rms_active(x, sr) * 10 ** (-snr_db / 20)
    cur = float(np.sqrt(np.mean(shaped.astype(np.float64) ** 2))) + 1e-12
    return (x + shaped * (target / cur)).astype(np.float32)


@dataclass
class Degraded:
    audio: np.ndarray
    time_map: TimeMap
    dropped: list[tuple[float, float]]


def degrade(x: np.ndarray, level: str | None, rng: np.random.Generator, sr: int = SAMPLE_RATE) -> Degraded:
    """Apply steps 2-6 of the module's chain for ``level`` (step 1, the rate, is espeak's). The output is
    ``stretch`` times longer than the input; map phoneme times with ``result.time_map.to_output``."""
    p = params_for(level)
    x = np.asarray(x, dtype=np.float32)
    if p.lowpass_hz is not None:
        x = lowpass(x, p.lowpass_hz, sr)
    tmap = irregular_time_map(len(x), p.stretch, p.tempo_wobble, p.tremor_st, rng, sr)
    y = apply_time_map(x, tmap, sr)
    y = spectral_smear(y, p.smear_hz, p.smear_ms, sr)
    y, dropped = drop_segments(y, p.drop_rate, p.drop_ms, rng, sr)
    if p.breath_snr_db is not None:
        y = breath_noise(y, p.breath_snr_db, rng, sr)
    return Degraded(audio=y.astype(np.float32), time_map=tmap, dropped=dropped)


def microphone(x: np.ndarray, mic: str, rng: np.random.Generator, sr: int = SAMPLE_RATE) -> np.ndarray:
    """One microphone channel of the (degraded, normalized) signal: gain, band-pass, noise floor."""
    try:
        m = MICS[mic]
    except KeyError:
        raise ValueError(f"unknown microphone {mic!r}; expected one of {list(MICS)}") from None
    y = bandpass(x, m.highpass_hz, m.lowpass_hz, sr) * 10 ** (m.gain_db / 20)
    y = y + rng.standard_normal(len(y)).astype(np.float32) * 10 ** (m.noise_dbfs / 20)
    return np.clip(y, -1.0, 1.0).astype(np.float32)
