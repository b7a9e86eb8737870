"""``uaspeech-prep`` command line: synth | prepare (and --validate-only) | stats."""

from __future__ import annotations

import argparse
import sys


def build_parser() -> argparse.ArgumentParser:
    from uaspeech_prep.prepare_command import register as register_prepare
    from uaspeech_prep.stats import register as register_stats
    from uaspeech_prep.synth.command import register as register_synth

    parser = argparse.ArgumentParser(
        prog="uaspeech-prep",
        description="Prepare the UASpeech corpus (or a synthetic corpus in its layout) for audio-visual training.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    register_synth(sub)
    register_prepare(sub)
    register_stats(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
