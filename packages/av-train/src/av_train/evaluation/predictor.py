"""The av-eval predictor for av-train checkpoints (entry point ``av_eval.predictors: av_train``)."""

from __future__ import annotations

import gc
from pathlib import Path

from av_eval.metrics import training_words
from av_eval.predictors import CheckpointPredictions
from av_train.evaluation.decoding import decode_runs
from av_train.evaluation.loading import find_checkpoints, load_run


class AVTrainPredictor:
    """Finds ``<train_id>/{best,last}.ckpt`` + ``config.yaml`` folders and decodes them."""

    name = "av_train"

    def __init__(self, device: str | None = None, batch_size: int = 16):
        self.device = device
        self.batch_size = batch_size

    def find_checkpoints(self, folder: Path) -> list[Path]:
        return find_checkpoints(folder)

    def predict(self, checkpoint: Path, split: str = "B2", data: Path | None = None,
                progress: bool = True, decode_vocabulary: str | None = None) -> CheckpointPredictions:
        run = load_run(checkpoint, data=data, device=self.device)
        try:
            preds = decode_runs([run], split, batch_size=self.batch_size, progress=progress,
                                desc=f"{run.name} {split}", decode_vocabulary=decode_vocabulary)
            try:
                words = training_words(run.cfg.uaspeech_root)
            except ValueError:
                words = None
            info = {"train_id": run.cfg.train_id, "train_name": run.cfg.train_name, "split": split,
                    "uaspeech_root": run.cfg.uaspeech_root, "modality": run.cfg.modality,
                    "fusion": run.cfg.effective_fusion_location, "checkpoint": str(checkpoint),
                    "decode_vocabulary": decode_vocabulary or run.cfg.decode_vocabulary}
            return CheckpointPredictions(Path(checkpoint), run.name, preds, words, info)
        finally:
            del run
            gc.collect()
