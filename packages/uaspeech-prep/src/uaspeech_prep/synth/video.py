"""Block videos of the talking face: one AVI (XVID, MJPG fallback) per speaker and block, renamed
``.divx`` like the release, plus its frame index ``<UTT_ID> <BEGIN> <END>`` (0-based, END inclusive).

A block video is ``LEAD_FRAMES`` of rest, then each word's segment followed by ``GAP_FRAMES`` of rest
(after the last word: ``LEAD_FRAMES``). A word's segment has ``round(duration * fps)`` frames, frame k
showing the mouth at time k / fps of the word's wav, so the wav and the segment have the same
length within half a frame. Every frame has its own head pose and lighting (the recording session's plus a
slow drift, :mod:`.variation`); the mouth follows the word's phonemes with this repetition's opening and lag,
weakened by :mod:`.lips` when the corpus is synthesized with a lip visibility below 1.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from uaspeech_prep.synth import lips as lp
from uaspeech_prep.synth.face import FRAME_SIZE, NEUTRAL_POSE, Face, Look
from uaspeech_prep.synth.variation import Pose
from uaspeech_prep.synth.visemes import VISEMES, keyframes, trajectory

FPS = 30.0
LEAD_FRAMES = 15
GAP_FRAMES = 12
FOURCCS = ("XVID", "MJPG")


class VideoWriteError(RuntimeError):
    pass


@dataclass(frozen=True)
class WordTrack:
    """What the video needs of one utterance: its id, duration (s) and phoneme events (s, name), and how
    this repetition articulates: a factor on the mouth opening, one factor per phoneme target, the
    lag of the mouth behind the sound (s), and how its lips are weakened (:mod:`.lips`; None: not at all)."""

    utt_id: str
    duration: float
    phonemes: Sequence[tuple[float, str]]
    mouth_scale: float = 1.0
    open_factors: Sequence[float] | None = None
    lag_s: float = 0.0
    lips: lp.WeakLips | None = None


MAX_OPEN_PARAM = 1.25
"""Largest ``open`` parameter drawn (the mouth patch of :mod:`.face` holds it)."""


def word_frames(duration: float, fps: float = FPS) -> int:
    return max(1, int(round(duration * fps)))


def mouth_params(track: WordTrack, fps: float = FPS) -> np.ndarray:
    """(n_frames, 5) mouth parameters of one word's segment."""
    n = word_frames(track.duration, fps)
    times = np.arange(n) / fps
    ph = [(min(max(0.0, t + track.lag_s), track.duration), name) for t, name in track.phonemes]
    weak = track.lips
    if weak is None:
        p = trajectory(keyframes(ph, track.duration, track.open_factors), times)
        p[:, 0] = np.clip(p[:, 0] * track.mouth_scale, 0.0, MAX_OPEN_PARAM)
        return p
    # weaker lips (:mod:`.lips`): confusable visemes share a shape, each target is perturbed, the articulation
    # moves towards rest, and a slow random movement is added
    rng = weak.rng()
    rest = VISEMES["rest"]
    keys = [(t, sh if sh == rest else lp.jitter_shape(sh, weak.jitter, rng))
            for t, sh in keyframes(ph, track.duration, track.open_factors, lp.confused_shapes(weak.merge))]
    p = lp.towards_rest(trajectory(keys, times), weak.amplitude) + lp.jitter(n, fps, weak.jitter, rng)
    p[:, 0] *= track.mouth_scale
    return lp.clip_params(p, MAX_OPEN_PARAM)


def frame_index(tracks: Sequence[WordTrack], fps: float = FPS) -> list[tuple[str, int, int]]:
    """[(utt_id, begin, end)] of the block video, END inclusive."""
    rows, pos = [], LEAD_FRAMES
    for i, tr in enumerate(tracks):
        n = word_frames(tr.duration, fps)
        rows.append((tr.utt_id, pos, pos + n - 1))
        pos += n + (GAP_FRAMES if i < len(tracks) - 1 else 0)
    return rows


def total_frames(tracks: Sequence[WordTrack], fps: float = FPS) -> int:
    rows = frame_index(tracks, fps)
    return (rows[-1][2] + 1 if rows else LEAD_FRAMES) + LEAD_FRAMES


def _open_writer(path: Path, fps: float) -> tuple[cv2.VideoWriter, str]:
    for code in FOURCCS:
        w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*code), fps, FRAME_SIZE)
        if w.isOpened():
            if code == "MJPG":
                w.set(cv2.VIDEOWRITER_PROP_QUALITY, 85)
            return w, code
        w.release()
    raise VideoWriteError(f"OpenCV cannot write AVI video ({'/'.join(FOURCCS)}) to {path}; is its FFmpeg backend present?")


def probe(path: str | os.PathLike) -> tuple[int, float, tuple[int, int]]:
    """(frame count, fps, (width, height)) as read back by OpenCV."""
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise VideoWriteError(f"OpenCV cannot open {path}")
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        fps = float(cap.get(cv2.CAP_PROP_FPS))
        size = (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))
    finally:
        cap.release()
    return n, fps, size


def write_block_video(path: Path, tracks: Sequence[WordTrack], look: Look, rng: np.random.Generator,
                      face: Face | None = None, fps: float = FPS,
                      poses: Sequence[Pose] | None = None) -> list[tuple[str, int, int]]:
    """Render and write one block video at ``path`` (atomically: a temporary ``.avi`` renamed at the end,
    after checking that OpenCV reads it back with the right frame count and rate). ``poses``: head pose and
    lighting of every frame (:func:`uaspeech_prep.synth.variation.block_poses`; default: all neutral).
    Returns the frame index."""
    face = face or Face()
    path = Path(path)
    expected = total_frames(tracks, fps)
    if poses is not None and len(poses) != expected:
        raise ValueError(f"{len(poses)} poses for a video of {expected} frames")
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}.avi")
    writer, _ = _open_writer(tmp, fps)
    rest = face.draw(VISEMES["rest"].as_array())
    n_written = 0

    def put(img: np.ndarray) -> None:
        nonlocal n_written
        pose = poses[n_written] if poses is not None else NEUTRAL_POSE
        writer.write(cv2.cvtColor(face.finish(img, look, rng, pose), cv2.COLOR_RGB2BGR))
        n_written += 1

    try:
        for _ in range(LEAD_FRAMES):
            put(rest)
        for i, tr in enumerate(tracks):
            for p in mouth_params(tr, fps):
                put(face.draw(p))
            for _ in range(GAP_FRAMES if i < len(tracks) - 1 else 0):
                put(rest)
        for _ in range(LEAD_FRAMES):
            put(rest)
    except BaseException:
        writer.release()
        tmp.unlink(missing_ok=True)
        raise
    writer.release()
    assert n_written == expected, (n_written, expected)
    n, got_fps, size = probe(tmp)
    if n != expected or abs(got_fps - fps) > 1e-3 or size != FRAME_SIZE:
        tmp.unlink(missing_ok=True)
        raise VideoWriteError(
            f"{path}: OpenCV reads back {n} frames at {got_fps} fps, size {size}; wrote {expected} at {fps}, {FRAME_SIZE}"
        )
    os.replace(tmp, path)
    return frame_index(tracks, fps)


def write_frame_index(path: Path, rows: Sequence[tuple[str, int, int]]) -> None:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text("".join(f"{u} {b} {e}\n" for u, b, e in rows), encoding="utf-8")
    os.replace(tmp, path)


def read_frame_index(path: str | os.PathLike) -> list[tuple[str, int, int]]:
    """Read a frame index (whitespace or comma separated, ``#`` comments and blank lines ignored)."""
    rows = []
    for ln, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.replace(",", " ").split()
        if len(parts) != 3:
            raise ValueError(f"{path}:{ln}: expected '<UTT_ID> <BEGIN> <END>', got {line!r}")
        rows.append((parts[0], int(parts[1]), int(parts[2])))
    return rows
