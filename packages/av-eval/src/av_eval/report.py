"""Writing scores: JSON, CSV, a Markdown table and per-level PNG bar charts."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping
from pathlib import Path

from av_eval.metrics import LEVELS, Report
from av_eval.predictions import atomic_write_text

METRICS = ("wer", "cer", "wsr")


def write_report(report: Report, out_dir: str | Path, stem: str = "metrics") -> dict[str, Path]:
    """Write ``<stem>.json``, ``<stem>.csv`` and ``<stem>_levels.png`` into ``out_dir``."""
    out_dir = Path(out_dir)
    paths = {
        "json": atomic_write_text(out_dir / f"{stem}.json", json.dumps(report.as_dict(), indent=2) + "\n"),
        "csv": atomic_write_text(out_dir / f"{stem}.csv", _rows_to_csv(report.rows())),
    }
    paths["png"] = plot_levels({stem: report}, out_dir / f"{stem}_levels.png")
    return paths


def _rows_to_csv(rows: list[dict]) -> str:
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
    for level in (*LEVELS, "total", "macro"):
        cells = []
        for m in metrics:
            for run in runs:
                r = reports[run]
                if level == "total":
                    v = getattr(r.total, m)
                elif level == "macro":
                    v = r.macro.get(m)
                else:
                    s = r.per_level.get(level)
                    v = None if s is None else getattr(s, m)
                cells.append("-" if v is None else f"{100 * v:.1f}")
        lines.append(f"| {level} | " + " | ".join(cells) + " |")
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
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    tmp.replace(path)
    return path
