"""``av-cli export RUN OUT --format ct2``: an audio-only run for faster-whisper / CTranslate2.

The fine-tuned Whisper is written as a Hugging Face Whisper folder and converted with CTranslate2's own
converter (`ctranslate2.converters.TransformersConverter`), so faster-whisper users run our dysarthric
fine-tune with their own tools. CTranslate2's ``model.bin`` is its flat tensor format (no pickle).
Audio-visual runs cannot go this way: CTranslate2 has no video path.
"""

from __future__ import annotations

import json
import shutil
from datetime import datetime, timezone
from pathlib import Path

from av_fusion_models.tokenizer import build_feature_extractor
from av_train.export.hf import (
    EXPORT_MARKER,
    ExportError,
    ExportResult,
    _staging,
    build_processor,
    commit_folder,
    load_audio_only_run,
    prepare_destination,
    resolve_checkpoint,
    run_metrics,
)

QUANTIZATIONS = ("float32", "float16", "int8", "int8_float32", "int8_float16", "bfloat16")


def export_ct2(source: str | Path, out_dir: str | Path, quantization: str | None = None,
               overwrite: bool = False) -> ExportResult:
    """Convert the audio-only run at ``source`` to a CTranslate2 Whisper folder at ``out_dir``.

    ``quantization``: stored weight type (None: as trained, float32); faster-whisper can still choose
    its ``compute_type`` when loading.
    """
    from ctranslate2.converters import TransformersConverter

    from av_train.export.model_card import model_card

    if quantization is not None and quantization not in QUANTIZATIONS:
        raise ExportError(f"unknown quantization {quantization!r}; use one of {', '.join(QUANTIZATIONS)}")
    checkpoint = resolve_checkpoint(source)
    out = Path(out_dir).resolve()
    prepare_destination(out, overwrite)
    run = load_audio_only_run(checkpoint, "ct2", "CTranslate2 / faster-whisper")
    processor = build_processor(run)
    out.parent.mkdir(parents=True, exist_ok=True)
    stage = _staging(out)
    try:
        hf_dir = stage / "hf"
        run.model.whisper.save_pretrained(hf_dir)
        run.targets.tokenizer.save_pretrained(str(hf_dir))
        build_feature_extractor(run.n_mels).save_pretrained(str(hf_dir))
        ct2_dir = stage / "ct2"
        TransformersConverter(str(hf_dir), copy_files=["tokenizer.json", "preprocessor_config.json"]).convert(
            str(ct2_dir), quantization=quantization
        )
        metrics = run_metrics(checkpoint, run)
        (ct2_dir / "README.md").write_text(model_card(run, processor, metrics, fmt="ct2"), encoding="utf-8")
        info = {"format": "ct2", "source_checkpoint": str(checkpoint.resolve()), "train_id": run.cfg.train_id,
                "modality": "audio", "quantization": quantization or "float32",
                "char_level": run.cfg.char_level, "prompt_ids": list(processor.prompt_ids),
                "exported": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        (ct2_dir / EXPORT_MARKER).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
        commit_folder(ct2_dir, out)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return ExportResult(out, run, processor, sorted(p.name for p in out.iterdir()))
