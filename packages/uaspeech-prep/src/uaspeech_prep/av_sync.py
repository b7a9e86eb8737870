"""Audio-video sync estimation without a learned model (numpy + OpenCV's resize only, no torch).

A real recording's sound and picture are often a few frames apart, and UASpeech's word clips are cut from the
block videos by frame index. :func:`estimate_offset` slides a clip's mouth crops against its sound and returns
the offset at which the two agree best, and how well they agree there; :func:`shift_frames` re-times the crops.

Convention (the same as ``av_fusion_models.video_faults``): ``offset > 0`` means the picture LAGS the sound by
``offset`` frames, i.e. frame ``t`` shows what happened at frame ``t - offset`` (the condition ``late-<N>ms``,
``offset = round(N fps / 1000)``); ``offset < 0`` means the picture leads (``early-<N>ms``). The correction
moves the picture back: ``shift_frames(frames, offset)[t] = frames[t + offset]``, the edge frame held where the
clip has none (:func:`delay_frames` is the fault itself, ``frames[t - offset]``, for tests and experiments).

What is compared (docs/SYNC.md has the measurements behind each choice):

* the sound, at the video's rate: for each frame ``t`` the log energy (dB) of the audio under a Hann window of
  two frame periods (80 ms at 25 fps) centred on ``t / fps``, in six bands (:data:`BANDS_HZ`: the whole
  spectrum and five sub-bands 100-6000 Hz), smoothed in time by a Gaussian of one frame. Loud, open vowels
  raise all of them; closures and weak consonants lower them; each band weighs the consonants differently, and
  averaging over the bands evens out which one a particular word happens to favour;
* the mouth, two signals of the lower two thirds / middle two thirds of the crop (resized to 32 x 32):
  ``opening``, the first principal component of the clip's frames (its largest change, which in a mouth crop is
  the lips parting), its sign chosen so that it rises as the region darkens (an open mouth shows its dark
  inside); and ``activity``, ``log(1 + RMS distance)`` of each frame from the clip's rest shape (the mean of
  its most closed fifth of frames, lowest ``opening``: the mouth before and after a word), which also moves
  for rounding and spreading that do not open the mouth. Either alone recovers fewer offsets than both;
* for each lag ``L`` in ``[-max_offset, max_offset]`` frames, the Pearson correlation of each (band, mouth
  signal) pair over the frames where both exist (sound frame ``t`` against picture frame ``t + L``; at least
  ``min_overlap`` frames, else the lag is not scored), averaged over the 12 pairs and multiplied by
  ``(overlap / T) ** 0.25`` (a lag that compares fewer frames is noisier, so it is trusted a little less): the
  lag score. Pearson's correlation is indifferent to the gain and level of either signal, so nothing needs
  calibrating.

The offset is the lag of the highest score; the confidence is that score itself, about the mean correlation
between sound and lips at the offset (-1..1; 0 when nothing could be compared). Sharpness measures of the
SyncNet kind (peak minus median of the lag scores) separated in-sync lips from another word's lips less well
on the synthetic corpus (docs/SYNC.md), because a single word's correlation curve is broad either way.

Limits: the signals are energy envelopes, so the offset of a word is known to about one frame (a weak first
consonant such as "th" opens the mouth before the sound rises) and a clip needs a visible mouth that moves
with its speech; two clips of the same speaker saying different words still correlate (both go from rest
to open and back), so the confidence ranks clips rather than proving that the lips are the speaker's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.ndimage import gaussian_filter1d

from av_common.corpus import ROI_FPS

FPS = ROI_FPS
MAX_OFFSET_MS = 400.0
MIN_OVERLAP_FRAMES = 6
"""Fewest frames a lag must compare (240 ms at 25 fps): fewer give a correlation that is mostly chance."""
BANDS_HZ: tuple[tuple[float, float], ...] = ((50, 8000), (100, 300), (300, 700), (500, 1500), (1500, 3000),
                                             (3000, 6000))
"""The audio bands (Hz) whose log energies are correlated with the mouth (clipped to the Nyquist frequency)."""
MOUTH_SIZE = 32
"""The mouth region is resized to this many pixels square before the principal component and the distances."""
REST_FRACTION = 0.2
"""Share of the clip's frames that make up the rest shape (the most closed ones)."""
MIN_CONFIDENCE = 0.7
"""Default confidence a clip needs before its frames are re-timed (``prepare --sync-correct``,
``av-cli transcribe --sync auto``): on the synthetic corpus's B2 clips shifted by -400..400 ms, 94 % of the
estimates reach it and 90 % of those are right to +-1 frame, against 57 % of the rest (docs/SYNC.md). It does
not reject another word's lips: 73 % of those reach it too."""
MIN_CORRECTION_FRAMES = 2
"""Offsets smaller than this are left alone: the estimate itself is only good to +-1 frame, so re-timing by one
frame would move about a third of the clips that are in sync already (36 % on the synthetic corpus, 4.6 % with
2; docs/SYNC.md)."""
FLOOR_DB = 80.0
"""Each band's log energy is floored this far below its loudest frame (digital silence is not -inf dB)."""
AUDIO_SMOOTH_FRAMES = 1.0
"""Standard deviation (frames) of the Gaussian that smooths the band energies in time: the lips move more
slowly than the spectrum (coarticulation), and the smoothing also quiets the noise of a poor recording."""
OVERLAP_POWER = 0.25
"""A lag's correlation is multiplied by (overlap / clip length) ** this: fewer frames compared, less trust."""


@dataclass(frozen=True)
class SyncEstimate:
    """The result of :func:`estimate_offset` (the convention is the module's: ``offset_frames > 0`` = the
    picture lags the sound)."""

    offset_frames: int
    offset_ms: float
    confidence: float
    """The offset's score: the mean sound-lip correlation there times the overlap weight (-1..1); 0.0 when no
    lag could be scored."""
    lags: np.ndarray
    """[L] int: the lags (frames) that were tried."""
    scores: np.ndarray
    """[L] float: the score of each lag (:func:`lag_scores`; NaN where the clips overlapped by fewer than
    ``min_overlap`` frames)."""
    fps: float = FPS

    @property
    def measured(self) -> bool:
        """Whether any lag could be scored (a clip too short or without sound / frames cannot be)."""
        return bool(np.isfinite(self.scores).any())

    def to_dict(self) -> dict:
        return {"offset_frames": self.offset_frames, "offset_ms": round(self.offset_ms, 3),
                "confidence": round(self.confidence, 4), "fps": self.fps,
                "lags": [int(x) for x in self.lags],
                "scores": [None if not np.isfinite(s) else round(float(s), 4) for s in self.scores]}


def correction_frames(estimate: SyncEstimate, min_confidence: float = MIN_CONFIDENCE,
                      min_frames: int = MIN_CORRECTION_FRAMES) -> int:
    """The shift to apply with :func:`shift_frames`: ``estimate.offset_frames`` when the estimate's confidence is
    at least ``min_confidence`` and the offset at least ``min_frames`` frames either way, else 0."""
    if not estimate.measured or estimate.confidence < min_confidence or abs(estimate.offset_frames) < min_frames:
        return 0
    return int(estimate.offset_frames)


# ------------------------------------------------------------------------------------------- re-timing
def _index(num_frames: int, offset: int) -> np.ndarray:
    return np.clip(np.arange(num_frames) + int(offset), 0, max(num_frames - 1, 0))


def shift_frames(frames: np.ndarray, offset_frames: int) -> np.ndarray:
    """Correct a picture that lags the sound by ``offset_frames``: ``out[t] = frames[t + offset_frames]``,
    the last (``offset > 0``) or first (``offset < 0``) frame held where the clip has none. Same length, a
    new array. ``shift_frames(delay_frames(x, k), k)`` gives ``x`` back except the last ``k`` frames."""
    frames = np.asarray(frames)
    return frames[_index(len(frames), offset_frames)]


def delay_frames(frames: np.ndarray, offset_frames: int) -> np.ndarray:
    """The fault: make the picture lag the sound by ``offset_frames`` (``late-<N>ms`` of
    ``av_fusion_models.video_faults``): ``out[t] = frames[t - offset_frames]``, edge frames held."""
    frames = np.asarray(frames)
    return frames[_index(len(frames), -int(offset_frames))]


# ------------------------------------------------------------------------------------------- signals
def audio_features(audio: np.ndarray, sample_rate: int, num_frames: int, fps: float = FPS,
                   bands_hz: tuple[tuple[float, float], ...] = BANDS_HZ) -> np.ndarray:
    """[n, B] log band energies (dB) at the video's frame times ``t / fps``, ``n = min(num_frames, frames whose
    time lies within the audio)``; each band floored :data:`FLOOR_DB` below its maximum. Bands above the
    Nyquist frequency are dropped (B may be smaller than ``len(bands_hz)``)."""
    x = np.asarray(audio, dtype=np.float64)
    if x.ndim == 2:  # [samples, channels]
        x = x.mean(axis=1)
    if x.ndim != 1:
        raise ValueError(f"audio must be mono samples [N] (or [N, channels]), got shape {x.shape}")
    if sample_rate <= 0 or fps <= 0:
        raise ValueError("sample_rate and fps must be positive")
    duration = len(x) / sample_rate
    n = min(int(num_frames), int(math.floor(duration * fps + 1e-9)) + 1 if len(x) else 0)
    if n <= 0:
        return np.zeros((0, 0))
    hop = sample_rate / fps
    win = max(16, int(round(2 * hop)))
    win += win % 2
    pad = np.pad(x, (win // 2, win // 2 + win))
    starts = np.round(np.arange(n) * hop).astype(np.int64)
    segs = pad[starts[:, None] + np.arange(win)[None, :]] * np.hanning(win)[None, :]
    power = np.abs(np.fft.rfft(segs, axis=1)) ** 2
    freqs = np.fft.rfftfreq(win, 1.0 / sample_rate)
    cols = []
    for lo, hi in bands_hz:
        sel = (freqs >= lo) & (freqs < min(hi, sample_rate / 2))
        if sel.sum() < 1 or lo >= sample_rate / 2:
            continue
        db = 10.0 * np.log10(power[:, sel].sum(axis=1) + 1e-20)
        cols.append(np.maximum(db, db.max() - FLOOR_DB))
    if not cols:
        return np.zeros((n, 0))
    return gaussian_filter1d(np.stack(cols, axis=1), AUDIO_SMOOTH_FRAMES, axis=0, mode="nearest")


def _mouth_pixels(frames: np.ndarray, size: int = MOUTH_SIZE) -> np.ndarray:
    """[T, size*size] float: the lower two thirds and middle two thirds of each crop, resized (area)."""
    import cv2

    f = np.asarray(frames)
    if f.ndim == 4:  # colour: mean of the channels
        f = f.mean(axis=3)
    if f.ndim != 3:
        raise ValueError(f"frames must be [T, H, W] (or [T, H, W, C]), got shape {f.shape}")
    h, w = f.shape[1:]
    region = f[:, h // 3:, w // 6: w - w // 6].astype(np.float32)
    if region.shape[1] < 1 or region.shape[2] < 1:
        raise ValueError(f"frames of {h} x {w} pixels are too small for a mouth region")
    out = np.stack([cv2.resize(r, (size, size), interpolation=cv2.INTER_AREA) for r in region])
    return out.reshape(len(f), -1).astype(np.float64)


def mouth_features(frames: np.ndarray) -> np.ndarray:
    """[T, 2]: ``opening`` (first principal component of the mouth region, rising as it darkens) and
    ``activity`` (log(1 + RMS distance from the rest shape, the mean of the most closed fifth of the frames));
    see the module docstring."""
    x = _mouth_pixels(frames)
    t = len(x)
    if t == 0:
        return np.zeros((0, 2))
    xc = x - x.mean(axis=0)
    gram = xc @ xc.T  # [T, T]: the principal component without a [P, P] matrix
    w, u = np.linalg.eigh(gram)
    opening = u[:, -1] * math.sqrt(max(float(w[-1]), 0.0))
    darkness = -x.mean(axis=1)
    if np.dot(opening, darkness - darkness.mean()) < 0:
        opening = -opening
    m = min(t, max(2, int(round(REST_FRACTION * t))))
    rest = x[np.argsort(opening)[:m]].mean(axis=0)  # the most closed fifth of the clip
    activity = np.log1p(np.sqrt(((x - rest) ** 2).mean(axis=1)))
    return np.stack([opening, activity], axis=1)


# ------------------------------------------------------------------------------------------- scoring
def _varies(x: np.ndarray) -> bool:
    """Whether any column of ``x`` [T, C] changes over time (a still picture or digital silence does not)."""
    return bool(x.size) and bool((np.ptp(x, axis=0) > 1e-9).any())


def lag_scores(a: np.ndarray, v: np.ndarray, max_lag: int, min_overlap: int = MIN_OVERLAP_FRAMES
               ) -> tuple[np.ndarray, np.ndarray]:
    """(lags [-max_lag..max_lag], scores): for each lag ``L`` the mean over the columns of ``a`` [T, A] and
    ``v`` [T, V] of the Pearson correlation between ``a[t]`` and ``v[t + L]`` over the overlap, times
    ``(overlap / T) ** OVERLAP_POWER``; NaN where the overlap is shorter than ``min_overlap``. A column without
    variance over an overlap correlates 0."""
    a = np.asarray(a, dtype=np.float64)
    v = np.asarray(v, dtype=np.float64)
    n = min(len(a), len(v))
    a, v = a[:n], v[:n]
    lags = np.arange(-int(max_lag), int(max_lag) + 1)
    scores = np.full(len(lags), np.nan)
    if a.ndim != 2 or v.ndim != 2 or a.shape[1] == 0 or v.shape[1] == 0:
        return lags, scores
    for j, lag in enumerate(lags):
        t0, t1 = max(0, -lag), min(n, n - lag)
        if t1 - t0 < max(2, min_overlap):
            continue
        x = a[t0:t1] - a[t0:t1].mean(axis=0)
        y = v[t0 + lag:t1 + lag] - v[t0 + lag:t1 + lag].mean(axis=0)
        sx, sy = np.sqrt((x * x).sum(axis=0)), np.sqrt((y * y).sum(axis=0))
        cov = x.T @ y
        den = sx[:, None] * sy[None, :]
        r = np.divide(cov, den, out=np.zeros_like(cov), where=den > 1e-12)
        scores[j] = float(r.mean()) * ((t1 - t0) / n) ** OVERLAP_POWER
    return lags, scores


def estimate_offset(audio: np.ndarray, sample_rate: int, frames: np.ndarray, fps: float = FPS,
                    max_offset_ms: float = MAX_OFFSET_MS, min_overlap: int = MIN_OVERLAP_FRAMES) -> SyncEstimate:
    """The offset of ``frames`` (mouth crops [T, H, W] uint8 at ``fps``, frame 0 at the audio's time 0) against
    ``audio`` (float samples, mono, at ``sample_rate``), searched over +-``max_offset_ms`` (rounded down to
    whole frames), and its confidence (see the module docstring). ``offset_frames > 0``: the picture lags the
    sound; correct with :func:`shift_frames`. A clip that cannot be compared (shorter than ``min_overlap``
    frames, no sound, a still picture) gets offset 0 and confidence 0.0."""
    frames = np.asarray(frames)
    max_lag = int(math.floor(max_offset_ms * fps / 1000.0 + 1e-9))
    if max_lag < 0:
        raise ValueError("max_offset_ms must be >= 0")
    a = audio_features(audio, sample_rate, len(frames), fps)
    n = len(a)
    v = mouth_features(frames[:n]) if n >= max(2, min_overlap) else np.zeros((0, 2))
    if len(v) and _varies(a) and _varies(v):
        lags, scores = lag_scores(a, v, min(max_lag, n - max(2, min_overlap)), min_overlap)
        # lags beyond what the clip allows were not tried: report them as NaN, so every estimate has the same lags
        full = np.arange(-max_lag, max_lag + 1)
        padded = np.full(len(full), np.nan)
        padded[np.searchsorted(full, lags)] = scores
        lags, scores = full, padded
    else:
        lags, scores = np.arange(-max_lag, max_lag + 1), np.full(2 * max_lag + 1, np.nan)
    if not np.isfinite(scores).any():
        return SyncEstimate(0, 0.0, 0.0, lags, scores, float(fps))
    # the best lag; among equal scores the one nearest 0 (no evidence for an offset is not an offset)
    top = np.flatnonzero(scores >= np.nanmax(scores) - 1e-12)
    best = int(top[np.argmin(np.abs(lags[top]))])
    offset = int(lags[best])
    return SyncEstimate(offset, offset * 1000.0 / fps, float(scores[best]), lags, scores, float(fps))
