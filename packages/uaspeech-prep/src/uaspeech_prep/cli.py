"""``uaspeech-prep`` command line: synth | prepare (and --validate-only) | stats | sync."""

from __future__ import annotations

import argparse
import os
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


# The toolkit's errors (ValueError / RuntimeError subclasses), OSError and a refused pickle end a command
# with one line and exit 2; Ctrl-C with exit 130; --debug (or AV_DEBUG=1) shows the traceback instead.
# The same rules as av_eval.cli_errors, which this package cannot import (it depends on no other package).
USER_ERRORS = (ValueError, RuntimeError, OSError)


def describe(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.filename}: {exc.strerror}" if exc.filename is not None else exc.strerror
    return str(exc).strip() or type(exc).__name__


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv or os.environ.get("AV_DEBUG", "") not in ("", "0")
    argv = [a for a in argv if a != "--debug"]
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        if debug:
            raise
        print(f"\nuaspeech-prep {args.command}: interrupted; finished clips are kept and rerunning the same "
              "command resumes", file=sys.stderr)
        return 130
    except USER_ERRORS as e:
        if debug:
            raise
        print(f"uaspeech-prep {args.command}: {describe(e)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
