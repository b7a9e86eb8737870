"""WER, CER and WSR, pooled over utterances, per intelligibility level, speaker, word category and
seen / unseen words (docs/METRICS.md has the definitions and worked examples).

- WER / CER come from jiwer: word / character edit operations (S + D + I) summed over all
  utterances of a group, divided by the summed reference length. This is the *pooled* figure the
  field reports; it is NOT the mean of per-utterance error rates.
- WSR (word success rate) is the share of utterances whose normalised hypothesis equals the
  normalised reference exactly.
- ``macro`` averages the levels' figures with equal weight (``macro_speaker``: the speakers'),
  beside the pooled ``total``.

Speed: every utterance is normalised once (references repeat, so normalisation is cached), and its
edit counts are computed once: an exact match has no errors by definition, and the remaining pairs
go to ONE jiwer call whose per-utterance alignments give per-utterance counts. Every group (level,
speaker, category, ...) is then a sum of those counts, so 100k utterances score in about a second
(benchmarks/eval_bench.py).

All figures are fractions in [0, 1] (WER / CER can exceed 1 with insertions); reports print percent.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from functools import lru_cache

import jiwer
import numpy as np

from av_common.corpus import LEVELS  # intelligibility levels, most severe first (one home for the corpus's numbers)
from av_eval.normalize import normalize
from av_eval.predictions import Prediction

METRICS: tuple[str, ...] = ("wer", "cer", "wsr")


@dataclass(frozen=True)
class Scores:
    wer: float
    cer: float
    wsr: float
    n: int  # utterances
    word_errors: int  # substitutions + deletions + insertions (words)
    ref_words: int
    char_errors: int = 0  # the same on characters (a space between words is a character)
    ref_chars: int = 0
    correct: int = 0  # utterances recognised exactly (WSR numerator)

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class UtteranceCounts:
    """Per-utterance edit counts, arrays of length N (the unit every group score is summed from)."""

    word_errors: np.ndarray  # int64 [N]
    ref_words: np.ndarray
    char_errors: np.ndarray
    ref_chars: np.ndarray
    correct: np.ndarray  # bool [N]

    def scores(self, index: np.ndarray | slice | None = None) -> Scores:
        sel = slice(None) if index is None else index
        n = int(self.correct[sel].size)
        if n == 0:
            raise ValueError("nothing to score: empty group")
        we, rw = int(self.word_errors[sel].sum()), int(self.ref_words[sel].sum())
        ce, rc = int(self.char_errors[sel].sum()), int(self.ref_chars[sel].sum())
        ok = int(self.correct[sel].sum())
        return Scores(wer=we / rw, cer=ce / rc, wsr=ok / n, n=n, word_errors=we, ref_words=rw,
                      char_errors=ce, ref_chars=rc, correct=ok)


_normalize_cached = lru_cache(maxsize=1 << 16)(normalize)


def _edit_counts(process: Callable, refs: list[str], hyps: list[str]) -> np.ndarray:
    """S + D + I per utterance from one jiwer call (its alignment chunks are per utterance)."""
    if not refs:
        return np.zeros(0, dtype=np.int64)
    out = process(refs, hyps)
    errors = np.zeros(len(refs), dtype=np.int64)
    for i, chunks in enumerate(out.alignments):
        e = 0
        for c in chunks:
            if c.type == "equal":
                continue
            # substitute / delete count reference tokens; insert counts hypothesis tokens
            e += (c.hyp_end_idx - c.hyp_start_idx) if c.type == "insert" else (c.ref_end_idx - c.ref_start_idx)
        errors[i] = e
    return errors


def count_utterances(
    references: Sequence[str], hypotheses: Sequence[str], ids: Sequence[str] | None = None
) -> UtteranceCounts:
    """Normalise each pair once and count its word / character edits (see the module docstring)."""
    if len(references) != len(hypotheses):
        raise ValueError(f"{len(references)} references but {len(hypotheses)} hypotheses")
    if not references:
        raise ValueError("nothing to score: no utterances")
    refs = [_normalize_cached(r) for r in references]
    hyps = [_normalize_cached(h) if len(h) < 200 else normalize(h) for h in hypotheses]
    for k, r in enumerate(refs):
        if not r:
            name = ids[k] if ids is not None else f"#{k}"
            raise ValueError(
                f"utterance {name!r} has an empty reference after normalisation ({references[k]!r}): a reference "
                "must contain a word. Fix the transcript in the manifest / predictions file."
            )
    correct = np.fromiter((r == h for r, h in zip(refs, hyps)), dtype=bool, count=len(refs))
    ref_words = np.fromiter((r.count(" ") + 1 for r in refs), dtype=np.int64, count=len(refs))
    ref_chars = np.fromiter((len(r) for r in refs), dtype=np.int64, count=len(refs))
    word_errors = np.zeros(len(refs), dtype=np.int64)
    char_errors = np.zeros(len(refs), dtype=np.int64)
    wrong = np.flatnonzero(~correct)
    if wrong.size:
        wr = [refs[i] for i in wrong]
        wh = [hyps[i] for i in wrong]
        word_errors[wrong] = _edit_counts(jiwer.process_words, wr, wh)
        char_errors[wrong] = _edit_counts(jiwer.process_characters, wr, wh)
    return UtteranceCounts(word_errors, ref_words, char_errors, ref_chars, correct)


def score_texts(references: Sequence[str], hypotheses: Sequence[str], ids: Sequence[str] | None = None) -> Scores:
    """Score parallel lists of reference and hypothesis strings (normalised here), pooled."""
    return count_utterances(references, hypotheses, ids).scores()


def _groups(keys: Iterable[str | None], order: Iterable[str] | None = None) -> dict[str, np.ndarray]:
    """Group name -> indices of the utterances in it (None: in no group)."""
    index: dict[str, list[int]] = {}
    for i, k in enumerate(keys):
        if k is not None:
            index.setdefault(k, []).append(i)
    keys = [k for k in order if k in index] if order is not None else sorted(index)
    return {k: np.asarray(index[k], dtype=np.int64) for k in keys}


def _macro(table: dict[str, Scores]) -> dict[str, float]:
    if not table:
        return {}
    return {m: float(np.mean([getattr(s, m) for s in table.values()])) for m in METRICS}


@dataclass
class Report:
    """Scores of one set of predictions."""

    total: Scores
    macro: dict[str, float]  # mean over present levels of wer / cer / wsr (equal weight per level)
    per_level: dict[str, Scores]
    per_speaker: dict[str, Scores]
    per_category: dict[str, Scores]
    per_seen: dict[str, Scores] = field(default_factory=dict)  # "seen" / "unseen" in training (when known)
    macro_speaker: dict[str, float] = field(default_factory=dict)  # mean over speakers
    per_level_unseen: dict[str, Scores] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {
            "total": self.total.as_dict(),
            "macro": self.macro,
            "macro_speaker": self.macro_speaker,
            "per_level": {k: v.as_dict() for k, v in self.per_level.items()},
            "per_speaker": {k: v.as_dict() for k, v in self.per_speaker.items()},
            "per_category": {k: v.as_dict() for k, v in self.per_category.items()},
            "per_seen": {k: v.as_dict() for k, v in self.per_seen.items()},
            "per_level_unseen": {k: v.as_dict() for k, v in self.per_level_unseen.items()},
        }

    @classmethod
    def from_dict(cls, data: dict) -> Report:
        """Inverse of :meth:`as_dict` (reads a metrics JSON back)."""
        def table(key: str) -> dict[str, Scores]:
            return {k: Scores(**v) for k, v in data.get(key, {}).items()}

        return cls(
            total=Scores(**data["total"]), macro=dict(data.get("macro", {})), per_level=table("per_level"),
            per_speaker=table("per_speaker"), per_category=table("per_category"), per_seen=table("per_seen"),
            macro_speaker=dict(data.get("macro_speaker", {})), per_level_unseen=table("per_level_unseen"),
        )

    def value(self, group: str, metric: str) -> float | None:
        """``group``: a level, 'total', 'macro', 'unseen' / 'seen', a speaker or a category."""
        if group == "total":
            return getattr(self.total, metric)
        if group == "macro":
            return self.macro.get(metric)
        for table in (self.per_level, self.per_seen, self.per_speaker, self.per_category):
            if group in table:
                return getattr(table[group], metric)
        return None

    def rows(self) -> list[dict]:
        """Flat rows (group_type, group, wer, cer, wsr, n, ...) for CSV."""
        out = [{"group_type": "total", "group": "total", **self.total.as_dict()}]
        for kind, table in (("level", self.per_level), ("speaker", self.per_speaker), ("category", self.per_category),
                            ("seen", self.per_seen), ("level_unseen", self.per_level_unseen)):
            out += [{"group_type": kind, "group": k, **v.as_dict()} for k, v in table.items()]
        return out


def score_predictions(preds: Sequence[Prediction], train_words: Iterable[str] | None = None) -> Report:
    """Pooled total, macro averages, and per level / speaker / category scores.

    ``train_words``: the words of the training set; when given, utterances whose (normalised)
    reference is not among them are scored apart as ``unseen`` (and the rest as ``seen``).
    """
    if not preds:
        raise ValueError("nothing to score: no predictions")
    unknown = sorted({p.level for p in preds if p.level is not None} - set(LEVELS))
    if unknown:
        raise ValueError(f"unknown intelligibility level(s) {unknown}; expected {LEVELS}")
    counts = count_utterances([p.reference for p in preds], [p.hypothesis for p in preds], [p.utt_id for p in preds])
    per_level = {k: counts.scores(ix) for k, ix in _groups([p.level for p in preds], LEVELS).items()}
    per_speaker = {k: counts.scores(ix) for k, ix in _groups([p.speaker for p in preds]).items()}
    per_seen: dict[str, Scores] = {}
    per_level_unseen: dict[str, Scores] = {}
    if train_words is not None:
        seen_words = {_normalize_cached(w) for w in train_words}
        seen = [_normalize_cached(p.reference) in seen_words for p in preds]
        per_seen = {k: counts.scores(ix) for k, ix in
                    _groups(["seen" if s else "unseen" for s in seen], ("seen", "unseen")).items()}
        per_level_unseen = {k: counts.scores(ix) for k, ix in
                            _groups([None if s else p.level for s, p in zip(seen, preds)], LEVELS).items()}
    return Report(
        total=counts.scores(),
        macro=_macro(per_level),
        per_level=per_level,
        per_speaker=per_speaker,
        per_category={k: counts.scores(ix) for k, ix in _groups([p.category for p in preds]).items()},
        per_seen=per_seen,
        macro_speaker=_macro(per_speaker),
        per_level_unseen=per_level_unseen,
    )


def training_words(manifest: str, split: str = "train") -> set[str]:
    """The normalised words of ``split`` in a prepared tree's ``manifest.jsonl`` (docs/LAYOUT.md)."""
    from pathlib import Path

    path = Path(manifest)
    if path.is_dir():
        path = path / "manifest.jsonl"
    if not path.is_file():
        raise ValueError(f"no manifest at {path}: pass the prepared tree (the folder with manifest.jsonl)")
    from av_eval.predictions import iter_jsonl

    return {normalize(rec["word"]) for _, rec in iter_jsonl(path) if rec.get("split") == split and rec.get("word")}
