"""Read the corpus's ``speaker_wordlist.xls`` (or an .xlsx copy): sheets ``Word_filename`` and ``Speaker``.

The real file has quirks this reader absorbs:

- ``Word_filename``: header ``WORD`` / ``FILE NAME`` (found in the first rows, any case), then one row
  per word; keys such as ``D3``, ``LA``, ``C1``, ``CW12``, ``B1_UW1`` (block prefix on uncommon words).
- ``Speaker``: title rows first, the header (``Speaker``, ``Age``, ``Intelligibility (%)``,
  ``Diagnosis``, ``Motor Control``) on the 4th row; blank rows between speakers; values like
  ``"Very low (15%)"`` / ``"high (93%)"`` in inconsistent case, ``"not obtained yet"``; a trailing space
  in ``"M16 "``; a diagnosis continued on the next row (``"Athetoid"`` + ``"(or mixed)"``); notes below.

``.xls`` is read with xlrd, ``.xlsx`` / ``.xlsm`` / ``.ods`` with python-calamine (also the fallback
for an .xls that xlrd rejects).
"""

from __future__ import annotations

import io
import os
import re
from pathlib import Path
from typing import NamedTuple

from uaspeech_prep import corpus

WORD_SHEET = "Word_filename"
SPEAKER_SHEET = "Speaker"
_SPEAKER_ID_RE = re.compile(r"^C?[MF]\d{2}$", re.IGNORECASE)
_PERCENT_RE = re.compile(r"(\d+(?:\.\d+)?)\s*%")


class WordlistError(ValueError):
    """The word list file is missing a sheet or column, or holds inconsistent rows."""


class SpeakerInfo(NamedTuple):
    intelligibility: float | None  # percent; None when "not obtained yet" or blank
    diagnosis: str
    age: str
    motor_control: str
    intelligibility_text: str  # the cell as written, e.g. "Very low (15%)"

    @property
    def level(self) -> str | None:
        return None if self.intelligibility is None else corpus.level_for_intelligibility(self.intelligibility)


def _cell_text(v: object) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return str(int(v)) if v.is_integer() else repr(v)
    return str(v)


def _norm(s: str) -> str:
    return re.sub(r"[^a-z0-9]", "", s.lower())


def _load_sheets(path: Path) -> dict[str, list[list[str]]]:
    if not path.is_file():
        raise FileNotFoundError(f"word list not found: {path}")
    suffix = path.suffix.lower()
    if suffix == ".xls":
        try:
            import xlrd

            # xlrd writes its complaints about a damaged file to stdout; the error below says it once
            book = xlrd.open_workbook(str(path), on_demand=True, logfile=io.StringIO())
            try:
                return {
                    sh.name: [[_cell_text(c) for c in sh.row_values(r)] for r in range(sh.nrows)]
                    for sh in (book.sheet_by_index(i) for i in range(book.nsheets))
                }
            finally:
                book.release_resources()
        except Exception as err:  # xlrd rejects some files calamine reads: try it before giving up
            try:
                return _load_calamine(path)
            except Exception:
                raise WordlistError(f"cannot read {path} as an Excel .xls workbook: {err}") from err
    if suffix in (".xlsx", ".xlsm", ".ods", ".xlsb"):
        try:
            return _load_calamine(path)
        except Exception as err:
            raise WordlistError(f"cannot read {path} as a {suffix} workbook: {err}") from err
    raise WordlistError(f"{path}: unsupported word list format {suffix!r} (expected .xls or .xlsx)")


def _load_calamine(path: Path) -> dict[str, list[list[str]]]:
    from python_calamine import CalamineWorkbook

    wb = CalamineWorkbook.from_path(str(path))
    return {
        name: [[_cell_text(c) for c in row] for row in wb.get_sheet_by_name(name).to_python(skip_empty_area=False)]
        for name in wb.sheet_names
    }


def _sheet(sheets: dict[str, list[list[str]]], wanted: str, path: Path) -> list[list[str]]:
    for name, rows in sheets.items():
        if _norm(name) == _norm(wanted):
            return rows
    raise WordlistError(f"{path}: no sheet {wanted!r} (sheets: {', '.join(map(repr, sheets)) or 'none'})")


def _find_header(rows: list[list[str]], required: dict[str, tuple[str, ...]], path: Path, sheet: str,
                 optional: dict[str, tuple[str, ...]] | None = None, search_rows: int = 15) -> tuple[int, dict[str, int]]:
    """Row index of the header and column index per field; a field matches a cell whose normalized text
    starts with one of its normalized names."""
    fields = {**required, **(optional or {})}
    for r, row in enumerate(rows[:search_rows]):
        cols: dict[str, int] = {}
        for c, cell in enumerate(row):
            n = _norm(cell)
            if not n:
                continue
            for field, names in fields.items():
                if field not in cols and any(n.startswith(_norm(x)) for x in names):
                    cols[field] = c
                    break
        if all(f in cols for f in required):
            return r, cols
    want = ", ".join(repr(v[0]) for v in required.values())
    raise WordlistError(f"{path}: sheet {sheet!r} has no header row with columns {want} in its first {search_rows} rows")


def read_wordlist(path: str | os.PathLike) -> dict[str, str]:
    """Sheet ``Word_filename`` -> {key: word}, e.g. {'D3': 'Three', 'B1_UW1': 'naturalization'}. Words keep
    their spelling (case, hyphens); keys are stripped and upper-cased."""
    path = Path(path)
    rows = _sheet(_load_sheets(path), WORD_SHEET, path)
    hdr, cols = _find_header(rows, {"word": ("WORD",), "key": ("FILE NAME", "FILENAME")}, path, WORD_SHEET)
    table: dict[str, str] = {}
    for r in range(hdr + 1, len(rows)):
        row = rows[r]
        key = row[cols["key"]].strip().upper() if cols["key"] < len(row) else ""
        word = row[cols["word"]].strip() if cols["word"] < len(row) else ""
        if not key and not word:
            continue
        if not key or not word:
            raise WordlistError(
                f"{path}: sheet {WORD_SHEET!r} row {r + 1} has a word without a file name or the reverse: {row!r}"
            )
        if key in table and table[key] != word:
            raise WordlistError(f"{path}: key {key!r} appears twice with different words ({table[key]!r}, {word!r})")
        table[key] = word
    if not table:
        raise WordlistError(f"{path}: sheet {WORD_SHEET!r} has no words under its header")
    return table


def parse_intelligibility(text: str) -> float | None:
    """'Very low (15%)' -> 15.0, 'High (90.4%)' -> 90.4, '93' -> 93.0, 'not obtained yet' / '' -> None."""
    t = text.strip()
    m = _PERCENT_RE.search(t)
    if m:
        return float(m.group(1))
    try:
        return float(t)
    except ValueError:
        return None


def read_speakers(path: str | os.PathLike) -> dict[str, SpeakerInfo]:
    """Sheet ``Speaker`` -> {speaker id: SpeakerInfo(intelligibility %, diagnosis, age, motor control, text)}.
    Ids are stripped and upper-cased ('M16 ' -> 'M16')."""
    path = Path(path)
    rows = _sheet(_load_sheets(path), SPEAKER_SHEET, path)
    hdr, cols = _find_header(
        rows,
        {"speaker": ("Speaker",), "intel": ("Intelligibility",)},
        path,
        SPEAKER_SHEET,
        optional={"age": ("Age",), "diagnosis": ("Diagnosis",), "motor": ("Motor",)},
    )

    def cell(row: list[str], field: str) -> str:
        c = cols.get(field)
        return row[c].strip() if c is not None and c < len(row) else ""

    out: dict[str, dict[str, str]] = {}
    current: str | None = None
    for r in range(hdr + 1, len(rows)):
        row = rows[r]
        sid = cell(row, "speaker")
        if _SPEAKER_ID_RE.match(sid):
            current = sid.upper()
            out[current] = {f: cell(row, f) for f in ("age", "intel", "diagnosis", "motor")}
        elif not sid and current is not None and any(cell(row, f) for f in ("age", "intel", "diagnosis", "motor")):
            for f in ("age", "intel", "diagnosis", "motor"):  # a value continued on the next row
                extra = cell(row, f)
                if extra:
                    out[current][f] = f"{out[current][f]} {extra}".strip()
        else:
            current = None  # blank row or note: no continuation across it
    if not out:
        raise WordlistError(f"{path}: sheet {SPEAKER_SHEET!r} lists no speaker ids under its header")
    return {
        sid: SpeakerInfo(
            intelligibility=parse_intelligibility(v["intel"]),
            diagnosis=re.sub(r"\s+", " ", v["diagnosis"]),
            age=v["age"],
            motor_control=re.sub(r"\s+", " ", v["motor"]),
            intelligibility_text=v["intel"],
        )
        for sid, v in out.items()
    }


def compare_with_builtin(path: str | os.PathLike) -> list[str]:
    """Differences between a word list file and the built-in tables of :mod:`uaspeech_prep.corpus`
    (words, and intelligibility of the known speakers). Empty when they agree."""
    problems: list[str] = []
    words = read_wordlist(path)
    builtin = corpus.builtin_wordlist()
    for key in sorted(set(builtin) - set(words)):
        problems.append(f"missing key {key} ({builtin[key]!r})")
    for key in sorted(set(words) - set(builtin)):
        problems.append(f"unknown key {key} ({words[key]!r})")
    for key in sorted(set(words) & set(builtin)):
        if words[key] != builtin[key]:
            problems.append(f"{key}: file says {words[key]!r}, built-in {builtin[key]!r}")
    for sid, info in read_speakers(path).items():
        known = corpus.SPEAKERS.get(sid)
        if known is None or known.intelligibility is None:
            continue
        if info.intelligibility is None or abs(info.intelligibility - known.intelligibility) > 1e-6:
            problems.append(f"speaker {sid}: file says {info.intelligibility_text!r}, built-in {known.intelligibility}%")
    return problems


def load_speakers(path: str | os.PathLike | None = None) -> dict[str, corpus.Speaker]:
    """Speakers with intelligibility and diagnosis: from the ``Speaker`` sheet of ``path`` when given (the
    file's speakers, including M06 and M13, which were not released with audio; controls from the built-in
    table, the sheet lists none), else the built-in :data:`uaspeech_prep.corpus.SPEAKERS`. Compare the two
    with :func:`compare_with_builtin`."""
    if path is None:
        return dict(corpus.SPEAKERS)
    out = {sid: corpus.Speaker(sid, info.intelligibility, info.diagnosis) for sid, info in read_speakers(path).items()}
    for sid in corpus.CONTROL_SPEAKERS:
        out.setdefault(sid, corpus.SPEAKERS[sid])
    return out
