"""Noise robustness: decode a split with white or babble noise added at given SNRs.

Babble is the sum of ``talkers`` other utterances of the same set (each scaled to unit power,
looped to the clip's length), a stand-in for a room of other dysarthric speakers. Noise is scaled
so that 10 log10(P_speech / P_noise) = SNR, with powers measured over the whole clip. The noise of
utterance i at a given seed is the same for every run, so audio-only and audio-visual models hear
exactly the same input. Writes noise_<kind>.json / .csv (run, snr, group, wer, cer, wsr, n) and
noise_<kind>_wer_vs_snr.png; for router models also the mean route probabilities per level and SNR
(in the JSON) and noise_<kind>_routes_vs_snr.png. The command is ``av-cli noise-eval``
(:mod:`av_train.evaluation.noise_command`).

The lip video can fail too (``video``, for the runs that use it): ``mismatched`` gives each clip the lips of
another utterance of the set, a different word of the same speaker where there is one, stretched (nearest frame)
to the clip's own frame count so that its length gives nothing away: a face out of sync or the wrong take, the
case where a model that trusts the lips is misled. ``frozen`` holds the clip's first frame: a face that does not
move (a stalled camera, a photo), which carries no word. Outputs are then named ``noise_<kind>_video-<condition>``.
"""

from __future__ import annotations

import csv
import gc
import io
import json
import logging
from pathlib import Path

import numpy as np
import torch

from av_eval import score_predictions, write_predictions
from av_eval.predictions import atomic_write_text
from av_eval.report import plot_routes_vs_snr, plot_wer_vs_snr, route_probs_per_level
from av_fusion_models import log_mel
from av_train.data.dataset import UASpeechAVDataset, load_audio
from av_train.data.noise import babble, mix_at_snr, pick_others
from av_train.evaluation.decoding import decode_runs, eval_samples
from av_train.evaluation.loading import load_run

log = logging.getLogger(__name__)

NOISE_KINDS = ("white", "babble")
VIDEO_CONDITIONS = ("clean", "mismatched", "frozen")


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


class NoisyEvalDataset(UASpeechAVDataset):
    """Evaluation dataset whose audio gets white or babble noise at ``snr_db`` (None: clean) and whose lip video
    is as recorded, ``mismatched`` or ``frozen`` (module docstring)."""

    def __init__(self, base: UASpeechAVDataset, kind: str, snr_db: float | None, talkers: int = 4, seed: int = 0,
                 video: str = "clean"):
        super().__init__(base.samples, base.targets, base.with_video, train=False, n_mels=base.n_mels,
                         cache_features=False, with_audio=base.with_audio)
        if kind not in NOISE_KINDS:
            raise ValueError(f"unknown noise {kind!r}; use one of {NOISE_KINDS}")
        if kind == "babble" and len(self.samples) < 2:
            raise ValueError("babble needs at least two utterances in the set")
        if video not in VIDEO_CONDITIONS:
            raise ValueError(f"unknown video condition {video!r}; use one of {VIDEO_CONDITIONS}")
        self.kind, self.snr_db, self.talkers, self.noise_seed = kind, snr_db, talkers, seed
        self.video_condition = video
        self._partners = mismatched_partners(self.samples, seed) if video == "mismatched" and self.with_video else None

    def video(self, index: int, epoch: int = 0) -> torch.Tensor:
        own = super().video(index, epoch)  # [T, H, W]
        if self.video_condition == "frozen":
            return own[:1].expand_as(own).contiguous()
        if self.video_condition == "mismatched":
            other = super().video(self._partners[index], epoch)
            pick = np.round(np.linspace(0, other.shape[0] - 1, own.shape[0])).astype(np.int64)
            return other[torch.from_numpy(pick)].contiguous()
        return own

    def noise_for(self, index: int, n: int) -> np.ndarray:
        rng = np.random.default_rng([self.noise_seed, index, 7])
        if self.kind == "white":
            return rng.standard_normal(n).astype(np.float32)
        picks = pick_others(len(self.samples), index, self.talkers, rng)
        return babble([load_audio(self.samples[int(k)].audio) for k in picks], n, rng)

    def features(self, index: int, epoch: int = 0) -> torch.Tensor:
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
                   decode_vocabulary: str | None = None, video: str = "clean") -> dict:
    """WER per level per SNR for each checkpoint; returns ``curves[run][snr][group] = wer``, the
    ``reports[run][snr]`` (av_eval Reports) and the paths of the files written. ``video``: the lip video's
    condition (``VIDEO_CONDITIONS``) for the runs that use it; audio-only runs hear the same audio either way."""
    if video not in VIDEO_CONDITIONS:
        raise ValueError(f"unknown video condition {video!r}; use one of {VIDEO_CONDITIONS}")
    tag = "" if video == "clean" else f"_video-{video}"
    output = Path(output)
    reports: dict[str, dict[str, dict]] = {}
    curves: dict[str, dict[str, dict[str, float]]] = {}
    report_objects: dict[str, dict[str, object]] = {}
    routes: dict[str, dict[str, dict[str, list[float]]]] = {}  # router models: mean route probs per level
    rows = []
    for ckpt in checkpoints:
        run = load_run(ckpt, data=data, device=device)
        name = run.name
        base = UASpeechAVDataset(eval_samples(run, split), run.targets, run.cfg.uses_video, train=False,
                                 n_mels=run.n_mels, cache_features=False, with_audio=run.cfg.uses_audio)
        for snr in snrs:
            ds = NoisyEvalDataset(base, kind, snr, talkers=talkers, seed=seed, video=video)
            preds = decode_runs([run], split, dataset=ds, progress=progress, decode_vocabulary=decode_vocabulary,
                                desc=f"{name} {kind} {snr_label(snr)}{tag.replace('_', ' ')}")
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
        del run, base
        gc.collect()
    stem = output / f"noise_{kind}{tag}"
    meta = {"noise": kind, "snrs_db": [snr_label(s) for s in snrs], "split": split, "talkers": talkers, "seed": seed,
            "decode_vocabulary": decode_vocabulary or "each run's own", "video": video}
    atomic_write_text(stem.with_suffix(".json"), json.dumps({**meta, "runs": reports, "routes": routes}, indent=2) + "\n")
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(stem.with_suffix(".csv"), buf.getvalue())
    png = plot_wer_vs_snr(curves, output / f"noise_{kind}{tag}_wer_vs_snr.png")
    routes_png = plot_routes_vs_snr(routes, output / f"noise_{kind}{tag}_routes_vs_snr.png") if routes else None
    return {"curves": curves, "reports": report_objects, "routes": routes, "routes_png": routes_png,
            "json": stem.with_suffix(".json"), "csv": stem.with_suffix(".csv"), "png": png}
