"""av-train: YAML-driven Lightning training of audio-only and audio-visual Whisper on UASpeech."""

__version__ = "0.1.0"
