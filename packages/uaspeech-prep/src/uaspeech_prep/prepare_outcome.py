"""What preparing one utterance did (:class:`UttOutcome`), with its statuses as enums.

The statuses are string enums: the report (``prepare_report.json``) shows their values, unchanged, and each
enum lists its members in the order the report's summary counts them."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum


class ClipStatus(StrEnum):
    CUT = "cut"  # cut from the block video
    COPIED = "copied"  # an already-cut clip of the source, copied
    EXISTS = "exists"  # done by an earlier run
    FAILED = "failed"
    NONE = "none"  # no video for this utterance


class RoiStatus(StrEnum):
    WRITTEN = "written"
    EXISTS = "exists"
    NO_FACE = "no_face"
    FAILED = "failed"
    SKIPPED = "skipped"  # --skip-roi
    NONE = "none"


class AudioStatus(StrEnum):
    COPIED = "copied"
    EXISTS = "exists"
    FAILED = "failed"


class VadStatus(StrEnum):
    WRITTEN = "written"
    EXISTS = "exists"
    FAILED = "failed"
    NONE = "none"  # no --vad


def combined(statuses: Iterable[StrEnum], precedence: Sequence[StrEnum]) -> StrEnum:
    """One status for several files (an utterance's microphones): the first of ``precedence`` among
    ``statuses``, else its last (e.g. failed, else copied, else exists)."""
    statuses = list(statuses)
    return next((s for s in precedence[:-1] if s in statuses), precedence[-1])


@dataclass
class UttOutcome:
    utt_id: str
    clip: str | None = None  # path relative to DST
    clip_status: ClipStatus = ClipStatus.NONE
    roi: str | None = None
    roi_status: RoiStatus = RoiStatus.NONE
    roi_frames: int | None = None
    audio_offset_s: float | None = None
    detect_ratio: float | None = None
    audio_status: AudioStatus = AudioStatus.COPIED
    reasons: list[str] = field(default_factory=list)
    vad_status: VadStatus = VadStatus.NONE
    vad_start_s: float | None = None
    vad_end_s: float | None = None
    vad_speech_found: bool | None = None
    audio_vad: dict[str, str] | None = None  # mic -> path relative to DST

    @property
    def failed(self) -> bool:
        return (self.clip_status == ClipStatus.FAILED or self.roi_status in (RoiStatus.FAILED, RoiStatus.NO_FACE)
                or self.audio_status == AudioStatus.FAILED or self.vad_status == VadStatus.FAILED)

    def fail_clip(self, reason: str) -> None:
        self.clip_status = ClipStatus.FAILED
        self.reasons.append(f"clip: {reason}")
