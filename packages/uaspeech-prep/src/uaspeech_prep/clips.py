"""Per-word clips cut from the block videos with the frame index (docs/LAYOUT.md section 1).

Cutting is frame-exact: one sequential decode pass per block video, every clip taking frames
BEGIN..END (0-based, END inclusive) as they stream by; no seeking (seeking in compressed video lands
on key frames, so it is neither exact nor fast). Overlapping ranges are fine. Frames before a range
are only grabbed (decoded, not converted). Clips are written as mp4v at the container's frame rate.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from uaspeech_prep import corpus
from uaspeech_prep.video_io import AtomicVideoWriter, VideoError, VideoInfo, open_capture, probe

_SPLIT_RE = re.compile(r"[\s,]+")


class FrameIndexError(ValueError):
    """A malformed frame index; the message names the file and line."""


@dataclass(frozen=True)
class FrameRange:
    utt_id: str
    begin: int
    end: int
    """Inclusive."""
    line: int = 0

    @property
    def n_frames(self) -> int:
        return self.end - self.begin + 1


@dataclass(frozen=True)
class BadIndexLine:
    """A frame-index line that cannot be used; ``utt_id`` is the utterance it names, when it names one."""

    line: int
    utt_id: str | None
    message: str  # "<path>:<line>: what is wrong"


def read_frame_index(path: str | Path) -> tuple[list[FrameRange], list[BadIndexLine]]:
    """``<UTT_ID> <BEGIN> <END>`` per line, whitespace or comma separated; ``#`` comments and blank
    lines ignored. Returns the good ranges and the bad lines (malformed, or an utterance listed twice:
    then neither of its lines is trusted), so that one bad line costs its utterance, not the block."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig", errors="strict")
    except UnicodeDecodeError:
        text = path.read_text(encoding="latin-1")
    good: dict[str, FrameRange] = {}
    bad: list[BadIndexLine] = []
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        tokens = [t for t in _SPLIT_RE.split(line) if t]
        utt = tokens[0] if tokens and corpus.UTT_ID_RE.match(tokens[0]) else None

        def reject(msg: str) -> None:
            bad.append(BadIndexLine(lineno, utt, f"{path}:{lineno}: {msg}"))

        if len(tokens) != 3:
            reject(f"expected '<UTT_ID> <BEGIN> <END>', got {len(tokens)} field(s): {raw.strip()!r}")
            continue
        name, b, e = tokens
        try:
            corpus.parse_utt_id(name)
        except ValueError as err:
            reject(str(err))
            continue
        try:
            begin, end = int(b), int(e)
        except ValueError:
            reject(f"BEGIN and END must be integers, got {b!r} {e!r}")
            continue
        if begin < 0 or end < begin:
            reject(f"need 0 <= BEGIN <= END, got {begin} {end}")
            continue
        if name in good or any(x.utt_id == name for x in bad):
            first = good.pop(name, None)
            reject(f"{name} already listed" + (f" on line {first.line}" if first else " on a bad line")
                   + ": neither line is used")
            continue
        good[name] = FrameRange(name, begin, end, lineno)
    return list(good.values()), bad


def parse_frame_index(path: str | Path) -> list[FrameRange]:
    """:func:`read_frame_index` for callers that need the whole index right: raises :class:`FrameIndexError`
    naming ``path:line`` at the first bad line."""
    ranges, bad = read_frame_index(path)
    if bad:
        raise FrameIndexError(bad[0].message)
    return sorted(ranges, key=lambda r: r.line)


@dataclass
class ClipJob:
    """One range to take from a block video. ``out``: where to write the clip (None: do not write,
    e.g. the clip exists and only its frames are wanted); ``want_frames``: hand its frames to ``on_frame``."""

    utt_id: str
    begin: int
    end: int
    out: Path | None = None
    want_frames: bool = False


@dataclass
class ClipResult:
    utt_id: str
    ok: bool
    frames: int = 0
    reason: str = ""


FrameHook = Callable[[int, np.ndarray, list[str]], None]
"""on_frame(frame_number, bgr_frame, ids_of_active_jobs_wanting_frames)."""
DoneHook = Callable[[ClipResult], None]


def cut_clips(
    video: str | Path,
    jobs: Iterable[ClipJob],
    *,
    on_frame: FrameHook | None = None,
    on_done: DoneHook | None = None,
    fourcc: str = "mp4v",
) -> tuple[VideoInfo, dict[str, ClipResult]]:
    """Cut all ``jobs`` from ``video`` in one sequential pass. Returns the container's info and one
    :class:`ClipResult` per job; a job whose range runs past the end of the video fails (its partial
    output is removed), the others are unaffected."""
    video = Path(video)
    info = probe(video)
    jobs = sorted(jobs, key=lambda j: (j.begin, j.end, j.utt_id))
    results: dict[str, ClipResult] = {}
    if not jobs:
        return info, results
    last = max(j.end for j in jobs)
    starts: dict[int, list[ClipJob]] = {}
    for j in jobs:
        starts.setdefault(j.begin, []).append(j)
    active: dict[str, tuple[ClipJob, AtomicVideoWriter | None]] = {}
    ends: dict[int, list[str]] = {}

    def finish(res: ClipResult) -> None:
        results[res.utt_id] = res
        if on_done is not None:
            on_done(res)

    cap = open_capture(video)
    if not cap.isOpened():
        raise VideoError(f"{video}: OpenCV cannot open this video")
    n_read = 0
    try:
        for i in range(last + 1):
            needed = bool(active) or i in starts
            if needed:
                ok, frame = cap.read()
            else:
                ok, frame = cap.grab(), None
            if not ok:
                break
            n_read = i + 1
            for j in starts.get(i, ()):
                writer = None
                if j.out is not None:
                    try:
                        writer = AtomicVideoWriter(j.out, info.fps, (frame.shape[1], frame.shape[0]), fourcc)
                    except VideoError as e:
                        finish(ClipResult(j.utt_id, False, 0, str(e)))
                        continue
                active[j.utt_id] = (j, writer)
                ends.setdefault(j.end, []).append(j.utt_id)
            if not active:
                continue
            wanting = []
            for uid, (j, writer) in active.items():
                if writer is not None:
                    writer.write(frame)
                if j.want_frames:
                    wanting.append(uid)
            if on_frame is not None and wanting:
                on_frame(i, frame, wanting)
            for uid in ends.pop(i, ()):
                j, writer = active.pop(uid)
                if writer is not None:
                    try:
                        writer.commit()
                    except VideoError as e:
                        finish(ClipResult(uid, False, 0, str(e)))
                        continue
                finish(ClipResult(uid, True, j.end - j.begin + 1))
    finally:
        cap.release()
        for _j, writer in list(active.values()):
            if writer is not None:
                writer.abort()
    for j in jobs:
        if j.utt_id not in results:
            finish(ClipResult(
                j.utt_id, False, 0,
                f"{video.name} ends after {n_read} frame(s) (container declares {info.frame_count}); "
                f"range {j.begin}-{j.end} needs frame {j.end}",
            ))
    return info, results
