"""Seed statistics, reports and checkpoint-folder evaluation through the predictor protocol."""

import csv
import json
import math
from pathlib import Path

import pytest

from av_eval import Prediction, per_speaker_table, score_predictions, summarize, summarize_reports, write_summary
from av_eval.cli import evaluate_folder, group_seeds, main
from av_eval.predictors import CheckpointPredictions, NoPredictorError, find_predictor
from av_eval.report import plot_route_probs, plot_wer_vs_snr, route_probs_per_level, summary_table


def test_summarize_against_hand_computed_t_interval():
    s = summarize([0.30, 0.40, 0.50])
    assert s.mean == pytest.approx(0.40)
    assert s.std == pytest.approx(0.10)  # sample std, ddof = 1
    half = 4.302652729911275 * 0.10 / math.sqrt(3)  # t(0.975, 2)
    assert (s.ci95_low, s.ci95_high) == (pytest.approx(0.40 - half), pytest.approx(0.40 + half))
    one = summarize([0.25])
    assert one.mean == 0.25 and math.isnan(one.std) and one.as_dict()["ci95_low"] is None
    with pytest.raises(ValueError):
        summarize([])


def _preds(wrong: int, route=None):
    out = []
    for i in range(4):
        out.append(Prediction(f"M12_B2_D{i}", "one", "won" if i < wrong else "one", "M12", "very_low", "digit", route))
        out.append(Prediction(f"F05_B2_D{i}", "two", "two", "F05", "high", "digit", route))
    return out


def test_seed_summary_files(tmp_path):
    runs = {f"av_{k}": score_predictions(_preds(k)) for k in (1, 2, 3)}
    s = summarize_reports(runs)
    assert s.stats["very_low"]["wer"].mean == pytest.approx(0.5)  # (1/4 + 2/4 + 3/4) / 3
    assert s.stats["high"]["wer"].std == 0.0
    assert "unseen" not in s.stats  # no training vocabulary given
    paths = write_summary(s, tmp_path / "av_seed_validation.json", title="av")
    data = json.loads(paths["json"].read_text())
    assert data["summary"]["total"]["wer"]["n"] == 3
    rows = list(csv.DictReader(paths["csv"].open()))
    assert [r["row"] for r in rows] == ["av_1", "av_2", "av_3", "mean", "std", "ci95_low", "ci95_high"]
    assert float(rows[1]["very_low_wer"]) == pytest.approx(0.5)
    assert paths["png"].stat().st_size > 1000
    table = summary_table({"av": s, "audio": summarize_reports({"a_1": runs["av_1"]})})
    assert "| av | 3 | 50.0 ± " in table and "| audio | 1 | 25.0 |" in table


def test_route_probs_and_snr_plots(tmp_path):
    preds = _preds(1, route=(0.1, 0.2, 0.7))[:4] + _preds(1, route=(0.3, 0.4, 0.3))[4:]
    r = route_probs_per_level(preds)
    assert r["very_low"] == pytest.approx([0.2, 0.3, 0.5]) and r["high"] == pytest.approx([0.2, 0.3, 0.5])
    assert route_probs_per_level(_preds(1)) is None
    assert plot_route_probs({"soft": r}, tmp_path / "r.png").stat().st_size > 1000
    curves = {"audio": {"clean": {"total": 0.1, "high": 0.05}, "0": {"total": 0.5, "high": 0.3}},
              "av": {"clean": {"total": 0.08}, "0": {"total": 0.3}}}
    assert plot_wer_vs_snr(curves, tmp_path / "snr.png").stat().st_size > 1000


def test_group_seeds():
    assert group_seeds(["av_1", "av_2", "audio", "x_10"]) == {"av": ["av_1", "av_2"], "audio": ["audio"], "x": ["x_10"]}


class FakePredictor:
    """Stands in for av-train: 'checkpoints' are files named *.fake; each decodes to fixed text."""

    name = "fake"

    def find_checkpoints(self, folder: Path) -> list[Path]:
        return sorted(Path(folder).rglob("*.fake"))

    def predict(self, checkpoint, split="B2", data=None, progress=True):
        wrong = int(checkpoint.read_text())
        route = (0.2, 0.3, 0.5) if "soft" in checkpoint.parent.name else None
        return CheckpointPredictions(checkpoint, checkpoint.parent.name, _preds(wrong, route), {"one", "two"})


def test_evaluate_folder_with_a_predictor(tmp_path):
    for name, wrong in (("av_1", 1), ("av_2", 3), ("soft_1", 0)):
        (tmp_path / "ck" / name).mkdir(parents=True)
        (tmp_path / "ck" / name / "best.fake").write_text(str(wrong))
    res = evaluate_folder(tmp_path / "ck", output=tmp_path / "out", predictors=[FakePredictor()], progress=False)
    assert set(res["reports"]) == {"av_1", "av_2", "soft_1"}
    assert res["summaries"]["av"].stats["very_low"]["wer"].mean == pytest.approx(0.5)
    assert (tmp_path / "out" / "av_2" / "predictions_B2.jsonl").is_file()
    assert (tmp_path / "out" / "av_seed_summary.json").is_file()
    assert (tmp_path / "out" / "route_probs_levels.png").is_file()
    md = (tmp_path / "out" / "summary.md").read_text()
    assert "| av | 2 | 50.0 ± " in md and "soft_1: very_low 0.20/0.30/0.50" in md
    with pytest.raises(FileNotFoundError, match="no checkpoints under"):
        find_predictor(tmp_path / "out", [FakePredictor()])


def test_no_predictor_installed_is_a_clear_error(tmp_path, monkeypatch, capsys):
    import av_eval.predictors as mod

    monkeypatch.setattr(mod, "entry_points", lambda group: [])
    with pytest.raises(NoPredictorError, match="Install av-train"):
        find_predictor(tmp_path)
    assert main([str(tmp_path)]) == 2  # `av-eval DIR` is `av-eval eval DIR`
    assert "no checkpoint predictor is installed" in capsys.readouterr().err


def test_compare_reads_seed_summaries_back(tmp_path, capsys):
    a = summarize_reports({f"audio_{k}": score_predictions(_preds(k)) for k in (2, 3)})
    b = summarize_reports({f"av_{k}": score_predictions(_preds(k)) for k in (0, 1)}, ensemble=score_predictions(_preds(0)))
    write_summary(a, tmp_path / "audio_seed_validation.json")
    write_summary(b, tmp_path / "av_seed_validation.json")
    from av_eval.aggregate import load_summary

    back = load_summary(tmp_path / "av_seed_validation.json")
    assert back.stats["very_low"]["wer"] == b.stats["very_low"]["wer"] and back.ensemble is not None
    assert main(["compare", str(tmp_path / "audio_seed_validation.json"), f"AV={tmp_path / 'av_seed_validation.json'}",
                 "--output", str(tmp_path / "cmp")]) == 0
    md = (tmp_path / "cmp" / "compare.md").read_text()
    assert "| audio | 2 | 62.5 ± " in md and "| AV | 2 | 12.5 ± " in md and "True ensembles" in md
    assert (tmp_path / "cmp" / "compare_wer_levels.png").stat().st_size > 1000
    (tmp_path / "junk.json").write_text("{}")
    assert main(["compare", str(tmp_path / "junk.json"), "--output", str(tmp_path / "x")]) == 2
    assert "not a seed summary" in capsys.readouterr().err


def test_paired_bootstrap_gain():
    from av_eval.aggregate import paired_bootstrap_gain
    from av_eval.metrics import count_utterances

    refs = [f"word{i}" for i in range(40)]
    a = count_utterances(refs, ["x"] * 20 + refs[20:])  # 20 of 40 wrong: WER 0.5
    b = count_utterances(refs, ["x"] * 4 + refs[4:])  # 4 of 40 wrong: WER 0.1
    gain, low, high = paired_bootstrap_gain(a, b, resamples=500)
    assert gain == pytest.approx(0.4)
    assert 0.2 < low < 0.4 < high < 0.6  # b is better on every resample of these words
    same = paired_bootstrap_gain(a, a, resamples=200)
    assert same == (0.0, 0.0, 0.0)
    with pytest.raises(ValueError, match="same utterances"):
        paired_bootstrap_gain(a, count_utterances(refs[:10], refs[:10]))


def test_per_speaker_table():
    table = per_speaker_table(score_predictions(_preds(1)))
    assert table.splitlines()[:2] == ["| speaker | WER | CER | WSR | n |", "|---|---:|---:|---:|---:|"]
    assert "| M12 | 25.0 |" in table and "| F05 | 0.0 | 0.0 | 100.0 | 4 |" in table
