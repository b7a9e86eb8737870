"""Finding checkpoints in a folder and rebuilding each run's model from the config saved beside it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from av_train.checkpoints import CheckpointError, load_state_dict_safely
from av_train.config import TrainingConfig, load_config
from av_train.data.targets import TargetEncoder
from av_train.model_factory import build_model


@dataclass
class LoadedRun:
    """A trained model ready to decode, with what is needed to feed it."""

    checkpoint: Path
    cfg: TrainingConfig
    model: torch.nn.Module  # AVWhisperForConditionalGeneration, eval mode
    targets: TargetEncoder
    n_mels: int

    @property
    def name(self) -> str:
        stem = self.checkpoint.stem
        return self.cfg.train_id if stem == "best" else f"{self.cfg.train_id}_{stem}"


def find_checkpoints(folder: str | Path) -> list[Path]:
    """Every run under ``folder`` (searched recursively): its ``best.ckpt``, else its ``last.ckpt``,
    for folders that hold the ``config.yaml`` av-train saves beside them. A .ckpt path is itself."""
    folder = Path(folder)
    if folder.is_file():
        return [folder] if folder.suffix == ".ckpt" else []
    found = []
    for cfg_file in sorted(folder.rglob("config.yaml")):
        for name in ("best.ckpt", "last.ckpt"):
            if (cfg_file.parent / name).is_file():
                found.append(cfg_file.parent / name)
                break
    return found


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def load_run(checkpoint: str | Path, data: str | Path | None = None, device: torch.device | str | None = None,
             config: TrainingConfig | None = None) -> LoadedRun:
    """Rebuild the model of ``checkpoint`` from ``config.yaml`` beside it (or ``config``) and load its
    weights with ``torch.load(weights_only=True)`` (no code from the file runs).

    Warm-start paths (``pt_audio_ckpt`` / ``pt_video_ckpt``) are ignored: every weight comes from the
    checkpoint itself, strictly. ``data`` replaces the run's ``uaspeech_root``.
    """
    from dataclasses import replace

    checkpoint = Path(checkpoint)
    if config is None:
        cfg_file = checkpoint.parent / "config.yaml"
        if not cfg_file.is_file():
            raise FileNotFoundError(
                f"{checkpoint}: no config.yaml beside it; av-train saves the resolved config there. "
                "Copy the run's config.yaml next to the checkpoint (or pass the config explicitly)."
            )
        config = load_config(cfg_file)
    # Warm-start files (audio / video checkpoints, the video encoder's pretrained weights) are not read: the
    # checkpoint holds every weight, and they may not exist where the run is evaluated.
    cfg = replace(config, pt_audio_ckpt=None, pt_video_ckpt=None, video_encoder_ckpt=None, freeze_whisper=False,
                  unfreeze_mlp_layers=False, router_train_only=False, freeze_video_encoder=False)
    if data is not None:
        cfg = replace(cfg, uaspeech_root=str(data))
    state = load_state_dict_safely(checkpoint)
    model, tokenizer, n_mels, _ = build_model(cfg)
    # The LightningModule holds the network as `model`; other entries (none today) are not ours.
    model_state = {k.removeprefix("model."): v for k, v in state.items() if k.startswith("model.")}
    try:
        model.load_state_dict(model_state, strict=True)
    except RuntimeError as e:
        raise CheckpointError(
            f"{checkpoint} does not fit the model described by its config.yaml ({cfg.model_name}, "
            f"fusion {cfg.effective_fusion_location}): {str(e)[:500]}"
        ) from None
    if cfg.finetune == "lora":  # adapters folded into plain weights: the same outputs, no PEFT layers downstream
        from av_train.lora import merge_lora

        merge_lora(model)
    device = torch.device(device) if device is not None else default_device()
    model.to(device).eval()
    return LoadedRun(checkpoint, cfg, model, TargetEncoder(tokenizer, char_level=cfg.char_level), n_mels)
