"""Transcribing isolated words: our audio-only path vs faster-whisper on the same weights; AV with lip ROI.

    uv run python benchmarks/transcribe_bench.py [--workdir demo_out] [--clips 200]

Needs a finished `av-cli demo` in --workdir (its fine-tuned audio-only and audio-visual tiny.en runs and its
corpus). The audio-only run is exported twice, as our folder (`av-cli export`) and as CTranslate2
(`av-cli export --format ct2`), so both sides decode the same fine-tuned weights:

- ours: `av-cli transcribe`'s path per clip (read the wav, processor, greedy decoding; clips cut to their
  length, as the model was trained), batch 1, open vocabulary; and the same with `--batch-size 16` (what
  `av-cli transcribe` does for a list of recordings; a batch shares each weight read of every decoding step);
- faster-whisper `WhisperModel.transcribe` (greedy, no timestamps, no VAD, no fallback), compute types int8 and
  float32, 2 CPU threads;
- ours, audio-visual: a 2-s face video with sound -> PyAV audio + mediapipe lip ROI + the fused model.

Prints a table of ms per clip, ratio to faster-whisper float32 (measured in the same run) and WER on the clips;
writes it to benchmarks/results/transcribe_bench/results.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "transcribe_bench"


def b2_clips(corpus: Path, n: int) -> list[dict]:
    """``n`` B2 utterances (microphone M5) spread over speakers, deterministic."""
    from uaspeech_prep.manifest import manifest_path, read_records

    recs = [r.to_dict() for r in read_records(manifest_path(corpus))]
    recs = sorted((r for r in recs if r["block"] == "B2" and "M5" in r["audio"]), key=lambda r: r["utt_id"])
    if len(recs) < n:
        print(f"only {len(recs)} B2 utterances in {corpus}; using them all", file=sys.stderr)
        return recs
    idx = np.linspace(0, len(recs) - 1, n).round().astype(int)
    return [recs[i] for i in idx]


def wer_of(hyps: list[str], refs: list[str]) -> float:
    from av_eval.metrics import score_predictions
    from av_eval.predictions import Prediction

    preds = [Prediction(str(i), r, h, "S", "high", "common") for i, (h, r) in enumerate(zip(hyps, refs))]
    return score_predictions(preds).total.wer


def time_each(fn, items, warmup: int = 3) -> tuple[list, float]:
    for it in items[:warmup]:
        fn(it)
    out, t0 = [], time.perf_counter()
    for it in items:
        out.append(fn(it))
    return out, (time.perf_counter() - t0) / len(items)


def main(argv: list[str] | None = None) -> int:
    import torch

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workdir", default="demo_out", help="folder of a finished `av-cli demo`")
    p.add_argument("--clips", type=int, default=200)
    p.add_argument("--av-clips", type=int, default=10)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    work = Path(args.workdir)
    ckpt = work / "weights" / "checkpoint"
    if not (ckpt / "demo_audio" / "best.ckpt").is_file() or not (ckpt / "demo_av" / "best.ckpt").is_file():
        print(f"{work}: no finished demo (weights/checkpoint/demo_audio and demo_av); run `uv run av-cli demo "
              f"--workdir {work}` first", file=sys.stderr)
        return 2
    from faster_whisper import WhisperModel

    from av_fusion_models import join_char_level, recognize
    from av_train.export import export_hf
    from av_train.export.ct2 import export_ct2
    from av_train.inference.media import face_video_with_sound, read_audio
    from av_train.inference.transcribe import Item, load_model, transcribe

    bench = work / "bench"
    hf_dir, ct2_dir, av_dir = bench / "audio_hf", bench / "audio_ct2", bench / "av_hf"
    for make, src, dst in ((export_hf, ckpt / "demo_audio", hf_dir), (export_ct2, ckpt / "demo_audio", ct2_dir),
                           (export_hf, ckpt / "demo_av", av_dir)):
        make(src, dst, overwrite=True)
    clips = b2_clips(work / "corpus", args.clips)
    refs = [c["word"] for c in clips]
    paths = [work / "corpus" / c["audio"]["M5"] for c in clips]
    rows = []

    model, proc = load_model(hf_dir, "cpu")

    def ours(path):
        a = read_audio(path)
        return recognize(model, proc, audio=a.samples, sampling_rate=a.rate, top_k=0)[0].text

    hyps, sec = time_each(ours, paths)
    rows.append({"system": "ours, audio-only (cut input, greedy)", "ms_per_clip": 1000 * sec, "wer": wer_of(hyps, refs)})
    print(f"ours: {1000 * sec:.1f} ms/clip", flush=True)

    items = [Item(str(p), p, None) for p in paths]
    transcribe(model, proc, items[:16], top_k=0, batch_size=16, progress=False)  # warm-up
    t0 = time.perf_counter()
    outs = transcribe(model, proc, items, top_k=0, batch_size=16, progress=False)
    sec = (time.perf_counter() - t0) / len(items)
    rows.append({"system": "ours, audio-only, --batch-size 16", "ms_per_clip": 1000 * sec,
                 "wer": wer_of([o.text or "" for o in outs], refs)})
    print(f"ours, batch 16: {1000 * sec:.1f} ms/clip", flush=True)

    for compute in ("float32", "int8"):
        fw = WhisperModel(str(ct2_dir), device="cpu", compute_type=compute, cpu_threads=args.threads)

        def theirs(path, fw=fw):
            segments, _ = fw.transcribe(str(path), beam_size=1, temperature=0.0, without_timestamps=True,
                                        condition_on_previous_text=False, vad_filter=False, language="en")
            return join_char_level("".join(s.text for s in segments))

        hyps, sec = time_each(theirs, paths)
        rows.append({"system": f"faster-whisper {compute} (30-s window, greedy)", "ms_per_clip": 1000 * sec,
                     "wer": wer_of(hyps, refs)})
        print(f"faster-whisper {compute}: {1000 * sec:.1f} ms/clip", flush=True)

    # audio-visual: 2-s face videos with sound, made from B2 clips (frames + recording, padded to 2 s)
    videos = []
    for c in [c for c in clips if c.get("clip")][: args.av_clips]:
        dst = bench / "videos" / f"{c['utt_id']}.mp4"
        if not dst.is_file():
            face_video_with_sound(work / "corpus" / c["clip"], work / "corpus" / c["audio"]["M5"], dst, min_seconds=2.0)
        videos.append((dst, c["word"]))
    av_model, av_proc = load_model(av_dir, "cpu")
    av_proc = av_proc.with_vocabulary(None)  # open decoding, as the audio rows

    def av_one(item):
        return transcribe(av_model, av_proc, [Item(str(item[0]), None, item[0])], top_k=0, progress=False)[0]

    outs, sec = time_each(av_one, videos, warmup=1)
    failed = [o.error for o in outs if o.error]
    rows.append({"system": "ours, audio-visual, 2-s face video incl. lip ROI", "ms_per_clip": 1000 * sec,
                 "wer": wer_of([o.text or "" for o in outs], [w for _, w in videos]), "n": len(videos),
                 "failed": len(failed)})
    print(f"ours AV: {1000 * sec:.1f} ms/clip ({len(failed)} failed)", flush=True)

    base = next(r["ms_per_clip"] for r in rows if r["system"].startswith("faster-whisper float32"))
    lines = ["| system | clips | ms per clip | x faster than faster-whisper float32 | WER % |", "|---|---:|---:|---:|---:|"]
    for r in rows:
        n = r.get("n", len(paths))
        lines.append(f"| {r['system']} | {n} | {r['ms_per_clip']:.1f} | {base / r['ms_per_clip']:.2f} | "
                     f"{100 * r['wer']:.1f} |")
    table = "\n".join(lines)
    print(table)
    OUT.mkdir(parents=True, exist_ok=True)
    meta = {"threads": args.threads, "clips": len(paths), "workdir": str(work), "torch": torch.__version__}
    (OUT / "results.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    (OUT / "results.md").write_text(table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
