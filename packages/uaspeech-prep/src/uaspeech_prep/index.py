"""Index of a UASpeech release tree (docs/LAYOUT.md section 1): utterances, microphones, block videos.

:func:`build_index` scans ``SRC/audio`` (flat ``audio/<SPK>/`` or ``audio/<variant>/<SPK>/``), parses every
file name strictly with :func:`uaspeech_prep.corpus.parse_audio_name`, checks every wav with
``soundfile.info`` and records what is wrong (unparseable names, empty or unreadable wavs, unknown
speakers, duplicates, missing microphones) as :class:`Problem` entries instead of dropping files
silently. macOS ``._*`` resource forks are ignored. Under ``SRC/video`` it finds block videos
(``<SPK>-<BLK>-DV-*.<ext>``), frame indexes (``<SPK>_<BLK>_frame_index.txt``) and already-cut clips
(``<SPK>/outputfiles30/<UTT_ID>.mp4``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import soundfile as sf

from uaspeech_prep import corpus
from uaspeech_prep.video_io import VIDEO_EXTENSIONS, is_temp_name

BLOCK_VIDEO_RE = re.compile(r"^(?P<speaker>C?[MF]\d{2})-(?P<block>B[123])-DV-(?P<take>[^.]+)\.(?P<ext>[A-Za-z0-9]+)$")
FRAME_INDEX_RE = re.compile(r"^(?P<speaker>C?[MF]\d{2})_(?P<block>B[123])_frame_index\.txt$", re.IGNORECASE)
CLIP_DIR_NAME = "outputfiles30"
VAD_DIR = "vad"
_SPEAKER_DIR_RE = re.compile(r"^C?[MF]\d{2}$")

ERROR = "error"
WARNING = "warning"


@dataclass(frozen=True)
class Problem:
    """Something wrong in the source tree. ``severity`` 'error' makes ``prepare`` exit non-zero
    (unless --keep-going); 'warning' is only reported."""

    kind: str
    path: str
    message: str
    severity: str = ERROR

    def to_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        return f"[{self.severity}] {self.kind}: {self.path}: {self.message}"


@dataclass
class Utterance:
    utt_id: str
    speaker: str
    block: str
    word_id: str
    word: str
    category: str
    level: str | None
    split: str
    audio: dict[str, Path] = field(default_factory=dict)
    """microphone -> source wav (absolute)."""
    duration_s: float = 0.0
    """Duration of the first microphone's wav (microphones are recorded together)."""
    clip: Path | None = None
    """Already-cut clip of this utterance in the tree (``video/<SPK>/outputfiles30/<UTT_ID>.mp4``)."""

    def rows(self) -> list[dict]:
        """One flat record per microphone: what a loader iterates over (mic choice is made in build_index)."""
        base = {k: getattr(self, k) for k in ("utt_id", "speaker", "level", "block", "split", "word_id", "word",
                                               "category")}
        return [{**base, "mic": m, "audio": p, "clip": self.clip} for m, p in self.audio.items()]


@dataclass
class BlockVideo:
    speaker: str
    block: str
    video: Path | None = None
    frame_index: Path | None = None


@dataclass
class CorpusIndex:
    source: Path
    audio_root: Path
    variant: str | None
    utterances: dict[str, Utterance]
    blocks: dict[tuple[str, str], BlockVideo]
    clips: dict[str, Path]
    """Already-cut clips in the source (utt_id -> mp4)."""
    wordlist_path: Path | None
    wordlist_source: str
    problems: list[Problem]
    wordlist: dict[str, str] = field(default_factory=dict)
    """The word list used (the tree's file, else the built-in one)."""

    @property
    def speakers(self) -> list[str]:
        return sorted({u.speaker for u in self.utterances.values()})

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == ERROR]

    def utterances_of(self, speaker: str, block: str) -> list[Utterance]:
        return [u for u in self.utterances.values() if u.speaker == speaker and u.block == block]


def _is_hidden_junk(name: str) -> bool:
    return name.startswith("._") or name == ".DS_Store" or is_temp_name(name)


def _audio_variants(audio_root: Path) -> list[str]:
    """Sub-folders of ``audio/`` that are variant archives (not speaker folders) and hold wavs."""
    if not audio_root.is_dir():
        return []
    out = []
    for d in sorted(p for p in audio_root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if _SPEAKER_DIR_RE.match(d.name):
            continue
        if any(n.lower().endswith(".wav") for _r, _d, fs in os.walk(d) for n in fs):
            out.append(d.name)
    return out


def resolve_audio_root(source: Path, variant: str | None) -> tuple[Path, str | None]:
    """``SRC/audio/<variant>`` when a variant is asked for or is the only one present; ``SRC/audio`` when
    the speaker folders sit directly under it. Several variants and none chosen is an error."""
    audio = source / "audio"
    if variant:
        root = audio / variant
        if not root.is_dir():
            found = _audio_variants(audio)
            raise FileNotFoundError(
                f"{root}: no such audio variant folder; found: {', '.join(found) if found else 'none'}"
            )
        return root, variant
    variants = _audio_variants(audio)
    has_speaker_dirs = audio.is_dir() and any(p.is_dir() and _SPEAKER_DIR_RE.match(p.name) for p in audio.iterdir())
    if len(variants) > 1 and not has_speaker_dirs:
        raise ValueError(
            f"{audio} holds several audio variants ({', '.join(variants)}); choose one with --variant"
        )
    if len(variants) == 1 and not has_speaker_dirs:
        return audio / variants[0], variants[0]
    return audio, None


WORDLIST_NAMES: tuple[str, ...] = ("doc/speaker_wordlist.xls", "doc/speaker_wordlist.xlsx",
                                   "speaker_wordlist.xls", "speaker_wordlist.xlsx")
"""Where a tree keeps its word list: ``doc/`` in a release, the root in a prepared tree."""


def find_wordlist(root: Path) -> Path | None:
    for rel in WORDLIST_NAMES:
        p = Path(root) / rel
        if p.is_file():
            return p
    return None


def load_wordlist(source: Path) -> tuple[dict[str, str], Path | None, str]:
    """(table, path, description): the tree's ``speaker_wordlist.xls`` (or .xlsx; :func:`find_wordlist`)
    through :func:`uaspeech_prep.wordlist.read_wordlist` when present, else the built-in list."""
    from uaspeech_prep.wordlist import read_wordlist

    path = find_wordlist(source)
    if path is not None:
        return dict(read_wordlist(path)), path, str(path)
    return dict(corpus.builtin_wordlist()), None, "builtin"


def wordlist_problems(path: Path) -> list[Problem]:
    """Differences between the tree's word list and the built-in tables, as warnings (the file wins for
    words; levels always come from the built-in tables, which the file is checked against)."""
    from uaspeech_prep.wordlist import compare_with_builtin

    try:
        diffs = compare_with_builtin(path)
    except Exception as e:  # noqa: BLE001 - e.g. a word list without a Speaker sheet
        return [Problem("wordlist_unchecked", str(path), f"cannot cross-check with the built-in tables: {e}", WARNING)]
    return [Problem("wordlist_differs", str(path), d, WARNING) for d in diffs]


def _check_wav(path: Path) -> tuple[float | None, Problem | None]:
    try:
        if path.stat().st_size == 0:  # soundfile calls a 0-byte file unreadable; it is empty
            return None, Problem("empty_wav", str(path), "the file is empty (0 bytes)")
        info = sf.info(str(path))
    except Exception as e:  # noqa: BLE001 - soundfile raises several types
        return None, Problem("unreadable_wav", str(path), f"soundfile cannot read it ({e})")
    if info.frames == 0:
        return None, Problem("empty_wav", str(path), "the wav has no samples")
    bad = wav_format_problem(info.samplerate, info.channels)
    if bad:
        return None, Problem("not_16k_mono", str(path), bad)
    return info.frames / info.samplerate, None


def wav_format_problem(rate: int, channels: int) -> str:
    """'' for UASpeech's 16 kHz mono, else what is wrong and what to do (a prepared tree holds 16 kHz mono only)."""
    if rate == corpus.SAMPLE_RATE and channels == 1:
        return ""
    return (f"{rate} Hz, {channels} channel(s); UASpeech audio (and a prepared tree) is {corpus.SAMPLE_RATE} Hz mono: "
            "this is not a release file, or it was converted; resample / downmix it (e.g. sox in.wav -r 16000 -c 1 "
            "out.wav) into a copy of the release, or remove it")


def build_index(
    source: str | Path,
    *,
    speakers: Iterable[str] | None = None,
    mics: Iterable[str] | None = None,
    variant: str | None = None,
    cross_check: bool = True,
) -> CorpusIndex:
    """Scan a release tree (or a prepared tree: same ``audio/<SPK>/`` and ``video/<SPK>/outputfiles30/``).

    ``speakers``: keep only these. ``mics``: a fixed choice of microphones (e.g. ``["M5"]``), each required
    per utterance (a missing one is a problem); None or ``["all"]`` keeps every microphone found.
    ``variant``: the audio archive under ``audio/`` (original | normalized | noisereduce; also ``vad`` in a
    prepared tree). ``cross_check``: compare the tree's word list with the built-in tables (warnings)."""
    source = Path(source).resolve()
    if not source.is_dir():
        raise FileNotFoundError(f"{source}: source folder does not exist")
    wanted, mic_set = _speaker_choice(speakers), _mic_choice(mics)
    audio_root, variant = resolve_audio_root(source, variant)
    problems: list[Problem] = []
    wordlist, wordlist_path, wordlist_source = _wordlist_or_builtin(source, problems)
    if wordlist_path is not None and cross_check:
        problems.extend(wordlist_problems(wordlist_path))
    wavs = scan_audio(audio_root, variant, problems)
    utts = group_utterances(wavs, wordlist, wanted, mic_set, problems)
    blocks, clips = _scan_video(source / "video", wanted, problems)
    for uid, clip in clips.items():
        if uid in utts:
            utts[uid].clip = clip
    heard = {u.speaker for u in utts.values()}
    seen = {spk for spk, _ in blocks} | {corpus.parse_utt_id(uid)[0] for uid in clips}
    for spk in sorted(seen - heard):  # a speaker is prepared from its audio: say so instead of dropping it unseen
        problems.append(Problem("video_without_audio", str(source / "video"),
                                f"speaker {spk} has video but no usable audio under {audio_root}; it is not prepared "
                                f"(add its audio/{spk}/ folder, or ignore this if it is meant to be left out)",
                                WARNING))
    utts = dict(sorted(utts.items(), key=lambda kv: _utt_sort_key(kv[1])))
    return CorpusIndex(
        source=source, audio_root=audio_root, variant=variant, utterances=utts, blocks=blocks,
        clips=clips, wordlist_path=wordlist_path, wordlist_source=wordlist_source, problems=problems,
        wordlist=wordlist,
    )


def _speaker_choice(speakers: Iterable[str] | None) -> set[str] | None:
    if not speakers:
        return None
    wanted = {s.strip() for s in speakers}
    for s in wanted:
        if s not in corpus.SPEAKERS:
            raise ValueError(f"unknown UASpeech speaker {s!r} in --speakers; known: {', '.join(sorted(corpus.SPEAKERS))}")
    return wanted


def _mic_choice(mics: Iterable[str] | None) -> list[str] | None:
    if not mics or [m.strip().lower() for m in mics] == ["all"]:
        return None
    mic_set = [m.strip() for m in mics]
    bad = [m for m in mic_set if m not in corpus.MICROPHONES]
    if bad:
        raise ValueError(f"unknown microphone(s) {bad}; expected some of {corpus.MICROPHONES}")
    return mic_set


def _wordlist_or_builtin(source: Path, problems: list[Problem]) -> tuple[dict[str, str], Path | None, str]:
    """:func:`load_wordlist`; a broken .xls is reported and the built-in list used."""
    try:
        return load_wordlist(source)
    except Exception as e:  # noqa: BLE001 - a broken .xls is reported, the built-in list is used
        problems.append(Problem("bad_wordlist", str(find_wordlist(source)),
                                f"cannot read the word list ({type(e).__name__}: {e}); used the built-in list"))
        return dict(corpus.builtin_wordlist()), None, "builtin (xls unreadable)"


def scan_audio(audio_root: Path, variant: str | None, problems: list[Problem]) -> list[Path]:
    """Every wav under ``audio_root`` in a stable order (sorted folders, then names), without hidden files
    and, when speaker folders sit directly under ``audio/``, without the variant folders beside them."""
    if not audio_root.is_dir():
        problems.append(Problem("no_audio", str(audio_root), "no audio folder in the source tree"))
    wavs: list[Path] = []
    skip_top: set[str] = set()
    if variant is None:
        # speaker folders directly under audio/: variant folders beside them are not mixed in
        skip_top = set(_audio_variants(audio_root))
        for v in sorted(skip_top - {VAD_DIR}):  # audio/vad/ is the prepared tree's own trimmed audio
            problems.append(Problem("variant_ignored", str(audio_root / v),
                                    "audio variant folder beside speaker folders; ignored (use --variant)", WARNING))
    if audio_root.is_dir():
        for dirpath, dirnames, files in os.walk(audio_root):
            dirnames[:] = sorted(
                d for d in dirnames
                if not d.startswith(".") and not (Path(dirpath) == audio_root and d in skip_top)
            )
            for name in sorted(files):
                if _is_hidden_junk(name) or not name.lower().endswith(".wav"):
                    continue
                wavs.append(Path(dirpath) / name)
    return wavs


def group_utterances(wavs: Iterable[Path], wordlist: dict[str, str], wanted: set[str] | None,
                     mic_set: list[str] | None, problems: list[Problem]) -> dict[str, Utterance]:
    """The utterances of ``wavs`` (one per speaker, block and word; its microphones in the corpus's order).
    Each wav's name is parsed strictly and the file checked; what is wrong becomes a problem, not a silent
    drop. ``wanted`` / ``mic_set``: keep only these speakers / microphones (each of ``mic_set`` required)."""
    seen: dict[str, Path] = {}
    durations: dict[Path, float] = {}
    utts: dict[str, Utterance] = {}
    for path in wavs:
        name = path.name
        parent = path.parent.name
        if wanted is not None and parent in corpus.SPEAKERS and parent not in wanted:
            continue
        try:
            an = corpus.parse_audio_name(name)
        except ValueError as e:
            problems.append(Problem("bad_name", str(path), str(e)))
            continue
        if wanted is not None and an.speaker not in wanted:
            continue
        if mic_set is not None and an.mic not in mic_set:
            continue
        if an.speaker not in corpus.SPEAKERS:
            problems.append(Problem("unknown_speaker", str(path), f"speaker {an.speaker} is not a UASpeech speaker"))
            continue
        if name in seen:
            problems.append(Problem("duplicate", str(path), f"same file name as {seen[name]}; kept the first"))
            continue
        seen[name] = path
        duration, problem = _check_wav(path)
        if problem is not None:
            problems.append(problem)
            continue
        durations[path] = float(duration or 0.0)
        utt = utts.get(an.utt_id)
        if utt is None:
            try:
                word = corpus.word_for(an.block, an.word_id, wordlist)
            except KeyError as e:
                problems.append(Problem("unknown_word", str(path), str(e.args[0] if e.args else e)))
                continue
            utt = utts[an.utt_id] = _new_utterance(an, word)
        utt.audio[an.mic] = path

    # microphones: stable order; requested but missing ones are problems
    for utt in utts.values():
        utt.audio = {m: utt.audio[m] for m in corpus.MICROPHONES if m in utt.audio}
        utt.duration_s = durations[next(iter(utt.audio.values()))]
        if mic_set is not None:
            for m in mic_set:
                if m not in utt.audio:
                    problems.append(Problem("missing_mic", f"{utt.utt_id}_{m}.wav",
                                            f"microphone {m} requested but absent or unusable for {utt.utt_id}"))
    return utts


def _new_utterance(an, word: str) -> Utterance:
    """The utterance of a parsed audio name, with the corpus's facts about its speaker, block and word."""
    return Utterance(
        utt_id=an.utt_id, speaker=an.speaker, block=an.block, word_id=an.word_id, word=word,
        category=corpus.category_of(an.word_id), level=corpus.speaker(an.speaker).level,
        split=corpus.split_of_block(an.block),
    )


_WORD_ORDER = {b: {w: i for i, w in enumerate(corpus.word_ids_for_block(b))} for b in corpus.BLOCKS}


def _utt_sort_key(u: Utterance) -> tuple:
    return (u.speaker, u.block, _WORD_ORDER[u.block].get(u.word_id, 10_000), u.word_id)


def _scan_video(video_root: Path, wanted: set[str] | None, problems: list[Problem]
                ) -> tuple[dict[tuple[str, str], BlockVideo], dict[str, Path]]:
    blocks: dict[tuple[str, str], BlockVideo] = {}
    clips: dict[str, Path] = {}
    if not video_root.is_dir():
        return blocks, clips
    for dirpath, dirnames, files in os.walk(video_root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        here = Path(dirpath)
        for name in sorted(files):
            if _is_hidden_junk(name):
                continue
            path = here / name
            m = BLOCK_VIDEO_RE.match(name)
            if m and path.suffix.lower() in VIDEO_EXTENSIONS:
                key = (m["speaker"], m["block"])
                if wanted is not None and key[0] not in wanted:
                    continue
                bv = blocks.setdefault(key, BlockVideo(*key))
                if bv.video is not None:
                    problems.append(Problem("duplicate_video", str(path),
                                            f"block {key[0]} {key[1]} already has {bv.video.name}; kept that one",
                                            WARNING))
                else:
                    bv.video = path
                continue
            m = FRAME_INDEX_RE.match(name)
            if m:
                key = (m["speaker"], m["block"])
                if wanted is not None and key[0] not in wanted:
                    continue
                bv = blocks.setdefault(key, BlockVideo(*key))
                if bv.frame_index is not None:
                    problems.append(Problem("duplicate_frame_index", str(path),
                                            f"block {key[0]} {key[1]} already has {bv.frame_index}; kept that one",
                                            WARNING))
                else:
                    bv.frame_index = path
                continue
            if here.name == CLIP_DIR_NAME and path.suffix.lower() == ".mp4":
                try:
                    spk, _blk, _w = corpus.parse_utt_id(path.stem)
                except ValueError:
                    problems.append(Problem("bad_clip_name", str(path),
                                            "clip name is not <SPK>_<BLK>_<WORDID>.mp4", WARNING))
                    continue
                if wanted is not None and spk not in wanted:
                    continue
                clips.setdefault(path.stem, path)
    return blocks, clips
