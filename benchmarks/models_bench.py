"""av-fusion-models performance: `uv run python benchmarks/models_bench.py [--quick] [--json OUT]`.

Every ratio is against a baseline measured in the same run, on the same machine:

1. Training step (forward + backward + AdamW) on 2 s clips, Whisper tiny shape (real tiny.en weights):
   encoder cut to the input (200 mel frames) vs Whisper's 30 s padding (3000 frames).
2. Greedy decoding with video, batch 16, exactly N new tokens each: the fused model (gated cross-attention
   in the decoder, precomputed 512-d video features) vs plain Hugging Face
   `WhisperForConditionalGeneration.generate` on the same 30 s input; also fusion in encoder and decoder
   with the router, the fused models on the cut input (the default for isolated words), our decoder loop
   without the KV cache, the ResNet-18 video front-end alone, plain Whisper's encoder alone and, from it,
   the arithmetic floor of encoder-side fusion on 30 s inputs (the encoder's time scaled by its
   multiply-add ratio with the gated blocks).
3. Parameter and trainable counts per freezing policy.
4. An audio-only training step on isolated words (batch 16, labels padded to the longest word, about 40 %
   padding as in the demo's character-level batches): the loss from logits at every label position (the
   baseline, as before) vs at the labelled positions only (`return_logits=False`, what training runs).
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _whisper_assets import fit, speak, tiny_en_dir  # noqa: E402

from av_fusion_models import (  # noqa: E402
    AVWhisperConfig,
    AVWhisperForConditionalGeneration,
    count_parameters,
    freeze_video_encoder,
    freeze_whisper,
    log_mel,
    pad_log_mel_batch,
    router_train_only,
    unfreeze_all,
    unfreeze_mlp_layers,
)

WORDS = ["three", "seven", "alpha", "bravo", "command", "delete", "enter", "paste", "zero", "yankee", "river",
         "people", "between", "little", "water", "because"]


def timeit(fn, reps: int, warmup: int = 1) -> float:
    """Median wall time of `reps` calls after `warmup` calls (seconds)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def features(batch: int, seconds: float = 2.0):
    """log-mel of `batch` espeak words fitted to `seconds`: (cut [B, 80, 100 s], 30 s padded [B, 80, 3000])."""
    clips = [fit(speak(WORDS[i % len(WORDS)]), seconds) for i in range(batch)]
    mels = [log_mel(c) for c in clips]
    cut, _ = pad_log_mel_batch(mels)
    full, _ = pad_log_mel_batch(mels, pad_to=3000)
    return cut, full


def build(whisper, **cfg) -> AVWhisperForConditionalGeneration:
    torch.manual_seed(0)
    return AVWhisperForConditionalGeneration.from_whisper(copy.deepcopy(whisper), AVWhisperConfig(**cfg))


def make_adamw(params, lr: float):
    """AdamW with the fused CPU/GPU kernel when available (one pass over each tensor)."""
    try:
        return torch.optim.AdamW(params, lr=lr, fused=True)
    except (RuntimeError, TypeError):
        return torch.optim.AdamW(params, lr=lr)


def bench_training(whisper, reps: int, batch: int) -> list[dict]:
    cut, full = features(batch)
    labels = torch.randint(0, 50000, (batch, 8))
    video = torch.randn(batch, 50, 512)  # 2 s at 25 fps, precomputed 512-d features
    times = {}
    for name, feats in (("30 s padding (3000 frames)", full), ("cut encoder (200 frames)", cut)):
        model = build(whisper, fusion_location="decoder", video_encoder="precomputed", video_dim=512,
                      cut_encoder_positions=True).train()
        opt = make_adamw([p for p in model.parameters() if p.requires_grad], lr=1e-5)

        def step(model=model, opt=opt, feats=feats):
            opt.zero_grad(set_to_none=True)
            model(feats, labels=labels, video=video).loss.backward()
            opt.step()

        def fwd_bwd(model=model, feats=feats):
            model.zero_grad(set_to_none=True)
            model(feats, labels=labels, video=video).loss.backward()

        times[("full step (fwd + bwd + fused AdamW)", name)] = timeit(step, reps)
        times[("forward + backward only", name)] = timeit(fwd_bwd, reps)
    rows = []
    for (what, name), t in times.items():
        base = times[(what, "30 s padding (3000 frames)")]
        rows.append({"benchmark": f"train, batch {batch}, 2 s clips: {what}", "variant": name, "seconds": t,
                     "speedup_vs_baseline": base / t})
    return rows


@torch.inference_mode()
def bench_decoding(whisper, reps: int, batch: int, new_tokens: int) -> list[dict]:
    cut, full = features(batch)
    gen_cfg = whisper.generation_config
    prompt_ids = [gen_cfg.decoder_start_token_id, gen_cfg.no_timestamps_token_id]
    prompt = torch.tensor([prompt_ids] * batch)
    video = torch.randn(batch, 50, 512)
    fused_models = {
        "decoder": build(whisper, fusion_location="decoder", video_encoder="precomputed", video_dim=512).eval(),
        "both + router": build(whisper, fusion_location="both", soft_fusion_routing=True,
                               video_encoder="precomputed", video_dim=512).eval(),
    }
    for model in fused_models.values():
        for block in model.gated_xattn_blocks:  # open gates: the fused path really contributes
            block.attn_gate.fill_(0.1)
            block.ff_gate.fill_(0.1)
    plain = copy.deepcopy(whisper).eval()

    def hf():
        out = plain.generate(full, max_new_tokens=new_tokens, min_new_tokens=new_tokens, num_beams=1, do_sample=False)
        assert out.shape[1] >= new_tokens, out.shape

    def ours(feats, fused):
        out = fused.generate(feats, video=video, decoder_input_ids=prompt, max_new_tokens=new_tokens, eos_token_id=-1)
        assert out.shape[1] == len(prompt_ids) + new_tokens

    def ours_uncached(feats, fused):
        fusion = fused.prepare_fusion(feats, video, modality_dropout=False)
        enc = fused.encode(fusion.input_features, fusion)
        kwargs = fusion.kwargs("decoder")
        ids = prompt
        for _ in range(new_tokens):  # the whole prefix through the decoder at every step
            hidden, _ = fused.decode(ids, enc, kwargs, use_cache=False)
            ids = torch.cat([ids, fused.whisper.proj_out(hidden[:, -1]).argmax(-1, keepdim=True)], dim=1)

    dec, both = fused_models["decoder"], fused_models["both + router"]
    times = {
        "plain HF Whisper generate, 30 s input (baseline)": timeit(hf, reps),
        "fused (decoder) + video, 30 s input, KV cache": timeit(lambda: ours(full, dec), reps),
        "fused (decoder) + video, 30 s input, no KV cache": timeit(lambda: ours_uncached(full, dec), reps),
        "fused (both + router) + video, 30 s input, KV cache": timeit(lambda: ours(full, both), reps),
        "fused (decoder) + video, cut 2 s input, KV cache": timeit(lambda: ours(cut, dec), reps),
        "fused (both + router) + video, cut 2 s input, KV cache": timeit(lambda: ours(cut, both), reps),
        "plain HF Whisper encoder alone, 30 s input": timeit(lambda: plain.model.encoder(full), reps),
    }
    # Encoder-side fusion adds a gated block (cross-attention + a 4x FFN) per encoder layer, run on all
    # 1500 frames of a 30 s input: arithmetic the fused model cannot avoid. Its floor: plain generate with
    # the encoder's time scaled by the encoder's multiply-add ratio (the decoder part is left unchanged).
    enc_ratio = encoder_mac_ratio(whisper.config, t_enc=full.shape[-1] // 2, t_video=video.shape[1])
    t_enc = times["plain HF Whisper encoder alone, 30 s input"]
    base = times["plain HF Whisper generate, 30 s input (baseline)"]
    floor = base + t_enc * (enc_ratio - 1)
    resnet = build(whisper, fusion_location="decoder", video_encoder="resnet").eval()
    frames = torch.randn(batch, 50, 88, 88)
    times["ResNet-18 video front-end alone (50 frames x 16)"] = timeit(lambda: resnet.encode_video(frames), 1)
    times[f"arithmetic floor of both + router, 30 s input (encoder MACs x {enc_ratio:.2f})"] = floor
    return [
        {"benchmark": f"greedy, batch {batch}, {new_tokens} new tokens", "variant": k, "seconds": t,
         "time_ratio_vs_baseline": t / base}
        for k, t in times.items()
    ]


def encoder_mac_ratio(wcfg, t_enc: int, t_video: int, ffn_mult: int = 4) -> float:
    """Multiply-adds of a Whisper encoder with a gated block before every layer / without.

    Per layer, T = t_enc frames, d = d_model: self-attention projections 4Td^2, scores and mixing 2T^2 d,
    FFN 2 T d ffn; the gated block: q / out projections 2Td^2, k / v on the video 2 t_video d^2, scores and
    mixing 2 T t_video d, FFN 2 T d (ffn_mult d). Convolutional front-end: 3 n_mels d (2T) + 3 d^2 T.
    """
    d, T, n = wcfg.d_model, t_enc, wcfg.encoder_layers
    conv = 3 * wcfg.num_mel_bins * d * 2 * T + 3 * d * d * T
    layer = 4 * T * d * d + 2 * T * T * d + 2 * T * d * wcfg.encoder_ffn_dim
    gated = 2 * T * d * d + 2 * t_video * d * d + 2 * T * t_video * d + 2 * T * d * ffn_mult * d
    return (conv + n * (layer + gated)) / (conv + n * layer)


def parameter_table(whisper) -> list[dict]:
    rows = []
    policies = {
        "all trainable": lambda m: unfreeze_all(m),
        "freeze_whisper": lambda m: freeze_whisper(unfreeze_all(m)),
        "freeze_whisper + unfreeze_mlp_layers": lambda m: unfreeze_mlp_layers(freeze_whisper(unfreeze_all(m))),
        "freeze_whisper + freeze_video_encoder": lambda m: freeze_video_encoder(freeze_whisper(unfreeze_all(m))),
        "router_train_only": lambda m: router_train_only(unfreeze_all(m)),
    }
    setups = {
        "tiny.en, both + router, ResNet-18": dict(fusion_location="both", soft_fusion_routing=True),
        "tiny.en, decoder, AV-HuBERT Base": dict(fusion_location="decoder", video_encoder="avhubert",
                                                 avhubert_size="base"),
    }
    for setup, cfg in setups.items():
        model = build(whisper, **cfg)
        for policy, apply in policies.items():
            if policy == "router_train_only" and model.router is None:
                continue
            apply(model)
            total, trainable = count_parameters(model)
            rows.append({"model": setup, "policy": policy, "total": total, "trainable": trainable,
                         "trainable_pct": 100.0 * trainable / total})
    return rows


def print_table(rows: list[dict], columns: list[str]) -> None:
    def fmt(v):
        if isinstance(v, float):
            return f"{v:.3f}" if abs(v) < 1000 else f"{v:,.0f}"
        if isinstance(v, int):
            return f"{v:,}"
        return str(v)

    cells = [[fmt(r[c]) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    print("| " + " | ".join(c.ljust(w) for c, w in zip(columns, widths)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in cells:
        print("| " + " | ".join(v.ljust(w) for v, w in zip(row, widths)) + " |")
    print()


def bench_loss_projection(whisper, reps: int, batch: int = 16) -> list[dict]:
    """Step time with the vocabulary projection over every label position vs the labelled ones only."""
    cut, _ = features(batch, seconds=1.2)
    # the demo's words, one token per character plus two (as its character-level labels): ~38 % padding
    words = ["one", "two", "six", "tab", "alt", "backspace", "command", "escape", "control", "delete", "enter",
             "shift", "line", "seven", "three", "eight"]
    lengths = [2 + len(words[i % len(words)]) for i in range(batch)]
    labels = torch.full((batch, max(lengths)), -100, dtype=torch.long)
    for i, n in enumerate(lengths):
        labels[i, :n] = torch.randint(0, 50000, (n,))
    model = build(whisper, fusion_location="none", cut_encoder_positions=True).train()
    opt = make_adamw([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    losses = {}

    def step(return_logits: bool):
        opt.zero_grad(set_to_none=True)
        loss = model(cut, labels=labels, label_smoothing=0.1, return_logits=return_logits).loss
        loss.backward()
        losses[return_logits] = loss.item()
        # no opt.step(): both variants then see the same weights, so their losses must agree
    variants = {"logits at every label position (baseline)": True, "labelled positions only": False}
    times = {name: timeit(lambda flag=flag: step(flag), reps) for name, flag in variants.items()}
    if abs(losses[True] - losses[False]) > 1e-4:
        raise AssertionError(f"the two loss paths disagree: {losses}")
    padding = 1 - (labels != -100).float().mean().item()
    base = times["logits at every label position (baseline)"]
    return [{"benchmark": f"audio-only train fwd + bwd, batch {batch}, {padding:.0%} label padding", "variant": name,
             "seconds": t, "speedup_vs_baseline": base / t} for name, t in times.items()]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="one timed repetition per variant (after one warm-up)")
    ap.add_argument("--json", type=Path, help="also write the results as JSON")
    ap.add_argument("--skip", nargs="*", default=[], choices=["train", "decode", "params", "loss"])
    ap.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's choice)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    from transformers import WhisperForConditionalGeneration

    whisper = WhisperForConditionalGeneration.from_pretrained(tiny_en_dir(), local_files_only=True)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, whisper tiny.en (real weights, fp32, CPU)\n")
    results = {}
    if "train" not in args.skip:
        results["train"] = bench_training(whisper, reps=1 if args.quick else 3, batch=8)
        print_table(results["train"], ["benchmark", "variant", "seconds", "speedup_vs_baseline"])
    if "decode" not in args.skip:
        results["decode"] = bench_decoding(whisper, reps=1 if args.quick else 3, batch=16, new_tokens=20)
        print_table(results["decode"], ["benchmark", "variant", "seconds", "time_ratio_vs_baseline"])
    if "params" not in args.skip:
        results["params"] = parameter_table(whisper)
        print_table(results["params"], ["model", "policy", "total", "trainable", "trainable_pct"])
    if "loss" not in args.skip:
        results["loss"] = bench_loss_projection(whisper, reps=1 if args.quick else 5)
        print_table(results["loss"], ["benchmark", "variant", "seconds", "speedup_vs_baseline"])
    if args.json:
        tmp = args.json.with_suffix(args.json.suffix + ".tmp")
        tmp.write_text(json.dumps(results, indent=2))
        tmp.replace(args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
