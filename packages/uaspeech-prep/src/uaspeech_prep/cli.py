"""``uaspeech-prep`` command line: synth | prepare (and --validate-only) | stats | sync."""

from __future__ import annotations

import argparse
import sys


def build_parser() -> argparse.ArgumentParser:
    from uaspeech_prep.prepare_command import register as register_prepare
    from uaspeech_prep.stats_command import register as register_stats
    from uaspeech_prep.sync_command import register as register_sync
    from uaspeech_prep.synth.command import register as register_synth

    parser = argparse.ArgumentParser(
        prog="uaspeech-prep",
        description="Prepare the UASpeech corpus (or a synthetic corpus in its layout) for audio-visual training.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    register_synth(sub)
    register_prepare(sub)
    register_stats(sub)
    register_sync(sub)
    return parser


def _run(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


def main(argv: list[str] | None = None) -> int:
    """One line and exit 2 for the user's errors, 130 on Ctrl-C, --debug for the traceback: the rules every command
    of the toolkit shares (av_common.cli_errors)."""
    from av_common.cli_errors import run_command

    argv = list(sys.argv[1:] if argv is None else argv)
    words = [a for a in argv if not a.startswith("-")]
    prog = f"uaspeech-prep {words[0]}" if words else "uaspeech-prep"
    return run_command(prog, _run, argv)


if __name__ == "__main__":
    sys.exit(main())
