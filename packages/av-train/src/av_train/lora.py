"""Low-rank adapters (LoRA, Hu et al. 2021) on Whisper's own layers, with PEFT: ``finetune: lora``.

Why: a full fine-tune on a few hundred dysarthric words pulls every weight of Whisper towards those words
and the model forgets how to spell the others (docs/RESULTS.md, unseen words). LoRA keeps Whisper's
weights W fixed and learns W + (alpha / r) * B A with rank-r matrices on the attention projections and
(optionally) the feed-forward layers; B starts at zero, so training starts from Whisper exactly.

Only Whisper's own layers get adapters: the fusion blocks, video encoder and router are new and train in
full as before. A checkpoint of a LoRA run holds PEFT's parameter names (``q_proj.base_layer.weight``,
``q_proj.lora_A.default.weight`` ...); :func:`merge_lora` folds the adapters into plain ``nn.Linear``
weights (PEFT's own merge), which is what ``av-cli export`` ships and what a later stage
(``pt_audio_ckpt``) starts from, so nothing downstream needs PEFT.
"""

from __future__ import annotations

from torch import nn

ATTENTION = ("q_proj", "k_proj", "v_proj", "out_proj")
MLP = ("fc1", "fc2")
LORA_TARGETS = {"attention": ATTENTION, "attention_mlp": ATTENTION + MLP}
"""``lora_targets`` choices -> the Whisper sub-layers that get adapters."""


def target_pattern(targets: str) -> str:
    """Full-match regex (PEFT's ``target_modules`` string form) for Whisper's own layers only: the encoder's
    and decoder's self-attention, the decoder's cross-attention to the audio, optionally fc1 / fc2; never the
    fusion blocks (``.xattn.``), which live beside them."""
    attn = "|".join(p for p in LORA_TARGETS[targets] if p.endswith("_proj"))
    mlp = "|".join(p for p in LORA_TARGETS[targets] if p.startswith("fc"))
    layer = r"whisper\.model\.(?:encoder|decoder)\.layers\.\d+(?:\.layer)?"
    parts = [rf"{layer}\.(?:self_attn|encoder_attn)\.(?:{attn})"]
    if mlp:
        parts.append(rf"{layer}\.(?:{mlp})")
    return "^(?:" + "|".join(parts) + ")$"


def add_lora(model: nn.Module, rank: int, alpha: float, dropout: float, targets: str = "attention") -> int:
    """Freeze Whisper's own weights and inject LoRA adapters into them, in place. Returns the number of
    adapted layers. Parameters that were not Whisper's (fusion, video encoder, router) keep their state."""
    from peft import LoraConfig, inject_adapter_in_model

    from av_fusion_models import freezing

    freezing.freeze_whisper(model)
    before = {n: p.requires_grad for n, p in model.named_parameters()}
    config = LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=dropout, target_modules=target_pattern(targets),
                        bias="none")
    inject_adapter_in_model(config, model)
    adapted = [m for m in model.modules() if _is_lora_layer(m)]
    if not adapted:
        raise ValueError(f"LoRA found no layer to adapt with lora_targets {targets!r}")
    # PEFT leaves only adapters trainable in the whole model; the fusion blocks, video encoder and router get
    # back what they had, the adapted (base) layers stay frozen
    for name, p in model.named_parameters():
        p.requires_grad_(".lora_" in name or (before.get(name, False) and ".base_layer." not in name))
    return len(adapted)


def merge_lora(model: nn.Module) -> int:
    """Fold every adapter into its base layer (W + scale * B A, PEFT's ``merge``) and put the plain layer back,
    in place: the model's state dict then has Whisper's own names again. Returns the number merged."""
    merged = 0
    for name, module in list(model.named_modules()):
        if not _is_lora_layer(module):
            continue
        module.merge(safe_merge=True)
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        base = module.get_base_layer()
        for p in base.parameters():
            p.requires_grad_(True)
        setattr(parent, child, base)
        merged += 1
    return merged


def has_lora_keys(state: dict) -> bool:
    return any(".lora_A." in k or ".base_layer." in k for k in state)


def _is_lora_layer(module: nn.Module) -> bool:
    from peft.tuners.lora import LoraLayer

    return isinstance(module, LoraLayer)
