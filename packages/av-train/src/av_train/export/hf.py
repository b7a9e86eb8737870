"""``av-cli export RUN_OR_CKPT OUT_DIR``: a trained run as a self-contained, pickle-free model folder.

The folder (format ``hf``) holds everything needed to use the model with ``pip install av-fusion-models``
alone::

    config.json            AVWhisperConfig (what is added around Whisper)
    whisper_config.json    the Whisper configuration
    model.safetensors      every weight (fine-tuned Whisper, video encoder, fusion blocks, router)
    processor_config.json  audio / video preprocessing, prompt, target format, decoding
    tokenizer.json, tokenizer_config.json   the Whisper tokenizer
    vocabulary.txt         the closed vocabulary (only when the model decodes one)
    training_config.yaml   the resolved av-train config of the run
    metrics.json           the run's own B2 scores (when they exist)
    README.md              a model card (Hugging Face format)
    export.json            what was exported from where (and marks the folder as an export)

It is written into a temporary folder beside OUT_DIR and renamed into place, so OUT_DIR is either the
previous export or the complete new one, never a mixture.
"""

from __future__ import annotations

import json
import os
import shutil
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from av_common.files import private_staging
from av_fusion_models import AVWhisperProcessor
from av_train.config import ConfigError
from av_train.data.dataset import ROI_FPS
from av_train.evaluation.loading import LoadedRun, find_checkpoints, load_run
from av_train.vocabulary import decode_words

EXPORT_MARKER = "export.json"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".npy", ".npz")


class ExportError(RuntimeError):
    pass


@dataclass
class ExportResult:
    path: Path
    run: LoadedRun
    processor: AVWhisperProcessor
    files: list[str]


def resolve_checkpoint(source: str | Path) -> Path:
    """A .ckpt file, or a run folder (``weights/checkpoint/<train_id>``: its best.ckpt, else last.ckpt)."""
    source = Path(source)
    if not source.exists():
        raise FileNotFoundError(f"{source}: no such checkpoint or run folder")
    if source.is_file():
        if source.suffix != ".ckpt":
            raise ExportError(f"{source}: not a .ckpt file; pass a run folder or its best.ckpt")
        return source
    found = find_checkpoints(source)
    if not found:
        raise ExportError(f"{source}: no best.ckpt / last.ckpt with a config.yaml beside it (is it a run folder "
                          "under weights/checkpoint/?)")
    if len(found) > 1:
        listed = ", ".join(str(p) for p in found[:5])
        raise ExportError(f"{source} holds {len(found)} runs ({listed}...): pass one run folder or .ckpt")
    return found[0]


def build_processor(run: LoadedRun, decode_vocabulary: str | None = None) -> AVWhisperProcessor:
    """The processor that feeds ``run``'s model exactly as its validation did."""
    cfg = run.cfg
    spec = cfg.decode_vocabulary if decode_vocabulary is None else decode_vocabulary
    processor = AVWhisperProcessor(
        tokenizer=run.targets.tokenizer, modality=cfg.modality, n_mels=run.n_mels,
        pad_audio_to_30s=not cfg.cut_encoder_positions, video_fps=ROI_FPS, char_level=cfg.char_level,
        max_new_tokens=cfg.max_new_tokens, num_beams=cfg.num_beams, loop_repeats=cfg.decoding_loop_repeats,
        vocabulary=decode_words(spec),
        prompt_ids=list(run.targets.prompt), eos_token_id=int(run.targets.eot),
    )
    # the processor's own rules must give the training targets, token for token
    for word in ("three", "x ray"):
        dec_in, _ = run.targets.encode(word)
        mine = processor.prompt_ids + run.targets.tokenizer.encode(processor.target_text(word), add_special_tokens=False)
        if mine != dec_in:  # pragma: no cover - would mean TargetEncoder and the processor drifted apart
            raise ExportError(f"processor targets {mine} differ from training targets {dec_in} for {word!r}")
    return processor


def run_metrics(checkpoint: Path, run: LoadedRun) -> dict | None:
    """The run's own B2 report (results/<train_name>/<train_id>/metrics.json), if it was written."""
    root = checkpoint.parent.parent.parent.parent  # <root>/weights/checkpoint/<train_id>/best.ckpt
    for path in (root / "results" / run.cfg.train_name / run.cfg.train_id / "metrics.json",
                 run.cfg.results_dir / "metrics.json"):
        if path.is_file():
            try:
                return json.loads(path.read_text(encoding="utf-8"))
            except json.JSONDecodeError:
                return None
    return None


def prepare_destination(out: Path, overwrite: bool) -> None:
    """Refuse to replace anything but an earlier export (or an empty folder)."""
    if not out.exists():
        return
    if not out.is_dir():
        raise ExportError(f"{out} exists and is a file; choose another output folder")
    if not any(out.iterdir()):
        return
    if not (out / EXPORT_MARKER).is_file():
        raise ExportError(f"{out} exists and is not an earlier export (no {EXPORT_MARKER}); it is left untouched. "
                          "Choose a new or empty folder.")
    if not overwrite:
        raise ExportError(f"{out} already holds an exported model; pass --overwrite to replace it")


def _staging(out: Path) -> Path:
    """A staging folder private to this process (another export to the same OUT is refused by `output_lock`)."""
    return private_staging(out, "export-tmp")


def commit_folder(tmp: Path, out: Path) -> None:
    """Move the finished staging folder into place (the old export, if any, goes only once the new one is whole).
    Its files get the modes of any file the user writes (some writers, safetensors among them, make them 0600)."""
    from av_common.files import current_umask

    mask = current_umask()
    for p in tmp.rglob("*"):
        p.chmod((0o777 if p.is_dir() else 0o666) & ~mask)
    tmp.chmod(0o777 & ~mask)
    old = None
    if out.exists():
        old = out.parent / f".{out.name}.export-old-{os.getpid()}"
        if old.exists():
            shutil.rmtree(old)
        out.rename(old)
    tmp.rename(out)
    if old is not None:
        shutil.rmtree(old)


@contextmanager
def staged_folder(out: Path):
    """A staging folder private to this process for the export's files; when the block ends without error it is
    checked for pickle-capable files and committed as ``out`` whole, else removed."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = _staging(out)
    try:
        yield tmp
        check_no_pickle(tmp)
        commit_folder(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def load_audio_only_run(checkpoint: Path, fmt: str, tool: str) -> LoadedRun:
    """The run at ``checkpoint``, refused with the fix when it has a video path (plain Whisper formats have none)."""
    run = load_run(checkpoint, device="cpu")
    if run.cfg.uses_video:
        raise ExportError(
            f"{checkpoint} is a {run.cfg.modality} run: {tool} has no video path. Export it with --format hf (the "
            f"default), or export an audio-only run with --format {fmt}.")
    return run


def check_no_pickle(folder: Path) -> None:
    bad = [p.name for p in folder.rglob("*") if p.suffix in PICKLE_SUFFIXES]
    if bad:  # pragma: no cover - a guard against a future writer
        raise ExportError(f"{folder}: export would contain pickle-capable files {bad}")


def export_hf(source: str | Path, out_dir: str | Path, decode_vocabulary: str | None = None,
              overwrite: bool = False) -> ExportResult:
    """Export the run at ``source`` (run folder or .ckpt) to ``out_dir`` (see the module docstring)."""
    from av_train.export.model_card import model_card

    checkpoint = resolve_checkpoint(source)
    out = Path(out_dir).resolve()
    prepare_destination(out, overwrite)
    run = load_run(checkpoint, device="cpu")
    try:
        processor = build_processor(run, decode_vocabulary)
    except ConfigError as e:
        raise ExportError(str(e)) from None
    metrics = run_metrics(checkpoint, run)
    with staged_folder(out) as tmp:
        run.model.save_pretrained(tmp)
        processor.save_pretrained(tmp)
        run.cfg.save(tmp / "training_config.yaml")
        if metrics is not None:
            (tmp / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
        (tmp / "README.md").write_text(model_card(run, processor, metrics, fmt="hf"), encoding="utf-8")
        info = {"format": "hf", "source_checkpoint": str(checkpoint.resolve()), "train_id": run.cfg.train_id,
                "modality": run.cfg.modality, "fusion": run.cfg.effective_fusion_location if run.cfg.uses_video
                else "none", "exported": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "decode_vocabulary": "closed" if processor.vocabulary else "open"}
        (tmp / EXPORT_MARKER).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    return ExportResult(out, run, processor, sorted(p.name for p in out.iterdir()))
