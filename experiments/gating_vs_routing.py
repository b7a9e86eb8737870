"""Measured comparison for docs/GATING_AND_ROUTING.md: the router SCALES learned gates vs the router EMITS the gates.

    uv run python experiments/gating_vs_routing.py [--workdir DIR] [--epochs 8] [--variants scale emit none]

On the demo's synthetic UASpeech corpus (espeak-ng words, 4 speakers, real astronaut-face lip video), starting
every variant from the same audio-only Whisper tiny.en checkpoint, Whisper frozen, the demo's AV recipe
(configs/demo_av.yaml: noise on half the training clips, 8 epochs at lr 1e-3) with fusion in encoder and decoder:

- ``scale``: FusionRouter + learned tanh gates per block (our design): block output x s(sample) x tanh(g);
- ``emit``:  FusionRouter whose side scale IS the gate of every block on that side (``router_emits_gates``);
- ``none``:  fusion in both, learned gates, no router (the AV-both stage the router normally starts from).

Recorded per variant: how far the untrained model is from the audio-only model it starts from (teacher-forced
loss and max |logit| difference on the first B2 batch, with video vs with the video masked out), per-epoch
teacher-forced validation CER, the final autoregressive B2 WER / CER per level, the learned gates and the mean
route probabilities. Everything lands in WORKDIR/results/gating_vs_routing/ (JSON, Markdown table, PNG curves).

Steps 1-4 (corpus, ROIs, Whisper conversion, audio-only model) are the demo's and are skipped when WORKDIR
already holds them (e.g. a finished `av-cli demo --workdir WORKDIR`).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import lightning as L
import torch

from av_common.files import atomic_write_text as atomic_write

REPO = Path(__file__).resolve().parents[1]
VARIANTS = {
    "scale": {"soft_fusion_routing": True, "router_emits_gates": False},
    "emit": {"soft_fusion_routing": True, "router_emits_gates": True},
    "none": {"soft_fusion_routing": False},
}


class Recorder(L.Callback):
    """Start-of-training distance from the audio-only model, per-epoch metrics, gates and routes."""

    def __init__(self):
        self.init: dict = {}
        self.epochs: list[dict] = []

    @torch.no_grad()
    def on_train_start(self, trainer, pl_module) -> None:
        batch = next(iter(trainer.datamodule.val_dataloader()))
        batch = pl_module.transfer_batch_to_device(batch, pl_module.device, 0)
        was_training = pl_module.training
        pl_module.eval()
        with_video = pl_module(batch)
        masked = {**batch, "video_padding_mask": torch.ones_like(batch["video_padding_mask"], dtype=torch.bool)}
        without = pl_module(masked)  # every gated block gets scale 0: the audio-only model
        pl_module.train(was_training)
        self.init = {
            "loss_with_video": with_video.loss.item(),
            "loss_audio_only": without.loss.item(),
            "max_abs_logit_diff": (with_video.logits - without.logits).abs().max().item(),
        }

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        # (not on_validation_epoch_end: Lightning calls the callbacks' hook before the module's, which logs
        # the metrics read here; by the end of the training epoch its validation has been logged)
        m = trainer.callback_metrics
        row = {"epoch": trainer.current_epoch}
        for key in ("val/loss", "val/cer", "val/wer"):
            if key in m:
                row[key] = float(m[key])
        row.update(gate_summary(pl_module.model))
        self.epochs.append(row)


def gate_summary(model) -> dict:
    out = {}
    for side, layers in (("encoder", model.whisper.model.encoder.layers), ("decoder", model.whisper.model.decoder.layers)):
        gates = [abs(float(torch.tanh(g))) for layer in layers if hasattr(layer, "xattn") and layer.xattn.learned_gates
                 for g in (layer.xattn.attn_gate, layer.xattn.ff_gate)]
        if gates:
            out[f"{side}_mean_abs_tanh_gate"] = sum(gates) / len(gates)
    return out


def prepare_base(work: Path, seed: int, workers: int) -> tuple[Path, Path, Path]:
    """The demo's corpus, converted tiny.en and audio-only checkpoint (made here when missing)."""
    from uaspeech_prep.cli import main as prep_main

    release, prepared = work / "corpus_release", work / "corpus"
    model_dir = work / "models" / "whisper-tiny.en"
    marker = work / f".synth_demo_{seed}.done"
    if not marker.is_file():
        if prep_main(["synth", "--output", str(release), "--size", "demo", "--seed", str(seed), "--overwrite"]):
            raise SystemExit("synth failed")
        atomic_write(marker, "ok\n")
    if prep_main(["prepare", "--source", str(release), "--output", str(prepared), "--workers", str(workers)]):
        raise SystemExit("prepare failed")
    from av_fusion_models.ct2 import ensure_bundled_tiny_en

    ensure_bundled_tiny_en(model_dir)
    from av_train.config import load_config
    from av_train.pipeline import run

    common = {"uaspeech_root": str(prepared), "model_name": str(model_dir), "local_model_only": True,
              "output_root": str(work), "seed": seed}
    audio_cfg = load_config(REPO / "configs" / "demo_audio.yaml", common)
    best = audio_cfg.checkpoint_dir / "best.ckpt"
    if not best.is_file():
        run(audio_cfg)
    return prepared, model_dir, best


def level_table(results: dict) -> str:
    from av_eval import LEVELS

    names = list(results)
    head = "| level | " + " | ".join(f"{n} WER | {n} CER" for n in names) + " |"
    lines = [head, "|---|" + "---:|" * (2 * len(names))]
    for level in (*LEVELS, "total"):
        cells = []
        for n in names:
            s = results[n]["final"][level]
            cells += [f"{100 * s['wer']:.1f}", f"{100 * s['cer']:.1f}"]
        lines.append(f"| {level} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(results: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for name, r in results.items():
        xs = [e["epoch"] + 1 for e in r["epochs"] if "val/cer" in e]
        ys = [100 * e["val/cer"] for e in r["epochs"] if "val/cer" in e]
        ax.plot(xs, ys, marker="o", label=name)
    ax.set_xlabel("epoch")
    ax.set_ylabel("B2 teacher-forced CER (%)")
    ax.set_title("router scales learned gates vs router emits gates")
    ax.legend()
    fig.tight_layout()
    tmp = path.with_name(path.stem + ".tmp.png")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    os.replace(tmp, path)
    return path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", type=Path, default=Path("gating_vs_routing_work"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--variants", nargs="+", default=["scale", "emit"], choices=list(VARIANTS))
    args = ap.parse_args(argv)
    from av_common.cli_errors import configure_cli_logging

    configure_cli_logging()  # the toolkit's log lines (model size, checkpoints) as the commands show them
    work = args.workdir.resolve()
    out_dir = work / "results" / "gating_vs_routing"
    prepared, model_dir, audio_best = prepare_base(work, args.seed, args.workers)

    from av_train.config import load_config
    from av_train.pipeline import run

    results_file = out_dir / "results.json"
    results = json.loads(results_file.read_text()) if results_file.is_file() else {}
    for name in args.variants:
        if name in results:
            print(f"{name}: already measured ({results_file})")
            continue
        over = {"uaspeech_root": str(prepared), "model_name": str(model_dir), "local_model_only": True,
                "output_root": str(work), "seed": args.seed, "pt_audio_ckpt": str(audio_best),
                "train_id": f"gvr_{name}", "fusion_location": "both", "max_epochs": args.epochs, **VARIANTS[name]}
        cfg = load_config(REPO / "configs" / "demo_av.yaml", over)
        rec = Recorder()
        t0 = time.perf_counter()
        res = run(cfg, extra_callbacks=[rec])
        report = res.report
        final = {level: {"wer": s.wer, "cer": s.cer} for level, s in report.per_level.items()}
        final["total"] = {"wer": report.total.wer, "cer": report.total.cer}
        results[name] = {"config": VARIANTS[name], "init": rec.init, "epochs": rec.epochs, "final": final,
                         "seconds": time.perf_counter() - t0, "checkpoint_dir": str(res.checkpoint_dir)}
        preds = [json.loads(line) for line in res.predictions_file.read_text().splitlines() if line.strip()] \
            if res.predictions_file else []
        probs = [p["route_probs"] for p in preds if p.get("route_probs")]
        if probs:
            results[name]["mean_route_probs"] = torch.tensor(probs).mean(0).tolist()
        atomic_write(results_file, json.dumps(results, indent=2))
    audio_metrics = work / "results" / "demo" / "demo_audio" / "metrics.json"
    rows = dict(results)
    if audio_metrics.is_file():  # the audio-only model every variant starts from
        m = json.loads(audio_metrics.read_text())
        final = {lv: {"wer": v["wer"], "cer": v["cer"]} for lv, v in m["per_level"].items()}
        final["total"] = {"wer": m["total"]["wer"], "cer": m["total"]["cer"]}
        rows = {"audio-only": {"final": final}, **results}
    table = level_table(rows)
    def gate(r, side):  # "-": no learned gates (emit)
        g = r["epochs"][-1].get(f"{side}_mean_abs_tanh_gate") if r["epochs"] else None
        return "-" if g is None else f"{g:.4f}"

    learned = "\n".join(
        f"| {n} | {gate(r, 'encoder')} | {gate(r, 'decoder')} | "
        + (" / ".join(f"{p:.3f}" for p in r["mean_route_probs"]) if r.get("mean_route_probs") else "-")
        + f" | {r['seconds']:.0f} |"
        for n, r in results.items()
    )
    curves = "\n".join(
        f"| {n} | " + " | ".join(f"{100 * e['val/cer']:.2f}" for e in r["epochs"] if "val/cer" in e) + " |"
        for n, r in results.items()
    )
    init = "\n".join(
        f"| {n} | {r['init']['loss_audio_only']:.3f} | {r['init']['loss_with_video']:.3f} | "
        f"{r['init']['max_abs_logit_diff']:.3g} |" for n, r in results.items()
    )
    md = ("# router scales learned gates (scale) vs router emits gates (emit)\n\n"
          "## untrained model vs the audio-only model it starts from (first B2 batch, teacher forced)\n\n"
          "| variant | loss, video masked | loss, with video | max abs logit diff |\n|---|---:|---:|---:|\n"
          f"{init}\n\n## final B2 scores (autoregressive, percent)\n\n{table}\n\n"
          "## after training: mean |tanh(gate)| per side, mean route probabilities (enc / dec / both), seconds\n\n"
          "| variant | encoder gates | decoder gates | route probs | s |\n|---|---:|---:|---|---:|\n"
          f"{learned}\n\n## teacher-forced B2 CER per epoch (percent)\n\n{curves}\n")
    atomic_write(out_dir / "results.md", md)
    png = plot(results, out_dir / "val_cer_curves.png")
    print(md)
    print(f"results: {results_file}\nplot: {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
