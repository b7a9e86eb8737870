"""Checkpoint evaluation: loading runs from their folders, (ensemble) decoding, multi-seed
validation, noise robustness and the av-eval entry point, on a tiny random Whisper."""

from __future__ import annotations

import csv
import json
import math
import os
import pickle

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from av_eval import read_predictions, score_predictions
from av_eval.cli import main as av_eval_main
from av_eval.predictors import load_predictors
from av_train.checkpoints import CheckpointError
from av_train.config import from_dict
from av_train.data import noise as data_noise
from av_train.evaluation import noise as noise_mod
from av_train.evaluation.decoding import decode_batch, decode_runs, eval_samples
from av_train.model_io import model_inputs
from av_train.evaluation.loading import find_checkpoints, load_run
from av_train.evaluation.predictor import AVTrainPredictor
from av_train.evaluation.validate_ensemble_command import main as validate_ensemble_main
from av_train.model_factory import build_model


def _cfg(tree, model, out, **kw):
    base = {
        "uaspeech_root": str(tree), "model_name": str(model), "local_model_only": True, "output_root": str(out),
        "train_name": "t", "batch_size": 8, "num_workers": 0, "progress_bar": False, "max_new_tokens": 6,
        "microphones": ["M5"],
    }
    return from_dict({**base, **kw})


def make_run(cfg, seed: int, name: str = "best.ckpt"):
    """A checkpoint as av-train writes it (Lightning dict, `model.` prefix, config.yaml beside it),
    with weights perturbed per seed so that seeds decode differently."""
    model, *_ = build_model(cfg)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            scale = max(float(p.std()), 0.02) if p.numel() > 1 else 0.02
            p.add_(0.5 * scale * torch.randn(p.shape, generator=g))
    cfg.checkpoint_dir.mkdir(parents=True, exist_ok=True)
    cfg.save(cfg.checkpoint_dir / "config.yaml")
    path = cfg.checkpoint_dir / name
    torch.save({"state_dict": {f"model.{k}": v for k, v in model.state_dict().items()}, "global_step": 3}, path)
    return path, model


@pytest.fixture(scope="module")
def seeds(prepared_tree, tiny_whisper_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("seeds")
    paths = {}
    for seed in (1, 2):
        cfg = _cfg(prepared_tree, tiny_whisper_dir, out, train_id=f"audio_{seed}", seed=seed)
        paths[seed], _ = make_run(cfg, seed)
    return out, paths


@pytest.fixture(scope="module")
def loaded(seeds):
    _, paths = seeds
    return {seed: load_run(path, device="cpu") for seed, path in paths.items()}


def test_find_checkpoints_prefers_best_and_needs_config(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b" / "deep").mkdir(parents=True)
    (tmp_path / "c").mkdir()
    for f in ("a/config.yaml", "a/best.ckpt", "a/last.ckpt", "b/deep/config.yaml", "b/deep/last.ckpt", "c/best.ckpt"):
        (tmp_path / f).write_text("x")
    assert find_checkpoints(tmp_path) == [tmp_path / "a/best.ckpt", tmp_path / "b/deep/last.ckpt"]
    assert find_checkpoints(tmp_path / "c/best.ckpt") == [tmp_path / "c/best.ckpt"]


def test_load_run_restores_weights_and_refuses_malicious_files(seeds, tmp_path):
    _, paths = seeds
    run = load_run(paths[1], device="cpu")
    saved = torch.load(paths[1], weights_only=True)["state_dict"]
    for k, v in run.model.state_dict().items():
        assert torch.equal(v, saved[f"model.{k}"]), k
    assert run.cfg.train_id == "audio_1" and not run.model.training

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned > " + str(tmp_path / "pwned"),))

    bad = tmp_path / "evil" / "best.ckpt"
    bad.parent.mkdir()
    (bad.parent / "config.yaml").write_text((paths[1].parent / "config.yaml").read_text())
    with open(bad, "wb") as f:
        pickle.dump({"state_dict": Evil()}, f)
    with pytest.raises(CheckpointError, match="best.ckpt"):
        load_run(bad, device="cpu")
    assert not (tmp_path / "pwned").exists()
    with pytest.raises(FileNotFoundError, match="config.yaml"):
        load_run(tmp_path / "nowhere" / "best.ckpt")


def _batch(run, n=4):
    from av_train.data.dataset import Collator

    ds = noise_mod.UASpeechAVDataset(eval_samples(run, "B2"), run.targets, run.cfg.uses_video, train=False,
                                     n_mels=run.n_mels, cache_features=False)
    return Collator(run.targets.pad_id)([ds[i] for i in range(n)])


def test_greedy_ensemble_of_one_equals_generate_and_cache_equals_no_cache(loaded):
    run = loaded[1]
    batch = _batch(run)
    kw = model_inputs(batch, run.cfg, torch.device("cpu"))
    prompt = torch.tensor(run.targets.prompt).repeat(4, 1)
    ref = run.model.generate(**kw, decoder_input_ids=prompt, max_new_tokens=6, eos_token_id=run.targets.eot)
    ids, routes = decode_batch([run], [kw], prompt, 6, run.targets.eot)
    assert torch.equal(ids, ref) and routes == [None]
    ids_nc, _ = decode_batch([run], [kw], prompt, 6, run.targets.eot, use_cache=False)
    assert torch.equal(ids_nc, ref)
    # A closed vocabulary constrains the ensemble exactly as it constrains generate().
    from av_fusion_models.constrained import TokenTrie

    trie = TokenTrie.from_words(run.targets.tokenizer, ["one", "two"], char_level=True)
    ref_c = run.model.generate(**kw, decoder_input_ids=prompt, max_new_tokens=6, eos_token_id=run.targets.eot,
                               constraint=trie)
    ids_c, _ = decode_batch([run], [kw], prompt, 6, run.targets.eot, constraint=trie)
    assert torch.equal(ids_c, ref_c)
    assert {run.targets.decode(s[prompt.shape[1]:].tolist()).replace(" ", "") for s in ids_c} <= {"one", "two"}


def test_true_ensemble_averages_log_probabilities(loaded):
    a, b = loaded[1], loaded[2]
    batch = _batch(a)
    kws = [model_inputs(batch, r.cfg, torch.device("cpu")) for r in (a, b)]
    prompt = torch.tensor(a.targets.prompt).repeat(4, 1)
    ids, _ = decode_batch([a, b], kws, prompt, 3, eos_token_id=-1)
    # Teacher-forced on the ensemble's own output, every step's token is the argmax of the mean log-softmax.
    lp = sum(F.log_softmax(r.model(**kw, decoder_input_ids=ids[:, :-1]).logits.float(), -1) for r, kw in zip((a, b), kws))
    p = prompt.shape[1]
    assert torch.equal(lp[:, p - 1:].argmax(-1), ids[:, p:])
    # Two copies of one model decode exactly like that model.
    twice, _ = decode_batch([a, a], [kws[0], kws[0]], prompt, 3, eos_token_id=-1)
    assert torch.equal(twice, a.model.generate(**kws[0], decoder_input_ids=prompt, max_new_tokens=3, eos_token_id=-1))
    # Ensembles have beam search too (the same loop as generate's): two copies of a model beam-search like it.
    beams, _ = decode_batch([a, a], [kws[0], kws[0]], prompt, 3, a.targets.eot, num_beams=3)
    ref = a.model.generate(**kws[0], decoder_input_ids=prompt, max_new_tokens=3, num_beams=3, eos_token_id=a.targets.eot,
                           pad_token_id=a.targets.eot)
    assert torch.equal(beams, ref)


def test_soft_router_route_probs_reach_predictions(prepared_tree, tiny_whisper_dir, tmp_path):
    cfg = _cfg(prepared_tree, tiny_whisper_dir, tmp_path, train_id="soft_1", modality="audio_visual",
               soft_fusion_routing=True, resnet_width=8, routing_hidden_dim=16)
    path, _ = make_run(cfg, 3)
    run = load_run(path, device="cpu")
    preds = decode_runs([run], "B2", progress=False)
    assert len(preds) == 8
    for p in preds:
        assert p.route_probs is not None and len(p.route_probs) == 3
        assert sum(p.route_probs) == pytest.approx(1.0, abs=1e-5)
    from av_eval.report import route_probs_per_level

    per_level = route_probs_per_level(preds)
    assert set(per_level) == {"very_low", "high"}
    mine = [p.route_probs for p in preds if p.level == "high"]
    assert per_level["high"] == pytest.approx(list(np.mean(mine, axis=0)))


def test_noise_evaluation_of_a_router_writes_routes_per_level_and_snr(prepared_tree, tiny_whisper_dir, tmp_path):
    cfg = _cfg(prepared_tree, tiny_whisper_dir, tmp_path, train_id="soft_noise", modality="audio_visual",
               soft_fusion_routing=True, resnet_width=8, routing_hidden_dim=16)
    path, _ = make_run(cfg, 4)
    res = noise_mod.evaluate_noise([path], "babble", [None, 0.0], tmp_path / "noise", talkers=2, progress=False)
    routes = json.loads(res["json"].read_text())["routes"]["soft_noise"]
    assert set(routes) == {"clean", "0"} and set(routes["0"]) == {"very_low", "high"}
    assert all(sum(p) == pytest.approx(1.0, abs=1e-5) for by in routes.values() for p in by.values())
    # the router sees the audio: noise moves its choice
    assert routes["clean"]["high"] != pytest.approx(routes["0"]["high"], abs=1e-6)
    assert res["routes_png"].stat().st_size > 1000


def test_lip_reader_is_deaf_to_audio_noise(prepared_tree, tiny_whisper_dir, tmp_path):
    cfg = _cfg(prepared_tree, tiny_whisper_dir, tmp_path, train_id="lip_noise", modality="video",
               fusion_location="both", resnet_width=4, gate_init=0.5)
    path, _ = make_run(cfg, 5)
    res = noise_mod.evaluate_noise([path], "babble", [None, -5.0], tmp_path / "noise", talkers=2, progress=False)
    curves = res["curves"]["lip_noise"]
    assert curves["clean"] == curves["-5"]
    preds = [read_predictions(tmp_path / "noise" / "lip_noise" / f"predictions_B2_babble_{s}.jsonl") for s in ("clean", "-5")]
    assert [p.hypothesis for p in preds[0]] == [p.hypothesis for p in preds[1]]


def test_validate_ensemble_writes_seed_statistics(seeds, tmp_path, capsys):
    out, paths = seeds
    config = tmp_path / "cfg.yaml"
    config.write_text((paths[1].parent / "config.yaml").read_text().replace("train_id: audio_1", "train_id: audio"))
    rc = validate_ensemble_main([str(config), "--num_seeds", "3", "--start_seed", "1", "--true_ensemble",
                                 "--no-progress"])
    assert rc == 0
    err = capsys.readouterr().err
    assert "seed 3" in err and "skipped" in err
    js = out / "results" / "t" / "audio_seed_validation.json"
    data = json.loads(js.read_text())
    assert data["runs"] == ["audio_1", "audio_2"]
    # Per-seed values re-scored from the saved predictions give the same mean / std / t-interval.
    pred_dir = js.with_name("audio_seed_validation_predictions")
    wers = [score_predictions(read_predictions(pred_dir / f"audio_{s}_predictions_B2.jsonl")).per_level["high"].wer
            for s in (1, 2)]
    st = data["summary"]["high"]["wer"]
    mean, std = sum(wers) / 2, abs(wers[0] - wers[1]) / math.sqrt(2)
    half = 12.706204736 * std / math.sqrt(2)  # t(0.975, 1)
    assert st["mean"] == pytest.approx(mean) and st["std"] == pytest.approx(std)
    assert st["ci95_low"] == pytest.approx(mean - half) and st["ci95_high"] == pytest.approx(mean + half)
    assert "ensemble" in data and data["ensemble"]["total"]["n"] == 8
    rows = list(csv.DictReader(js.with_suffix(".csv").open()))
    assert [r["row"] for r in rows] == ["audio_1", "audio_2", "mean", "std", "ci95_low", "ci95_high", "ensemble"]
    assert float(rows[0]["high_wer"]) == pytest.approx(wers[0])
    assert js.with_name("audio_seed_validation_levels.png").stat().st_size > 1000
    assert "±" in js.with_suffix(".md").read_text()

    rc = validate_ensemble_main([str(config), "--num_seeds", "2", "--start_seed", "7"])
    assert rc == 2 and "no seed checkpoint found" in capsys.readouterr().err
    rc = validate_ensemble_main([str(config), f"output_root={tmp_path}", "--num_seeds", "1"])
    assert rc == 2 and str(tmp_path / "weights" / "checkpoint" / "audio_<N>") in capsys.readouterr().err


def test_av_eval_finds_the_av_train_predictor_and_rescoring_matches(seeds, tmp_path, capsys):
    out, _ = seeds
    assert "av_train" in [p.name for p in load_predictors()]
    rc = av_eval_main([str(out / "weights"), "--output", str(tmp_path / "ev"), "--no-progress"])
    assert rc == 0
    summary = (tmp_path / "ev" / "summary.md").read_text()
    assert "audio_1" in summary and "audio_2" in summary and "no run has a soft router" in summary
    metrics = json.loads((tmp_path / "ev" / "audio_1" / "metrics.json").read_text())
    preds = read_predictions(tmp_path / "ev" / "audio_1" / "predictions_B2.jsonl")
    assert {p.level for p in preds} == {"very_low", "high"} and all(p.speaker for p in preds)
    assert metrics["per_seen"]["seen"]["n"] == 8  # B2 words of the tiny tree all occur in B1/B3
    # Scoring the saved predictions again (no model) reproduces the numbers.
    assert av_eval_main(["score", str(tmp_path / "ev" / "audio_1" / "predictions_B2.jsonl"),
                         "--output", str(tmp_path / "re")]) == 0
    again = json.loads((tmp_path / "re" / "predictions_B2_metrics.json").read_text())
    assert again["total"] == metrics["total"] and again["per_level"] == metrics["per_level"]
    # The two seeds are grouped as one multi-seed run.
    assert (tmp_path / "ev" / "audio_seed_summary.json").is_file()


def test_mix_at_snr_hits_the_requested_snr():
    rng = np.random.default_rng(0)
    speech = rng.standard_normal(16000).astype(np.float32) * 0.3
    noise = rng.standard_normal(16000).astype(np.float32) * 5.0
    for snr in (10.0, 0.0, -5.0):
        mixed = data_noise.mix_at_snr(speech, noise, snr)
        added = mixed - speech
        assert 10 * np.log10(data_noise.power(speech) / data_noise.power(added)) == pytest.approx(snr, abs=1e-3)
    with pytest.raises(ValueError, match="silent"):
        data_noise.mix_at_snr(speech, np.zeros_like(speech), 0.0)
    # babble: the sum of unit-power talkers -> power about the number of talkers (independent signals)
    talkers = [rng.standard_normal(8000) for _ in range(4)]
    assert data_noise.power(data_noise.babble(talkers, 16000, rng)) == pytest.approx(4.0, rel=0.1)
    assert noise_mod.parse_snrs(["clean", "10,5", "-5"]) == [None, 10.0, 5.0, -5.0]


def test_noise_evaluation_writes_curves(seeds, tmp_path):
    _, paths = seeds
    res = noise_mod.evaluate_noise([paths[1]], "babble", [None, 0.0], tmp_path, talkers=2, progress=False)
    data = json.loads(res["json"].read_text())
    assert set(data["runs"]["audio_1"]) == {"clean", "0"}
    rows = list(csv.DictReader(res["csv"].open()))
    assert {r["group"] for r in rows} == {"very_low", "high", "total"} and len(rows) == 6
    assert res["png"].stat().st_size > 1000


def test_noisy_dataset_features(loaded):
    # the noisy features differ from the clean ones, the clean ones are the dataset's own
    run = loaded[1]
    base = noise_mod.UASpeechAVDataset(eval_samples(run, "B2"), run.targets, False, train=False, n_mels=run.n_mels,
                                       cache_features=False)
    clean_ds = noise_mod.NoisyEvalDataset(base, "babble", None)
    noisy = noise_mod.NoisyEvalDataset(base, "babble", 0.0, talkers=2)
    assert torch.equal(clean_ds.features(0), base.features(0))
    assert not torch.equal(noisy.features(0), base.features(0))
    assert torch.equal(noisy.features(0), noise_mod.NoisyEvalDataset(base, "babble", 0.0, talkers=2).features(0))


def test_video_conditions_mislead_or_freeze_the_lips_and_keep_the_clip_length(loaded):
    run = loaded[1]
    samples = eval_samples(run, "B2", need_video=True)
    base = noise_mod.UASpeechAVDataset(samples, run.targets, True, train=False, n_mels=run.n_mels, cache_features=False)
    clean = noise_mod.NoisyEvalDataset(base, "babble", None, video="clean")
    wrong = noise_mod.NoisyEvalDataset(base, "babble", None, video="mismatched", seed=3)
    frozen = noise_mod.NoisyEvalDataset(base, "babble", None, video="frozen")
    partners = noise_mod.mismatched_partners(samples, seed=3)
    assert partners == noise_mod.mismatched_partners(samples, seed=3)  # deterministic per seed
    for i, p in enumerate(partners):
        # another word of the same speaker (the tiny tree has several words per speaker)
        assert samples[p].word != samples[i].word and samples[p].speaker == samples[i].speaker
    for i in range(len(samples)):
        own, other = base.video(i), base.video(partners[i])
        assert torch.equal(clean.video(i), own)
        held = frozen.video(i)
        assert held.shape == own.shape and all(torch.equal(f, own[0]) for f in held)
        lied = wrong.video(i)
        assert lied.shape == own.shape  # stretched to the clip's own frame count: the length gives nothing away
        t_own, t_other = own.shape[0], other.shape[0]
        for k in range(t_own):  # nearest frame of the other clip at the same relative time (halves up)
            assert torch.equal(lied[k], other[(2 * k * (t_other - 1) + t_own - 1) // (2 * (t_own - 1))])
    # a set with one word cannot mislead: the error says so
    one_word = [s for s in samples if s.word == samples[0].word]
    with pytest.raises(ValueError, match="at least two words"):
        noise_mod.mismatched_partners(one_word)
    with pytest.raises(ValueError, match="unknown video condition 'upside_down'; use one of: clean, late-<N>ms"):
        noise_mod.NoisyEvalDataset(base, "babble", None, video="upside_down")


def test_noise_evaluation_under_a_video_condition_names_its_files_and_leaves_audio_only_runs_alone(seeds, tmp_path):
    _, paths = seeds
    clean = noise_mod.evaluate_noise([paths[1]], "babble", [0.0], tmp_path, talkers=2, progress=False)
    wrong = noise_mod.evaluate_noise([paths[1]], "babble", [0.0], tmp_path, talkers=2, progress=False,
                                     video="mismatched")
    assert wrong["json"].name == "noise_babble_video-mismatched.json" and clean["json"].name == "noise_babble.json"
    assert json.loads(wrong["json"].read_text())["video"] == "mismatched"
    assert wrong["png"].name == "noise_babble_video-mismatched_wer_vs_snr.png"
    hyps = [[p.hypothesis for p in read_predictions(tmp_path / "audio_1" / f"predictions_B2_babble_0{tag}.jsonl")]
            for tag in ("", "_video-mismatched")]
    assert hyps[0] == hyps[1]  # an audio-only run never sees the video


def test_predictor_protocol_object(seeds):
    _, paths = seeds
    pred = AVTrainPredictor(device="cpu")
    res = pred.predict(paths[2], "B2", progress=False)
    assert res.run_name == "audio_2" and len(res.predictions) == 8 and res.info["modality"] == "audio"


@pytest.mark.slow
def test_evaluating_a_trained_run_reproduces_its_own_final_predictions(prepared_tree, tiny_whisper_dir, tmp_path):
    """Train one tiny epoch with the real pipeline, then `av-eval` the checkpoint folder: the
    hypotheses equal the ones the pipeline wrote after training (same best.ckpt, same greedy decoding)."""
    from av_train.pipeline import run

    cfg = _cfg(prepared_tree, tiny_whisper_dir, tmp_path, train_id="e2e_1", max_epochs=1, learning_rate=1e-3,
               warmup_steps=2, modality="audio_visual", soft_fusion_routing=True, resnet_width=8,
               routing_hidden_dim=16)
    result = run(cfg)
    own = {p.utt_id: p for p in read_predictions(result.predictions_file)}
    assert av_eval_main([str(tmp_path / "weights"), "--output", str(tmp_path / "ev"), "--no-progress"]) == 0
    again = {p.utt_id: p for p in read_predictions(tmp_path / "ev" / "e2e_1" / "predictions_B2.jsonl")}
    assert set(again) == set(own) and all(p.route_probs is not None for p in own.values())
    for utt, p in own.items():
        assert again[utt].hypothesis == p.hypothesis, utt
        if p.route_probs is not None:
            assert again[utt].route_probs == pytest.approx(p.route_probs, abs=1e-5)
    assert (tmp_path / "ev" / "route_probs_levels.png").is_file()
