"""Vocabulary filters and the counts a complete UASpeech release must have (docs/UASpeech.md).

Filters (``VOCABULARIES``), applied per utterance (block, word id):

- ``all``: every word (255 per block);
- ``common``: the 155 words recorded in every block (digits, letters, commands, common words);
- ``seen``: words whose spelling (case-insensitive) also occurs in a training block (B1 or B3). Every
  training utterance is seen; in B2 these are the 155 common words plus ``watch`` (B2_UW82, also B3_UW97);
- ``unseen``: words absent from B1 and B3: the other 99 uncommon words of B2 (and nothing in training).

Words are compared case-insensitively because the word list mixes case ("Three", "the") and the
.mlf transcripts are upper case.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from uaspeech_prep import corpus

VOCABULARIES: tuple[str, ...] = ("all", "common", "seen", "unseen")


def training_words(wordlist: dict[str, str] | None = None) -> frozenset[str]:
    """Lower-cased words of the training blocks (B1 + B3)."""
    table = corpus.builtin_wordlist() if wordlist is None else wordlist
    return frozenset(
        corpus.word_for(b, w, table).lower() for b in corpus.TRAIN_BLOCKS for w in corpus.word_ids_for_block(b)
    )


def is_seen(block: str, word_id: str, wordlist: dict[str, str] | None = None,
            train_words: frozenset[str] | None = None) -> bool:
    """True when the word of (block, word id) is spoken somewhere in B1 or B3."""
    tw = training_words(wordlist) if train_words is None else train_words
    return corpus.word_for(block, word_id, wordlist).lower() in tw


def in_vocabulary(vocabulary: str, block: str, word_id: str, wordlist: dict[str, str] | None = None,
                  train_words: frozenset[str] | None = None) -> bool:
    """Whether the utterance (block, word id) belongs to the vocabulary filter ``vocabulary``."""
    if vocabulary not in VOCABULARIES:
        raise ValueError(f"unknown vocabulary {vocabulary!r}; expected one of {VOCABULARIES}")
    if vocabulary == "all":
        return True
    if vocabulary == "common":
        return corpus.category_of(word_id) != "uncommon"
    seen = is_seen(block, word_id, wordlist, train_words)
    return seen if vocabulary == "seen" else not seen


@dataclass
class Counts:
    """Utterance counts along the dimensions ``uaspeech-prep stats`` prints."""

    total: int = 0
    split: Counter = field(default_factory=Counter)
    level: Counter = field(default_factory=Counter)
    speaker: Counter = field(default_factory=Counter)
    category: Counter = field(default_factory=Counter)
    block: Counter = field(default_factory=Counter)
    test_seen: Counter = field(default_factory=Counter)
    """B2 utterances by 'seen' / 'unseen'."""

    def add(self, speaker: str, block: str, word_id: str, seen: bool) -> None:
        level = corpus.SPEAKERS[speaker].level if speaker in corpus.SPEAKERS else None
        self.total += 1
        self.split[corpus.split_of_block(block)] += 1
        self.level[level or "control"] += 1
        self.speaker[speaker] += 1
        self.category[corpus.category_of(word_id)] += 1
        self.block[block] += 1
        if block in corpus.TEST_BLOCKS:
            self.test_seen["seen" if seen else "unseen"] += 1


def expected_counts(speakers: Iterable[str], vocabulary: str = "all",
                    wordlist: dict[str, str] | None = None) -> Counts:
    """Utterances a complete release holds for ``speakers`` (each speaker records all 255 words of each
    of the 3 blocks once; a wav per microphone on top), restricted to ``vocabulary``."""
    table = corpus.builtin_wordlist() if wordlist is None else wordlist
    tw = training_words(table)
    out = Counts()
    for spk in speakers:
        for b in corpus.BLOCKS:
            for w in corpus.word_ids_for_block(b):
                if in_vocabulary(vocabulary, b, w, table, tw):
                    out.add(spk, b, w, is_seen(b, w, table, tw))
    return out


SPEAKER_GROUPS: dict[str, tuple[str, ...]] = {
    "audio-visual set (12)": corpus.AV_SPEAKERS,
    "dysarthric (15)": corpus.DYSARTHRIC_SPEAKERS,
    "controls (13)": corpus.CONTROL_SPEAKERS,
    "all released (28)": corpus.DYSARTHRIC_SPEAKERS + corpus.CONTROL_SPEAKERS,
}


def expected_table_markdown(wordlist: dict[str, str] | None = None) -> str:
    """The expected-count table of docs/UASpeech.md (utterances, i.e. one per word and block; multiply by
    the microphones kept for wav files), generated from the word list."""
    head = ["speakers", "vocabulary", "train (B1+B3)", "test (B2)", "B2 seen", "B2 unseen", "total"]
    rows = [head, ["---"] * len(head)]
    groups = {"one speaker": ("F02",), **SPEAKER_GROUPS}
    for name, spks in groups.items():
        for vocab in ("all", "common"):
            c = expected_counts(spks, vocab, wordlist)
            rows.append([name, vocab, str(c.split["train"]), str(c.split["test"]), str(c.test_seen["seen"]),
                         str(c.test_seen["unseen"]), str(c.total)])
    return "\n".join("| " + " | ".join(r) + " |" for r in rows)


def category_table_markdown(wordlist: dict[str, str] | None = None) -> str:
    """Per-category utterances of one speaker per block / split (docs/UASpeech.md)."""
    c = expected_counts(["F02"], "all", wordlist)
    head = ["category", "word ids", "per block", "train (B1+B3)", "test (B2)", "per speaker"]
    ids = {"digit": "D0-D9", "letter": "LA-LZ", "command": "C1-C19", "common": "CW1-CW100",
           "uncommon": "UW1-UW100 (B1_, B2_, B3_ keys)"}
    rows = [head, ["---"] * len(head)]
    for cat in corpus.CATEGORIES:
        n = c.category[cat]
        per_block = n // 3
        rows.append([cat, ids[cat], str(per_block), str(2 * per_block), str(per_block), str(n)])
    rows.append(["total", "", "255", "510", "255", str(c.total)])
    return "\n".join("| " + " | ".join(r) + " |" for r in rows)


def level_table_markdown(wordlist: dict[str, str] | None = None) -> str:
    """Speakers and test utterances per intelligibility level, for the 15 dysarthric speakers and the AV set."""
    head = ["level", "dysarthric speakers", "B2 utterances", "audio-visual set", "B2 utterances (AV)"]
    rows = [head, ["---"] * len(head)]
    for lvl in corpus.LEVELS:
        dys = [s for s in corpus.DYSARTHRIC_SPEAKERS if corpus.level_of(s) == lvl]
        av = [s for s in corpus.AV_SPEAKERS if corpus.level_of(s) == lvl]
        rows.append([lvl, " ".join(dys), str(expected_counts(dys, "all", wordlist).split["test"]),
                     " ".join(av), str(expected_counts(av, "all", wordlist).split["test"])])
    return "\n".join("| " + " | ".join(r) + " |" for r in rows)


def closed_vocabulary(wordlist: dict[str, str] | None = None) -> list[str]:
    """Every word of the corpus (all blocks), lower-cased, once each, sorted: UASpeech's closed set for
    constrained decoding. The word list has 455 entries (3 x 155 common + 300 uncommon), of which 449 are
    distinct words once spelled in lower case (a few uncommon words repeat in another block)."""
    table = corpus.builtin_wordlist() if wordlist is None else wordlist
    return sorted({w.strip().lower() for w in table.values() if w.strip()})
