"""Reading a user's recordings: the audio track and frames of a video, or an audio file.

Audio files are read with soundfile (wav, flac, ogg, mp3 with libsndfile >= 1.1) and, for anything else,
with PyAV (FFmpeg): mp3, m4a, and the audio track of mp4 / avi / mov / mkv videos. Frames are decoded with
OpenCV, as `uaspeech-prep prepare` decodes the corpus videos, so the lip ROI is cut from the same pixels.
Every error names the file and what to do.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg")
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3", ".m4a", ".aac", ".opus", ".wma", ".aiff", ".aif")


class MediaError(RuntimeError):
    """A file that cannot be used as it is (unreadable, no audio track, no frames)."""


@dataclass
class Audio:
    samples: np.ndarray  # float32 [N], mono
    rate: int

    @property
    def seconds(self) -> float:
        return self.samples.size / float(self.rate)


def is_video(path: str | Path) -> bool:
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


def _pyav_audio(path: Path) -> Audio:
    import av

    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError) as e:
        raise MediaError(f"{path}: not a readable media file ({e}); convert it to wav or mp4") from None
    with container:
        if not container.streams.audio:
            raise MediaError(f"{path}: no audio track; record with sound, or use a lip-reading model")
        stream = container.streams.audio[0]
        rate = int(stream.rate or stream.codec_context.sample_rate or 16000)
        # FFmpeg's own down-mix to one channel of float samples, at the file's rate (the processor
        # resamples with torchaudio, as training does)
        resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
        chunks = []
        try:
            for frame in container.decode(stream):
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray().reshape(-1))
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray().reshape(-1))
        except av.error.FFmpegError as e:
            raise MediaError(f"{path}: the audio track cannot be decoded ({e})") from None
    if not chunks or sum(c.size for c in chunks) == 0:
        raise MediaError(f"{path}: the audio track is empty")
    return _finite(path, Audio(np.concatenate(chunks).astype(np.float32), rate))


def _finite(path: Path, audio: Audio) -> Audio:
    """Refuse samples that are not numbers: the model would turn them into a word with NaN scores."""
    bad = int(np.count_nonzero(~np.isfinite(audio.samples)))
    if bad:
        raise MediaError(f"{path}: {bad} of {audio.samples.size} audio samples are NaN or infinite (a damaged or "
                         "wrongly converted file); export the recording again as 16-bit PCM wav")
    return audio


def _no_such_file(path: Path) -> MediaError:
    if path.is_dir():
        return MediaError(f"{path}: is a folder, not a media file; give an audio or video file (or a .csv / .tsv list)")
    return MediaError(f"{path}: no such file")


def read_audio(path: str | Path) -> Audio:
    """Mono float32 samples at the file's own rate (audio file, or the audio track of a video)."""
    path = Path(path)
    if not path.is_file():
        raise _no_such_file(path)
    if not is_video(path):
        import soundfile as sf

        try:
            data, rate = sf.read(str(path), dtype="float32", always_2d=True)
        except Exception:  # soundfile raises several types; FFmpeg knows more formats
            return _pyav_audio(path)
        if data.size == 0:
            raise MediaError(f"{path}: the audio file is empty")
        return _finite(path, Audio(data.mean(axis=1).astype(np.float32), int(rate)))
    return _pyav_audio(path)


def read_frames(path: str | Path) -> tuple[list[np.ndarray], float]:
    """All frames (BGR uint8) of a video and its frame rate."""
    from uaspeech_prep.video_io import VideoError, iter_frames, probe

    path = Path(path)
    if not path.is_file():
        raise _no_such_file(path)
    try:
        fps = probe(path).fps
        frames = list(iter_frames(path))
    except VideoError as e:
        raise MediaError(f"{e}; convert the video to mp4 (H.264 or MPEG-4)") from None
    if not frames:
        raise MediaError(f"{path}: no video frames could be decoded; convert the video to mp4")
    if not fps or fps <= 0 or not np.isfinite(fps):
        raise MediaError(f"{path}: the video has no frame rate; re-encode it with a fixed rate (e.g. 25 or 30 fps)")
    return frames, float(fps)


def write_video_with_audio(path: str | Path, frames_rgb: list[np.ndarray], fps: float, audio: np.ndarray,
                           rate: int) -> Path:
    """An mp4 (MPEG-4 video, AAC audio) from RGB frames and mono float audio, as a phone would record it.

    Written to a temporary name and renamed. Used by the demo and the tests to make "a face video with
    sound" from a corpus clip and its recording.
    """
    import os
    from fractions import Fraction

    import av

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}{path.suffix}")
    h, w = frames_rgb[0].shape[:2]
    try:
        with av.open(str(tmp), mode="w") as out:
            vs = out.add_stream("mpeg4", rate=Fraction(fps).limit_denominator(1001))
            vs.width, vs.height, vs.pix_fmt = w - w % 2, h - h % 2, "yuv420p"
            vs.bit_rate = 4_000_000
            as_ = out.add_stream("aac", rate=int(rate))
            as_.layout = "mono"
            for f in frames_rgb:
                frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(f[: h - h % 2, : w - w % 2]), format="rgb24")
                for packet in vs.encode(frame):
                    out.mux(packet)
            for packet in vs.encode(None):
                out.mux(packet)
            samples = np.asarray(audio, dtype=np.float32).reshape(1, -1)
            block = 1024
            for start in range(0, samples.shape[1], block):
                chunk = np.ascontiguousarray(samples[:, start : start + block])
                af = av.AudioFrame.from_ndarray(chunk, format="flt", layout="mono")
                af.sample_rate = int(rate)
                af.pts = start
                for packet in as_.encode(af):
                    out.mux(packet)
            for packet in as_.encode(None):
                out.mux(packet)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def face_video_with_sound(clip: str | Path, audio: str | Path, dst: str | Path, min_seconds: float = 0.0) -> Path:
    """A face video with sound, as a user would record it, from a corpus clip (silent video) and its recording;
    padded with its last frame and silence to ``min_seconds``. Written atomically."""
    import cv2
    import soundfile as sf

    frames, fps = read_frames(clip)
    rgb = [cv2.cvtColor(f, cv2.COLOR_BGR2RGB) for f in frames]
    rgb += [rgb[-1]] * max(0, int(round(min_seconds * fps)) - len(rgb))
    samples, rate = sf.read(str(audio), dtype="float32")
    if samples.ndim == 2:
        samples = samples.mean(axis=1)
    samples = np.concatenate([samples, np.zeros(max(0, int(min_seconds * rate) - samples.size), np.float32)])
    return write_video_with_audio(dst, rgb, fps, samples, rate)
