"""Reading ``manifest.jsonl`` of a prepared tree (docs/LAYOUT.md section 2) into samples; the file's records
are :class:`uaspeech_prep.manifest.ManifestRecord`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from uaspeech_prep.corpus import category_of
from uaspeech_prep.manifest import ManifestLineError, ManifestRecord, manifest_path, read_records

# The fields a sample is made of (the others may be absent: older or hand-made trees).
SAMPLE_FIELDS = ("utt_id", "speaker", "level", "block", "split", "word_id", "word")


@dataclass(frozen=True)
class Sample:
    """One training / evaluation example: one utterance on one microphone channel."""

    utt_id: str
    speaker: str
    level: str
    block: str
    split: str
    word_id: str
    word: str
    category: str
    mic: str
    audio: Path
    roi: Path | None
    duration_s: float

    @property
    def key(self) -> str:
        return f"{self.utt_id}_{self.mic}"


class ManifestError(ValueError):
    pass


def read_manifest(root: str | Path) -> list[ManifestRecord]:
    """The records of ``root/manifest.jsonl``; :class:`ManifestError` when there is none, when a line is not a
    record with the fields of a sample (naming the file and line) or when it lists nothing."""
    root = Path(root)
    path = manifest_path(root)
    if not path.is_file():
        hint = ("`av-cli demo` (it synthesizes and prepares demo_out/corpus)" if "demo_out" in str(root) else
                f"`uaspeech-prep prepare --source <release> --output {root}`")
        raise ManifestError(f"no manifest at {path}: uaspeech_root must be a prepared tree. Run {hint} first.")
    try:
        records = read_records(path, require=SAMPLE_FIELDS)
    except ManifestLineError as e:
        raise ManifestError(str(e)) from None
    if not records:
        raise ManifestError(f"{path} lists no utterances")
    return records


def _in_vocabulary(rec: ManifestRecord, vocabulary: str, train_words: frozenset[str] | None = None) -> bool:
    """``all`` / ``common`` filter every split; ``seen`` / ``unseen`` filter the test block only (every
    training word is seen by definition), using the manifest's ``seen_in_train`` when it has one and
    else ``train_words`` (lower-cased words of B1 + B3)."""
    if vocabulary == "all":
        return True
    if vocabulary == "common":
        by_id = category_of(rec.word_id)  # checks the word id even when the record names the category
        return (rec.category if rec.has("category") else by_id) != "uncommon"
    if vocabulary in ("seen", "unseen"):
        if rec.split == "train":
            return True
        seen = rec.seen_in_train
        if seen is None:
            seen = str(rec.word).lower() in (train_words or frozenset())
        return bool(seen) == (vocabulary == "seen")
    raise ValueError(f"unknown vocabulary {vocabulary!r}; expected all, common, seen or unseen")


def load_samples(
    root: str | Path,
    split: str,
    microphones: list[str],
    speakers: list[str] | None = None,
    need_video: bool = False,
    vocabulary: str = "all",
) -> tuple[list[Sample], list[str]]:
    """Samples of ``split`` ('train' or 'test') for the given channels.

    Returns (samples, skipped) where ``skipped`` describes utterances left out and why (missing
    channel, no usable video for an audio-visual run), so callers can report them.
    """
    root = Path(root)
    records = read_manifest(root)
    wanted = set(speakers) if speakers else None
    samples: list[Sample] = []
    skipped: list[str] = []
    train_words = None
    if vocabulary in ("seen", "unseen") and any(not r.has("seen_in_train") for r in records):
        # Trees prepared before the field existed: the word list's B1 + B3 words, built once.
        from uaspeech_prep.vocab import training_words

        train_words = training_words()
    for rec in records:
        if rec.split != split or (wanted is not None and rec.speaker not in wanted):
            continue
        if not _in_vocabulary(rec, vocabulary, train_words):
            continue
        roi = rec.roi
        if need_video and not roi:
            skipped.append(f"{rec.utt_id}: no lip ROI video")
            continue
        for mic in microphones:
            audio = (rec.audio or {}).get(mic)
            if audio is None:
                skipped.append(f"{rec.utt_id}: no channel {mic}")
                continue
            samples.append(
                Sample(
                    utt_id=rec.utt_id, speaker=rec.speaker, level=rec.level, block=rec.block,
                    split=rec.split, word_id=rec.word_id, word=rec.word,
                    category=rec.category or category_of(rec.word_id), mic=mic,
                    audio=root / audio, roi=(root / roi) if roi else None,
                    duration_s=float(rec.duration_s or 0.0),
                )
            )
    if wanted:
        missing = wanted - {s.speaker for s in samples}
        if missing and split == "train":
            raise ManifestError(f"{manifest_path(root)}: no {split} utterances for speaker(s) {sorted(missing)}")
    return samples, skipped
