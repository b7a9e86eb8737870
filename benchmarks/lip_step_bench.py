"""Lip-reading training step on CPU: `uv run python benchmarks/lip_step_bench.py [--reps N] [--batch B] [--frames T]`.

A lip-reading step (modality video: the ResNet-18 video front-end at the demo's width 8, decoder fusion, Whisper
tiny.en frozen, hearing silence) has two costs that do not depend on what is learnt, both measured here against
the way they were computed before, in the same run on the same batch:

1. the video stem's weight gradient: `nn.Conv3d` (1 input channel, kernel 5 x 7 x 7) backward on CPU, against the
   same maths as a Conv2d over the 5 stacked neighbour frames (`video_resnet.stem_conv`, what training runs now);
2. Whisper's encoder on the silence a lip reader hears: once per row, against once per batch and repeated
   (`AVWhisperForConditionalGeneration.encoder_states`).

Then the whole step (forward, label-smoothed loss, backward, AdamW) with both old paths against both new ones,
and the whole step on the 88-pixel ROI frames against the same frames resized to 44 pixels inside the model
(`video_frame_size: 44`, the demo's setting since 2026-12-06).
Model: the real Whisper tiny.en (converted offline from the bundled CTranslate2 weights). Prints a table of
seconds and ratios (old / new); writes results.json and results.md to --out
(default benchmarks/results/lip_step).
"""

from __future__ import annotations

import argparse
import json
import sys
import types
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))


def old_video_forward(self, video: torch.Tensor) -> torch.Tensor:
    """ResNetVideoEncoder.forward as it was: the stem as nn.Conv3d, gradient or not."""
    bsz, t = video.shape[:2]
    x = self.frontend3d(video.unsqueeze(1))
    x = x.transpose(1, 2).reshape(bsz * t, x.shape[1], x.shape[3], x.shape[4])
    return self.trunk(x).view(bsz, t, -1)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--batch", type=int, default=16, help="clips per batch (the demo's batch_size)")
    ap.add_argument("--frames", type=int, default=50, help="video frames per clip (2 s at 25 fps)")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "lip_step")
    args = ap.parse_args(argv)

    from _whisper_assets import tiny_en_dir
    from models_bench import timeit  # median of reps after one warm-up call
    from transformers import WhisperForConditionalGeneration

    from av_fusion_models import AVWhisperConfig, AVWhisperForConditionalGeneration, ResNetVideoEncoder
    from av_fusion_models.freezing import freeze_whisper

    torch.manual_seed(0)
    whisper = WhisperForConditionalGeneration.from_pretrained(tiny_en_dir(), local_files_only=True)
    model = AVWhisperForConditionalGeneration.from_whisper(
        whisper, AVWhisperConfig(fusion_location="decoder", video_only=True, resnet_width=8, xattn_gate_init=0.5))
    freeze_whisper(model)
    model.train()
    video = torch.randn(args.batch, args.frames, 88, 88)
    labels = torch.randint(0, 1000, (args.batch, 12))
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)

    encoder = model.video_encoder
    assert isinstance(encoder, ResNetVideoEncoder)
    new_forward = encoder.forward
    stem = encoder.frontend3d[0]

    def stem_step(use_old: bool):
        def run():
            from av_fusion_models.video_resnet import stem_conv

            y = stem(video.unsqueeze(1)) if use_old else stem_conv(stem, video)
            y.sum().backward()
            stem.weight.grad = None
        return run

    fusion = model.prepare_fusion(None, video, modality_dropout=False)
    feats = fusion.input_features.detach()

    def encoder_rows():
        with torch.no_grad():
            model.encode(feats, fusion)

    def encoder_once():
        with torch.no_grad():
            model.encoder_states(fusion)

    def whole_step(use_old: bool):
        def run():
            if use_old:
                encoder.forward = types.MethodType(old_video_forward, encoder)
                model.encoder_states = lambda f: model.encode(f.input_features, f)
            try:
                loss = model(None, labels=labels, video=video, label_smoothing=0.1).loss
                loss.backward()
                opt.step()
                opt.zero_grad(set_to_none=True)
            finally:
                encoder.forward = new_forward
                model.__dict__.pop("encoder_states", None)
        return run

    def frame_size_step(size):
        def run():
            model.config.video_frame_size = size
            try:
                whole_step(False)()
            finally:
                model.config.video_frame_size = None
        return run

    rows = [
        ("video stem forward + weight gradient", timeit(stem_step(True), args.reps), timeit(stem_step(False), args.reps)),
        ("Whisper encoder on the lip reader's silence", timeit(encoder_rows, args.reps), timeit(encoder_once, args.reps)),
        ("whole lip-reading training step", timeit(whole_step(True), args.reps), timeit(whole_step(False), args.reps)),
        # the same step with the frames resized to 44 x 44 inside the model (the demo's video_frame_size)
        ("whole step, 88-px frames -> video_frame_size 44", timeit(frame_size_step(None), args.reps),
         timeit(frame_size_step(44), args.reps)),
    ]
    threads = torch.get_num_threads()
    lines = [f"# Lip-reading training step, CPU ({threads} threads), batch {args.batch} x {args.frames} frames, "
             f"median of {args.reps}", "",
             "| part | before (s) | now (s) | before / now |", "|---|---:|---:|---:|"]
    lines += [f"| {name} | {old:.3f} | {new:.3f} | {old / new:.1f}x |" for name, old, new in rows]
    table = "\n".join(lines) + "\n"
    print(table)
    args.out.mkdir(parents=True, exist_ok=True)
    results = {"threads": threads, "batch": args.batch, "frames": args.frames, "reps": args.reps,
               "rows": [{"part": n, "before_s": o, "now_s": w, "ratio": o / w} for n, o, w in rows]}
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.out / "results.md").write_text(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
