"""Writing scores: JSON, CSV, Markdown tables and per-level PNG bar charts, for one run and for several
runs' seed summaries (the statistics themselves are computed in ``av_eval.aggregate``)."""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from av_eval.metrics import LEVELS, METRICS, Report
from av_common.files import atomic_write_text

if TYPE_CHECKING:  # for annotations only: aggregate computes, this module writes (no import at run time)
    from av_eval.aggregate import SeedSummary


def write_report(report: Report, out_dir: str | Path, stem: str = "metrics") -> dict[str, Path]:
    """Write ``<stem>.json``, ``<stem>.csv`` and ``<stem>_levels.png`` into ``out_dir``."""
    out_dir = Path(out_dir)
    paths = {
        "json": atomic_write_text(out_dir / f"{stem}.json", json.dumps(report.as_dict(), indent=2) + "\n"),
        "csv": atomic_write_text(out_dir / f"{stem}.csv", rows_to_csv(report.rows())),
    }
    paths["png"] = plot_levels({stem: report}, out_dir / f"{stem}_levels.png")
    return paths


def rows_to_csv(rows: list[dict]) -> str:
    """CSV text of dict rows (the first row's keys are the header)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def comparison_table(reports: Mapping[str, Report], metrics: tuple[str, ...] = METRICS) -> str:
    """A Markdown table: one row per level (+ total, macro), one column per run and metric, in percent."""
    runs = list(reports)
    header = "| level | " + " | ".join(f"{run} {m.upper()}" for m in metrics for run in runs) + " |"
    sep = "|---|" + "---:|" * (len(runs) * len(metrics))
    lines = [header, sep]
    extra = ("seen", "unseen") if any(r.per_seen for r in reports.values()) else ()
    for level in (*LEVELS, "total", "macro", *extra):
        values = [reports[run].value(level, m) for m in metrics for run in runs]
        if level in extra and all(v is None for v in values):
            continue  # e.g. no unseen words in this test set: no empty row
        cells = ["-" if v is None else f"{100 * v:.1f}" for v in values]
        lines.append(f"| {level} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def per_speaker_table(report: Report) -> str:
    """Markdown table of WER / CER / WSR (percent) and utterance count per speaker."""
    lines = ["| speaker | WER | CER | WSR | n |", "|---|---:|---:|---:|---:|"]
    for spk, s in report.per_speaker.items():
        lines.append(f"| {spk} | {100 * s.wer:.1f} | {100 * s.cer:.1f} | {100 * s.wsr:.1f} | {s.n} |")
    return "\n".join(lines) + "\n"


def plot_levels(reports: Mapping[str, Report], path: str | Path, metric: str = "wer") -> Path:
    """Grouped bars of ``metric`` per level (and total) for one or more runs, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    groups = [lvl for lvl in LEVELS if any(lvl in r.per_level for r in reports.values())] + ["total"]
    x = np.arange(len(groups))
    width = 0.8 / max(1, len(reports))
    fig, ax = plt.subplots(figsize=(1.6 + 1.3 * len(groups), 3.6), dpi=120)
    for k, (name, r) in enumerate(reports.items()):
        vals = [
            100 * getattr(r.total if g == "total" else r.per_level[g], metric) if (g == "total" or g in r.per_level) else 0.0
            for g in groups
        ]
        bars = ax.bar(x + (k - (len(reports) - 1) / 2) * width, vals, width, label=name)
        ax.bar_label(bars, fmt="%.1f", fontsize=7)
    ax.set_xticks(x, [g.replace("_", " ") for g in groups])
    ax.set_ylabel(f"{metric.upper()} (%)")
    ax.set_title(f"{metric.upper()} per intelligibility level")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


def _save(fig, path: str | Path) -> Path:
    """Write a figure atomically (temp name, then rename) and close it."""
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    tmp.replace(path)
    return path


# --- several runs, seeds, noise and routing ---------------------------------------------------


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_levels_ci(summaries: Mapping[str, "SeedSummary"], path: str | Path, metric: str = "wer") -> Path:
    """Per-level bars of the seed mean of ``metric`` with 95% confidence intervals, one bar per run
    (e.g. audio vs AV encoder / decoder / both / soft side by side)."""
    import numpy as np

    plt = _pyplot()
    groups = [g for g in (*LEVELS, "total") if any(g in s.stats for s in summaries.values())]
    x = np.arange(len(groups))
    width = 0.8 / max(1, len(summaries))
    fig, ax = plt.subplots(figsize=(1.6 + 1.4 * len(groups), 3.8), dpi=120)
    for k, (name, s) in enumerate(summaries.items()):
        means = [100 * s.stats[g][metric].mean if g in s.stats else 0.0 for g in groups]
        errs = [100 * s.stats[g][metric].half_width if g in s.stats else 0.0 for g in groups]
        errs = [0.0 if math.isnan(e) else e for e in errs]  # one seed: no interval
        n = max((s.stats[g][metric].n for g in groups if g in s.stats), default=0)
        bars = ax.bar(x + (k - (len(summaries) - 1) / 2) * width, means, width, yerr=errs, capsize=3,
                      label=f"{name} (n={n})")
        ax.bar_label(bars, fmt="%.1f", fontsize=7, padding=2)
    ax.set_xticks(x, [g.replace("_", " ") for g in groups])
    ax.set_ylabel(f"{metric.upper()} (%)")
    ax.set_title(f"{metric.upper()} per intelligibility level (seed mean, 95% CI)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


def write_summary(summary: "SeedSummary", json_path: str | Path, title: str = "") -> dict[str, Path]:
    """``X.json``, ``X.csv`` (same stem) and ``X_levels.png`` (WER per level with the 95% intervals)."""
    json_path = Path(json_path)
    rows = [{k: ("" if v is None else v) for k, v in row.items()} for row in summary.rows()]
    paths = {
        "json": atomic_write_text(json_path, json.dumps(summary.as_dict(), indent=2, allow_nan=False) + "\n"),
        "csv": atomic_write_text(json_path.with_suffix(".csv"), rows_to_csv(rows)),
    }
    paths["png"] = plot_levels_ci({title or json_path.stem: summary}, json_path.with_name(json_path.stem + "_levels.png"))
    return paths


def summary_table(summaries: Mapping[str, "SeedSummary"], metrics: tuple[str, ...] = ("wer",),
                  groups: tuple[str, ...] = (*LEVELS, "total", "macro")) -> str:
    """Markdown table for a paper: one row per run, one column per level and metric,
    "mean ± CI half-width" in percent (just the value for one seed)."""
    cols = [(g, m) for m in metrics for g in groups if any(g in s.stats for s in summaries.values())]
    lines = ["| run | n | " + " | ".join(f"{g.replace('_', ' ')} {m.upper()}" for g, m in cols) + " |",
             "|---|---:|" + "---:|" * len(cols)]
    for name, s in summaries.items():
        n = s.stats["total"][metrics[0]].n if "total" in s.stats else len(s.runs)
        cells = []
        for g, m in cols:
            st = s.stats.get(g, {}).get(m)
            if st is None:
                cells.append("-")
            elif st.n > 1:
                cells.append(f"{100 * st.mean:.1f} ± {100 * st.half_width:.1f}")
            else:
                cells.append(f"{100 * st.mean:.1f}")
        lines.append(f"| {name} | {n} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def route_probs_per_level(preds) -> dict[str, list[float]] | None:
    """Mean (P(encoder only), P(decoder only), P(both)) per level over predictions that carry
    route probabilities; None when none do (the model had no router)."""
    sums: dict[str, list[float]] = {}
    counts: dict[str, int] = {}
    for p in preds:
        if p.route_probs is None or p.level is None:
            continue
        acc = sums.setdefault(p.level, [0.0] * len(p.route_probs))
        for i, v in enumerate(p.route_probs):
            acc[i] += v
        counts[p.level] = counts.get(p.level, 0) + 1
    if not sums:
        return None
    return {lvl: [v / counts[lvl] for v in sums[lvl]] for lvl in LEVELS if lvl in sums}


ROUTE_NAMES = ("encoder only", "decoder only", "both")


def plot_route_probs(routes: Mapping[str, Mapping[str, Sequence[float]]], path: str | Path) -> Path:
    """Stacked bars of the router's mean route probabilities per level, one panel per run."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(routes), figsize=(1.5 + 3.2 * len(routes), 3.6), dpi=120, squeeze=False)
    for ax, (name, per_level) in zip(axes[0], routes.items()):
        levels = [lvl for lvl in LEVELS if lvl in per_level]
        bottom = [0.0] * len(levels)
        for i, route in enumerate(ROUTE_NAMES):
            vals = [per_level[lvl][i] for lvl in levels]
            ax.bar([lvl.replace("_", " ") for lvl in levels], vals, bottom=bottom, label=route)
            bottom = [b + v for b, v in zip(bottom, vals)]
        ax.set_ylim(0, 1)
        ax.set_title(name, fontsize=9)
        ax.set_ylabel("mean route probability")
    axes[0][-1].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return _save(fig, path)


def plot_wer_vs_snr(curves: Mapping[str, Mapping[str, Mapping[str, float]]], path: str | Path,
                    metric: str = "wer") -> Path:
    """WER vs SNR: ``curves[run][snr_label][group]`` (snr_label 'clean' or a number of dB; group a
    level or 'total'). One panel per group, one line per run; 'clean' is drawn at the right end."""
    plt = _pyplot()
    groups = [g for g in (*LEVELS, "total") if any(g in by for c in curves.values() for by in c.values())]
    fig, axes = plt.subplots(1, len(groups), figsize=(1.2 + 3.0 * len(groups), 3.4), dpi=120, squeeze=False,
                             sharey=True)
    labels = sorted({s for c in curves.values() for s in c}, key=lambda s: float("inf") if s == "clean" else float(s))
    xs = {s: i for i, s in enumerate(labels)}
    for ax, g in zip(axes[0], groups):
        for name, c in curves.items():
            pts = [(xs[s], 100 * c[s][g]) for s in labels if s in c and g in c[s]]
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=name)
        ax.set_xticks(range(len(labels)), [s if s == "clean" else f"{float(s):g}" for s in labels])
        ax.set_xlabel("SNR (dB)")
        ax.set_title(g.replace("_", " "))
    axes[0][0].set_ylabel(f"{metric.upper()} (%)")
    axes[0][-1].legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, path)


def plot_routes_vs_snr(routes: Mapping[str, Mapping[str, Mapping[str, Sequence[float]]]], path: str | Path) -> Path:
    """Router choices against noise: ``routes[run][snr_label][level]`` = mean (P(encoder only),
    P(decoder only), P(both)). One panel per route, one line per level (line style per run);
    'clean' is drawn at the right end."""
    plt = _pyplot()
    labels = sorted({s for r in routes.values() for s in r}, key=lambda s: float("inf") if s == "clean" else float(s))
    xs = {s: i for i, s in enumerate(labels)}
    fig, axes = plt.subplots(1, len(ROUTE_NAMES), figsize=(1.2 + 3.2 * len(ROUTE_NAMES), 3.4), dpi=120,
                             squeeze=False, sharey=True)
    styles = ("-", "--", ":", "-.")
    colors = dict(zip(LEVELS, ("tab:red", "tab:orange", "tab:blue", "tab:green")))
    for i, (ax, route) in enumerate(zip(axes[0], ROUTE_NAMES)):
        for k, (name, by_snr) in enumerate(routes.items()):
            for level in LEVELS:
                pts = [(xs[s], by_snr[s][level][i]) for s in labels if s in by_snr and level in by_snr[s]]
                if pts:
                    label = level.replace("_", " ") + (f" ({name})" if len(routes) > 1 else "")
                    ax.plot([p[0] for p in pts], [p[1] for p in pts], styles[k % len(styles)], marker="o",
                            color=colors[level], label=label)
        ax.set_xticks(range(len(labels)), [s if s == "clean" else f"{float(s):g}" for s in labels])
        ax.set_xlabel("SNR (dB)")
        ax.set_ylim(0, 1)
        ax.set_title(f"P({route})")
    axes[0][0].set_ylabel("mean route probability")
    axes[0][-1].legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, path)


def plot_video_faults(wer: Mapping[str, Mapping[str, Mapping[str, float]]], path: str | Path,
                      metric: str = "wer") -> Path:
    """Lip-video faults: ``wer[run][condition][snr_label]`` (a fraction; snr_label 'clean' or a number of dB) as
    grouped bars, x the condition (in the order given), one bar per run, one panel per SNR ('clean' last)."""
    import numpy as np

    plt = _pyplot()
    conds = list(dict.fromkeys(c for by_cond in wer.values() for c in by_cond))
    labels = sorted({s for by_cond in wer.values() for by in by_cond.values() for s in by},
                    key=lambda s: float("inf") if s == "clean" else float(s))
    x = np.arange(len(conds))
    width = 0.8 / max(1, len(wer))
    fig, axes = plt.subplots(1, len(labels), figsize=(1.2 + (0.8 + 0.55 * len(conds)) * len(labels), 3.8), dpi=120,
                             squeeze=False, sharey=True)
    for ax, snr in zip(axes[0], labels):
        for k, (name, by_cond) in enumerate(wer.items()):
            vals = [100 * by_cond[c][snr] if c in by_cond and snr in by_cond[c] else 0.0 for c in conds]
            bars = ax.bar(x + (k - (len(wer) - 1) / 2) * width, vals, width, label=name)
            ax.bar_label(bars, fmt="%.1f", fontsize=6)
        ax.set_xticks(x, conds, rotation=45, ha="right", fontsize=8)
        ax.set_title("clean audio" if snr == "clean" else f"{float(snr):g} dB SNR")
    axes[0][0].set_ylabel(f"{metric.upper()} (%)")
    axes[0][-1].legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, path)
