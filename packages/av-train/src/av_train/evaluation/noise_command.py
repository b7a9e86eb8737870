"""``av-cli noise-eval``: WER per level per SNR with white or babble noise, for one or more runs.

    python -m av_train.evaluation.noise_command CHECKPOINT_OR_FOLDER... [--noise babble|white]
        [--snrs clean 10 5 0 -5] [--talkers 4] [--video CONDITION...] [--output DIR]

``--video`` takes one or more lip-video conditions (av_fusion_models.video_faults: clean, late-<N>ms,
early-<N>ms, occluded[-<P>], blur[-<S>], fps-<N>, frozen, black[-<P>], mismatched, other_speaker); with more than
one, a summary video_faults_<kind>.json / .csv / .png and a table of total WER per condition are added.

This module is the command (arguments, what it prints); the work, and what the noise is, are in
:mod:`av_train.evaluation.noise`.
"""

from __future__ import annotations

import argparse
import sys

from av_common.files import output_lock
from av_common.cli_errors import ensure_output_dir, run_command
from av_fusion_models.video_faults import CONDITION_NAMES
from av_train.evaluation.loading import find_checkpoints
from av_train.evaluation.noise import (NOISE_KINDS, evaluate_video_conditions, parse_snrs, parse_video_conditions,
                                       snr_label, video_faults_table)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="noise-eval", description="WER per level per SNR with white or babble noise.")
    p.add_argument("checkpoints", nargs="+", help="checkpoints or folders of runs (e.g. an audio and an AV run)")
    p.add_argument("--noise", choices=NOISE_KINDS, default="babble")
    p.add_argument("--snrs", nargs="+", default=["clean", "10", "5", "0", "-5"], help="dB values and/or 'clean'")
    p.add_argument("--video", nargs="+", default=["clean"], metavar="CONDITION",
                   help="the lip video of runs that use it, one or more of: " + ", ".join(CONDITION_NAMES)
                        + " (default clean; e.g. --video clean late-400ms occluded mismatched; docs/METRICS.md)")
    p.add_argument("--talkers", type=int, default=4, help="utterances summed into babble (default 4)")
    p.add_argument("--seed", type=int, default=0, help="noise seed (the same noise for every run)")
    p.add_argument("--split", default="B2", choices=("B1", "B2", "B3"))
    p.add_argument("--data", help="prepared tree instead of each run's uaspeech_root")
    p.add_argument("--output", default="noise_eval", help="output folder (default ./noise_eval)")
    p.add_argument("--device")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--decode-vocabulary", default=None, metavar="open|uaspeech|FILE",
                   help="decode open or constrained to a closed word list (default: each run's decode_vocabulary)")
    return p


def _main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    conditions = parse_video_conditions(args.video)  # a wrong name fails before any loading
    snrs = parse_snrs(args.snrs)
    ckpts = [c for arg in args.checkpoints for c in find_checkpoints(arg)]
    if not ckpts:
        raise FileNotFoundError(f"no checkpoints (best.ckpt / last.ckpt with config.yaml) in {args.checkpoints}")
    ensure_output_dir(args.output)  # before minutes of decoding, not after
    with output_lock(args.output, "av-cli noise-eval"):
        res = evaluate_video_conditions(ckpts, args.noise, snrs, args.output, conditions, split=args.split,
                                        data=args.data, talkers=args.talkers, seed=args.seed, device=args.device,
                                        progress=not args.no_progress, decode_vocabulary=args.decode_vocabulary)
    for out in res["conditions"].values():
        print(f"json: {out['json']}\ncsv: {out['csv']}\npng: {out['png']}")
        if out["routes_png"]:
            print(f"routes: {out['routes_png']}")
    if res["json"] is not None:
        columns = [(f"{run} {'clean' if s is None else f'{s:g} dB'}", run, snr_label(s))
                   for s in snrs for run in res["wer"]]
        print(f"\nWER % (total) per video condition, {args.noise} noise:")
        print(video_faults_table(res["wer"], columns, list(res["conditions"])))
        print(f"summary: {res['json']}\ncsv: {res['csv']}\npng: {res['png']}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_command("noise-eval", _main, argv)


if __name__ == "__main__":
    sys.exit(main())
