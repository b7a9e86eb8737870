"""``prepare``'s plan (main process): one :class:`BlockJob` per block video (speaker x block) with an
:class:`UttTask` per utterance, and the problems found on the way (frame index errors, block videos without
frame index, index entries without audio...)."""

from __future__ import annotations

from dataclasses import dataclass, field

from uaspeech_prep import corpus
from uaspeech_prep.clips import FrameRange, read_frame_index
from uaspeech_prep.index import VAD_DIR, WARNING, BlockVideo, CorpusIndex, Problem, Utterance
from uaspeech_prep.prepare_options import PrepareOptions


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
class _BlockVideoPlan:
    """Where one block's clips come from: frame ranges, and why a clip cannot be cut."""

    ranges: dict[str, FrameRange] = field(default_factory=dict)
    bad_lines: dict[str, str] = field(default_factory=dict)  # utterance -> why its frame index line is unusable
    reason: str = ""  # why no clip of the block can be cut


def plan(index: CorpusIndex, opts: PrepareOptions) -> tuple[list[BlockJob], list[Problem]]:
    """One job per (speaker, block) with utterances, in speaker-block order; the problems found on the way."""
    problems: list[Problem] = []
    by_block: dict[tuple[str, str], list[Utterance]] = {}
    for u in index.utterances.values():
        by_block.setdefault((u.speaker, u.block), []).append(u)
    speakers_with_video = {k[0] for k, bv in index.blocks.items() if bv.video or bv.frame_index} | {
        corpus.parse_utt_id(c)[0] for c in index.clips
    }
    jobs: list[BlockJob] = []
    for (spk, blk), utts in sorted(by_block.items()):
        bv = index.blocks.get((spk, blk))
        src = _block_video_plan(index, spk, blk, bv, utts, problems)
        if bv is None and spk in speakers_with_video and not any(u.utt_id in index.clips for u in utts):
            problems.append(Problem("missing_video", f"{index.source / 'video' / spk}",
                                    f"speaker {spk} has video but none for block {blk}", WARNING))
        have_audio = {u.utt_id for u in utts}
        for uid, r in src.ranges.items():
            if uid not in have_audio and (not opts.speakers or corpus.parse_utt_id(uid)[0] in opts.speakers):
                problems.append(Problem("index_without_audio", f"{bv.frame_index}:{r.line}",
                                        f"{uid} is in the frame index but has no usable audio", WARNING))
        tasks = [_task(u, index, bv, src, opts, problems) for u in utts]
        jobs.append(BlockJob(
            speaker=spk, block=blk, video=str(bv.video) if bv is not None and bv.video else None,
            tasks=tasks, overwrite=opts.overwrite, skip_roi=opts.skip_roi, model_path=opts.model_path,
            roi_params=opts.roi_params(), vad_params=opts.vad_params() if opts.vad else None,
        ))
    return jobs, problems


def _block_video_plan(index: CorpusIndex, spk: str, blk: str, bv: BlockVideo | None, utts: list[Utterance],
                      problems: list[Problem]) -> _BlockVideoPlan:
    """The block's frame ranges; a frame index that cannot be read, or a block video and frame index without
    each other, leave its clips uncut (one bad line costs its own utterance only)."""
    out = _BlockVideoPlan()
    if bv is None:
        return out
    if bv.frame_index is not None:
        try:
            good, bad = read_frame_index(bv.frame_index)
        except OSError as e:
            problems.append(Problem("bad_frame_index", str(bv.frame_index), f"cannot read it: {e}"))
            out.reason = f"frame index unreadable: {e}"
            good, bad = [], []
        out.ranges = {r.utt_id: r for r in good}
        for b in bad:
            problems.append(Problem("bad_frame_index", str(bv.frame_index), b.message))
            if b.utt_id is not None:
                out.bad_lines[b.utt_id] = f"frame index line unusable: {b.message}"
    if bv.video is not None and bv.frame_index is None:
        precut = sum(1 for u in utts if u.utt_id in index.clips)
        if precut < len(utts):
            problems.append(Problem(
                "missing_frame_index", str(bv.video),
                f"no {spk}_{blk}_frame_index.txt next to the block video: its clips cannot be cut",
            ))
            out.reason = f"no frame index for {bv.video.name}"
    if bv.frame_index is not None and bv.video is None:
        problems.append(Problem("missing_video", str(bv.frame_index),
                                f"frame index without a block video {spk}-{blk}-DV-*"))
        out.reason = f"no block video for {bv.frame_index.name}"
    return out


def _task(u: Utterance, index: CorpusIndex, bv: BlockVideo | None, src: _BlockVideoPlan, opts: PrepareOptions,
          problems: list[Problem]) -> UttTask:
    """Where the utterance's files go, and where its clip comes from: an already-cut clip, a frame range of
    the block video, or nowhere (and why)."""
    dst, spk = opts.output, u.speaker
    t = UttTask(
        utt_id=u.utt_id, speaker=spk,
        audio=[(str(p), str(dst / "audio" / spk / p.name)) for p in u.audio.values()],
        clip_dst=str(dst / "video" / spk / "outputfiles30" / f"{u.utt_id}.mp4"),
        roi_dst=str(dst / "video" / "roi" / spk / f"{u.utt_id}.mp4"),
        vad_dst=[str(dst / "audio" / VAD_DIR / spk / p.name) for p in u.audio.values()] if opts.vad else [],
    )
    if u.utt_id in index.clips:
        t.precut = str(index.clips[u.utt_id])
    elif src.reason:
        t.no_clip_reason = src.reason
    elif u.utt_id in src.bad_lines:
        t.no_clip_reason = src.bad_lines[u.utt_id]
    elif u.utt_id in src.ranges:
        r = src.ranges[u.utt_id]
        t.range = (r.begin, r.end)
    elif bv is not None and bv.video is not None:
        t.no_clip_reason = f"{u.utt_id} not in {bv.frame_index.name}"
        t.no_clip_is_error = False
        problems.append(Problem("not_in_frame_index", str(bv.frame_index),
                                f"{u.utt_id} has audio but no frame range", WARNING))
    return t
