"""Evaluating checkpoints without importing the package that trained them.

av-eval knows nothing about models. A training package registers a *predictor* in the entry-point
group ``av_eval.predictors`` (av-train registers ``av_train = "av_train.evaluation.predictor:AVTrainPredictor"``);
av-eval discovers it with importlib.metadata at run time, so there is no import cycle: av-train
imports av-eval, never the other way round.

A predictor is any object with:

- ``name``: str
- ``find_checkpoints(folder) -> list[Path]``: the checkpoints it can evaluate under ``folder``
- ``predict(checkpoint, split="B2", data=None, progress=True, **options) -> CheckpointPredictions``; options
  are passed only when the user gives them (today ``decode_vocabulary``: ``open``, ``uaspeech`` or a file)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Protocol, runtime_checkable

from av_eval.predictions import Prediction

GROUP = "av_eval.predictors"


@dataclass
class CheckpointPredictions:
    """What a predictor returns for one checkpoint."""

    checkpoint: Path
    run_name: str  # e.g. the run's train_id
    predictions: list[Prediction]
    train_words: set[str] | None = None  # training vocabulary, for seen / unseen scores
    info: dict = field(default_factory=dict)  # anything worth recording (config, split, data root)


@runtime_checkable
class Predictor(Protocol):
    name: str

    def find_checkpoints(self, folder: Path) -> list[Path]: ...

    def predict(self, checkpoint: Path, split: str = "B2", data: Path | None = None,
                progress: bool = True) -> CheckpointPredictions: ...


class NoPredictorError(RuntimeError):
    pass


def load_predictors() -> list[Predictor]:
    """Instantiate every predictor registered in the ``av_eval.predictors`` entry-point group."""
    out = []
    for ep in entry_points(group=GROUP):
        factory = ep.load()
        predictor = factory()
        if not isinstance(predictor, Predictor):
            raise TypeError(f"entry point {ep.name!r} ({ep.value}) in {GROUP} does not implement the Predictor protocol")
        out.append(predictor)
    return out


def find_predictor(folder: Path, predictors: Sequence[Predictor] | None = None) -> tuple[Predictor, list[Path]]:
    """The first predictor that finds checkpoints under ``folder``, with them."""
    predictors = load_predictors() if predictors is None else list(predictors)
    if not predictors:
        raise NoPredictorError(
            f"no checkpoint predictor is installed (entry-point group {GROUP!r} is empty), so {folder} cannot be "
            "evaluated. Install av-train in this environment (`uv sync`, or `pip install av-train`), which "
            "registers one; or score an existing predictions file with `av-eval score PREDICTIONS.jsonl`."
        )
    for p in predictors:
        found = p.find_checkpoints(folder)
        if found:
            return p, found
    names = ", ".join(p.name for p in predictors)
    raise FileNotFoundError(
        f"no checkpoints under {folder} (looked with: {names}). Expected <train_id>/best.ckpt or last.ckpt with "
        "config.yaml beside it, as av-train writes under weights/checkpoint/."
    )
