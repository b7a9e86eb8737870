"""Noise robustness: decode a split with white or babble noise added at given SNRs.

Babble is the sum of ``talkers`` other utterances of the same set (each scaled to unit power,
looped to the clip's length), a stand-in for a room of other dysarthric speakers. Noise is scaled
so that 10 log10(P_speech / P_noise) = SNR, with powers measured over the whole clip. The noise of
utterance i at a given seed is the same for every run, so audio-only and audio-visual models hear
exactly the same input. Writes noise_<kind>.json / .csv (run, snr, group, wer, cer, wsr, n) and
noise_<kind>_wer_vs_snr.png; for router models also the mean route probabilities per level and SNR
(in the JSON) and noise_<kind>_routes_vs_snr.png. The command is ``av-cli noise-eval``
(:mod:`av_train.evaluation.noise_command`).

The lip video can fail too (``video``, for the runs that use it): one condition of
:mod:`av_fusion_models.video_faults` (``clean``, ``late-<N>ms``, ``early-<N>ms``, ``occluded[-<P>]``, ``blur[-<S>]``,
``fps-<N>``, ``frozen``, ``black[-<P>]``, ``mismatched``, ``other_speaker``), applied to each clip's uint8
centre-cropped frames. The two partner conditions pick the other clip here, seeded like the noise:
``mismatched`` another word of the same speaker (`mismatched_partners`), ``other_speaker`` another word of
another speaker (`other_speaker_partners`). Outputs are then named ``noise_<kind>_video-<condition>``.
`evaluate_video_conditions` runs several conditions and writes ``video_faults_<kind>.json`` / ``.csv`` / ``.png``;
audio-only runs are decoded once per SNR there and their report reused for every condition.
"""

from __future__ import annotations

import gc
import hashlib
import json
import logging
from pathlib import Path

import numpy as np
import torch

from av_eval import score_predictions, write_predictions
from av_eval.metrics import LEVELS
from av_common.files import atomic_write_text
from av_eval.report import plot_routes_vs_snr, plot_video_faults, plot_wer_vs_snr, route_probs_per_level, rows_to_csv
from av_fusion_models import log_mel
from av_fusion_models.video_faults import VideoCondition, apply_condition, parse_video_condition
from av_train.data.dataset import ROI_FPS, UASpeechAVDataset, load_audio
from av_train.data.noise import babble, mix_at_snr, pick_others
from av_train.evaluation.decoding import decode_runs, eval_samples
from av_train.evaluation.loading import LoadedRun, load_run

log = logging.getLogger(__name__)

NOISE_KINDS = ("white", "babble")


class EvalReuse:
    """What `evaluate_video_conditions` carries from one video condition to the next (none of it depends on the
    video): the predictions of audio-only runs per SNR, the last run that uses the video (not loaded again), and
    the noisy log-mels of each set and SNR (babble reads four other recordings per clip), up to
    ``max_feature_bytes``."""

    def __init__(self, max_feature_bytes: int = 1 << 30):
        self.audio_only: dict[tuple, tuple[str, dict[str, list]]] = {}  # key -> (run name, {snr label: preds})
        self.run: tuple[tuple, LoadedRun] | None = None
        self.features: dict[tuple, torch.Tensor] = {}
        self.feature_bytes, self.max_feature_bytes = 0, max_feature_bytes

    def load(self, key: tuple, ckpt, data, device) -> LoadedRun:
        if self.run is not None and self.run[0] == key:
            return self.run[1]
        self.run = None  # the previous model goes before the next one loads
        run = load_run(ckpt, data=data, device=device)
        if run.cfg.uses_video:
            self.run = (key, run)
        return run

    def feature(self, key: tuple, make) -> torch.Tensor:
        feats = self.features.get(key)
        if feats is None:
            feats = make()
            size = feats.numel() * feats.element_size()
            if self.feature_bytes + size <= self.max_feature_bytes:
                self.features[key] = feats
                self.feature_bytes += size
        return feats


def parse_video_conditions(names) -> list[VideoCondition]:
    """``["clean", "late-400ms", ...]`` -> conditions at the ROI frame rate, duplicates dropped, every name
    checked before anything is decoded (the error names the condition and the accepted forms)."""
    out: dict[str, VideoCondition] = {}
    for name in [names] if isinstance(names, str | VideoCondition) else names:
        cond = name if isinstance(name, VideoCondition) else parse_video_condition(name, ROI_FPS)
        out.setdefault(cond.name, cond)
    if not out:
        raise ValueError("no video condition given")
    return list(out.values())


def mismatched_partners(samples, seed: int = 0) -> list[int]:
    """For each sample, the index of another whose lips it gets under ``video="mismatched"``: a different word
    of the same speaker when the set has one, else a different word of anyone (deterministic per seed)."""
    by_speaker: dict[str, list[int]] = {}
    for j, o in enumerate(samples):
        by_speaker.setdefault(o.speaker, []).append(j)
    partners = []
    for i, s in enumerate(samples):
        others = [j for j in by_speaker[s.speaker] if samples[j].word != s.word]
        others = others or [j for j, o in enumerate(samples) if o.word != s.word]
        if not others:
            raise ValueError(f"--video mismatched: no utterance of the set says another word than {s.word!r} "
                             f"({s.utt_id}); evaluate a split with at least two words")
        partners.append(others[int(np.random.default_rng([seed, i, 13]).integers(len(others)))])
    return partners


def other_speaker_partners(samples, seed: int = 0) -> list[int]:
    """For each sample, the index of another whose lips it gets under ``video="other_speaker"``: another speaker
    saying another word, uniform over those (deterministic per seed; rejection draws, so a full test set of
    thousands of clips costs no pass over the whole set per clip)."""
    speakers = sorted({s.speaker for s in samples})
    if len(speakers) < 2:
        raise ValueError(f"--video other_speaker: the set has one speaker ({speakers[0] if speakers else 'none'}); "
                         "evaluate a split of at least two speakers (no `speakers:` filter, or --data of a fuller "
                         "tree)")
    pools: dict[str, list[int]] = {spk: [] for spk in speakers}  # per speaker: the clips of everyone else
    per_word: dict[str, int] = {}
    per_speaker_word: dict[tuple[str, str], int] = {}
    for j, o in enumerate(samples):
        for spk in speakers:
            if spk != o.speaker:
                pools[spk].append(j)
        per_word[o.word] = per_word.get(o.word, 0) + 1
        per_speaker_word[o.speaker, o.word] = per_speaker_word.get((o.speaker, o.word), 0) + 1
    partners = []
    for i, s in enumerate(samples):
        pool = pools[s.speaker]
        if len(pool) == per_word[s.word] - per_speaker_word[s.speaker, s.word]:  # every other speaker says this word
            raise ValueError(f"--video other_speaker: no other speaker of the set says another word than {s.word!r} "
                             f"({s.utt_id}); evaluate a split with at least two words")
        rng = np.random.default_rng([seed, i, 17])
        while True:
            j = pool[int(rng.integers(len(pool)))]
            if samples[j].word != s.word:
                partners.append(j)
                break
    return partners


class NoisyEvalDataset(UASpeechAVDataset):
    """Evaluation dataset whose audio gets white or babble noise at ``snr_db`` (None: clean) and whose lip video
    is under one condition of :mod:`av_fusion_models.video_faults` (``video``: a name or a `VideoCondition`)."""

    def __init__(self, base: UASpeechAVDataset, kind: str, snr_db: float | None, talkers: int = 4, seed: int = 0,
                 video: str | VideoCondition = "clean", reuse: EvalReuse | None = None):
        super().__init__(base.samples, base.targets, base.with_video, train=False, n_mels=base.n_mels,
                         cache_features=False, with_audio=base.with_audio)
        if kind not in NOISE_KINDS:
            raise ValueError(f"unknown noise {kind!r}; use one of {NOISE_KINDS}")
        if kind == "babble" and len(self.samples) < 2:
            raise ValueError("babble needs at least two utterances in the set")
        (cond,) = parse_video_conditions([video])
        self.kind, self.snr_db, self.talkers, self.noise_seed = kind, snr_db, talkers, seed
        self.video_condition = cond
        self._reuse = reuse
        self._set_id = hashlib.sha1("\n".join(str(x.audio) for x in self.samples).encode()).hexdigest()
        self._partners = None
        if self.with_video and cond.kind == "mismatched":
            self._partners = mismatched_partners(self.samples, seed)
        elif self.with_video and cond.kind == "other_speaker":
            self._partners = other_speaker_partners(self.samples, seed)

    def video(self, index: int, epoch: int = 0) -> torch.Tensor:
        own = super().video(index, epoch)  # uint8 [T, H, W], centre crop
        partner = super().video(self._partners[index], epoch) if self._partners is not None else None
        return apply_condition(own, self.video_condition, partner=partner, black_value=0)

    def noise_for(self, index: int, n: int) -> np.ndarray:
        rng = np.random.default_rng([self.noise_seed, index, 7])
        if self.kind == "white":
            return rng.standard_normal(n).astype(np.float32)
        picks = pick_others(len(self.samples), index, self.talkers, rng)
        return babble([load_audio(self.samples[int(k)].audio) for k in picks], n, rng)

    def features(self, index: int, epoch: int = 0) -> torch.Tensor:
        if self._reuse is not None:
            key = (self._set_id, self.kind, snr_label(self.snr_db), self.talkers, self.noise_seed, self.n_mels, index)
            return self._reuse.feature(key, lambda: self._features(index))
        return self._features(index)

    def _features(self, index: int) -> torch.Tensor:
        audio = load_audio(self.samples[index].audio)
        if self.snr_db is not None:
            audio = mix_at_snr(audio, self.noise_for(index, audio.size), self.snr_db)
        return log_mel(audio, self.n_mels)


def parse_snrs(values: list[str]) -> list[float | None]:
    out: list[float | None] = []
    for v in values:
        for part in str(v).split(","):
            part = part.strip()
            if not part:
                continue
            if part.lower() == "clean":
                out.append(None)
            else:
                try:
                    out.append(float(part))
                except ValueError:
                    raise ValueError(f"SNR {part!r} is neither a number of dB nor 'clean'") from None
    if not out:
        raise ValueError("no SNRs given")
    return out


def snr_label(snr: float | None) -> str:
    return "clean" if snr is None else f"{snr:g}"


def evaluate_noise(checkpoints: list[Path], kind: str = "babble", snrs: list[float | None] = (None, 10.0, 5.0, 0.0, -5.0),
                   output: str | Path = "noise_eval", split: str = "B2", data: str | Path | None = None,
                   talkers: int = 4, seed: int = 0, device: str | None = None, progress: bool = True,
                   decode_vocabulary: str | None = None, video: str | VideoCondition = "clean",
                   reuse: EvalReuse | None = None) -> dict:
    """WER per level per SNR for each checkpoint; returns ``curves[run][snr][group] = wer``, the
    ``reports[run][snr]`` (av_eval Reports) and the paths of the files written. ``video``: the lip video's
    condition (module docstring) for the runs that use it; audio-only runs hear the same audio either way.
    ``reuse``: kept by the caller across conditions (`evaluate_video_conditions`): an audio-only run's predictions
    are stored there per checkpoint and SNR and not decoded again (nor the run loaded), and so on (`EvalReuse`)."""
    (cond,) = parse_video_conditions([video])  # before any loading or decoding
    tag = "" if cond.kind == "clean" else f"_video-{cond.name}"
    output = Path(output)
    reports: dict[str, dict[str, dict]] = {}
    curves: dict[str, dict[str, dict[str, float]]] = {}
    report_objects: dict[str, dict[str, object]] = {}
    routes: dict[str, dict[str, dict[str, list[float]]]] = {}  # router models: mean route probs per level
    rows = []
    for ckpt in checkpoints:
        # an audio-only run's (name, {snr label: predictions}) from an earlier condition, the same noise
        key = (str(ckpt), kind, split, talkers, seed, decode_vocabulary, str(data), str(device))
        cached = None if reuse is None else reuse.audio_only.get(key)
        if cached is not None and all(snr_label(snr) in cached[1] for snr in snrs):
            (name, by_snr), run = cached, None
        else:
            run = load_run(ckpt, data=data, device=device) if reuse is None else reuse.load(key, ckpt, data, device)
            name, by_snr = run.name, {}
            if reuse is not None and not run.cfg.uses_video:
                reuse.audio_only[key] = (name, by_snr)
            base = UASpeechAVDataset(eval_samples(run, split), run.targets, run.cfg.uses_video, train=False,
                                     n_mels=run.n_mels, cache_features=False, with_audio=run.cfg.uses_audio)
        for snr in snrs:
            preds = by_snr.get(snr_label(snr))  # only audio-only runs fill by_snr
            if preds is None:
                ds = NoisyEvalDataset(base, kind, snr, talkers=talkers, seed=seed, video=cond, reuse=reuse)
                preds = decode_runs([run], split, dataset=ds, progress=progress, decode_vocabulary=decode_vocabulary,
                                    desc=f"{name} {kind} {snr_label(snr)}{tag.replace('_', ' ')}")
                if not run.cfg.uses_video:
                    by_snr[snr_label(snr)] = preds
            write_predictions(output / name / f"predictions_{split}_{kind}_{snr_label(snr)}{tag}.jsonl", preds)
            report = score_predictions(preds)
            reports.setdefault(name, {})[snr_label(snr)] = report.as_dict()
            report_objects.setdefault(name, {})[snr_label(snr)] = report
            per_level_routes = route_probs_per_level(preds)
            if per_level_routes is not None:
                routes.setdefault(name, {})[snr_label(snr)] = per_level_routes
            groups = {**{lvl: s for lvl, s in report.per_level.items()}, "total": report.total}
            curves.setdefault(name, {})[snr_label(snr)] = {g: s.wer for g, s in groups.items()}
            for g, s in groups.items():
                rows.append({"run": name, "noise": kind, "snr_db": snr_label(snr), "group": g,
                             "wer": s.wer, "cer": s.cer, "wsr": s.wsr, "n": s.n})
            log.info("%s %s %s dB%s: WER %.1f%%", name, kind, snr_label(snr), tag.replace("_", ", "),
                     100 * report.total.wer)
        if run is not None:
            del run, base
            gc.collect()
    stem = output / f"noise_{kind}{tag}"
    meta = {"noise": kind, "snrs_db": [snr_label(s) for s in snrs], "split": split, "talkers": talkers, "seed": seed,
            "decode_vocabulary": decode_vocabulary or "each run's own", "video": cond.name}
    atomic_write_text(stem.with_suffix(".json"), json.dumps({**meta, "runs": reports, "routes": routes}, indent=2) + "\n")
    atomic_write_text(stem.with_suffix(".csv"), rows_to_csv(rows))
    png = plot_wer_vs_snr(curves, output / f"noise_{kind}{tag}_wer_vs_snr.png")
    routes_png = plot_routes_vs_snr(routes, output / f"noise_{kind}{tag}_routes_vs_snr.png") if routes else None
    return {"curves": curves, "reports": report_objects, "routes": routes, "routes_png": routes_png,
            "json": stem.with_suffix(".json"), "csv": stem.with_suffix(".csv"), "png": png}


def evaluate_video_conditions(checkpoints: list[Path], kind: str = "babble",
                              snrs: list[float | None] = (None, 10.0, 5.0, 0.0, -5.0),
                              output: str | Path = "noise_eval", conditions=("clean",), **kw) -> dict:
    """`evaluate_noise` once per video condition (``kw``: its other arguments). With more than one condition also
    ``video_faults_<kind>.json`` / ``.csv`` (run, video, snr_db, WER total and per level) and ``.png`` (grouped
    bars: x the condition, a bar per run, a panel per SNR). An audio-only run is decoded once per SNR and its
    report reused for every condition; the noisy features and the last video run are kept too (`EvalReuse`).
    Returns ``{"conditions": {name: evaluate_noise's dict}, "wer": wer[run][condition][snr][group]}`` and the
    summary's paths (None with one condition)."""
    conds = parse_video_conditions(conditions)  # every name checked before the first decode
    reuse = EvalReuse() if len(conds) > 1 else None
    per: dict[str, dict] = {}
    wer: dict[str, dict[str, dict[str, dict[str, float]]]] = {}
    for cond in conds:
        per[cond.name] = res = evaluate_noise(checkpoints, kind, snrs, output, video=cond, reuse=reuse, **kw)
        for run, by_snr in res["curves"].items():
            wer.setdefault(run, {})[cond.name] = by_snr
    out = {"conditions": per, "wer": wer, "json": None, "csv": None, "png": None}
    if len(conds) < 2:
        return out
    output = Path(output)
    stem = output / f"video_faults_{kind}"
    labels = [snr_label(s) for s in snrs]
    levels = [lvl for lvl in LEVELS if any(lvl in g for r in wer.values() for c in r.values() for g in c.values())]
    rows = [{"run": run, "video": c, "snr_db": snr, "wer_total": wer[run][c][snr]["total"],
             **{f"wer_{lvl}": wer[run][c][snr].get(lvl, "") for lvl in levels}}
            for run in wer for c in wer[run] for snr in labels]
    meta = {"noise": kind, "snrs_db": labels, "video": [c.name for c in conds], "split": kw.get("split", "B2"),
            "talkers": kw.get("talkers", 4), "seed": kw.get("seed", 0),
            "files": {c: str(r["json"]) for c, r in per.items()}}
    out["json"] = atomic_write_text(stem.with_suffix(".json"), json.dumps({**meta, "wer": wer}, indent=2) + "\n")
    out["csv"] = atomic_write_text(stem.with_suffix(".csv"), rows_to_csv(rows))
    totals = {run: {c: {snr: g["total"] for snr, g in by.items()} for c, by in r.items()} for run, r in wer.items()}
    out["png"] = plot_video_faults(totals, stem.with_suffix(".png"))
    return out


def video_faults_table(wer, columns: list[tuple[str, str, str]], conditions: list[str],
                       row_names: dict[str, str] | None = None) -> str:
    """A Markdown table of total WER (percent): one row per condition, one column per ``(header, run, snr_label)``
    read from ``wer[run][condition][snr_label]`` (a number, or a dict with ``"total"``); "-" where there is none."""
    def cell(run: str, cond: str, snr: str) -> str:
        v = wer.get(run, {}).get(cond, {}).get(snr)
        v = v.get("total") if isinstance(v, dict) else v
        return "-" if v is None else f"{100 * v:.1f}"

    names = row_names or {}
    lines = ["| video | " + " | ".join(h for h, _, _ in columns) + " |", "|---|" + "---:|" * len(columns)]
    lines += [f"| {names.get(c, c)} | " + " | ".join(cell(r, c, s) for _, r, s in columns) + " |" for c in conditions]
    return "\n".join(lines) + "\n"
