"""A prepared tree's ``manifest.jsonl`` (docs/LAYOUT.md section 2): one :class:`ManifestRecord` per line, and
the reading, writing and merging of the file.

``prepare`` writes it; ``validate``, ``stats`` and av-train's loader read it. Each reader asks for the fields it
needs (``require``): ``validate`` reads damaged lines too, to report what is missing, while a loader refuses a
line without the fields it uses. A record remembers which fields its line did not have (older trees lack the
fields added after the first fifteen) and any fields it does not know (written by a newer version), so a record
read and written back gives the same JSON.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MANIFEST = "manifest.jsonl"

CORE_FIELDS: tuple[str, ...] = (
    "utt_id", "speaker", "level", "block", "split", "word_id", "word", "category", "audio", "clip", "roi",
    "roi_fps", "roi_frames", "audio_offset_s", "duration_s",
)
"""The first layout's fields, in the order they are written (the contract; a test pins it)."""

ADDED_FIELDS: tuple[str, ...] = ("seen_in_train", "audio_vad", "vad_start_s", "vad_end_s", "vad_roi_frames")
"""Fields added later, written after the core ones (fields are only ever added)."""

FIELDS: tuple[str, ...] = CORE_FIELDS + ADDED_FIELDS


class RecordError(ValueError):
    """A JSON object that is not a manifest record with the fields a reader requires."""


class ManifestLineError(ValueError):
    """A line of ``manifest.jsonl`` that is not a usable record; the message names the file and the line."""

    def __init__(self, path: str | Path, lineno: int, why: str) -> None:
        self.path, self.lineno, self.why = Path(path), lineno, why
        super().__init__(f"{path}:{lineno}: {why}")


@dataclass(frozen=True)
class ManifestRecord:
    """One utterance of a prepared tree; paths are relative to the tree's root.

    A field the line did not have is None here and listed in ``absent`` (see :meth:`has`); it is left out
    again by :meth:`to_dict`. Fields this version does not know are kept in ``extra``."""

    utt_id: str
    speaker: str
    level: str
    block: str
    split: str
    word_id: str
    word: str
    category: str
    audio: dict[str, str]
    """microphone -> wav."""
    clip: str | None
    roi: str | None
    roi_fps: float | None
    roi_frames: int | None
    audio_offset_s: float | None
    duration_s: float
    seen_in_train: bool | None = None
    audio_vad: dict[str, str] | None = None
    """microphone -> VAD-trimmed wav (``prepare --vad``)."""
    vad_start_s: float | None = None
    vad_end_s: float | None = None
    vad_roi_frames: list[int] | None = None
    """``[first, stop)`` of the ROI frames that cover the trimmed audio."""
    absent: tuple[str, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)

    def has(self, name: str) -> bool:
        """Whether the line had field ``name`` (a present field may still be null)."""
        return name not in self.absent

    @classmethod
    def from_dict(cls, data: object, require: Collection[str] = CORE_FIELDS) -> ManifestRecord:
        """The record of one JSON object; :class:`RecordError` when it is not an object, lacks a field of
        ``require`` or (when ``utt_id`` is required) its ``utt_id`` is not a string. Values are kept as read."""
        if not isinstance(data, dict):
            raise RecordError("not a JSON object")
        missing = [k for k in require if k not in data]
        if missing:
            raise RecordError(f"missing field(s) {missing}")
        if "utt_id" in require and not isinstance(data["utt_id"], str):
            raise RecordError("utt_id is not a string")
        return cls(**{k: data.get(k) for k in FIELDS}, absent=tuple(k for k in FIELDS if k not in data),
                   extra={k: v for k, v in data.items() if k not in FIELDS})

    def to_dict(self) -> dict[str, Any]:
        """The JSON object of this record: the known fields in layout order, then the unknown ones."""
        return {**{k: getattr(self, k) for k in FIELDS if k not in self.absent}, **self.extra}

    def to_json(self) -> str:
        """One line of ``manifest.jsonl`` (without its newline)."""
        return json.dumps(self.to_dict(), ensure_ascii=False)


@dataclass(frozen=True)
class ManifestLine:
    """One non-blank line of the file: its JSON object, or why it has none."""

    path: Path
    lineno: int
    data: dict[str, Any] | None
    why: str = ""

    def record(self, require: Collection[str] = CORE_FIELDS) -> ManifestRecord:
        """This line's record; :class:`ManifestLineError` (naming the file and line) when it is not one."""
        if self.data is None:
            raise ManifestLineError(self.path, self.lineno, self.why)
        try:
            return ManifestRecord.from_dict(self.data, require)
        except RecordError as e:
            raise ManifestLineError(self.path, self.lineno, str(e)) from None


def manifest_path(root: str | Path) -> Path:
    return Path(root) / MANIFEST


def read_lines(path: str | Path) -> Iterator[ManifestLine]:
    """Every non-blank line of ``path``, numbered from 1; a line that is not a JSON object comes with the reason
    instead of raising, so that a checker can report it and go on."""
    path = Path(path)
    with open(path, encoding="utf-8") as f:
        for lineno, text in enumerate(f, 1):
            if not text.strip():
                continue
            try:
                data = json.loads(text)
            except json.JSONDecodeError as e:
                yield ManifestLine(path, lineno, None, f"not valid JSON ({e.msg})")
                continue
            if isinstance(data, dict):
                yield ManifestLine(path, lineno, data)
            else:
                yield ManifestLine(path, lineno, None, "not a JSON object")


def read_records(path: str | Path, require: Collection[str] = CORE_FIELDS) -> list[ManifestRecord]:
    """Every record of ``path``; the first line that is not a record with ``require``'s fields raises
    :class:`ManifestLineError`."""
    return [line.record(require) for line in read_lines(path)]


def write_manifest(path: str | Path, records: Iterable[ManifestRecord]) -> None:
    """Write ``records`` one per line, atomically (a temporary file renamed into place when complete)."""
    from uaspeech_prep.video_io import atomic_write_text

    atomic_write_text(path, "".join(r.to_json() + "\n" for r in records))


def merge_records(existing: Iterable[ManifestRecord], new: Iterable[ManifestRecord],
                  replaced_speakers: Collection[str]) -> list[ManifestRecord]:
    """The manifest after a run over ``replaced_speakers``: the other speakers' ``existing`` records (sorted by
    utterance), then this run's ``new`` ones."""
    kept = [r for r in existing if r.speaker not in replaced_speakers]
    return sorted(kept, key=lambda r: r.utt_id) + list(new)
