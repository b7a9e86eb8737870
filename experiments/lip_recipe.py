"""Ablation for docs/LIP_READING.md: which training recipe makes the audio-visual model use the lips.

    uv run python experiments/lip_recipe.py --workdir DIR [--variants baseline babble ...] [--snrs clean 0 -5]

DIR must hold what `av-cli demo --workdir DIR` makes in its first steps: the prepared corpus (DIR/corpus), the
converted Whisper tiny.en (DIR/models/whisper-tiny.en) and the audio-only run (DIR/weights/checkpoint/demo_audio).
Every variant is the demo's audio-visual stage (configs/demo_av.yaml: Whisper frozen, ResNet-18 at width 8, the
same epochs, batch and learning rate) started from that same audio-only checkpoint, with one recipe change at a
time (overrides below). Variants marked ``lip`` start from the lip-reading stage (configs/demo_lip.yaml, trained
once). Each is then decoded on B2 clean and under babble noise (`av-cli noise-eval`), and its gates are read.

Outputs in DIR/results/lip_recipe/: results.json, table.md, gate_trajectories.png. Finished runs are reused.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import lightning as L

from av_common.files import atomic_write_text

REPO = Path(__file__).resolve().parents[1]

# the recipe of main before this study (zero gates, white noise, decoder fusion, no pretraining)
OLD = {"gate_init": 0.0, "noise_type": "white", "noise_prob": 0.5, "noise_snr_db": [-5.0, 10.0], "audio_dropout": 0.0,
       "fusion_location": "decoder", "pt_video_ckpt": None}
LIP = "WORKDIR/weights/checkpoint/{lip}/best.ckpt"
VARIANTS: dict[str, dict] = {
    "baseline": {**OLD},
    "gate_init_0.1": {**OLD, "gate_init": 0.1},
    "gate_lr_1e-2": {**OLD, "gate_learning_rate": 1.0e-2},
    "babble": {**OLD, "noise_type": "babble"},
    "babble+gate_init": {**OLD, "noise_type": "babble", "gate_init": 0.1},
    "babble+gate_init+audio_dropout": {**OLD, "noise_type": "babble", "gate_init": 0.1, "audio_dropout": 0.3},
    # from the lip-reading stage (fusion in both, as the lip reader has it)
    "lip_init": {**OLD, "fusion_location": "both", "pt_video_ckpt": LIP},
    # the chosen recipe: configs/demo_av.yaml as it is (lip-reading init, babble, audio dropout, decoder fusion)
    # and its pieces taken away one at a time
    "recipe": {},
    "recipe-audio_dropout": {"audio_dropout": 0.0},
    "recipe-babble": {"noise_type": "white"},
    "recipe-lip_init": {"pt_video_ckpt": None},
    # without the still faces of 2026-12-07 (the recipe that every run of docs/LIP_READING.md 4-4h measured)
    "recipe-still_face": {"video_frozen_prob": 0.0},
    "recipe_mixed_noise": {"noise_type": "mixed"},
    # every fusion location on equal footing: the lip reader's video encoder (video_encoder_ckpt), fresh gated
    # blocks at gate_init 0.1, babble and audio dropout as in the recipe
    "recipe_decoder": {"fusion_location": "decoder", "pt_video_ckpt": None, "video_encoder_ckpt": LIP},
    "recipe_encoder": {"fusion_location": "encoder", "pt_video_ckpt": None, "video_encoder_ckpt": LIP},
    "recipe_both": {"fusion_location": "both", "pt_video_ckpt": None, "video_encoder_ckpt": LIP},
    "recipe_router": {"fusion_location": "both", "soft_fusion_routing": True, "pt_video_ckpt": None,
                      "video_encoder_ckpt": LIP},
    # the staged recipe (docs/GATING_AND_ROUTING.md): the router alone, on top of the trained recipe_both run
    # (its fusion blocks, gates and video encoder frozen), so it cannot collapse by switching off untrained blocks
    "recipe_router_staged": {"fusion_location": "both", "soft_fusion_routing": True, "router_train_only": True,
                             "pt_video_ckpt": "RUN:recipe_both", "max_epochs": 4},
}


class GateRecorder(L.Callback):
    """tanh of every gate and the teacher-forced validation CER after each epoch (the module logs both)."""

    def __init__(self):
        self.epochs: list[dict] = []

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        m = trainer.callback_metrics
        row = {"epoch": trainer.current_epoch, "step": trainer.global_step}
        row.update({k: float(v) for k, v in m.items() if k.startswith("gate/") or k in ("val/cer", "val/wer")})
        self.epochs.append(row)


def train(config: str, overrides: dict, recorder: GateRecorder | None = None):
    from av_train.config import load_config
    from av_train.pipeline import run

    cfg = load_config(REPO / "configs" / config, overrides)
    t0 = time.perf_counter()
    res = run(cfg, extra_callbacks=[recorder] if recorder else None)
    return cfg, res, time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workdir", required=True)
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--snrs", nargs="+", default=["clean", "0", "-5"])
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--lip-config", default="demo_lip.yaml")
    p.add_argument("--lip-run", default=None, metavar="TRAIN_ID",
                   help="reuse this finished lip reader of the workdir (e.g. demo_lip, which `av-cli demo` trained "
                        "with demo_lip.yaml and the same seed) instead of training lip_<seed>")
    p.add_argument("--reuse", nargs="*", default=[], metavar="VARIANT=TRAIN_ID",
                   help="count a finished run of the workdir as a variant (e.g. recipe=demo_av: the demo's own "
                        "audio-visual stage is the recipe with --lip-run demo_lip and the same seed)")
    p.add_argument("--tag", default="", help="results_<tag>.json: lets several processes share one workdir (start "
                   "them after the lip-reading stage is done); the table merges every results*.json")
    args = p.parse_args(argv)
    from av_common.cli_errors import configure_cli_logging

    configure_cli_logging()  # the toolkit's log lines (model size, checkpoints) as the commands show them

    from av_train.evaluation.noise import evaluate_noise, parse_snrs

    work = Path(args.workdir).resolve()
    audio_ckpt = work / "weights" / "checkpoint" / "demo_audio" / "best.ckpt"
    if not audio_ckpt.is_file():
        print(f"{audio_ckpt} is missing: run `av-cli demo --workdir {work}` (or its first four steps) first",
              file=sys.stderr)
        return 2
    common = {"uaspeech_root": str(work / "corpus"), "model_name": str(work / "models" / "whisper-tiny.en"),
              "local_model_only": True, "output_root": str(work), "seed": args.seed, "pt_audio_ckpt": str(audio_ckpt),
              "train_name": "lip_recipe", "progress_bar": False}
    # one folder per training seed: the same variant names, other runs
    out_dir = work / "results" / ("lip_recipe" if args.seed == 1 else f"lip_recipe_seed{args.seed}")
    results_file = out_dir / (f"results_{args.tag}.json" if args.tag else "results.json")
    results = json.loads(results_file.read_text()) if results_file.is_file() else {}
    if "lip" not in results and (out_dir / "results.json").is_file():  # the lip reader of an earlier process
        results["lip"] = json.loads((out_dir / "results.json").read_text()).get("lip")
        if results["lip"] is None:
            del results["lip"]

    lip_id = args.lip_run or f"lip_{args.seed}"
    if "lip" not in results and args.lip_run:
        found = work / "weights" / "checkpoint" / lip_id / "best.ckpt"
        if not found.is_file():
            print(f"{found} is missing: --lip-run names a finished lip reader of the workdir", file=sys.stderr)
            return 2
        results["lip"] = {"train_id": lip_id, "reused": True}
    if "lip" not in results:
        rec = GateRecorder()
        cfg, res, secs = train(args.lip_config, {**common, "train_id": lip_id}, rec)
        results["lip"] = {"train_id": lip_id, "seconds": secs, "epochs": rec.epochs,
                          "wer": res.report.total.wer if res.report else None}
        atomic_write_text(results_file, json.dumps(results, indent=2) + "\n")
    lip_ckpt = str(work / "weights" / "checkpoint" / lip_id / "best.ckpt")

    for pair in args.reuse:
        name, _, train_id = pair.partition("=")
        if name not in VARIANTS or not (work / "weights" / "checkpoint" / train_id / "best.ckpt").is_file():
            print(f"--reuse {pair}: needs a variant name and a finished run of {work}", file=sys.stderr)
            return 2
        results.setdefault(name, {"train_id": train_id, "reused": True})

    elsewhere = {}
    for f in out_dir.glob("results*.json"):  # runs trained by other processes
        if f != results_file:
            elsewhere.update(json.loads(f.read_text()))
    for name in args.variants:
        if name in results:
            continue
        if name in elsewhere:
            results[name] = {k: v for k, v in elsewhere[name].items() if k != "eval"}
            continue
        over = {k: (lip_ckpt if v == LIP else v) for k, v in VARIANTS[name].items()}
        for k, v in over.items():  # "RUN:<variant>": the best checkpoint of that variant's finished run
            if isinstance(v, str) and v.startswith("RUN:"):
                base = results.get(v[4:]) or elsewhere.get(v[4:])
                found = work / "weights" / "checkpoint" / base["train_id"] / "best.ckpt" if base else None
                if found is None or not found.is_file():
                    print(f"variant {name} starts from variant {v[4:]}: train it first (--variants {v[4:]} {name})",
                          file=sys.stderr)
                    return 2
                over[k] = str(found)
        if name.startswith("recipe"):
            over.setdefault("pt_video_ckpt", lip_ckpt)  # what av-cli demo passes
        rec = GateRecorder()
        train_id = f"{name}_{args.seed}"
        cfg, res, secs = train("demo_av.yaml", {**common, **over, "train_id": train_id}, rec)
        results[name] = {"train_id": train_id, "overrides": over, "seconds": secs, "epochs": rec.epochs}
        atomic_write_text(results_file, json.dumps(results, indent=2) + "\n")

    # noise evaluation of every run not yet measured (the audio-only and lip-reading runs included)
    ckpts = {"audio": audio_ckpt, "lip": Path(lip_ckpt)}
    ckpts.update({n: work / "weights" / "checkpoint" / results[n]["train_id"] / "best.ckpt"
                  for n in args.variants if n in results})
    done = set(results)
    for f in out_dir.glob("results*.json"):  # measured by another process already
        done |= set(json.loads(f.read_text()))
    todo = [n for n, c in ckpts.items() if c.is_file() and f"eval:{n}" not in done]
    if todo:
        snrs = parse_snrs(args.snrs)
        noise_dir = out_dir / (f"noise_{args.tag}" if args.tag else "noise")
        curves = evaluate_noise([ckpts[n] for n in todo], "babble", snrs, noise_dir, progress=False)["curves"]
        for n in todo:
            key = _train_id(results, n, ckpts)  # noise-eval names each run by its train_id
            gates = {}
            for gates_file in (work / "results").glob(f"*/{key}/gates.json"):  # lip_recipe/ or demo/ (reused)
                gates = json.loads(gates_file.read_text())
            results[f"eval:{n}"] = {"babble": curves[key], "gates": gates}
        atomic_write_text(results_file, json.dumps(results, indent=2) + "\n")

    merged = {}
    for f in sorted(out_dir.glob("results*.json")):
        merged.update(json.loads(f.read_text()))
    merged.update(results)
    order = ["audio", "lip", *VARIANTS]
    for n in order:  # paired bootstrap of the gain over the audio-only model, per SNR
        if f"eval:{n}" in merged and n != "audio":
            merged[f"eval:{n}"]["gain_ci"] = {s: gain_ci(out_dir, _train_id(merged, n, ckpts), s) for s in args.snrs}
    table = render(merged, [n for n in order if f"eval:{n}" in merged], args.snrs)
    atomic_write_text(out_dir / "table.md", table)
    plot_trajectories(merged, out_dir / "gate_trajectories.png")
    print(table)
    seeds = seed_table(work, snr="0")
    if seeds:
        atomic_write_text(work / "results" / "lip_recipe_seeds.md", seeds)
        print(seeds)
    return 0


def seed_table(work: Path, snr: str = "0") -> str:
    """Per variant measured under several training seeds: WER at ``snr`` per seed and the gain over the audio-only
    model with the t-interval of its mean over seeds (av_eval.aggregate.summarize)."""
    from av_eval.aggregate import summarize

    by_variant: dict[str, dict[int, float]] = {}
    runs: dict[str, set[str]] = {}  # train_ids per variant: one run reused under every seed is not a seed repeat
    audio: dict[int, float] = {}
    for folder in sorted(f for f in (work / "results").glob("lip_recipe*") if f.is_dir()):
        seed = int(folder.name.removeprefix("lip_recipe_seed")) if folder.name != "lip_recipe" else 1
        merged = {}
        for f in sorted(folder.glob("results*.json")):
            merged.update(json.loads(f.read_text()))
        for key, val in merged.items():
            if key.startswith("eval:") and snr in val["babble"]:
                name = key.removeprefix("eval:")
                (audio if name == "audio" else by_variant.setdefault(name, {}))[seed] = val["babble"][snr]["total"]
                runs.setdefault(name, set()).add(merged.get(name, {}).get("train_id", f"{name}@{seed}"))
    cond = "clean" if snr == "clean" else f"{snr} dB"
    lines = [f"| variant | seeds | WER {cond} per seed | audio-only | gain (mean) | 95 % CI over seeds |",
             "|---|---|---|---:|---:|---|"]
    for name, wers in by_variant.items():
        seeds = sorted(s for s in wers if s in audio)
        if len(seeds) < 2 or len(runs[name]) < 2:
            continue
        st = summarize([audio[s] - wers[s] for s in seeds])
        lines.append(f"| {name} | {', '.join(map(str, seeds))} | "
                     + " / ".join(f"{100 * wers[s]:.1f}" for s in seeds)
                     + f" | {100 * audio[seeds[0]]:.1f} | {100 * st.mean:+.1f} | "
                     f"[{100 * st.ci95_low:+.1f}, {100 * st.ci95_high:+.1f}] |")
    return "\n".join(lines) + "\n" if len(lines) > 2 else ""


def _train_id(results: dict, name: str, ckpts: dict) -> str:
    if name in results and "train_id" in results[name]:
        return results[name]["train_id"]
    return ckpts[name].parent.name


def _predictions(out_dir: Path, train_id: str, snr: str) -> list:
    from av_eval import read_predictions

    files = sorted(out_dir.glob(f"noise*/{train_id}/predictions_B2_babble_{snr}.jsonl"))
    if not files:
        raise FileNotFoundError(f"no babble {snr} predictions of {train_id} under {out_dir}")
    return sorted(read_predictions(files[-1]), key=lambda p: p.utt_id)


def gain_ci(out_dir: Path, train_id: str, snr: str, audio_id: str = "demo_audio") -> list[float]:
    """[WER(audio) - WER(run), low, high] with a 95 % paired bootstrap over the B2 utterances."""
    from av_eval.aggregate import paired_bootstrap_gain
    from av_eval.metrics import count_utterances

    a, b = _predictions(out_dir, audio_id, snr), _predictions(out_dir, train_id, snr)
    counts = [count_utterances([p.reference for p in x], [p.hypothesis for p in x]) for x in (a, b)]
    return list(paired_bootstrap_gain(*counts))


def _max_gate(gates: dict) -> float | None:
    vals = [abs(v) for g in gates.values() for v in g.values()]
    return max(vals) if vals else None


def render(results: dict, names: list[str], snrs: list[str]) -> str:
    levels = ("very_low", "low", "mid", "high")
    head = ("| variant | " + " | ".join(f"WER {s}" for s in snrs) + " | gain over audio at 0 dB [95 % CI] | "
            "clean per level (vl / l / m / h) | max tanh g | train s |")
    lines = [head, "|" + "---|" * (len(snrs) + 5)]
    for n in names:
        ev = results[f"eval:{n}"]
        cells = [f"{100 * ev['babble'][s]['total']:.1f}" for s in snrs]
        lv = " / ".join(f"{100 * ev['babble']['clean'][lvl]:.0f}" for lvl in levels if lvl in ev["babble"]["clean"])
        g = _max_gate(ev.get("gates", {}))
        secs = results.get(n, {}).get("seconds")
        ci = ev.get("gain_ci", {}).get("0")
        ci_cell = "-" if ci is None else f"{100 * ci[0]:+.1f} [{100 * ci[1]:+.1f}, {100 * ci[2]:+.1f}]"
        lines.append(f"| {n} | " + " | ".join(cells) + f" | {ci_cell} | {lv} | {'-' if g is None else f'{g:.3f}'} | "
                     f"{'-' if secs is None else f'{secs:.0f}'} |")
    return "\n".join(lines) + "\n"


def plot_trajectories(results: dict, path: Path) -> Path | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = {n: r["epochs"] for n, r in results.items() if isinstance(r, dict) and r.get("epochs")}
    if not runs:
        return None
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for n, epochs in runs.items():
        xs = [e["epoch"] + 1 for e in epochs]
        ys = [max([abs(v) for k, v in e.items() if k.startswith("gate/")] or [0.0]) for e in epochs]
        ax.plot(xs, ys, marker="o", label=n)
    ax.set_xlabel("epoch")
    ax.set_ylabel("max |tanh g| over the gates")
    ax.set_yscale("symlog", linthresh=0.01)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_title("Gate openings over training (demo corpus)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    tmp.replace(path)
    return path


if __name__ == "__main__":
    sys.exit(main())
