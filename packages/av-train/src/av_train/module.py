"""The LightningModule: it only trains and validates (data comes from the DataModule)."""

from __future__ import annotations

import math

import lightning as L
import torch
import torch.distributed as dist
import torchaudio.transforms as T

from av_eval import LEVELS, Prediction, score_predictions
from av_train.config import TrainingConfig
from av_train.data.targets import TargetEncoder
from av_train.model_io import model_inputs, predictions


class SpecAugment(torch.nn.Module):
    """Frequency and time masking of the log-mel (torchaudio), independent per sample."""

    def __init__(self, freq_mask_param: int, time_mask_param: int, num_freq_masks: int, num_time_masks: int):
        super().__init__()
        self.freq = torch.nn.ModuleList(T.FrequencyMasking(freq_mask_param, iid_masks=True) for _ in range(num_freq_masks))
        self.time = torch.nn.ModuleList(T.TimeMasking(time_mask_param, iid_masks=True) for _ in range(num_time_masks))

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        # feats: [B, n_mels, T] -> masks need [B, C, F, T] for per-sample (iid) masks
        x = feats.unsqueeze(1)
        for m in (*self.freq, *self.time):
            x = m(x)
        return x.squeeze(1)


class AVSRModule(L.LightningModule):
    """Audio-only or audio-visual Whisper fine-tuning with label-smoothed cross-entropy.

    ``new_parameter_names`` are the parameters added around Whisper (video encoder, fusion blocks,
    router); they get ``video_learning_rate``.
    """

    def __init__(self, model, targets: TargetEncoder, cfg: TrainingConfig, new_parameter_names: set[str] | None = None):
        super().__init__()
        self.model = model
        self.targets = targets
        self.cfg = cfg
        self.new_parameter_names = new_parameter_names or set()
        self.spec_augment = (
            SpecAugment(cfg.freq_mask_param, cfg.time_mask_param, cfg.num_freq_masks, cfg.num_time_masks)
            # (a lip reader's audio is silence: masking it would only make it not silence)
            if cfg.spec_augment and cfg.uses_audio else None
        )
        self.save_hyperparameters({"config": cfg.to_dict()})
        self._val_preds: list[Prediction] = []
        self.last_predictions: list[Prediction] = []
        self.last_report = None
        self._train_words: set[str] | None | bool = False  # False: not read yet
        from av_train.vocabulary import constraint_for, decode_words

        # closed-vocabulary decoding (decode_vocabulary); None = open
        self.constraint = constraint_for(targets.tokenizer, decode_words(cfg.decode_vocabulary), cfg.char_level)

    # --- forward ---------------------------------------------------------------------------------
    def forward(self, batch: dict, label_smoothing: float = 0.0, return_logits: bool = True):
        return self.model(
            **model_inputs(batch, self.cfg), decoder_input_ids=batch["decoder_input_ids"], labels=batch["labels"],
            label_smoothing=label_smoothing, return_logits=return_logits,
        )

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        if self.spec_augment is not None:
            batch = {**batch, "input_features": self.spec_augment(batch["input_features"])}
        # the loss only: the vocabulary projection skips the batch's padded label positions
        out = self(batch, label_smoothing=self.cfg.label_smoothing, return_logits=False)
        self.log("train/loss", out.loss, prog_bar=True, batch_size=len(batch["meta"]))
        if out.reliability_loss is not None:  # the reliability scorer's agreement loss (part of train/loss)
            self.log("train/reliability_loss", out.reliability_loss, batch_size=len(batch["meta"]))
        return out.loss

    # --- validation (the utterances that choose the checkpoint) and test (block B2) --------------
    def on_validation_epoch_start(self) -> None:
        self._val_preds = []

    def on_test_epoch_start(self) -> None:
        self._val_preds = []

    @torch.no_grad()
    def decode(self, batch: dict) -> list[str]:
        """Autoregressive decoding from the prompt, batched, with video when the run has it."""
        prompt = torch.tensor(self.targets.prompt, device=self.device).repeat(len(batch["meta"]), 1)
        ids = self.model.generate(
            **model_inputs(batch, self.cfg), decoder_input_ids=prompt, max_new_tokens=self.cfg.max_new_tokens,
            num_beams=self.cfg.num_beams, eos_token_id=self.targets.eot, constraint=self.constraint,
            loop_repeats=self.cfg.decoding_loop_repeats,
        )
        return [self.targets.decode(seq[prompt.shape[1]:].tolist()) for seq in ids]

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._eval_step(batch, "test")

    def _eval_step(self, batch: dict, prefix: str) -> None:
        out = self(batch)
        self.log(f"{prefix}/loss", out.loss, batch_size=len(batch["meta"]), sync_dist=True)
        if self.cfg.validation_decoding == "teacher_forced":
            pred_ids = out.logits.argmax(-1)
            hyps = []
            for seq, lab in zip(pred_ids, batch["labels"]):
                keep = lab != -100
                hyps.append(self.targets.decode(seq[keep].tolist()))
        else:
            hyps = self.decode(batch)
        self._val_preds.extend(predictions(batch["meta"], hyps, getattr(out, "route_probs", None),
                                           getattr(out, "video_reliability", None)))

    def _gather(self, items: list) -> list:
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            gathered: list = [None] * dist.get_world_size()
            dist.all_gather_object(gathered, items)
            return [x for part in gathered for x in part]
        return items

    def _training_words(self) -> set[str] | None:
        """Words of the training split (for seen / unseen scores), read once from the manifest."""
        if self._train_words is False:
            from av_eval import training_words

            try:
                self._train_words = training_words(self.cfg.uaspeech_root)
            except ValueError:  # no manifest (e.g. predictions made elsewhere): no seen / unseen scores
                self._train_words = None
        return self._train_words

    def on_validation_epoch_end(self) -> None:
        self._score("val")

    def on_test_epoch_end(self) -> None:
        self._score("test")

    def _score(self, prefix: str) -> None:
        """Score the epoch's predictions (``last_report``) and log them as ``<prefix>/...``."""
        preds = self._gather(self._val_preds)
        # The distributed sampler may repeat utterances to even out shards: keep one of each.
        preds = list({p.utt_id: p for p in preds}.values())
        if not preds:
            return
        report = score_predictions(preds, train_words=self._training_words())
        self.last_predictions, self.last_report = preds, report
        pre = prefix  # val: the utterances that choose the checkpoint; test: block B2 after training
        metrics = {f"{pre}/wer": report.total.wer, f"{pre}/cer": report.total.cer, f"{pre}/wsr": report.total.wsr}
        metrics.update({f"{pre}/{m}_macro": v for m, v in report.macro.items()})
        for level, s in report.per_level.items():
            metrics.update({f"{pre}/wer_{level}": s.wer, f"{pre}/cer_{level}": s.cer, f"{pre}/wsr_{level}": s.wsr})
        if self.cfg.per_speaker_metrics:
            metrics.update({f"{pre}_speaker/wer_{spk}": s.wer for spk, s in report.per_speaker.items()})
        # route/ and reliability/ are validation's names, test_route/ and test_reliability/ a test pass's; the gates
        # (the same weights in both) are logged by validation only
        extra = "" if prefix == "val" else f"{prefix}_"
        # From the de-duplicated predictions, so padded (repeated) utterances count once.
        routes = [(p.level, list(p.route_probs)) for p in preds if p.route_probs is not None]
        for level in LEVELS:
            probs = [p for lvl, p in routes if lvl == level]
            if probs:
                mean = torch.tensor(probs).mean(0).tolist()
                for name, v in zip(("enc_only", "dec_only", "both"), mean):
                    metrics[f"{extra}route/{level}_{name}"] = v
        # How far the reliability scorer trusted the (good) validation video, per level.
        for level in LEVELS:
            trust = [p.video_reliability for p in preds if p.level == level and p.video_reliability is not None]
            if trust:
                metrics[f"{extra}reliability/{level}"] = float(sum(trust) / len(trust))
        # The gates' openings (tanh g): a fused model whose gates stay near 0 ignores the video.
        gate_fn = getattr(self.model, "gate_values", None) if prefix == "val" else None
        for block, gates in (gate_fn() if gate_fn else {}).items():
            for branch, v in gates.items():
                metrics[f"gate/{block}.{branch}"] = v
        # Every rank computed the same numbers from the gathered predictions.
        self.log_dict(metrics, sync_dist=False, rank_zero_only=False)

    # --- optimisation ----------------------------------------------------------------------------
    def _adamw(self, groups: list[dict]) -> torch.optim.Optimizer:
        """AdamW with the fused kernel where it applies: on CPU it makes a short isolated-word step
        several times cheaper (benchmarks/models_bench.py). Not with fp16 loss scaling, where Lightning
        cannot clip gradients of a fused optimizer."""
        if not str(self.cfg.precision).startswith("16"):
            try:
                return torch.optim.AdamW(groups, fused=True)
            except (TypeError, RuntimeError):
                pass
        return torch.optim.AdamW(groups)

    def configure_optimizers(self):
        cfg = self.cfg
        decay, no_decay, new_decay, new_no_decay, gates = [], [], [], [], []
        for name, p in self.model.named_parameters():
            if not p.requires_grad:
                continue
            is_new = name in self.new_parameter_names
            if is_new and name.endswith(("attn_gate", "ff_gate")):
                gates.append(p)
                continue
            flat = p.ndim < 2 or name.endswith(".bias") or "gate" in name
            (new_no_decay if is_new and flat else new_decay if is_new else no_decay if flat else decay).append(p)
        lr_new = cfg.video_learning_rate or cfg.learning_rate
        groups = [
            {"params": decay, "lr": cfg.learning_rate, "weight_decay": cfg.weight_decay},
            {"params": no_decay, "lr": cfg.learning_rate, "weight_decay": 0.0},
            {"params": new_decay, "lr": lr_new, "weight_decay": cfg.weight_decay},
            {"params": new_no_decay, "lr": lr_new, "weight_decay": 0.0},
            # the gates, no weight decay (it would pull them back towards closed)
            {"params": gates, "lr": cfg.gate_learning_rate or lr_new, "weight_decay": 0.0},
        ]
        groups = [g for g in groups if g["params"]]
        if not groups:
            raise ValueError("no trainable parameters: check freeze_whisper / router_train_only / freeze_video_encoder")
        optimizer = self._adamw(groups)
        total = max(1, int(self.trainer.estimated_stepping_batches))
        warmup = min(cfg.warmup_steps, max(0, total - 1))

        def factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / (warmup + 1)
            if cfg.lr_schedule == "constant":
                return 1.0
            progress = min(1.0, (step - warmup) / max(1, total - warmup))
            if cfg.lr_schedule == "linear":
                return max(0.0, 1.0 - progress)
            return 0.5 * (1.0 + math.cos(math.pi * progress))

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
