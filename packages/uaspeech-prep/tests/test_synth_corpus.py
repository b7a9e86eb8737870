"""The synthetic corpus as a whole: release layout, names, determinism, output-directory rules, CLI."""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import pytest
import soundfile as sf
from uaspeech_prep import corpus
from uaspeech_prep.synth import command
from uaspeech_prep.synth.corpus_writer import (
    INFO_FILE,
    SIZES,
    OutputNotEmpty,
    SynthConfig,
    build_corpus,
    seen_first_word_ids,
)
from uaspeech_prep.wordlist import read_speakers, read_wordlist


def _files(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


def _hashes(root: Path, pattern: str) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob(pattern))}


def test_tiny_corpus_has_exactly_the_release_file_set(tiny_corpus):
    preset = SIZES["tiny"]
    expected = {"doc/speaker_wordlist.xls", INFO_FILE}
    for spk in preset.speakers:
        expected.add(f"mlf/{spk}/{spk}_word.mlf")
        for blk in corpus.BLOCKS:
            expected |= {f"video/{spk}/{spk}-{blk}-DV-1.divx", f"video/{spk}/{spk}_{blk}_frame_index.txt"}
            for wid in ("D0", "D1", "D2", "D3"):
                expected |= {f"audio/{spk}/{spk}_{blk}_{wid}_{mic}.wav" for mic in ("M5", "M6")}
    assert _files(tiny_corpus) == expected
    assert len(expected) == 2 + 3 + 9 * 2 + 3 * 3 * 4 * 2


def test_tiny_audio_names_parse_and_are_16k_mono_pcm16(tiny_corpus):
    wavs = sorted((tiny_corpus / "audio").rglob("*.wav"))
    assert wavs
    for w in wavs:
        name = corpus.parse_audio_name(w.name)
        assert w.parent.name == name.speaker
        info = sf.info(str(w))
        assert (info.samplerate, info.channels, info.subtype, info.format) == (16000, 1, "PCM_16", "WAV")
        assert 0.4 < info.duration < 4.0
    assert {corpus.parse_audio_name(w.name).mic for w in wavs} == {"M5", "M6"}


def test_tiny_wordlist_mlf_and_info(tiny_corpus):
    xls = tiny_corpus / "doc" / "speaker_wordlist.xls"
    assert read_wordlist(xls) == corpus.builtin_wordlist()
    speakers = read_speakers(xls)
    for sid in corpus.DYSARTHRIC_SPEAKERS:
        assert speakers[sid].level == corpus.level_of(sid)
    mlf = (tiny_corpus / "mlf/F05/F05_word.mlf").read_text().splitlines()
    assert mlf[0] == "#!MLF!#"
    i = mlf.index('"*/F05_B2_D3_M6.lab"')
    assert mlf[i + 1 : i + 3] == ["THREE", "."]
    assert len(mlf) == 1 + 3 * 4 * 2 * 3
    info = json.loads((tiny_corpus / INFO_FILE).read_text())
    assert info["generator"] == "uaspeech-prep synth" and info["seed"] == 0
    assert info["speakers"]["M12"]["level"] == "very_low"
    assert info["variation"]["phoneme_duration_std"] == 0.15 and info["variation"]["session_roll_deg_std"] == 2.5
    assert set(info["files"]) == _files(tiny_corpus) - {INFO_FILE}


def test_word_selection_puts_words_of_every_block_first():
    for blk in corpus.BLOCKS:
        ids = seen_first_word_ids(blk)
        assert len(ids) == len(set(ids)) == 255
        assert ids[:20] == [f"D{i}" for i in range(10)] + [f"C{i}" for i in range(1, 11)]
        assert all(not w.startswith("UW") for w in ids[:155]) and all(w.startswith("UW") for w in ids[155:])
    assert SIZES["demo"].speakers == corpus.AV_SPEAKERS and SIZES["demo"].words_per_block == 20
    assert SIZES["full"].words_per_block == 255


def _micro(out: Path, seed: int = 7, **kw) -> dict:
    cfg = dict(output=out, speakers=("F02",), blocks=("B2",), words_per_block=2, seed=seed, jobs=1)
    cfg.update(kw)
    return build_corpus(SynthConfig(**cfg))


def test_same_seed_same_bytes_other_seed_other_audio(tmp_path):
    _micro(tmp_path / "a")
    _micro(tmp_path / "b")
    _micro(tmp_path / "c", seed=8)
    a, b, c = (_hashes(tmp_path / d, "*.wav") for d in "abc")
    assert len(a) == 4 and a == b
    assert a.keys() == c.keys() and all(a[k] != c[k] for k in a)
    idx = "video/F02/F02_B2_frame_index.txt"
    assert (tmp_path / "a" / idx).read_text() == (tmp_path / "b" / idx).read_text()
    assert _hashes(tmp_path / "a", "*.xls") == _hashes(tmp_path / "b", "*.xls")
    assert _hashes(tmp_path / "a", "*.divx") == _hashes(tmp_path / "b", "*.divx")  # poses, lighting, mouth too
    assert _hashes(tmp_path / "a", "*.divx") != _hashes(tmp_path / "c", "*.divx")


def test_audio_does_not_depend_on_what_else_is_built(tmp_path, tiny_corpus):
    """A word's wav depends on seed and ids only: the tiny corpus's M12/B2 words equal a build of M12/B2 alone."""
    _micro(tmp_path / "m12", seed=0, speakers=("M12",), words_per_block=4)
    alone = _hashes(tmp_path / "m12", "*.wav")
    full = _hashes(tiny_corpus, "*.wav")
    assert alone and all(full[k] == v for k, v in alone.items())


def test_refuses_foreign_non_empty_directory_unless_overwrite(tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(OutputNotEmpty, match="--overwrite"):
        _micro(out)
    assert _files(out) == {"notes.txt"}
    _micro(out, overwrite=True)
    assert (out / "notes.txt").read_text() == "keep me"
    assert (out / "audio/F02/F02_B2_D0_M5.wav").is_file()


def test_rebuild_over_previous_output_removes_stale_files(tmp_path):
    out = tmp_path / "c"
    _micro(out, words_per_block=2)
    assert (out / "audio/F02/F02_B2_D1_M6.wav").is_file()
    _micro(out, words_per_block=1, mics=("M5",))  # a previous synth output: allowed without --overwrite
    assert sorted(p.name for p in (out / "audio/F02").iterdir()) == ["F02_B2_D0_M5.wav"]
    assert not list(out.rglob(".*tmp*"))  # no temporary files left behind


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="uaspeech-prep")
    command.register(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


def test_cli_builds_and_refuses(tmp_path, capsys):
    out = tmp_path / "cli"
    args = _parse(["synth", "--output", str(out), "--size", "tiny", "--speakers", "F05,M12", "--blocks", "B1",
                   "--words-per-block", "1", "--mics", "M7", "--no-progress", "--seed", "3"])
    assert args.size == "tiny" and args.func is command.run
    assert args.func(args) == 0
    assert "wrote 2 utterances" in capsys.readouterr().out
    assert _files(out / "audio") == {"F05/F05_B1_D0_M7.wav", "M12/M12_B1_D0_M7.wav"}
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "x").write_text("x")
    bad = _parse(["synth", "-o", str(tmp_path / "other"), "--size", "tiny", "--no-progress"])
    assert bad.func(bad) == 2
    assert "not empty" in capsys.readouterr().err
    (tmp_path / "a_file").write_text("x")
    on_file = _parse(["synth", "-o", str(tmp_path / "a_file"), "--size", "tiny"])  # progress bar on
    assert on_file.func(on_file) == 2
    err = capsys.readouterr().err
    assert err == f"uaspeech-prep synth: error: {tmp_path / 'a_file'} is a file, not a folder: choose another --output\n"
    unknown = _parse(["synth", "-o", str(tmp_path / "u"), "--speakers", "X99", "--no-progress"])
    assert unknown.func(unknown) == 2
    defaults = _parse(["synth", "-o", str(tmp_path / "d")])
    cfg = command.config_from_args(defaults)
    assert defaults.size == "demo" and cfg.speakers == corpus.AV_SPEAKERS and cfg.words_per_block == 20
    assert cfg.mics == ("M5", "M6") and cfg.blocks == corpus.BLOCKS


@pytest.mark.slow
def test_two_worker_processes_write_the_same_bytes(tmp_path):
    kw = dict(speakers=("M12", "F04"), blocks=("B1", "B2"), words_per_block=2, seed=5)  # F04: breathy voice
    _micro(tmp_path / "one", jobs=1, **kw)
    _micro(tmp_path / "two", jobs=2, **kw)
    a, b = _hashes(tmp_path / "one", "*.wav"), _hashes(tmp_path / "two", "*.wav")
    assert len(a) == 16 and a == b
    assert _hashes(tmp_path / "one", "*.txt") == _hashes(tmp_path / "two", "*.txt")
