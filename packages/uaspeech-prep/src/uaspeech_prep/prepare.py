"""``uaspeech-prep prepare``: release tree (docs/LAYOUT.md section 1) -> prepared tree (section 2).

Per utterance: copy its wavs to ``DST/audio/<SPK>/`` (copies; the source is never modified), cut its
clip from the block video (one sequential pass per block video, :mod:`uaspeech_prep.clips`) or copy an
already-cut clip, crop the lip ROI (:mod:`uaspeech_prep.roi`) and, with ``vad``, write VAD-trimmed wavs
to ``DST/audio/vad/<SPK>/`` (:mod:`uaspeech_prep.vad`). Then ``manifest.jsonl``, the word list, with
``sync_report`` / ``sync_correct`` ``sync.csv`` (each clip's audio-video offset, the ROI re-timed when confident:
:mod:`uaspeech_prep.sync_report`, a pass over the finished ROIs) and ``prepare_report.json``.

Every file is written under a temporary name in its directory and renamed when complete. Rerunning
skips finished outputs (a wav copy with the source's size and mtime; a clip with the expected frame
count; a 96x96 ROI that opens), so an interrupted run resumes; ``overwrite`` redoes everything.
A run over some speakers keeps the manifest records of the other speakers already in DST.

Work is split by block video (speaker x block); ``workers`` > 1 runs blocks in a process pool. The pieces:
:mod:`~uaspeech_prep.prepare_plan` (the jobs), :mod:`~uaspeech_prep.prepare_block` (one block's work),
:mod:`~uaspeech_prep.prepare_pool` (the process pool), :mod:`~uaspeech_prep.prepare_report` (manifest
records, report, summary); this module checks what can refuse the run and puts them together.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from uaspeech_prep import corpus
from uaspeech_prep.index import CorpusIndex, build_index
from uaspeech_prep.manifest import MANIFEST, ManifestLineError, ManifestRecord, merge_records, read_records, write_manifest
from uaspeech_prep.prepare_block import run_block
from uaspeech_prep.prepare_options import PrepareOptions
from uaspeech_prep.prepare_outcome import UttOutcome
from uaspeech_prep.prepare_plan import BlockJob, plan
from uaspeech_prep.prepare_pool import run_pool
from uaspeech_prep.prepare_report import REPORT, RunTotals, build_report, manifest_record, summary_lines
from uaspeech_prep.video_io import atomic_copy, atomic_write_text, is_copy_of, remove_stale_temps, temp_path_for

__all__ = ["MANIFEST", "REPORT", "PrepareOptions", "PrepareResult", "prepare", "run"]


@dataclass
class PrepareResult:
    exit_code: int
    report: dict
    manifest: Path
    report_path: Path


def _read_existing_manifest(path: Path) -> list[ManifestRecord]:
    """The records a partial run (``--speakers``) carries over; a line that is not a record stops the run
    before any work (dropping it would lose an utterance of another speaker without a word)."""
    if not path.is_file():
        return []
    try:
        return read_records(path, require=("utt_id", "speaker"))
    except ManifestLineError as e:
        raise ValueError(
            f"{e.path}:{e.lineno}: cannot parse this manifest line ({e.why}); a run over some --speakers keeps the "
            "other speakers' lines, so it will not drop this one: fix or delete the line, or prepare all "
            "speakers (without --speakers) to rewrite the manifest") from None


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


def _check_landmarker(opts: PrepareOptions) -> None:
    """Fail early, before any work, when ROIs are wanted and there is no landmarker model."""
    if opts.skip_roi:
        return
    from uaspeech_prep.roi import default_model_path

    model = Path(opts.model_path) if opts.model_path else default_model_path()
    if not model.is_file():
        raise FileNotFoundError(f"{model}: FaceLandmarker model file not found")


def _check_speakers(index: CorpusIndex, opts: PrepareOptions) -> None:
    """Refuse a run with nothing to prepare: asked-for speakers without audio, or no audio at all."""
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


def _run_blocks(jobs: list[BlockJob], dst: Path, opts: PrepareOptions) -> dict[str, UttOutcome]:
    """Every block, in this process or in a pool, with a progress bar over utterances."""
    from tqdm import tqdm

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
            run_pool(jobs, dst, opts.workers, outcomes, bar)
        bar.update(max(0, total - bar.n))
    finally:
        bar.close()
    return outcomes


def _write_manifest(index: CorpusIndex, outcomes: dict[str, UttOutcome], existing: list[ManifestRecord],
                    opts: PrepareOptions, dst: Path) -> tuple[int, list[ManifestRecord]]:
    """``manifest.jsonl``: this run's speakers replaced, the others kept; returns the number of records and this
    run's records."""
    from uaspeech_prep.vocab import is_seen, training_words

    wl = index.wordlist
    tw = training_words(wl)
    records = [manifest_record(u, outcomes[u.utt_id], dst, is_seen(u.block, u.word_id, wl, tw))
               for u in index.utterances.values() if u.utt_id in outcomes]
    all_records = merge_records(existing, records, set(opts.speakers or ()))
    write_manifest(dst / MANIFEST, all_records)
    return len(all_records), records


def _copy_wordlist(index: CorpusIndex, opts: PrepareOptions, dst: Path) -> None:
    if index.wordlist_path is not None:
        wl_dst = dst / index.wordlist_path.name  # speaker_wordlist.xls (or .xlsx)
        if index.wordlist_path.resolve() != wl_dst.resolve() and (opts.overwrite or not is_copy_of(index.wordlist_path, wl_dst)):
            atomic_copy(index.wordlist_path, wl_dst)


def prepare(opts: PrepareOptions, log=print) -> PrepareResult:
    """Run the whole preparation; returns the exit code (0 ok; 1 when something failed and not
    ``keep_going``) and the report written to ``DST/prepare_report.json``. Another preparation writing the same
    output is refused (one writer per output: two would mix their manifests)."""
    from av_common.files import output_lock

    with output_lock(Path(opts.output).resolve(), "uaspeech-prep prepare"):
        return _prepare(opts, log)


def _prepare(opts: PrepareOptions, log=print) -> PrepareResult:
    t0 = time.time()
    started = datetime.now(UTC).isoformat(timespec="seconds")
    src, dst = Path(opts.source).resolve(), Path(opts.output).resolve()
    opts.source, opts.output = src, dst
    if dst == src:
        raise ValueError("--output must differ from --source (the source is never modified)")
    if opts.sync_correct is not None and not -1.0 <= opts.sync_correct <= 1.0:
        raise ValueError(f"--sync-correct {opts.sync_correct:g}: the confidence is a correlation, between -1 and 1")
    _check_landmarker(opts)
    # everything that can refuse the run does so before the first file is written
    existing = _read_existing_manifest(dst / MANIFEST) if opts.speakers else []
    index = build_index(src, speakers=opts.speakers, mics=opts.mics, variant=opts.variant)
    _check_speakers(index, opts)
    if index.wordlist_source == "builtin":  # (an unreadable one is a problem of its own, reported with the others)
        log(f"note: no speaker_wordlist.xls in {src / 'doc'}: using the built-in UASpeech word list "
            "(the official one; put the release's doc/speaker_wordlist.xls there to use yours)")
    dst.mkdir(parents=True, exist_ok=True)
    _check_writable(dst)
    remove_stale_temps(dst)
    jobs, plan_problems = plan(index, opts)

    outcomes = _run_blocks(jobs, dst, opts)
    n_records, records = _write_manifest(index, outcomes, existing, opts, dst)
    _copy_wordlist(index, opts, dst)
    sync = None
    if opts.sync:  # sync.csv, and the ROIs re-timed with --sync-correct (uaspeech_prep.sync_report)
        from uaspeech_prep.sync_report import sync_tree

        sync = sync_tree(dst, records, correct_min=opts.sync_correct, progress=opts.progress)

    totals = RunTotals(outcomes, index.problems + plan_problems, index.speakers, n_records)
    report = build_report(totals, opts, index, started, t0)
    if sync is not None:
        report["sync"] = sync.to_dict()
    atomic_write_text(dst / REPORT, json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    for line in summary_lines(totals, report["summary"], dst, opts.vad) + ([sync.line()] if sync else []):
        log(line)
    if totals.ok:
        return PrepareResult(0, report, dst / MANIFEST, dst / REPORT)
    n_errors, n_failures = len(totals.errors), len(totals.failures)
    if opts.keep_going:
        log(f"{n_errors} problem(s), {n_failures} failure(s): accepted (--keep-going)")
        return PrepareResult(0, report, dst / MANIFEST, dst / REPORT)
    log(f"{n_errors} problem(s), {n_failures} failure(s): see {dst / REPORT} (pass --keep-going to accept them)")
    return PrepareResult(1, report, dst / MANIFEST, dst / REPORT)


def run(source: str | Path, output: str | Path, speakers: Iterable[str] | None = None, log=print,
        **kw) -> PrepareResult:
    """Convenience wrapper: ``run(src, dst, speakers=['F02'], skip_roi=True)``."""
    return prepare(PrepareOptions(Path(source), Path(output), list(speakers) if speakers else None, **kw), log=log)
