"""Write a synthetic corpus in the official UASpeech release layout (docs/LAYOUT.md section 1).

::

    OUT/
      doc/speaker_wordlist.xls
      audio/<SPK>/<SPK>_<BLK>_<WORDID>_<MIC>.wav      16 kHz mono PCM16
      mlf/<SPK>/<SPK>_word.mlf                        HTK master label file, words in upper case
      video/<SPK>/<SPK>-<BLK>-DV-1.divx               AVI (XVID), 30 fps, 200x200
      video/<SPK>/<SPK>_<BLK>_frame_index.txt         <UTT_ID> <BEGIN> <END>, 0-based, END inclusive
      synth_info.json                                 how it was made, and the files it wrote

Every file is written under a temporary name and renamed. WAV bytes and frame indices depend only on
the seed and the selection (speakers, blocks, words, microphones), not on the number of jobs.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import soundfile as sf

from uaspeech_prep import __version__, corpus
from uaspeech_prep.synth import degrade as dg
from uaspeech_prep.synth import lips as lp
from uaspeech_prep.synth import variation as var
from uaspeech_prep.synth import video as vid
from uaspeech_prep.synth.face import FRAME_SIZE, Face
from uaspeech_prep.synth.profiles import VIDEO_QUALITY, profile_for
from uaspeech_prep.synth.tts import SAMPLE_RATE
from uaspeech_prep.synth.utterance import rng_for, session_for, synth_utterance, to_pcm16
from uaspeech_prep.synth.xls import write_wordlist_xls

INFO_FILE = "synth_info.json"
GENERATOR = "uaspeech-prep synth"


def seen_first_word_ids(block: str) -> list[str]:
    """All 255 word ids of a block, words recorded in every block first: digits, commands, letters,
    common words, then the block's uncommon words. The first N make a corpus whose test words are seen
    in training."""
    ids = corpus.word_ids_for_block(block)
    order = {"digit": 0, "command": 1, "letter": 2, "common": 3, "uncommon": 4}
    return sorted(ids, key=lambda w: order[corpus.category_of(w)])  # stable: keeps the D/L/C/CW/UW numbering


@dataclass(frozen=True)
class SizePreset:
    speakers: tuple[str, ...]
    words_per_block: int
    blocks: tuple[str, ...] = corpus.BLOCKS


SIZES: dict[str, SizePreset] = {
    "tiny": SizePreset(speakers=("M12", "F04", "F05"), words_per_block=4),
    "demo": SizePreset(speakers=corpus.AV_SPEAKERS, words_per_block=20),
    "full": SizePreset(speakers=corpus.AV_SPEAKERS, words_per_block=255),
}
"""tiny: 3 speakers (very_low, mid, high) x 3 blocks x 4 words (D0-D3), for tests;
demo (default): the 12 audio-visual speakers x 3 blocks x 20 words (D0-D9, C1-C10, the same ids in every
block, so every test word is seen in training); full: all 255 words per block."""


@dataclass
class SynthConfig:
    output: Path
    speakers: tuple[str, ...]
    blocks: tuple[str, ...]
    words_per_block: int
    mics: tuple[str, ...] = ("M5", "M6")
    seed: int = 0
    size: str = "custom"
    jobs: int = 1
    write_mlf: bool = True
    overwrite: bool = False
    lip_visibility: float = 1.0  # 1: the mouth as it always was; lower: weaker lips (synth/lips.py)

    def word_ids(self, block: str) -> list[str]:
        return seen_first_word_ids(block)[: self.words_per_block]

    def validate(self) -> None:
        for s in self.speakers:
            corpus.speaker(s)  # raises on unknown ids
        if len(set(self.speakers)) != len(self.speakers):
            raise ValueError(f"speakers listed twice: {self.speakers}")
        for b in self.blocks:
            if b not in corpus.BLOCKS:
                raise ValueError(f"unknown block {b!r}; expected some of {corpus.BLOCKS}")
        for m in self.mics:
            if m not in corpus.MICROPHONES:
                raise ValueError(f"unknown microphone {m!r}; expected some of {corpus.MICROPHONES}")
        if not 1 <= self.words_per_block <= 255:
            raise ValueError(f"words per block must be within 1..255, got {self.words_per_block}")
        if not self.speakers or not self.blocks or not self.mics:
            raise ValueError("need at least one speaker, block and microphone")
        lp.check_visibility(self.lip_visibility)


@dataclass
class BlockResult:
    speaker: str
    block: str
    files: list[str] = field(default_factory=list)  # relative to the output directory
    frame_index: list[tuple[str, int, int]] = field(default_factory=list)
    words: list[tuple[str, str]] = field(default_factory=list)  # (utt_id, word)
    durations: dict[str, float] = field(default_factory=dict)


class OutputNotEmpty(RuntimeError):
    pass


def _write_wav(path: Path, pcm) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    sf.write(str(tmp), pcm, SAMPLE_RATE, subtype="PCM_16", format="WAV")
    os.replace(tmp, path)


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


_FACE: Face | None = None


def build_block(out: Path, speaker: str, block: str, word_ids: Sequence[str], mics: Sequence[str], seed: int,
                lip_visibility: float = 1.0) -> BlockResult:
    """Synthesize one speaker-block: the words' wavs for every microphone, the block video and its index.
    ``lip_visibility`` < 1 weakens the mouth (:mod:`.lips`) and nothing else."""
    global _FACE
    if _FACE is None:
        _FACE = Face()
    prof = profile_for(speaker)
    res = BlockResult(speaker, block)
    adir = out / "audio" / speaker
    vdir = out / "video" / speaker
    adir.mkdir(parents=True, exist_ok=True)
    vdir.mkdir(parents=True, exist_ok=True)
    tracks = []
    for wid in word_ids:
        u = synth_utterance(prof, block, wid, seed)
        for mic in mics:
            name = f"{u.utt_id}_{mic}.wav"
            _write_wav(adir / name, to_pcm16(u.channel(mic, seed)))
            res.files.append(f"audio/{speaker}/{name}")
        weak = None
        if lip_visibility != 1.0:  # its own stream: the audio and the other video draws stay those of V = 1
            weak = lp.weak_lips(lip_visibility, prof.level, int(rng_for(seed, u.utt_id, "lips").integers(1 << 62)))
        tracks.append(vid.WordTrack(u.utt_id, u.duration, u.phonemes, u.mouth_scale, u.open_factors, u.av_lag_s,
                                    weak))
        res.words.append((u.utt_id, u.word))
        res.durations[u.utt_id] = u.duration
    vname = f"{speaker}-{block}-DV-1.divx"
    poses = var.block_poses(session_for(speaker, block, seed), vid.total_frames(tracks),
                            rng_for(seed, speaker, block, "drift"), vid.FPS)
    rows = vid.write_block_video(vdir / vname, tracks, prof.look, rng_for(seed, speaker, block, "video"), _FACE,
                                 poses=poses)
    iname = f"{speaker}_{block}_frame_index.txt"
    vid.write_frame_index(vdir / iname, rows)
    res.files += [f"video/{speaker}/{vname}", f"video/{speaker}/{iname}"]
    res.frame_index = rows
    return res


def _build_block_args(args: tuple) -> BlockResult:
    return build_block(*args)


def check_output_dir(out: Path, overwrite: bool) -> list[str]:
    """Files of a previous synth run in ``out`` (to clean up), [] for a new or empty directory.
    Raises OutputNotEmpty for a non-empty directory that is not a synth output, unless ``overwrite``."""
    if not out.exists():
        return []
    if not out.is_dir():
        raise OutputNotEmpty(f"{out} is a file, not a folder: choose another --output")
    if not any(out.iterdir()):
        return []
    info = out / INFO_FILE
    if info.is_file():
        try:
            data = json.loads(info.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            data = {}
        if data.get("generator") == GENERATOR:
            return [str(f) for f in data.get("files", [])]
    if overwrite:
        return []
    raise OutputNotEmpty(
        f"{out} is not empty and is not the output of a previous '{GENERATOR}' (no {INFO_FILE}); "
        "choose an empty directory or pass --overwrite"
    )


def write_mlf(out: Path, speaker: str, results: Sequence[BlockResult], mics: Sequence[str]) -> str:
    lines = ["#!MLF!#"]
    for res in results:
        for utt_id, word in res.words:
            for mic in mics:
                lines += [f'"*/{utt_id}_{mic}.lab"', word.upper(), "."]
    d = out / "mlf" / speaker
    d.mkdir(parents=True, exist_ok=True)
    _write_text(d / f"{speaker}_word.mlf", "\n".join(lines) + "\n")
    return f"mlf/{speaker}/{speaker}_word.mlf"


def build_corpus(cfg: SynthConfig, progress: Callable[[int], object] | None = None) -> dict:
    """Write the corpus described by ``cfg``; returns the info written to ``synth_info.json``.
    ``progress(n)`` is called as speaker-blocks finish."""
    cfg.validate()
    out = Path(cfg.output)
    old_files = check_output_dir(out, cfg.overwrite)
    out.mkdir(parents=True, exist_ok=True)
    (out / "doc").mkdir(exist_ok=True)
    write_wordlist_xls(out / "doc" / "speaker_wordlist.xls")
    tasks = [(out, s, b, tuple(cfg.word_ids(b)), tuple(cfg.mics), cfg.seed, cfg.lip_visibility)
             for s in cfg.speakers for b in cfg.blocks]
    results: dict[tuple[str, str], BlockResult] = {}
    jobs = max(1, min(cfg.jobs, len(tasks)))
    if jobs == 1:
        for t in tasks:
            r = build_block(*t)
            results[(r.speaker, r.block)] = r
            if progress:
                progress(1)
    else:
        # spawn: every worker initializes its own espeak (the library keeps global state)
        with ProcessPoolExecutor(max_workers=jobs, mp_context=mp.get_context("spawn")) as ex:
            for r in ex.map(_build_block_args, tasks, chunksize=1):
                results[(r.speaker, r.block)] = r
                if progress:
                    progress(1)
    files = ["doc/speaker_wordlist.xls"]
    for s in cfg.speakers:
        rs = [results[(s, b)] for b in cfg.blocks]
        for r in rs:
            files += r.files
        if cfg.write_mlf:
            files.append(write_mlf(out, s, rs, cfg.mics))
    # remove what a previous synth run wrote and this one did not
    keep = set(files)
    for rel in old_files:
        p = out / rel
        if rel not in keep and p.is_file() and ".." not in Path(rel).parts:
            p.unlink()
    for sub in ("audio", "video", "mlf"):
        d = out / sub
        if d.is_dir():
            for child in d.iterdir():
                if child.is_dir() and not any(child.iterdir()):
                    child.rmdir()
    info = {
        "generator": GENERATOR,
        "version": __version__,
        "size": cfg.size,
        "seed": cfg.seed,
        "speakers": {s: {"level": profile_for(s).level, "voice": profile_for(s).voice} for s in cfg.speakers},
        "blocks": list(cfg.blocks),
        "word_ids": {b: cfg.word_ids(b) for b in cfg.blocks},
        "mics": list(cfg.mics),
        "sample_rate": SAMPLE_RATE,
        "video": {"fps": vid.FPS, "width": FRAME_SIZE[0], "height": FRAME_SIZE[1], "lead_frames": vid.LEAD_FRAMES,
                  "gap_frames": vid.GAP_FRAMES, "quality_by_level": VIDEO_QUALITY},
        "degradation_by_level": {k: asdict(v) for k, v in dg.LEVEL_PARAMS.items()},
        "variation": var.parameters(),
        "microphones": {k: asdict(v) for k, v in dg.MICS.items() if k in cfg.mics},
        "utterances": sum(len(r.words) for r in results.values()),
        "files": sorted(files),
    }
    if cfg.lip_visibility != 1.0:  # at 1 the info stays byte for byte what it was before the option
        info["video"]["lip_visibility"] = lp.parameters(cfg.lip_visibility)
    _write_text(out / INFO_FILE, json.dumps(info, indent=1) + "\n")
    return info

