"""av-eval: trustworthy WER / CER / WSR for UASpeech, per intelligibility level."""

from av_eval.aggregate import SeedSummary, Stat, summarize, summarize_reports
from av_eval.metrics import LEVELS, METRICS, Report, Scores, count_utterances, score_predictions, score_texts, training_words
from av_eval.normalize import join_chars, normalize, to_char_level
from av_eval.predictions import Prediction, read_predictions, write_predictions
from av_eval.predictors import CheckpointPredictions, Predictor
from av_eval.report import per_speaker_table, write_summary

__version__ = "0.1.0"

__all__ = [
    "LEVELS", "METRICS", "CheckpointPredictions", "Prediction", "Predictor", "Report", "Scores", "SeedSummary",
    "Stat", "count_utterances", "join_chars", "normalize", "per_speaker_table", "read_predictions",
    "score_predictions", "score_texts", "summarize", "summarize_reports", "to_char_level", "training_words",
    "write_predictions", "write_summary",
]
