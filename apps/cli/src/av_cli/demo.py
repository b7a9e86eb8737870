"""``av-cli demo``: the whole toolkit, offline, on 2 CPU cores.

1. synthesize a UASpeech-shaped audio-visual corpus (release layout),
2. prepare it (clips, lip ROIs, manifest),
3. convert the bundled Whisper tiny.en (CTranslate2) to Hugging Face format,
4. fine-tune audio-only Whisper, then an audio-visual model initialised from it,
5. score both on block B2 and print the per-level table.

Every step is resumable: running the demo again reuses what is already complete.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from av_eval.report import comparison_table, plot_levels
from av_eval.predictions import atomic_write_text


def find_configs(explicit: str | None) -> Path:
    """The folder holding demo_audio.yaml and demo_av.yaml."""
    candidates = [Path(explicit)] if explicit else [Path.cwd() / "configs", Path(__file__).resolve().parents[4] / "configs"]
    for c in candidates:
        if (c / "demo_audio.yaml").is_file() and (c / "demo_av.yaml").is_file():
            return c
    raise FileNotFoundError(
        "demo configs not found (looked in " + ", ".join(str(c) for c in candidates)
        + "). Run the demo from the repository root or pass --configs DIR."
    )


def _step(title: str) -> float:
    print(f"\n=== {title}", flush=True)
    return time.perf_counter()


def run_demo(args: argparse.Namespace) -> int:
    from uaspeech_prep.cli import main as prep_main

    t_start = time.perf_counter()
    work = Path(args.workdir).resolve()
    work.mkdir(parents=True, exist_ok=True)
    configs = find_configs(args.configs)
    release, prepared = work / "corpus_release", work / "corpus"
    model_dir = work / "models" / "whisper-tiny.en"
    timings: dict[str, float] = {}

    t = _step(f"1/5 synthesizing the corpus ({args.size}) into {release}")
    done_marker = work / f".synth_{args.size}_{args.seed}.done"
    if done_marker.is_file():
        print("already synthesized")
    else:
        rc = prep_main(["synth", "--output", str(release), "--size", args.size, "--seed", str(args.seed), "--overwrite"])
        if rc:
            return rc
        atomic_write_text(done_marker, "ok\n")
    timings["synthesize"] = time.perf_counter() - t

    t = _step(f"2/5 preparing clips and lip ROIs into {prepared}")
    rc = prep_main(["prepare", "--source", str(release), "--output", str(prepared), "--workers", str(args.workers)])
    if rc:
        return rc
    timings["prepare"] = time.perf_counter() - t

    t = _step(f"3/5 converting the bundled Whisper tiny.en to {model_dir}")
    if (model_dir / "config.json").is_file():
        print("already converted")
    else:
        from av_fusion_models.ct2 import bundled_tiny_en_dir, convert_ct2_to_hf

        convert_ct2_to_hf(bundled_tiny_en_dir(), model_dir)
    timings["convert"] = time.perf_counter() - t

    from av_train.config import load_config
    from av_train.pipeline import run

    common = {
        "uaspeech_root": str(prepared), "model_name": str(model_dir), "local_model_only": True,
        "output_root": str(work), "seed": args.seed,
    }
    t = _step("4/5 fine-tuning audio-only Whisper tiny.en")
    audio_over = dict(common)
    if args.audio_epochs is not None:
        audio_over["max_epochs"] = args.audio_epochs
    audio_cfg = load_config(configs / "demo_audio.yaml", audio_over)
    audio = run(audio_cfg)
    timings["train audio"] = time.perf_counter() - t

    t = _step("5/5 training the audio-visual model from the audio-only checkpoint")
    av_over = {**common, "pt_audio_ckpt": str(audio_cfg.checkpoint_dir / "best.ckpt")}
    if args.av_epochs is not None:
        av_over["max_epochs"] = args.av_epochs
    av_cfg = load_config(configs / "demo_av.yaml", av_over)
    av = run(av_cfg)
    timings["train audio-visual"] = time.perf_counter() - t

    if audio.report is None or av.report is None:
        print("no scores were produced (validation did not run)")
        return 1
    reports = {"audio": audio.report, "audio-visual": av.report}
    table = comparison_table(reports)
    summary_dir = work / "results" / "demo"
    png = plot_levels(reports, summary_dir / "demo_wer_levels.png")
    wall = time.perf_counter() - t_start
    lines = [
        "# av-cli demo: audio-only vs audio-visual Whisper tiny.en on synthetic UASpeech (block B2)\n",
        table,
        "Figures in percent; total is pooled over utterances, macro is the mean of the four levels.\n",
        "| step | seconds |", "|---|---:|",
        *[f"| {k} | {v:.0f} |" for k, v in timings.items()],
        f"| total | {wall:.0f} |\n",
    ]
    summary = atomic_write_text(summary_dir / "demo_summary.md", "\n".join(lines))
    print("\n" + table)
    print(f"wall time: {wall / 60:.1f} min")
    print(f"summary: {summary}\nplot: {png}")
    print(f"checkpoints: {audio.checkpoint_dir} and {av.checkpoint_dir}")
    print(f"predictions and metrics: {audio.results_dir} and {av.results_dir}")
    print(f"TensorBoard: uv run tensorboard --logdir {work / 'results'}")
    return 0
