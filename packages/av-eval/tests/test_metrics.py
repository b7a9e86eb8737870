import json

import jiwer
import pytest

from av_eval import Prediction, normalize, read_predictions, score_predictions, score_texts, to_char_level, write_predictions
from av_eval.cli import main as av_eval_main


def test_normalize_hand_checked():
    assert normalize(" Three.") == "three"
    assert normalize("t h r e e") == "three"
    assert normalize("X-ray") == "xray"
    assert normalize("x - r a y") == "xray"
    assert normalize("x | r a y") == "x ray"
    assert normalize("  Hello,   World!! ") == "hello world"
    assert normalize("ＴＨＲＥＥ") == "three"  # NFKC full-width
    assert normalize("Ünïcödé") == "ünïcödé"
    assert normalize("a") == "a"  # one character is a word, not char-level text


def test_char_level_round_trip():
    for word in ["three", "x-ray", "able-bodied", "Pennsylvania"]:
        assert normalize(to_char_level(word)) == normalize(word)
    assert to_char_level("three") == "t h r e e"


def test_scores_hand_computed():
    # 4 utterances: 2 right, 1 substitution, 1 empty hypothesis (deletion).
    refs = ["three", "Echo", "delta", "bravo"]
    hyps = ["t h r e e", " echo.", "delt", ""]
    s = score_texts(refs, hyps)
    assert s.n == 4
    assert s.wer == pytest.approx(2 / 4)
    assert s.wsr == pytest.approx(2 / 4)
    # chars: three(5)+echo(4)+delta(5)+bravo(5) = 19; errors: 1 (delta->delt) + 5 (bravo deleted)
    assert s.cer == pytest.approx(6 / 19)
    assert s.word_errors == 2 and s.ref_words == 4


def test_pooled_equals_jiwer_on_normalised_text():
    refs = ["one two", "three", "four five six"]
    hyps = ["one", "tree", "four five six seven"]
    s = score_texts(refs, hyps)
    assert s.wer == pytest.approx(jiwer.wer(refs, hyps))
    assert s.cer == pytest.approx(jiwer.cer(refs, hyps))
    # pooled: (1 del + 1 sub + 1 ins) / 6 reference words, not the mean of per-utterance WERs
    assert s.wer == pytest.approx(3 / 6)


def test_empty_reference_is_rejected_with_the_utterance_named():
    with pytest.raises(ValueError, match="F02_B2_D3"):
        score_texts(["  ...  "], ["x"], ids=["F02_B2_D3"])


def test_per_level_total_and_macro():
    preds = [
        Prediction("M12_B2_D1", "one", "won", "M12", "very_low", "digit"),
        Prediction("M12_B2_D2", "two", "two", "M12", "very_low", "digit"),
        Prediction("F05_B2_D1", "one", "one", "F05", "high", "digit"),
        Prediction("F05_B2_C1", "command", "command", "F05", "high", "command"),
        Prediction("M08_B2_C1", "command", "common", "M08", "high", "command"),
        Prediction("M08_B2_C2", "backspace", "backspace", "M08", "high", "command"),
    ]
    r = score_predictions(preds)
    assert list(r.per_level) == ["very_low", "high"]
    assert r.per_level["very_low"].wer == pytest.approx(0.5)
    assert r.per_level["high"].wer == pytest.approx(0.25)
    assert r.total.wer == pytest.approx(2 / 6)  # pooled over utterances
    assert r.macro["wer"] == pytest.approx((0.5 + 0.25) / 2)  # equal weight per level
    assert r.per_speaker["M08"].wsr == pytest.approx(0.5)
    assert r.per_category["command"].wer == pytest.approx(1 / 3)


def test_unknown_level_is_an_error():
    with pytest.raises(ValueError, match="unknown intelligibility level"):
        score_predictions([Prediction("x", "a", "a", "M01", "severe")])


def test_predictions_round_trip_and_cli(tmp_path, capsys):
    preds = [Prediction("F02_B2_D3", "Three", "t h r e e", "F02", "low", "digit"),
             Prediction("F02_B2_D4", "Four", "for", "F02", "low", "digit")]
    path = write_predictions(tmp_path / "run_predictions.jsonl", preds)
    assert read_predictions(path) == preds
    assert av_eval_main(["score", str(path), "--output", str(tmp_path / "out")]) == 0
    data = json.loads((tmp_path / "out" / "run_metrics.json").read_text())
    assert data["per_level"]["low"]["wer"] == pytest.approx(0.5)
    assert (tmp_path / "out" / "run_metrics_levels.png").stat().st_size > 1000
    assert "| low |" in capsys.readouterr().out


def test_bad_predictions_file_names_file_and_line(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"utt_id": "a", "reference": "x", "hypothesis": "x"}\n{not json}\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:2"):
        read_predictions(bad)
