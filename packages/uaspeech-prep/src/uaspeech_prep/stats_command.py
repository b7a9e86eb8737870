"""``uaspeech-prep stats`` subcommand (argument parsing and output only; the counting is in
:mod:`uaspeech_prep.stats`)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from uaspeech_prep import corpus
from uaspeech_prep.stats import format_stats, tree_stats
from uaspeech_prep.vocab import VOCABULARIES


def register(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "stats", help="utterance counts per split, level, speaker and category of a release or prepared tree",
        description="Count utterances per split (B1+B3 train, B2 test), B2 seen/unseen words, level, speaker and "
                    "category, next to what a complete release has for the same speakers (docs/UASpeech.md).",
    )
    p.add_argument("root", type=Path, help="a release tree (audio/, video/, doc/) or a prepared tree (manifest.jsonl)")
    p.add_argument("--vocabulary", default="all", choices=VOCABULARIES,
                   help="all words | common (the 155 of every block) | seen / unseen (in B1+B3) (default all)")
    p.add_argument("--mics", nargs="+", metavar="MIC", choices=corpus.MICROPHONES,
                   help="count only utterances with these microphones (default: any)")
    p.add_argument("--variant", help="audio variant of a release tree (original | normalized | noisereduce)")
    p.add_argument("--json", action="store_true", help="print the counts as JSON")
    p.set_defaults(func=run_command)
    return p


def run_command(args: argparse.Namespace) -> int:
    st = tree_stats(args.root, args.vocabulary, args.mics, args.variant)  # errors: one line (uaspeech_prep.cli)
    print(json.dumps(st.to_dict(), indent=2) if args.json else format_stats(st))
    return 0
