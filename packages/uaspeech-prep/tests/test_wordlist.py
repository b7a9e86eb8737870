"""Reading speaker_wordlist.xls / .xlsx: the synthetic copy, a hand-made .xlsx, and the real file."""

from __future__ import annotations

import zipfile
from pathlib import Path
from xml.sax.saxutils import escape

import pytest
import xlrd
import xlwt
from uaspeech_prep import corpus
from uaspeech_prep.synth.xls import write_wordlist_xls
from uaspeech_prep.wordlist import (
    WordlistError,
    compare_with_builtin,
    parse_intelligibility,
    read_speakers,
    read_wordlist,
)


@pytest.fixture(scope="module")
def synth_xls(tmp_path_factory) -> Path:
    p = tmp_path_factory.mktemp("wl") / "speaker_wordlist.xls"
    write_wordlist_xls(p)
    return p


def test_written_xls_mimics_the_release_structure(synth_xls):
    book = xlrd.open_workbook(str(synth_xls))
    assert book.sheet_names() == ["Speaker", "Word_filename"]
    sp = book.sheet_by_name("Speaker")
    assert sp.row_values(3) == ["Speaker", "Age", "Intelligibility (%)", "Diagnosis", "Motor Control"]
    col0 = sp.col_values(0)
    assert "M16 " in col0 and "M16" not in col0
    assert sp.row_values(col0.index("M01") + 1) == [""] * 5  # blank row between speakers
    texts = sp.col_values(2)
    assert "Very low (15%)" in texts and "high (93%)" in texts and "not obtained yet" in texts
    wf = book.sheet_by_name("Word_filename")
    assert wf.row_values(0) == ["WORD", "FILE NAME"] and wf.nrows == 456
    assert wf.row_values(1) == ["Three", "D3"]


def test_round_trip_of_written_xls(synth_xls):
    words = read_wordlist(synth_xls)
    assert words == corpus.builtin_wordlist()
    assert list(words) == list(corpus.builtin_wordlist())  # file order kept
    sp = read_speakers(synth_xls)
    for sid in corpus.DYSARTHRIC_SPEAKERS:
        assert sp[sid].intelligibility == corpus.SPEAKERS[sid].intelligibility
        assert sp[sid].level == corpus.level_of(sid)
        assert sp[sid].diagnosis == corpus.SPEAKERS[sid].diagnosis
    assert sp["F04"].diagnosis == "Athetoid (or mixed)"  # continued on the next row
    assert sp["M13"].intelligibility is None and sp["M13"].level is None
    assert sp["M16"].age == ""
    assert compare_with_builtin(synth_xls) == []


@pytest.mark.parametrize(
    "text, pct",
    [("Very low (15%)", 15.0), ("very low (7.4%)", 7.4), ("High (90.4%)", 90.4), ("high (93 %)", 93.0),
     ("not obtained yet", None), ("", None), ("62", 62.0)],
)
def test_parse_intelligibility(text, pct):
    assert parse_intelligibility(text) == pct


_XML = '<?xml version="1.0" encoding="UTF-8"?>'
_PKG = "http://schemas.openxmlformats.org/package/2006"
_OFF = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
_SML = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
_CT = "application/vnd.openxmlformats-officedocument.spreadsheetml"


def _write_xlsx(path: Path, sheets: dict[str, list[list[str]]]) -> None:
    """A minimal .xlsx (inline strings) without any writer library."""

    def col(i: int) -> str:
        s = ""
        i += 1
        while i:
            i, r = divmod(i - 1, 26)
            s = chr(65 + r) + s
        return s

    n = range(1, len(sheets) + 1)
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("[Content_Types].xml", _XML + f'<Types xmlns="{_PKG}/content-types">'
                   f'<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
                   '<Default Extension="xml" ContentType="application/xml"/>'
                   f'<Override PartName="/xl/workbook.xml" ContentType="{_CT}.sheet.main+xml"/>'
                   + "".join(f'<Override PartName="/xl/worksheets/sheet{i}.xml" ContentType="{_CT}.worksheet+xml"/>'
                             for i in n) + "</Types>")
        z.writestr("_rels/.rels", _XML + f'<Relationships xmlns="{_PKG}/relationships">'
                   f'<Relationship Id="rId1" Type="{_OFF}/officeDocument" Target="xl/workbook.xml"/></Relationships>')
        z.writestr("xl/workbook.xml", _XML + f'<workbook xmlns="{_SML}" xmlns:r="{_OFF}"><sheets>'
                   + "".join(f'<sheet name="{escape(name)}" sheetId="{i}" r:id="rId{i}"/>' for i, name in zip(n, sheets, strict=True))
                   + "</sheets></workbook>")
        z.writestr("xl/_rels/workbook.xml.rels", _XML + f'<Relationships xmlns="{_PKG}/relationships">'
                   + "".join(f'<Relationship Id="rId{i}" Type="{_OFF}/worksheet" Target="worksheets/sheet{i}.xml"/>' for i in n)
                   + "</Relationships>")
        for i, rows in zip(n, sheets.values(), strict=True):
            body = "".join(
                f'<row r="{r + 1}">' + "".join(
                    f'<c r="{col(c)}{r + 1}" t="inlineStr"><is><t xml:space="preserve">{escape(v)}</t></is></c>'
                    for c, v in enumerate(row) if v != "") + "</row>"
                for r, row in enumerate(rows))
            z.writestr(f"xl/worksheets/sheet{i}.xml", _XML + f'<worksheet xmlns="{_SML}"><sheetData>{body}</sheetData></worksheet>')


def test_xlsx_with_offsets_case_and_blank_rows(tmp_path):
    p = tmp_path / "speaker_wordlist.xlsx"
    _write_xlsx(p, {
        "Word_Filename": [["a title"], [], ["word", "File Name"], ["Three", " d3 "], [], ["naturalization", "B1_UW1"]],
        "SPEAKER": [["", "Demographic information"], [], ["", "", "Speech "],
                    ["Speaker", "Age", "Intelligibility (%)", "Diagnosis", "Motor Control"], [],
                    ["M16 ", "", "low (43%)", "Spastic", "x"], [],
                    ["F04", "18", "mid (62%)", "Athetoid", "y"], ["", "", "", "(or mixed)", ""], [],
                    ["M13", "44", "not obtained yet", "Spastic", ""], [], ["Note: "], ["i) M01 is a note, not a row"]],
    })
    assert read_wordlist(p) == {"D3": "Three", "B1_UW1": "naturalization"}
    sp = read_speakers(p)
    assert set(sp) == {"M16", "F04", "M13"}
    assert sp["M16"].intelligibility == 43.0 and sp["M16"].level == "low"
    assert sp["F04"].diagnosis == "Athetoid (or mixed)" and sp["F04"].age == "18"
    assert sp["M13"].intelligibility is None


def test_clear_errors_name_the_file(tmp_path):
    p = tmp_path / "broken.xls"
    book = xlwt.Workbook()
    sh = book.add_sheet("Word_filename")
    sh.write(0, 0, "WORD")
    sh.write(0, 1, "KEY")
    sh.write(1, 0, "Three")
    sh.write(1, 1, "D3")
    book.save(str(p))
    with pytest.raises(WordlistError, match=r"broken\.xls.*'FILE NAME'"):
        read_wordlist(p)
    with pytest.raises(WordlistError, match=r"broken\.xls: no sheet 'Speaker'"):
        read_speakers(p)
    with pytest.raises(FileNotFoundError, match="nowhere.xls"):
        read_wordlist(tmp_path / "nowhere.xls")
    (tmp_path / "w.csv").write_text("WORD,FILE NAME\n")
    with pytest.raises(WordlistError, match="unsupported"):
        read_wordlist(tmp_path / "w.csv")


# --- the real file (shared corpus files) ---------------------------------------------------------


def test_real_wordlist_words(real_wordlist):
    words = read_wordlist(real_wordlist)
    assert len(words) == 455
    assert len(set(words.values())) == 449
    assert {f"L{chr(c)}" for c in range(ord("A"), ord("Z") + 1)} <= set(words)
    assert words["B1_UW1"] == "naturalization"
    assert words["D3"] == "Three" and words["LX"] == "X-ray"
    assert words == corpus.builtin_wordlist()


def test_real_wordlist_speakers(real_wordlist):
    sp = read_speakers(real_wordlist)
    assert "M16" in sp and not any(k != k.strip() for k in sp)
    assert sp["M16"].intelligibility == 43.0
    for sid in corpus.DYSARTHRIC_SPEAKERS:
        assert sp[sid].intelligibility == pytest.approx(corpus.SPEAKERS[sid].intelligibility)
        assert sp[sid].level == corpus.level_of(sid)
    assert sp["F04"].diagnosis == corpus.SPEAKERS["F04"].diagnosis
    assert sp["M13"].intelligibility is None  # "not obtained yet"
    assert compare_with_builtin(real_wordlist) == []


def test_real_wordlist_read_the_same_by_both_backends(real_wordlist):
    from uaspeech_prep import wordlist

    assert wordlist._load_calamine(real_wordlist) == wordlist._load_sheets(real_wordlist)


def test_real_wordlist_speaker_table(real_wordlist):
    from uaspeech_prep.wordlist import load_speakers

    sp = load_speakers(real_wordlist)
    for sid in corpus.DYSARTHRIC_SPEAKERS:
        assert sp[sid] == corpus.SPEAKERS[sid]
    assert sp["M06"].level == "low" and sp["M13"].level is None  # listed, not released with audio
    assert all(sp[c].is_control for c in corpus.CONTROL_SPEAKERS)
    assert load_speakers() == corpus.SPEAKERS
    levels = {lvl: sorted(s for s in corpus.AV_SPEAKERS if sp[s].level == lvl) for lvl in corpus.LEVELS}
    assert levels == {"very_low": ["M12"], "low": ["F02", "M07", "M16"], "mid": ["F04", "M05", "M11"],
                      "high": ["F05", "M08", "M09", "M10", "M14"]}


def test_real_wordlist_exact_counts(real_wordlist):
    words = read_wordlist(real_wordlist)
    assert len(words) == 455 and len(set(words.values())) == 449
    assert sorted(k for k in words if k.startswith("L")) == [f"L{chr(c)}" for c in range(ord("A"), ord("Z") + 1)]
    by_cat = {c: sum(1 for k in words if corpus.category_of(k.split("_")[-1]) == c) for c in corpus.CATEGORIES}
    assert by_cat == {"digit": 10, "letter": 26, "command": 19, "common": 100, "uncommon": 300}
    dup = sorted({w for w in words.values() if list(words.values()).count(w) > 1})
    assert dup == ["choking", "equilibrium", "moustache", "powwow", "vouchsafe", "watch"]
    assert {"able-bodied", "ha-ha", "re-united", "roly-poly", "thirty-five", "X-ray"} <= set(words.values())
