"""Bad inputs through `av-cli`, as a user would type them (issue: hardening round two, its closing table).

    uv run python experiments/hardening_sweep.py --workdir DIR [--out SWEEP_DIR]

DIR is what `av-cli demo --workdir DIR` made (its exported model, runs, corpus and recordings). Every case runs
`uv run av-cli ...` in a subprocess and is judged on what the user sees: the exit code, the last line of stderr, no
Python traceback, and (where it writes) no half-written or mixed output under a final name. Writes
SWEEP_DIR/sweep.md (the table) and sweep.json. Nothing under DIR is modified: damaged copies live in SWEEP_DIR.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from av_common.files import current_umask

REPO = Path(__file__).resolve().parents[1]


def av_cli(*args: str, timeout: int = 600) -> tuple[int, str, str]:
    p = subprocess.run(["uv", "run", "--quiet", "av-cli", *map(str, args)], cwd=REPO, capture_output=True, text=True,
                       timeout=timeout)
    return p.returncode, p.stdout, p.stderr


def last_line(err: str) -> str:
    lines = [x for x in err.strip().splitlines() if x.strip() and not x.startswith(("Loading weights", "\r"))]
    return lines[-1].strip() if lines else ""


def make_inputs(work: Path, sweep: Path) -> dict[str, Path]:
    import soundfile as sf

    from av_train.inference.media import read_audio, write_video_with_audio
    from uaspeech_prep.video_io import iter_frames, probe

    sweep.mkdir(parents=True, exist_ok=True)
    rec = sorted((work / "recordings").glob("*.mp4"))[0]
    wav = sweep / "word.wav"
    track = read_audio(rec)  # the recording's own sound
    audio, rate = track.samples, track.rate
    sf.write(wav, audio, rate)
    bad = audio.copy()
    bad[1000:1010] = np.nan
    sf.write(sweep / "nan.wav", bad, rate, subtype="FLOAT")
    frames = list(iter_frames(rec))
    write_video_with_audio(sweep / "one_frame.mp4", [f[..., ::-1] for f in frames[:1]], probe(rec).fps, audio, rate)
    crops = sorted((work / "corpus" / "video" / "roi").rglob("*B2*.mp4"))[0]  # prepare's 96 x 96 mouth crops
    model = work / "models" / "demo_av"

    def damaged(name: str, edit) -> Path:
        d = sweep / name
        if d.exists():
            shutil.rmtree(d)
        shutil.copytree(model, d)
        edit(d)
        return d

    def truncate(d: Path) -> None:
        f = d / "model.safetensors"
        f.write_bytes(f.read_bytes()[: f.stat().st_size // 3])

    def huge_header(d: Path) -> None:
        f = d / "model.safetensors"
        data = f.read_bytes()
        f.write_bytes((2**60).to_bytes(8, "little") + data[8:])

    def edit_json(name: str, **fields):
        def go(d: Path) -> None:
            p = d / name
            p.write_text(json.dumps({**json.loads(p.read_text()), **fields}))
        return go

    (sweep / "empty_row.csv").write_text(f"id,audio,video\n\nfirst,{wav},\nempty,,\nlast,{wav},\n")
    preds = sorted((work / "results").rglob("predictions_B2.jsonl"))[0]
    lines = preds.read_text().splitlines()
    (sweep / "dup.jsonl").write_text("\n".join(lines[:3] + lines[:1]) + "\n")
    (sweep / "int_line.jsonl").write_text("\n".join(lines[:2] + ["42"]) + "\n")
    many = sweep / "many.csv"
    many.write_text("id,audio,video\n" + "".join(f"r{i},{wav},\n" for i in range(3000)))
    return {
        "rec": rec, "wav": wav, "crops": crops, "model": model, "many": many,
        "truncated": damaged("m_truncated", truncate), "huge_header": damaged("m_huge_header", huge_header),
        "nmels": damaged("m_nmels", edit_json("whisper_config.json", num_mel_bins="eighty")),
        "no_tok": damaged("m_no_tok", lambda d: (d / "tokenizer.json").unlink()),
        "trunc_tok": damaged("m_trunc_tok", lambda d: (d / "tokenizer.json").write_text(
            (d / "tokenizer.json").read_text()[:500])),
        "neg_fps": damaged("m_neg_fps", edit_json("processor_config.json", video_fps=-25)),
        "zero_crop": damaged("m_zero_crop", edit_json("processor_config.json", crop_size=0)),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workdir", required=True)
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    work = Path(args.workdir).resolve()
    sweep = Path(args.out).resolve() if args.out else work / "hardening_sweep"
    x = make_inputs(work, sweep)
    audio_run = work / "weights" / "checkpoint" / "demo_audio"
    cases: list[tuple[str, list[str], str]] = [
        # (case, av-cli arguments, what the answer must say)
        ("audio with NaN samples", ["transcribe", x["model"], sweep / "nan.wav", "--allow-audio-only"], "NaN or infinite"),
        ("a one-frame video", ["transcribe", x["model"], sweep / "one_frame.mp4"], "a word needs at least 0.2 s"),
        ("--roi-input on a whole face", ["transcribe", x["model"], x["rec"], "--roi-input"], "expects mouth crops"),
        ("mouth crops without --roi-input", ["transcribe", work / "weights" / "checkpoint" / "demo_lip", x["crops"]],
         "--roi-input"),
        ("a folder as the input file", ["transcribe", x["model"], sweep], "is a folder"),
        ("a list with an empty row", ["transcribe", x["model"], sweep / "empty_row.csv", "--allow-audio-only"],
         "both audio and video are empty"),
        ("truncated model.safetensors", ["transcribe", x["truncated"], x["rec"]], "model.safetensors"),
        ("safetensors header claiming 2^60 bytes", ["transcribe", x["huge_header"], x["rec"]], "model.safetensors"),
        ("non-numeric num_mel_bins", ["transcribe", x["nmels"], x["rec"]], "num_mel_bins"),
        ("tokenizer.json missing", ["transcribe", x["no_tok"], x["rec"]], "tokenizer.json"),
        ("tokenizer.json truncated", ["transcribe", x["trunc_tok"], x["rec"]], "tokenizer.json"),
        ("processor_config.json: video_fps -25", ["transcribe", x["neg_fps"], x["rec"]], "video_fps"),
        ("processor_config.json: crop_size 0", ["transcribe", x["zero_crop"], x["rec"]], "crop_size"),
        ("score: a repeated utterance id", ["score", sweep / "dup.jsonl"], "already on line 1"),
        ("score: a line `42`", ["score", sweep / "int_line.jsonl"], "a JSON object"),
        ("eval --split B9", ["eval", audio_run, "--split", "B9"], "invalid choice"),
        ("train: learning_rate 1000", ["train", REPO / "configs" / "demo_audio.yaml",
                                       f"uaspeech_root={work / 'corpus'}",
                                       f"model_name={work / 'models' / 'whisper-tiny.en'}", "local_model_only=true",
                                       f"output_root={sweep / 'train_out'}", "train_id=diverge", "learning_rate=1000",
                                       "warmup_steps=0", "max_epochs=1", "progress_bar=false"], "learning rate"),
        ("train: speakers: []", ["train", REPO / "configs" / "demo_audio.yaml", f"uaspeech_root={work / 'corpus'}",
                                 "speakers=[]"], "'speakers' is an empty list"),
        ("train: pt_audio_ckpt of a lip reader", [
            "train", REPO / "configs" / "demo_audio.yaml", f"uaspeech_root={work / 'corpus'}",
            f"model_name={work / 'models' / 'whisper-tiny.en'}", "local_model_only=true",
            f"output_root={sweep / 'train_out'}", "train_id=wrong_pt",
            f"pt_audio_ckpt={work / 'weights' / 'checkpoint' / 'demo_lip' / 'best.ckpt'}"], "best.ckpt"),
    ]
    rows = []
    for name, cli, must in cases:
        t0 = time.perf_counter()
        rc, out, err = av_cli(*cli)
        line = last_line(err) or last_line(out)
        json_ok = True
        if cli[0] == "transcribe" and out.strip():
            try:
                [json.loads(r) for r in out.strip().splitlines()]
            except ValueError:
                json_ok = False
        rows.append({"case": name, "exit": rc, "traceback": "Traceback" in err, "says_what_to": must in err + out,
                     "json_ok": json_ok, "last_line": line[:220], "seconds": round(time.perf_counter() - t0, 1)})
        print(f"{name}: exit {rc}: {line[:160]}", flush=True)

    # two exports into one folder at the same moment: one wins whole, the other is refused
    out_dir = sweep / "two_exports"
    shutil.rmtree(out_dir, ignore_errors=True)
    procs = [subprocess.Popen(["uv", "run", "--quiet", "av-cli", "export", str(run), str(out_dir)], cwd=REPO,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for run in (audio_run, work / "weights" / "checkpoint" / "demo_av")]
    results = [(pr.wait(timeout=600), pr.stderr.read()) for pr in procs]
    info = json.loads((out_dir / "export.json").read_text()) if (out_dir / "export.json").is_file() else {}
    cfg = json.loads((out_dir / "config.json").read_text()) if (out_dir / "config.json").is_file() else {}
    weights_ok = (out_dir / "model.safetensors").is_file()
    consistent = weights_ok and (info.get("modality") == "audio") == (cfg.get("fusion_location") == "none")
    refused = [last_line(e) for rc, e in results if rc != 0]
    rows.append({"case": "two exports into one folder at once", "exit": [rc for rc, _ in results],
                 "traceback": any("Traceback" in e for _, e in results),
                 "says_what_to": bool(consistent and (len(refused) == 1 and "being written by another" in refused[0]
                                                      or not refused)),
                 "json_ok": True, "last_line": (refused[0] if refused else "both finished, one after the other")[:220],
                 "seconds": None})
    modes = {f.name: oct(f.stat().st_mode & 0o777) for f in out_dir.iterdir()} if out_dir.is_dir() else {}
    rows.append({"case": "modes of an exported folder's files", "exit": 0, "traceback": False,
                 "says_what_to": bool(modes) and all(m == oct(0o666 & ~current_umask()) for m in modes.values()),
                 "json_ok": True, "last_line": ", ".join(sorted(set(modes.values()))), "seconds": None})

    # Ctrl-C in the middle of a long list: the finished rows are kept in a file that says it is partial
    out_file = sweep / "many.jsonl"
    for f in (out_file, sweep / "many.partial.jsonl"):
        f.unlink(missing_ok=True)
    # (the environment's own av-cli, given the default SIGINT handling: a process started in the background by a
    # non-interactive shell, as this sweep may be, inherits SIGINT ignored, and Ctrl-C would never reach it)
    pr = subprocess.Popen([str(REPO / ".venv" / "bin" / "av-cli"), "transcribe", str(audio_run), str(x["many"]),
                           "--output", str(out_file), "--no-progress"], cwd=REPO, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True,
                          preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    time.sleep(30)  # the model loads, then some rows finish; 3000 take minutes
    pr.send_signal(signal.SIGINT)
    rc = pr.wait(timeout=120)
    err = pr.stderr.read()
    partial = sweep / "many.partial.jsonl"
    said = [x for x in err.splitlines() if "inputs that finished are in" in x]
    kept = len(partial.read_text().splitlines()) if partial.is_file() else 0
    rows.append({"case": "Ctrl-C during a 3000-file transcribe --output", "exit": rc, "traceback": "Traceback" in err,
                 "says_what_to": kept > 0 and not out_file.exists(), "json_ok": True,
                 "last_line": (said[0] if said else last_line(err))[:220], "seconds": None})

    lines = ["# Hardening sweep: bad input through av-cli, as a user types it\n",
             f"Workdir {work}; {len(rows)} cases; every case runs `uv run av-cli ...` in a new process.\n",
             "| case | exit | traceback | the answer names the problem | last line |", "|---|---:|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['case']} | {r['exit']} | {'yes' if r['traceback'] else 'no'} | "
                     f"{'yes' if r['says_what_to'] and r['json_ok'] else 'NO'} | {r['last_line'].replace('|', '/')} |")
    (sweep / "sweep.md").write_text("\n".join(lines) + "\n")
    (sweep / "sweep.json").write_text(json.dumps(rows, indent=2) + "\n")
    print("\n".join(lines))
    bad = [r for r in rows if r["traceback"] or not r["says_what_to"] or not r["json_ok"]]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
