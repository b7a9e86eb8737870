"""Which parameters train: policies used by the training recipes.

Every function works in place on an `AVWhisperForConditionalGeneration`, changes only the
parameters it names and returns the model. Names (see `modeling_av_whisper`):

    whisper.*  (minus  *.xattn.*)   Whisper's own weights
    *.xattn.*                       gated cross-attention blocks (live inside whisper's layer list)
    video_encoder.*, video_proj.*, router.*
"""

from __future__ import annotations

import re

from torch import nn

_WHISPER_MLP = re.compile(r"\.(fc1|fc2)\.(weight|bias)$")


def _is_fusion_block(name: str) -> bool:
    return ".xattn." in name


def _whisper_own_parameters(model) -> list[tuple[str, nn.Parameter]]:
    return [(n, p) for n, p in model.whisper.named_parameters() if not _is_fusion_block(n)]


def freeze_whisper(model):
    """Freeze all of Whisper's own weights (encoder, decoder, embeddings, conv front-end);
    the fusion blocks, video front-end, projection and router keep their current state."""
    for _, p in _whisper_own_parameters(model):
        p.requires_grad_(False)
    return model


def freeze_token_embeddings(model):
    """Freeze the decoder's token embedding table. Whisper ties its output projection to it, so the output
    vector of every token stays Whisper's too: a fine-tune on a few words cannot move the rest of the
    vocabulary, and the [vocab, d_model] table (half of tiny's weights) needs no gradient or optimiser state."""
    model.whisper.get_input_embeddings().weight.requires_grad_(False)
    return model


def unfreeze_mlp_layers(model, encoder: bool = True, decoder: bool = True):
    """Make the feed-forward (fc1, fc2) weights of Whisper's encoder and/or decoder layers trainable."""
    for name, p in _whisper_own_parameters(model):
        if not _WHISPER_MLP.search(name):
            continue
        if (encoder and ".encoder." in name) or (decoder and ".decoder." in name):
            p.requires_grad_(True)
    return model


def router_train_only(model):
    """Train the FusionRouter alone; everything else is frozen."""
    if getattr(model, "router", None) is None:
        raise ValueError("model has no FusionRouter (soft_fusion_routing=False)")
    for p in model.parameters():
        p.requires_grad_(False)
    for p in model.router.parameters():
        p.requires_grad_(True)
    return model


def freeze_video_encoder(model, keep_eval: bool = True):
    """Freeze the video front-end; with keep_eval it also stays in eval mode (BatchNorm statistics
    fixed) when the model is put in training mode."""
    if getattr(model, "video_encoder", None) is None:
        return model
    for p in model.video_encoder.parameters():
        p.requires_grad_(False)
    if keep_eval:
        model.video_encoder_frozen = True
        model.video_encoder.eval()
    return model


def unfreeze_all(model):
    for p in model.parameters():
        p.requires_grad_(True)
    return model


def trainable_parameter_names(model) -> list[str]:
    return [n for n, p in model.named_parameters() if p.requires_grad]


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(total, trainable) number of parameters; shared (tied) tensors are counted once."""
    total = trainable = 0
    for p in model.parameters():  # parameters() yields each shared tensor once
        total += p.numel()
        if p.requires_grad:
            trainable += p.numel()
    return total, trainable
