"""The one typed training configuration, loaded from YAML with strict checking.

Unknown keys, wrong types and contradictory combinations are errors that name the key (and the
file) and suggest the nearest valid key (the value-against-annotation checks: ``av_train.config_types``). The
resolved config is saved next to every checkpoint. docs/CONFIG.md documents every field; ``describe_fields()``
produces that table.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from av_train.config_types import type_name, type_ok


class ConfigError(ValueError):
    """A configuration problem, phrased for the person who wrote the YAML."""


@dataclass
class TrainingConfig:
    # --- run identity and data -----------------------------------------------------------------
    train_name: str = "uaspeech"
    """Experiment name: TensorBoard logs go to ``results/<train_name>/<train_id>/``."""
    train_id: str = "run"
    """Run name: checkpoints go to ``weights/checkpoint/<train_id>/``. Multi-seed appends ``_<N>``."""
    seed: int = 1
    """Seed index of this run (``{seed}`` in checkpoint paths is replaced by it)."""
    uaspeech_root: str = ""
    """Prepared tree (docs/LAYOUT.md section 2) with ``manifest.jsonl``."""
    output_root: str = "."
    """Folder under which ``weights/`` and ``results/`` are written."""
    speakers: list[str] | None = None
    """Speakers to use (default: every speaker in the manifest)."""
    microphones: list[str] = field(default_factory=lambda: ["M5"])
    """Microphone channels to train on (each channel of an utterance is one training sample); the
    first one is used for validation and test."""
    vocabulary: Literal["all", "common", "seen", "unseen"] = "all"
    """``common``: only the 155 words shared by all blocks (digits, letters, commands, common words).
    ``seen`` / ``unseen``: train on everything, test only on B2 words that do / do not occur in B1 or B3
    (the usual unseen-word evaluation; see docs/UASpeech.md)."""
    allow_config_change: bool = False
    """Continue a run whose folder holds checkpoints of another config (the keys are printed). Without it such a
    training is refused: only epoch / step limits and logging settings may differ when resuming."""
    max_train_samples: int | None = None
    """Cap the training set (after shuffling with the seed); for quick experiments."""

    # --- model -----------------------------------------------------------------------------------
    modality: Literal["audio", "audio_visual", "video"] = "audio"
    """``audio``: Whisper alone. ``audio_visual``: Whisper + video encoder + gated cross-attention to the lips.
    ``video``: lip reading, the audio-visual model that never hears the audio (its audio input is silence of
    the video's length, as for a sample whose audio is dropped); its checkpoint can initialise an audio-visual
    run (``pt_video_ckpt``). See docs/LIP_READING.md."""
    model_name: str = "openai/whisper-small"
    """Whisper hub name (e.g. ``openai/whisper-small``) or a local HF model folder."""
    local_model_only: bool = False
    """Load Whisper from the local Hugging Face cache / folder only (no network)."""
    char_level: bool = True
    """Character-level targets ("t h r e e") instead of words."""
    cut_encoder_positions: bool = True
    """Feed clips padded to the longest in the batch (Whisper's positional table cut to the input)
    instead of padding every clip to 30 s."""
    fusion_location: Literal["encoder", "decoder", "both"] | None = None
    """Where gated cross-attention to video sits (audio_visual only; default ``decoder``)."""
    video_encoder: Literal["resnet", "avhubert"] = "resnet"
    """Video front-end: ``resnet`` (3D conv + ResNet-18 on the 88x88 lip crops, trained from pixels) or
    ``avhubert``."""
    avhubert_size: Literal["base", "large", "tiny"] = "base"
    """AV-HuBERT size when ``video_encoder: avhubert`` (Base: 12 layers, 768-d; Large: 24 layers, 1024-d);
    its official fairseq checkpoint goes in ``video_encoder_ckpt``. ``tiny`` is a randomly initialised test size."""
    resnet_width: int = 64
    """Base width of the ResNet-18 video trunk (64 = AV-HuBERT's front-end; smaller for CPU demos)."""
    video_encoder_ckpt: str | None = None
    """Weights for the video front-end. ``resnet``: a safetensors file, a state dict or an audio-visual run's
    checkpoint (keys ``model.video_encoder.*``, e.g. a lip-reading run's; ``{seed}`` -> seed index). ``avhubert``: an official AV-HuBERT fairseq checkpoint,
    self-supervised or fine-tuned. Loaded strictly, without executing code."""
    gate_init: float = 0.0
    """Initial value g0 of every gate of the gated cross-attention blocks (each adds tanh(g0) x its output).
    0 keeps the model exactly Whisper at the first step, but the video path then gets no gradient until the
    gates move; a small value (0.1) lets a video encoder trained from scratch learn from the first step."""
    gate_learning_rate: float | None = None
    """Learning rate of the gates alone (default: video_learning_rate, else learning_rate)."""
    freeze_video_encoder: bool = False
    """Keep the video front-end fixed (weights and BatchNorm statistics)."""
    video_positional: bool = True
    """Add sinusoidal time positions (on Whisper's 50 Hz axis) to the projected video features."""
    video_clip_norm: Literal["none", "mean"] = "none"
    """What the video encoder sees of each clip: ``none`` (the normalised frames) or ``mean`` (each frame minus
    the clip's mean frame: what moves, not the speaker's face and lighting). A run started from a lip reader
    (``pt_video_ckpt``) must use the lip reader's setting."""
    video_frame_size: int | None = None
    """Resize the video frames to this side (area averaging) before the video encoder; null keeps the 88 x 88
    ROI. 44 quarters the ResNet's work per frame. A run started from a lip reader must use its setting."""
    xattn_heads: int | None = None
    """Heads of the gated cross-attention (default: Whisper's attention heads)."""
    pt_audio_ckpt: str | None = None
    """Audio-only checkpoint that initialises the (AV) Whisper backbone. ``{seed}`` -> seed index."""
    pt_video_ckpt: str | None = None
    """Audio-visual checkpoint to start from (resume / soft-routing init). ``{seed}`` -> seed index."""
    freeze_whisper: bool = False
    """Freeze Whisper's own weights (the fusion blocks, video encoder and router still train)."""
    freeze_token_embeddings: bool = False
    """Keep Whisper's token embedding fixed, and with it the output projection tied to it: the vocabulary's
    output vectors stay Whisper's (a fine-tune on 455 words cannot move the others) and the 51,864 x d_model
    table gets no gradient or AdamW update (a cheaper step; docs/LIP_READING.md 4g)."""
    unfreeze_mlp_layers: bool = False
    """With freeze_whisper: also train the encoder and decoder feed-forward layers (fc1, fc2)."""
    finetune: Literal["full", "lora"] = "full"
    """How Whisper's own weights train: ``full`` (all of them) or ``lora`` (frozen, plus low-rank adapters with
    PEFT; merged into plain weights on export and evaluation). Fusion blocks, video encoder and router train in
    full either way."""
    lora_rank: int = 8
    """finetune: lora: rank r of each adapter."""
    lora_alpha: float = 16.0
    """finetune: lora: scale numerator (the update is alpha / r * B A)."""
    lora_dropout: float = 0.05
    """finetune: lora: dropout on the adapters' input."""
    lora_targets: Literal["attention", "attention_mlp"] = "attention"
    """finetune: lora: adapt the attention projections (q, k, v, out of self- and cross-attention), or those
    and the feed-forward layers (fc1, fc2)."""
    soft_fusion_routing: bool = False
    """A FusionRouter predicts per sample P(encoder only), P(decoder only), P(both) and scales the encoder and
    decoder fusion (fusion blocks in both)."""
    routing_hidden_dim: int = 256
    """Hidden size of the FusionRouter MLP."""
    routing_dropout: float = 0.1
    """Dropout inside the FusionRouter."""
    routing_use_level: bool = False
    """Also feed the speaker's intelligibility level to the router."""
    router_emits_gates: bool = False
    """Ablation (docs/GATING_AND_ROUTING.md): the fusion blocks have no learned gates and the router's encoder /
    decoder scale is the gate of every block on that side; the model is no longer plain Whisper at step 0."""
    router_train_only: bool = False
    """Train only the FusionRouter; everything else is frozen (video encoder BatchNorm statistics included).
    Use with pt_video_ckpt from an AV-both run."""
    video_dropout: float = 0.0
    """Probability of dropping a sample's video in training (modality dropout)."""
    audio_dropout: float = 0.0
    """Probability of replacing a sample's audio by silence in training (modality dropout)."""
    video_frozen_prob: float = 0.0
    """Probability of holding a training sample's first lip frame over the whole clip (a face that does not move),
    its audio kept: the model learns to fall back on the audio when the lips carry no word."""
    video_mismatch_prob: float = 0.0
    """Probability of giving a training sample the lips of another sample of its batch, its audio kept: the model
    learns not to follow lips that contradict the audio. With the four others: exclusive outcomes, sum <= 1."""
    video_fault_prob: float = 0.0
    """Probability of one lip-video fault per training sample, its audio kept: wrong lips, a still face, an offset
    of 80-480 ms, occlusion, blur, held frames or black frames (drawn from video_fault_classes; docs/
    GATING_AND_ROUTING.md 6)."""
    video_fault_classes: list[str] | None = None
    """The faults video_fault_prob draws from (null: all of wrong, frozen, shift, occlusion, blur, low_fps, black)."""
    video_reliability: bool = False
    """A per-clip video reliability scorer: does the lip video agree with the sound? Its score in (0, 1) scales
    every fused block, so the model falls back on the audio when the lips do not belong to it."""
    reliability_loss_weight: float = 1.0
    """Weight of the reliability scorer's agreement loss (against the labels of the training faults)."""
    reliability_cutoff: float = 0.0
    """At inference, a clip whose reliability is below this value is recognised from the audio alone."""
    reliability_content_negatives: bool = False
    """Train the reliability scorer on what the lips say too: wrong lips stretched to the clip's length and the other
    clips' lips as negatives (measured in docs/GATING_AND_ROUTING.md 6: fewer wrong lips followed, some gain lost)."""
    reliability_audio_margin: float = 0.0
    """At inference, the audio check: where the audio alone prefers its own word to the one the lips lead to by more
    than this many nats, the audio's word is kept (the lips are overruled, reliability 0). 0: off. Costs a second,
    audio-only decoding pass."""

    # --- optimisation ----------------------------------------------------------------------------
    learning_rate: float = 1.0e-4
    """Peak learning rate (AdamW) of Whisper's weights (and of everything when video_learning_rate is unset)."""
    video_learning_rate: float | None = None
    """Learning rate of newly added parts (video encoder, fusion blocks, router); default: learning_rate."""
    weight_decay: float = 0.01
    """AdamW weight decay (not applied to biases, norms and gates)."""
    lr_schedule: Literal["cosine", "linear", "constant"] = "cosine"
    """Decay after the warmup, per optimizer step, to 0 at the last step (or constant)."""
    warmup_steps: int = 100
    """Linear warmup steps."""
    batch_size: int = 8
    """Clips per batch and per device (ignored when batch_seconds is set). Effective batch = batch_size x
    devices x num_nodes x accumulate_grad_batches."""
    batch_seconds: float | None = None
    """Duration budget per batch in padded seconds (batch size then varies); overrides batch_size."""
    length_grouping: int = 0
    """With ``batch_size``: each epoch, shuffle the clips, sort each run of ``length_grouping`` x batch_size of
    them by duration and cut it into batches (batch order shuffled). Batches then hold clips of similar length,
    so less of each is padding (UASpeech words: 1.7x the audio without, 1.14x with 8), while their membership
    still changes every epoch. 0: plain shuffled batches."""
    max_epochs: int = 20
    """Upper bound on training epochs (early stopping may end sooner)."""
    max_steps: int = -1
    """Upper bound on optimizer steps (-1: none)."""
    accumulate_grad_batches: int = 1
    """Batches whose gradients are summed before each optimizer step."""
    gradient_clip_val: float | None = 1.0
    """Clip the gradient norm to this value (null: no clipping)."""
    precision: str = "32-true"
    """Lightning precision: ``32-true``, ``bf16-mixed`` or ``16-mixed`` (GPU), or ``auto`` (bf16 mixed
    on GPUs that support it, 16-bit mixed on older GPUs, 32-bit on CPU)."""
    deterministic: bool = True
    """Deterministic kernels (``torch.use_deterministic_algorithms``, warn-only for ops without one): the same
    seed, data and thread count give bit-identical weights. Without it, multi-threaded CPU reductions make
    runs differ from the first step (by ~1e-6 after an epoch, measured), which early stopping and decoding
    can turn into different scores. Turn off only for speed on GPUs where it costs."""
    label_smoothing: float = 0.1
    """Label smoothing of the cross-entropy loss."""
    spec_augment: bool = True
    """SpecAugment on the training log-mel (torchaudio frequency and time masks, independent per sample)."""
    freq_mask_param: int = 10
    """Maximum width (mel bins) of each frequency mask."""
    time_mask_param: int = 20
    """Maximum width (frames of 10 ms) of each time mask."""
    num_freq_masks: int = 2
    """Frequency masks per clip."""
    num_time_masks: int = 2
    """Time masks per clip."""
    noise_prob: float = 0.0
    """Probability of adding noise (``noise_type``) to a training clip at an SNR drawn from noise_snr_db."""
    noise_type: Literal["white", "babble", "mixed"] = "white"
    """Training noise: ``white``, ``babble`` (the sum of ``noise_talkers`` other training utterances, never test
    ones: speech-like noise, the kind that hurts a recognizer most) or ``mixed`` (each noisy clip draws one of the
    two). Deterministic per (seed, epoch, clip)."""
    noise_talkers: int = 4
    """Other training utterances summed into babble noise."""
    noise_snr_db: list[float] = field(default_factory=lambda: [0.0, 20.0])
    """[low, high] range of the noise SNR in dB (uniform)."""
    speaker_weights: dict[str, float] | None = None
    """Per-speaker sampling weights (WeightedRandomSampler); missing speakers weigh 1."""
    early_stopping_patience: int = 5
    """Validations without improvement of early_stopping_metric before training stops (0: no early stopping)."""
    early_stopping_metric: str = "val/wer"
    """Metric that selects best.ckpt and drives early stopping (``val/wer``, ``val/cer``, ``val/wsr``
    (maximised), ``val/wer_macro``, ``val/wer_<level>``, ``val/loss``), measured on the utterances that
    model_selection names."""
    model_selection: Literal["test", "heldout"] = "test"
    """Which utterances are validated on, and so choose best.ckpt and stop training early. ``test``: block B2, the
    block the scores are reported on (as the original system and the field do; the scores are then optimistic).
    ``heldout``: a held-out part of the training blocks B1 + B3 (heldout_fraction of each speaker's utterances,
    every microphone of them out of training; validated on the first microphone); best.ckpt is then scored on B2
    once, after training (``predictions_B2.jsonl``, ``metrics.*`` as with ``test``; the held-out scores go to
    ``predictions_heldout.jsonl``, ``metrics_heldout.*``). See docs/METRICS.md, "Which utterances choose the checkpoint"."""
    heldout_fraction: float = 0.1
    """model_selection: heldout: share of each speaker's B1 + B3 utterances held out of training, in (0, 0.5] (at
    least one per speaker; which ones is drawn from ``seed``)."""

    # --- validation and decoding -----------------------------------------------------------------
    validate_model: bool = False
    """Run validation only (from best.ckpt when it exists, else the initial weights; with model_selection: heldout,
    the held-out utterances and then B2)."""
    validation_decoding: Literal["teacher_forced", "autoregressive"] = "autoregressive"
    """Decoding during per-epoch validation: ``teacher_forced`` (argmax given the true prefix; fast) or
    ``autoregressive`` (generation as in use). The final scores after training are always autoregressive."""
    per_speaker_metrics: bool = False
    """Also log per-speaker WER each epoch and print a per-speaker WER / CER / WSR table at the end."""
    max_new_tokens: int = 40
    """Longest generated transcript (tokens) in autoregressive decoding."""
    num_beams: int = 1
    """Beam size of autoregressive decoding (1: greedy)."""
    loop_repeats: int = 4
    """A transcript that ends in this many back-to-back copies of one token sequence ("yes yes yes yes") is a
    decoding loop, not speech: it is cut to one copy and ended (greedy search stops there). Whisper loops
    on short inputs, most of all with word-level targets (docs/RESULTS.md); 0 turns the cut off. Used by
    validation, ``av-cli eval``, ``noise-eval`` and the exported model."""
    decode_vocabulary: str = "open"
    """Words autoregressive decoding may produce: ``open`` (anything, as Whisper), ``uaspeech`` (the corpus's
    closed set: every word of its word list, 449 distinct spellings of the 455 entries) or the path of a text
    file with one word or phrase per line. Used by validation, ``av-cli eval``, ``noise-eval`` and the
    exported model (``av-cli transcribe``); teacher-forced validation ignores it."""
    check_val_every_n_epoch: int = 1
    """Validate (and write best / last checkpoints) every n epochs."""

    # --- hardware --------------------------------------------------------------------------------
    accelerator: str = "auto"
    """Lightning accelerator: ``auto``, ``cpu``, ``gpu``/``cuda``, ``mps``."""
    devices: int | str = "auto"
    """Devices per node (``auto``, a number, or a list such as ``"0,1"``); more than one trains with DDP."""
    num_nodes: int = 1
    """Machines for multi-node DDP (launch one process per node, e.g. with torchrun or SLURM)."""
    strategy: str = "auto"
    """Lightning strategy: ``auto``, ``ddp`` (several devices / nodes), ``ddp_find_unused_parameters_true``,
    ..."""
    num_workers: int = 2
    """DataLoader worker processes per device."""
    cache_features: bool = True
    """Cache each clip's clean log-mel in memory after the first epoch (with noise: for the epochs a clip stays clean)."""
    log_every_n_steps: int = 10
    """TensorBoard logging interval of the training loss and learning rate."""
    progress_bar: bool = True
    """Show progress bars."""

    # ---------------------------------------------------------------------------------------------
    @property
    def uses_video(self) -> bool:
        """The model has a video branch (audio-visual or lip reading)."""
        return self.modality in ("audio_visual", "video")

    @property
    def uses_audio(self) -> bool:
        return self.modality != "video"

    @property
    def effective_fusion_location(self) -> str:
        if not self.uses_video:
            return "none"
        if self.soft_fusion_routing:
            return "both"
        return self.fusion_location or "decoder"

    @property
    def decoding_loop_repeats(self) -> int | None:
        """``loop_repeats`` as the decoders take it: None turns the cut off (0 in a config)."""
        return self.loop_repeats or None

    def resolve_seed_path(self, path: str | None) -> str | None:
        return None if path is None else path.replace("{seed}", str(self.seed))

    @property
    def checkpoint_dir(self) -> Path:
        return Path(self.output_root) / "weights" / "checkpoint" / self.train_id

    @property
    def results_dir(self) -> Path:
        return Path(self.output_root) / "results" / self.train_name / self.train_id

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def save(self, path: str | Path) -> Path:
        from av_common.files import atomic_write_text

        return atomic_write_text(path, yaml.safe_dump(self.to_dict(), sort_keys=False))


PRECISIONS = ("auto", "32-true", "32", "bf16-mixed", "16-mixed", "bf16-true", "16-true", "64-true")
_FIELDS = {f.name: f for f in dataclasses.fields(TrainingConfig)}


def _nearest(name: str) -> str:
    close = difflib.get_close_matches(name, list(_FIELDS), n=1, cutoff=0.5)
    return f" Did you mean {close[0]!r}?" if close else ""


def from_dict(data: dict[str, Any], source: str = "config") -> TrainingConfig:
    """Build and check a config from a mapping (``source`` names the file in errors)."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be a mapping of option: value")
    hints = typing.get_type_hints(TrainingConfig)
    values: dict[str, Any] = {}
    for key, value in data.items():
        if key not in _FIELDS:
            raise ConfigError(f"{source}: unknown option {key!r}.{_nearest(str(key))} See docs/CONFIG.md.")
        ok, coerced = type_ok(value, hints[key])
        if not ok:
            raise ConfigError(
                f"{source}: option {key!r} must be {type_name(hints[key])}, got {value!r} ({type(value).__name__})"
            )
        values[key] = coerced
    cfg = TrainingConfig(**values)
    check(cfg, source, explicit=set(values))
    return cfg


def check(cfg: TrainingConfig, source: str = "config", explicit: set[str] | None = None) -> None:
    """Reject contradictory combinations."""
    explicit = explicit if explicit is not None else set()
    av_only = [
        "fusion_location", "soft_fusion_routing", "routing_use_level", "router_emits_gates", "router_train_only",
        "video_encoder_ckpt",
        "freeze_video_encoder", "pt_video_ckpt", "video_dropout", "audio_dropout", "gate_init", "gate_learning_rate",
        "video_clip_norm", "video_frame_size", "video_frozen_prob", "video_mismatch_prob", "video_fault_prob",
        "video_fault_classes", "video_reliability", "reliability_loss_weight", "reliability_cutoff",
        "reliability_content_negatives", "reliability_audio_margin",
    ]
    if not cfg.uses_video:
        for key in av_only:
            default = _FIELDS[key].default
            if key in explicit and getattr(cfg, key) != default and getattr(cfg, key) not in (None, False, 0.0):
                raise ConfigError(
                    f"{source}: {key!r} is an audio-visual option but modality is 'audio'. "
                    "Set modality: audio_visual or remove the option."
                )
    if not cfg.uses_audio:
        for key, why in (("audio_dropout", "there is no audio to drop"), ("video_dropout", "the video is the only input"),
                         ("video_frozen_prob", "there is no audio to fall back on"),
                         ("video_mismatch_prob", "there is no audio to fall back on"),
                         ("video_fault_prob", "there is no audio to fall back on"),
                         ("video_reliability", "there is no audio to agree with"),
                         ("noise_prob", "the audio is never heard"), ("soft_fusion_routing", "there is no audio to route")):
            if getattr(cfg, key):
                raise ConfigError(f"{source}: {key!r} makes no sense with modality: video ({why}); remove it.")
    if cfg.soft_fusion_routing and cfg.fusion_location not in (None, "both"):
        raise ConfigError(
            f"{source}: soft_fusion_routing wraps encoder AND decoder layers; fusion_location must be 'both' or unset, "
            f"got {cfg.fusion_location!r}"
        )
    if (cfg.routing_use_level or cfg.router_train_only or cfg.router_emits_gates) and not cfg.soft_fusion_routing:
        key = next(k for k in ("routing_use_level", "router_train_only", "router_emits_gates") if getattr(cfg, k))
        raise ConfigError(f"{source}: {key!r} needs soft_fusion_routing: true")
    if cfg.finetune == "lora":
        if cfg.freeze_whisper or cfg.router_train_only:
            key = "freeze_whisper" if cfg.freeze_whisper else "router_train_only"
            raise ConfigError(f"{source}: finetune: lora already freezes Whisper's weights (it trains adapters); "
                              f"remove {key!r} or use finetune: full")
        if cfg.lora_rank < 1 or cfg.lora_alpha <= 0 or not 0.0 <= cfg.lora_dropout < 1.0:
            raise ConfigError(f"{source}: LoRA needs lora_rank >= 1, lora_alpha > 0 and lora_dropout in [0, 1)")
    else:
        # (a saved config.yaml lists every option: only a value other than the default is a contradiction)
        set_lora = [k for k in ("lora_rank", "lora_alpha", "lora_dropout", "lora_targets")
                    if k in explicit and getattr(cfg, k) != _FIELDS[k].default]
        if set_lora:
            raise ConfigError(f"{source}: {set_lora[0]!r} applies to finetune: lora only; set finetune: lora or "
                              "remove it")
    if cfg.unfreeze_mlp_layers and not cfg.freeze_whisper:
        raise ConfigError(f"{source}: 'unfreeze_mlp_layers' only makes sense with freeze_whisper: true")
    _check_model_options(cfg, source)
    for key in ("noise_prob", "label_smoothing"):
        if not 0.0 <= getattr(cfg, key) < 1.0:
            raise ConfigError(f"{source}: {key!r} must be in [0, 1), got {getattr(cfg, key)}")
    if len(cfg.noise_snr_db) != 2 or cfg.noise_snr_db[0] > cfg.noise_snr_db[1]:
        raise ConfigError(f"{source}: 'noise_snr_db' must be [low, high] in dB, got {cfg.noise_snr_db}")
    if cfg.noise_talkers < 1:
        raise ConfigError(f"{source}: 'noise_talkers' must be >= 1")
    if not cfg.microphones:
        raise ConfigError(f"{source}: 'microphones' must name at least one channel, e.g. [M5]")
    if cfg.speakers is not None and not cfg.speakers:  # [] would silently mean "every speaker"
        raise ConfigError(f"{source}: 'speakers' is an empty list; name at least one speaker (e.g. [M12, F02]) or "
                          "remove the option to use every speaker")
    if cfg.batch_size < 1:
        raise ConfigError(f"{source}: 'batch_size' must be >= 1")
    if cfg.batch_seconds is not None and cfg.batch_seconds <= 0:
        raise ConfigError(f"{source}: 'batch_seconds' must be > 0")
    if cfg.length_grouping < 0:
        raise ConfigError(f"{source}: 'length_grouping' must be 0 (off) or a number of batches >= 1")
    if cfg.length_grouping and (cfg.batch_seconds is not None or cfg.speaker_weights):
        other = "batch_seconds (which already groups clips by duration)" if cfg.batch_seconds is not None \
            else "speaker_weights (whose batches are drawn with replacement)"
        raise ConfigError(f"{source}: 'length_grouping' groups the batches of batch_size; it cannot be combined "
                          f"with {other}. Remove one of the two.")
    if not cfg.uaspeech_root:
        raise ConfigError(f"{source}: 'uaspeech_root' is required: the prepared corpus folder with manifest.jsonl")
    if cfg.precision not in PRECISIONS:
        close = difflib.get_close_matches(cfg.precision, PRECISIONS, n=1, cutoff=0.3)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"{source}: 'precision' must be one of {list(PRECISIONS)}, got {cfg.precision!r}.{hint}")
    if cfg.num_beams < 1:
        raise ConfigError(f"{source}: 'num_beams' must be >= 1")
    if cfg.loop_repeats == 1 or cfg.loop_repeats < 0:
        raise ConfigError(f"{source}: 'loop_repeats' must be 0 (off) or >= 2 copies, got {cfg.loop_repeats}")
    for key in ("train_id", "train_name"):
        name = getattr(cfg, key)
        # a name, not a path: `..` or a slash would put checkpoints outside output_root or into another run
        if not name or name in (".", "..") or "/" in name or "\\" in name or name != name.strip():
            raise ConfigError(f"{source}: {key!r} must be a plain folder name (no '/', '..' or surrounding spaces), "
                              f"got {name!r}")
    if not cfg.validate_model and (cfg.max_epochs == 0 or cfg.max_epochs < -1
                                   or (cfg.max_epochs == -1 and cfg.max_steps < 1)):
        raise ConfigError(f"{source}: 'max_epochs' is {cfg.max_epochs} (max_steps {cfg.max_steps}): nothing would be "
                          "trained and the untrained model reported as the result; set max_epochs >= 1 (or -1 with "
                          "max_steps >= 1), or validate_model: true to score a model without training")
    for key in ("learning_rate", "video_learning_rate", "gate_learning_rate"):
        value = getattr(cfg, key)
        if value is not None and not (math.isfinite(value) and value > 0):
            raise ConfigError(f"{source}: {key!r} must be a positive number, got {value}")
    if cfg.weight_decay < 0:
        raise ConfigError(f"{source}: 'weight_decay' must be >= 0, got {cfg.weight_decay}")
    if not cfg.decode_vocabulary:
        raise ConfigError(f"{source}: 'decode_vocabulary' must be open, uaspeech or a word-list file")
    if not 0.0 < cfg.heldout_fraction <= 0.5:
        raise ConfigError(f"{source}: 'heldout_fraction' must be in (0, 0.5] (a share of each speaker's training "
                          f"utterances), got {cfg.heldout_fraction}")
    if (cfg.model_selection != "heldout" and "heldout_fraction" in explicit
            and cfg.heldout_fraction != _FIELDS["heldout_fraction"].default):
        raise ConfigError(f"{source}: 'heldout_fraction' applies to model_selection: heldout only; set "
                          "model_selection: heldout or remove it")


# the option of a TrainingConfig that sets each AVWhisperConfig field named differently (the others share a name)
_MODEL_FIELD_KEYS = {"xattn_gate_init": "gate_init", "avhubert_checkpoint": "video_encoder_ckpt", "video_only": "modality"}


def model_config(cfg: TrainingConfig):
    """The `AVWhisperConfig` of the model a run trains (its rules reject bad model options: see `check`): every
    model field takes the option of the same name, or the one `_MODEL_FIELD_KEYS` names."""
    import dataclasses

    from av_fusion_models.configuration import AVWhisperConfig

    derived = {"fusion_location": cfg.effective_fusion_location, "video_only": not cfg.uses_audio,
               "avhubert_checkpoint": cfg.video_encoder_ckpt if cfg.video_encoder == "avhubert" else None,
               "xattn_gate_init": cfg.gate_init}
    values = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(AVWhisperConfig) if f.name in _FIELDS}
    return AVWhisperConfig(**{**values, **derived})


def _check_model_options(cfg: TrainingConfig, source: str) -> None:
    """The model options are checked once, by the model config's own rules; the error names the YAML keys."""
    try:
        model_config(cfg)
    except ValueError as e:
        message = str(e)
        for model_field, key in _MODEL_FIELD_KEYS.items():
            message = message.replace(model_field, key)
        raise ConfigError(f"{source}: {message}") from None


def read_saved_config(path: Path) -> dict[str, Any] | None:
    """The raw mapping of a run's saved config.yaml, unvalidated (a run from an older toolkit still reads);
    None when the file is not a YAML mapping. The caller says what that means for its own job."""
    try:
        saved = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except yaml.YAMLError:
        return None
    return saved if isinstance(saved, dict) else None


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> TrainingConfig:
    """Read a YAML config; relative ``uaspeech_root``/``output_root`` stay relative to the CWD."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"no config file at {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f":{mark.line + 1}:{mark.column + 1}" if mark is not None else ""
        what = " ".join(str(getattr(e, "problem", None) or e).split())
        raise ConfigError(f"{path}{where}: not valid YAML ({what}); fix the line or start from a file in configs/") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a text file; a YAML config was expected") from None
    if overrides:
        data = {**data, **overrides}
    return from_dict(data, source=str(path))


def describe_fields() -> str:
    """Markdown table of every field (name, type, default, meaning) for docs/CONFIG.md."""
    import ast
    import inspect

    docs: dict[str, str] = {}
    tree = ast.parse(inspect.getsource(TrainingConfig))
    body = tree.body[0].body  # type: ignore[attr-defined]
    for node, nxt in zip(body, body[1:]):
        if isinstance(node, ast.AnnAssign) and isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant):
            docs[node.target.id] = " ".join(str(nxt.value.value).split())  # type: ignore[attr-defined]
    hints = typing.get_type_hints(TrainingConfig)
    rows = ["| option | type | default | meaning |", "|---|---|---|---|"]
    for name, f in _FIELDS.items():
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default  # type: ignore[misc]
        type_cell = type_name(hints[name]).replace("|", "\\|")
        rows.append(f"| `{name}` | {type_cell} | `{default!r}` | {docs.get(name, '')} |")
    return "\n".join(rows) + "\n"
