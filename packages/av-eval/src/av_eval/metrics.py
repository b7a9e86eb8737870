"""WER, CER and WSR, pooled over utterances, per intelligibility level, speaker and word category.

- WER / CER come from jiwer (word / character edit distance summed over all utterances of a group,
  divided by the summed reference length: *pooled*, as the field reports them).
- WSR (word success rate) is the share of utterances whose normalised hypothesis equals the
  normalised reference exactly.
- ``macro`` averages the four levels' figures with equal weight, beside the pooled ``total``.

All figures are fractions in [0, 1] (WER/CER can exceed 1 with insertions); reports print percent.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass

import jiwer

from av_eval.normalize import normalize
from av_eval.predictions import Prediction

LEVELS: tuple[str, ...] = ("very_low", "low", "mid", "high")


@dataclass(frozen=True)
class Scores:
    wer: float
    cer: float
    wsr: float
    n: int  # utterances
    word_errors: int  # substitutions + deletions + insertions (words)
    ref_words: int

    def as_dict(self) -> dict:
        return asdict(self)


def _check(refs: Sequence[str], ids: Sequence[str]) -> None:
    for r, i in zip(refs, ids):
        if not r:
            raise ValueError(
                f"utterance {i!r} has an empty reference after normalisation: a reference must contain a word. "
                "Fix the transcript in the manifest / predictions file."
            )


def score_texts(references: Sequence[str], hypotheses: Sequence[str], ids: Sequence[str] | None = None) -> Scores:
    """Score parallel lists of reference and hypothesis strings (normalised here)."""
    if len(references) != len(hypotheses):
        raise ValueError(f"{len(references)} references but {len(hypotheses)} hypotheses")
    if not references:
        raise ValueError("nothing to score: no utterances")
    refs = [normalize(r) for r in references]
    hyps = [normalize(h) for h in hypotheses]
    _check(refs, ids or [str(k) for k in range(len(refs))])
    words = jiwer.process_words(refs, hyps)
    chars = jiwer.process_characters(refs, hyps)
    errors = words.substitutions + words.deletions + words.insertions
    ref_words = words.substitutions + words.deletions + words.hits
    return Scores(
        wer=float(words.wer),
        cer=float(chars.cer),
        wsr=sum(r == h for r, h in zip(refs, hyps)) / len(refs),
        n=len(refs),
        word_errors=int(errors),
        ref_words=int(ref_words),
    )


def score_group(preds: Sequence[Prediction]) -> Scores:
    return score_texts([p.reference for p in preds], [p.hypothesis for p in preds], [p.utt_id for p in preds])


def _grouped(preds: Iterable[Prediction], key: Callable[[Prediction], str | None]) -> dict[str, list[Prediction]]:
    groups: dict[str, list[Prediction]] = {}
    for p in preds:
        k = key(p)
        if k is not None:
            groups.setdefault(k, []).append(p)
    return groups


@dataclass
class Report:
    """Scores of one set of predictions."""

    total: Scores
    macro: dict[str, float]  # mean over present levels of wer / cer / wsr
    per_level: dict[str, Scores]
    per_speaker: dict[str, Scores]
    per_category: dict[str, Scores]

    def as_dict(self) -> dict:
        return {
            "total": self.total.as_dict(),
            "macro": self.macro,
            "per_level": {k: v.as_dict() for k, v in self.per_level.items()},
            "per_speaker": {k: v.as_dict() for k, v in self.per_speaker.items()},
            "per_category": {k: v.as_dict() for k, v in self.per_category.items()},
        }

    def rows(self) -> list[dict]:
        """Flat rows (group_type, group, wer, cer, wsr, n) for CSV."""
        out = [{"group_type": "total", "group": "total", **self.total.as_dict()}]
        for kind, table in (("level", self.per_level), ("speaker", self.per_speaker), ("category", self.per_category)):
            out += [{"group_type": kind, "group": k, **v.as_dict()} for k, v in table.items()]
        return out


def score_predictions(preds: Sequence[Prediction]) -> Report:
    """Pooled total, macro average over levels, and per level / speaker / category scores."""
    if not preds:
        raise ValueError("nothing to score: no predictions")
    by_level = _grouped(preds, lambda p: p.level)
    unknown = sorted(set(by_level) - set(LEVELS))
    if unknown:
        raise ValueError(f"unknown intelligibility level(s) {unknown}; expected {LEVELS}")
    per_level = {lvl: score_group(by_level[lvl]) for lvl in LEVELS if lvl in by_level}
    macro = {
        m: sum(getattr(s, m) for s in per_level.values()) / len(per_level) for m in ("wer", "cer", "wsr")
    } if per_level else {}
    return Report(
        total=score_group(preds),
        macro=macro,
        per_level=per_level,
        per_speaker={k: score_group(v) for k, v in sorted(_grouped(preds, lambda p: p.speaker).items())},
        per_category={k: score_group(v) for k, v in sorted(_grouped(preds, lambda p: p.category).items())},
    )
