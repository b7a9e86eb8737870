"""``uaspeech-prep prepare --validate-only``: check a prepared tree against its manifest and, when the
source is given, against the source's corpus index.

Checks per record: required fields and their consistency with the corpus tables (level, split,
category), every listed wav (and VAD-trimmed wav) exists and is readable and non-empty, the clip opens
and its length (frames / container fps) is within ``tolerance_s`` of the audio duration, the ROI opens,
is 96x96 at 25 fps, declares ``roi_frames`` frames and ``roi_frames`` is within ``tolerance_s`` of 25 fps x
the audio duration. Against the index: every utterance with usable audio has a record, and every
utterance the source has video for (a frame range in a block's frame index, or an already-cut clip) has
a clip. Left-over temporary files are reported too. Prints a per-speaker summary table.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import soundfile as sf

from uaspeech_prep import corpus
from uaspeech_prep.index import wav_format_problem
from uaspeech_prep.manifest import CORE_FIELDS, ManifestLineError, ManifestRecord, manifest_path, read_lines
from uaspeech_prep.video_io import VideoError, find_temps, probe

ROI_SIZE = 96


@dataclass
class Finding:
    utt_id: str
    kind: str
    message: str

    def __str__(self) -> str:
        return f"{self.utt_id}: {self.kind}: {self.message}"


@dataclass
class SpeakerStats:
    utterances: int = 0
    audio_ok: int = 0
    audio_files: int = 0
    clips: int = 0
    clips_ok: int = 0
    rois: int = 0
    rois_ok: int = 0
    missing: int = 0
    """Utterances of the source index without a manifest record."""
    problems: int = 0


@dataclass
class ValidationReport:
    root: Path
    findings: list[Finding] = field(default_factory=list)
    speakers: dict[str, SpeakerStats] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.findings

    def table(self) -> str:
        head = ("speaker", "utts", "missing", "audio ok", "clips ok", "rois ok", "problems")
        rows = [head]
        tot = SpeakerStats()

        def row(name: str, s: SpeakerStats) -> tuple:
            return (name, str(s.utterances), str(s.missing), f"{s.audio_ok}/{s.audio_files}", f"{s.clips_ok}/{s.clips}",
                    f"{s.rois_ok}/{s.rois}", str(s.problems))

        for spk in sorted(self.speakers):
            s = self.speakers[spk]
            rows.append(row(spk, s))
            for k in vars(tot):
                setattr(tot, k, getattr(tot, k) + getattr(s, k))
        rows.append(row("total", tot))
        widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
        lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))
                 for r in rows]
        lines.insert(1, "  ".join("-" * w for w in widths))
        lines.insert(len(lines) - 1, "  ".join("-" * w for w in widths))
        return "\n".join(lines)


def _check_video_opens(path: Path) -> tuple[object | None, str]:
    try:
        info = probe(path)
    except VideoError as e:
        return None, str(e)
    cap = cv2.VideoCapture(str(path))
    try:
        ok, frame = cap.read()
    finally:
        cap.release()
    if not ok or frame is None:
        return None, f"{path}: no frame can be decoded"
    return (info, frame), ""


def validate_tree(root: str | Path, tolerance_s: float = 0.2, source: str | Path | None = None,
                  speakers: list[str] | None = None, mics: list[str] | None = None,
                  variant: str | None = None) -> ValidationReport:
    """Check the prepared tree ``root``; with ``source``, also against that release's index (restricted to
    ``speakers`` / ``mics`` / ``variant`` as the preparation was)."""
    root = Path(root)
    rep = ValidationReport(root)
    manifest = manifest_path(root)
    if not manifest.is_file():
        rep.findings.append(Finding("-", "no_manifest", f"{manifest} does not exist"))
        return rep
    seen: set[str] = set()
    records: dict[str, ManifestRecord] = {}  # by utterance, for the check against the source index
    for line in read_lines(manifest):
        try:
            rec = line.record(require=())  # a record with missing fields is checked, and they are reported
        except ManifestLineError as e:
            rep.findings.append(Finding(f"line {line.lineno}", "bad_json", str(e)))
            continue
        _check_record(rec, root, rep, tolerance_s, seen, line.lineno)
        if isinstance(rec.utt_id, str):
            records[rec.utt_id] = rec
    if not seen and not rep.findings:
        rep.findings.append(Finding("-", "empty_manifest", f"{manifest} lists no utterances"))
    if source is not None:
        # what the preparation chose (prepare_report.json), unless the user says otherwise: checking a tree
        # prepared with --mics M5 against every microphone of the source would report false gaps
        chosen = _prepared_with(root)
        mics = mics if mics is not None else chosen.get("mics")
        variant = variant if variant is not None else chosen.get("variant")
        if speakers is None and chosen.get("speakers"):  # partial runs: theirs and those in the manifest
            speakers = sorted(set(chosen["speakers"]) | (set(rep.speakers) & set(corpus.SPEAKERS)))
        _check_against_index(rep, Path(source), records, speakers, mics, variant)
    for tmp in find_temps(root):
        rep.findings.append(Finding("-", "temp_file", f"left-over temporary file {tmp}"))
    return rep


def _prepared_with(root: Path) -> dict:
    """The index choices (mics, variant, speakers) recorded in ``root/prepare_report.json``; {} when there is none."""
    try:
        params = json.loads((root / "prepare_report.json").read_text(encoding="utf-8")).get("parameters") or {}
    except (OSError, ValueError, AttributeError):
        return {}
    return {k: params.get(k) for k in ("mics", "variant", "speakers") if params.get(k)}


def _check_record(rec: ManifestRecord, root: Path, rep: ValidationReport, tol: float, seen: set[str],
                  lineno: int) -> None:
    uid = str(rec.utt_id) if rec.has("utt_id") else f"line {lineno}"
    spk = str(rec.speaker) if rec.has("speaker") else "?"
    st = rep.speakers.setdefault(spk, SpeakerStats())
    st.utterances += 1
    n0 = len(rep.findings)

    def bad(kind: str, msg: str) -> None:
        rep.findings.append(Finding(uid, kind, msg))

    missing = [k for k in CORE_FIELDS if not rec.has(k)]
    if missing:
        bad("fields", f"missing field(s) {missing}")
    if uid in seen:
        bad("duplicate", "utterance listed twice")
    seen.add(uid)
    try:
        s, b, w = corpus.parse_utt_id(uid)
        if (s, b, w) != (rec.speaker, rec.block, rec.word_id):
            bad("fields", f"speaker/block/word_id {rec.speaker}/{rec.block}/{rec.word_id} do not match the utt_id")
        if rec.split != corpus.split_of_block(b):
            bad("fields", f"split {rec.split!r}, expected {corpus.split_of_block(b)!r}")
        if rec.has("level") and s in corpus.SPEAKERS and rec.level != corpus.speaker(s).level:
            bad("fields", f"level {rec.level!r}, expected {corpus.speaker(s).level!r}")
        if rec.has("category") and rec.category != corpus.category_of(w):
            bad("fields", f"category {rec.category!r}, expected {corpus.category_of(w)!r}")
    except ValueError as e:
        bad("fields", str(e))

    audio = rec.audio or {}
    if not audio:
        bad("audio", "no audio listed")
    for mic, rel in audio.items():
        st.audio_files += 1
        p = root / rel
        if not p.is_file():
            bad("missing_audio", f"{mic}: {rel} does not exist")
            continue
        try:
            info = sf.info(str(p))
        except Exception as e:  # noqa: BLE001
            bad("unreadable_audio", f"{mic}: {rel}: {e}")
            continue
        if info.frames == 0:
            bad("empty_audio", f"{mic}: {rel} has no samples")
            continue
        fmt = wav_format_problem(info.samplerate, info.channels)
        if fmt:
            bad("not_16k_mono", f"{mic}: {rel}: {fmt}")
            continue
        st.audio_ok += 1

    for mic, rel in (rec.audio_vad or {}).items():
        p = root / rel
        try:
            if sf.info(str(p)).frames == 0:
                bad("empty_audio", f"VAD {mic}: {rel} has no samples")
        except Exception as e:  # noqa: BLE001 - missing or unreadable
            bad("missing_audio" if not p.is_file() else "unreadable_audio", f"VAD {mic}: {rel}: {e}")

    if rec.clip:
        st.clips += 1
        p = root / rec.clip
        if not p.is_file():
            bad("missing_clip", f"{rec.clip} does not exist")
        else:
            got, err = _check_video_opens(p)
            if got is None:
                bad("unreadable_clip", err)
            else:
                info, _frame = got
                dur = float(rec.duration_s or 0.0)
                clip_s = info.frame_count / info.fps
                if dur > 0 and abs(clip_s - dur) > tol + 1e-6:
                    bad("clip_duration", f"{rec.clip}: {info.frame_count} frames at {info.fps:g} fps = {clip_s:.3f} s "
                                         f"for {dur:.3f} s of audio (tolerance {tol:g} s)")
                else:
                    st.clips_ok += 1

    if rec.roi:
        st.rois += 1
        p = root / rec.roi
        if not p.is_file():
            bad("missing_roi", f"{rec.roi} does not exist")
        else:
            got, err = _check_video_opens(p)
            if got is None:
                bad("unreadable_roi", err)
            else:
                info, frame = got
                ok = True
                if (info.width, info.height) != (ROI_SIZE, ROI_SIZE) or frame.shape[:2] != (ROI_SIZE, ROI_SIZE):
                    bad("roi_size", f"{rec.roi} is {info.width}x{info.height}, expected {ROI_SIZE}x{ROI_SIZE}")
                    ok = False
                fps = float(rec.roi_fps or 0.0)
                if abs(info.fps - 25.0) > 0.01 or abs(fps - 25.0) > 0.01:
                    bad("roi_fps", f"{rec.roi} at {info.fps:g} fps (manifest {fps:g}), expected 25")
                    ok = False
                if rec.roi_frames is not None and info.frame_count != rec.roi_frames:
                    bad("roi_frames", f"{rec.roi} has {info.frame_count} frames, manifest says {rec.roi_frames}")
                    ok = False
                dur = float(rec.duration_s or 0.0)
                expected = 25.0 * dur
                if dur > 0 and abs(info.frame_count - expected) > 25.0 * tol + 1e-6:
                    bad("roi_duration",
                        f"{info.frame_count} ROI frames for {dur:.3f} s of audio (expected ~{expected:.1f} at 25 fps, "
                        f"tolerance {tol:g} s)")
                    ok = False
                st.rois_ok += ok
    st.problems += len(rep.findings) - n0


def _check_against_index(rep: ValidationReport, source: Path, records: dict[str, ManifestRecord], speakers, mics,
                         variant) -> None:
    """``records``: the manifest's, by utterance."""
    from uaspeech_prep.clips import read_frame_index
    from uaspeech_prep.index import build_index

    idx = build_index(source, speakers=speakers, mics=mics, variant=variant, cross_check=False)
    ranged: set[str] = set()
    for bv in idx.blocks.values():
        if bv.video is not None and bv.frame_index is not None:
            try:  # prepare reports bad lines; no clip is expected from them
                ranged.update(r.utt_id for r in read_frame_index(bv.frame_index)[0])
            except OSError:
                pass
    for uid, u in idx.utterances.items():
        rec = records.get(uid)
        if rec is None:
            rep.speakers.setdefault(u.speaker, SpeakerStats()).missing += 1
            rep.speakers[u.speaker].problems += 1
            rep.findings.append(Finding(uid, "missing_record", f"in the source index ({source}) but not in the manifest"))
            continue
        if (uid in ranged or uid in idx.clips) and not rec.clip:
            rep.speakers.setdefault(u.speaker, SpeakerStats()).problems += 1
            rep.findings.append(Finding(uid, "missing_clip", "the source has video for it but the manifest has no clip"))


def run_validate(root: str | Path, tolerance_s: float = 0.2, log=print, max_listed: int = 50,
                 source: str | Path | None = None, **index_kw) -> int:
    rep = validate_tree(root, tolerance_s, source=source, **index_kw)
    log(f"validating {Path(root)}" + (f" against {source}" if source is not None else ""))
    if rep.speakers:
        log(rep.table())
    for f in rep.findings[:max_listed]:
        log(f"  {f}")
    if len(rep.findings) > max_listed:
        log(f"  ... and {len(rep.findings) - max_listed} more")
    log("OK" if rep.ok else f"{len(rep.findings)} problem(s)")
    return 0 if rep.ok else 1
