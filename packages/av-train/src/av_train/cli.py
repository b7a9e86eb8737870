"""``av-train CONFIG [key=value ...]`` (also ``python -m av_train.cli`` and ``python -m av_train``)."""

from __future__ import annotations

import argparse
import sys

import yaml

from av_common.cli_errors import run_command

from av_train.config import ConfigError, load_config


def parse_overrides(pairs: list[str]) -> dict:
    """``key=value`` pairs, values parsed as YAML (``max_epochs=3``, ``speakers=[M09,F02]``)."""
    out = {}
    for pair in pairs:
        if "=" not in pair:
            raise ConfigError(f"override {pair!r} must look like key=value")
        key, value = pair.split("=", 1)
        out[key.strip()] = yaml.safe_load(value)
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="av-train", description="Train or validate audio-only / audio-visual Whisper from a YAML config.")
    p.add_argument("config", help="YAML training config (see configs/ and docs/CONFIG.md)")
    p.add_argument("overrides", nargs="*", help="key=value overrides of config options")
    return p


def _main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    cfg = load_config(args.config, parse_overrides(args.overrides))
    from av_train.pipeline import main_train

    result = main_train(cfg)
    if result.report is not None:
        from av_eval.report import comparison_table

        print(comparison_table({cfg.train_id: result.report}))
    print(f"checkpoints: {result.checkpoint_dir}\nresults: {result.results_dir}")
    return 0


def main(argv: list[str] | None = None) -> int:
    # the toolkit's errors and OSError: one line `av-train: ...`, exit 2 (--debug for the traceback)
    return run_command("av-train", _main, argv)


if __name__ == "__main__":
    sys.exit(main())
