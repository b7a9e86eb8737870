"""av-eval: trustworthy WER / CER / WSR for UASpeech, per intelligibility level."""

from av_eval.metrics import LEVELS, Report, Scores, score_predictions, score_texts
from av_eval.normalize import join_chars, normalize, to_char_level
from av_eval.predictions import Prediction, read_predictions, write_predictions

__version__ = "0.1.0"

__all__ = [
    "LEVELS", "Prediction", "Report", "Scores", "join_chars", "normalize", "read_predictions",
    "score_predictions", "score_texts", "to_char_level", "write_predictions",
]
