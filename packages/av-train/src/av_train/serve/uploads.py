"""Where a running server keeps uploads, and the checks an upload passes before it is decoded.

A server owns one temporary folder (``Workspace``): Gradio's uploads and cache (``GRADIO_TEMP_DIR``) and the
files the server makes from an upload (noisy audio, re-timed recordings) live under it, and stopping the
server removes it. Every upload is checked cheaply first (``check_upload``: it is a media file, with a known
length of at most 30 s) so that a two-hour film is refused before its frames fill the memory.

Browser recordings (WebM / Matroska from the camera) carry a millisecond time base and no frame rate, which
OpenCV reads as 1000 fps; ``constant_rate_copy`` re-times them (PyAV, the frames' own timestamps) into an
mp4 at a constant rate, so the mouth is cut from the frames in their real timing. Other videos are used as
they are, exactly as ``av-cli transcribe`` reads them.
"""

from __future__ import annotations

import shutil
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

from av_fusion_models.processing_av_whisper import MAX_SECONDS
from av_train.inference.media import MediaError, read_audio, write_video_with_audio

# containers whose frame timing OpenCV misreads (browser MediaRecorder output)
RETIME_SUFFIXES = (".webm", ".mkv")
RETIME_FPS = 30.0


class Workspace:
    """The server's temporary folder: ``gradio/`` (GRADIO_TEMP_DIR) and ``work/<request>/`` (files we make)."""

    def __init__(self, parent: str | Path | None = None):
        self.root = Path(tempfile.mkdtemp(prefix="av-serve-", dir=parent))
        self.gradio_dir = self.root / "gradio"
        self.gradio_dir.mkdir()
        self._work = self.root / "work"
        self._work.mkdir()

    def scratch(self) -> Path:
        """A new folder for one request's files (kept until ``prune`` or ``remove``: the page may play them)."""
        d = self._work / uuid.uuid4().hex
        d.mkdir()
        return d

    def prune(self, max_age_s: float = 1800.0) -> None:
        """Remove request folders older than ``max_age_s`` (a long-running server does not fill the disk)."""
        now = time.time()
        for d in self._work.iterdir():
            try:
                if now - d.stat().st_mtime > max_age_s:
                    shutil.rmtree(d, ignore_errors=True)
            except FileNotFoundError:
                pass

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def media_seconds(path: Path) -> float:
    """The length of a media file from its container (no decoding); MediaError when it is not one."""
    import av

    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError, UnicodeDecodeError) as e:
        raise MediaError(f"{path.name}: not a readable media file ({e}); upload a video with sound (mp4, webm, "
                         "mov) or an audio file (wav, mp3, flac)") from None
    with container:
        streams = [s for s in container.streams if s.type in ("audio", "video")]
        if not streams:
            raise MediaError(f"{path.name}: no audio or video in this file; upload a video with sound or an audio file")
        if container.duration:
            return container.duration / 1e6  # AV_TIME_BASE
        # no length in the header (MediaRecorder output): the last packet's end, from demuxing alone
        end = 0.0
        try:
            for packet in container.demux(*streams):
                if packet.pts is not None and packet.time_base is not None:
                    end = max(end, float((packet.pts + (packet.duration or 0)) * packet.time_base))
        except av.error.FFmpegError as e:
            raise MediaError(f"{path.name}: the file is damaged ({e}); record or export it again") from None
        return end


def check_upload(path: str | Path, max_seconds: float = MAX_SECONDS) -> float:
    """Seconds of an uploaded file; MediaError (a sentence for the page) when it cannot be used."""
    path = Path(path)
    if not path.is_file():
        raise MediaError(f"{path.name}: the upload did not arrive; upload the file again")
    if path.stat().st_size == 0:
        raise MediaError(f"{path.name}: the file is empty")
    seconds = media_seconds(path)
    if seconds > max_seconds:
        raise MediaError(f"{path.name}: {seconds:.1f} s long; the model takes at most {max_seconds:g} s: "
                         "cut the word out (one word per clip)")
    return seconds


def needs_retiming(path: Path) -> bool:
    return path.suffix.lower() in RETIME_SUFFIXES


def constant_rate_copy(src: Path, dst: Path, fps: float = RETIME_FPS) -> Path:
    """``src`` (a video whose frames carry their own timestamps) as an mp4 at a constant ``fps``, with its
    sound; each output frame is the latest source frame shown at that instant."""
    import av

    times, frames = [], []
    try:
        with av.open(str(src)) as container:
            if not container.streams.video:
                raise MediaError(f"{src.name}: no video in this recording; allow the camera, or upload an audio file")
            stream = container.streams.video[0]
            for frame in container.decode(stream):
                t = frame.time if frame.time is not None else len(frames) / fps
                times.append(float(t))
                frames.append(frame.to_ndarray(format="rgb24"))
    except av.error.FFmpegError as e:
        raise MediaError(f"{src.name}: the video cannot be decoded ({e}); record it again or upload an mp4") from None
    if not frames:
        raise MediaError(f"{src.name}: no video frames could be decoded; record it again or upload an mp4")
    t0 = times[0]
    times = np.asarray(times) - t0
    n_out = max(1, int(round((times[-1] + 1.0 / fps) * fps)))
    idx = np.clip(np.searchsorted(times, np.arange(n_out) / fps, side="right") - 1, 0, len(frames) - 1)
    audio = read_audio(src)  # MediaError when the recording has no sound
    return write_video_with_audio(dst, [frames[i] for i in idx], fps, audio.samples, audio.rate)
