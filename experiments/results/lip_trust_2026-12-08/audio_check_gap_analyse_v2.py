import json, sys
from pathlib import Path
from av_fusion_models import AVWhisperProcessor
proc = AVWhisperProcessor.from_pretrained("/work/runs/demo_out/models/demo_av")
P = len(proc.prompt_ids)
data = json.loads(Path("/work/runs/gap_log2.json").read_text())
root = Path("/work/runs/demo_out/results/gap_log2/trust_check_log")
def norm(t): return t.replace(" ", "").lower()
clips = {}
for key, batches in data.items():
    cond, snr = key.split("|")
    tag = "" if cond == "clean" else f"_video-{cond}"
    preds = [json.loads(l) for l in open(root / f"predictions_B2_babble_{snr}{tag}.jsonl")]
    rows = []
    for b in batches:
        if isinstance(b, int):  # every clip of the batch below the cutoff: the audio alone already
            rows += [(None, 0.0, 0.0, 0.0, 0.0)] * b
            continue
        ids, a_ids, gap, r, lips, own = b
        for i in range(len(gap)):
            rows.append((proc.batch_decode([a_ids[i][P:]])[0], gap[i], r[i], lips[i], own[i]))
    assert len(rows) == len(preds), (key, len(rows), len(preds))
    clips[key] = [dict(ref=norm(p["reference"]), av=norm(p["hypothesis"]), a=norm(a) if a is not None else norm(p["hypothesis"]), gap=g, r=r, lips=l, own=o) for p, (a, g, r, l, o) in zip(preds, rows)]
json.dump(clips, open("/work/runs/gap_clips2.json", "w"))
def wer(cs, rule):
    return 100 * sum((c["a"] if (c["r"] > 0 and rule(c)) else c["av"]) != c["ref"] for c in cs) / len(cs)
keys = list(clips)
print("rule".ljust(22), " ".join(k[:18].rjust(18) for k in keys))
print("audio".ljust(22), " ".join(f"{100*sum(c['a']!=c['ref'] for c in clips[k])/len(clips[k]):18.1f}" for k in keys))
print("no check".ljust(22), " ".join(f"{wer(clips[k], lambda c: False):18.1f}" for k in keys))
for m in [1, 2, 3, 4, 6]:
    print(f"margin {m}".ljust(22), " ".join(f"{wer(clips[k], lambda c: c['gap'] > m):18.1f}" for k in keys))
for lam in [0.25, 0.5, 1.0]:
    for m in [0, 1, 2, 3, 4]:
        print(f"gap-{lam}*lips>{m}".ljust(22), " ".join(f"{wer(clips[k], lambda c: c['gap'] - lam * c['lips'] > m):18.1f}" for k in keys))
for t in [0.5, 1, 2, 3]:
    for m in [1, 2, 3]:
        print(f"gap>{m}&own>-{t}".ljust(22), " ".join(f"{wer(clips[k], lambda c: c['gap'] > m and c['own'] > -t):18.1f}" for k in keys))
