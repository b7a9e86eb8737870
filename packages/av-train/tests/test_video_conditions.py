"""`noise-eval --video`: lip-video faults of av_fusion_models.video_faults on the evaluation dataset's frames,
the partners of the two wrong-lips conditions, several conditions in one call (summary files, audio-only runs
decoded once) and the command's checks, on the tiny prepared tree of conftest.py."""

from __future__ import annotations

import csv
import json

import pytest
import torch

from av_eval import read_predictions
from av_train.config import from_dict
from av_train.data.dataset import UASpeechAVDataset
from av_train.data.manifest import load_samples
from av_train.evaluation import noise as noise_mod
from av_train.evaluation.noise_command import main as noise_main


@pytest.fixture(scope="module")
def av_set(prepared_tree, tiny_whisper_dir):
    """The B2 clips of the tiny tree (2 speakers x 4 words) with their video, as evaluation reads them."""
    cfg = from_dict({"uaspeech_root": str(prepared_tree), "model_name": str(tiny_whisper_dir),
                     "local_model_only": True, "microphones": ["M5"], "modality": "audio_visual"})
    samples, _ = load_samples(cfg.uaspeech_root, "test", ["M5"], None, need_video=True, vocabulary=cfg.vocabulary)
    samples = [s for s in samples if s.block == "B2"]
    base = UASpeechAVDataset(samples, None, True, train=False, cache_features=False)
    return samples, base


def _faulted(base, name, **kw):
    return noise_mod.NoisyEvalDataset(base, "babble", None, video=name, **kw)


def test_index_conditions_move_frames_as_defined(av_set):
    samples, base = av_set
    conds = {c: _faulted(base, c) for c in ("clean", "late-120ms", "early-120ms", "fps-5", "frozen")}
    for i in range(len(samples)):
        own = base.video(i)
        t = own.shape[0]
        assert own.dtype == torch.uint8 and own.shape[1:] == (88, 88)
        got = {c: ds.video(i) for c, ds in conds.items()}
        assert all(g.shape == own.shape and g.dtype == torch.uint8 for g in got.values())
        assert torch.equal(got["clean"], own)
        for k in range(t):
            # 120 ms at 25 fps = 3 frames; late: the picture lags (frame k shows k - 3, the first frame held)
            assert torch.equal(got["late-120ms"][k], own[max(k - 3, 0)])
            assert torch.equal(got["early-120ms"][k], own[min(k + 3, t - 1)])
            assert torch.equal(got["fps-5"][k], own[(k // 5) * 5])  # each 5th frame held for 5 frames
            assert torch.equal(got["frozen"][k], own[0])
        # the tree's frames alternate in brightness, so a 3-frame shift changes every frame after the held ones
        assert not torch.equal(got["late-120ms"][3:], own[3:]) and not torch.equal(got["early-120ms"][:-3], own[:-3])


def test_pixel_conditions_black_out_rows_or_frames_and_blur(av_set):
    samples, base = av_set
    occluded, quarter = _faulted(base, "occluded"), _faulted(base, "occluded-25")
    black, half = _faulted(base, "black"), _faulted(base, "black-50")
    blur = _faulted(base, "blur-2")
    for i in range(len(samples)):
        own = base.video(i)
        t = own.shape[0]
        occ = occluded.video(i)
        assert torch.equal(occ[:, :44], own[:, :44]) and (occ[:, 44:] == 0).all()  # lower 50 % of 88 rows
        q = quarter.video(i)
        assert torch.equal(q[:, :66], own[:, :66]) and (q[:, 66:] == 0).all()  # lower 22 rows
        assert (black.video(i) == 0).all()  # default 100 %: the whole clip
        h = half.video(i)
        n = round(0.5 * t)
        start = (t - n) // 2  # the middle half of the frames
        assert (h[start:start + n] == 0).all()
        assert torch.equal(h[:start], own[:start]) and torch.equal(h[start + n:], own[start + n:])
        b = blur.video(i)
        # a flat patch (the background above the bands) stays as it was within the kernel's reach (radius 6 px)
        flat = own[:, :11, 20:68]
        assert (flat == flat[0, 0, 0]).all()
        assert torch.equal(b[:, :5, 26:62], own[:, :5, 26:62])
        assert (b.float().mean() - own.float().mean()).abs() < 1.0
        sharp = (own[:, 1:].float() - own[:, :-1].float()).abs().max()
        assert (b[:, 1:].float() - b[:, :-1].float()).abs().max() < sharp


def test_wrong_lips_partners_and_their_frames(av_set):
    samples, base = av_set
    for seed in (0, 3):
        partners = noise_mod.other_speaker_partners(samples, seed)
        assert partners == noise_mod.other_speaker_partners(samples, seed)  # deterministic per seed
        for i, p in enumerate(partners):
            assert samples[p].speaker != samples[i].speaker and samples[p].word != samples[i].word
        ds = _faulted(base, "other_speaker", seed=seed)
        for i, p in enumerate(partners):
            own, other = base.video(i), base.video(p)
            got = ds.video(i)
            assert got.shape == own.shape  # stretched to the clip's own length
            t, s = own.shape[0], other.shape[0]
            for k in range(t):  # the nearest partner frame at the same relative time (halves up)
                assert torch.equal(got[k], other[(2 * k * (s - 1) + (t - 1)) // (2 * (t - 1))])
    # over seeds the partner varies (three candidates per clip here: another speaker's three other words)
    draws = {tuple(noise_mod.other_speaker_partners(samples, seed)) for seed in range(6)}
    assert len(draws) > 1
    mism = noise_mod.mismatched_partners(samples, 3)
    assert all(samples[p].speaker == samples[i].speaker and samples[p].word != samples[i].word
               for i, p in enumerate(mism))
    one = [s for s in samples if s.speaker == samples[0].speaker]
    with pytest.raises(ValueError, match="one speaker .*at least two speakers"):
        noise_mod.other_speaker_partners(one)
    with pytest.raises(ValueError, match="one speaker"):  # the dataset checks when it is built
        _faulted(UASpeechAVDataset(one, None, True, train=False, cache_features=False), "other_speaker")
    same_word = [s for s in samples if s.word == samples[0].word]
    with pytest.raises(ValueError, match="at least two words"):
        noise_mod.other_speaker_partners(same_word)


def test_condition_names_are_checked_first():
    conds = noise_mod.parse_video_conditions(["clean", "Late-200ms", "late-200ms", "occluded", "fps-5"])
    assert [c.name for c in conds] == ["clean", "late-200ms", "occluded", "fps-5"]  # duplicates dropped
    assert [(c.kind, c.value) for c in conds[1:]] == [("offset", 5.0), ("occluded", 50.0), ("fps", 5.0)]
    with pytest.raises(ValueError, match=r"'sideways'.*late-<N>ms.*other_speaker"):
        noise_mod.parse_video_conditions(["clean", "sideways"])


@pytest.fixture(scope="module")
def two_runs(prepared_tree, tiny_whisper_dir, make_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("vruns")
    audio = make_run(prepared_tree, tiny_whisper_dir, out, seed=1, train_id="a_only")
    av = make_run(prepared_tree, tiny_whisper_dir, out, seed=2, train_id="av", modality="audio_visual",
                  fusion_location="both", resnet_width=4, gate_init=0.5)
    return audio.checkpoint_dir / "best.ckpt", av.checkpoint_dir / "best.ckpt"


def test_several_conditions_decode_audio_only_runs_once_and_write_a_summary(two_runs, tmp_path, monkeypatch):
    audio, av = two_runs
    decoded, loaded, mels = [], [], []
    real_decode, real_load, real_mel = noise_mod.decode_runs, noise_mod.load_run, noise_mod.log_mel
    monkeypatch.setattr(noise_mod, "decode_runs", lambda runs, *a, **k: decoded.append(runs[0].name)
                        or real_decode(runs, *a, **k))
    monkeypatch.setattr(noise_mod, "load_run", lambda ckpt, **k: loaded.append(ckpt) or real_load(ckpt, **k))
    monkeypatch.setattr(noise_mod, "log_mel", lambda *a: mels.append(1) or real_mel(*a))
    conds = ["clean", "frozen", "late-120ms"]
    res = noise_mod.evaluate_video_conditions([audio, av], "babble", [None, 0.0], tmp_path, conditions=conds,
                                              talkers=2, progress=False)
    # the audio-only run: once per SNR (not once per condition and SNR); the AV run every time; each loaded once
    assert decoded.count("a_only") == 2 and decoded.count("av") == 6
    assert loaded == [audio, av]
    # the noisy log-mels do not depend on the video: made once per clip and SNR (8 clips, the same set for both)
    assert len(mels) == 2 * 8
    for snr in ("clean", "0"):
        files = [tmp_path / "a_only" / f"predictions_B2_babble_{snr}{tag}.jsonl"
                 for tag in ("", "_video-frozen", "_video-late-120ms")]
        hyps = [[(p.utt_id, p.hypothesis) for p in read_predictions(f)] for f in files]
        assert len(hyps[0]) == 8 and hyps[0] == hyps[1] == hyps[2]
        assert (tmp_path / "av" / f"predictions_B2_babble_{snr}_video-late-120ms.jsonl").is_file()
    # each condition's own files, named as a single --video call names them
    assert [r["json"].name for r in res["conditions"].values()] == [
        "noise_babble.json", "noise_babble_video-frozen.json", "noise_babble_video-late-120ms.json"]
    summary = json.loads(res["json"].read_text())
    assert res["json"].name == "video_faults_babble.json" and summary["video"] == conds
    for c in conds:
        per = json.loads((tmp_path / ("noise_babble.json" if c == "clean" else f"noise_babble_video-{c}.json"))
                         .read_text())
        for run in ("a_only", "av"):
            for snr in ("clean", "0"):
                assert summary["wer"][run][c][snr]["total"] == per["runs"][run][snr]["total"]["wer"]
                assert summary["wer"][run][c][snr]["high"] == per["runs"][run][snr]["per_level"]["high"]["wer"]
    rows = list(csv.DictReader(res["csv"].open()))
    assert len(rows) == 2 * 3 * 2
    assert list(rows[0]) == ["run", "video", "snr_db", "wer_total", "wer_very_low", "wer_high"]
    row = next(r for r in rows if r["run"] == "av" and r["video"] == "frozen" and r["snr_db"] == "0")
    assert float(row["wer_total"]) == pytest.approx(summary["wer"]["av"]["frozen"]["0"]["total"])
    assert res["png"].name == "video_faults_babble.png" and res["png"].stat().st_size > 5000
    # what is carried across conditions changes nothing: the AV run alone under one condition decodes the same
    monkeypatch.undo()
    alone = noise_mod.evaluate_noise([av], "babble", [None, 0.0], tmp_path / "alone", talkers=2, progress=False,
                                     video="late-120ms")
    assert alone["curves"]["av"] == res["wer"]["av"]["late-120ms"]
    for snr in ("clean", "0"):
        name = f"predictions_B2_babble_{snr}_video-late-120ms.jsonl"
        assert ([p.hypothesis for p in read_predictions(tmp_path / "alone" / "av" / name)]
                == [p.hypothesis for p in read_predictions(tmp_path / "av" / name)])
    # one condition: no summary
    one = noise_mod.evaluate_video_conditions([audio], "babble", [0.0], tmp_path / "one", conditions=["frozen"],
                                              talkers=2, progress=False)
    assert one["json"] is None and not (tmp_path / "one" / "video_faults_babble.json").exists()


def test_video_faults_table_formats_total_wer_per_condition():
    wer = {"a": {"clean": {"clean": {"total": 0.075}, "0": {"total": 0.1875}}},
           "b": {"clean": {"clean": {"total": 0.004}, "0": {"total": 0.008}}, "frozen": {"clean": 0.142}}}
    cols = [("audio clean", "a", "clean"), ("AV clean", "b", "clean"), ("AV 0 dB", "b", "0")]
    table = noise_mod.video_faults_table(wer, cols, ["clean", "frozen"], row_names={"clean": "good"})
    assert table == ("| video | audio clean | AV clean | AV 0 dB |\n|---|---:|---:|---:|\n"
                     "| good | 7.5 | 0.4 | 0.8 |\n| frozen | - | 14.2 | - |\n")


def test_the_command_takes_several_conditions_and_refuses_a_wrong_one_before_loading(two_runs, tmp_path, capsys):
    audio, _ = two_runs
    out = tmp_path / "out"
    rc = noise_main([str(audio), "--snrs", "0", "--video", "clean", "nonsense", "--output", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and "'nonsense'" in err and "occluded[-<P>]" in err and not out.exists()
    rc = noise_main([str(audio), "--snrs", "0", "--talkers", "2", "--video", "clean", "blur", "--output", str(out),
                     "--no-progress"])
    printed = capsys.readouterr().out
    assert rc == 0 and "| video | a_only 0 dB |" in printed and "| blur |" in printed
    assert (out / "video_faults_babble.csv").is_file() and (out / "noise_babble_video-blur.json").is_file()
