"""``av-cli transcribe MODEL FILE...``: recognise a user's own recordings with a trained model.

This module is the command (arguments, checks, what it prints and writes); the work, and what each input
may be, are in :mod:`av_train.inference.transcribe`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from av_common.cli_errors import ensure_output_dir, run_command
from av_train.inference.transcribe import LEVEL_NAMES, TranscribeError, expand_inputs, load_model, render, transcribe


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="av-cli transcribe", description=__doc__.split("\n\n")[0])
    p.add_argument("model", help="exported model folder (av-cli export), run folder or .ckpt")
    p.add_argument("files", nargs="+", help="videos with sound, audio files, mouth-crop videos (--roi-input) "
                                            "or CSV / TSV lists with audio and video columns")
    p.add_argument("--output", help="write results to this .jsonl or .csv (default: JSON lines on stdout)")
    p.add_argument("--vocabulary", default=None, metavar="open|uaspeech|FILE",
                   help="closed vocabulary to decode (default: the model's own; 'open' for free text)")
    p.add_argument("--top-k", type=int, default=5, help="words with log-probabilities under a closed vocabulary")
    p.add_argument("--beam", type=int, default=None, help="beam size (default: the model's own)")
    p.add_argument("--batch-size", type=int, default=1,
                   help="inputs per model call (default 1: each result is independent of the others)")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.add_argument("--roi-input", action="store_true", help="the videos are already 96 x 96 mouth crops")
    p.add_argument("--allow-audio-only", action="store_true",
                   help="audio-visual models: use the sound alone when a file has no face or no video")
    p.add_argument("--level", choices=LEVEL_NAMES, default=None,
                   help="the speaker's intelligibility level (only for routers trained with routing_use_level)")
    p.add_argument("--sync", choices=("auto", "off"), default="off",
                   help="auto: estimate each input's audio-video offset (no learned model) and re-time the mouth "
                        "crops when it is at least 2 frames and confident; adds sync_offset_ms, sync_confidence "
                        "and sync_corrected to the output (docs/SYNC.md). Default off")
    p.add_argument("--no-progress", action="store_true")
    return p


def _main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    fmt = None
    if args.output:
        fmt = {".jsonl": "jsonl", ".json": "jsonl", ".csv": "csv"}.get(Path(args.output).suffix.lower())
        if fmt is None:
            print(f"av-cli transcribe: --output {args.output}: use a .jsonl or .csv file name", file=sys.stderr)
            return 2
    if (args.beam is not None and args.beam < 1) or args.batch_size < 1 or args.top_k < 0:
        print("av-cli transcribe: --beam and --batch-size must be >= 1, --top-k >= 0", file=sys.stderr)
        return 2
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        print("av-cli transcribe: --device cuda but no CUDA GPU is available; use --device cpu", file=sys.stderr)
        return 2
    if args.output:
        ensure_output_dir(Path(args.output).parent or ".")  # before the model loads and the inputs are decoded
    import contextlib

    from av_common.files import output_lock

    with output_lock(args.output, "av-cli transcribe") if args.output else contextlib.nullcontext():
        return _transcribe(args, device, fmt)


def _transcribe(args, device: str, fmt: str | None) -> int:
    from av_train.vocabulary import decode_words

    items = expand_inputs(args.files)
    import contextlib

    with contextlib.redirect_stdout(sys.stderr):  # stdout carries the results alone
        model, processor = load_model(args.model, device)
    if args.vocabulary is not None:
        processor = processor.with_vocabulary(decode_words(args.vocabulary))
    if model.config.routing_use_level and args.level is None:
        raise TranscribeError(f"{args.model} routes with the speaker's level: pass --level very_low|low|mid|high")
    outcomes: list = []
    try:
        transcribe(model, processor, items, args.top_k, args.beam, args.batch_size, args.allow_audio_only,
                   args.roi_input, args.level, progress=not args.no_progress, sync=args.sync, into=outcomes)
    except KeyboardInterrupt:
        done = [o for o in outcomes if o.finished]
        if args.output and done:  # keep what finished, under a name that says it is partial
            from av_common.files import atomic_write_text

            out = Path(args.output)
            partial = out.with_name(f"{out.stem}.partial{out.suffix}")
            atomic_write_text(partial, render(done, fmt or "jsonl"))
            print(f"av-cli transcribe: interrupted; the {len(done)} of {len(items)} inputs that finished are in "
                  f"{partial} (run again for all of them in {out})", file=sys.stderr)
        elif done:
            sys.stdout.write(render(done, fmt or "jsonl"))
        raise
    failed = [o for o in outcomes if o.error]
    for o in failed:
        print(f"av-cli transcribe: {o.error}", file=sys.stderr)
    text = render(outcomes, fmt or "jsonl")
    if args.output:
        from av_common.files import atomic_write_text

        atomic_write_text(args.output, text)
        print(f"{len(outcomes) - len(failed)} of {len(outcomes)} inputs recognised -> {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    return run_command("av-cli transcribe", _main, argv)


if __name__ == "__main__":
    sys.exit(main())
