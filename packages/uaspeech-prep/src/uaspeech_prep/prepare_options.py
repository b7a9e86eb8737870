"""What ``uaspeech-prep prepare`` is asked to do (:class:`PrepareOptions`, filled by the command line)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass
class PrepareOptions:
    source: Path
    output: Path
    speakers: list[str] | None = None
    mics: list[str] | None = None
    variant: str | None = None
    overwrite: bool = False
    skip_roi: bool = False
    workers: int = 1
    keep_going: bool = False
    model_path: str | None = None
    roi_scale: float = 2.0
    roi_smooth_s: float = 0.15
    min_detect_ratio: float = 0.5
    progress: bool = True
    roi_align: str = "similarity"
    detect_every: int = 0
    detect_width: int = 0
    vad: bool = False
    roi_track: str = "flow"
    sync_report: bool = False
    sync_correct: float | None = None
    """Minimum confidence for re-timing a ROI by its estimated audio-video offset (None: no correction)."""

    @property
    def sync(self) -> bool:
        """Whether the run ends with the sync pass (``sync.csv``)."""
        return self.sync_report or self.sync_correct is not None

    def roi_params(self):
        from uaspeech_prep.roi import RoiParams

        return RoiParams(scale=self.roi_scale, smooth_s=self.roi_smooth_s, min_detect_ratio=self.min_detect_ratio,
                         align=self.roi_align, detect_every=self.detect_every, detect_width=self.detect_width,
                         track=self.roi_track)

    def vad_params(self):
        from uaspeech_prep.vad import VadParams

        return VadParams()

    def to_dict(self) -> dict:
        d = asdict(self)
        d["source"], d["output"] = str(self.source), str(self.output)
        return d
