"""Scoring speed: av-eval's score_predictions on 100k utterances vs plain jiwer loops.

    uv run python benchmarks/eval_bench.py [--n 100000] [--repeats 3]

Three ways to get the same report (pooled WER / CER / WSR for the total, 4 levels, 12 speakers and
5 word categories), all measured in this run on the same synthetic predictions:

- baseline ``per-utterance jiwer``: for each utterance normalise, call jiwer.process_words and
  jiwer.process_characters, and add its counts to its groups' sums (the obvious loop);
- ``jiwer per group``: one jiwer call per group on that group's utterances (av-eval's first version);
- ``av-eval``: score_predictions (normalise once with a cache, exact matches skip alignment, one
  jiwer call on the rest, group sums with numpy).

The hypotheses look like a mid-quality dysarthric system: 60% exact, the rest character edits,
character-level outputs ("t h r e e") and empty outputs. The target is under 10 s for 100k.
"""

from __future__ import annotations

import argparse
import random
import time
from collections import defaultdict

import jiwer

from av_eval import Prediction, normalize, score_predictions
from av_eval.metrics import LEVELS, _normalize_cached
from uaspeech_prep.corpus import SPEAKERS, builtin_wordlist, category_of


def make_predictions(n: int, seed: int = 0) -> list[Prediction]:
    rng = random.Random(seed)
    words = list(builtin_wordlist().items())
    speakers = [(s, sp.level) for s, sp in SPEAKERS.items() if sp.level in LEVELS]
    out = []
    for i in range(n):
        wid, word = rng.choice(words)
        spk, level = rng.choice(speakers)
        u = rng.random()
        if u < 0.6:
            hyp = word.lower() if rng.random() < 0.5 else " ".join(word.lower())  # word or char level
        elif u < 0.65:
            hyp = ""
        else:
            w = list(word.lower())
            for _ in range(rng.randint(1, 3)):
                k = rng.randrange(len(w) + 1)
                op = rng.random()
                if op < 0.4 and w:
                    w[min(k, len(w) - 1)] = rng.choice("abcdefghijklmnopqrstuvwxyz")
                elif op < 0.7 and w:
                    del w[min(k, len(w) - 1)]
                else:
                    w.insert(k, rng.choice("abcdefghijklmnopqrstuvwxyz "))
            hyp = "".join(w)
        wid = wid.split("_")[-1]  # block-specific keys look like "B3_UW78"
        out.append(Prediction(f"{spk}_B2_{wid}_{i}", word, hyp, spk, level, category_of(wid)))
    return out


def _keys(p: Prediction) -> list[tuple[str, str]]:
    return [("total", "total"), ("level", p.level), ("speaker", p.speaker), ("category", p.category)]


def per_utterance_loop(preds: list[Prediction]) -> dict:
    sums: dict = defaultdict(lambda: [0, 0, 0, 0, 0, 0])  # word err, ref words, char err, ref chars, correct, n
    for p in preds:
        r, h = normalize(p.reference), normalize(p.hypothesis)
        w = jiwer.process_words(r, h)
        c = jiwer.process_characters(r, h)
        counts = (w.substitutions + w.deletions + w.insertions, w.substitutions + w.deletions + w.hits,
                  c.substitutions + c.deletions + c.insertions, c.substitutions + c.deletions + c.hits, int(r == h), 1)
        for key in _keys(p):
            acc = sums[key]
            for j, v in enumerate(counts):
                acc[j] += v
    return {k: (v[0] / v[1], v[2] / v[3], v[4] / v[5]) for k, v in sums.items()}


def jiwer_per_group(preds: list[Prediction]) -> dict:
    groups: dict = defaultdict(list)
    for p in preds:
        for key in _keys(p):
            groups[key].append(p)
    out = {}
    for key, grp in groups.items():
        refs = [normalize(p.reference) for p in grp]
        hyps = [normalize(p.hypothesis) for p in grp]
        out[key] = (jiwer.wer(refs, hyps), jiwer.cer(refs, hyps), sum(r == h for r, h in zip(refs, hyps)) / len(refs))
    return out


def av_eval_scores(preds: list[Prediction]) -> dict:
    _normalize_cached.cache_clear()  # no head start from an earlier repeat
    r = score_predictions(preds)
    out = {("total", "total"): (r.total.wer, r.total.cer, r.total.wsr)}
    for kind, table in (("level", r.per_level), ("speaker", r.per_speaker), ("category", r.per_category)):
        out.update({(kind, k): (s.wer, s.cer, s.wsr) for k, s in table.items()})
    return out


def timed(fn, preds, repeats: int) -> tuple[float, dict]:
    best, result = float("inf"), None
    for _ in range(repeats):
        t = time.perf_counter()
        result = fn(preds)
        best = min(best, time.perf_counter() - t)
    return best, result


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    preds = make_predictions(args.n)
    print(f"{args.n} utterances, {len({p.speaker for p in preds})} speakers; best of {args.repeats} (baseline: 1 run)")
    base_t, base = timed(per_utterance_loop, preds, 1)
    rows = [("per-utterance jiwer (baseline)", base_t, base)]
    rows.append(("jiwer per group", *timed(jiwer_per_group, preds, args.repeats)))
    rows.append(("av-eval score_predictions", *timed(av_eval_scores, preds, args.repeats)))
    print("| method | seconds | speed-up vs baseline | utterances / s | same numbers |\n|---|---:|---:|---:|---|")
    for name, t, res in rows:
        same = set(res) == set(base) and all(abs(a - b) < 1e-12 for k in base for a, b in zip(res[k], base[k]))
        print(f"| {name} | {t:.2f} | {base_t / t:.1f}x | {args.n / t:,.0f} | {'yes' if same else 'NO'} |")
    ours = rows[-1][1]
    print(f"\ntarget: 100k utterances under 10 s -> {'met' if ours * 100_000 / args.n < 10 else 'NOT met'} "
          f"({ours * 100_000 / args.n:.2f} s per 100k)")


if __name__ == "__main__":
    main()
