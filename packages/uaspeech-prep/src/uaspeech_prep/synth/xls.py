"""Write ``doc/speaker_wordlist.xls`` in the image of the release's (xlwt, BIFF8).

Sheet ``Speaker`` first: a title row, a blank row, a row with the second header line ("Speech ",
"Dysarthria "), the header (Speaker, Age, Intelligibility (%), Diagnosis, Motor Control) on row
index 3 (``header=3`` for pandas), then one row per speaker followed by a blank row, with the real
sheet's quirks: inconsistent case of the level ("Very low (15%)", "high (93%)"), "not obtained yet"
for M13, the trailing space of "M16 ", a diagnosis continued on the next row ("Athetoid" / "(or mixed)"),
and notes at the bottom. Ages and motor-control notes are placeholders (this is a synthetic corpus).
Sheet ``Word_filename``: header ``WORD`` / ``FILE NAME`` and the 455 words in the release's order.
"""

from __future__ import annotations

import os
import zlib
from pathlib import Path

from uaspeech_prep import corpus

# Order of the real sheet; M06 and M13 are listed there although no audio of them is released.
_SHEET_ORDER = ("M01", "M04", "M05", "M06", "M07", "M08", "M09", "M10", "F02", "F03", "F04", "F05",
                "M11", "M12", "M13", "M14", "M16")
_LEVEL_WORDS = {"very_low": "Very low", "low": "Low", "mid": "Mid", "high": "High"}
# speakers whose level is written in lower case in the real sheet (and "very low" for M12)
_LOWER_CASE = {"M08", "M10", "F04", "F05", "M11", "M12", "M16"}
_EXTRA = {"M06": ("Low (39%)", "Spastic"), "M13": ("not obtained yet", "Spastic")}


def intelligibility_text(speaker_id: str) -> str:
    if speaker_id in _EXTRA:
        return _EXTRA[speaker_id][0]
    spk = corpus.speaker(speaker_id)
    if spk.intelligibility is None:
        return "not obtained yet"
    word = _LEVEL_WORDS[spk.level]  # type: ignore[index]
    if speaker_id in _LOWER_CASE:
        word = word.lower()
    pct = spk.intelligibility
    num = str(int(pct)) if float(pct).is_integer() else f"{pct:g}"
    return f"{word} ({num}%)"


def write_wordlist_xls(path: str | os.PathLike, wordlist: dict[str, str] | None = None) -> None:
    """Write the two-sheet word list at ``path`` (atomically)."""
    import xlwt

    table = corpus.builtin_wordlist() if wordlist is None else wordlist
    book = xlwt.Workbook(encoding="utf-8")
    sp = book.add_sheet("Speaker")
    sp.write(0, 1, "Demographic information for speakers with dysarthria (synthetic corpus)")
    sp.write(2, 2, "Speech ")
    sp.write(2, 3, "Dysarthria ")
    for c, h in enumerate(("Speaker", "Age", "Intelligibility (%)", "Diagnosis", "Motor Control")):
        sp.write(3, c, h)
    r = 5
    for sid in _SHEET_ORDER:
        diag = _EXTRA[sid][1] if sid in _EXTRA else corpus.speaker(sid).diagnosis
        cont = ""
        if " (" in diag:  # the real sheet continues "Athetoid (or mixed)" on the next row
            diag, cont = diag.split(" (", 1)
            cont = "(" + cont
        age_n = 18 + zlib.crc32(sid.encode()) % 40
        sp.write(r, 0, "M16 " if sid == "M16" else sid)
        if sid in ("M01", "M04"):
            sp.write(r, 1, ">18")
        elif sid != "M16":
            sp.write(r, 1, float(age_n))
        sp.write(r, 2, intelligibility_text(sid))
        sp.write(r, 3, diag)
        sp.write(r, 4, "not recorded (synthetic corpus)")
        if cont:
            r += 1
            sp.write(r, 3, cont)
        r += 2
    r += 1
    sp.write(r, 0, "Note: ")
    sp.write(r + 1, 0, "i) M and F in Speaker codes indicate the gender: M for male, and F for female.")
    sp.write(r + 2, 0, "ii) Synthetic corpus written by uaspeech-prep synth: speech is espeak-ng, faces are drawn.")
    sp.write(r + 3, 0, "iii) Ages and motor control are placeholders; intelligibility follows the release.")
    wf = book.add_sheet("Word_filename")
    wf.write(0, 0, "WORD")
    wf.write(0, 1, "FILE NAME")
    for i, (key, word) in enumerate(table.items(), start=1):
        wf.write(i, 0, word)
        wf.write(i, 1, key)
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    book.save(str(tmp))
    os.replace(tmp, path)
