"""The CTranslate2 binary format: ``model.bin`` (one file or split parts) and ``config.json``.

Reads with numpy only: :func:`read_ct2_model` parses ``model.bin`` into a :class:`CT2Model`
(a ``model.bin`` split into several parts is found by :func:`find_model_bin_parts`), and
:func:`read_ct2_config` reads the directory's ``config.json``.

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
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

__all__ = [
    "MAX_BINARY_VERSION",
    "CT2FormatError",
    "CT2Model",
    "find_model_bin_parts",
    "read_ct2_config",
    "read_ct2_model",
]

MAX_BINARY_VERSION = 6

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
