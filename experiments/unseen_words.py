"""Unseen words: does fine-tuning on dysarthric speech keep Whisper's open vocabulary?

    uv run python experiments/unseen_words.py --workdir unseen_out                     # synthetic corpus
    uv run python experiments/unseen_words.py --workdir unseen_out --prepared DIR \\
        --model openai/whisper-small                                                 # the real UASpeech

UASpeech's test block B2 has 155 common words (also in the training blocks B1, B3) and 100 uncommon words
that occur in no training block: their WER measures whether a fine-tuned model still recognises words it was
not taught, or has become a classifier of its training words. This script trains every variant on the same
budget and scores each on B2 per level, seen and unseen words apart, with open decoding and constrained to
UASpeech's closed word list (449 distinct words of the 455-entry list).

Variants (``--variants``; each is the study's base config plus the keys shown in the table it prints):
zero_shot (Whisper as downloaded), full fine-tunes at two learning rates, feed-forward layers only,
LoRA on the attention projections and on attention + feed-forward layers, word-level instead of
character-level targets, and the demo's lip reader and audio-visual model (``lips_chars``, ``av_chars``: the
recipes of configs/demo_lip.yaml and demo_av.yaml on this corpus, started from ``full_lr1e-4``).

Without ``--prepared`` the corpus is the synthetic ``full`` size (all 255 words per block, so B2 holds the 100
unseen uncommon words, real English words spoken by the same espeak voices) for ``--speakers`` (default one per
intelligibility level), microphone M5; lip ROIs are made only when a lip-reading or audio-visual variant
is asked for. Everything
is resumable: a finished variant's scores are kept in ``<workdir>/variants/<name>.json`` and not redone;
``--redecode`` decodes finished variants again from their best.ckpt (after a change to decoding, such as the cut
of decoding loops, ``loop_repeats``), without training them again.

Output: ``<workdir>/results.json`` and ``results.md`` (the tables; docs/RESULTS.md quotes them).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

LEVELS = ("very_low", "low", "mid", "high")
DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")

BASE = {
    "train_name": "unseen", "modality": "audio", "char_level": True, "microphones": ["M5"], "batch_size": 16,
    "learning_rate": 1.0e-4, "warmup_steps": 20, "lr_schedule": "cosine", "label_smoothing": 0.1,
    "spec_augment": True, "validation_decoding": "teacher_forced", "early_stopping_metric": "val/cer",
    "early_stopping_patience": 3, "max_new_tokens": 40, "num_workers": 1, "progress_bar": False,
    "local_model_only": True,
}
VARIANTS: dict[str, dict] = {
    # Whisper as downloaded sees 30 s windows: cut inputs make the untrained model loop ("it it it ...").
    "zero_shot": {"validate_model": True, "char_level": False, "cut_encoder_positions": False},
    "full_lr1e-4": {},
    "full_lr1e-5": {"learning_rate": 1.0e-5},
    "mlp_only_lr1e-4": {"freeze_whisper": True, "unfreeze_mlp_layers": True},
    "lora_attn_r8": {"finetune": "lora", "lora_rank": 8, "lora_alpha": 16.0, "learning_rate": 1.0e-3},
    "lora_attn_mlp_r16": {"finetune": "lora", "lora_rank": 16, "lora_alpha": 32.0, "lora_targets": "attention_mlp",
                          "learning_rate": 1.0e-3},
    "word_full_lr1e-5": {"char_level": False, "learning_rate": 1.0e-5},
    "word_full_lr1e-4": {"char_level": False},
    # The demo's lip-reading and audio-visual recipes (configs/demo_lip.yaml, demo_av.yaml: docs/LIP_READING.md),
    # started from full_lr1e-4 (character targets, as those recipes use) and the lip reader: "_recipe" is the
    # config whose training keys the variant takes, "_from" names the variants whose best.ckpt it starts from.
    "lips_chars": {"_recipe": "demo_lip.yaml", "_from": {"pt_audio_ckpt": "full_lr1e-4"}},
    "av_chars": {"_recipe": "demo_av.yaml", "_from": {"pt_audio_ckpt": "full_lr1e-4", "pt_video_ckpt": "lips_chars"}},
}
# what the study itself fixes, whatever a "_recipe" says: the budget, the decoding length, the run's identity
STUDY_KEYS = ("train_name", "max_new_tokens", "num_workers", "progress_bar", "local_model_only")
CONFIGS = Path(__file__).resolve().parent.parent / "configs"
DEFAULT_SPEAKERS = ("M12", "M16", "F04", "F05")  # very_low, low, mid, high


def ensure_model(model: str, work: Path) -> str:
    """A local Hugging Face Whisper: ``model`` itself, or the bundled tiny.en converted once (offline)."""
    if model != "bundled-tiny.en":
        return model
    from av_fusion_models.ct2 import ensure_bundled_tiny_en

    return str(ensure_bundled_tiny_en(work / "models" / "whisper-tiny.en"))


def ensure_corpus(work: Path, speakers: list[str], seed: int, roi: bool = False) -> Path:
    """The synthetic full-size corpus, prepared; with ``roi`` also the lip ROIs (added to an audio-only
    preparation: prepare resumes and keeps what is done)."""
    from uaspeech_prep.cli import main as prep_main

    release, prepared = work / "corpus_release", work / "corpus"
    marker = work / ".synth.done"
    if not marker.is_file():
        rc = prep_main(["synth", "--output", str(release), "--size", "full", "--speakers", *speakers, "--mics", "M5",
                        "--seed", str(seed), "--overwrite", "--no-progress"])
        if rc:
            raise SystemExit(rc)
        marker.write_text("ok\n")
    roi_marker = work / ".roi.done"
    if not (prepared / "manifest.jsonl").is_file() or (roi and not roi_marker.is_file()):
        rc = prep_main(["prepare", "--source", str(release), "--output", str(prepared), "--quiet", "--workers", "2",
                        *([] if roi else ["--skip-roi"])])
        if rc:
            raise SystemExit(rc)
        if roi:
            roi_marker.write_text("ok\n")
    return prepared


def variant_options(name: str, work: Path) -> dict:
    """The keys a variant adds to the study's base: its own, or its ``_recipe`` config's training keys, with the
    checkpoints of the variants it starts from (``_from``), which must be finished."""
    import yaml

    spec = VARIANTS[name]
    options = {k: v for k, v in spec.items() if not k.startswith("_")}
    if "_recipe" in spec:
        recipe = yaml.safe_load((CONFIGS / spec["_recipe"]).read_text())
        options = {**{k: v for k, v in recipe.items() if k not in (*STUDY_KEYS, "train_id", "max_epochs")}, **options}
    for key, source in spec.get("_from", {}).items():
        ckpt = work / "weights" / "checkpoint" / source / "best.ckpt"
        if not ckpt.is_file():
            raise SystemExit(f"{name} starts from {source} ({key}), which has no {ckpt}: run --variants {source} "
                             f"first (or together, before {name})")
        options[key] = str(ckpt)
    return options


def spoken_digits(text: str) -> str:
    """Zero-shot Whisper writes a spoken digit as a numeral ("3."); the reference is the word."""
    t = text.strip().rstrip(".!?").strip()
    return DIGITS[int(t)] if t.isdigit() and len(t) == 1 else text


def scores(preds, seen_words: set[str]) -> dict:
    """Per part (seen / unseen words), in percent: WER and the isolated-word error 100 - WSR, each per level and
    total, plus the share of clips answered with a training word.

    WER counts every inserted word, so a model that answers one word with a sentence ("W-W-W-W...", "Oh, I don't
    know.") can score far above 100 %. The isolated-word error (the hypothesis is not exactly the word) is
    bounded by 100 % and is the question a clinician asks; both are reported.
    """
    from av_eval import score_predictions
    from av_eval.normalize import normalize

    out = {}
    for part in ("seen", "unseen"):
        sub = [p for p in preds if (normalize(p.reference) in seen_words) == (part == "seen")]
        if not sub:
            continue
        rep = score_predictions(sub)
        groups = {"total": rep.total, **{lvl: rep.per_level[lvl] for lvl in LEVELS if lvl in rep.per_level}}
        out[part] = {"n": rep.total.n,
                     "wer": {g: 100 * sc.wer for g, sc in groups.items()},
                     "word_error": {g: 100 * (1 - sc.wsr) for g, sc in groups.items()},
                     # a classifier of its training words answers one of them whatever it hears
                     "answers_training_word": 100 * sum(normalize(p.hypothesis) in seen_words for p in sub) / len(sub)}
    return out


def read_record(path: Path) -> dict:
    """A finished variant's saved scores, or a message naming the file and the fix."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise SystemExit(f"{path} is not a readable variant record ({e}): delete it to train that variant again")


def write_record(path: Path, record: dict) -> None:
    """Atomic: an interrupted write leaves the old record (or none), never half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record, indent=2) + "\n")
    tmp.replace(path)


def rescore(record: dict, work: Path, cfg) -> dict:
    """The record with its scores computed from its saved predictions: the one place a variant is scored."""
    from av_eval import read_predictions

    for vocab in ("open", "uaspeech"):
        record[vocab] = scores(read_predictions(_predictions_path(work, record["variant"], vocab)), _seen_words(cfg))
    return record


def _predictions_path(work: Path, name: str, vocab: str) -> Path:
    return work / "variants" / f"{name}_{vocab}_predictions_B2.jsonl"


def run_variant(name: str, cfg, work: Path, train_s: float | None = None) -> dict:
    """Train (unless zero-shot, or ``train_s`` is the time an earlier run of it took), then decode B2 open and
    closed; returns the variant's record (unscored)."""
    import torch

    from av_train.data.targets import TargetEncoder
    from av_train.evaluation.decoding import decode_runs
    from av_train.evaluation.loading import LoadedRun, load_run
    from av_train.model_factory import build_model
    from av_train.pipeline import main_train

    t0 = time.perf_counter()
    if cfg.validate_model:
        model, tokenizer, n_mels, _ = build_model(cfg)
        model.eval()
        run = LoadedRun(Path("-"), cfg, model, TargetEncoder(tokenizer, char_level=cfg.char_level), n_mels)
    else:
        if train_s is None:
            main_train(cfg)
        run = load_run(cfg.checkpoint_dir / "best.ckpt", device="cpu")
    if train_s is None:
        train_s = time.perf_counter() - t0
    record = {"variant": name, "config": {k: v for k, v in VARIANTS[name].items()}, "train_s": round(train_s, 1),
              "epochs_run": _epochs(cfg), "loop_repeats": run.cfg.loop_repeats}
    for vocab in ("open", "uaspeech"):
        t1 = time.perf_counter()
        with torch.no_grad():
            preds = decode_runs([run], "B2", progress=False, decode_vocabulary=vocab)
        preds = [replace(p, hypothesis=spoken_digits(p.hypothesis)) for p in preds]
        record[f"decode_s_{vocab}"] = round(time.perf_counter() - t1, 1)
        (work / "variants").mkdir(parents=True, exist_ok=True)
        from av_eval import write_predictions

        write_predictions(_predictions_path(work, name, vocab), preds)
    return record


def _epochs(cfg) -> int | None:
    last = cfg.checkpoint_dir / "last.ckpt"
    if not last.is_file():
        return None
    from av_train.checkpoints import load_checkpoint_safely

    epoch = load_checkpoint_safely(last).get("epoch")
    return None if epoch is None else int(epoch) + 1


_SEEN: dict[str, set[str]] = {}


def _seen_words(cfg) -> set[str]:
    if cfg.uaspeech_root not in _SEEN:
        from av_eval.metrics import training_words
        from av_eval.normalize import normalize

        _SEEN[cfg.uaspeech_root] = {normalize(w) for w in training_words(cfg.uaspeech_root)}
    return _SEEN[cfg.uaspeech_root]


def table(records: list[dict], vocab: str, part: str, metric: str) -> str:
    """One row per variant: ``metric`` ("wer" or "word_error") per level and total, and the total's ratio to
    zero_shot's."""
    base = next((r[vocab].get(part, {}).get(metric) for r in records if r["variant"] == "zero_shot"), None)
    lines = [f"| variant | {' | '.join(LEVELS)} | total | x zero-shot | n |", "|---|" + "---:|" * (len(LEVELS) + 3)]
    for r in records:
        s = r[vocab].get(part)
        if not s:
            continue
        vals = s[metric]
        cells = " | ".join(f"{vals[lvl]:.1f}" if lvl in vals else "-" for lvl in LEVELS)
        ratio = f"{vals['total'] / base['total']:.2f}" if base and base["total"] else "-"
        lines.append(f"| {r['variant']} | {cells} | {vals['total']:.1f} | {ratio} | {s['n']} |")
    return "\n".join(lines)


def collapse_row(record: dict) -> str:
    cells = [f"{record[v]['unseen']['answers_training_word']:.1f}" if "unseen" in record[v] else "-"
             for v in ("open", "uaspeech")]
    return f"| {record['variant']} | {' | '.join(cells)} |"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workdir", type=Path, default=Path("unseen_out"))
    ap.add_argument("--prepared", type=Path, help="a prepared tree (default: synthesize the full-size corpus)")
    ap.add_argument("--model", default="bundled-tiny.en", help="Whisper (local folder or hub name; default the "
                                                                "bundled tiny.en, offline)")
    ap.add_argument("--speakers", nargs="+", default=list(DEFAULT_SPEAKERS))
    ap.add_argument("--epochs", type=int, default=3, help="max_epochs of every trained variant (same budget)")
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--report-only", action="store_true", help="only rebuild results.md from the finished variants")
    ap.add_argument("--redecode", action="store_true", help="decode the finished variants again (their best.ckpt) "
                                                            "with today's decoding, without training")
    args = ap.parse_args(argv)
    from av_common.cli_errors import configure_cli_logging

    configure_cli_logging()  # the toolkit's log lines (model size, checkpoints) as the commands show them

    from av_train.config import from_dict

    work = args.workdir.resolve()
    work.mkdir(parents=True, exist_ok=True)
    model = ensure_model(args.model, work)
    # ROIs only for a lip-reading or audio-visual variant that will train (a report reads saved scores)
    wants_video = not args.report_only and any("_recipe" in VARIANTS[name] for name in args.variants)
    prepared = args.prepared.resolve() if args.prepared else ensure_corpus(work, args.speakers, args.seed, wants_video)
    for name in args.variants:
        done = work / "variants" / f"{name}.json"
        # a variant's starting checkpoints are looked up only when it trains or decodes again
        trains_or_decodes = not args.report_only and (args.redecode or not done.is_file())
        options = variant_options(name, work) if trains_or_decodes else {}
        cfg = from_dict({**BASE, **options, **{k: BASE[k] for k in STUDY_KEYS}, "uaspeech_root": str(prepared),
                         "model_name": model, "output_root": str(work), "speakers": args.speakers, "train_id": name,
                         "max_epochs": args.epochs, "seed": args.seed})
        if done.is_file() and args.redecode and not args.report_only:
            print(f"=== {name}: decoded again", flush=True)
            rec = run_variant(name, cfg, work, train_s=read_record(done)["train_s"])
        elif done.is_file():
            rec = read_record(done)
            print(f"{name}: done before ({done})")
        elif args.report_only:
            continue
        else:
            print(f"=== {name}: {options or 'base recipe'}", flush=True)
            rec = run_variant(name, cfg, work)
        rec = rescore(rec, work, cfg)
        write_record(done, rec)
        print(json.dumps({k: rec[k] for k in ("open", "uaspeech", "train_s")}), flush=True)

    # The report holds every finished variant (each was saved above), not only this run's ones.
    saved = [work / "variants" / f"{name}.json" for name in VARIANTS]
    records = [read_record(path) for path in saved if path.is_file()]
    md = [f"# Unseen words: B2 WER (%) per level, corpus {prepared}, model {args.model}, speakers "
          f"{' '.join(args.speakers)} (epochs per variant: the cost table)", ""]
    for vocab, title in (("open", "open decoding"), ("uaspeech", "closed UASpeech vocabulary")):
        for part in ("unseen", "seen"):
            for metric, what in (("wer", "WER"), ("word_error", "isolated-word error (100 - WSR)")):
                md += [f"## {part} words, {title}: {what}", "", table(records, vocab, part, metric), ""]
    md += ["## Collapse onto the training words: unseen-word clips answered with a training word (%)", "",
           "| variant | open | closed vocabulary |", "|---|---:|---:|"]
    md += [collapse_row(r) for r in records]
    md += ["", "## Cost (2 CPU cores unless stated)", "",
           "| variant | epochs | train + final B2 decode s | decode s (open) | loop cut (loop_repeats) |",
           "|---|---:|---:|---:|---:|"]
    md += [f"| {r['variant']} | {r.get('epochs_run') or '-'} | {r['train_s']:.0f} | {r['decode_s_open']:.0f} | "
           f"{r.get('loop_repeats') or 'off'} |" for r in records]
    (work / "results.md").write_text("\n".join(md) + "\n")
    (work / "results.json").write_text(json.dumps(records, indent=2) + "\n")
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
