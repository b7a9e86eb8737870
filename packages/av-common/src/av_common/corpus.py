"""The numbers of the corpus that every package uses, in one place.

av-fusion-models keeps its own copies (it is installed alone in other projects and depends on nothing of ours);
`tests/test_architecture.py` checks that they equal these.
"""

LEVELS: tuple[str, ...] = ("very_low", "low", "mid", "high")
"""Intelligibility levels, most severe first. Index = the level id models use (the router's level embedding)."""

SAMPLE_RATE = 16_000
"""UASpeech's audio, a prepared tree's and Whisper's input: 16 kHz mono."""

ROI_FPS = 25.0
"""Frame rate of the lip ROI videos uaspeech-prep writes and the models read."""

ROI_SIZE = 96
"""Side of those mouth crops in pixels (the models see the central 88 x 88)."""
