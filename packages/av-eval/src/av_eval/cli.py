"""``av-eval``: score predictions files, or evaluate every checkpoint in a folder.

    av-eval score PREDICTIONS.jsonl... [--output DIR] [--train-words MANIFEST]
    av-eval [eval] CHECKPOINT_DIR [--split B2] [--data ROOT] [--output DIR]
    av-eval compare [NAME=]SEED_SUMMARY.json... --output DIR

``eval`` needs a predictor registered by a training package (see av_eval.predictors); ``score``
needs nothing but the predictions files.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from av_eval.aggregate import summarize_reports
from av_common.cli_errors import USER_ERRORS, describe, ensure_output_dir, run_command
from av_eval.metrics import Report, score_predictions, training_words
from av_common.files import output_lock
from av_common.files import atomic_write_text
from av_eval.predictions import read_predictions, write_predictions
from av_eval.reliability import plot_reliability_per_level, reliability_markdown, reliability_per_level, write_reliability
from av_eval.report import (
    comparison_table,
    plot_levels,
    plot_levels_ci,
    plot_route_probs,
    route_probs_per_level,
    summary_table,
    write_report,
    write_summary,
)

SUBCOMMANDS = ("score", "eval", "compare")


def _score(args: argparse.Namespace) -> int:
    reports = {}
    words = training_words(args.train_words) if args.train_words else None
    for path in args.predictions:
        p = Path(path)
        if not p.is_file():
            print(f"av-eval: no predictions file at {p}", file=sys.stderr)
            return 2
        preds = read_predictions(p)
        report = score_predictions(preds, train_words=words)
        name = p.stem.removesuffix(".predictions").removesuffix("_predictions")
        out_dir = ensure_output_dir(Path(args.output) if args.output else p.parent)
        written = write_report(report, out_dir, stem=f"{name}_metrics")
        reports[name] = report
        routes = route_probs_per_level(preds)
        if routes is not None:
            plot_route_probs({name: routes}, out_dir / f"{name}_route_probs.png")
        trust = reliability_per_level(preds)
        if trust is not None:  # a model with a video reliability scorer: how far it trusted the lips, per level
            write_reliability(trust, out_dir / f"{name}_reliability.json")
            plot_reliability_per_level({name: preds}, out_dir / f"{name}_reliability.png")
        print(f"{p}: {report.total.n} utterances -> {written['json']}")
    print(comparison_table(reports))
    if len(reports) > 1 and args.output:
        plot_levels(reports, Path(args.output) / "comparison_wer_levels.png")
    return 0


_SEED = re.compile(r"^(?P<base>.+)_(?P<seed>\d+)$")


def group_seeds(names: list[str]) -> dict[str, list[str]]:
    """Runs named ``<train_id>_<N>`` (multi-seed) grouped under ``<train_id>``; others alone."""
    groups: dict[str, list[str]] = {}
    for name in names:
        m = _SEED.match(name)
        groups.setdefault(m.group("base") if m else name, []).append(name)
    return groups


def _safe(name: str) -> str:
    return re.sub(r"[^\w.-]+", "_", name).strip("_") or "run"


def evaluate_folder(folder: str | Path, split: str = "B2", data: str | Path | None = None,
                    output: str | Path | None = None, predictors=None, progress: bool = True,
                    decode_vocabulary: str | None = None) -> dict:
    """Evaluate every checkpoint found under ``folder``; write per-checkpoint predictions and
    metrics, and an aggregate (summary.json / .csv / .md / PNG). Returns {"reports", "output", ...}.

    ``decode_vocabulary`` (``open``, ``uaspeech`` or a word-list file) replaces each run's own setting; it is
    handed to the predictor as a keyword option."""
    from av_eval.predictors import find_predictor

    folder = Path(folder)
    if not folder.exists():
        raise FileNotFoundError(f"no such folder {folder}")
    predictor, checkpoints = find_predictor(folder, predictors)
    out = ensure_output_dir(Path(output) if output else default_eval_output(folder, split))
    print(f"{predictor.name}: {len(checkpoints)} checkpoint(s) under {folder} -> {out}")
    reports: dict[str, Report] = {}
    routes: dict[str, dict] = {}
    trust: dict[str, dict] = {}
    trust_preds: dict[str, list] = {}
    failed: dict[str, str] = {}
    for ckpt in checkpoints:
        options = {} if decode_vocabulary is None else {"decode_vocabulary": decode_vocabulary}
        try:
            result = predictor.predict(ckpt, split=split, data=Path(data) if data else None, progress=progress,
                                       **options)
        except USER_ERRORS as e:  # one unreadable run must not cost the others' results
            failed[str(ckpt)] = describe(e)
            print(f"  {ckpt}: FAILED, skipped: {failed[str(ckpt)]}", file=sys.stderr)
            continue
        name = _safe(result.run_name)
        while name in reports:
            name += "_"
        run_dir = out / name
        write_predictions(run_dir / f"predictions_{split}.jsonl", result.predictions)
        report = score_predictions(result.predictions, train_words=result.train_words)
        write_report(report, run_dir, stem="metrics")
        r = route_probs_per_level(result.predictions)
        if r is not None:
            routes[name] = r
        t = reliability_per_level(result.predictions)
        if t is not None:
            trust[name], trust_preds[name] = t, result.predictions
            write_reliability(t, run_dir / "reliability.json")
        reports[name] = report
        print(f"  {ckpt}: {report.total.n} utterances, WER {100 * report.total.wer:.1f}%")
    if not reports:
        raise RuntimeError(f"none of the {len(checkpoints)} checkpoint(s) under {folder} could be evaluated: "
                           # each reason names its checkpoint already unless it is about something else
                           + "; ".join(v if v.startswith(k) else f"{k}: {v}" for k, v in failed.items()))
    md = ["# Evaluation of " + str(folder), "", f"split {split}, {len(reports)} checkpoint(s)", "",
          "## Per run (percent)", "", comparison_table(reports)]
    if failed:
        md += ["", "## Checkpoints that could not be evaluated", ""] + [f"- {k}: {v}" for k, v in failed.items()]
    groups = group_seeds(list(reports))
    summaries = {base: summarize_reports({n: reports[n] for n in names}) for base, names in groups.items()}
    if any(len(names) > 1 for names in groups.values()) or len(reports) > 1:
        md += ["## Seed mean ± 95% CI (WER %, t distribution)", "", summary_table(summaries)]
        plot_levels_ci(summaries, out / "summary_wer_levels.png")
        for base, s in summaries.items():
            if len(s.runs) > 1:
                write_summary(s, out / f"{_safe(base)}_seed_summary.json", title=base)
    if routes:
        plot_route_probs(routes, out / "route_probs_levels.png")
        md += ["## Router: mean route probabilities per level (enc only / dec only / both)", ""]
        md += [f"- {name}: " + "; ".join(f"{lvl} " + "/".join(f"{v:.2f}" for v in p) for lvl, p in r.items())
               for name, r in routes.items()]
    else:
        md += ["Router: no run has a soft router (no route probabilities in the predictions); plot skipped."]
    if trust:
        plot_reliability_per_level(trust_preds, out / "reliability_levels.png")
        md += ["", "## Video reliability per level (0 = the audio alone, 1 = the lips at full weight)", "",
               reliability_markdown(trust)]
    atomic_write_text(out / "summary.md", "\n".join(md) + "\n")
    print(comparison_table(reports))
    return {"reports": reports, "summaries": summaries, "routes": routes, "output": out, "failed": failed}


def default_eval_output(folder: Path, split: str) -> Path:
    """Where `eval` writes without --output: eval_<split> in the checkpoint folder (beside a checkpoint file)."""
    folder = Path(folder)
    return (folder.parent if folder.is_file() else folder) / f"eval_{split}"


def _eval(args: argparse.Namespace) -> int:
    out = Path(args.output) if args.output else default_eval_output(Path(args.checkpoint_dir), args.split)
    if not Path(args.checkpoint_dir).exists():  # (said by evaluate_folder, before any lock file is made)
        raise FileNotFoundError(f"no such folder {args.checkpoint_dir}")
    with output_lock(out, "av-eval eval"):
        result = evaluate_folder(args.checkpoint_dir, args.split, args.data, args.output,
                                 progress=not args.no_progress, decode_vocabulary=args.decode_vocabulary)
    if result["failed"]:
        print(f"av-eval: {len(result['failed'])} checkpoint(s) failed (listed above and in "
              f"{result['output'] / 'summary.md'})", file=sys.stderr)
        return 1
    return 0


def _compare(args: argparse.Namespace) -> int:
    """Several runs' seed summaries side by side: WER bars with 95% CIs and a Markdown table."""
    from av_eval.aggregate import load_summary

    summaries = {}
    for item in args.summaries:
        name, _, path = item.rpartition("=") if "=" in item else ("", "", item)
        p = Path(path)
        summaries[name or p.stem.removesuffix("_seed_validation").removesuffix("_seed_summary")] = load_summary(p)
    out = ensure_output_dir(args.output)
    png = plot_levels_ci(summaries, out / "compare_wer_levels.png")
    table = summary_table(summaries, metrics=tuple(args.metrics))
    ens = {n: s.ensemble for n, s in summaries.items() if s.ensemble is not None}
    md = ["# Runs compared: seed mean ± 95% CI (t distribution), percent", "", table]
    if ens:
        md += ["True ensembles (averaged log-probabilities):", "", comparison_table(ens, metrics=("wer",))]
    atomic_write_text(out / "compare.md", "\n".join(md))
    print(table)
    print(f"png: {png}\nmd: {out / 'compare.md'}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="av-eval", description="Score UASpeech recognition output per intelligibility level.",
        epilog="`av-eval CHECKPOINT_DIR ...` is short for `av-eval eval CHECKPOINT_DIR ...`.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("score", help="score one or more predictions .jsonl files (no model needed)")
    p.add_argument("predictions", nargs="+", help="predictions files written by av-train / av-eval")
    p.add_argument("--output", help="folder for metrics JSON/CSV/PNG (default: next to each file)")
    p.add_argument("--train-words", help="prepared tree (or its manifest.jsonl): adds seen / unseen-word scores")
    p.set_defaults(func=_score)
    e = sub.add_parser("eval", help="evaluate every checkpoint under a folder (needs av-train installed)")
    e.add_argument("checkpoint_dir", help="folder with <train_id>/best.ckpt + config.yaml (searched recursively)")
    e.add_argument("--split", default="B2", choices=("B1", "B2", "B3"),
                   help="block to decode: B1, B2 or B3 (default B2, the test block)")
    e.add_argument("--data", help="prepared tree to read instead of each run's uaspeech_root")
    e.add_argument("--output", help="output folder (default CHECKPOINT_DIR/eval_<split>)")
    e.add_argument("--no-progress", action="store_true", help="no progress bars")
    e.add_argument("--decode-vocabulary", default=None, metavar="open|uaspeech|FILE",
                   help="decode open or constrained to a closed word list (default: each run's decode_vocabulary)")
    e.set_defaults(func=_eval)
    c = sub.add_parser("compare", help="several runs' seed summaries side by side (bars with 95%% CIs, Markdown)")
    c.add_argument("summaries", nargs="+", help="[NAME=]results/<train_name>/<train_id>_seed_validation.json")
    c.add_argument("--output", required=True, help="output folder")
    c.add_argument("--metrics", nargs="+", default=["wer"], choices=["wer", "cer", "wsr"])
    c.set_defaults(func=_compare)
    return parser


def _main(argv: list[str]) -> int:
    if argv and argv[0] not in SUBCOMMANDS and not argv[0].startswith("-"):
        argv = ["eval", *argv]
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


def main(argv: list[str] | None = None) -> int:
    return run_command("av-eval", _main, argv)


if __name__ == "__main__":
    sys.exit(main())
