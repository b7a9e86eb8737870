"""``validate-ensemble CONFIG [key=value ...] --num_seeds N --start_seed S [--output_file F] [--true_ensemble]``.

Validates every ``<output_root>/weights/checkpoint/<train_id>_<N>/best.ckpt`` that exists (a missing
one is skipped with a warning; none at all is an error) and writes
``results/<train_name>/<train_id>_seed_validation.json`` + ``.csv`` + ``_levels.png`` + ``.md``: one
row per seed, then mean, std and 95% t-interval per level and metric. With ``--true_ensemble`` the
seed models also decode together (averaged log-probabilities) and that result is scored beside the
average of the per-seed scores. Also ``python -m av_train.evaluation.validate_ensemble``.
"""

from __future__ import annotations

import argparse
import gc
import sys
from dataclasses import replace
from pathlib import Path

from av_eval import score_predictions, summarize_reports, training_words, write_predictions, write_summary
from av_eval.cli_errors import ensure_output_dir, run_command
from av_eval.predictions import atomic_write_text
from av_eval.report import comparison_table, plot_route_probs, route_probs_per_level, summary_table
from av_train.config import load_config
from av_train.evaluation.decoding import decode_runs
from av_train.evaluation.loading import load_run


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="validate-ensemble", description=__doc__.split("\n\n")[0])
    p.add_argument("config", help="the training YAML of the multi-seed runs")
    p.add_argument("overrides", nargs="*", help="key=value overrides of config options (e.g. output_root=runs)")
    p.add_argument("--num_seeds", type=int, default=10, help="number of seed checkpoints to look for (default 10)")
    p.add_argument("--start_seed", type=int, default=1, help="first seed index (default 1)")
    p.add_argument("--output_file", help="JSON output path (CSV / PNG / MD written alongside)")
    p.add_argument("--true_ensemble", action="store_true",
                   help="also decode with the seeds' averaged log-probabilities and score that")
    p.add_argument("--split", default="B2", help="block to decode (default B2)")
    p.add_argument("--data", help="prepared tree to use instead of the config's uaspeech_root")
    p.add_argument("--device", help="torch device (default: cuda when available)")
    p.add_argument("--no-progress", action="store_true")
    return p


def run_validation(args: argparse.Namespace) -> dict:
    from av_train.cli import parse_overrides

    cfg = load_config(args.config, parse_overrides(args.overrides))
    if args.num_seeds < 1:
        raise ValueError("--num_seeds must be >= 1")
    ckpt_root = Path(cfg.output_root) / "weights" / "checkpoint"
    found = []
    for seed in range(args.start_seed, args.start_seed + args.num_seeds):
        ckpt = ckpt_root / f"{cfg.train_id}_{seed}" / "best.ckpt"
        if ckpt.is_file():
            found.append((seed, ckpt))
        else:
            print(f"warning: seed {seed}: no checkpoint at {ckpt}; skipped", file=sys.stderr)
    if not found:
        raise FileNotFoundError(
            f"no seed checkpoint found: looked for {ckpt_root}/{cfg.train_id}_<N>/best.ckpt with N = "
            f"{args.start_seed}..{args.start_seed + args.num_seeds - 1}. Train them first "
            "(multi-seed training) or check output_root / train_id / --start_seed."
        )
    results = Path(cfg.output_root) / "results" / cfg.train_name
    out = Path(args.output_file) if args.output_file else results / f"{cfg.train_id}_seed_validation.json"
    pred_dir = out.with_name(out.stem + "_predictions")
    ensure_output_dir(out.parent)
    ensure_output_dir(pred_dir)
    words = None
    reports, loaded, routes = {}, [], {}
    for seed, ckpt in found:
        # The run's own saved config when present, else the given one with this seed's identity.
        own = ckpt.parent / "config.yaml"
        fallback = None if own.is_file() else replace(cfg, train_id=f"{cfg.train_id}_{seed}", seed=seed)
        run = load_run(ckpt, data=args.data, device=args.device, config=fallback)
        preds = decode_runs([run], args.split, progress=not args.no_progress, desc=f"seed {seed}")
        if words is None:
            try:
                words = training_words(run.cfg.uaspeech_root)
            except ValueError:
                words = set()
        name = f"{cfg.train_id}_{seed}"
        write_predictions(pred_dir / f"{name}_predictions_{args.split}.jsonl", preds)
        reports[name] = score_predictions(preds, train_words=words or None)
        seed_routes = route_probs_per_level(preds)
        if seed_routes is not None:  # soft routing runs: the router's mean route probabilities per level
            routes[name] = seed_routes
        print(f"seed {seed}: WER {100 * reports[name].total.wer:.2f}%  ({ckpt})")
        if args.true_ensemble:
            loaded.append(run)
        else:
            del run
            gc.collect()
    ensemble = None
    if args.true_ensemble:
        preds = decode_runs(loaded, args.split, progress=not args.no_progress, desc=f"ensemble of {len(loaded)}")
        write_predictions(pred_dir / f"{cfg.train_id}_ensemble_predictions_{args.split}.jsonl", preds)
        ensemble = score_predictions(preds, train_words=words or None)
        print(f"true ensemble of {len(loaded)}: WER {100 * ensemble.total.wer:.2f}%")
    summary = summarize_reports(reports, ensemble)
    paths = write_summary(summary, out, title=cfg.train_id)
    if routes:
        paths["routes_png"] = plot_route_probs(routes, out.with_name(out.stem + "_route_probs.png"))
    table = summary_table({cfg.train_id: summary}, metrics=("wer", "cer", "wsr"))
    md = [f"# {cfg.train_id}: {len(reports)} seed(s), split {args.split}", "",
          "## Seed mean ± 95% CI (percent)", "", table,
          "## Per seed (percent)", "", comparison_table({**reports, **({"ensemble": ensemble} if ensemble else {})},
                                                         metrics=("wer",))]
    paths["md"] = atomic_write_text(out.with_suffix(".md"), "\n".join(md))
    print(table)
    for kind, path in paths.items():
        print(f"{kind}: {path}")
    return {"summary": summary, "paths": paths}


def _main(argv: list[str]) -> int:
    run_validation(build_parser().parse_args(argv))
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_command("validate-ensemble", _main, argv)


if __name__ == "__main__":
    sys.exit(main())
