"""YAML values checked against the annotations of a dataclass (the type half of the strict config loading).

``type_ok`` accepts a value for an annotation (``int``, ``float``, ``str``, ``bool``, ``Literal``, ``list``,
``dict``, unions with ``None``), turning an int or PyYAML's string ``1e-3`` into the float it means; ``type_name``
writes an annotation as the error messages and docs/CONFIG.md show it. Nothing here knows the options
(``av_train.config`` does).
"""

from __future__ import annotations

import math
import types
import typing
from typing import Any, Literal


def type_ok(value: Any, tp: Any) -> tuple[bool, Any]:
    """Check ``value`` against a dataclass annotation; returns (ok, possibly coerced value)."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return True, value
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(tp):
            ok, v = type_ok(value, arg)
            if ok:
                return True, v
        return False, value
    if tp is type(None):
        return value is None, value
    if origin is Literal:
        return value in typing.get_args(tp), value
    if origin is list:
        if not isinstance(value, list):
            return False, value
        (item,) = typing.get_args(tp)
        out = []
        for v in value:
            ok, cv = type_ok(v, item)
            if not ok:
                return False, value
            out.append(cv)
        return True, out
    if origin is dict:
        if not isinstance(value, dict):
            return False, value
        kt, vt = typing.get_args(tp)
        out = {}
        for k, v in value.items():
            ok1, ck = type_ok(k, kt)
            ok2, cv = type_ok(v, vt)
            if not (ok1 and ok2):
                return False, value
            out[ck] = cv
        return True, out
    if tp is float:
        if isinstance(value, bool):
            return False, value
        if isinstance(value, (int, float)):
            return True, float(value)
        if isinstance(value, str):  # PyYAML 1.1 reads `1e-3` (no dot) as a string; it means the number
            try:
                number = float(value.strip())
            except ValueError:
                return False, value
            return (True, number) if math.isfinite(number) else (False, value)
        return False, value
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if tp is bool:
        return isinstance(value, bool), value
    if tp is str:
        return isinstance(value, str), value
    return isinstance(value, tp), value


def type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " | ".join(type_name(a) for a in typing.get_args(tp))
    if tp is type(None):
        return "null"
    if isinstance(tp, type) and origin is None:
        return tp.__name__
    return str(tp).replace("typing.", "")
