"""``uaspeech-prep stats ROOT``: utterance counts per split, level, speaker and category of a release tree
(through :func:`uaspeech_prep.index.build_index`) or a prepared tree (its ``manifest.jsonl``), next to the
counts a complete release has for the same speakers (:func:`uaspeech_prep.vocab.expected_counts`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from uaspeech_prep import corpus
from uaspeech_prep.manifest import ManifestLineError, manifest_path, read_lines
from uaspeech_prep.vocab import VOCABULARIES, Counts, expected_counts, in_vocabulary, is_seen, training_words


@dataclass
class TreeStats:
    root: Path
    kind: str  # "release" | "prepared"
    vocabulary: str
    counts: Counts
    expected: Counts
    wavs: int = 0
    clips: int = 0
    rois: int = 0
    problems: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        def c(x: Counts) -> dict:
            return {"total": x.total, "split": dict(x.split), "level": dict(x.level), "speaker": dict(x.speaker),
                    "category": dict(x.category), "block": dict(x.block), "test_seen": dict(x.test_seen)}

        return {"root": str(self.root), "kind": self.kind, "vocabulary": self.vocabulary, "counts": c(self.counts),
                "expected": c(self.expected), "wavs": self.wavs, "clips": self.clips, "rois": self.rois,
                "problems": self.problems}


def _wordlist_of(root: Path) -> dict[str, str] | None:
    from uaspeech_prep.index import find_wordlist

    path = find_wordlist(root)
    if path is None:
        return None
    from uaspeech_prep.wordlist import read_wordlist

    try:
        return read_wordlist(path)
    except Exception:  # noqa: BLE001 - a broken list: counts use the built-in one
        return None


def tree_stats(root: str | Path, vocabulary: str = "all", mics: list[str] | None = None,
               variant: str | None = None) -> TreeStats:
    """Counts of a prepared tree (when ``ROOT/manifest.jsonl`` exists) or of a release tree."""
    root = Path(root)
    if vocabulary not in VOCABULARIES:
        raise ValueError(f"unknown vocabulary {vocabulary!r}; expected one of {VOCABULARIES}")
    wl = _wordlist_of(root)
    tw = training_words(wl)
    counts = Counts()
    wavs = clips = rois = 0
    present: set[str] = set()  # speakers in the tree, before the vocabulary filter
    problems: list[str] = []
    manifest = manifest_path(root)
    if manifest.is_file():
        kind = "prepared"
        for line in read_lines(manifest):
            try:
                rec = line.record(require=("speaker", "block", "word_id"))
            except ManifestLineError as e:
                problems.append(f"{e.path}:{e.lineno}: unusable record ({e.why})")
                continue
            spk, blk, wid = rec.speaker, rec.block, rec.word_id
            present.add(spk)
            if not in_vocabulary(vocabulary, blk, wid, wl, tw):
                continue
            audio = {m: p for m, p in (rec.audio or {}).items() if not mics or m in mics}
            if mics and not audio:
                continue
            counts.add(spk, blk, wid, is_seen(blk, wid, wl, tw))
            wavs += len(audio)
            clips += bool(rec.clip)
            rois += bool(rec.roi)
    else:
        from uaspeech_prep.index import build_index

        kind = "release"
        idx = build_index(root, mics=mics, variant=variant)
        problems = [str(p) for p in idx.problems]
        for u in idx.utterances.values():
            present.add(u.speaker)
            if not in_vocabulary(vocabulary, u.block, u.word_id, wl, tw):
                continue
            counts.add(u.speaker, u.block, u.word_id, is_seen(u.block, u.word_id, wl, tw))
            wavs += len(u.audio)
            clips += u.utt_id in idx.clips
    expected = expected_counts(sorted(present), vocabulary, wl)
    return TreeStats(root, kind, vocabulary, counts, expected, wavs, clips, rois, problems)


def _table(title: str, got: dict, want: dict, order: list[str]) -> list[str]:
    keys = [k for k in order if k in got or k in want] + sorted(k for k in set(got) | set(want) if k not in order)
    rows = [(title, "utterances", "expected", "missing")]
    for k in keys:
        g, w = got.get(k, 0), want.get(k, 0)
        rows.append((str(k), str(g), str(w), str(max(0, w - g))))
    rows.append(("total", str(sum(got.values())), str(sum(want.values())),
                 str(sum(max(0, want.get(k, 0) - got.get(k, 0)) for k in keys))))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    fmt = lambda r: "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))  # noqa: E731
    sep = "  ".join("-" * w for w in widths)
    return [fmt(rows[0]), sep, *map(fmt, rows[1:-1]), sep, fmt(rows[-1])]


def format_stats(st: TreeStats, max_problems: int = 20) -> str:
    c, e = st.counts, st.expected
    lines = [f"{st.root}: {st.kind} tree, vocabulary {st.vocabulary!r}: {c.total} utterances of "
             f"{len(st.expected.speaker)} speaker(s), {st.wavs} wav(s), {st.clips} clip(s)"
             + (f", {st.rois} lip ROI(s)" if st.kind == "prepared" else "")]
    lines.append("(expected = a complete release for the same speakers; one utterance per word and block)")
    for title, attr, order in (
        ("split", "split", ["train", "test"]),
        ("B2 words", "test_seen", ["seen", "unseen"]),
        ("level", "level", [*corpus.LEVELS, "control"]),
        ("speaker", "speaker", sorted(c.speaker)),
        ("category", "category", list(corpus.CATEGORIES)),
    ):
        lines.append("")
        lines.extend(_table(title, dict(getattr(c, attr)), dict(getattr(e, attr)), order))
    if st.problems:
        lines.append("")
        lines.append(f"{len(st.problems)} problem(s) in the tree:")
        lines.extend(f"  {p}" for p in st.problems[:max_problems])
        if len(st.problems) > max_problems:
            lines.append(f"  ... {len(st.problems) - max_problems} more")
    return "\n".join(lines)
