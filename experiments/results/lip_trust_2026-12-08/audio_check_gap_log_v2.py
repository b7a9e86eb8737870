"""Log, per clip, the audio check's gap and the scorer's r, with both hypotheses (margin huge: never overrules)."""
import json, sys, time
from pathlib import Path
import torch
import av_fusion_models.audio_check as ac
import av_train.evaluation.decoding as dec
LOG = []
_orig = ac.decode_with_audio_check

def logged(step, search, prompt_len, eos, pad):
    ids = search(step)
    r = step.video_reliability
    audio = step.audio_only
    if audio is None or r is None:
        LOG.append(ids.shape[0]); return ids, r
    a_ids = search(audio)
    own = audio.score(a_ids, prompt_len, eos)
    gap = own - audio.score(ids, prompt_len, eos)
    lips = step.score(ids, prompt_len, eos) - step.score(a_ids, prompt_len, eos)  # the AV model's own preference
    LOG.append((ids.tolist(), a_ids.tolist(), gap.tolist(), r.tolist(), lips.tolist(), own.tolist()))
    return ids, r
dec.decode_with_audio_check = logged
from av_train.evaluation.noise import evaluate_video_conditions, parse_snrs
W = Path("/work/runs/demo_out"); ck = W / "weights/checkpoint"
out = {}
for cond in sys.argv[1:]:
    for snr in ["clean", "0", "-5"]:
        LOG.clear()
        t0 = time.time()
        evaluate_video_conditions([ck / "trust_check_log/best.ckpt"], "babble", parse_snrs([snr]), W / "results/gap_log2", conditions=[cond], progress=False)
        out[f"{cond}|{snr}"] = list(LOG)
        print(cond, snr, f"{time.time()-t0:.0f} s", flush=True)
Path("/work/runs/gap_log2.json").write_text(json.dumps(out))
