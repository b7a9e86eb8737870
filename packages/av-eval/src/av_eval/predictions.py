"""Predictions files: one JSON object per utterance, so scoring can be redone without the model."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from av_common.files import atomic_write_text


@dataclass(frozen=True)
class Prediction:
    """One recognised utterance. ``route_probs`` are the soft router's
    (P(encoder only), P(decoder only), P(both)) for this utterance, when the model has a router;
    ``video_reliability`` the scale in [0, 1] its video reliability scorer gave the lips, when it has one."""

    utt_id: str
    reference: str
    hypothesis: str
    speaker: str | None = None
    level: str | None = None
    category: str | None = None
    route_probs: tuple[float, ...] | None = None
    video_reliability: float | None = None

    def to_record(self) -> dict:
        rec = asdict(self)
        if rec["video_reliability"] is None:
            del rec["video_reliability"]  # only models with a reliability scorer have it
        else:
            rec["video_reliability"] = round(float(rec["video_reliability"]), 6)
        if rec["route_probs"] is None:
            del rec["route_probs"]  # only models with a router have them
        else:
            rec["route_probs"] = [round(float(x), 6) for x in rec["route_probs"]]
        return rec


def write_predictions(path: str | Path, preds: Iterable[Prediction]) -> Path:
    return atomic_write_text(path, "".join(json.dumps(p.to_record(), ensure_ascii=False) + "\n" for p in preds))


def iter_jsonl(path: Path):
    """(line number, object) for each non-blank line of a JSON-lines file; errors name file and line."""
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise ValueError(f"{path}:{lineno}: not UTF-8 text; a JSON-lines file (one JSON object per line) "
                                 "was expected") from None
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{lineno}: not valid JSON ({e.msg}); each line must be one JSON object") from None
            if not isinstance(rec, dict):
                raise ValueError(f"{path}:{lineno}: a JSON object ({{...}}) was expected, got {type(rec).__name__} "
                                 f"{line.strip()[:40]!r}; each line must be one JSON object")
            yield lineno, rec


def read_predictions(path: str | Path) -> list[Prediction]:
    """Read a predictions .jsonl file; errors name the file, the line and what is wrong."""
    path = Path(path)
    known = {f.name for f in fields(Prediction)}
    if not path.is_file():
        raise ValueError(f"no predictions file at {path}")
    out: list[Prediction] = []
    seen: dict[str, int] = {}
    for lineno, rec in iter_jsonl(path):
        missing = {"utt_id", "reference", "hypothesis"} - set(rec)
        if missing:
            raise ValueError(f"{path}:{lineno}: missing field(s) {sorted(missing)}")
        for key in ("utt_id", "reference", "hypothesis"):
            if not isinstance(rec[key], str):
                raise ValueError(f"{path}:{lineno}: field {key!r} must be a string, got {rec[key]!r}")
        if rec["utt_id"] in seen:  # it would be scored twice, weighing its word double
            raise ValueError(f"{path}:{lineno}: utterance {rec['utt_id']!r} was already on line {seen[rec['utt_id']]}; "
                             "each utterance must appear once (remove the duplicate line)")
        seen[rec["utt_id"]] = lineno
        if rec.get("route_probs") is not None:
            rec["route_probs"] = tuple(float(x) for x in rec["route_probs"])
        if rec.get("video_reliability") is not None:
            try:
                rec["video_reliability"] = float(rec["video_reliability"])
            except (TypeError, ValueError):
                raise ValueError(f"{path}:{lineno}: field 'video_reliability' must be a number, got "
                                 f"{rec['video_reliability']!r}") from None
        out.append(Prediction(**{k: v for k, v in rec.items() if k in known}))
    return out
