"""``av-cli transcribe MODEL FILE...``: recognise a user's own recordings with a trained model.

MODEL is an exported folder (``av-cli export``), a run folder or a ``.ckpt``. Each FILE is a video with
sound (its audio track, and for models that read the lips, the mouth cut from the face with
uaspeech-prep's own ROI code: the same crop as training), an audio file, a mouth-cropped video
(``--roi-input``), or a CSV / TSV list with ``audio`` and ``video`` columns (either may be empty).

One JSON line (or CSV row) per input: input, text, top-k words with log-probabilities under a closed
vocabulary, route probabilities for router models, the video's reliability for models with a reliability
scorer (``video_reliability``: 0 = the word came from the sound alone, 1 = the lips at the full weight the
model learned; null for other models and inputs without lips), seconds, error, and with ``sync="auto"`` (``--sync auto``)
the audio-video offset found (``sync_offset_ms``, > 0: the picture lags the sound), its confidence
(``sync_confidence``) and whether the mouth crops were re-timed by it before recognition (``sync_corrected``:
at least 2 frames off and confidence >= 0.7, :func:`uaspeech_prep.av_sync.correction_frames`; docs/SYNC.md);
the three are null when sync is off or the input has no sound or no lips. A file that fails (unreadable, no
audio track, no face, longer than 30 s) is reported by name and the others go on; the exit code is 1
when any failed. The output file is written whole at the end (temporary file, then rename).

This module is the work (inputs, model loading, recognition, rendering); the command is
:mod:`av_train.inference.transcribe_command`.
"""

from __future__ import annotations

import csv
import io
import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from av_common.corpus import LEVELS, ROI_SIZE
from av_fusion_models import AVWhisperForConditionalGeneration, AVWhisperProcessor, InputError, recognize_inputs
from av_fusion_models.processing_av_whisper import PROCESSOR_CONFIG_NAME
from av_train.inference.media import MediaError, is_video, read_audio, read_frames

LEVEL_NAMES = LEVELS  # the router's level index, as in training


@dataclass
class Item:
    """One input: an audio and / or a video file."""

    name: str
    audio: Path | None = None
    video: Path | None = None
    problem: str | None = None  # a list row that names no file: reported as this item's error, the rest go on


@dataclass
class Outcome:
    item: Item
    text: str | None = None
    top_k: list = field(default_factory=list)
    route_probs: dict | None = None
    seconds: float = 0.0
    error: str | None = None
    used: str | None = None  # the modalities the model got: audio, video or audio+video
    sync_offset_ms: float | None = None  # --sync auto: the offset found (> 0: the picture lags the sound)
    sync_confidence: float | None = None  # its confidence (mean sound-lip correlation at the offset)
    sync_corrected: bool | None = None  # whether the mouth crops were re-timed by it
    video_reliability: float | None = None  # how far the model trusted the lips (models with a reliability scorer)

    @property
    def finished(self) -> bool:
        return self.text is not None or self.error is not None

    def to_dict(self) -> dict:
        return {"input": self.item.name, "audio": None if self.item.audio is None else str(self.item.audio),
                "video": None if self.item.video is None else str(self.item.video), "text": self.text,
                "top_k": [[w, round(lp, 4)] for w, lp in self.top_k], "route_probs": self.route_probs,
                "used": self.used, "seconds": round(self.seconds, 4), "error": self.error,
                "sync_offset_ms": self.sync_offset_ms,
                "sync_confidence": None if self.sync_confidence is None else round(self.sync_confidence, 4),
                "sync_corrected": self.sync_corrected,
                "video_reliability": None if self.video_reliability is None else round(self.video_reliability, 4)}


class TranscribeError(RuntimeError):
    """A problem with the command itself (model, list file, output), not with one input."""


# ----------------------------------------------------------------------------------------- inputs
def read_list(path: Path) -> list[Item]:
    """A CSV / TSV with ``audio`` and ``video`` columns (and optionally ``id``); paths relative to the list."""
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise TranscribeError(f"{path}: cannot read the list ({e})") from None
    reader = csv.DictReader(io.StringIO(text), delimiter=delimiter)
    cols = {c.strip().lower(): c for c in (reader.fieldnames or [])}
    if "audio" not in cols and "video" not in cols:
        raise TranscribeError(f"{path}: a list needs an 'audio' and/or a 'video' column (header row), "
                              f"found {reader.fieldnames}")
    items = []
    for row in reader:
        lineno = reader.line_num  # the file's own line number (blank lines, which DictReader skips, count)

        def cell(name: str) -> Path | None:
            v = (row.get(cols[name]) or "").strip() if name in cols else ""
            return None if not v else (Path(v) if Path(v).is_absolute() else path.parent / v)

        audio, video = cell("audio"), cell("video")
        ident = (row.get(cols["id"]) or "").strip() if "id" in cols else ""
        item = Item(ident or f"{path.name}:{lineno}", audio, video)
        if audio is None and video is None:
            item.problem = f"{path}:{lineno}: both audio and video are empty; fill in a file or delete the row"
        items.append(item)
    if not items:
        raise TranscribeError(f"{path}: the list has no rows")
    return items


def expand_inputs(files: list[str]) -> list[Item]:
    items: list[Item] = []
    for f in files:
        p = Path(f)
        if p.suffix.lower() in (".csv", ".tsv") and p.is_file():
            items += read_list(p)
        elif is_video(p):
            items.append(Item(str(p), None, p))
        else:
            items.append(Item(str(p), p, None))
    return items


# ------------------------------------------------------------------------------------------ model
def load_model(source: str | Path, device: str) -> tuple[AVWhisperForConditionalGeneration, AVWhisperProcessor]:
    """An exported folder (pickle-free), or a run folder / .ckpt (read with torch.load(weights_only=True))."""
    source = Path(source)
    if source.is_dir() and (source / PROCESSOR_CONFIG_NAME).is_file():
        return (AVWhisperForConditionalGeneration.from_pretrained(source, device=device),
                AVWhisperProcessor.from_pretrained(source))
    if not source.exists():
        raise TranscribeError(f"{source}: no such model (pass an exported folder, a run folder or a .ckpt)")
    from av_train.evaluation.loading import load_run
    from av_train.export.hf import build_processor, resolve_checkpoint

    run = load_run(resolve_checkpoint(source), device=device)
    return run.model, build_processor(run)


# ------------------------------------------------------------------------------------------ media
ROI_SIDE = ROI_SIZE  # uaspeech-prep's mouth crops (and the processors' roi_size)


class MouthFinder:
    """Face video -> 96 x 96 grey mouth crops at 25 fps, with uaspeech-prep's ROI code (as in prepare).

    ``last`` holds the crops of the latest call ([T, 96, 96] uint8), None when it found no mouth: the web
    page (``av-cli serve``) shows the user what the model saw.
    """

    def __init__(self, roi_input: bool):
        self.roi_input = roi_input
        self._tracker = None
        self.last: np.ndarray | None = None

    def __call__(self, path: Path, fps_out: float) -> np.ndarray:
        self.last = None
        self.last = crops = self._crops(path, fps_out)
        return crops

    def _crops(self, path: Path, fps_out: float) -> np.ndarray:
        import cv2

        from uaspeech_prep.roi import RoiError, RoiParams, extract_roi, output_indices, shared_tracker

        frames, fps = read_frames(path)
        h, w = frames[0].shape[:2]
        looks_like_crops = abs(h - w) <= 0.1 * max(h, w) and max(h, w) <= 2 * ROI_SIDE
        if self.roi_input:  # already mouth crops: grey, resampled in time to the model's rate
            if not looks_like_crops:
                raise MediaError(f"{path}: --roi-input expects mouth crops (square, about {ROI_SIDE} x {ROI_SIDE} "
                                 f"as uaspeech-prep writes them), but its frames are {w} x {h}; drop --roi-input "
                                 "to find the mouth in a face video")
            idx = output_indices(len(frames), fps, fps_out)
            return np.stack([cv2.cvtColor(frames[i], cv2.COLOR_BGR2GRAY) for i in idx])
        if self._tracker is None:
            self._tracker = shared_tracker()
        try:
            roi = extract_roi(frames, fps, self._tracker, RoiParams(out_fps=fps_out))
        except RoiError as e:
            if looks_like_crops:
                raise MediaError(f"{path}: no face found, and its {w} x {h} frames look like mouth crops already: "
                                 "pass --roi-input (or --allow-audio-only to recognise from the sound alone)") from None
            raise MediaError(f"{path}: no face found ({e}); film the speaker's face from the front, or pass "
                             "--allow-audio-only to recognise from the sound alone") from None
        min_ratio = RoiParams().min_detect_ratio
        if roi.detect_ratio < min_ratio:
            raise MediaError(f"{path}: a face was found in only {100 * roi.detect_ratio:.0f} % of the frames; "
                             "film the speaker's face from the front, or pass --allow-audio-only")
        return np.stack(roi.frames)


def load_inputs(item: Item, processor: AVWhisperProcessor, mouths: MouthFinder, allow_audio_only: bool):
    """(audio or None, sampling rate, mouth frames or None, what the model will use) for one input."""
    audio = rate = mouth = None
    wants_audio, wants_video = processor.uses_audio, processor.uses_video
    if wants_audio:
        src = item.audio or item.video
        if src is None:
            raise MediaError(f"{item.name}: this model listens, but the input has no audio")
        a = read_audio(src)
        audio, rate = a.samples, a.rate
    if wants_video:
        if item.video is None:
            if not (allow_audio_only and wants_audio):
                raise MediaError(f"{item.name}: this model reads the lips, but the input has no video"
                                 + ("; pass --allow-audio-only to use the sound alone" if wants_audio else ""))
        else:
            try:
                mouth = mouths(item.video, processor.video_fps)
            except MediaError:
                if not (allow_audio_only and wants_audio):
                    raise
    used = "+".join(m for m, x in (("audio", audio), ("video", mouth)) if x is not None)
    return audio, rate, mouth, used


# ------------------------------------------------------------------------------------------ run
def transcribe(model, processor: AVWhisperProcessor, items: list[Item], top_k: int = 5, num_beams: int | None = None,
               batch_size: int = 1, allow_audio_only: bool = False, roi_input: bool = False, level: str | None = None,
               progress: bool = True, mouths: MouthFinder | None = None, sync: str = "off",
               into: list[Outcome] | None = None) -> list[Outcome]:
    """Recognise every item; failures are recorded per item (``Outcome.error``), never raised.

    ``into``: a list the outcomes are appended to as they start (returned too), so that a caller interrupted
    (Ctrl-C) still holds the ones that finished (``Outcome.finished``).

    ``sync="auto"``: for each input that gives the model both sound and lips, estimate their offset and re-time
    the mouth crops by it when it is confident (:func:`sync_mouths`); ``"off"`` (default): use them as they are.

    ``mouths``: a MouthFinder to use instead of a new ``MouthFinder(roi_input)``, so that a caller making many
    calls (the web page) keeps one face tracker and reads the crops of its item from ``mouths.last``.
    """
    from tqdm.auto import tqdm

    if sync not in SYNC_MODES:
        raise TranscribeError(f"sync must be one of {', '.join(SYNC_MODES)}, got {sync!r}")
    mouths = MouthFinder(roi_input) if mouths is None else mouths
    from dataclasses import replace

    audio_only = replace(processor, modality="audio")  # the same processor without the lips (--allow-audio-only)
    levels = None if level is None else torch.tensor([LEVEL_NAMES.index(level)])
    outcomes: list[Outcome] = [] if into is None else into
    # (outcome, its own processed inputs, its raw inputs, processor, seconds spent reading it)
    pending: list[tuple[Outcome, dict, tuple, AVWhisperProcessor, float]] = []

    def flush() -> None:
        # inputs that use the same modalities go through the model together
        groups: dict[str, list] = {}
        for entry in pending:
            groups.setdefault(entry[0].used, []).append(entry)
        for group in groups.values():
            proc = group[0][3]
            t0 = time.perf_counter()
            if len(group) == 1:
                batch = dict(group[0][1])
            else:  # the processor pads the batch exactly as validation's collator does
                raws = [g[2] for g in group]
                batch = proc(audio=[r[0] for r in raws] if proc.uses_audio else None,
                             video=[r[2] for r in raws] if proc.uses_video else None,
                             sampling_rate=[r[1] or 16000 for r in raws])
            if levels is not None:
                batch["levels"] = levels.repeat(len(group))
            try:
                results = recognize_inputs(model, proc, batch, top_k=top_k, num_beams=num_beams)
            except (InputError, ValueError, RuntimeError) as e:
                for out, *_ in group:
                    out.error = f"{out.item.name}: the model failed on this input ({e})"
                continue
            share = (time.perf_counter() - t0) / len(group)
            for (out, _, _, _, t_media), r in zip(group, results):
                out.text, out.top_k, out.route_probs = r.text, r.top_k, r.route_probs
                out.video_reliability = r.video_reliability
                out.seconds = t_media + share
        pending.clear()

    for item in tqdm(items, desc="transcribing", unit="file", disable=not progress, file=sys.stderr):
        out = Outcome(item)
        outcomes.append(out)
        if item.problem:
            out.error = item.problem
            continue
        t0 = time.perf_counter()
        try:
            audio, rate, mouth, used = load_inputs(item, processor, mouths, allow_audio_only)
            if sync == "auto" and audio is not None and mouth is not None:
                mouth = sync_mouths(out, audio, rate, mouth, processor.video_fps)
                mouths.last = mouth  # the crops the model sees (the web page shows them)
            proc = processor if (mouth is not None or not processor.uses_video) else audio_only
            feats = proc(audio=audio, video=mouth, sampling_rate=rate or 16000)
        except (MediaError, InputError) as e:
            out.error = _naming(item, str(e))
            continue
        out.used = used
        pending.append((out, feats, (audio, rate, mouth), proc, time.perf_counter() - t0))
        if len(pending) >= batch_size:
            flush()
    flush()
    return outcomes


SYNC_MODES = ("off", "auto")


def sync_mouths(out: Outcome, audio: np.ndarray, rate: int, mouth: np.ndarray, fps: float) -> np.ndarray:
    """The mouth crops re-timed by their estimated offset against the sound when the estimate is confident
    (uaspeech_prep.av_sync, no learned model), recorded in ``out``'s ``sync_*`` fields."""
    from uaspeech_prep.av_sync import correction_frames, estimate_offset, shift_frames

    est = estimate_offset(audio, rate, mouth, fps)
    shift = correction_frames(est)
    out.sync_offset_ms, out.sync_confidence, out.sync_corrected = est.offset_ms, est.confidence, bool(shift)
    return shift_frames(mouth, shift) if shift else mouth


def _naming(item: Item, message: str) -> str:
    """The message, prefixed with the input's name unless it already names one of the input's files."""
    names = [item.name] + [str(p) for p in (item.audio, item.video) if p is not None]
    return message if any(n in message for n in names) else f"{item.name}: {message}"


# ----------------------------------------------------------------------------------------- output
def _json_safe(value):
    """NaN / infinity are not JSON (json.dumps would write them anyway): a number that is not one becomes null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def render(outcomes: list[Outcome], fmt: str) -> str:
    rows = [_json_safe(o.to_dict()) for o in outcomes]
    if fmt == "jsonl":
        return "".join(json.dumps(r, allow_nan=False) + "\n" for r in rows)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
    writer.writeheader()
    for r in rows:
        writer.writerow({k: (json.dumps(v) if isinstance(v, (list, dict)) else v) for k, v in r.items()})
    return buf.getvalue()
