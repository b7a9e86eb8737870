"""``sync.csv`` of a prepared tree: each clip's audio-video offset and confidence (:mod:`uaspeech_prep.av_sync`),
and optionally the lip ROI re-timed by it (``prepare --sync-report / --sync-correct``, ``uaspeech-prep sync``).

One row per utterance with a ROI, sorted by ``utt_id``; columns :data:`COLUMNS`:

    utt_id         the manifest's utterance
    offset_ms      the estimated offset (> 0: the picture lags the sound; video_faults' ``late-<N>ms``), empty
                   when the clip could not be measured
    confidence     the estimate's confidence (mean sound-lip correlation at the offset, -1..1), empty likewise
    corrected      true when the ROI file was re-timed by ``offset_frames`` (``--correct``), else false
    offset_frames  the offset in ROI frames
    note           why a clip was not measured or not corrected, or that it was corrected by an earlier run
    roi_stamp      ``<size>:<mtime_ns>`` of the ROI file as this run left it

Re-timing rewrites the ROI in place (atomically, mp4v like ``prepare``), so a second run must not measure the
corrected file again and shift it twice: a row that says ``corrected`` and whose ``roi_stamp`` still matches the
ROI file is kept as it is ("corrected earlier"). When ``prepare --overwrite`` rewrites the ROI from the clip, the
stamp no longer matches, and the clip is measured (and corrected) afresh. The file itself is written atomically.
Rows of utterances that a run does not visit (a ``prepare --speakers`` run) are kept.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from uaspeech_prep.av_sync import MAX_OFFSET_MS, MIN_CONFIDENCE, correction_frames, estimate_offset, shift_frames
from uaspeech_prep.manifest import MANIFEST, ManifestRecord, read_records
from uaspeech_prep.video_io import atomic_write_text, read_frames, write_video

SYNC_CSV = "sync.csv"
COLUMNS = ("utt_id", "offset_ms", "confidence", "corrected", "offset_frames", "note", "roi_stamp")
CORRECTED_EARLIER = "corrected earlier (ROI unchanged since)"


@dataclass
class SyncSummary:
    """What a sync pass did."""

    path: Path
    clips: int = 0
    measured: int = 0
    corrected: int = 0
    kept: int = 0
    failed: int = 0
    min_confidence: float | None = None
    offsets_frames: list[int] = field(default_factory=list, repr=False)

    def to_dict(self) -> dict:
        off = np.abs(np.asarray(self.offsets_frames, dtype=float))
        return {"file": str(self.path), "clips": self.clips, "measured": self.measured, "corrected": self.corrected,
                "kept_corrected_earlier": self.kept, "not_measured": self.failed,
                "correct_min_confidence": self.min_confidence,
                "offset_abs_frames_median": float(np.median(off)) if len(off) else None,
                "offset_abs_2plus_frames": int((off >= 2).sum())}

    def line(self) -> str:
        d = self.to_dict()
        corr = ("" if self.min_confidence is None else
                f", {self.corrected} ROI(s) re-timed (confidence >= {self.min_confidence:g})")
        kept = f", {self.kept} corrected earlier" if self.kept else ""
        bad = f", {self.failed} not measured" if self.failed else ""
        return (f"  sync:  {self.measured} of {self.clips} clips measured, {d['offset_abs_2plus_frames']} off by "
                f">= 2 frames{corr}{kept}{bad}: {self.path}")


def roi_stamp(path: str | Path) -> str:
    st = os.stat(path)
    return f"{st.st_size}:{st.st_mtime_ns}"


def read_sync_csv(path: str | Path) -> dict[str, dict[str, str]]:
    """utt_id -> row (column -> text) of an existing ``sync.csv``; {} when there is none."""
    path = Path(path)
    if not path.is_file():
        return {}
    with open(path, encoding="utf-8", newline="") as f:
        return {row["utt_id"]: row for row in csv.DictReader(f) if row.get("utt_id")}


def _write(path: Path, rows: dict[str, dict[str, str]]) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(COLUMNS), extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for uid in sorted(rows):
        w.writerow({c: rows[uid].get(c, "") for c in COLUMNS})
    atomic_write_text(path, buf.getvalue())


def _audio(root: Path, rec: ManifestRecord, mic: str | None) -> tuple[np.ndarray, int]:
    import soundfile as sf

    audio = rec.audio or {}
    if not audio:
        raise ValueError("no audio in the manifest")
    m = mic if mic in audio else sorted(audio)[0]
    x, rate = sf.read(root / audio[m], dtype="float32", always_2d=False)
    off = float(rec.audio_offset_s or 0.0)  # the ROI's first frame, in the audio's time
    if off > 0:
        x = x[int(round(off * rate)):]
    return x, int(rate)


def measure_clip(root: Path, rec: ManifestRecord, correct_min: float | None, mic: str | None = None,
                 max_offset_ms: float = MAX_OFFSET_MS) -> dict[str, str]:
    """The sync row of one utterance with a ROI (measured, and re-timed when ``correct_min`` is given and the
    estimate passes :func:`~uaspeech_prep.av_sync.correction_frames`). Never raises for a bad clip: the row's
    ``note`` says what went wrong."""
    roi = root / rec.roi
    row = {"utt_id": rec.utt_id, "offset_ms": "", "confidence": "", "corrected": "false", "offset_frames": "",
           "note": "", "roi_stamp": ""}
    try:
        fps = float(rec.roi_fps or 25.0)
        frames = read_frames(roi, gray=True)
        if not frames:
            raise ValueError(f"{rec.roi}: no frames")
        frames_arr = np.stack(frames)
        audio, rate = _audio(root, rec, mic)
        est = estimate_offset(audio, rate, frames_arr, fps, max_offset_ms)
    except Exception as e:  # noqa: BLE001 - reported per clip
        row["note"] = f"not measured: {type(e).__name__}: {e}"
        if roi.is_file():
            row["roi_stamp"] = roi_stamp(roi)
        return row
    if not est.measured:
        row.update(note="not measured: too short, silent or without frames", roi_stamp=roi_stamp(roi))
        return row
    row.update(offset_ms=f"{est.offset_ms:g}", confidence=f"{est.confidence:.4f}", offset_frames=str(est.offset_frames))
    if correct_min is not None:
        shift = correction_frames(est, correct_min)
        if shift:
            write_video(roi, list(shift_frames(frames_arr, shift)), fps)
            row["corrected"] = "true"
        elif est.confidence < correct_min:
            row["note"] = f"not corrected: confidence below {correct_min:g}"
    row["roi_stamp"] = roi_stamp(roi)
    return row


def sync_tree(root: str | Path, records: Iterable[ManifestRecord] | None = None, correct_min: float | None = None,
              mic: str | None = None, max_offset_ms: float = MAX_OFFSET_MS, progress: bool = False) -> SyncSummary:
    """Measure every utterance of ``records`` (default: the tree's whole manifest) that has a ROI, re-time the
    ROIs whose estimate passes ``correct_min`` (None: report only), and write ``root/sync.csv``."""
    from tqdm import tqdm

    root = Path(root)
    if records is None:
        mpath = root / MANIFEST
        if not mpath.is_file():
            raise FileNotFoundError(f"{mpath}: no manifest (is {root} a prepared tree?)")
        records = read_records(mpath, require=("utt_id", "audio", "roi"))
    records = [r for r in records if r.roi]
    path = root / SYNC_CSV
    rows = read_sync_csv(path)
    summary = SyncSummary(path, min_confidence=correct_min)
    for rec in tqdm(records, unit="clip", desc="sync", disable=not progress):
        summary.clips += 1
        old = rows.get(rec.utt_id)
        roi = root / rec.roi
        if (old is not None and old.get("corrected") == "true" and roi.is_file()
                and old.get("roi_stamp") == roi_stamp(roi)):
            rows[rec.utt_id] = {**old, "note": CORRECTED_EARLIER}
            summary.kept += 1
            summary.measured += 1
            summary.offsets_frames.append(int(old.get("offset_frames") or 0))
            continue
        row = rows[rec.utt_id] = measure_clip(root, rec, correct_min, mic, max_offset_ms)
        if row["offset_frames"] == "":
            summary.failed += 1
            continue
        summary.measured += 1
        summary.offsets_frames.append(int(row["offset_frames"]))
        summary.corrected += row["corrected"] == "true"
    _write(path, rows)
    return summary


__all__ = ["COLUMNS", "MIN_CONFIDENCE", "SYNC_CSV", "SyncSummary", "measure_clip", "read_sync_csv", "sync_tree"]
