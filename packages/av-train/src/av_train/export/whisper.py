"""``av-cli export RUN OUT --format whisper``: an audio-only run as a standard Hugging Face Whisper folder.

The folder is what ``WhisperForConditionalGeneration.from_pretrained`` and ``pipeline("automatic-speech-recognition")``
load, as any Whisper fine-tune shared on the Hub (config.json, model.safetensors, generation_config.json,
tokenizer, preprocessor_config.json, a model card). Its generation config decodes as ``av-cli transcribe`` does:
the run's prompt (``<|startoftranscript|>``, ``<|notimestamps|>``, language and task for multilingual Whispers),
greedy or the run's beams, no suppressed tokens, the run's ``max_new_tokens``. Transformers pads every input to
30 s, so a run trained on clips cut to their length (``cut_encoder_positions``) is refused unless
``allow_cut`` (its words can then differ); character-level runs write " t h r e e", joined as the card says.
Audio-visual runs cannot go this way: plain Whisper has no video path.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

from av_fusion_models.tokenizer import build_feature_extractor
from av_train.export.hf import (
    EXPORT_MARKER,
    ExportError,
    ExportResult,
    build_processor,
    load_audio_only_run,
    prepare_destination,
    resolve_checkpoint,
    run_metrics,
    staged_folder,
)


def char_level_words(text: str) -> str:
    """What a character-level model writes, as words: " t h r e e" -> "three", "x | r a y" -> "x ray"."""
    return " ".join(w.replace(" ", "") for w in text.split("|") if w.strip())


def export_whisper(source: str | Path, out_dir: str | Path, overwrite: bool = False,
                   allow_cut: bool = False) -> ExportResult:
    """Write the audio-only run at ``source`` as a Transformers Whisper folder at ``out_dir``."""
    from av_train.export.model_card import model_card

    checkpoint = resolve_checkpoint(source)
    out = Path(out_dir).resolve()
    prepare_destination(out, overwrite)
    run = load_audio_only_run(checkpoint, "whisper", "a plain Whisper folder")
    if run.cfg.cut_encoder_positions and not allow_cut:
        raise ExportError(
            f"{checkpoint} was trained on clips cut to their length (cut_encoder_positions: true); Transformers pads "
            "every input to 30 s, which the model never heard, so its words would differ from av-cli transcribe's. "
            "Pass --allow-cut to export it anyway (the card says so), or train with cut_encoder_positions: false.")
    processor = build_processor(run, "open")
    with staged_folder(out) as tmp:
        whisper = run.model.whisper
        gen = whisper.generation_config
        prompt = list(processor.prompt_ids)
        gen.decoder_start_token_id = prompt[0]
        gen.eos_token_id = int(processor.eos_token_id)
        gen.max_new_tokens = int(processor.max_new_tokens)
        gen.num_beams = int(processor.num_beams)
        gen.do_sample = False
        gen.suppress_tokens = []  # av-cli transcribe suppresses nothing; Whisper's default list would change words
        gen.begin_suppress_tokens = []
        gen.return_timestamps = False
        whisper.save_pretrained(tmp, safe_serialization=True)
        run.targets.tokenizer.save_pretrained(str(tmp))
        build_feature_extractor(run.n_mels).save_pretrained(str(tmp))
        metrics = run_metrics(checkpoint, run)
        (tmp / "README.md").write_text(model_card(run, processor, metrics, fmt="whisper"), encoding="utf-8")
        info = {"format": "whisper", "source_checkpoint": str(checkpoint.resolve()), "train_id": run.cfg.train_id,
                "modality": "audio", "char_level": run.cfg.char_level, "prompt_ids": prompt,
                "cut_encoder_positions": run.cfg.cut_encoder_positions,
                "exported": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        (tmp / EXPORT_MARKER).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    return ExportResult(out, run, processor, sorted(p.name for p in out.iterdir()))
