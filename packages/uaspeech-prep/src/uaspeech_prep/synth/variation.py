"""How a speaker's repetitions of a word differ: per recording session (= block) and per utterance.

Real UASpeech speakers say each word once per block, in separate sessions: the rate, pitch, timing of the
articulation, head pose, lighting and how wide the mouth opens all change from one repetition to the next.
Without this the three repetitions of a synthetic word were near-duplicates (ROI frames within ~3 grey
levels, the same audio up to noise), and block B2 tested almost-seen examples.

Everything is drawn from :func:`uaspeech_prep.synth.utterance.rng_for` streams keyed by the seed and the
speaker / block / utterance ids (never by the order of synthesis), so it does not depend on the number of
jobs or on what else is built.

Session (speaker, block), drawn once (stream ``(seed, speaker, block, "session")``):

| what | distribution | effect |
|---|---|---|
| speaking rate | x exp(N(0, 0.08)) | espeak rate (wpm) of the whole block; below espeak's floor of 80 wpm the rest is done by the time-scale step (WSOLA, below) |
| pitch | + N(0, 4), espeak 0..100 | mean pitch of the block |
| pitch range | + N(0, 6) | intonation range |
| loudness | + N(0, 2) dB | level of the block before the microphones |
| mouth opening | x exp(N(0, 0.12)) | ``open`` of every mouth shape |
| head pose | roll N(0, 2.5) deg, scale x exp(N(0, 0.03)), shift N(0, 3) px (x and y) | about the mouth |
| lighting | brightness x exp(N(0, 0.08)), contrast x exp(N(0, 0.10)), side light N(0, 0.08) | gain ramp across the face |

Within the block video the head also drifts: a smooth random motion (~0.2 Hz) of roll std 0.5 deg, shift
std 0.8 px and scale std 0.6 %, continuous across the words (stream ``(seed, speaker, block, "drift")``).

Utterance, drawn per word (stream ``(seed, utt_id, "vary")``; the per-phoneme draws from
``(seed, utt_id, "timing")``):

| what | distribution | effect |
|---|---|---|
| speaking rate | x exp(N(0, 0.06)) | on top of the session's and the level's ``rate_jitter`` |
| pitch / range | + N(0, 2.5) / + N(0, 4) | espeak pitch and range |
| loudness | + N(0, 1) dB | |
| phoneme durations | each phoneme x exp(N(0, 0.15)), clipped to 0.6..1.7 | pitch-preserving time-scale change (WSOLA), phoneme times and mouth follow |
| mouth opening | x exp(N(0, 0.08)) for the word, x exp(N(0, 0.12)) per phoneme target | articulation amplitude |
| audio-visual lag | N(0, 15) ms | the mouth leads or lags the sound |
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# session (block) variation
SESSION_RATE_STD = 0.08
SESSION_PITCH_STD = 4.0
SESSION_RANGE_STD = 6.0
SESSION_GAIN_DB_STD = 2.0
SESSION_MOUTH_STD = 0.12
SESSION_ROLL_DEG_STD = 2.5
SESSION_SCALE_STD = 0.03
SESSION_SHIFT_PX_STD = 3.0
SESSION_BRIGHTNESS_STD = 0.08
SESSION_CONTRAST_STD = 0.10
SESSION_SIDE_LIGHT_STD = 0.08
# head drift within a block video
DRIFT_ROLL_DEG_STD = 0.5
DRIFT_SHIFT_PX_STD = 0.8
DRIFT_SCALE_STD = 0.006
DRIFT_HZ = 0.2
# utterance variation
UTT_RATE_STD = 0.06
UTT_PITCH_STD = 2.5
UTT_RANGE_STD = 4.0
UTT_GAIN_DB_STD = 1.0
PHONEME_DURATION_STD = 0.15
UTT_MOUTH_STD = 0.08
TARGET_MOUTH_STD = 0.12
AV_LAG_STD_S = 0.015


def parameters() -> dict[str, float]:
    """The variation constants of this module (for ``synth_info.json``)."""
    return {k.lower(): v for k, v in globals().items() if k.isupper() and isinstance(v, float)}


@dataclass(frozen=True)
class Session:
    """One recording session (a speaker's block): what stays the same for all its words."""

    rate: float = 1.0  # factor on the speaking rate
    pitch: float = 0.0  # espeak pitch offset
    pitch_range: float = 0.0
    gain_db: float = 0.0
    mouth: float = 1.0  # factor on the mouth opening
    roll_deg: float = 0.0
    scale: float = 1.0
    shift: tuple[float, float] = (0.0, 0.0)
    brightness: float = 1.0
    contrast: float = 1.0
    side_light: float = 0.0  # relative gain change from the face's centre to its side (+: brighter right)


NEUTRAL_SESSION = Session()


def draw_session(rng: np.random.Generator) -> Session:
    n = rng.standard_normal(11)
    return Session(
        rate=float(np.exp(SESSION_RATE_STD * n[0])),
        pitch=float(SESSION_PITCH_STD * n[1]),
        pitch_range=float(SESSION_RANGE_STD * n[2]),
        gain_db=float(SESSION_GAIN_DB_STD * n[3]),
        mouth=float(np.exp(SESSION_MOUTH_STD * n[4])),
        roll_deg=float(SESSION_ROLL_DEG_STD * n[5]),
        scale=float(np.exp(SESSION_SCALE_STD * n[6])),
        shift=(float(SESSION_SHIFT_PX_STD * n[7]), float(SESSION_SHIFT_PX_STD * n[8])),
        brightness=float(np.exp(SESSION_BRIGHTNESS_STD * n[9])),
        contrast=float(np.exp(SESSION_CONTRAST_STD * n[10])),
        side_light=float(SESSION_SIDE_LIGHT_STD * rng.standard_normal()),
    )


@dataclass(frozen=True)
class UtteranceVariation:
    """What changes from one word to the next within a session."""

    rate: float = 1.0
    pitch: float = 0.0
    pitch_range: float = 0.0
    gain_db: float = 0.0
    duration_std: float = 0.0  # log-std of the per-phoneme duration factors
    mouth: float = 1.0
    target_std: float = 0.0  # log-std of the per-target mouth opening factors
    av_lag_s: float = 0.0


NEUTRAL_UTTERANCE = UtteranceVariation()


def draw_utterance(rng: np.random.Generator) -> UtteranceVariation:
    n = rng.standard_normal(6)
    return UtteranceVariation(
        rate=float(np.exp(UTT_RATE_STD * n[0])),
        pitch=float(UTT_PITCH_STD * n[1]),
        pitch_range=float(UTT_RANGE_STD * n[2]),
        gain_db=float(UTT_GAIN_DB_STD * n[3]),
        duration_std=PHONEME_DURATION_STD,
        mouth=float(np.exp(UTT_MOUTH_STD * n[4])),
        target_std=TARGET_MOUTH_STD,
        av_lag_s=float(AV_LAG_STD_S * n[5]),
    )


def smooth_noise(rng: np.random.Generator, n: int, rate_hz: float, cutoff_hz: float) -> np.ndarray:
    """Unit-std low-pass random signal of ``n`` samples at ``rate_hz`` (Gaussian-filtered white noise)."""
    from scipy.ndimage import gaussian_filter1d

    pad = int(3 * rate_hz / cutoff_hz) + 1
    white = rng.standard_normal(n + 2 * pad)
    sm = gaussian_filter1d(white, sigma=rate_hz / (2 * np.pi * cutoff_hz), mode="nearest")[pad : pad + n]
    return (sm - sm.mean()) / (sm.std() + 1e-12) if n > 1 else np.zeros(n)


@dataclass(frozen=True)
class Pose:
    """Head pose and lighting of one frame, on top of the speaker's :class:`~uaspeech_prep.synth.face.Look`."""

    roll_deg: float = 0.0
    scale: float = 1.0
    shift: tuple[float, float] = (0.0, 0.0)
    brightness: float = 1.0
    contrast: float = 1.0
    side_light: float = 0.0


def block_poses(session: Session, n_frames: int, rng: np.random.Generator, fps: float) -> list[Pose]:
    """Per-frame poses of a block video: the session's pose plus a smooth drift."""
    roll = DRIFT_ROLL_DEG_STD * smooth_noise(rng, n_frames, fps, DRIFT_HZ)
    dx = DRIFT_SHIFT_PX_STD * smooth_noise(rng, n_frames, fps, DRIFT_HZ)
    dy = DRIFT_SHIFT_PX_STD * smooth_noise(rng, n_frames, fps, DRIFT_HZ)
    sc = DRIFT_SCALE_STD * smooth_noise(rng, n_frames, fps, DRIFT_HZ)
    return [
        Pose(
            roll_deg=round(session.roll_deg + float(roll[i]), 3),
            scale=round(session.scale * float(np.exp(sc[i])), 4),
            shift=(round(session.shift[0] + float(dx[i]), 2), round(session.shift[1] + float(dy[i]), 2)),
            brightness=session.brightness,
            contrast=session.contrast,
            side_light=session.side_light,
        )
        for i in range(n_frames)
    ]


# --- pitch-preserving time-scale modification -----------------------------------------------------


def phoneme_time_map(times: np.ndarray, end: float, std: float, rng: np.random.Generator,
                     min_factor: float = 0.6, max_factor: float = 1.7, scale: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Knots (t_in, t_out) of a piecewise-linear map that scales each interval between consecutive phoneme
    times (and the lead before the first) by ``scale`` x exp(N(0, std)), the random part clipped to
    [min_factor, max_factor]. The interval after the last phoneme (the word's end) is kept."""
    t = np.unique(np.clip(np.concatenate([[0.0], np.asarray(times, np.float64), [end]]), 0.0, end))
    seg = np.diff(t)
    f = np.clip(np.exp(std * rng.standard_normal(len(seg))), min_factor, max_factor) if std > 0 else np.ones(len(seg))
    f[-1] = 1.0 if len(f) > 1 else f[-1]
    f = f * scale
    t_out = np.concatenate([[0.0], np.cumsum(seg * f)])
    return t, t_out


def wsola(x: np.ndarray, knots_in: np.ndarray, knots_out: np.ndarray, sr: int, frame: int = 512,
          hop: int = 256, tolerance: int = 160) -> np.ndarray:
    """Time-scale ``x`` without changing its pitch (WSOLA: Hann windows, 50 % overlap, the next window
    taken within ``tolerance`` samples of where the map says, where it best continues the previous one).
    The output lasts ``knots_out[-1]`` s, and input time ``knots_in[i]`` lands at ``knots_out[i]``."""
    x = np.asarray(x, np.float32)
    n_out = int(round(knots_out[-1] * sr))
    if len(x) < frame or n_out < frame:
        return np.interp(np.linspace(0, len(x) - 1, max(n_out, 1)), np.arange(len(x)), x).astype(np.float32)
    win = np.hanning(frame + 1)[:frame].astype(np.float32)  # periodic Hann: sums to 1 at hop = frame / 2
    pad = np.concatenate([np.zeros(tolerance + frame, np.float32), x, np.zeros(tolerance + 2 * frame, np.float32)])
    off = tolerance + frame
    n_frames = n_out // hop + 2
    y = np.zeros((n_frames + 1) * hop + frame, np.float32)  # y[j] is output sample j - hop
    centres_out = ((np.arange(n_frames) - 1) * hop + frame // 2) / sr
    centres_in = np.interp(centres_out, knots_out, knots_in) * sr
    prev = None  # start of the previous input window (padded coordinates)
    for k in range(n_frames):
        want = int(round(centres_in[k])) - frame // 2 + off
        pos = want
        if prev is not None:
            natural = pad[prev + hop : prev + hop + frame]  # what would follow the previous window
            lo = max(0, want - tolerance)
            region = pad[lo : want + tolerance + frame]
            if float(np.dot(natural, natural)) > 1e-10 and len(region) >= frame:
                pos = lo + int(np.argmax(np.correlate(region, natural, mode="valid")))
        y[k * hop : k * hop + frame] += pad[pos : pos + frame] * win
        prev = pos
    return y[hop : hop + n_out]
