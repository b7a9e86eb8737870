"""``av-cli demo``: the whole toolkit, offline, on 2 CPU cores.

1. synthesize a UASpeech-shaped audio-visual corpus (release layout),
2. prepare it (clips, lip ROIs, manifest),
3. convert the bundled Whisper tiny.en (CTranslate2) to Hugging Face format,
4. fine-tune audio-only Whisper,
5. train a lip reader (the audio-visual model that never hears the audio) from it,
6. train the audio-visual model from the lip reader (video encoder and fusion blocks arrive trained),
7. score all three on block B2, clean and under 0 dB babble noise, open and constrained to UASpeech's
   closed vocabulary, and print the per-level tables and the gates of the audio-visual model; then the
   audio-visual model on bad lip video (`BAD_VIDEO_ROWS`: late, early, covered, still and wrong lips;
   `av-cli noise-eval --video`), clean and at 0 dB, beside audio-only Whisper (about a minute more),
8. use the audio-visual model as a user would: export it (`av-cli export`) and transcribe three B2
   recordings, each a face video with sound (`av-cli transcribe`).

Every step is resumable: running the demo again reuses what is already complete.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from av_eval.report import comparison_table, plot_levels
from av_common.files import atomic_write_text


def find_configs(explicit: str | None) -> Path:
    """The folder holding demo_audio.yaml, demo_lip.yaml and demo_av.yaml."""
    candidates = [Path(explicit)] if explicit else [Path.cwd() / "configs", Path(__file__).resolve().parents[4] / "configs"]
    for c in candidates:
        if all((c / f"demo_{name}.yaml").is_file() for name in ("audio", "lip", "av")):
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
    if work.exists() and not work.is_dir():
        raise NotADirectoryError(f"{work} is a file, not a folder: choose another --workdir")
    work.mkdir(parents=True, exist_ok=True)
    configs = find_configs(args.configs)
    release, prepared = work / "corpus_release", work / "corpus"
    model_dir = work / "models" / "whisper-tiny.en"
    timings: dict[str, float] = {}

    t = _step(f"1/8 synthesizing the corpus ({args.size}) into {release}")
    done_marker = work / f".synth_{args.size}_{args.seed}.done"
    if done_marker.is_file():
        print("already synthesized")
    else:
        rc = prep_main(["synth", "--output", str(release), "--size", args.size, "--seed", str(args.seed), "--overwrite"])
        if rc:
            return rc
        atomic_write_text(done_marker, "ok\n")
    timings["synthesize"] = time.perf_counter() - t

    t = _step(f"2/8 preparing clips and lip ROIs into {prepared}")
    rc = prep_main(["prepare", "--source", str(release), "--output", str(prepared), "--workers", str(args.workers)])
    if rc:
        return rc
    timings["prepare"] = time.perf_counter() - t

    t = _step(f"3/8 converting the bundled Whisper tiny.en to {model_dir}")
    from av_fusion_models.ct2 import ensure_bundled_tiny_en, is_finished_conversion

    if is_finished_conversion(model_dir):
        print("already converted")
    else:
        ensure_bundled_tiny_en(model_dir)
    timings["convert"] = time.perf_counter() - t

    from av_train.config import load_config
    from av_train.pipeline import run

    common = {
        "uaspeech_root": str(prepared), "model_name": str(model_dir), "local_model_only": True,
        "output_root": str(work), "seed": args.seed,
    }
    t = _step("4/8 fine-tuning audio-only Whisper tiny.en")
    audio_over = dict(common)
    if args.audio_epochs is not None:
        audio_over["max_epochs"] = args.audio_epochs
    audio_cfg = load_config(configs / "demo_audio.yaml", audio_over)
    audio = run(audio_cfg)
    timings["train audio"] = time.perf_counter() - t
    audio_ckpt = str(audio_cfg.checkpoint_dir / "best.ckpt")

    t = _step("5/8 training the lip reader (video only) from the audio-only checkpoint")
    lip_over = {**common, "pt_audio_ckpt": audio_ckpt}
    if args.lip_epochs is not None:
        lip_over["max_epochs"] = args.lip_epochs
    lip_cfg = load_config(configs / "demo_lip.yaml", lip_over)
    lip = run(lip_cfg)
    timings["train lip reading"] = time.perf_counter() - t

    t = _step("6/8 training the audio-visual model from the lip reader")
    av_over = {**common, "pt_audio_ckpt": audio_ckpt, "pt_video_ckpt": str(lip_cfg.checkpoint_dir / "best.ckpt")}
    if args.av_epochs is not None:
        av_over["max_epochs"] = args.av_epochs
    av_cfg = load_config(configs / "demo_av.yaml", av_over)
    av = run(av_cfg)
    timings["train audio-visual"] = time.perf_counter() - t

    if audio.report is None or lip.report is None or av.report is None:
        print("no scores were produced (validation did not run)")
        return 1
    t = _step(f"7/8 scoring under babble noise at {NOISY_SNR_DB:g} dB SNR")
    summary_dir = work / "results" / "demo"
    noisy = _babble_reports([audio, av], summary_dir / "noise")
    closed = _closed_vocabulary_reports([audio, av])
    timings["noise and closed-vocabulary evaluation"] = time.perf_counter() - t
    t = _step(f"7/8 the audio-visual model on bad lip video, clean and at {NOISY_SNR_DB:g} dB")
    bad_video = _bad_video(audio, av, noisy, summary_dir / "video_faults")
    timings["bad video"] = time.perf_counter() - t

    t = _step("8/8 exporting the audio-visual model and transcribing three B2 face videos with sound")
    transcripts = _export_and_transcribe(av, prepared, work)
    timings["export + transcribe"] = time.perf_counter() - t

    clean = {"audio": audio.report, "lip reading": lip.report, "audio-visual": av.report}
    noisy_reports = {"audio": noisy[0], "lip reading": lip.report, "audio-visual": noisy[1]}
    table = comparison_table(clean)
    noisy_table = comparison_table(noisy_reports, metrics=("wer",))
    png = plot_levels(clean, summary_dir / "demo_wer_levels.png")
    noisy_png = plot_levels(noisy_reports, summary_dir / f"demo_wer_levels_babble_{NOISY_SNR_DB:g}dB.png")
    gates = gate_table(av.results_dir / "gates.json")
    wall = time.perf_counter() - t_start
    lines = [
        "# av-cli demo: audio-only, lip reading and audio-visual Whisper tiny.en on synthetic UASpeech (block B2)\n",
        "## Clean audio\n",
        table,
        f"## Babble noise at {NOISY_SNR_DB:g} dB SNR (4 other B2 talkers; the lip reader hears nothing either way)\n",
        noisy_table,
        "Figures in percent; total is pooled over utterances, macro is the mean of the four levels.\n",
        f"## Bad lip video (WER %, total over B2; clean audio and {NOISY_SNR_DB:g} dB babble; `av-cli noise-eval "
        "--video`, conditions in docs/METRICS.md; the audio-only model never sees the video)\n",
        bad_video,
        "## Open vs closed vocabulary (clean audio; closed: decoding constrained to the 449 words of UASpeech)\n",
        comparison_table({"audio open": audio.report, "audio closed": closed[0], "audio-visual open": av.report,
                          "audio-visual closed": closed[1]}, metrics=("wer",)),
        "## Using the model: `av-cli export` then `av-cli transcribe` on face videos with sound\n",
        transcripts,
        "## Gates of the audio-visual model (tanh g: the share of each fused branch that reaches Whisper)\n",
        gates,
        "| step | seconds |", "|---|---:|",
        *[f"| {k} | {v:.0f} |" for k, v in timings.items()],
        f"| total | {wall:.0f} |\n",
    ]
    summary = atomic_write_text(summary_dir / "demo_summary.md", "\n".join(lines))
    print("\nclean audio:\n" + table)
    print(f"babble noise at {NOISY_SNR_DB:g} dB:\n" + noisy_table)
    print("bad lip video (WER %, total):\n" + bad_video)
    print("gates of the audio-visual model:\n" + gates)
    print("transcribed with the exported model:\n" + transcripts)
    print(f"wall time: {wall / 60:.1f} min")
    print(f"summary: {summary}\nplots: {png} {noisy_png}")
    print(f"checkpoints: {audio.checkpoint_dir}, {lip.checkpoint_dir} and {av.checkpoint_dir}")
    print(f"predictions and metrics: {audio.results_dir}, {lip.results_dir} and {av.results_dir}")
    print(f"TensorBoard: uv run tensorboard --logdir {work / 'results'}")
    return 0


NOISY_SNR_DB = 0.0


def _babble_reports(runs, output: Path):
    """B2 reports of each run's best checkpoint under babble noise at NOISY_SNR_DB (same noise for all)."""
    from av_train.evaluation.noise import evaluate_noise, snr_label

    reports = evaluate_noise([r.best_checkpoint for r in runs], "babble", [NOISY_SNR_DB], output)["reports"]
    return [reports[r.checkpoint_dir.name][snr_label(NOISY_SNR_DB)] for r in runs]


# Rows of the bad-video table: lip-video conditions of av_fusion_models.video_faults ("clean" is printed "good").
# Each fault row decodes the 240 B2 clips twice (clean, 0 dB): about 6 s per decode on 2 idle cores, so these five
# add about a minute. Ten rows took 3.6x the rest of step 7 (about 110 s idle); the five left out, as measured then
# (audio-visual WER % clean / 0 dB; good video 0.4 / 1.7): late-200ms 3.3 / 9.2, blur 0.8 / 1.7, fps-5 9.2 / 14.2,
# and black 11.7 / 26.2, the same as frozen (each frame minus the clip's mean frame: both are all zero). All ten:
# `av-cli noise-eval RUN_A RUN_B --snrs clean 0 --video clean late-200ms ... mismatched`.
BAD_VIDEO_ROWS = ("clean", "late-400ms", "early-400ms", "occluded", "frozen", "mismatched")


def _bad_video(audio, av, noisy, output: Path) -> str:
    """The bad-video table: the audio-visual run decoded under each fault of BAD_VIDEO_ROWS, clean and at
    NOISY_SNR_DB (the same babble as `_babble_reports`); the good-video row and the audio-only columns reuse the
    scores already made (the training run's clean B2 report, `_babble_reports`' noisy ones)."""
    from av_train.evaluation.noise import evaluate_video_conditions, snr_label

    noisy_label = snr_label(NOISY_SNR_DB)
    res = evaluate_video_conditions([av.best_checkpoint], "babble", [None, NOISY_SNR_DB], output,
                                    conditions=BAD_VIDEO_ROWS[1:])
    faults = res["wer"][av.checkpoint_dir.name]
    av_wer = {"clean": {"clean": av.report.total.wer, noisy_label: noisy[1].total.wer},
              **{c: {s: g["total"] for s, g in by_snr.items()} for c, by_snr in faults.items()}}
    return bad_video_table({"clean": audio.report.total.wer, noisy_label: noisy[0].total.wer}, av_wer)


def bad_video_table(audio_wer: dict[str, float], av_wer: dict[str, dict[str, float]]) -> str:
    """Markdown: one row per BAD_VIDEO_ROWS condition, columns audio-only / audio-visual WER (%) clean and at
    NOISY_SNR_DB. ``audio_wer[snr_label]`` (the same for every row), ``av_wer[condition][snr_label]``."""
    from av_train.evaluation.noise import snr_label, video_faults_table

    noisy = snr_label(NOISY_SNR_DB)
    wer = {"audio-only": {c: audio_wer for c in BAD_VIDEO_ROWS}, "audio-visual": av_wer}
    columns = [("audio-only clean", "audio-only", "clean"), ("audio-visual clean", "audio-visual", "clean"),
               (f"audio-only {NOISY_SNR_DB:g} dB", "audio-only", noisy),
               (f"audio-visual {NOISY_SNR_DB:g} dB", "audio-visual", noisy)]
    return video_faults_table(wer, columns, list(BAD_VIDEO_ROWS), row_names={"clean": "good"})


def _closed_vocabulary_reports(runs):
    """Clean B2 reports of each run decoded under UASpeech's closed vocabulary."""
    from av_eval import score_predictions
    from av_train.evaluation.decoding import decode_runs
    from av_train.evaluation.loading import load_run

    reports = []
    for r in runs:
        run = load_run(r.best_checkpoint)
        preds = decode_runs([run], "B2", decode_vocabulary="uaspeech", desc=f"{r.checkpoint_dir.name} closed")
        reports.append(score_predictions(preds))
    return reports


# B2 recordings shown at the end: one speaker per level, one word each
TRANSCRIBE_UTTERANCES = ("M12_B2_D3", "F04_B2_C5", "F05_B2_C10")


def _export_and_transcribe(av, prepared: Path, work: Path) -> str:
    """Export the AV run, make three face videos with sound from B2 clips + their recordings, transcribe them."""
    import json

    from av_train.export.cli import main as export_main
    from av_train.inference.media import face_video_with_sound
    from av_train.inference.transcribe_command import main as transcribe_main
    from uaspeech_prep.manifest import manifest_path, read_records

    model_dir = work / "models" / "demo_av"
    # the corpus's closed vocabulary goes with the model: transcribe then ranks the words it may be
    args = [str(av.best_checkpoint), str(model_dir), "--decode-vocabulary", "uaspeech"]
    rc = export_main(args + (["--overwrite"] if (model_dir / "export.json").is_file() else []))
    if rc:
        raise RuntimeError(f"av-cli export of {av.best_checkpoint} failed")
    records = {}
    for rec in (r.to_dict() for r in read_records(manifest_path(prepared))):
        if rec["block"] == "B2" and rec.get("clip"):
            records.setdefault(rec["utt_id"], rec)
    chosen = [records[u] for u in TRANSCRIBE_UTTERANCES if u in records]
    if len(chosen) < 3:  # another corpus size: the first B2 utterance of three speakers
        seen = {r["speaker"] for r in chosen}
        for rec in records.values():
            if len(chosen) == 3:
                break
            if rec["speaker"] not in seen:
                chosen.append(rec)
                seen.add(rec["speaker"])
    videos, words = [], {}
    for rec in chosen:
        dst = work / "recordings" / f"{rec['utt_id']}.mp4"
        if not dst.is_file():
            face_video_with_sound(prepared / rec["clip"], prepared / rec["audio"]["M5"], dst)
        videos.append(dst)
        words[str(dst)] = (rec["word"], rec["level"])
    out = work / "results" / "demo" / "transcribe_demo_av.jsonl"
    transcribe_main([str(model_dir), *map(str, videos), "--output", str(out), "--no-progress"])
    lines = ["| recording | level | said | recognised | top 3 (log p) |", "|---|---|---|---|---|"]
    for row in (json.loads(x) for x in out.read_text().splitlines()):
        word, level = words[row["input"]]
        top = ", ".join(f"{w} ({lp:.1f})" for w, lp in row["top_k"][:3]) or "-"
        lines.append(f"| {Path(row['input']).name} | {level} | {word.lower()} | {row['text'] or row['error']} | {top} |")
    lines.append(f"\nModel folder: {model_dir}; results: {out}")
    return "\n".join(lines) + "\n"


def gate_table(gates_json: Path) -> str:
    """Markdown table of the gates per fused layer (from the run's gates.json)."""
    import json

    if not gates_json.is_file():
        return "(no learned gates)\n"
    gates = json.loads(gates_json.read_text())
    lines = ["| layer | attention gate | feed-forward gate |", "|---|---:|---:|"]
    lines += [f"| {name} | {g['attn']:.3f} | {g['ff']:.3f} |" for name, g in gates.items()]
    return "\n".join(lines) + "\n"
