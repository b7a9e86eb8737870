"""Calibrate ``uaspeech-prep synth --lip-visibility``: how readable the lips are at each setting (docs/LIP_READING.md,
"weak lips").

    uv run python experiments/weak_lips.py --workdir DIR --visibility 1 0.5 0.3 0.25 0.2 [--seed 1] [--size demo]

For every visibility V: synthesizes the corpus (``uaspeech-prep synth --size SIZE --seed SEED --lip-visibility V``,
the demo's seed by default) into DIR/v<V>/release, prepares it into DIR/v<V>/prepared (as ``av-cli demo`` step 2
does), and runs the linear lip probe (experiments/lip_probe.py) on it: trained on B1 + B3, tested on B2, WER = 1 -
accuracy per level. A prepared tree already there is reused. Writes DIR/weak_lips.json and DIR/weak_lips.md and
prints the table. Each setting costs about 4.5 min on 2 busy cores (synthesis 2.8, preparation 1.2, probe 0.5).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import lip_probe  # noqa: E402  (experiments/lip_probe.py)

from uaspeech_prep.cli import main as prep_main  # noqa: E402

LEVELS = ("very_low", "low", "mid", "high", "all")


def build(work: Path, visibility: float, seed: int, size: str, workers: int) -> Path:
    release, prepared = work / "release", work / "prepared"
    if (prepared / "manifest.jsonl").is_file():
        return prepared
    rc = prep_main(["synth", "--output", str(release), "--size", size, "--seed", str(seed), "--overwrite",
                    "--lip-visibility", str(visibility), "--no-progress"])
    if rc == 0:
        rc = prep_main(["prepare", "--source", str(release), "--output", str(prepared), "--workers", str(workers)])
    if rc:
        raise SystemExit(f"building the corpus at lip visibility {visibility} failed ({rc})")
    return prepared


def probe(prepared: Path) -> dict[str, float]:
    """The probe's WER % per level and in total."""
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = lip_probe.main([str(prepared)])
    if rc:
        raise SystemExit(f"lip probe on {prepared} failed ({rc})")
    text = buf.getvalue()
    table = text.split("level     words", 1)[1].split("\n\n", 1)[0]
    wer = {m.group(1): float(m.group(2)) for m in re.finditer(r"^(\w+)\s+\d+\s+[\d.]+\s+([\d.]+)$", table, re.M)}
    return {lv: wer[lv] for lv in LEVELS if lv in wer}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workdir", type=Path, required=True)
    ap.add_argument("--visibility", type=float, nargs="+", default=[1.0, 0.5, 0.3, 0.25, 0.2])
    ap.add_argument("--seed", type=int, default=1, help="synthesis seed (av-cli demo's default: 1)")
    ap.add_argument("--size", default="demo", choices=["tiny", "demo", "full"])
    ap.add_argument("--workers", type=int, default=1, help="processes for preparation")
    args = ap.parse_args(argv)

    rows = []
    for v in args.visibility:
        t = time.perf_counter()
        prepared = build(args.workdir / f"v{v:g}", v, args.seed, args.size, args.workers)
        rows.append({"visibility": v, "prepared": str(prepared), "probe_wer": probe(prepared),
                     "seconds": round(time.perf_counter() - t, 1)})
        print(f"V={v:g}: probe WER {rows[-1]['probe_wer']}", flush=True)
    lines = ["| lip visibility | probe WER % on B2 (all) | very_low | low | mid | high |", "|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        w = r["probe_wer"]
        lines.append(f"| {r['visibility']:g} | {w.get('all', float('nan')):.1f} | "
                     + " | ".join(f"{w.get(lv, float('nan')):.1f}" for lv in LEVELS[:4]) + " |")
    args.workdir.mkdir(parents=True, exist_ok=True)
    (args.workdir / "weak_lips.json").write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")
    (args.workdir / "weak_lips.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
