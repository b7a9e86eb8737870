"""The typed ``manifest.jsonl`` record: exact round trips, partial records, line errors that name the line,
atomic writing and the merge of a partial run."""

from __future__ import annotations

import json

import pytest

from uaspeech_prep.manifest import (
    ADDED_FIELDS,
    CORE_FIELDS,
    ManifestLineError,
    ManifestRecord,
    RecordError,
    merge_records,
    read_lines,
    read_records,
    write_manifest,
)
from uaspeech_prep.video_io import find_temps


def _rec(utt_id: str = "F02_B1_D3", speaker: str = "F02", **kw) -> dict:
    d = {"utt_id": utt_id, "speaker": speaker, "level": "low", "block": utt_id.split("_")[1], "split": "train",
         "word_id": utt_id.split("_")[2], "word": "Three", "category": "digit",
         "audio": {"M5": f"audio/{speaker}/{utt_id}_M5.wav"}, "clip": None, "roi": f"video/roi/{speaker}/{utt_id}.mp4",
         "roi_fps": 25.0, "roi_frames": 27, "audio_offset_s": 0.0, "duration_s": 1.08, "seen_in_train": True,
         "audio_vad": None, "vad_start_s": None, "vad_end_s": None, "vad_roi_frames": [1, 20]}
    d.update(kw)
    return d


def test_a_full_record_writes_the_layout_in_order():
    rec = ManifestRecord.from_dict(_rec())
    assert list(rec.to_dict()) == list(CORE_FIELDS + ADDED_FIELDS) and rec.absent == ()
    assert rec.to_json() == json.dumps(_rec(), ensure_ascii=False)
    assert rec.roi_frames == 27 and rec.has("seen_in_train")


def test_absent_and_unknown_fields_survive_a_round_trip():
    old = {k: v for k, v in _rec(word="Zürich").items() if k not in ADDED_FIELDS}  # a tree from before the fields
    rec = ManifestRecord.from_dict(old)
    assert rec.seen_in_train is None and not rec.has("seen_in_train")
    assert rec.to_json() == json.dumps(old, ensure_ascii=False) and "Zürich" in rec.to_json()
    newer = {**_rec(), "lip_quality": 0.9}
    assert ManifestRecord.from_dict(newer).to_dict() == newer


def test_required_fields_are_checked():
    with pytest.raises(RecordError, match=r"missing field\(s\) \['split'\]"):
        ManifestRecord.from_dict({k: v for k, v in _rec().items() if k != "split"})
    with pytest.raises(RecordError, match="not a JSON object"):
        ManifestRecord.from_dict([1, 2])
    with pytest.raises(RecordError, match="utt_id is not a string"):
        ManifestRecord.from_dict({**_rec(), "utt_id": 7})
    partial = ManifestRecord.from_dict({"speaker": "F02", "block": "B1", "word_id": "D3"},
                                       require=("speaker", "block", "word_id"))
    assert partial.utt_id is None and not partial.has("utt_id") and partial.has("block")


def test_bad_lines_name_the_file_and_line(tmp_path):
    path = tmp_path / "manifest.jsonl"
    path.write_text(json.dumps(_rec()) + "\n\n" + "{broken\n" + "[1]\n" + json.dumps({"utt_id": "x"}) + "\n")
    lines = list(read_lines(path))
    assert [ln.lineno for ln in lines] == [1, 3, 4, 5]
    assert lines[1].data is None and lines[1].why.startswith("not valid JSON (")
    assert lines[2].why == "not a JSON object"
    with pytest.raises(ManifestLineError) as e:
        read_records(path)
    assert e.value.lineno == 3 and str(e.value).startswith(f"{path}:3: not valid JSON")
    with pytest.raises(ManifestLineError, match=r"manifest.jsonl:5: missing field\(s\) \['speaker'"):
        lines[3].record()


def test_write_is_atomic_and_merge_keeps_the_other_speakers(tmp_path):
    path = tmp_path / "out" / "manifest.jsonl"
    old = [ManifestRecord.from_dict(_rec(u, u[:3])) for u in ("M05_B1_D3", "F02_B1_D3", "F03_B2_D1")]
    write_manifest(path, old)
    assert not find_temps(path.parent)
    assert read_records(path) == old
    assert path.read_text(encoding="utf-8") == "".join(json.dumps(_rec(u, u[:3])) + "\n"
                                                     for u in ("M05_B1_D3", "F02_B1_D3", "F03_B2_D1"))
    new = [ManifestRecord.from_dict(_rec("F02_B2_D0", "F02"))]
    merged = merge_records(read_records(path), new, {"F02"})
    assert [r.utt_id for r in merged] == ["F03_B2_D1", "M05_B1_D3", "F02_B2_D0"]  # kept ones sorted, then the run's
    assert merge_records([], new, set()) == new
