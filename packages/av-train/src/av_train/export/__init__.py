"""Exporting trained runs: self-contained Hugging Face style folders (``hf``) and CTranslate2 (``ct2``)."""

from av_train.export.hf import ExportError, ExportResult, build_processor, export_hf, resolve_checkpoint

__all__ = ["ExportError", "ExportResult", "build_processor", "export_hf", "resolve_checkpoint"]
