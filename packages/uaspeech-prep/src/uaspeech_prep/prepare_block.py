"""One block of ``prepare`` (runs in a worker process with ``--workers``): the audio copies, VAD-trimmed wavs,
clips and lip ROIs of one block video's utterances, each recorded in an :class:`UttOutcome`.

Clips to cut are cut in one sequential pass over the block video (:func:`uaspeech_prep.clips.cut_clips`);
their ROIs come from the frames of that pass. Clips that already exist or are copied get their ROI from the
clip file afterwards. A per-utterance problem is recorded in its outcome, never raised."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from uaspeech_prep.clips import ClipJob, cut_clips
from uaspeech_prep.prepare_outcome import AudioStatus, ClipStatus, RoiStatus, UttOutcome, VadStatus, combined
from uaspeech_prep.prepare_plan import BlockJob, UttTask
from uaspeech_prep.video_io import VideoError, atomic_copy, is_copy_of, probe, video_is_complete

def rel_path(path: str | Path, root: Path) -> str:
    """``path`` relative to the prepared tree's root, as the manifest writes it."""
    return Path(path).resolve().relative_to(root.resolve()).as_posix()


def run_block(job: BlockJob, root: str | Path, progress: Callable[[int], object] | None = None) -> list[UttOutcome]:
    """Audio copies, clips and ROIs of one block; never raises for a per-utterance problem.
    ``progress(n)`` is called as utterances finish (n at a time)."""
    import uaspeech_prep.roi  # noqa: F401 - imported up front, as always (its import quiets mediapipe's logging)

    block = _BlockRun(job, Path(root), progress)
    for t in job.tasks:
        block.copy_audio(t)
    cut_jobs: list[ClipJob] = []
    roi_from_file: list[UttTask] = []
    for t in job.tasks:
        left = block.place_clip(t)
        if isinstance(left, ClipJob):
            cut_jobs.append(left)
        elif left is not None:
            roi_from_file.append(left)
    pending = {j.utt_id for j in cut_jobs} | {t.utt_id for t in roi_from_file}
    block.done([t.utt_id for t in job.tasks if t.utt_id not in pending])
    if cut_jobs:
        block.cut(cut_jobs)
    if roi_from_file:
        block.rois_from_files(roi_from_file)
    block.done([t.utt_id for t in job.tasks])
    return [block.outcomes[t.utt_id] for t in job.tasks]


class _BlockRun:
    """The outcomes of one block's utterances, and which of them have been reported to ``progress``."""

    def __init__(self, job: BlockJob, root: Path, progress: Callable[[int], object] | None) -> None:
        self.job, self.root, self.progress = job, root, progress
        self.outcomes: dict[str, UttOutcome] = {}
        self.tasks = {t.utt_id: t for t in job.tasks}
        self._finished: set[str] = set()

    def done(self, uids: list[str]) -> None:
        new = [u for u in uids if u not in self._finished]
        self._finished.update(new)
        if self.progress is not None and new:
            self.progress(len(new))

    def copy_audio(self, t: UttTask) -> None:
        """The utterance's wavs (and trimmed wavs with --vad); why it gets no clip, when it gets none."""
        out = self.outcomes[t.utt_id] = UttOutcome(t.utt_id)
        statuses = []
        for src, dst in t.audio:
            try:
                if not self.job.overwrite and is_copy_of(src, dst):
                    statuses.append(AudioStatus.EXISTS)
                else:
                    atomic_copy(src, dst)
                    statuses.append(AudioStatus.COPIED)
            except OSError as e:
                statuses.append(AudioStatus.FAILED)
                out.reasons.append(f"audio: cannot copy {src}: {e}")
        out.audio_status = combined(statuses, (AudioStatus.FAILED, AudioStatus.COPIED, AudioStatus.EXISTS))
        if self.job.vad_params is not None and t.audio:
            _vad_audio(t, out, self.job, self.root)
        if t.no_clip_reason:
            out.reasons.append(f"clip: {t.no_clip_reason}")
            out.clip_status = ClipStatus.FAILED if t.no_clip_is_error else ClipStatus.NONE

    def place_clip(self, t: UttTask) -> ClipJob | UttTask | None:
        """Settles what is already done or only needs a copy; returns what is left: a clip to cut from the
        block video, a task whose ROI is still to be made from its clip file, or None."""
        out = self.outcomes[t.utt_id]
        if t.range is None and t.precut is None:
            return None
        if t.range is not None:
            expected = t.range[1] - t.range[0] + 1
        else:
            try:
                expected = probe(t.precut).frame_count or None
            except VideoError as e:
                out.fail_clip(str(e))
                return None
        clip_done = not self.job.overwrite and video_is_complete(t.clip_dst, expected_frames=expected)
        need_roi = self._settle_existing_roi(t, out)
        if clip_done:
            out.clip, out.clip_status = rel_path(t.clip_dst, self.root), ClipStatus.EXISTS
            return t if need_roi else None
        if t.range is not None:
            return ClipJob(t.utt_id, t.range[0], t.range[1], Path(t.clip_dst), want_frames=need_roi)
        try:
            atomic_copy(t.precut, t.clip_dst)
            out.clip, out.clip_status = rel_path(t.clip_dst, self.root), ClipStatus.COPIED
        except OSError as e:
            out.fail_clip(f"cannot copy {t.precut}: {e}")
            return None
        return t if need_roi else None

    def _settle_existing_roi(self, t: UttTask, out: UttOutcome) -> bool:
        """Records a finished ROI (or --skip-roi); True when the ROI is still to be made."""
        if self.job.skip_roi:
            if _roi_done(t.roi_dst):
                _record_roi_exists(out, t.roi_dst, self.root)
            else:
                out.roi_status = RoiStatus.SKIPPED
            return False
        if not self.job.overwrite and _roi_done(t.roi_dst):
            _record_roi_exists(out, t.roi_dst, self.root)
            return False
        return True

    def cut(self, cut_jobs: list[ClipJob]) -> None:
        """One pass over the block video cuts every clip; the frames of those wanting a ROI feed it."""
        job = self.job
        tracker = _tracker(job) if any(j.want_frames for j in cut_jobs) else None
        spans = {j.utt_id: (j.begin, j.end) for j in cut_jobs}
        try:
            frames = _FrameLandmarks(tracker, job.roi_params, probe(job.video).fps, spans)

            def on_done(res) -> None:
                try:
                    self._clip_cut(res, frames)
                finally:
                    self.done([res.utt_id])

            cut_clips(job.video, cut_jobs, on_frame=frames.on_frame, on_done=on_done)
        except Exception as e:  # noqa: BLE001 - unreadable block video: every pending clip fails
            for j in cut_jobs:
                out = self.outcomes[j.utt_id]
                if out.clip_status != ClipStatus.CUT:
                    out.fail_clip(f"{job.video}: {type(e).__name__}: {e}")

    def _clip_cut(self, res, frames: _FrameLandmarks) -> None:
        out, t = self.outcomes[res.utt_id], self.tasks[res.utt_id]
        col = frames.pop(res.utt_id)
        if not res.ok:
            out.fail_clip(res.reason)
            return
        out.clip, out.clip_status = rel_path(t.clip_dst, self.root), ClipStatus.CUT
        if col is not None:
            _write_roi(out, lambda: col.result(self.job.roi_params), t.roi_dst, self.root)

    def rois_from_files(self, tasks: list[UttTask]) -> None:
        from uaspeech_prep.roi import extract_roi_from_video

        tracker = _tracker(self.job)
        for t in tasks:
            _write_roi(self.outcomes[t.utt_id],
                       lambda t=t: extract_roi_from_video(t.clip_dst, tracker, self.job.roi_params), t.roi_dst,
                       self.root)
            self.done([t.utt_id])


class _FrameLandmarks:
    """``cut_clips``'s per-frame hook: one landmarker call or tracking step (and one gray conversion) per frame
    serves every clip on that frame; each clip's :class:`~uaspeech_prep.roi.RoiCollector` gathers its ROI."""

    def __init__(self, tracker, params, fps: float, spans: dict[str, tuple[int, int]]) -> None:
        self._tracker, self._params, self._fps, self._spans = tracker, params, fps, spans
        self._stream = None  # the LandmarkStream, made on the first frame that a clip wants
        self._collectors: dict = {}

    def on_frame(self, i: int, frame, wanting: list[str]) -> None:
        from uaspeech_prep.roi import LandmarkStream, RoiCollector

        if self._stream is None:
            self._stream = LandmarkStream(self._tracker, self._params, self._fps)
            self._stream.new_sequence()
        fl = self._stream.step(i, frame, [self._spans[u] for u in wanting])
        for uid in wanting:
            col = self._collectors.get(uid)
            if col is None:
                col = self._collectors[uid] = RoiCollector(self._fps)
            col.add_frame(fl)

    def pop(self, uid: str):
        """The collector of a finished clip (None when it wanted no frames)."""
        return self._collectors.pop(uid, None)


def _tracker(job: BlockJob):
    from uaspeech_prep.roi import shared_tracker

    return shared_tracker(job.model_path, job.roi_params)


def _roi_done(path: str) -> bool:
    return video_is_complete(path, size=(96, 96))


def _record_roi_exists(out: UttOutcome, path: str, root: Path) -> None:
    info = probe(path)
    out.roi, out.roi_status, out.roi_frames, out.audio_offset_s = (rel_path(path, root), RoiStatus.EXISTS,
                                                                   info.frame_count, 0.0)


def _write_roi(out: UttOutcome, result_fn, path: str, root: Path) -> None:
    from uaspeech_prep.roi import RoiError, write_roi

    try:
        res = result_fn()
    except RoiError as e:
        out.roi_status = RoiStatus.NO_FACE
        out.reasons.append(f"roi: {e}")
        return
    except Exception as e:  # noqa: BLE001 - reported per clip
        out.roi_status = RoiStatus.FAILED
        out.reasons.append(f"roi: {type(e).__name__}: {e}")
        return
    try:
        write_roi(path, res)
    except Exception as e:  # noqa: BLE001
        out.roi_status = RoiStatus.FAILED
        out.reasons.append(f"roi: {type(e).__name__}: {e}")
        return
    out.roi, out.roi_status, out.roi_frames = rel_path(path, root), RoiStatus.WRITTEN, res.n_frames
    out.audio_offset_s, out.detect_ratio = round(res.audio_offset_s, 6), round(res.detect_ratio, 4)


def _vad_audio(t: UttTask, out: UttOutcome, job: BlockJob, root: Path) -> None:
    """Trimmed copies of the utterance's wavs under ``audio/vad/<SPK>/``, one interval for all microphones."""
    import soundfile as sf

    from uaspeech_prep.corpus import parse_audio_name
    from uaspeech_prep.vad import utterance_trim, write_trimmed

    try:
        trim = utterance_trim([src for src, _ in t.audio], job.vad_params)
    except Exception as e:  # noqa: BLE001 - reported per utterance
        out.vad_status = VadStatus.FAILED
        out.reasons.append(f"vad: {type(e).__name__}: {e}")
        return
    statuses, paths = [], {}
    for (src, _dst), vdst in zip(t.audio, t.vad_dst, strict=True):
        try:
            want = min(trim.end, sf.info(src).frames) - trim.start
            if not job.overwrite and Path(vdst).is_file() and sf.info(vdst).frames == want:
                statuses.append(VadStatus.EXISTS)
            else:
                write_trimmed(src, vdst, trim)
                statuses.append(VadStatus.WRITTEN)
            paths[parse_audio_name(Path(src).name).mic] = rel_path(vdst, root)
        except Exception as e:  # noqa: BLE001
            statuses.append(VadStatus.FAILED)
            out.reasons.append(f"vad: cannot write {vdst}: {type(e).__name__}: {e}")
    out.vad_status = combined(statuses, (VadStatus.FAILED, VadStatus.WRITTEN, VadStatus.EXISTS))
    out.vad_start_s, out.vad_end_s = round(trim.start_s, 6), round(trim.end_s, 6)
    out.vad_speech_found, out.audio_vad = trim.speech_found, paths
