"""Building the (audio-visual) Whisper of a run from its config, including warm starts and freezing."""

from __future__ import annotations

import logging
import pickle
from pathlib import Path

import torch

from av_fusion_models import AVWhisperConfig, AVWhisperForConditionalGeneration, freezing
from av_train.checkpoints import CheckpointError, load_state_dict_safely
from av_train.config import ConfigError, TrainingConfig, model_config, read_saved_config

log = logging.getLogger(__name__)


class ModelLoadError(RuntimeError):
    pass


def load_whisper(name: str, local_only: bool):
    """Whisper model + tokenizer from a hub name or a local folder."""
    from pathlib import Path

    from transformers import AutoTokenizer, WhisperForConditionalGeneration

    if local_only and not Path(name).is_dir() and (name.startswith((".", "/", "~")) or name.count("/") > 1):
        hint = ("run `av-cli demo` first (it writes demo_out/models/whisper-tiny.en)" if "demo_out" in name else
                "convert or download a Whisper there (`av-cli import-ct2 SRC DST`, `av-cli download-model NAME`)")
        raise ModelLoadError(f"model_name {name}: no such folder; {hint}, or set model_name to a Whisper folder")
    try:
        whisper = WhisperForConditionalGeneration.from_pretrained(name, local_files_only=local_only)
        tokenizer = AutoTokenizer.from_pretrained(name, local_files_only=local_only)
    except OSError as e:
        hint = (
            f"`av-cli download-model {name.split('/')[-1].removeprefix('whisper-')}` on a machine with network, "
            "or `av-cli import-ct2 SRC DST` to convert a local CTranslate2 Whisper, then set model_name to that folder"
        )
        raise ModelLoadError(f"cannot load Whisper {name!r} (local_model_only={local_only}): {e}\nFix: {hint}.") from None
    return whisper, tokenizer


def _strip(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


_VIDEO_PREFIXES = ("model.video_encoder.", "video_encoder.", "encoder.", "")


def load_video_encoder_weights(model, path: str) -> None:
    """Initialise the video front-end from ``path``: a safetensors file, a bare state dict or a
    Lightning checkpoint of an audio-visual run (keys ``model.video_encoder.*``). Loaded strictly,
    without executing code."""
    if model.video_encoder is None:
        raise ConfigError(f"video_encoder_ckpt {path} given but this model has no video encoder")
    if str(path).endswith(".safetensors"):
        from safetensors.torch import load_file

        try:
            state = load_file(path)
        except Exception as e:  # safetensors raises several types for a bad file
            raise CheckpointError(f"video_encoder_ckpt {path} is not a readable safetensors file: {e}") from None
    else:
        state = load_state_dict_safely(path)
    own = set(model.video_encoder.state_dict())
    for prefix in _VIDEO_PREFIXES:
        sub = _strip(state, prefix)
        if sub and set(sub) == own:
            try:
                model.video_encoder.load_state_dict(sub, strict=True)
            except RuntimeError as e:  # same names, other shapes (e.g. another resnet_width)
                first = str(e).splitlines()[1].strip() if len(str(e).splitlines()) > 1 else str(e)
                raise CheckpointError(
                    f"video_encoder_ckpt {path} does not match the {model.config.video_encoder} video encoder "
                    f"of this config (resnet_width {model.config.resnet_width}?): {first}"
                ) from None
            log.info("initialised the video encoder from %s", path)
            return
    example = sorted(state)[:3]
    raise CheckpointError(
        f"video_encoder_ckpt {path} does not match the {model.config.video_encoder} video encoder "
        f"(resnet_width etc.): its keys look like {example}, expected e.g. {sorted(own)[:3]} "
        f"(optionally under one of the prefixes {[p for p in _VIDEO_PREFIXES if p]})."
    )


class _lora_of:
    """Warm start from a LoRA run: its checkpoint names PEFT's layers. Adapters shaped as that run's config.yaml
    says are put on ``model`` for the load, then merged into plain weights (and every parameter trainable again:
    this run's own policy is applied afterwards). A plain checkpoint passes through untouched."""

    def __init__(self, ckpt: str, state: dict, model):
        from av_train.lora import has_lora_keys

        self.ckpt, self.model, self.active = Path(ckpt), model, has_lora_keys(state)

    def __enter__(self):
        if self.active:
            from av_train.config import load_config
            from av_train.lora import add_lora

            try:
                src = load_config(self.ckpt.parent / "config.yaml")
            except ConfigError as e:
                raise CheckpointError(f"{self.ckpt} holds LoRA adapters, and the shape of them is in its run's "
                                      f"config.yaml, which cannot be read: {e}") from None
            add_lora(self.model, src.lora_rank, src.lora_alpha, src.lora_dropout, src.lora_targets)
        return self

    def __exit__(self, *exc) -> None:
        if self.active:
            from av_train.lora import merge_lora

            merge_lora(self.model)
            for p in self.model.parameters():
                p.requires_grad_(True)


def _same_video_input(key: str, ckpt: Path, cfg: TrainingConfig) -> None:
    """Weights trained on clip-mean-removed frames read raw frames wrongly (and the reverse), and weights
    trained on 44-pixel frames read 88-pixel ones wrongly: the run that made ``ckpt`` says in its config.yaml
    what its video encoder saw (a checkpoint without one is taken as it comes)."""
    saved = ckpt.parent / "config.yaml"
    if not saved.is_file():
        return
    run = read_saved_config(saved)
    if run is None:
        raise CheckpointError(f"{key} {ckpt}: its run's {saved} is not valid YAML; it says which frames the video "
                              "encoder learnt from: restore it, or move the checkpoint away from it")
    for option, default in (("video_clip_norm", "none"), ("video_frame_size", None)):
        theirs, ours = run.get(option, default), getattr(cfg, option)
        if theirs != ours:
            shown = "null" if theirs is None else theirs
            raise CheckpointError(f"{key} {ckpt} was trained with {option}: {shown} ({saved}), this run has "
                                  f"{'null' if ours is None else ours}: set {option}: {shown} so its video "
                                  "encoder sees what it learnt")


def _check_shapes(ckpt, state: dict, model, fix: str, every_tensor: bool) -> None:
    """One line for weights of another shape (or, with ``every_tensor``, another set of tensors), instead of
    load_state_dict's dump of every mismatch."""
    from av_fusion_models.folder_checks import ModelFolderError, check_tensors

    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    found = {k: tuple(v.shape) for k, v in state.items() if every_tensor or k in expected}
    if not every_tensor:
        expected = {k: v for k, v in expected.items() if k in found}
    try:
        check_tensors(Path(ckpt), found, expected, fix=fix)
    except ModelFolderError as e:
        raise CheckpointError(str(e)) from None


def build_model(cfg: TrainingConfig):
    """-> (model, tokenizer, n_mels, names of parameters added around Whisper)."""
    whisper, tokenizer = load_whisper(cfg.model_name, cfg.local_model_only)
    audio_ckpt = cfg.resolve_seed_path(cfg.pt_audio_ckpt)
    if audio_ckpt:
        # The audio-only run's model is the same wrapper with no fusion: load it there (strictly),
        # which writes the fine-tuned weights into the shared Whisper modules.
        audio_model = AVWhisperForConditionalGeneration.from_whisper(whisper, AVWhisperConfig(fusion_location="none"))
        state = _strip(load_state_dict_safely(audio_ckpt), "model.")
        try:
            with _lora_of(audio_ckpt, state, audio_model):
                _check_shapes(audio_ckpt, state, audio_model, "Point it at an audio-only run of the same Whisper "
                              f"size as {cfg.model_name}.", every_tensor=True)
                audio_model.load_state_dict(state, strict=True)
        except RuntimeError as e:
            raise CheckpointError(
                f"pt_audio_ckpt {audio_ckpt} does not match {cfg.model_name}: {e}. "
                "Point it at an audio-only run of the same Whisper size."
            ) from None
        log.info("initialised Whisper from audio-only checkpoint %s", audio_ckpt)
    original = {id(p) for p in whisper.parameters()}
    try:
        model = AVWhisperForConditionalGeneration.from_whisper(whisper, model_config(cfg))
    except (FileNotFoundError, pickle.UnpicklingError, ValueError) as e:
        if cfg.video_encoder != "avhubert" or not cfg.video_encoder_ckpt:
            raise
        # AV-HuBERT's checkpoint is read while building the model: a missing, unsafe or mismatched file.
        raise CheckpointError(
            f"video_encoder_ckpt {cfg.video_encoder_ckpt} (AV-HuBERT {cfg.avhubert_size}): {e}. Point it at an "
            "official AV-HuBERT checkpoint of that size (self-supervised or fine-tuned), or set avhubert_size."
        ) from None
    # from_pretrained leaves Whisper in eval mode and Lightning keeps submodules' modes: train mode
    # here (freezing below may put a frozen video encoder back into eval mode on purpose).
    model.train()
    new_names = {n for n, p in model.named_parameters() if id(p) not in original}
    if cfg.video_encoder_ckpt and cfg.video_encoder == "resnet":
        # (AV-HuBERT's own checkpoint format is read by av_fusion_models when building the model.)
        encoder_ckpt = cfg.resolve_seed_path(cfg.video_encoder_ckpt)
        _same_video_input("video_encoder_ckpt", Path(encoder_ckpt), cfg)
        load_video_encoder_weights(model, encoder_ckpt)

    video_ckpt = cfg.resolve_seed_path(cfg.pt_video_ckpt)
    if video_ckpt:
        _same_video_input("pt_video_ckpt", Path(video_ckpt), cfg)
        state = _strip(load_state_dict_safely(video_ckpt), "model.")
        with _lora_of(video_ckpt, state, model):
            _check_shapes(video_ckpt, state, model, "It must come from an audio-visual run with the same Whisper, "
                          "video encoder and fusion blocks.", every_tensor=False)
            result = model.load_state_dict(state, strict=False)
        # a router or a reliability scorer new to this run starts fresh; anything else must come from the checkpoint
        fresh = [k for k in result.missing_keys if k.startswith(("router.", "reliability."))]
        missing = [k for k in result.missing_keys if k not in fresh]
        if missing or result.unexpected_keys:
            raise CheckpointError(
                f"pt_video_ckpt {video_ckpt} does not fit this model: missing {missing[:5]}, "
                f"unexpected {result.unexpected_keys[:5]}. It must come from an audio-visual run with the same "
                "Whisper, video encoder and fusion blocks."
            )
        log.info("initialised the audio-visual model from %s%s", video_ckpt,
                 f" ({len(fresh)} router / reliability parameters start fresh)" if fresh else "")

    if cfg.finetune == "lora":
        from av_train.lora import add_lora

        n = add_lora(model, cfg.lora_rank, cfg.lora_alpha, cfg.lora_dropout, cfg.lora_targets)
        log.info("LoRA: rank %s, alpha %s on %s Whisper layers (%s)", cfg.lora_rank, f"{cfg.lora_alpha:g}", n,
                 cfg.lora_targets)
    if cfg.freeze_token_embeddings:
        freezing.freeze_token_embeddings(model)
    if cfg.freeze_whisper:
        freezing.freeze_whisper(model)
        if cfg.unfreeze_mlp_layers:
            freezing.unfreeze_mlp_layers(model)
    if cfg.router_train_only:
        freezing.router_train_only(model)
        # Frozen also means fixed BatchNorm statistics: keep the video front-end in eval mode.
        freezing.freeze_video_encoder(model, keep_eval=True)
    if cfg.freeze_video_encoder:
        freezing.freeze_video_encoder(model)
    n_mels = whisper.config.num_mel_bins
    total, trainable = freezing.count_parameters(model)
    log.info("model: %.1fM parameters, %.1fM trainable (fusion: %s)", total / 1e6, trainable / 1e6,
             cfg.effective_fusion_location)
    return model, tokenizer, n_mels, new_names
