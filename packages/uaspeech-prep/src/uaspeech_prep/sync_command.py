"""``uaspeech-prep sync`` subcommand (argument parsing and output only; the work is in
:mod:`uaspeech_prep.sync_report`)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from uaspeech_prep import corpus
from uaspeech_prep.av_sync import MAX_OFFSET_MS, MIN_CONFIDENCE


def add_sync_correct(p: argparse.ArgumentParser, flag: str, what: str) -> None:
    """``FLAG [MIN_CONFIDENCE]``: shared by ``prepare --sync-correct`` and ``sync --correct``."""
    p.add_argument(flag, nargs="?", type=float, const=MIN_CONFIDENCE, default=None, metavar="MIN_CONFIDENCE",
                   help=f"{what} re-time the lip ROI of each clip whose offset is at least 2 frames (80 ms) and whose "
                        f"confidence is at least MIN_CONFIDENCE (default {MIN_CONFIDENCE:g}); the ROI is rewritten "
                        "in place and marked corrected in sync.csv, so a rerun does not shift it twice "
                        "(docs/SYNC.md)")


def register(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "sync", help="estimate each clip's audio-video offset; write sync.csv (and optionally re-time the ROIs)",
        description="Estimate the audio-video offset of every clip of a prepared tree (its lip ROI against its "
                    "audio, no learned model: docs/SYNC.md) and write ROOT/sync.csv (utt_id, offset_ms, "
                    "confidence, corrected, ...). offset_ms > 0: the picture lags the sound.",
    )
    p.add_argument("root", type=Path, help="a prepared tree (manifest.jsonl, audio/, video/roi/)")
    add_sync_correct(p, "--correct", "also")
    p.add_argument("--mic", choices=corpus.MICROPHONES,
                   help="the microphone to compare with the lips (default: the first of each utterance's, by name)")
    p.add_argument("--max-offset-ms", type=float, default=MAX_OFFSET_MS,
                   help=f"search the offset over +-this (default {MAX_OFFSET_MS:g} ms)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run_command)
    return p


def run_command(args: argparse.Namespace) -> int:
    from uaspeech_prep.sync_report import sync_tree

    if args.correct is not None and not (-1.0 <= args.correct <= 1.0):
        raise ValueError(f"--correct {args.correct:g}: the confidence is a correlation, between -1 and 1")
    summary = sync_tree(args.root, correct_min=args.correct, mic=args.mic, max_offset_ms=args.max_offset_ms,
                        progress=not args.quiet)  # errors: one line (uaspeech_prep.cli)
    print(json.dumps(summary.to_dict(), indent=2) if args.json else summary.line().strip())
    return 0
