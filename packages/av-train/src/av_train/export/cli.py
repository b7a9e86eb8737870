"""``av-cli export RUN_OR_CKPT OUT_DIR [--format hf|whisper|ct2]``: the command; the work is in
:mod:`av_train.export.hf`, :mod:`av_train.export.whisper`, :mod:`av_train.export.ct2` and :mod:`av_train.export.hub`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from av_common.cli_errors import run_command
from av_common.files import output_lock

from av_train.export.hf import ExportError
from av_train.export.hub import push_to_hub


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="av-cli export",
        description="Export a trained run as a self-contained, pickle-free model folder (hf), as a standard "
                    "Transformers Whisper folder (whisper, audio-only runs) or as a CTranslate2 Whisper for "
                    "faster-whisper (ct2, audio-only runs).",
    )
    p.add_argument("source", help="run folder (weights/checkpoint/<train_id>) or its best.ckpt / last.ckpt")
    p.add_argument("out_dir", help="folder to write (created; an earlier export there needs --overwrite)")
    p.add_argument("--format", choices=("hf", "whisper", "ct2"), default="hf",
                   help="hf (default): av-fusion-models folder; whisper: WhisperForConditionalGeneration / "
                        "pipeline('automatic-speech-recognition') folder (audio-only); ct2: CTranslate2 / "
                        "faster-whisper (audio-only)")
    p.add_argument("--allow-cut", action="store_true",
                   help="whisper: export a run trained on clips cut to their length although Transformers pads to "
                        "30 s (its words can then differ from av-cli transcribe's; the card says so)")
    p.add_argument("--decode-vocabulary", default=None, metavar="open|uaspeech|FILE",
                   help="closed vocabulary stored with the model (default: the run's decode_vocabulary)")
    p.add_argument("--quantization", default=None,
                   help="ct2 only: stored weight type (float32, float16, int8, int8_float32, ...)")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier export in OUT_DIR")
    p.add_argument("--push-to-hub", metavar="REPO", default=None,
                   help="also upload the folder to this Hugging Face Hub model repository (needs a login)")
    p.add_argument("--private", action="store_true", help="with --push-to-hub: create the repository private")
    return p


def _main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    with output_lock(Path(args.out_dir).resolve(), "av-cli export"):
        return _export(args)


def _export(args) -> int:
    if args.format == "whisper":
        if args.decode_vocabulary or args.quantization:
            raise ExportError("--decode-vocabulary and --quantization do not apply to --format whisper "
                              "(Transformers decodes open, in the weights' own precision)")
        from av_train.export.whisper import export_whisper

        result = export_whisper(args.source, args.out_dir, overwrite=args.overwrite, allow_cut=args.allow_cut)
    elif args.format == "ct2":
        if args.decode_vocabulary:
            raise ExportError("--decode-vocabulary applies to --format hf (faster-whisper decodes open)")
        from av_train.export.ct2 import export_ct2

        result = export_ct2(args.source, args.out_dir, args.quantization, overwrite=args.overwrite)
    else:
        if args.quantization:
            raise ExportError("--quantization applies to --format ct2 only")
        from av_train.export.hf import export_hf

        result = export_hf(args.source, args.out_dir, args.decode_vocabulary, overwrite=args.overwrite)
    print(f"exported {result.run.cfg.train_id} ({result.run.cfg.modality}) to {result.path} [{args.format}]: "
          + ", ".join(result.files))
    if args.push_to_hub:
        try:
            url = push_to_hub(result.path, args.push_to_hub, args.private)
        except Exception as e:  # network, auth, permissions: the export itself is complete
            print(f"av-cli export: upload to {args.push_to_hub} failed: {e}", file=sys.stderr)
            return 3
        print(f"uploaded to {url}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_command("av-cli export", _main, argv)


if __name__ == "__main__":
    sys.exit(main())
