"""A trivial video-only probe of a prepared tree: how much of the word can a linear model read off the lips?

    uv run python experiments/lip_probe.py PREPARED [--frames 16] [--size 24] [--pca 100] [--l2 1e-2]

For every utterance of ``PREPARED/manifest.jsonl`` with a lip ROI (one record per utterance: the video is
shared by the microphone channels), the ROI video is decoded in grey, ``--frames`` frames are taken uniformly
in time, each downscaled to ``--size`` x ``--size``, the clip's mean frame is subtracted (what moves, not the
face), the result is flattened and the clip length (frames) appended. PCA (numpy SVD, fitted on the training
clips) to ``--pca`` dimensions, then a multinomial logistic regression (L2, L-BFGS from scipy) is trained on the
B1 + B3 clips and tested on B2. Prints the accuracy per level and in total, and WER = 1 - accuracy.

It also prints how much a speaker's repetitions of a word differ (what the probe has to generalise over):
mean absolute ROI grey-level difference between the B1 and the B2 repetition (both resampled to the longer
one's frame count, nearest frame), and the spread of the audio durations over B1 / B2 / B3 ((max - min) / mean).
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np
import soundfile as sf
from scipy.optimize import minimize
from scipy.special import logsumexp

from uaspeech_prep.manifest import manifest_path
from uaspeech_prep.manifest import read_records as read_manifest
from uaspeech_prep.video_io import read_frames

LEVELS = ("high", "mid", "low", "very_low")


def read_records(root: Path) -> list[dict]:
    return [r.to_dict() for r in read_manifest(manifest_path(root)) if r.roi]


def resample(frames: np.ndarray, n: int) -> np.ndarray:
    idx = np.round(np.linspace(0, len(frames) - 1, n)).astype(int)
    return frames[idx]


def features(frames: np.ndarray, n_frames: int, size: int) -> np.ndarray:
    small = np.stack([cv2.resize(f, (size, size), interpolation=cv2.INTER_AREA) for f in resample(frames, n_frames)])
    small = small.astype(np.float32) / 255.0
    small -= small.mean(axis=0, keepdims=True)
    return np.concatenate([small.ravel(), [len(frames)]]).astype(np.float64)


def fit_logreg(x: np.ndarray, y: np.ndarray, n_classes: int, l2: float) -> np.ndarray:
    """Multinomial logistic regression, weights (d + 1, k) with a bias row; L2 on the weights only."""
    n, d = x.shape
    xb = np.hstack([x, np.ones((n, 1))])
    onehot = np.eye(n_classes)[y]

    def loss(w_flat: np.ndarray) -> tuple[float, np.ndarray]:
        w = w_flat.reshape(d + 1, n_classes)
        z = xb @ w
        lse = logsumexp(z, axis=1, keepdims=True)
        p = np.exp(z - lse)
        reg = 0.5 * l2 * np.sum(w[:-1] ** 2)
        val = float(np.mean(lse[:, 0] - np.sum(z * onehot, axis=1))) + reg
        g = xb.T @ (p - onehot) / n
        g[:-1] += l2 * w[:-1]
        return val, g.ravel()

    res = minimize(loss, np.zeros((d + 1) * n_classes), jac=True, method="L-BFGS-B", options={"maxiter": 2000})
    return res.x.reshape(d + 1, n_classes)


def speech_duration(wav: Path, rel_db: float = -30.0) -> float:
    """Seconds from the first to the last sample whose 20 ms envelope is within ``rel_db`` of the peak."""
    x, sr = sf.read(str(wav), dtype="float32")
    w = max(1, int(0.02 * sr))
    env = np.convolve(np.abs(x), np.ones(w) / w, mode="same")
    on = np.flatnonzero(env > env.max() * 10 ** (rel_db / 20))
    return (on[-1] - on[0] + 1) / sr if len(on) else 0.0


def repetition_stats(root: Path, recs: list[dict], frames: dict[str, np.ndarray]) -> None:
    by_word: dict[tuple[str, str], dict[str, dict]] = defaultdict(dict)
    for r in recs:
        by_word[(r["speaker"], r["word_id"])][r["block"]] = r
    diffs: dict[str, list[float]] = defaultdict(list)
    spreads: dict[str, list[float]] = defaultdict(list)
    speech: dict[str, list[float]] = defaultdict(list)
    motion: dict[str, list[float]] = defaultdict(list)
    for (_, _), blocks in sorted(by_word.items()):
        level = next(iter(blocks.values()))["level"]
        if "B1" in blocks and "B2" in blocks:
            a, b = frames[blocks["B1"]["utt_id"]], frames[blocks["B2"]["utt_id"]]
            n = max(len(a), len(b))
            ra, rb = resample(a, n).astype(np.float32), resample(b, n).astype(np.float32)
            diffs[level].append(float(np.abs(ra - rb).mean()))
            motion[level].append(float(np.abs((ra - ra.mean(0)) - (rb - rb.mean(0))).mean()))
        durs = [float(blocks[k]["duration_s"]) for k in sorted(blocks)]
        if len(durs) >= 2:
            spreads[level].append((max(durs) - min(durs)) / np.mean(durs))
            sp = [speech_duration(root / blocks[k]["audio"][sorted(blocks[k]["audio"])[0]]) for k in sorted(blocks)]
            speech[level].append((max(sp) - min(sp)) / np.mean(sp))
    print("\nrepetitions of a word by one speaker")
    print("(spread = (max - min) / mean over B1 B2 B3 of the clip duration, and of the speech inside it)")
    print("(ROI |B1-B2|: mean absolute grey-level difference (0-255) of the frames; motion: the same after taking each")
    print(" clip's mean frame away, i.e. of what moves)")
    print(f"{'level':<9} {'pairs':>5} {'ROI |B1-B2|':>11} {'motion':>7} {'clip spread':>12} {'speech spread':>14} "
          f"{'median':>7} {'min':>6}")
    for lv in (*LEVELS, "all"):
        def pick(table: dict[str, list[float]]) -> list[float]:
            return [v for k, vs in table.items() if lv in ("all", k) for v in vs]

        d, m, s, a = pick(diffs), pick(motion), pick(spreads), pick(speech)
        if d:
            print(f"{lv:<9} {len(d):>5} {np.mean(d):>11.2f} {np.mean(m):>7.2f} {100 * np.mean(s):>11.1f}% "
                  f"{100 * np.mean(a):>13.1f}% {100 * np.median(a):>6.1f}% {100 * np.min(a):>5.1f}%")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("prepared", type=Path, help="a prepared tree (with manifest.jsonl and lip ROIs)")
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--size", type=int, default=24)
    ap.add_argument("--pca", type=int, default=100)
    ap.add_argument("--l2", type=float, default=1e-2, help="L2 weight of the logistic regression")
    args = ap.parse_args(argv)

    recs = read_records(args.prepared)
    if not recs:
        print(f"{args.prepared}: no utterance with a lip ROI", file=sys.stderr)
        return 1
    frames = {r["utt_id"]: np.stack(read_frames(args.prepared / r["roi"], gray=True)) for r in recs}
    feats = np.stack([features(frames[r["utt_id"]], args.frames, args.size) for r in recs])
    words = sorted({r["word_id"] for r in recs})
    y = np.array([words.index(r["word_id"]) for r in recs])
    train = np.array([r["block"] in ("B1", "B3") for r in recs])
    test = np.array([r["block"] == "B2" for r in recs])
    if not train.any() or not test.any():
        print("need B1 / B3 (train) and B2 (test) clips", file=sys.stderr)
        return 1

    # the length column is in frames, the pixels in [-1, 1]: put both on one scale before the PCA
    mu, sd = feats[train].mean(0), feats[train].std(0) + 1e-6
    pix_sd = float(np.mean(sd[:-1]))
    scale = np.full(feats.shape[1], pix_sd)
    scale[-1] = sd[-1]
    z = (feats - mu) / scale
    _, _, vt = np.linalg.svd(z[train], full_matrices=False)
    k = min(args.pca, vt.shape[0])
    pcs = z @ vt[:k].T
    pcs /= pcs[train].std(0) + 1e-9
    w = fit_logreg(pcs[train], y[train], len(words), args.l2)
    pred = np.argmax(np.hstack([pcs, np.ones((len(pcs), 1))]) @ w, axis=1)
    ok = pred == y

    print(f"lip probe on {args.prepared}: {train.sum()} training clips (B1 + B3), {test.sum()} test clips (B2), "
          f"{len(words)} words; {args.frames} frames x {args.size}x{args.size} - mean frame, + length; PCA {k}; "
          f"logistic regression L2 {args.l2}")
    print(f"train accuracy {100 * ok[train].mean():.1f} %")
    print(f"{'level':<9} {'words':>5} {'acc %':>6} {'WER %':>6}")
    levels = [r["level"] for r in recs]
    for lv in (*LEVELS, "all"):
        m = test & np.array([lv in ("all", x) for x in levels])
        if m.any():
            print(f"{lv:<9} {m.sum():>5} {100 * ok[m].mean():>6.1f} {100 * (1 - ok[m].mean()):>6.1f}")
    repetition_stats(args.prepared, recs, frames)
    return 0


if __name__ == "__main__":
    sys.exit(main())
