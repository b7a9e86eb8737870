"""The video reliability of predictions: carried through the predictions file, summarised per level, reported
by `av-eval score`."""

import json

import pytest

from av_eval.cli import main
from av_eval.predictions import Prediction, read_predictions, write_predictions
from av_eval.reliability import reliability_markdown, reliability_per_level


def preds():
    rows = [("a", "very_low", 0.0), ("b", "very_low", 0.05), ("c", "very_low", 0.9), ("d", "high", 0.8),
            ("e", "high", 1.0)]
    return [Prediction(u, "word", "word", "S", lvl, "CW", video_reliability=r) for u, lvl, r in rows]


def test_round_trip_keeps_reliability_and_omits_it_when_absent(tmp_path):
    path = write_predictions(tmp_path / "p.jsonl", [*preds(), Prediction("f", "x", "x")])
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    assert lines[2]["video_reliability"] == 0.9 and "video_reliability" not in lines[5]
    assert [p.video_reliability for p in read_predictions(path)] == [0.0, 0.05, 0.9, 0.8, 1.0, None]


def test_a_non_numeric_reliability_is_named(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text(json.dumps({"utt_id": "u", "reference": "a", "hypothesis": "a", "video_reliability": "high"}) + "\n")
    with pytest.raises(ValueError, match=r"p.jsonl:1: field 'video_reliability' must be a number"):
        read_predictions(path)


def test_per_level_statistics_by_hand():
    stats = reliability_per_level(preds())
    assert list(stats) == ["very_low", "high", "total"]
    vl = stats["very_low"]
    assert vl["n"] == 3 and vl["mean"] == pytest.approx(0.3167, abs=1e-4) and vl["median"] == 0.05
    assert vl["low_share"] == pytest.approx(2 / 3, abs=1e-4)  # 0.0 and 0.05 are below 0.1
    assert stats["high"]["p10"] == pytest.approx(0.82) and stats["total"]["n"] == 5
    assert reliability_per_level([Prediction("u", "a", "a")]) is None
    assert "| m | very_low | 3 | 0.32 | 0.05 |" in reliability_markdown({"m": stats})


def test_score_writes_the_reliability_summary_and_plot(tmp_path):
    write_predictions(tmp_path / "run_predictions.jsonl", preds())
    assert main(["score", str(tmp_path / "run_predictions.jsonl"), "--output", str(tmp_path / "out")]) == 0
    summary = json.loads((tmp_path / "out" / "run_reliability.json").read_text())
    assert summary["high"]["mean"] == 0.9
    assert (tmp_path / "out" / "run_reliability.png").stat().st_size > 1000
