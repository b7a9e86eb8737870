"""Zero-shot Whisper tiny.en on a prepared tree, per intelligibility level: is difficulty ordered by level?

    uv run python experiments/zero_shot_levels.py PREPARED [--model /tmp/tiny_en] [--mic M5] [--blocks B2]

Transcribes one microphone channel of the chosen blocks' isolated words with Whisper (greedy, no fine-tuning),
normalises hypothesis and reference (lower case, punctuation, spaces and apostrophes dropped, a lone digit written as its
word) and
prints per level the number of words, WER (fraction of words not recognised exactly) and a few errors.

The model folder is a Hugging Face Whisper checkpoint; the real tiny.en weights bundled offline are converted
on first use when ``--model`` does not exist yet (``av_fusion_models.ct2.ensure_bundled_tiny_en``).
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

LEVELS = ("control", "high", "mid", "low", "very_low")
DIGITS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


def normalise(text: str) -> str:
    t = re.sub(r"[^a-z0-9' ]+", " ", text.lower().replace("-", " ")).strip()
    t = " ".join(t.split())
    if t.isdigit() and len(t) == 1:
        t = DIGITS[int(t)]
    return t.replace(" ", "").replace("'", "")  # "back space" is "backspace"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("prepared", type=Path, help="a prepared tree (manifest.jsonl)")
    ap.add_argument("--model", type=Path, default=Path("/tmp/tiny_en"), help="Hugging Face Whisper folder")
    ap.add_argument("--mic", default="M5")
    ap.add_argument("--blocks", nargs="+", default=["B2"])
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    ap.add_argument("--show", type=int, default=4, help="errors shown per level")
    args = ap.parse_args(argv)

    from transformers import WhisperForConditionalGeneration, WhisperProcessor
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()

    if not (args.model / "config.json").is_file():  # any Hugging Face Whisper folder is used as it is
        from av_fusion_models.ct2 import ensure_bundled_tiny_en

        ensure_bundled_tiny_en(args.model)
    torch.set_num_threads(args.threads)
    proc = WhisperProcessor.from_pretrained(args.model)
    model = WhisperForConditionalGeneration.from_pretrained(args.model).eval()

    from uaspeech_prep.manifest import manifest_path, read_records

    recs = [r.to_dict() for r in read_records(manifest_path(args.prepared))
            if r.block in args.blocks and args.mic in (r.audio or {})]
    if not recs:
        print(f"no {args.mic} audio of blocks {args.blocks} in {args.prepared}", file=sys.stderr)
        return 1
    hyps: list[str] = []
    for i in range(0, len(recs), args.batch):
        chunk = recs[i : i + args.batch]
        audio = []
        for r in chunk:
            x, sr = sf.read(str(args.prepared / r["audio"][args.mic]), dtype="float32")
            assert sr == 16000, sr
            audio.append(x)
        feats = proc.feature_extractor(audio, sampling_rate=16000, return_tensors="pt").input_features
        with torch.inference_mode():
            out = model.generate(feats, attention_mask=torch.ones(feats.shape[0], feats.shape[-1], dtype=torch.long),
                                 max_new_tokens=16, num_beams=1, do_sample=False)
        hyps += proc.batch_decode(out, skip_special_tokens=True)

    res: dict[str, list[tuple[str, str, str]]] = defaultdict(list)
    for r, h in zip(recs, hyps, strict=True):
        res[r.get("level") or "control"].append((r["utt_id"], normalise(r["word"]), normalise(h)))
    print(f"zero-shot {args.model.name} on {args.prepared}, mic {args.mic}, blocks {' '.join(args.blocks)}")
    print(f"{'level':<9} {'words':>5} {'WER %':>6}  errors (utt: reference -> hypothesis)")
    total = []
    for lv in LEVELS:
        if lv not in res:
            continue
        rows = res[lv]
        wrong = [x for x in rows if x[1] != x[2]]
        total += [x[1] != x[2] for x in rows]
        shown = ", ".join(f"{u}: {ref} -> {hyp or '<none>'}" for u, ref, hyp in wrong[: args.show])
        print(f"{lv:<9} {len(rows):>5} {100 * len(wrong) / len(rows):>6.1f}  {shown}")
    print(f"{'all':<9} {len(total):>5} {100 * np.mean(total):>6.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
