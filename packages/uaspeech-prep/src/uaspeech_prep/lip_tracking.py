"""Landmarks for a stream of frames: the face landmarker on key frames, optical flow in between.

The mediapipe face landmarker costs ~8-10 ms of CPU per call whatever the frame size, 25-30x the decode of
a 640x480 frame. :class:`FlowTracker` therefore runs it only on *key frames* and carries the few landmarks
the lip ROI needs (``points``: the stable eye corners / nose tip and the outer lip ring, 25 of the 478)
from frame to frame with pyramidal Lucas-Kanade optical flow (``cv2.calcOpticalFlowPyrLK``) on a
face-sized window of the grayscale frame. Unlike interpolating landmarks between sparse detections,
flow follows the lips as they open and close between key frames.

A frame becomes a key frame (the landmarker runs on it) when

- it is forced: the first frame of a sequence or of a clip (``force=True``), or the previous frame was
  not processed (a gap in the stream);
- ``max_gap`` frames have been tracked since the last key frame (a bound on drift);
- tracking quality drops: a point is lost (LK status 0), the matched patches differ too much
  (``max_patch_err``), or fewer than ``min_good`` of the points pass the forward-backward check (tracked
  forward to this frame and back, a point must land within ``max_fb_px`` of where it started; Kalal et al.
  2010), or any stable point fails it. A cut to another shot or a face that turns away fails here;
- the face moves so far from where the last key frame saw it that the region the ROI needs leaves the
  window of the frame that is kept (``motion``).

A point that fails the forward-backward check while enough others pass is not trusted: it is moved by
the similarity transform (rotation, scale, shift) fitted to the good points. The other landmarks of the
478-point mesh, which are not tracked, follow the same similarity transform, so every frame has a full
(478, 2) landmark set. When the landmarker finds no face, the following frames get no landmarks (the
ROI interpolates them) and the landmarker retries every ``retry_every`` frames.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class FlowParams:
    max_gap: int = 29
    """Longest run of tracked frames between two key frames (0: the landmarker on every frame)."""
    retry_every: int = 3
    """While no face is found, the landmarker retries on every n-th frame."""
    max_fb_px: float = 1.0
    """Forward-backward error above which a tracked point is not trusted (source pixels)."""
    max_patch_err: float = 12.0
    """Mean over the points of LK's patch error (mean absolute gray-level difference between a point's window
    and its match) above which the frame is not trusted: a cut to another shot that the forward-backward
    check might pass. Tracking the astronaut gives 0.4-1.7; a cut to the same face shifted gave 23."""
    min_good: float = 0.8
    """Fraction of the tracked points that must pass the forward-backward check, else a key frame."""
    win: int = 9
    """LK window side (pixels at each pyramid level). 9 tracked the astronaut tests best (0.38 px from the
    landmarker on a moving head, lip opening within 0.14 px) and costs least; 15 did worse on both."""
    levels: int = 1
    """LK pyramid levels above full resolution (motion up to ~win * 2**levels / 2 px per frame: 9 px, while a
    head at 30 fps moves a few px per frame; faster motion fails the checks and makes a key frame)."""
    reach: float = 0.95
    """How far the ROI crop may reach from the mouth centre, in outer-eye-corner distances (a 96x96 crop of
    2 reference mouth widths, rotated: 0.42 x scale + 0.1). With the tracked points' bounding box it sets
    the part of the frame that is converted to gray and kept."""
    motion: float = 0.5
    """Head motion allowed between key frames, in eye-corner distances: the kept window's extra margin. A
    face that moves further triggers a key frame (and a new window)."""


@dataclass
class FrameLandmarks:
    gray: np.ndarray
    """The frame in grayscale: the whole frame, or (``offset`` != (0, 0) or a smaller shape) the window of
    it the ROI needs, whose top-left pixel is ``offset`` in the frame."""
    landmarks: np.ndarray | None
    """(478, 2) source pixels (whole-frame coordinates), or None (no face known)."""
    attempted: bool
    """The landmarker ran on this frame (a key frame)."""
    tracked: bool
    """The landmarks come from optical flow, not from the landmarker."""
    offset: tuple[int, int] = (0, 0)
    """(x, y) of ``gray``'s top-left pixel in the frame."""


def similarity_to_reference(points: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Least-squares similarity transforms (Umeyama in 2-D, closed form with complex numbers) mapping
    ``points`` (n, P, 2) onto ``reference`` (P, 2): returns (n, 2, 3) matrices [sR | t]."""
    z = points[..., 0] + 1j * points[..., 1]  # (n, P)
    w = reference[:, 0] + 1j * reference[:, 1]  # (P,)
    zc = z - z.mean(axis=1, keepdims=True)
    wc = w - w.mean()
    a = (wc[None, :] * np.conj(zc)).sum(axis=1) / (np.abs(zc) ** 2).sum(axis=1)  # s * exp(i theta)
    b = w.mean() - a * z.mean(axis=1)
    m = np.empty((len(z), 2, 3))
    m[:, 0, 0], m[:, 0, 1], m[:, 0, 2] = a.real, -a.imag, b.real
    m[:, 1, 0], m[:, 1, 1], m[:, 1, 2] = a.imag, a.real, b.imag
    return m


def fit_similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (2, 3) mapping ``src`` (P, 2) onto ``dst`` (P, 2)."""
    return similarity_to_reference(src[None], dst)[0]


def _gray_window(frame: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    x0, y0, x1, y1 = box
    part = frame[y0:y1, x0:x1]
    return np.ascontiguousarray(part) if part.ndim == 2 else cv2.cvtColor(part, cv2.COLOR_BGR2GRAY)


class FlowTracker:
    """Key-frame landmarks plus LK tracking of ``points`` (mesh indices) over a stream of frames.

    ``landmarker`` is a :class:`uaspeech_prep.roi.LipTracker` (anything with ``process(frame, t_ms)`` ->
    (L, 2) or None and ``new_sequence()``). ``stable`` are the indices (a subset of ``points``) that are
    rigid with the skull: all of them must track well; ``mouth`` (a subset too) gives the mouth centre and
    ``eyes`` (two of ``stable``) the face size. Only a face-sized window of each frame is converted to gray
    (the part the tracking and the ROI crop need); it is fixed from one key frame to the next, so that
    consecutive windows share coordinates.
    """

    def __init__(self, landmarker, points, stable, mouth, eyes, params: FlowParams | None = None):
        self.landmarker = landmarker
        self.params = params or FlowParams()
        self.points = np.asarray(points, dtype=np.int64)
        pos = {int(k): i for i, k in enumerate(self.points)}
        self._stable = np.array([pos[int(k)] for k in stable], dtype=np.int64)
        self._mouth = np.array([pos[int(k)] for k in mouth], dtype=np.int64)
        self._eyes = (pos[int(eyes[0])], pos[int(eyes[1])])
        p = self.params
        self._lk = dict(winSize=(p.win, p.win), maxLevel=p.levels,
                        criteria=(cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 20, 0.03))
        self._lk_margin = p.win * (1 << p.levels) / 2  # LK looks this far around a point
        self.n_keyframes = 0
        self.n_tracked = 0
        self.reset()

    def reset(self) -> None:
        """Forget the previous frame: the next frame is a key frame. The landmarker's own sequence is not
        touched (see :meth:`new_sequence`)."""
        self._prev_i: int | None = None
        self._prev_gray: np.ndarray | None = None
        self._prev_full: np.ndarray | None = None  # (478, 2) landmarks of the previous frame
        self._box: tuple[int, int, int, int] | None = None  # the window, fixed between key frames
        self._since_key = 0
        self._since_try = 0

    def new_sequence(self) -> None:
        """An unrelated sequence starts (another clip or block video)."""
        self.landmarker.new_sequence()
        self.reset()

    def _needed(self, lo, hi, mouth, eye_d: float, extra: float) -> tuple[float, float, float, float]:
        """The frame region that tracking and the crop need around ROI points with bounding box ``lo``..``hi``,
        mouth centre ``mouth`` and outer-eye-corner distance ``eye_d``, grown by ``extra`` eye distances."""
        r = (self.params.reach + extra) * eye_d
        m = self._lk_margin + extra * eye_d
        return (min(lo[0] - m, mouth[0] - r), min(lo[1] - m, mouth[1] - r),
                max(hi[0] + m, mouth[0] + r), max(hi[1] + m, mouth[1] + r))

    def _geometry(self, pts: np.ndarray):
        """(bounding-box min, max, mouth centre, eye distance) of ROI points ``pts`` (P, 2), as floats."""
        a, b = self._eyes
        lo, hi = pts.min(axis=0).tolist(), pts.max(axis=0).tolist()
        mouth = pts[self._mouth].mean(axis=0).tolist()
        (ax, ay), (bx, by) = pts[a].tolist(), pts[b].tolist()
        return lo, hi, mouth, float(np.hypot(ax - bx, ay - by))

    def _window(self, pts: np.ndarray, w: int, h: int) -> tuple[int, int, int, int]:
        x0, y0, x1, y1 = self._needed(*self._geometry(pts), self.params.motion)
        return (max(0, int(x0)), max(0, int(y0)), min(w, int(np.ceil(x1)) + 1), min(h, int(np.ceil(y1)) + 1))

    def _fits(self, pts: np.ndarray, box, w: int, h: int) -> bool:
        """The region the ROI points ``pts`` need (no motion margin) lies in the window ``box`` (within the
        frame: a face at the frame's edge needs what is there)."""
        x0, y0, x1, y1 = self._needed(*self._geometry(pts), 0.0)
        return (max(x0, 0) >= box[0] and max(y0, 0) >= box[1] and min(x1, w - 1) <= box[2] - 1
                and min(y1, h - 1) <= box[3] - 1)

    def step(self, i: int, frame: np.ndarray, t_ms: float, force: bool = False) -> FrameLandmarks:
        """Landmarks of frame ``i`` (BGR or gray) at ``t_ms``; ``force``: make it a key frame."""
        h, w = frame.shape[:2]
        contiguous = self._prev_i is not None and i == self._prev_i + 1
        prev_full, prev_gray, box = self._prev_full, self._prev_gray, self._box
        self._prev_i = i
        if not contiguous:
            force = True
        if not force and prev_full is None:  # lost: retry the landmarker every retry_every frames
            self._since_try += 1
            if self._since_try < self.params.retry_every:
                gray = self._prev_gray = _gray_window(frame, (0, 0, w, h))
                return FrameLandmarks(gray, None, False, False)
            force = True
        if not force and self._since_key < self.params.max_gap and box is not None:
            gray = _gray_window(frame, box)
            full, pts = self._track(prev_gray, gray, prev_full, box)
            if full is not None and self._fits(pts, box, w, h):
                self._since_key += 1
                self._prev_full, self._prev_gray = full, gray
                self.n_tracked += 1
                return FrameLandmarks(gray, full, False, True, (box[0], box[1]))
        # key frame
        lms = self.landmarker.process(frame, t_ms)
        self.n_keyframes += 1
        self._since_key = 0
        self._since_try = 0
        self._prev_full = lms
        box = self._box = self._window(lms[self.points], w, h) if lms is not None else None
        gray = self._prev_gray = _gray_window(frame, box or (0, 0, w, h))
        return FrameLandmarks(gray, lms, True, False, (box[0], box[1]) if box else (0, 0))

    def _track(self, g0: np.ndarray, g1: np.ndarray, full0: np.ndarray, box):
        """(all landmarks, the tracked ones) on window ``g1``, tracked from ``full0`` on window ``g0`` (both at
        ``box``), or (None, None) when tracking is not trustworthy."""
        p = self.params
        pts0 = full0[self.points]
        # LK on the points' bounding box plus its reach only: the pyramids cost in proportion to the area
        (lx, ly), (hx, hy) = pts0.min(axis=0).tolist(), pts0.max(axis=0).tolist()
        m = self._lk_margin
        gh, gw = g0.shape
        x0, y0 = max(0, int(lx - box[0] - m)), max(0, int(ly - box[1] - m))
        x1, y1 = min(gw, int(hx - box[0] + m) + 2), min(gh, int(hy - box[1] + m) + 2)
        a, b = g0[y0:y1, x0:x1], g1[y0:y1, x0:x1]
        off = np.array((box[0] + x0, box[1] + y0), dtype=np.float64)
        q0 = (pts0 - off).astype(np.float32).reshape(-1, 1, 2)
        q1, st1, err = cv2.calcOpticalFlowPyrLK(a, b, q0, None, **self._lk)
        if not st1.all() or float(err.mean()) > p.max_patch_err:
            return None, None
        qb, stb, _ = cv2.calcOpticalFlowPyrLK(b, a, q1, None, **self._lk)
        d = (qb - q0).reshape(-1, 2)
        good = ((d * d).sum(axis=1) <= p.max_fb_px ** 2) & (stb.ravel() > 0)
        n_good = int(np.count_nonzero(good))
        if n_good < p.min_good * len(good) or not good[self._stable].all():
            return None, None
        pts1 = q1.reshape(-1, 2).astype(np.float64) + off
        # the untracked mesh points, and any tracked point that failed the check, move with the face
        sim = fit_similarity(pts0[good], pts1[good])
        full1 = full0 @ sim[:, :2].T + sim[:, 2]
        if n_good < len(good):
            full1[self.points[good]] = pts1[good]
            return full1, full1[self.points]
        full1[self.points] = pts1
        return full1, pts1
