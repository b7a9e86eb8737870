"""Study for docs/GATING_AND_ROUTING.md 6: can the audio-visual model be kept from following bad lips?

    uv run python experiments/lip_trust.py --workdir DIR [--variants recipe faults reliability] [--seed 1]
        [--reuse recipe=demo_av] [--conditions clean late-400ms mismatched ...] [--snrs clean 0]

DIR holds what `av-cli demo --workdir DIR` makes: the prepared corpus (DIR/corpus), the converted Whisper tiny.en
(DIR/models/whisper-tiny.en), the audio-only run and the lip reader (DIR/weights/checkpoint/demo_audio, demo_lip;
with ``--seed N`` other than 1, the runs ``--audio-run`` / ``--lip-run`` name). Every variant is the demo's
audio-visual stage (configs/demo_av.yaml) from those two checkpoints, with the overrides below; each is decoded
on B2 with the audio-only run under every video condition (av_fusion_models.video_faults), clean and under 0 dB
babble (`av-cli noise-eval --video ...`). Model selection is the demo's (its validation split).

Outputs in DIR/results/lip_trust[_seedN]/: the noise-eval files per condition, results.json and table.md (WER
per condition, the issue's goals checked, the gates, and for reliability models the reliability per condition:
"low" is below half the median reliability of good clips with clean audio, "high" at or above it).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# the recipe before this study: configs/demo_av.yaml as it was (still faces on a fifth of the clips)
RECIPE = {"video_frozen_prob": 0.2, "video_fault_prob": 0.0, "video_reliability": False}
VARIANTS: dict[str, dict] = {
    "recipe": RECIPE,
    # every fault class (video_faults.TRAINING_FAULTS) on 30 % of the clips, no scorer: does training alone do it?
    "faults": {**RECIPE, "video_frozen_prob": 0.0, "video_fault_prob": 0.3},
    # the same faults, and the reliability scorer that scales the fused blocks
    "reliability": {**RECIPE, "video_frozen_prob": 0.0, "video_fault_prob": 0.3, "video_reliability": True},
    # the scorer with its lag profile and SyncNet's contrastive loss (reliability.py since 2026-12-08); "reliability"
    # above measured the first scorer, without them (its runs are named trust_reliability_<seed>)
    "reliability_sync": {**RECIPE, "video_frozen_prob": 0.0, "video_fault_prob": 0.3, "video_reliability": True},
    # the same run with reliability_cutoff 0.5 (an inference setting: below it the clip is the audio alone, exactly);
    # evaluate it with --reuse reliability_sync_cut50=<a copy of the run folder whose config.yaml sets the cutoff>
    "reliability_sync_cut50": {**RECIPE, "video_frozen_prob": 0.0, "video_fault_prob": 0.3, "video_reliability": True,
                               "reliability_cutoff": 0.5},
    # the wrong lips of training stretched to the clip's length and other clips' lips as contrastive negatives
    # (2026-12-08, after the cut50 run), with the cutoff
    "reliability_content": {**RECIPE, "video_frozen_prob": 0.0, "video_fault_prob": 0.3, "video_reliability": True,
                            "reliability_cutoff": 0.5, "reliability_content_negatives": True},
    # fewer faulted clips: does the scorer keep the lips' gain on good video with less fault training?
    "reliability_f15": {**RECIPE, "video_frozen_prob": 0.0, "video_fault_prob": 0.15, "video_reliability": True},
}
# the default recipe since 2026-12-08: reliability_sync's model (trained with the cutoff) decoded with the audio check.
# Variants that are another variant's trained model decoded with other inference settings: the study writes a run
# folder trust_<variant>_<seed> beside the trained one, with its best.ckpt hard-linked and these config values set
AUDIO_MARGIN = 3.0
INFERENCE_COPIES: dict[str, tuple[str, dict]] = {
    "audio_check": ("reliability_sync", {"reliability_cutoff": 0.5, "reliability_audio_margin": AUDIO_MARGIN}),
}
CONDITIONS = ["clean", "late-200ms", "early-200ms", "late-400ms", "early-400ms", "occluded", "blur", "fps-5",
              "black", "frozen", "mismatched", "other_speaker"]
# the goals of issue 29 that this table can check (demo corpus, B2): fault classes with their tolerance
TOLERANCE_POINTS = 2.0
GOOD_VIDEO_RATIO = 0.3


def train_variant(name: str, overrides: dict, common: dict) -> Path:
    from av_train.config import load_config
    from av_train.pipeline import run

    cfg = load_config(REPO / "configs" / "demo_av.yaml", {**common, **overrides, "train_id": name})
    if not (cfg.checkpoint_dir / "best.ckpt").is_file():
        t0 = time.perf_counter()
        run(cfg)
        print(f"{name}: trained in {time.perf_counter() - t0:.0f} s", flush=True)
    return cfg.checkpoint_dir


def inference_copy(trained: Path, name: str, settings: dict) -> Path:
    """A run folder of ``trained``'s weights (hard link, or a copy across file systems) whose config.yaml holds
    ``settings``: the evaluation decodes it with them."""
    import os
    import shutil

    import yaml

    out = trained.parent / name
    out.mkdir(exist_ok=True)
    if not (out / "best.ckpt").exists():
        try:
            os.link((trained / "best.ckpt").resolve(), out / "best.ckpt")
        except OSError:
            shutil.copy2(trained / "best.ckpt", out / "best.ckpt")
    cfg = yaml.safe_load((trained / "config.yaml").read_text())
    cfg.update(settings, train_id=name)
    (out / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    return out


def reliability_stats(pred_file: Path) -> list[float]:
    from av_eval import read_predictions

    return [p.video_reliability for p in read_predictions(pred_file) if p.video_reliability is not None]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workdir", required=True)
    p.add_argument("--variants", nargs="+", default=["recipe", "faults", "reliability"],
                   choices=[*VARIANTS, *INFERENCE_COPIES])
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--audio-run", default="demo_audio")
    p.add_argument("--lip-run", default="demo_lip")
    p.add_argument("--reuse", nargs="*", default=[], metavar="VARIANT=TRAIN_ID",
                   help="count a finished run of the workdir as a variant (recipe=demo_av: the demo's own stage)")
    p.add_argument("--conditions", nargs="+", default=CONDITIONS)
    p.add_argument("--snrs", nargs="+", default=["clean", "0"])
    p.add_argument("--eval-only", action="store_true", help="do not train; evaluate the finished variants")
    args = p.parse_args(argv)
    from av_common.cli_errors import configure_cli_logging
    from av_common.files import atomic_write_text

    configure_cli_logging()
    from av_train.evaluation.noise import evaluate_video_conditions, parse_snrs, snr_label, video_faults_table

    work = Path(args.workdir).resolve()
    ckpts = work / "weights" / "checkpoint"
    audio_ckpt, lip_ckpt = ckpts / args.audio_run / "best.ckpt", ckpts / args.lip_run / "best.ckpt"
    for need in (audio_ckpt, lip_ckpt):
        if not need.is_file():
            print(f"{need} is missing: run `av-cli demo --workdir {work}` first", file=sys.stderr)
            return 2
    common = {"uaspeech_root": str(work / "corpus"), "model_name": str(work / "models" / "whisper-tiny.en"),
              "local_model_only": True, "output_root": str(work), "seed": args.seed, "pt_audio_ckpt": str(audio_ckpt),
              "pt_video_ckpt": str(lip_ckpt), "train_name": "lip_trust", "progress_bar": False}
    reused = dict(item.split("=", 1) for item in args.reuse)
    runs: dict[str, Path] = {}
    for name in args.variants:
        if name in reused:
            runs[name] = ckpts / reused[name]
        elif name in INFERENCE_COPIES:
            base, settings = INFERENCE_COPIES[name]
            trained = ckpts / f"trust_{base}_{args.seed}"
            if not args.eval_only:
                trained = train_variant(trained.name, VARIANTS[base], common)
            runs[name] = inference_copy(trained, f"trust_{name}_{args.seed}", settings)
        elif args.eval_only:
            runs[name] = ckpts / f"trust_{name}_{args.seed}"
        else:
            runs[name] = train_variant(f"trust_{name}_{args.seed}", VARIANTS[name], common)

    out = work / "results" / ("lip_trust" if args.seed == 1 else f"lip_trust_seed{args.seed}")
    snrs = parse_snrs(args.snrs)
    t0 = time.perf_counter()
    res = evaluate_video_conditions([ckpts / args.audio_run / "best.ckpt", *(r / "best.ckpt" for r in runs.values())],
                                    "babble", snrs, out,
                                    conditions=args.conditions, progress=False)
    print(f"evaluated in {time.perf_counter() - t0:.0f} s", flush=True)
    wer = res["wer"]
    run_names = {name: path.name for name, path in runs.items()}
    labels = [snr_label(s) for s in snrs]
    columns = [(f"audio-only {s}", args.audio_run, s) for s in labels]
    columns += [(f"{v} {s}", run_names[v], s) for s in labels for v in runs]
    table = video_faults_table(wer, columns, args.conditions)

    def total(run: str, cond: str, snr: str) -> float:
        return 100 * wer[run][cond][snr]["total"]

    goals, trust = {}, {}
    for v, run in run_names.items():
        g = {}
        for snr in labels:
            audio = {c: total(args.audio_run, c, snr) for c in args.conditions}
            worst = max(((total(run, c, snr) - audio[c], c) for c in args.conditions if c != "clean"), default=None)
            g[snr] = {"av_good": total(run, "clean", snr), "audio": audio["clean"],
                      "worst_fault_excess_points": None if worst is None else round(worst[0], 2),
                      "worst_fault": None if worst is None else worst[1],
                      "faults_within_tolerance": worst is None or worst[0] <= TOLERANCE_POINTS}
            if snr != "clean":
                g[snr]["good_video_ratio"] = round(total(run, "clean", snr) / max(audio["clean"], 1e-9), 3)
        goals[v] = g
        stats = {}
        for c in args.conditions:
            tag = "" if c == "clean" else f"_video-{c}"
            values = reliability_stats(out / run / f"predictions_B2_babble_clean{tag}.jsonl")
            if values:
                stats[c] = values
        if stats:
            ref = statistics.median(stats.get("clean", [1.0]))
            trust[v] = {c: {"mean": round(statistics.fmean(x), 4), "median": round(statistics.median(x), 4),
                            "low_share": round(sum(r < 0.5 * ref for r in x) / len(x), 4)} for c, x in stats.items()}
    gates = {}
    from av_train.evaluation.loading import load_run

    for v, path in runs.items():
        model = load_run(path / "best.ckpt", device="cpu").model
        gates[v] = model.gate_values()
    lines = [f"# Lips you can trust: seed {args.seed}\n", "B2 WER %, babble noise; video conditions of "
             "av_fusion_models.video_faults.\n", table, "\n## Goals\n"]
    for v, g in goals.items():
        for snr, x in g.items():
            lines.append(f"- {v}, {snr}: good video {x['av_good']:.1f} vs audio {x['audio']:.1f}"
                         + (f" (ratio {x['good_video_ratio']:.2f})" if "good_video_ratio" in x else "")
                         + f"; worst fault {x['worst_fault']} {x['worst_fault_excess_points']:+.1f} points over audio-only"
                         + (" (within +2)" if x["faults_within_tolerance"] else " (over +2)"))
    if trust:
        lines.append("\n## Reliability with clean audio (mean / share below half the good-video median)\n")
        lines.append("| video | " + " | ".join(trust) + " |")
        lines.append("|---|" + "---:|" * len(trust))
        for c in args.conditions:
            cells = [f"{t[c]['mean']:.2f} / {100 * t[c]['low_share']:.0f} %" if c in t else "-" for t in trust.values()]
            lines.append(f"| {c} | " + " | ".join(cells) + " |")
    lines.append("\n## Gates (max |tanh g| per run)\n")
    for v, g in gates.items():
        lines.append(f"- {v}: " + (", ".join(f"{k} {max(abs(x) for x in b.values()):.3f}" for k, b in g.items()) or "none"))
    atomic_write_text(out / "table.md", "\n".join(lines) + "\n")
    atomic_write_text(out / "results.json", json.dumps({"seed": args.seed, "runs": {v: str(p) for v, p in runs.items()},
                                                        "wer": wer, "goals": goals, "reliability": trust,
                                                        "gates": gates}, indent=2) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
