"""``python -m av_train [train|train-multi-seed|download-model] ...``; without a command word it trains:
``python -m av_train CONFIG [key=value ...]`` is ``av-train CONFIG [key=value ...]``."""

from __future__ import annotations

import sys

COMMANDS = ("train", "train-multi-seed", "download-model")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = argv.pop(0) if argv and argv[0] in COMMANDS else "train"
    if command == "train-multi-seed":
        from av_train.multi_seed_command import main as run
    elif command == "download-model":
        from av_train.download_command import main as run
    else:
        from av_train.cli import main as run
    return run(argv)


if __name__ == "__main__":
    sys.exit(main())
