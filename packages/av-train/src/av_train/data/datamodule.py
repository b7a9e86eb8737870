"""LightningDataModule over a prepared tree: it only loads (no model logic)."""

from __future__ import annotations

import logging

import lightning as L
import torch
from torch.utils.data import DataLoader

from av_train.config import TrainingConfig
from av_train.data.dataset import Collator, UASpeechAVDataset
from av_train.data.heldout import HeldOutSplit, hold_out
from av_train.data.manifest import Sample, load_samples
from av_train.data.samplers import DurationBatchSampler, RandomBatchSampler, WeightedBatchSampler
from av_train.data.targets import TargetEncoder

log = logging.getLogger(__name__)


class UASpeechDataModule(L.LightningDataModule):
    """Train = blocks B1 + B3, test = block B2 (first microphone). Validation (which chooses best.ckpt and stops
    training early) is B2 too, as the field does (``model_selection: test``), or, with ``model_selection:
    heldout``, a held-out part of B1 + B3 that leaves training (av_train.data.heldout)."""

    def __init__(self, cfg: TrainingConfig, targets: TargetEncoder, n_mels: int = 80):
        super().__init__()
        self.cfg = cfg
        self.targets = targets
        self.n_mels = n_mels
        self.collate = Collator(targets.pad_id, pad_audio_to=None if cfg.cut_encoder_positions else 3000)
        self.train_set: UASpeechAVDataset | None = None
        self.val_set: UASpeechAVDataset | None = None
        self.test_set: UASpeechAVDataset | None = None

    def _samples(self, split: str, mics: list[str]) -> list[Sample]:
        samples, skipped = load_samples(
            self.cfg.uaspeech_root, split, mics, self.cfg.speakers,
            need_video=self.cfg.uses_video, vocabulary=self.cfg.vocabulary,
        )
        if skipped:
            log.warning("%s: %d utterance(s) left out, e.g. %s", split, len(skipped), "; ".join(skipped[:3]))
        if not samples:
            raise ValueError(
                f"{self.cfg.uaspeech_root}: no {split} samples for microphones {mics}"
                + (f" and speakers {self.cfg.speakers}" if self.cfg.speakers else "")
            )
        return samples

    def _eval_set(self, samples: list[Sample]) -> UASpeechAVDataset:
        cfg = self.cfg
        return UASpeechAVDataset(samples, self.targets, cfg.uses_video, train=False, n_mels=self.n_mels,
                                 cache_features=cfg.cache_features, with_audio=cfg.uses_audio)

    def _train_set(self, samples: list[Sample]) -> UASpeechAVDataset:
        cfg = self.cfg
        if cfg.max_train_samples is not None and len(samples) > cfg.max_train_samples:
            g = torch.Generator().manual_seed(cfg.seed)
            keep = sorted(torch.randperm(len(samples), generator=g)[: cfg.max_train_samples].tolist())
            samples = [samples[i] for i in keep]
        return UASpeechAVDataset(
            samples, self.targets, cfg.uses_video, train=True, n_mels=self.n_mels,
            noise_prob=cfg.noise_prob, noise_snr_db=tuple(cfg.noise_snr_db), cache_features=cfg.cache_features,
            seed=cfg.seed, with_audio=cfg.uses_audio, noise_type=cfg.noise_type, noise_talkers=cfg.noise_talkers,
        )

    def _held_out(self) -> HeldOutSplit:
        """B1 + B3 split into training and held-out validation (model_selection: heldout), said in the log."""
        cfg = self.cfg
        mic = cfg.microphones[0]
        split = hold_out(self._samples("train", cfg.microphones), cfg.heldout_fraction, cfg.seed, mic)
        log.info("model_selection heldout: %d of %d training utterances (B1 + B3) held out of training for "
                 "validation on %s (heldout_fraction %g per speaker, %d speakers, seed %d); %d training samples "
                 "remain", len(split.utterances), split.candidates, mic, cfg.heldout_fraction,
                 len({s.speaker for s in split.validation}), cfg.seed, len(split.train))
        if split.speakers_without:
            log.warning("model_selection heldout: speaker(s) %s have a single training utterance on %s; it stays in "
                        "training and they are not validated on", ", ".join(split.speakers_without), mic)
        if not split.validation:
            raise ValueError(f"{cfg.uaspeech_root}: model_selection: heldout found no speaker with two training "
                             f"utterances on {mic} to hold one out")
        return split

    def setup(self, stage: str | None = None) -> None:
        cfg = self.cfg
        fit = stage in (None, "fit")
        if cfg.model_selection == "heldout":
            if stage != "test" and (self.val_set is None or (fit and self.train_set is None)):
                split = self._held_out()
                if self.val_set is None:
                    self.val_set = self._eval_set(split.validation)
                if fit and self.train_set is None:
                    self.train_set = self._train_set(split.train)
            if stage in (None, "test") and self.test_set is None:
                self.test_set = self._eval_set(self._samples("test", cfg.microphones[:1]))
            return
        if self.val_set is None:
            self.val_set = self._eval_set(self._samples("test", cfg.microphones[:1]))
        self.test_set = self.val_set  # validation = test = B2
        if fit and self.train_set is None:
            self.train_set = self._train_set(self._samples("train", cfg.microphones))

    def _loader_kwargs(self) -> dict:
        workers = self.cfg.num_workers
        return dict(
            num_workers=workers, collate_fn=self.collate, persistent_workers=workers > 0,
            pin_memory=torch.cuda.is_available(),
        )

    def _shard(self) -> tuple[int, int]:
        """(world size, global rank) of the attached trainer; (1, 0) outside distributed training."""
        trainer = getattr(self, "trainer", None)
        if trainer is None:
            return 1, 0
        return int(trainer.world_size), int(trainer.global_rank)

    def train_batch_sampler(self):
        """Batches of this rank; ``batch_size`` / ``batch_seconds`` are per device (see samplers)."""
        cfg, ds = self.cfg, self.train_set
        assert ds is not None, "setup('fit') first"
        if cfg.speaker_weights:
            weights = [cfg.speaker_weights.get(s.speaker, 1.0) for s in ds.samples]
            sampler = WeightedBatchSampler(weights, cfg.batch_size, seed=cfg.seed)
        elif cfg.batch_seconds is not None:
            sampler = DurationBatchSampler(
                [s.duration_s for s in ds.samples], cfg.batch_seconds, shuffle=True, seed=cfg.seed
            )
        else:
            durations = [s.duration_s for s in ds.samples] if cfg.length_grouping else None
            sampler = RandomBatchSampler(len(ds), cfg.batch_size, seed=cfg.seed, durations=durations,
                                         group=cfg.length_grouping)
        return sampler.shard(*self._shard())

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train_set, batch_sampler=self.train_batch_sampler(), **self._loader_kwargs())

    def _eval_loader(self, ds: UASpeechAVDataset | None) -> DataLoader:
        assert ds is not None, "setup() first"
        # Sorted by duration so padded batches stay short; order does not affect the scores.
        sampler = DurationBatchSampler(
            [s.duration_s for s in ds.samples], max_seconds=float("inf"), shuffle=False,
            max_batch_size=max(self.cfg.batch_size, 16),
        ).shard(*self._shard())
        # Ranks may see a few utterances twice (padding); the module keeps one prediction per utterance.
        return DataLoader(ds, batch_sampler=sampler, **self._loader_kwargs())

    def val_dataloader(self) -> DataLoader:
        """The utterances that choose the checkpoint: B2, or the held-out training utterances."""
        return self._eval_loader(self.val_set)

    def test_dataloader(self) -> DataLoader:
        """Block B2, the block the scores are reported on."""
        return self._eval_loader(self.test_set)
