"""``uaspeech-prep synth``: write a deterministic synthetic corpus in the UASpeech release layout."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from uaspeech_prep import corpus


def _csv(value: str) -> list[str]:
    return [v.strip() for v in value.replace(",", " ").split() if v.strip()]


def register(subparsers) -> argparse.ArgumentParser:
    from uaspeech_prep.synth.corpus_writer import SIZES

    p = subparsers.add_parser(
        "synth",
        help="write a synthetic corpus (espeak speech, talking-face video) in the UASpeech release layout",
        description=(
            "Write a deterministic synthetic corpus in the official UASpeech release layout: "
            "doc/speaker_wordlist.xls, audio/<SPK>/<SPK>_<BLK>_<WORDID>_<MIC>.wav, mlf/<SPK>/<SPK>_word.mlf, "
            "video/<SPK>/<SPK>-<BLK>-DV-1.divx and video/<SPK>/<SPK>_<BLK>_frame_index.txt. "
            "Speech is espeak-ng degraded by intelligibility level; video is a face whose mouth follows the phonemes."
        ),
    )
    p.add_argument("--output", "-o", required=True, type=Path, help="output directory (the corpus root)")
    p.add_argument("--size", choices=list(SIZES), default="demo",
                   help="tiny: 3 speakers x 3 blocks x 4 words (tests); demo: 12 AV speakers x 3 blocks x 20 words "
                        "(digits + commands, seen in training; the default); full: all 255 words per block")
    p.add_argument("--seed", type=int, default=0, help="random seed, default 0 (same seed and options: same wav bytes and frame indices)")
    p.add_argument("--speakers", nargs="+", metavar="SPK", default=None,
                   help="speaker ids (space or comma separated) instead of the size's, e.g. M12 F05")
    p.add_argument("--blocks", nargs="+", metavar="BLK", default=None, help="blocks (default B1 B2 B3)")
    p.add_argument("--words-per-block", type=int, default=None,
                   help="number of words per block instead of the size's (first N of digits, commands, letters, "
                        "common words, then the block's uncommon words)")
    p.add_argument("--mics", nargs="+", metavar="MIC", default=["M5", "M6"], help="microphone channels to write (M2..M8), default M5 M6")
    p.add_argument("--jobs", "-j", type=int, default=None,
                   help="worker processes (default: 1 for fewer than 12 speaker-blocks, else min(2, CPU count))")
    p.add_argument("--lip-visibility", type=float, default=1.0, metavar="V",
                   help="how much the mouth shows, 0 < V <= 1 (default 1: the mouth as it always was, the corpus "
                        "byte for byte the same). Lower values weaken only the video: confusable visemes share a "
                        "shape, articulation shrinks towards rest (most for very_low speakers) and the mouth jitters "
                        "per utterance; the audio is unchanged (docs/LIP_READING.md section 6: at 0.3 the demo's lip "
                        "reader misses 67 %% of B2, against 4-5 %% at 1)")
    p.add_argument("--no-mlf", action="store_true", help="do not write mlf/<SPK>/<SPK>_word.mlf")
    p.add_argument("--overwrite", action="store_true",
                   help="allow writing into a non-empty directory that is not a previous synth output")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)
    return p


def config_from_args(args: argparse.Namespace):
    from uaspeech_prep.synth.corpus_writer import SIZES, SynthConfig

    preset = SIZES[args.size]
    speakers = tuple(s.upper() for v in args.speakers for s in _csv(v)) if args.speakers else preset.speakers
    blocks = tuple(b.upper() for v in args.blocks for b in _csv(v)) if args.blocks else preset.blocks
    mics = tuple(m.upper() for v in args.mics for m in _csv(v))
    return SynthConfig(
        output=args.output,
        speakers=speakers,
        blocks=blocks,
        words_per_block=args.words_per_block if args.words_per_block is not None else preset.words_per_block,
        mics=mics,
        seed=args.seed,
        size=args.size,
        jobs=args.jobs if args.jobs is not None else (1 if len(speakers) * len(blocks) < 12 else min(2, os.cpu_count() or 1)),
        write_mlf=not args.no_mlf,
        overwrite=args.overwrite,
        lip_visibility=args.lip_visibility,
    )


def run(args: argparse.Namespace) -> int:
    from uaspeech_prep.synth.corpus_writer import OutputNotEmpty, check_output_dir

    try:
        cfg = config_from_args(args)
        cfg.validate()
        check_output_dir(Path(cfg.output), cfg.overwrite)  # before the progress bar starts
    except (KeyError, ValueError, OutputNotEmpty) as err:
        print(f"uaspeech-prep synth: error: {err.args[0] if err.args else err}", file=sys.stderr)
        return 2
    from av_common.files import OutputBusy, output_lock

    try:
        with output_lock(Path(cfg.output).resolve(), "uaspeech-prep synth"):
            return _build(cfg, args)
    except OutputBusy as err:
        print(f"uaspeech-prep synth: error: {err}", file=sys.stderr)
        return 2


def _build(cfg, args: argparse.Namespace) -> int:
    """The corpus, written while this process holds the output (see `run`)."""
    from tqdm import tqdm

    from uaspeech_prep.synth.corpus_writer import OutputNotEmpty, build_corpus

    t0 = time.time()
    bar = tqdm(total=len(cfg.speakers) * len(cfg.blocks), unit="video", desc="synth speaker-blocks",
               disable=args.no_progress, file=sys.stderr)
    try:
        info = build_corpus(cfg, progress=bar.update)
    except OutputNotEmpty as err:
        print(f"uaspeech-prep synth: error: {err}", file=sys.stderr)
        return 2
    finally:
        bar.close()
    size = sum((cfg.output / f).stat().st_size for f in info["files"])
    levels = {}
    for s in cfg.speakers:
        levels.setdefault(corpus.SPEAKERS[s].level or "control", []).append(s)
    print(
        f"wrote {info['utterances']} utterances x {len(cfg.mics)} mics, {len(cfg.speakers) * len(cfg.blocks)} videos "
        f"({len(info['files'])} files, {size / 1e6:.1f} MB) to {cfg.output} in {time.time() - t0:.1f} s; "
        + "; ".join(f"{k}: {' '.join(v)}" for k, v in levels.items())
    )
    return 0
