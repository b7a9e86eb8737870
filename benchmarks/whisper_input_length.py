"""Does cutting Whisper's encoder input to the clip (instead of 30 s) change recognition?

`uv run python benchmarks/whisper_input_length.py [--words N] [--steps S] [--out DIR]`

Real Whisper tiny.en (bundled CTranslate2 weights, converted offline) recognises isolated words
synthesized with espeak-ng (uaspeech-prep's engine) from the UASpeech word list:

1. before fine-tuning: greedy WER with the input cut to the clip (+ a few frames) vs Whisper's 30 s
   padding (the exact features of HF's WhisperFeatureExtractor), free and vocabulary-constrained;
2. a short fine-tune on *other* voices and degradations, with cut inputs (what av-train does by default);
3. after fine-tuning: the same evaluation again.

Writes results.json and a Markdown table (results.md) to --out (default benchmarks/results/whisper_input_length).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _whisper_assets import speak, tiny_en_dir  # noqa: E402

from av_fusion_models import (  # noqa: E402
    AVWhisperConfig,
    AVWhisperForConditionalGeneration,
    TokenTrie,
    log_mel,
    pad_log_mel_batch,
)

DIGITS = {str(i): w for i, w in enumerate("zero one two three four five six seven eight nine".split())}
TEST_VOICES = [("en-us+m2", None), ("en-us+f2", None), ("en-us+m2", "mid"), ("en-us+f2", "mid")]
TRAIN_VOICES = [("en-us", None), ("en-us+m3", "high"), ("en-us+f1", "mid"), ("en-us+m4", "mid"), ("en-us+f4", "high")]


def norm(text: str) -> str:
    from av_eval.normalize import normalize

    return " ".join(DIGITS.get(t, t) for t in normalize(text).split())


def wordlist() -> list[str]:
    from uaspeech_prep.corpus import builtin_wordlist

    return sorted({w.strip().lower() for w in builtin_wordlist().values()})


def synth_set(words, voices, seed0: int, desc: str):
    items = []
    for i, w in enumerate(tqdm(words, desc=desc)):
        for j, (voice, level) in enumerate(voices):
            items.append((w, voice, level, log_mel(speak(w, voice, level, seed=seed0 + 31 * i + j))))
    return items


@torch.inference_mode()
def evaluate(model, tok, items, trie, prompt, suppress, batch: int = 16) -> dict:
    import jiwer

    out = {}
    for mode in ("cut", "30s"):
        model.config.cut_encoder_positions = mode == "cut"
        for constrained in (False, True):
            refs, hyps = [], []
            t0 = time.perf_counter()
            for s in tqdm(range(0, len(items), batch), desc=f"eval {mode}{' constrained' if constrained else ''}",
                          leave=False):
                chunk = items[s : s + batch]
                feats, _ = pad_log_mel_batch([m for *_, m in chunk], pad_to=3000 if mode == "30s" else None)
                ids = model.generate(feats, decoder_input_ids=torch.tensor([prompt] * len(chunk)), max_new_tokens=10,
                                     suppress_tokens=suppress, constraint=trie if constrained else None)
                for (w, *_), row in zip(chunk, ids):
                    refs.append(norm(w))
                    hyps.append(norm(tok.decode(row[len(prompt):], skip_special_tokens=True)) or "<empty>")
            key = f"{mode}{'_constrained' if constrained else ''}"
            out[key] = {"wer": jiwer.wer(refs, hyps), "seconds": time.perf_counter() - t0,
                        "examples": [f"{r} -> {h}" for r, h in list(zip(refs, hyps))[:6]]}
            print(f"  {key:16s} WER {out[key]['wer']:.3f}  ({out[key]['seconds']:.1f} s)")
    model.config.cut_encoder_positions = True
    return out


def fine_tune(model, tok, items, prompt, eot, steps: int, batch: int, lr: float, seed: int = 0) -> list[float]:
    rng = random.Random(seed)
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr, weight_decay=0.0)
    losses = []
    for _ in tqdm(range(steps), desc="fine-tune (cut inputs)"):
        chunk = rng.sample(items, batch)
        feats, lengths = pad_log_mel_batch([m for *_, m in chunk])
        seqs = [prompt + tok.encode(" " + w, add_special_tokens=False) + [eot] for w, *_ in chunk]
        width = max(len(s) for s in seqs)
        dec_in = torch.full((batch, width - 1), eot)
        labels = torch.full((batch, width - 1), -100)
        for i, s in enumerate(seqs):
            dec_in[i, : len(s) - 1] = torch.tensor(s[:-1])
            labels[i, len(prompt) - 1 : len(s) - 1] = torch.tensor(s[len(prompt) :])
        loss = model(feats, decoder_input_ids=dec_in, labels=labels, input_lengths=lengths).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())
    model.eval()
    return losses


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--words", type=int, default=60, help="test words (spread over the word list)")
    ap.add_argument("--steps", type=int, default=150, help="fine-tuning steps (0: skip)")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=1e-5)
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "whisper_input_length")
    args = ap.parse_args(argv)
    torch.manual_seed(0)
    from transformers import WhisperForConditionalGeneration, WhisperTokenizer

    hf = tiny_en_dir()
    tok = WhisperTokenizer.from_pretrained(hf, local_files_only=True)
    whisper = WhisperForConditionalGeneration.from_pretrained(hf, local_files_only=True)
    model = AVWhisperForConditionalGeneration.from_whisper(whisper, AVWhisperConfig(fusion_location="none")).eval()
    gen = whisper.generation_config
    prompt = [gen.decoder_start_token_id, gen.no_timestamps_token_id]
    eot = gen.eos_token_id
    suppress = list(gen.suppress_tokens or [])

    words = wordlist()
    test_words = words[:: max(1, len(words) // args.words)][: args.words]
    trie = TokenTrie.from_words(tok, words)
    print(f"{len(words)} words in the list, {len(test_words)} test words x {len(TEST_VOICES)} voice/level conditions")
    test = synth_set(test_words, TEST_VOICES, seed0=1000, desc="synthesize test")
    results = {"setup": {"model": "whisper tiny.en (bundled CTranslate2 weights)", "test_words": len(test_words),
                         "test_conditions": [f"{v}/{lvl or 'clean'}" for v, lvl in TEST_VOICES],
                         "train_conditions": [f"{v}/{lvl or 'clean'}" for v, lvl in TRAIN_VOICES],
                         "steps": args.steps, "batch": args.batch, "lr": args.lr,
                         "clip_seconds_mean": float(np.mean([m.shape[-1] / 100 for *_, m in test]))}}
    print("before fine-tuning")
    results["before"] = evaluate(model, tok, test, trie, prompt, suppress)
    if args.steps > 0:
        train = synth_set(words, TRAIN_VOICES, seed0=5000, desc="synthesize train")
        t0 = time.perf_counter()
        losses = fine_tune(model, tok, train, prompt, eot, args.steps, args.batch, args.lr)
        results["fine_tune"] = {"seconds": time.perf_counter() - t0, "loss_first10": float(np.mean(losses[:10])),
                                "loss_last10": float(np.mean(losses[-10:]))}
        print("after fine-tuning")
        results["after"] = evaluate(model, tok, test, trie, prompt, suppress)

    args.out.mkdir(parents=True, exist_ok=True)
    lines = ["| model | input | decoding | WER |", "|---|---|---|---|"]
    for phase in ("before", "after"):
        for key, r in results.get(phase, {}).items():
            mode, _, constrained = key.partition("_")
            lines.append(f"| {phase} fine-tune | {'cut to clip' if mode == 'cut' else '30 s padding'} | "
                         f"{'word-list trie' if constrained else 'free'} | {r['wer']:.3f} |")
    table = "\n".join(lines) + "\n"
    print(table)
    for name, text in (("results.json", json.dumps(results, indent=2)), ("results.md", table)):
        tmp = args.out / (name + ".tmp")
        tmp.write_text(text)
        tmp.replace(args.out / name)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
