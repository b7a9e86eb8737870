"""CTranslate2 ``WhisperSpec`` -> Hugging Face ``WhisperForConditionalGeneration`` weights.

The mapping is one table, :data:`WHISPER_WEIGHT_MAP`: each row names a Hugging Face module,
the CTranslate2 scope it comes from and how the variables there become parameters
(:data:`TENSOR`, :data:`LINEAR`, :data:`LAYER_NORM`, or a fused projection split into q/k/v).
Rows with ``{i}`` are repeated for every layer. :func:`ct2_whisper_state_dict` reads the sizes,
applies the table, then places the output projection and checks CTranslate2's scalar flags;
every CTranslate2 variable must be used exactly once, so nothing is silently dropped.
"""

from __future__ import annotations

import itertools
import os
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, NamedTuple, Sequence

import numpy as np

from .dtypes import torch_dtype
from .reader import CT2FormatError, CT2Model, read_ct2_model

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = [
    "FUSED_KV",
    "FUSED_QKV",
    "LAYER_NORM",
    "LINEAR",
    "MAX_WHISPER_SPEC_REVISION",
    "TENSOR",
    "WHISPER_WEIGHT_MAP",
    "WeightRow",
    "WhisperDims",
    "WhisperWeights",
    "ct2_whisper_state_dict",
    "expand_weight_map",
]

#: Highest WhisperSpec revision whose layout this module knows.
MAX_WHISPER_SPEC_REVISION = 3


@dataclass(frozen=True)
class WhisperDims:
    """Architecture sizes read off the CTranslate2 variables."""

    num_mel_bins: int
    d_model: int
    encoder_layers: int
    decoder_layers: int
    encoder_attention_heads: int
    decoder_attention_heads: int
    encoder_ffn_dim: int
    decoder_ffn_dim: int
    vocab_size: int
    max_source_positions: int
    max_target_positions: int

    @property
    def is_multilingual(self) -> bool:
        # OpenAI's rule: English-only models have 51864 tokens, multilingual >= 51865.
        return self.vocab_size >= 51865


@dataclass
class WhisperWeights:
    """Result of :func:`ct2_whisper_state_dict`.

    ``state_dict`` uses ``WhisperForConditionalGeneration`` keys (including
    ``proj_out.weight``, the same tensor object as ``model.decoder.embed_tokens.weight``
    when ``tied``). ``usage`` maps every CTranslate2 name (variables and aliases)
    to what consumed it (HF keys, or ``config:``/``check:`` entries).
    """

    state_dict: dict[str, "torch.Tensor"]
    dims: WhisperDims
    usage: dict[str, list[str]]
    tied: bool
    source: str


# Scalar flags of the CTranslate2 transformer decoder spec: value they must have
# for a Whisper model (None: any value, runtime-only setting).
_DECODER_FLAGS: dict[str, int | None] = {
    "activation": 3,  # GELU
    "pre_norm": 1,
    "scale_embeddings": 0,
    "alibi": 0,
    "alibi_use_positive_positions": None,
    "scale_alibi": None,
    "start_from_zero_embedding": 0,
    "multi_query_attention": 0,
    "alignment_layer": None,  # CTranslate2 runtime alignment settings
    "alignment_heads": None,
}
_ENCODER_FLAGS: dict[str, int | None] = {
    "activation": 3,
    "pre_norm": 1,
    "scale_embeddings": 0,
    "multi_query_attention": 0,
    "embeddings_merge": None,
}


class _Taker:
    """Hands out CTranslate2 variables and records who used each (exactly once)."""

    def __init__(self, model: CT2Model):
        self.model = model
        self.usage: dict[str, list[str]] = {}

    def _record(self, name: str, purpose: str) -> None:
        self.usage.setdefault(name, []).append(purpose)

    def has(self, name: str) -> bool:
        return name in self.model

    def scalar(self, name: str, purpose: str) -> int:
        if name not in self.model:
            raise CT2FormatError(f"{self.model.source}: missing scalar {name!r}")
        arr = self.model[name]
        if arr.size != 1:
            raise CT2FormatError(f"{self.model.source}: {name!r} should be a scalar, has shape {arr.shape}")
        self._record(name, purpose)
        return int(arr.reshape(()).item())

    def array(self, name: str, purpose: str, shape: tuple[int, ...] | None = None) -> np.ndarray:
        """Float32 copy of ``name`` (int8/int16 weights are dequantized with ``<name>_scale``)."""
        if name not in self.model:
            raise CT2FormatError(
                f"{self.model.source}: missing variable {name!r} (not a complete Whisper model?)"
            )
        target = self.model.resolve(name)
        arr = self.model.variables[target]
        dtype = self.model.dtypes[target]
        if shape is not None and tuple(arr.shape) != tuple(shape):
            raise CT2FormatError(
                f"{self.model.source}: {name!r} has shape {tuple(arr.shape)}, expected {tuple(shape)}"
            )
        self._record(name, purpose)
        if dtype in ("int8", "int16"):
            scale_name = name + "_scale"
            if scale_name in self.model:
                self._record(scale_name, f"dequantize:{name}")
            elif target != name and target + "_scale" in self.model:
                # CTranslate2 aliases the scale together with its variable.
                scale_name = target + "_scale"
            else:
                raise CT2FormatError(f"{self.model.source}: quantized {name!r} has no {scale_name!r}")
            scale = self.model[scale_name].astype(np.float32)
            out = arr.astype(np.float32)
            if scale.ndim == 1 and out.ndim >= 1:
                out /= scale.reshape((-1,) + (1,) * (out.ndim - 1))
            else:
                out /= scale.reshape(())
            return out
        return arr.astype(np.float32)

    def flag(self, name: str, expected: int | None) -> None:
        value = self.scalar(name, "check:flag")
        if expected is not None and value != expected:
            raise CT2FormatError(
                f"{self.model.source}: {name} = {value}, but a Whisper model needs {expected}; "
                "not a standard Whisper checkpoint"
            )


def _count_layers(model: CT2Model, prefix: str) -> int:
    pat = re.compile(re.escape(prefix) + r"/layer_(\d+)/")
    idx = {int(m.group(1)) for n in model.names() if (m := pat.match(n))}
    if not idx:
        return 0
    if idx != set(range(len(idx))):
        raise CT2FormatError(f"{model.source}: {prefix} layers are not numbered 0..N-1: {sorted(idx)}")
    return len(idx)


def _check_whisper(model: CT2Model) -> None:
    if model.spec_name != "WhisperSpec":
        what = repr(model.spec_name) if model.spec_name else "none (binary version 1)"
        raise CT2FormatError(
            f"{model.source} is a CTranslate2 model but not a Whisper one (spec {what}, expected 'WhisperSpec')"
        )
    if model.spec_revision > MAX_WHISPER_SPEC_REVISION:
        raise CT2FormatError(
            f"{model.source}: WhisperSpec revision {model.spec_revision} is newer than this converter "
            f"knows ({MAX_WHISPER_SPEC_REVISION})"
        )


# --------------------------------------------------------------------------------------
# The mapping table
# --------------------------------------------------------------------------------------

# How a row's CTranslate2 variable(s) become Hugging Face parameter(s):
TENSOR = "tensor"  # hf <- ct2, one array of the row's shape
LINEAR = "linear"  # hf.weight <- ct2/weight (the row's shape), hf.bias <- ct2/bias (its first dim); convs too
LAYER_NORM = "layer_norm"  # hf.weight <- ct2/gamma, hf.bias <- ct2/beta, both (d,)
FUSED_QKV = "fused_qkv"  # ct2/weight (3d, d) and ct2/bias (3d,) split into hf.{q,k,v}_proj
FUSED_KV = "fused_kv"  # ct2/weight (2d, d) and ct2/bias (2d,) split into hf.{k,v}_proj
# Projections packed into one fused CTranslate2 linear, in CTranslate2's order.
_FUSED_PROJECTIONS = {FUSED_QKV: ("q", "k", "v"), FUSED_KV: ("k", "v")}


class WeightRow(NamedTuple):
    """One line of :data:`WHISPER_WEIGHT_MAP`.

    ``shape`` is the expected weight shape, in sizes named as in :func:`_named_sizes`
    (or plain ints); fused rows derive theirs from ``d``.
    """

    hf: str
    ct2: str
    kind: str
    shape: tuple[str | int, ...] = ()


_ENC = "model.encoder.layers.{i}"
_DEC = "model.decoder.layers.{i}"

#: Every Hugging Face Whisper parameter but ``proj_out.weight``, in state-dict order. ``{i}`` is the
#: layer index: a run of ``{i}`` rows is repeated per layer of its stack (the CTranslate2 name's first part),
#: so the state dict holds layer 0's parameters, then layer 1's, ...
WHISPER_WEIGHT_MAP: tuple[WeightRow, ...] = (
    WeightRow("model.encoder.conv1", "encoder/conv1", LINEAR, ("d", "n_mels", 3)),
    WeightRow("model.encoder.conv2", "encoder/conv2", LINEAR, ("d", "d", 3)),
    WeightRow("model.encoder.embed_positions.weight", "encoder/position_encodings/encodings", TENSOR,
              ("source_positions", "d")),
    WeightRow(f"{_ENC}.self_attn_layer_norm", "encoder/layer_{i}/self_attention/layer_norm", LAYER_NORM, ("d",)),
    WeightRow(f"{_ENC}.self_attn", "encoder/layer_{i}/self_attention/linear_0", FUSED_QKV),
    WeightRow(f"{_ENC}.self_attn.out_proj", "encoder/layer_{i}/self_attention/linear_1", LINEAR, ("d", "d")),
    WeightRow(f"{_ENC}.final_layer_norm", "encoder/layer_{i}/ffn/layer_norm", LAYER_NORM, ("d",)),
    WeightRow(f"{_ENC}.fc1", "encoder/layer_{i}/ffn/linear_0", LINEAR, ("encoder_ffn", "d")),
    WeightRow(f"{_ENC}.fc2", "encoder/layer_{i}/ffn/linear_1", LINEAR, ("d", "encoder_ffn")),
    WeightRow("model.encoder.layer_norm", "encoder/layer_norm", LAYER_NORM, ("d",)),
    WeightRow("model.decoder.embed_tokens.weight", "decoder/embeddings/weight", TENSOR, ("vocab", "d")),
    WeightRow("model.decoder.embed_positions.weight", "decoder/position_encodings/encodings", TENSOR,
              ("target_positions", "d")),
    WeightRow(f"{_DEC}.self_attn_layer_norm", "decoder/layer_{i}/self_attention/layer_norm", LAYER_NORM, ("d",)),
    WeightRow(f"{_DEC}.self_attn", "decoder/layer_{i}/self_attention/linear_0", FUSED_QKV),
    WeightRow(f"{_DEC}.self_attn.out_proj", "decoder/layer_{i}/self_attention/linear_1", LINEAR, ("d", "d")),
    WeightRow(f"{_DEC}.encoder_attn_layer_norm", "decoder/layer_{i}/attention/layer_norm", LAYER_NORM, ("d",)),
    WeightRow(f"{_DEC}.encoder_attn.q_proj", "decoder/layer_{i}/attention/linear_0", LINEAR, ("d", "d")),
    WeightRow(f"{_DEC}.encoder_attn", "decoder/layer_{i}/attention/linear_1", FUSED_KV),
    WeightRow(f"{_DEC}.encoder_attn.out_proj", "decoder/layer_{i}/attention/linear_2", LINEAR, ("d", "d")),
    WeightRow(f"{_DEC}.final_layer_norm", "decoder/layer_{i}/ffn/layer_norm", LAYER_NORM, ("d",)),
    WeightRow(f"{_DEC}.fc1", "decoder/layer_{i}/ffn/linear_0", LINEAR, ("decoder_ffn", "d")),
    WeightRow(f"{_DEC}.fc2", "decoder/layer_{i}/ffn/linear_1", LINEAR, ("d", "decoder_ffn")),
    WeightRow("model.decoder.layer_norm", "decoder/layer_norm", LAYER_NORM, ("d",)),
)


def expand_weight_map(table: Sequence[WeightRow], layers: dict[str, int]) -> list[WeightRow]:
    """The table with every run of ``{i}`` rows of one stack repeated for ``i`` in ``range(layers[stack])``."""
    rows: list[WeightRow] = []
    for stack, group in itertools.groupby(table, key=_layer_stack):
        run = list(group)
        if stack is None:
            rows += run
            continue
        for i in range(layers[stack]):
            rows += [row._replace(hf=row.hf.format(i=i), ct2=row.ct2.format(i=i)) for row in run]
    return rows


def _layer_stack(row: WeightRow) -> str | None:
    """The stack ("encoder", "decoder") whose layers a per-layer row repeats over; None for other rows."""
    return row.ct2.split("/")[0] if "{i}" in row.hf else None


def _named_sizes(dims: WhisperDims) -> dict[str, int]:
    """The size names :data:`WHISPER_WEIGHT_MAP` shapes are written in."""
    return {
        "d": dims.d_model,
        "n_mels": dims.num_mel_bins,
        "vocab": dims.vocab_size,
        "source_positions": dims.max_source_positions,
        "target_positions": dims.max_target_positions,
        "encoder_ffn": dims.encoder_ffn_dim,
        "decoder_ffn": dims.decoder_ffn_dim,
    }


ToTensor = Callable[[np.ndarray], "torch.Tensor"]


def _place(row: WeightRow, t: _Taker, sizes: dict[str, int], tensor: ToTensor, sd: dict) -> None:
    """Add the parameters of one (expanded) row to ``sd``."""
    shape = tuple(sizes[s] if isinstance(s, str) else s for s in row.shape)
    if row.kind == TENSOR:
        sd[row.hf] = tensor(t.array(row.ct2, row.hf, shape))
    elif row.kind == LINEAR:
        sd[f"{row.hf}.weight"] = tensor(t.array(f"{row.ct2}/weight", f"{row.hf}.weight", shape))
        sd[f"{row.hf}.bias"] = tensor(t.array(f"{row.ct2}/bias", f"{row.hf}.bias", shape[:1]))
    elif row.kind == LAYER_NORM:
        sd[f"{row.hf}.weight"] = tensor(t.array(f"{row.ct2}/gamma", f"{row.hf}.weight", shape))
        sd[f"{row.hf}.bias"] = tensor(t.array(f"{row.ct2}/beta", f"{row.hf}.bias", shape))
    elif row.kind in _FUSED_PROJECTIONS:
        _place_fused(row, _FUSED_PROJECTIONS[row.kind], t, sizes["d"], tensor, sd)
    else:  # pragma: no cover - a typo in the table
        raise ValueError(f"unknown weight map kind {row.kind!r} in {row}")


def _place_fused(row: WeightRow, names: tuple[str, ...], t: _Taker, d: int, tensor: ToTensor, sd: dict) -> None:
    """Split a fused projection (q;k;v or k;v) into separate HF linears.

    HF's ``k_proj`` has no bias, so the key slice of the fused bias must be all zeros.
    """
    n = len(names)
    fused = f"{row.hf}.{{{','.join(names)}}}_proj"  # usage label, e.g. "...self_attn.{q,k,v}_proj"
    w = t.array(f"{row.ct2}/weight", f"{fused}.weight", (n * d, d))
    b = t.array(f"{row.ct2}/bias", f"{fused}.bias", (n * d,))
    for i, proj in enumerate(names):
        sd[f"{row.hf}.{proj}_proj.weight"] = tensor(w[i * d : (i + 1) * d])
        bias = b[i * d : (i + 1) * d]
        if proj == "k":
            if np.any(bias != 0):
                raise CT2FormatError(
                    f"{t.model.source}: {row.ct2}/bias has a non-zero key slice (max |b| = {np.abs(bias).max():.3g}); "
                    "Hugging Face Whisper's k_proj has no bias"
                )
            continue
        sd[f"{row.hf}.{proj}_proj.bias"] = tensor(bias)


# --------------------------------------------------------------------------------------
# Applying it
# --------------------------------------------------------------------------------------


def _peek(model: CT2Model, name: str, rank: int) -> np.ndarray:
    """A variable read for its shape only (its use is recorded where it is placed)."""
    if name not in model:
        raise CT2FormatError(f"{model.source}: missing variable {name!r} (not a complete Whisper model?)")
    arr = model[name]
    if arr.ndim != rank:
        raise CT2FormatError(f"{model.source}: {name!r} has rank {arr.ndim}, expected {rank}")
    return arr


def _read_dims(model: CT2Model, t: _Taker) -> WhisperDims:
    src = model.source
    d_model, n_mels, _ = _peek(model, "encoder/conv1/weight", 3).shape
    vocab_size = _peek(model, "decoder/embeddings/weight", 2).shape[0]
    n_enc = _count_layers(model, "encoder")
    n_dec = _count_layers(model, "decoder")
    if n_enc == 0 or n_dec == 0:
        raise CT2FormatError(f"{src}: no encoder or decoder layers found")
    enc_heads = t.scalar("encoder/num_heads", "config:encoder_attention_heads")
    dec_heads = t.scalar("decoder/num_heads", "config:decoder_attention_heads")
    for h in (enc_heads, dec_heads):
        if h <= 0 or d_model % h:
            raise CT2FormatError(f"{src}: {h} heads do not divide d_model {d_model}")
    enc_pos = _peek(model, "encoder/position_encodings/encodings", 2)
    dec_pos = _peek(model, "decoder/position_encodings/encodings", 2)
    enc_ffn = _peek(model, "encoder/layer_0/ffn/linear_0/weight", 2).shape[0]
    dec_ffn = _peek(model, "decoder/layer_0/ffn/linear_0/weight", 2).shape[0]
    return WhisperDims(
        num_mel_bins=int(n_mels),
        d_model=int(d_model),
        encoder_layers=n_enc,
        decoder_layers=n_dec,
        encoder_attention_heads=enc_heads,
        decoder_attention_heads=dec_heads,
        encoder_ffn_dim=int(enc_ffn),
        decoder_ffn_dim=int(dec_ffn),
        vocab_size=int(vocab_size),
        max_source_positions=int(enc_pos.shape[0]),
        max_target_positions=int(dec_pos.shape[0]),
    )


def _place_output_projection(model: CT2Model, t: _Taker, dims: WhisperDims, tensor: ToTensor, sd: dict) -> bool:
    """Add ``proj_out.weight``; whether it is tied to the token embeddings (as in every Whisper model)."""
    vocab_size, d = dims.vocab_size, dims.d_model
    proj = "decoder/projection/weight"
    tied = True  # also when absent: HF ties proj_out to the embeddings anyway
    if proj not in model:
        pass
    elif model.resolve(proj) == "decoder/embeddings/weight":
        t.array(proj, "proj_out.weight (alias of decoder/embeddings/weight)", (vocab_size, d))
    else:
        w = t.array(proj, "proj_out.weight", (vocab_size, d))
        tied = bool(np.array_equal(w, model["decoder/embeddings/weight"].astype(np.float32)))
        if not tied:
            sd["proj_out.weight"] = tensor(w)
    if tied:
        sd["proj_out.weight"] = sd["model.decoder.embed_tokens.weight"]
    if "decoder/projection/bias" in model:
        b = t.array("decoder/projection/bias", "check:zero projection bias", (vocab_size,))
        if np.any(b != 0):
            raise CT2FormatError(
                f"{model.source}: decoder/projection/bias is non-zero; HF Whisper's proj_out has no bias"
            )
    return tied


def _check_flags_and_usage(model: CT2Model, t: _Taker) -> None:
    """Check the scalar flags, then that every CTranslate2 name was used exactly once."""
    for prefix, flags in (("decoder", _DECODER_FLAGS), ("encoder", _ENCODER_FLAGS)):
        for flag, expected in flags.items():
            name = f"{prefix}/{flag}"
            if name in model:
                t.flag(name, expected)

    unused = [n for n in model.names() if n not in t.usage]
    if unused:
        raise CT2FormatError(
            f"{model.source}: {len(unused)} CTranslate2 variable(s) this Whisper converter cannot place "
            f"(a Whisper variant it does not support?): {', '.join(unused[:10])}"
            + (" ..." if len(unused) > 10 else "")
        )
    twice = {n: u for n, u in t.usage.items() if len(u) != 1}
    if twice:  # pragma: no cover - internal consistency
        raise AssertionError(f"CTranslate2 variables used more than once: {twice}")


def ct2_whisper_state_dict(
    model: CT2Model | str | os.PathLike | Sequence[str | os.PathLike],
    dtype: "str | torch.dtype" = "float32",
) -> WhisperWeights:
    """Map a CTranslate2 ``WhisperSpec`` model onto ``WhisperForConditionalGeneration`` keys.

    Self-attention ``linear_0`` is fused q;k;v and cross-attention ``linear_1`` is
    fused k;v; HF's ``k_proj`` has no bias, so the k slice of the fused bias must be
    all zeros (checked). Raises :class:`CT2FormatError` for any variable it cannot
    place, so nothing is silently dropped.
    """
    import torch

    if not isinstance(model, CT2Model):
        model = read_ct2_model(model)
    _check_whisper(model)
    dtype_ = torch_dtype(dtype)
    t = _Taker(model)

    def tensor(arr: np.ndarray) -> "torch.Tensor":
        return torch.from_numpy(np.ascontiguousarray(arr)).to(dtype_)

    dims = _read_dims(model, t)
    sizes = _named_sizes(dims)
    sd: dict[str, torch.Tensor] = {}
    for row in expand_weight_map(WHISPER_WEIGHT_MAP, {"encoder": dims.encoder_layers, "decoder": dims.decoder_layers}):
        _place(row, t, sizes, tensor, sd)
    tied = _place_output_projection(model, t, dims, tensor, sd)
    _check_flags_and_usage(model, t)
    return WhisperWeights(state_dict=sd, dims=dims, usage=t.usage, tied=tied, source=model.source)
