"""Video and file I/O with OpenCV, written atomically.

Every output goes to a hidden temporary name in its final directory and is renamed into place only
when complete, so a file with a final name is never half-written (a crash leaves at most a
``.<name>.tmp-<pid>.<ext>`` file, which :func:`remove_stale_temps` cleans up).

Frame rate, size and frame count are always read from the container (:func:`probe`).
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from av_common.files import pid_alive

VIDEO_EXTENSIONS: tuple[str, ...] = (".divx", ".avi", ".mp4", ".mkv", ".mov", ".m4v", ".mpg", ".mpeg", ".wmv", ".dv")

_TEMP_RE = re.compile(r"^\..+\.tmp-(?P<pid>\d+)(?:\.[A-Za-z0-9]+)?$")


class VideoError(RuntimeError):
    """A video could not be opened, read or written."""


@dataclass(frozen=True)
class VideoInfo:
    path: str
    fps: float
    width: int
    height: int
    frame_count: int
    """As declared by the container (exact for the mp4 files written here; may be approximate for AVI)."""

    @property
    def duration_s(self) -> float:
        return self.frame_count / self.fps if self.fps > 0 else 0.0


_DECODE_THREADS: int | None = None


def set_decode_threads(n: int | None) -> None:
    """FFmpeg decoding threads of the captures opened by :func:`open_capture` (None: FFmpeg's choice).

    A process pool of N workers on N cores sets 1: FFmpeg's own threads then only oversubscribe the cores
    (measured on a 640x480 XVID: 0.40 ms of CPU per frame with FFmpeg's threads, 0.31 ms with one)."""
    global _DECODE_THREADS
    _DECODE_THREADS = n


def open_capture(path: str | Path) -> cv2.VideoCapture:
    """``cv2.VideoCapture`` of ``path`` with the decoding threads set by :func:`set_decode_threads`."""
    if _DECODE_THREADS is None:
        return cv2.VideoCapture(str(path))
    return cv2.VideoCapture(str(path), cv2.CAP_FFMPEG, [cv2.CAP_PROP_N_THREADS, int(_DECODE_THREADS)])


def probe(path: str | Path) -> VideoInfo:
    """Frame rate, size and declared frame count, read from the container (never assumed)."""
    path = Path(path)
    if not path.is_file():
        raise VideoError(f"{path}: no such video file")
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise VideoError(f"{path}: OpenCV cannot open this video")
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        width = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH) or 0)
        height = int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT) or 0)
        count = int(round(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0))
    finally:
        cap.release()
    if not (fps > 0 and np.isfinite(fps)):
        raise VideoError(f"{path}: the container declares no usable frame rate ({fps!r})")
    if width <= 0 or height <= 0:
        raise VideoError(f"{path}: the container declares no frame size ({width}x{height})")
    return VideoInfo(str(path), fps, width, height, max(count, 0))


def iter_frames(path: str | Path, stop: int | None = None) -> Iterator[np.ndarray]:
    """Decode frames (BGR uint8) sequentially from the start; ``stop`` = number of frames at most."""
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise VideoError(f"{path}: OpenCV cannot open this video")
    try:
        n = 0
        while stop is None or n < stop:
            ok, frame = cap.read()
            if not ok or frame is None:
                break
            n += 1
            yield frame
    finally:
        cap.release()


def read_frames(path: str | Path, gray: bool = False) -> list[np.ndarray]:
    frames = list(iter_frames(path))
    if gray:
        frames = [cv2.cvtColor(f, cv2.COLOR_BGR2GRAY) if f.ndim == 3 else f for f in frames]
    return frames


# --- atomic files -----------------------------------------------------------------------------


def temp_path_for(path: str | Path) -> Path:
    """Hidden temporary name in the same directory, keeping the extension (OpenCV picks the
    container from it): ``dir/.<name>.tmp-<pid>.<ext>``."""
    path = Path(path)
    return path.with_name(f".{path.name}.tmp-{os.getpid()}{path.suffix}")


def is_temp_name(name: str) -> bool:
    return bool(_TEMP_RE.match(name))


def remove_stale_temps(root: str | Path) -> list[Path]:
    """Delete temporary files left under ``root`` by processes that no longer run."""
    removed: list[Path] = []
    root = Path(root)
    if not root.is_dir():
        return removed
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            m = _TEMP_RE.match(name)
            if m and not pid_alive(int(m["pid"])):
                p = Path(dirpath) / name
                try:
                    p.unlink()
                    removed.append(p)
                except OSError:
                    pass
    return removed


def find_temps(root: str | Path) -> list[Path]:
    root = Path(root)
    if not root.is_dir():
        return []
    return sorted(Path(d) / n for d, _s, files in os.walk(root) for n in files if _TEMP_RE.match(n))


def atomic_write_text(path: str | Path, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path_for(path)
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_copy(src: str | Path, dst: str | Path) -> None:
    """Copy (never move or link) ``src`` to ``dst`` through a temporary name; keeps the mtime."""
    src, dst = Path(src), Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path_for(dst)
    try:
        shutil.copyfile(src, tmp)
        shutil.copystat(src, tmp)
        os.replace(tmp, dst)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def is_copy_of(src: str | Path, dst: str | Path) -> bool:
    """True when ``dst`` exists with the size and mtime of ``src`` (what :func:`atomic_copy` leaves)."""
    try:
        s, d = os.stat(src), os.stat(dst)
    except OSError:
        return False
    return s.st_size == d.st_size and int(s.st_mtime) == int(d.st_mtime)


class AtomicVideoWriter:
    """``cv2.VideoWriter`` onto a temporary name, renamed to ``path`` by :meth:`commit`.

    Frames may be BGR (H, W, 3) or grayscale (H, W); grayscale is written as 3 equal channels.
    Used as a context manager it commits on success and removes the temporary file on error.
    """

    def __init__(self, path: str | Path, fps: float, size: tuple[int, int], fourcc: str = "mp4v"):
        self.path = Path(path)
        self.fps = float(fps)
        self.size = (int(size[0]), int(size[1]))  # (width, height)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = temp_path_for(self.path)
        self.frames_written = 0
        self._writer = cv2.VideoWriter(str(self.tmp), cv2.VideoWriter_fourcc(*fourcc), self.fps, self.size, True)
        if not self._writer.isOpened():
            self._writer.release()
            self.tmp.unlink(missing_ok=True)
            raise VideoError(f"{self.path}: cannot open a {fourcc} writer ({self.size[0]}x{self.size[1]} @ {fps} fps)")

    def write(self, frame: np.ndarray) -> None:
        if frame.ndim == 2:
            frame = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
        h, w = frame.shape[:2]
        if (w, h) != self.size:
            raise VideoError(f"{self.path}: frame of {w}x{h} written to a {self.size[0]}x{self.size[1]} video")
        self._writer.write(np.ascontiguousarray(frame))
        self.frames_written += 1

    def commit(self) -> Path:
        self._writer.release()
        if self.frames_written == 0:
            self.tmp.unlink(missing_ok=True)
            raise VideoError(f"{self.path}: no frames to write")
        if not self.tmp.is_file() or self.tmp.stat().st_size == 0:
            self.tmp.unlink(missing_ok=True)
            raise VideoError(f"{self.path}: the writer produced no file (is the disk full?)")
        # OpenCV does not report a failed write (a full disk): read back what landed before the rename,
        # so a truncated video never gets the final name (a rerun would take it for finished work)
        try:
            landed = probe(self.tmp).frame_count
        except VideoError:
            landed = 0
        if landed != self.frames_written:
            self.tmp.unlink(missing_ok=True)
            raise VideoError(f"{self.path}: {self.frames_written} frames written but the file holds {landed} "
                             "(is the disk full?): not committed; free space and rerun to resume")
        with open(self.tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(self.tmp, self.path)
        return self.path

    def abort(self) -> None:
        self._writer.release()
        self.tmp.unlink(missing_ok=True)

    def __enter__(self) -> AtomicVideoWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()


def write_video(path: str | Path, frames: list[np.ndarray], fps: float, fourcc: str = "mp4v") -> Path:
    """Write all ``frames`` atomically; returns the final path."""
    if not frames:
        raise VideoError(f"{path}: no frames to write")
    h, w = frames[0].shape[:2]
    with AtomicVideoWriter(path, fps, (w, h), fourcc) as wr:
        for f in frames:
            wr.write(f)
    return Path(path)


def video_is_complete(path: str | Path, expected_frames: int | None = None,
                      size: tuple[int, int] | None = None) -> bool:
    """A finished output: it opens, declares >= 1 frame (or exactly ``expected_frames``) and,
    when given, the (width, height) ``size``."""
    try:
        info = probe(path)
    except VideoError:
        return False
    if info.frame_count <= 0:
        return False
    if expected_frames is not None and info.frame_count != expected_frames:
        return False
    if size is not None and (info.width, info.height) != tuple(size):
        return False
    return True
