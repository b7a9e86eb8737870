"""Fetch a Whisper checkpoint into the local Hugging Face cache for offline training.

``av-cli download-model NAME`` (also ``av-train-download-model NAME``, ``python -m av_train download-model NAME``), NAME one of
tiny, base, small, medium (each also ``.en``), large, large-v2, large-v3, large-v3-turbo, or a
full hub name such as ``openai/whisper-small``. Afterwards set ``model_name: openai/whisper-<NAME>``
and ``local_model_only: true`` in the training config. ``--output DIR`` also copies the files into
a plain folder (usable as ``model_name: DIR`` on a machine without network).

This module is the command (arguments, what it prints); the work is in :mod:`av_train.download`.
"""

from __future__ import annotations

import argparse
import sys

from av_common.cli_errors import run_command

from av_train.download import MODEL_NAMES, download_model, repo_id_for


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="av-train-download-model", description="Fetch a Whisper model for offline training.")
    p.add_argument("name", help=f"one of {', '.join(MODEL_NAMES)}, or a hub name such as openai/whisper-small")
    p.add_argument("--output", default=None, help="also copy the files into this folder (use it as model_name)")
    p.add_argument("--cache-dir", "--cache_dir", default=None, help="Hugging Face cache folder (default: the standard one)")
    return p


def _main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    path = download_model(args.name, cache_dir=args.cache_dir, output=args.output)
    repo_id = repo_id_for(args.name)
    use = str(path) if args.output else repo_id
    print(f"{repo_id} is at {path}\nIn your config: model_name: {use}\n                local_model_only: true")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_command("download-model", _main, argv)


if __name__ == "__main__":
    sys.exit(main())
