"""The table of `AVWhisperConfig`'s fields for docs/API.md, generated from the class so that it cannot drift.

One row per entry of the class docstring's ``Args:`` section (an entry may name several fields, e.g.
``routing_hidden_dim, routing_dropout``), with the dataclass defaults. Every field must be described exactly once:
a field without an entry, or an entry that names no field, is an error, so documenting a new option is not optional.
"""

from __future__ import annotations

import dataclasses
import inspect
import re

from .configuration import AVWhisperConfig

BEGIN = "<!-- AVWhisperConfig fields: generated from configuration.py by `uv run python -m av_train.docgen`; edit the docstring there -->"
END = "<!-- end of generated AVWhisperConfig fields -->"
_ENTRY = re.compile(r"^ {4}(\w+(?:, \w+)*): (.*)$")  # in the cleaned docstring (inspect.cleandoc)


def docstring_entries(cls: type = AVWhisperConfig) -> list[tuple[list[str], str]]:
    """[(field names, meaning)] in the order of the docstring's ``Args:`` section."""
    lines = inspect.cleandoc(cls.__doc__ or "").splitlines()
    start = next((i for i, line in enumerate(lines) if line.strip() == "Args:"), None)
    if start is None:
        raise ValueError(f"{cls.__name__}'s docstring has no Args: section")
    entries: list[tuple[list[str], list[str]]] = []
    for line in lines[start + 1:]:
        match = _ENTRY.match(line)
        if match:
            entries.append(([n.strip() for n in match.group(1).split(",")], [match.group(2).strip()]))
        elif line.startswith(" " * 8) and entries:
            entries[-1][1].append(line.strip())
        elif line.strip():
            break
    return [(names, " ".join(text)) for names, text in entries]


def config_fields_markdown(cls: type = AVWhisperConfig) -> str:
    """The markdown table (field | default | meaning) of ``cls``, checked to describe every field once."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    entries = docstring_entries(cls)
    described = [name for names, _ in entries for name in names]
    unknown = sorted(set(described) - set(fields))
    missing = sorted(set(fields) - set(described))
    twice = sorted({n for n in described if described.count(n) > 1})
    if unknown or missing or twice:
        raise ValueError(f"{cls.__name__}'s Args: section does not match its fields: undocumented {missing}, "
                         f"not a field {unknown}, described twice {twice}")
    rows = ["| field | default | meaning |", "|---|---|---|"]
    for names, text in entries:
        defaults = ", ".join(f"`{fields[n].default!r}`" for n in names)
        rows.append(f"| {', '.join(f'`{n}`' for n in names)} | {defaults} | {text.replace('|', chr(92) + '|')} |")
    return "\n".join(rows) + "\n"


def with_config_table(document: str) -> str:
    """``document`` (docs/API.md) with the text between `BEGIN` and `END` replaced by the generated table."""
    if BEGIN not in document or END not in document:
        raise ValueError(f"the document has no generated AVWhisperConfig section (markers {BEGIN!r} ... {END!r})")
    head, rest = document.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{BEGIN}\n{config_fields_markdown()}{END}{tail}"
