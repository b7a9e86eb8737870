"""``av-cli train-multi-seed CONFIG --num_seeds N --start_seed S [key=value ...]`` (also ``av-train-multi-seed``,
``python -m av_train train-multi-seed`` and ``python -m av_train.multi_seed_command``): argument parsing and the
printed summary only; the runner is :mod:`av_train.multi_seed` (docs/MULTI_SEED.md).

Exit status 0 when every seed finished, 1 when any seed failed, 2 for a user error (bad config, bad option).
"""

from __future__ import annotations

import argparse
import sys

from av_common.cli_errors import run_command

from av_train.cli import parse_overrides
from av_train.config import ConfigError, load_config
from av_train.multi_seed import run_multi_seed, write_summary


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="av-train-multi-seed",
        description="Train one config for several seeds: runs <train_id>_<seed> (see docs/MULTI_SEED.md).",
    )
    p.add_argument("config", help="YAML training config")
    p.add_argument("overrides", nargs="*", help="key=value overrides of config options (apply to every seed)")
    p.add_argument("--num_seeds", "--num-seeds", type=int, default=10, help="number of runs (default 10)")
    p.add_argument("--start_seed", "--start-seed", type=int, default=1, help="first seed index (default 1)")
    p.add_argument("--sequential", action="store_true", help="one seed at a time even when several GPUs are visible")
    return p


def _main(argv: list[str]) -> int:
    # intermixed: key=value overrides may come after the flags (CONFIG --num_seeds 5 key=value)
    args = build_parser().parse_intermixed_args(argv)
    overrides = parse_overrides(args.overrides)
    if "seed" in overrides:
        raise ConfigError("the seed of each run comes from --start_seed / --num_seeds; remove the seed= override")
    cfg = load_config(args.config, overrides)
    if args.num_seeds < 1:
        raise ConfigError(f"--num_seeds must be >= 1, got {args.num_seeds}")
    results = run_multi_seed(cfg, args.num_seeds, args.start_seed, config_path=args.config, overrides=overrides,
                             sequential=args.sequential)
    paths = write_summary(cfg, results)
    print("\n" + paths["md"].read_text(encoding="utf-8"))
    print(f"summary: {paths['json']}")
    failed = [r for r in results if not r.ok]
    if failed:
        print(f"{len(failed)} of {len(results)} seed(s) failed: " + ", ".join(f"{r.seed} ({r.error})" for r in failed),
              file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_command("av-train-multi-seed", _main, argv)


if __name__ == "__main__":
    sys.exit(main())
