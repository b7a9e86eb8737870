"""Plumbing shared by every avsr-uaspeech package (no dependencies): atomic writes and one writer per output."""

from av_common.files import OutputBusy, atomic_write_text, current_umask, output_lock, private_staging

__all__ = ["OutputBusy", "atomic_write_text", "current_umask", "output_lock", "private_staging"]
