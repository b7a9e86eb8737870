"""Measured accuracy of ``uaspeech_prep.av_sync`` (docs/SYNC.md): known offsets recovered, and how well the
confidence tells a clip's own lips from another word's.

    uv run python experiments/sync_eval.py --data /work/runs/demo_out/corpus --split B2 \
        --output experiments/results/sync_<date>/

For every clip of the split (block ``B2`` or split ``test``; one microphone, the first in name order unless
``--mic``), the ROI video (read with ``uaspeech_prep.video_io.read_frames`` as training does) is shifted by each
offset of ``--shifts-ms`` (default -400..+400 ms in 40 ms steps, i.e. -10..+10 frames at 25 fps) exactly as
``av_fusion_models.video_faults`` does it (``late-<N>ms``: frame t shows frame t - k, k = round(N fps / 1000),
edge frames held; checked against video_faults' own index on the first clip when it imports), and
``estimate_offset`` is asked for the offset. A hit is an estimate within +-1 frame of the truth (also reported:
exact). The confidence of the unshifted clips is compared with that of the same audio with the lips of another
word of the same speaker, stretched to the clip's length (``mismatched`` of ``av-cli noise-eval``: the partner
drawn as av_train.evaluation.noise.mismatched_partners draws it), by the area under the ROC curve, computed from
ranks (Mann-Whitney U; ties count half).

Writes results.json (everything, per clip too), results.md (tables) and sync_eval.png (accuracy per shift,
confidence histograms) under --output.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.stats import rankdata

from uaspeech_prep.av_sync import FPS, MIN_CONFIDENCE, MIN_CORRECTION_FRAMES, delay_frames, estimate_offset
from uaspeech_prep.manifest import read_records
from uaspeech_prep.video_io import read_frames

LEVELS = ("very_low", "low", "mid", "high")


def auc_by_ranks(pos, neg) -> float:
    """P(a positive scores above a negative) + half the ties: the ROC AUC, from the Mann-Whitney U statistic."""
    pos, neg = np.asarray(pos, float), np.asarray(neg, float)
    ranks = rankdata(np.concatenate([pos, neg]))
    n1, n0 = len(pos), len(neg)
    return float((ranks[:n1].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def stretch(frames: np.ndarray, num: int) -> np.ndarray:
    """video_faults.stretch_index in numpy: nearest frames of ``frames`` stretched to ``num`` frames."""
    return frames[np.round(np.linspace(0, len(frames) - 1, num)).astype(np.int64)]


def partners(clips: list[dict], seed: int = 0) -> list[int]:
    """The same draw as av_train.evaluation.noise.mismatched_partners (another word of the same speaker)."""
    by_speaker: dict[str, list[int]] = {}
    for j, c in enumerate(clips):
        by_speaker.setdefault(c["speaker"], []).append(j)
    out = []
    for i, c in enumerate(clips):
        others = [j for j in by_speaker[c["speaker"]] if clips[j]["word"] != c["word"]]
        others = others or [j for j, o in enumerate(clips) if o["word"] != c["word"]]
        out.append(others[int(np.random.default_rng([seed, i, 13]).integers(len(others)))])
    return out


def load_clips(root: Path, split: str, mic: str | None, limit: int | None) -> list[dict]:
    records = read_records(root / "manifest.jsonl", require=("utt_id", "speaker", "level", "block", "split", "word",
                                                             "audio", "roi"))
    chosen = [r for r in records if (r.block == split or r.split == split) and r.roi and r.audio]
    if limit:
        chosen = chosen[:limit]
    if not chosen:
        raise SystemExit(f"no clip of block / split {split!r} with a ROI in {root / 'manifest.jsonl'}")
    clips = []
    for r in chosen:
        m = mic if mic else sorted(r.audio)[0]
        audio, rate = sf.read(root / r.audio[m], dtype="float32", always_2d=False)
        frames = np.stack(read_frames(root / r.roi, gray=True))
        clips.append(dict(utt_id=r.utt_id, speaker=r.speaker, level=r.level, word=r.word, mic=m, audio=audio,
                          rate=rate, frames=frames))
    return clips


def check_against_video_faults(frames: np.ndarray, shifts: list[int]) -> str:
    """Our numpy shift against video_faults' own index (torch), when that module imports."""
    try:
        from av_fusion_models.video_faults import offset_index
    except Exception as e:  # noqa: BLE001 - the check is optional
        return f"not checked (av_fusion_models.video_faults: {type(e).__name__})"
    for k in shifts:
        ref = frames[offset_index(len(frames), k).numpy()]
        if not np.array_equal(ref, delay_frames(frames, k)):
            raise SystemExit(f"delay_frames({k}) differs from video_faults.offset_index")
    return "identical to av_fusion_models.video_faults.offset_index for every shift"


def evaluate(clips: list[dict], shifts: list[int], max_offset_ms: float) -> dict:
    part = partners(clips)
    per_clip = []
    t0 = time.perf_counter()
    n_est = 0
    for i, c in enumerate(clips):
        row = dict(utt_id=c["utt_id"], level=c["level"], word=c["word"], frames=len(c["frames"]), estimates={})
        for k in shifts:
            est = estimate_offset(c["audio"], c["rate"], delay_frames(c["frames"], k), FPS, max_offset_ms)
            row["estimates"][str(k)] = [est.offset_frames, round(est.confidence, 4)]
            n_est += 1
        other = clips[part[i]]
        est = estimate_offset(c["audio"], c["rate"], stretch(other["frames"], len(c["frames"])), FPS, max_offset_ms)
        row["mismatched"] = dict(partner=other["utt_id"], offset=est.offset_frames, confidence=round(est.confidence, 4))
        n_est += 1
        per_clip.append(row)
        if (i + 1) % 40 == 0:
            print(f"  {i + 1}/{len(clips)} clips", file=sys.stderr, flush=True)
    seconds = time.perf_counter() - t0
    return dict(per_clip=per_clip, ms_per_estimate=1000 * seconds / max(n_est, 1))


def summarise(res: dict, shifts: list[int]) -> dict:
    rows = res["per_clip"]
    err = np.array([[r["estimates"][str(k)][0] - k for k in shifts] for r in rows])
    conf = np.array([[r["estimates"][str(k)][1] for k in shifts] for r in rows])
    hit = np.abs(err) <= 1
    levels = np.array([r["level"] for r in rows])
    zero = shifts.index(0) if 0 in shifts else None
    neg = np.array([r["mismatched"]["confidence"] for r in rows])
    out = dict(
        clips=len(rows), shifts_frames=shifts, estimates=int(err.size),
        within_1_frame=float(hit.mean()), exact=float((err == 0).mean()),
        within_1_frame_per_shift={str(k): float(hit[:, j].mean()) for j, k in enumerate(shifts)},
        exact_per_shift={str(k): float((err[:, j] == 0).mean()) for j, k in enumerate(shifts)},
        within_1_frame_per_level={lv: float(hit[levels == lv].mean()) for lv in LEVELS if (levels == lv).any()},
        inner_shifts_within_1_frame=float(hit[:, [j for j, k in enumerate(shifts)
                                                  if abs(k) < max(map(abs, shifts))]].mean()),
        mean_abs_error_frames=float(np.abs(err).mean()),
        ms_per_estimate=res["ms_per_estimate"],
    )
    # what the correction of prepare --sync-correct / transcribe --sync auto would leave (default rule)
    est = err + np.array(shifts)[None, :]
    applied = np.where((conf >= MIN_CONFIDENCE) & (np.abs(est) >= MIN_CORRECTION_FRAMES), est, 0)
    left = np.array(shifts)[None, :] - applied
    out["correction_rule"] = dict(
        min_confidence=MIN_CONFIDENCE, min_frames=MIN_CORRECTION_FRAMES,
        within_1_frame_after=float((np.abs(left) <= 1).mean()),
        within_1_frame_before=float((np.abs(shifts) <= 1).mean()),
        within_1_frame_after_per_shift={str(k): float((np.abs(left[:, j]) <= 1).mean()) for j, k in enumerate(shifts)},
        in_sync_moved=float((applied[:, zero] != 0).mean()) if zero is not None else None)
    out["accuracy_by_confidence"] = [
        dict(threshold=t, share_at_or_above=float((conf >= t).mean()),
             within_1_frame_at_or_above=float(hit[conf >= t].mean()) if (conf >= t).any() else None,
             within_1_frame_below=float(hit[conf < t].mean()) if (conf < t).any() else None,
             mismatched_at_or_above=float((neg >= t).mean()))
        for t in (0.5, 0.6, 0.7, 0.8, 0.9)]
    if zero is not None:
        pos = conf[:, zero]
        out.update(auc_in_sync_vs_mismatched=auc_by_ranks(pos, neg),
                   auc_any_shift_vs_mismatched=auc_by_ranks(conf.ravel(), neg),
                   confidence_in_sync=dict(mean=float(pos.mean()), std=float(pos.std())),
                   confidence_mismatched=dict(mean=float(neg.mean()), std=float(neg.std())),
                   auc_per_level={lv: auc_by_ranks(pos[levels == lv], neg[levels == lv]) for lv in LEVELS
                                  if (levels == lv).any()})
    return out


def write_markdown(path: Path, summary: dict, meta: dict) -> None:
    s = summary
    lines = [f"# Sync estimation on {meta['data']} ({meta['split']}, {s['clips']} clips, mic {meta['mic']})", "",
             f"`uaspeech_prep.av_sync.estimate_offset`, search +-{meta['max_offset_ms']:g} ms, {s['estimates']} "
             f"estimates, {s['ms_per_estimate']:.1f} ms each on this machine. Shifts applied as "
             f"video_faults does ({meta['video_faults_check']}).", "",
             f"- estimate within +-1 frame of the truth: **{100 * s['within_1_frame']:.1f} %** "
             f"(exact {100 * s['exact']:.1f} %; shifts inside the search range's edges only: "
             f"{100 * s['inner_shifts_within_1_frame']:.1f} %; mean |error| {s['mean_abs_error_frames']:.2f} frames)"]
    if "auc_in_sync_vs_mismatched" in s:
        lines += [f"- confidence, in-sync vs another word's lips (same speaker, stretched): AUC "
                  f"**{s['auc_in_sync_vs_mismatched']:.3f}** (any shift vs mismatched: "
                  f"{s['auc_any_shift_vs_mismatched']:.3f}); mean confidence {s['confidence_in_sync']['mean']:.3f} "
                  f"in sync, {s['confidence_mismatched']['mean']:.3f} mismatched"]
    c = s["correction_rule"]
    lines += [f"- the correction rule (re-time when confidence >= {c['min_confidence']:g} and |offset| >= "
              f"{c['min_frames']} frames) leaves {100 * c['within_1_frame_after']:.1f} % of the clips within +-1 frame "
              f"of sync ({100 * c['within_1_frame_before']:.1f} % before); it moves "
              f"{100 * (c['in_sync_moved'] or 0):.1f} % of the clips that were in sync"]
    lines += ["", "| shift (frames) | ms | within +-1 | exact | within +-1 after the correction rule |",
              "|---:|---:|---:|---:|---:|"]
    for k in s["shifts_frames"]:
        lines.append(f"| {k:+d} | {1000 * k / FPS:+.0f} | {100 * s['within_1_frame_per_shift'][str(k)]:.1f} % | "
                     f"{100 * s['exact_per_shift'][str(k)]:.1f} % | "
                     f"{100 * s['correction_rule']['within_1_frame_after_per_shift'][str(k)]:.1f} % |")
    lines += ["", "| confidence >= | share of estimates | within +-1 there | below it | mismatched clips passing |",
              "|---:|---:|---:|---:|---:|"]
    for a in s["accuracy_by_confidence"]:
        fmt = lambda x: "-" if x is None else f"{100 * x:.1f} %"  # noqa: E731
        lines.append(f"| {a['threshold']:g} | {fmt(a['share_at_or_above'])} | {fmt(a['within_1_frame_at_or_above'])} | "
                     f"{fmt(a['within_1_frame_below'])} | {fmt(a['mismatched_at_or_above'])} |")
    lines += ["", "| level | within +-1 (all shifts) | AUC |", "|---|---:|---:|"]
    for lv, acc in s["within_1_frame_per_level"].items():
        a = s.get("auc_per_level", {}).get(lv)
        lines.append(f"| {lv} | {100 * acc:.1f} % | {'-' if a is None else f'{a:.3f}'} |")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def plot(path: Path, res: dict, summary: dict, shifts: list[int]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = res["per_clip"]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.2))
    ms = [1000 * k / FPS for k in shifts]
    ax1.plot(ms, [100 * summary["within_1_frame_per_shift"][str(k)] for k in shifts], "o-", label="within +-1 frame")
    ax1.plot(ms, [100 * summary["exact_per_shift"][str(k)] for k in shifts], "s--", label="exact")
    ax1.axhline(95, color="grey", lw=0.8, ls=":")
    ax1.set_xlabel("true offset (ms; > 0: the picture lags)")
    ax1.set_ylabel("% of clips")
    ax1.set_ylim(0, 100)
    ax1.legend(loc="lower center")
    ax1.set_title(f"offset recovered ({summary['clips']} clips)")
    z = str(0)
    pos = [r["estimates"][z][1] for r in rows] if z in rows[0]["estimates"] else []
    shifted = [r["estimates"][str(k)][1] for r in rows for k in shifts if k != 0]
    neg = [r["mismatched"]["confidence"] for r in rows]
    bins = np.linspace(min(neg + pos + shifted) - 0.02, 1.0, 30)
    ax2.hist(shifted, bins=bins, alpha=0.35, density=True, label="shifted clips")
    if pos:
        ax2.hist(pos, bins=bins, alpha=0.6, density=True, label="in sync")
    ax2.hist(neg, bins=bins, alpha=0.6, density=True, label="another word's lips")
    ax2.set_xlabel("confidence (mean sound-lip correlation at the offset)")
    auc = summary.get("auc_in_sync_vs_mismatched")
    ax2.set_title("confidence" + (f" (AUC in sync vs mismatched {auc:.3f})" if auc is not None else ""))
    ax2.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, required=True, help="prepared tree (manifest.jsonl)")
    p.add_argument("--split", default="B2", help="block (B1 / B2 / B3) or split (train / test); default B2")
    p.add_argument("--output", type=Path, default=Path(f"experiments/results/sync_{date.today().isoformat()}"))
    p.add_argument("--mic", help="microphone (default: the first in name order)")
    p.add_argument("--shifts-ms", type=float, nargs="+", help="default -400..400 in 40 ms steps")
    p.add_argument("--max-offset-ms", type=float, default=400.0, help="search range of the estimator (default 400)")
    p.add_argument("--limit", type=int, help="only the first N clips (a quick look)")
    args = p.parse_args(argv)
    shifts_ms = args.shifts_ms if args.shifts_ms else [40.0 * i for i in range(-10, 11)]
    shifts = sorted({int(round(s * FPS / 1000.0)) for s in shifts_ms})
    t0 = time.perf_counter()
    clips = load_clips(args.data, args.split, args.mic, args.limit)
    check = check_against_video_faults(clips[0]["frames"], shifts)
    print(f"{len(clips)} clips, shifts {shifts} frames; video_faults check: {check}", file=sys.stderr)
    res = evaluate(clips, shifts, args.max_offset_ms)
    summary = summarise(res, shifts)
    meta = dict(data=str(args.data), split=args.split, mic=args.mic or "first in name order",
                max_offset_ms=args.max_offset_ms, video_faults_check=check, date=date.today().isoformat(),
                seconds=round(time.perf_counter() - t0, 1), command=" ".join(sys.argv))
    args.output.mkdir(parents=True, exist_ok=True)
    tmp = args.output / f".results.json.tmp{os.getpid()}"
    tmp.write_text(json.dumps(dict(meta=meta, summary=summary, per_clip=res["per_clip"]), indent=1) + "\n")
    os.replace(tmp, args.output / "results.json")
    write_markdown(args.output / "results.md", summary, meta)
    plot(args.output / "sync_eval.png", res, summary, shifts)
    print((args.output / "results.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
