"""Evaluating av-train checkpoints: loading a run from its folder, (ensemble) decoding, noise
robustness, multi-seed validation. av-eval reaches this through the ``av_eval.predictors`` entry
point (predictor.AVTrainPredictor); nothing here is imported by av-eval at import time."""
