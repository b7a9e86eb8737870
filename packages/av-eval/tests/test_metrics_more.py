"""Metrics completeness: counts against jiwer, edge cases, unseen words, macro vs pooled."""

import json
import random

import jiwer
import numpy as np
import pytest

from av_eval import Prediction, normalize, Report, count_utterances, read_predictions, score_predictions, score_texts, write_predictions
from av_eval.metrics import training_words


def test_per_utterance_counts_equal_jiwer_per_utterance():
    rng = random.Random(3)
    words = ["one", "two", "three", "x ray", "alpha bravo", "echo", "zulu", "pennsylvania"]
    refs = [rng.choice(words) for _ in range(300)]
    hyps = [r if rng.random() < 0.4 else " ".join(rng.choice(words)[: rng.randint(0, 6)] for _ in range(rng.randint(0, 3)))
            for r in refs]
    c = count_utterances(refs, hyps)
    for i, (r, h) in enumerate(zip(refs, hyps)):
        w = jiwer.process_words(r, normalize(h))
        ch = jiwer.process_characters(r, normalize(h))
        assert c.word_errors[i] == w.substitutions + w.deletions + w.insertions, (r, h)
        assert c.char_errors[i] == ch.substitutions + ch.deletions + ch.insertions, (r, h)
    # pooled = one jiwer call over everything
    s = c.scores()
    assert s.wer == pytest.approx(jiwer.wer(refs, [normalize(h) for h in hyps]))
    assert s.cer == pytest.approx(jiwer.cer(refs, [normalize(h) for h in hyps]))


def test_edge_cases_hand_checked():
    # empty hypothesis: every reference word deleted
    s = score_texts(["alpha bravo"], [""])
    assert (s.wer, s.word_errors, s.ref_words, s.wsr) == (1.0, 2, 2, 0.0)
    assert s.cer == pytest.approx(11 / 11)  # 'alpha bravo' has 11 characters, the space included
    # extra spaces and punctuation do not count; insertions can push WER above 1
    s = score_texts(["  Delta  "], ["delta   delta, delta!"])
    assert (s.word_errors, s.wer) == (2, 2.0)
    assert score_texts(["Delta"], ["   DELTA.  "]).wsr == 1.0
    # unicode: NFKC folds full-width letters and composed / decomposed accents alike
    assert score_texts(["café"], ["cafe\u0301"]).wer == 0.0
    assert score_texts(["ｓｉｘ"], ["six"]).wsr == 1.0
    assert score_texts(["naïve"], ["naive"]).cer == pytest.approx(1 / 5)
    # character-level hypotheses are joined back to words
    assert score_texts(["Pennsylvania"], ["p e n n s y l v a n i a"]).wsr == 1.0


@pytest.mark.parametrize("ref", ["", "   ", "?!", "-"])
def test_empty_reference_rejected_naming_the_utterance(ref):
    with pytest.raises(ValueError, match=r"'M05_B2_C7'.*empty reference"):
        score_texts(["one", ref], ["one", "x"], ids=["M05_B2_C6", "M05_B2_C7"])


def test_length_mismatch_and_nothing_to_score():
    with pytest.raises(ValueError, match="2 references but 1 hypotheses"):
        score_texts(["a", "b"], ["a"])
    with pytest.raises(ValueError, match="nothing to score"):
        score_predictions([])


def test_unseen_words_macro_and_from_dict(tmp_path):
    preds = [
        Prediction("M12_B2_D1", "One", "one", "M12", "very_low", "digit"),
        Prediction("M12_B2_UW1", "Pennsylvania", "pencil", "M12", "very_low", "uncommon"),
        Prediction("F05_B2_D1", "One", "one", "F05", "high", "digit"),
        Prediction("F05_B2_UW1", "Pennsylvania", "pennsylvania", "F05", "high", "uncommon"),
        Prediction("F05_B2_UW2", "Naturalization", "nature", "F05", "high", "uncommon"),
        Prediction("F04_B2_D1", "One", "won", "F04", "mid", "digit"),
    ]
    manifest = tmp_path / "manifest.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in [
        {"utt_id": "F05_B1_D1", "split": "train", "word": "One"},
        {"utt_id": "F05_B2_UW1", "split": "test", "word": "Pennsylvania"},
    ]))
    words = training_words(tmp_path)
    assert words == {"one"}
    r = score_predictions(preds, train_words=words)
    assert r.per_seen["seen"].n == 3 and r.per_seen["seen"].wer == pytest.approx(1 / 3)
    assert r.per_seen["unseen"].n == 3 and r.per_seen["unseen"].wer == pytest.approx(2 / 3)
    assert r.per_level_unseen["high"].wer == pytest.approx(1 / 2)
    assert list(r.per_level_unseen) == ["very_low", "high"]
    # pooled total vs macro over levels (very_low 1/2, mid 1/1, high 1/3) vs macro over speakers
    assert r.total.wer == pytest.approx(3 / 6)
    assert r.macro["wer"] == pytest.approx((1 / 2 + 1 / 1 + 1 / 3) / 3)
    assert r.macro_speaker["wer"] == pytest.approx((1 / 2 + 1 / 1 + 1 / 3) / 3)
    assert list(r.per_level) == ["very_low", "mid", "high"]  # canonical order, absent levels left out
    assert Report.from_dict(json.loads(json.dumps(r.as_dict()))).as_dict() == r.as_dict()
    assert r.value("unseen", "wsr") == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="no manifest"):
        training_words(tmp_path / "nowhere")


def test_route_probs_round_trip_and_optional(tmp_path):
    preds = [Prediction("a", "x", "x", "F02", "low", "digit", (0.2, 0.3, 0.5)), Prediction("b", "y", "z")]
    path = write_predictions(tmp_path / "p.jsonl", preds)
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert "route_probs" not in lines[1] and lines[0]["route_probs"] == [0.2, 0.3, 0.5]
    assert read_predictions(path) == preds
    (tmp_path / "bad.jsonl").write_text('{"utt_id": "a", "reference": 3, "hypothesis": "x"}\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:1: field 'reference' must be a string"):
        read_predictions(tmp_path / "bad.jsonl")


def test_large_group_scores_equal_pooled_jiwer_per_group():
    rng = np.random.default_rng(0)
    words = ["one", "two", "three", "command", "backspace"]
    preds = []
    for i in range(2000):
        ref = words[rng.integers(5)]
        hyp = ref if rng.random() < 0.5 else words[rng.integers(5)][: rng.integers(1, 6)]
        lvl = ["very_low", "low", "mid", "high"][rng.integers(4)]
        preds.append(Prediction(f"u{i}", ref, hyp, f"S{rng.integers(5)}", lvl, "digit"))
    r = score_predictions(preds)
    for lvl, s in r.per_level.items():
        grp = [p for p in preds if p.level == lvl]
        assert s.wer == pytest.approx(jiwer.wer([p.reference for p in grp], [p.hypothesis for p in grp]))
        assert s.cer == pytest.approx(jiwer.cer([p.reference for p in grp], [p.hypothesis for p in grp]))
        assert s.wsr == pytest.approx(np.mean([p.reference == p.hypothesis for p in grp]))
    assert sum(s.n for s in r.per_level.values()) == r.total.n == 2000


def test_docs_worked_example():
    """The example of docs/METRICS.md section 4, number for number."""
    preds = [
        Prediction("M12_B2_D3", "Three", "t h r e e", "M12", "very_low", "digit"),
        Prediction("M12_B2_LA", "Alpha", "", "M12", "very_low", "letter"),
        Prediction("F05_B2_D3", "Three", "Three.", "F05", "high", "digit"),
        Prediction("F05_B2_UW12", "X-ray", "x ray", "F05", "high", "uncommon"),
        Prediction("F05_B2_CW5", "Hello", "yellow", "F05", "high", "common"),
        Prediction("M09_B2_C7", "Backspace", "backspace", "M09", "high", "command"),
    ]
    r = score_predictions(preds, train_words=["three", "alpha", "hello", "backspace"])
    assert (r.per_level["very_low"].wer, r.per_level["very_low"].cer, r.per_level["very_low"].wsr) == (0.5, 0.5, 0.5)
    assert (r.per_level["high"].wer, r.per_level["high"].cer) == (0.75, pytest.approx(3 / 23))
    assert (r.total.wer, r.total.cer, r.total.wsr) == (pytest.approx(4 / 6), pytest.approx(8 / 33), 0.5)
    assert r.macro["wer"] == 0.625 and r.macro["cer"] == pytest.approx((0.5 + 3 / 23) / 2)
    assert r.macro_speaker["wer"] == pytest.approx(0.5) and r.macro_speaker["wsr"] == pytest.approx(11 / 18)
    assert r.per_seen["seen"].wer == 0.4 and r.per_seen["seen"].cer == pytest.approx(7 / 29)
    assert (r.per_seen["unseen"].wer, r.per_seen["unseen"].cer) == (2.0, 0.25)
    per_utt = count_utterances([p.reference for p in preds], [p.hypothesis for p in preds])
    assert per_utt.word_errors.tolist() == [0, 1, 0, 2, 1, 0]
    assert per_utt.char_errors.tolist() == [0, 5, 0, 1, 2, 0]


def test_a_duplicated_utterance_is_refused_not_scored_twice(tmp_path):
    import json

    from av_eval import read_predictions

    row = {"utt_id": "M12_B2_D1_M5", "reference": "one", "hypothesis": "two"}
    path = tmp_path / "p.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in [row, {**row, "utt_id": "M12_B2_D2_M5"}, row]) + "\n")
    with pytest.raises(ValueError, match=r"p.jsonl:3: utterance 'M12_B2_D1_M5' was already on line 1"):
        read_predictions(path)
