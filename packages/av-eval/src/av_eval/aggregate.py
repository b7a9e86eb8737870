"""Statistics over several runs (seeds): mean, sample standard deviation and a 95% confidence
interval of the mean from Student's t distribution, per group (level, total, macro, unseen) and metric.

With n runs of values x_i: mean = sum(x) / n, std = sqrt(sum((x - mean)^2) / (n - 1)), and the
95% interval is mean +/- t(0.975, n - 1) * std / sqrt(n). One run has no spread: std and the
interval are reported as NaN (null in JSON), never as zero.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from av_eval.metrics import LEVELS, METRICS, Report, UtteranceCounts

GROUPS: tuple[str, ...] = (*LEVELS, "total", "macro", "unseen")


@dataclass(frozen=True)
class Stat:
    mean: float
    std: float
    ci95_low: float
    ci95_high: float
    n: int

    @property
    def half_width(self) -> float:
        return self.mean - self.ci95_low

    def as_dict(self) -> dict:
        return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in asdict(self).items()}


def t_quantile(p: float, dof: int) -> float:
    from scipy.stats import t

    return float(t.ppf(p, dof))


def summarize(values: Sequence[float], confidence: float = 0.95) -> Stat:
    """Mean, sample std (ddof=1) and the t-based confidence interval of the mean."""
    xs = [float(v) for v in values]
    n = len(xs)
    if n == 0:
        raise ValueError("no values to summarise")
    mean = sum(xs) / n
    if n == 1:
        nan = float("nan")
        return Stat(mean, nan, nan, nan, 1)
    std = math.sqrt(sum((x - mean) ** 2 for x in xs) / (n - 1))
    half = t_quantile(0.5 + confidence / 2, n - 1) * std / math.sqrt(n)
    return Stat(mean, std, mean - half, mean + half, n)


@dataclass
class SeedSummary:
    """Several runs' reports and their statistics: ``stats[group][metric]``."""

    runs: dict[str, Report]
    stats: dict[str, dict[str, Stat]]
    ensemble: Report | None = None  # the true ensemble (averaged log-probabilities), when decoded

    def as_dict(self) -> dict:
        out = {
            "runs": list(self.runs),
            "summary": {g: {m: s.as_dict() for m, s in ms.items()} for g, ms in self.stats.items()},
            "per_run": {name: r.as_dict() for name, r in self.runs.items()},
        }
        if self.ensemble is not None:
            out["ensemble"] = self.ensemble.as_dict()
        return out

    def columns(self) -> list[tuple[str, str]]:
        return [(g, m) for g in self.stats for m in self.stats[g]]

    def rows(self) -> list[dict]:
        """Wide rows: one per run, then mean / std / ci95_low / ci95_high (and ensemble)."""
        cols = self.columns()
        out = []
        for name, r in self.runs.items():
            out.append({"row": name, **{f"{g}_{m}": r.value(g, m) for g, m in cols}})
        for field in ("mean", "std", "ci95_low", "ci95_high"):
            out.append({"row": field, **{f"{g}_{m}": self.stats[g][m].as_dict()[field] for g, m in cols}})
        if self.ensemble is not None:
            out.append({"row": "ensemble", **{f"{g}_{m}": self.ensemble.value(g, m) for g, m in cols}})
        return out


def summarize_reports(runs: Mapping[str, Report], ensemble: Report | None = None) -> SeedSummary:
    """Statistics of every group present in all runs (a level missing from a run is left out)."""
    if not runs:
        raise ValueError("no runs to summarise")
    stats: dict[str, dict[str, Stat]] = {}
    for group in GROUPS:
        values = {m: [r.value(group, m) for r in runs.values()] for m in METRICS}
        if all(v is not None for vs in values.values() for v in vs):
            stats[group] = {m: summarize(vs) for m, vs in values.items()}
    return SeedSummary(dict(runs), stats, ensemble)


def load_summary(path: str | Path) -> SeedSummary:
    """Read a ``*_seed_validation.json`` (or ``*_seed_summary.json``) back; statistics are recomputed
    from the per-run reports it holds."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        runs = {name: Report.from_dict(r) for name, r in data["per_run"].items()}
        ensemble = Report.from_dict(data["ensemble"]) if data.get("ensemble") else None
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as e:
        raise ValueError(f"{path}: not a seed summary written by validate-ensemble / av-eval ({e})") from None
    return summarize_reports(runs, ensemble)


def paired_bootstrap_gain(
    counts_a: UtteranceCounts, counts_b: UtteranceCounts, resamples: int = 2000, confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float, float]:
    """WER(a) - WER(b) on the same utterances (same order), with a paired bootstrap interval.

    Utterances are resampled with replacement (the same draw for both systems, so the interval reflects
    only how the two differ on the test words, not which words happened to be tested), ``resamples``
    times. Returns (gain, low, high) as fractions; ``low > 0`` means b is better than a at that confidence.
    One training seed only: seed-to-seed variation needs several runs (``summarize``).
    """
    ea, eb, r = counts_a.word_errors, counts_b.word_errors, counts_a.ref_words
    if ea.shape != eb.shape or not np.array_equal(r, counts_b.ref_words):
        raise ValueError("paired bootstrap needs the same utterances, in the same order, for both systems")
    gain = float((ea.sum() - eb.sum()) / r.sum())
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, r.size, size=(resamples, r.size))
    gains = (ea[idx].sum(1) - eb[idx].sum(1)) / r[idx].sum(1)
    alpha = (1.0 - confidence) / 2
    low, high = np.quantile(gains, [alpha, 1.0 - alpha])
    return gain, float(low), float(high)
