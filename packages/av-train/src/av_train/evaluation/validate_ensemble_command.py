"""``validate-ensemble CONFIG [key=value ...] --num_seeds N --start_seed S [--output_file F] [--true_ensemble]``.

Validates every ``<output_root>/weights/checkpoint/<train_id>_<N>/best.ckpt`` that exists (a missing
one is skipped with a warning; none at all is an error) and writes
``results/<train_name>/<train_id>_seed_validation.json`` + ``.csv`` + ``_levels.png`` + ``.md``: one
row per seed, then mean, std and 95% t-interval per level and metric. With ``--true_ensemble`` the
seed models also decode together (averaged log-probabilities) and that result is scored beside the
average of the per-seed scores. Also ``python -m av_train.evaluation.validate_ensemble_command``.

This module is the command (arguments, what it prints); the work is in
:mod:`av_train.evaluation.validate_ensemble`.
"""

from __future__ import annotations

import argparse
import sys

from av_common.cli_errors import run_command
from av_train.cli import parse_overrides
from av_train.config import load_config
from av_train.evaluation.validate_ensemble import validate_seeds


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="validate-ensemble", description=__doc__.split("\n\n")[0])
    p.add_argument("config", help="the training YAML of the multi-seed runs")
    p.add_argument("overrides", nargs="*", help="key=value overrides of config options (e.g. output_root=runs)")
    p.add_argument("--num_seeds", type=int, default=10, help="number of seed checkpoints to look for (default 10)")
    p.add_argument("--start_seed", type=int, default=1, help="first seed index (default 1)")
    p.add_argument("--output_file", help="JSON output path (CSV / PNG / MD written alongside)")
    p.add_argument("--true_ensemble", action="store_true",
                   help="also decode with the seeds' averaged log-probabilities and score that")
    p.add_argument("--split", default="B2", choices=("B1", "B2", "B3"), help="block to decode (default B2)")
    p.add_argument("--data", help="prepared tree to use instead of the config's uaspeech_root")
    p.add_argument("--device", help="torch device (default: cuda when available)")
    p.add_argument("--no-progress", action="store_true")
    return p


def _main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    cfg = load_config(args.config, parse_overrides(args.overrides))
    result = validate_seeds(cfg, args.num_seeds, args.start_seed, args.output_file, args.true_ensemble, args.split,
                            args.data, args.device, progress=not args.no_progress)
    print(result["table"])
    for kind, path in result["paths"].items():
        print(f"{kind}: {path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_command("validate-ensemble", _main, argv)


if __name__ == "__main__":
    sys.exit(main())
