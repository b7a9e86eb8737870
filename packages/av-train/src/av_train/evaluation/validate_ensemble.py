"""Validate the best checkpoints of a multi-seed run and summarise them (the work of ``av-cli validate-ensemble``).

Validates every ``<output_root>/weights/checkpoint/<train_id>_<N>/best.ckpt`` that exists (a missing
one is skipped with a warning; none at all is an error) and writes
``results/<train_name>/<train_id>_seed_validation.json`` + ``.csv`` + ``_levels.png`` + ``.md``: one
row per seed, then mean, std and 95% t-interval per level and metric. With ``true_ensemble`` the
seed models also decode together (averaged log-probabilities) and that result is scored beside the
average of the per-seed scores. The command is :mod:`av_train.evaluation.validate_ensemble_command`.
"""

from __future__ import annotations

import gc
import logging
from dataclasses import replace
from pathlib import Path

from av_eval import score_predictions, summarize_reports, training_words, write_predictions, write_summary
from av_common.cli_errors import ensure_output_dir
from av_common.files import atomic_write_text
from av_eval.report import comparison_table, plot_route_probs, route_probs_per_level, summary_table
from av_train.config import TrainingConfig
from av_train.evaluation.decoding import decode_runs
from av_train.evaluation.loading import load_run

log = logging.getLogger(__name__)


def validate_seeds(cfg: TrainingConfig, num_seeds: int = 10, start_seed: int = 1, output_file: str | Path | None = None,
                   true_ensemble: bool = False, split: str = "B2", data: str | Path | None = None,
                   device: str | None = None, progress: bool = True) -> dict:
    """Decode ``split`` with seeds ``start_seed .. start_seed + num_seeds - 1`` of ``cfg``'s run and write the
    seed statistics; returns ``summary``, ``table`` (the seed mean ± 95% CI, as markdown) and the ``paths``
    written. Each seed's WER is logged as it is scored."""
    if num_seeds < 1:
        raise ValueError("--num_seeds must be >= 1")
    ckpt_root = Path(cfg.output_root) / "weights" / "checkpoint"
    found = []
    for seed in range(start_seed, start_seed + num_seeds):
        ckpt = ckpt_root / f"{cfg.train_id}_{seed}" / "best.ckpt"
        if ckpt.is_file():
            found.append((seed, ckpt))
        else:
            log.warning("warning: seed %s: no checkpoint at %s; skipped", seed, ckpt)
    if not found:
        raise FileNotFoundError(
            f"no seed checkpoint found: looked for {ckpt_root}/{cfg.train_id}_<N>/best.ckpt with N = "
            f"{start_seed}..{start_seed + num_seeds - 1}. Train them first "
            "(multi-seed training) or check output_root / train_id / --start_seed."
        )
    results = Path(cfg.output_root) / "results" / cfg.train_name
    out = Path(output_file) if output_file else results / f"{cfg.train_id}_seed_validation.json"
    pred_dir = out.with_name(out.stem + "_predictions")
    ensure_output_dir(out.parent)
    ensure_output_dir(pred_dir)
    words = None
    reports, loaded, routes = {}, [], {}
    for seed, ckpt in found:
        # The run's own saved config when present, else the given one with this seed's identity.
        own = ckpt.parent / "config.yaml"
        fallback = None if own.is_file() else replace(cfg, train_id=f"{cfg.train_id}_{seed}", seed=seed)
        run = load_run(ckpt, data=data, device=device, config=fallback)
        preds = decode_runs([run], split, progress=progress, desc=f"seed {seed}")
        if words is None:
            try:
                words = training_words(run.cfg.uaspeech_root)
            except ValueError:
                words = set()
        name = f"{cfg.train_id}_{seed}"
        write_predictions(pred_dir / f"{name}_predictions_{split}.jsonl", preds)
        reports[name] = score_predictions(preds, train_words=words or None)
        seed_routes = route_probs_per_level(preds)
        if seed_routes is not None:  # soft routing runs: the router's mean route probabilities per level
            routes[name] = seed_routes
        log.info("seed %s: WER %.2f%%  (%s)", seed, 100 * reports[name].total.wer, ckpt)
        if true_ensemble:
            loaded.append(run)
        else:
            del run
            gc.collect()
    ensemble = None
    if true_ensemble:
        preds = decode_runs(loaded, split, progress=progress, desc=f"ensemble of {len(loaded)}")
        write_predictions(pred_dir / f"{cfg.train_id}_ensemble_predictions_{split}.jsonl", preds)
        ensemble = score_predictions(preds, train_words=words or None)
        log.info("true ensemble of %d: WER %.2f%%", len(loaded), 100 * ensemble.total.wer)
    summary = summarize_reports(reports, ensemble)
    paths = write_summary(summary, out, title=cfg.train_id)
    if routes:
        paths["routes_png"] = plot_route_probs(routes, out.with_name(out.stem + "_route_probs.png"))
    table = summary_table({cfg.train_id: summary}, metrics=("wer", "cer", "wsr"))
    md = [f"# {cfg.train_id}: {len(reports)} seed(s), split {split}", "",
          "## Seed mean ± 95% CI (percent)", "", table,
          "## Per seed (percent)", "", comparison_table({**reports, **({"ensemble": ensemble} if ensemble else {})},
                                                         metrics=("wer",))]
    paths["md"] = atomic_write_text(out.with_suffix(".md"), "\n".join(md))
    return {"summary": summary, "table": table, "paths": paths}
