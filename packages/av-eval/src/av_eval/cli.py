"""``av-eval``: score predictions files (per level, speaker and category) and write reports."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from av_eval.metrics import score_predictions
from av_eval.predictions import read_predictions
from av_eval.report import comparison_table, plot_levels, write_report


def _score(args: argparse.Namespace) -> int:
    reports = {}
    for path in args.predictions:
        p = Path(path)
        if not p.is_file():
            print(f"av-eval: no predictions file at {p}", file=sys.stderr)
            return 2
        preds = read_predictions(p)
        report = score_predictions(preds)
        name = p.stem.removesuffix(".predictions").removesuffix("_predictions")
        out_dir = Path(args.output) if args.output else p.parent
        written = write_report(report, out_dir, stem=f"{name}_metrics")
        reports[name] = report
        print(f"{p}: {report.total.n} utterances -> {written['json']}")
    print(comparison_table(reports))
    if len(reports) > 1 and args.output:
        plot_levels(reports, Path(args.output) / "comparison_wer_levels.png")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="av-eval", description="Score UASpeech recognition output per intelligibility level.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("score", help="score one or more predictions .jsonl files (no model needed)")
    p.add_argument("predictions", nargs="+", help="predictions files written by av-train / av-eval")
    p.add_argument("--output", help="folder for metrics JSON/CSV/PNG (default: next to each file)")
    p.set_defaults(func=_score)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ValueError as e:
        print(f"av-eval: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
