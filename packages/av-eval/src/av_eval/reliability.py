"""How far a model trusted the lips: the distribution of its video reliability per intelligibility level.

Models with a reliability scorer (av_fusion_models' ``video_reliability``) write, for every utterance, the scale
in [0, 1] their video got (``Prediction.video_reliability``: 0 = recognised from the audio alone, 1 = the video at
the full weight the model learned). This module summarises it per level and draws it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .metrics import LEVELS
from av_common.files import atomic_write_text
from .report import _save

# what counts as "the lips were switched off" in the summary: below this scale the video adds at most a tenth
LOW_TRUST = 0.1


def reliability_per_level(preds) -> dict[str, dict[str, float]] | None:
    """{level (and "total"): {n, mean, median, p10, p90, low_share}} of the predictions' video reliability;
    ``low_share`` is the share below `LOW_TRUST`. None when no prediction carries one."""
    by_level: dict[str, list[float]] = {}
    for p in preds:
        if p.video_reliability is None:
            continue
        by_level.setdefault(p.level or "unknown", []).append(float(p.video_reliability))
        by_level.setdefault("total", []).append(float(p.video_reliability))
    if not by_level:
        return None
    order = [lvl for lvl in (*LEVELS, "unknown", "total") if lvl in by_level]
    out = {}
    for lvl in order:
        x = np.asarray(by_level[lvl])
        out[lvl] = {"n": int(x.size), "mean": round(float(x.mean()), 4), "median": round(float(np.median(x)), 4),
                    "p10": round(float(np.percentile(x, 10)), 4), "p90": round(float(np.percentile(x, 90)), 4),
                    "low_share": round(float((x < LOW_TRUST).mean()), 4)}
    return out


def reliability_markdown(stats: dict[str, dict[str, dict[str, float]]]) -> str:
    """A table per run of `reliability_per_level` results: {run: stats}."""
    lines = ["| run | level | n | mean | median | 10th pct | 90th pct | below 0.1 |", "|---|---|---:|---:|---:|---:|---:|---:|"]
    for run, per in stats.items():
        for lvl, s in per.items():
            lines.append(f"| {run} | {lvl} | {s['n']} | {s['mean']:.2f} | {s['median']:.2f} | {s['p10']:.2f} | "
                         f"{s['p90']:.2f} | {100 * s['low_share']:.0f} % |")
    return "\n".join(lines) + "\n"


def plot_reliability_per_level(preds_by_run: dict[str, list], path: str | Path) -> Path | None:
    """Box plots of the video reliability per level, one panel per run; None when no run has one."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = {name: [p for p in preds if p.video_reliability is not None] for name, preds in preds_by_run.items()}
    runs = {name: preds for name, preds in runs.items() if preds}
    if not runs:
        return None
    fig, axes = plt.subplots(1, len(runs), figsize=(4.5 * len(runs), 3.6), squeeze=False)
    for ax, (name, preds) in zip(axes[0], runs.items()):
        levels = [lvl for lvl in LEVELS if any(p.level == lvl for p in preds)]
        data = [[p.video_reliability for p in preds if p.level == lvl] for lvl in levels]
        ax.boxplot(data, showfliers=True)
        ax.set_xticks(range(1, len(levels) + 1), levels)
        ax.set_ylim(-0.02, 1.02)
        ax.axhline(LOW_TRUST, color="grey", lw=0.8, ls=":")
        ax.set_title(name, fontsize=9)
        ax.set_ylabel("video reliability (0 = audio alone)")
    fig.tight_layout()
    return _save(fig, path)


def write_reliability(stats: dict, path: str | Path) -> Path:
    """The per-level summary as JSON (atomic)."""
    import json

    return atomic_write_text(path, json.dumps(stats, indent=2) + "\n")
