"""Vocabulary filters, expected counts (and the docs table built from them), ``uaspeech-prep stats``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import fixtures_prep as fx  # noqa: E402

from uaspeech_prep import corpus, vocab  # noqa: E402
from uaspeech_prep.cli import main as cli_main  # noqa: E402
from uaspeech_prep.stats import tree_stats  # noqa: E402

DOC = Path(__file__).resolve().parents[3] / "docs" / "UASpeech.md"


def test_vocabulary_filters_on_the_builtin_list():
    b2 = corpus.word_ids_for_block("B2")
    unseen = [w for w in b2 if vocab.in_vocabulary("unseen", "B2", w)]
    seen = [w for w in b2 if vocab.in_vocabulary("seen", "B2", w)]
    assert len(unseen) == 99 and len(seen) == 156
    assert "UW82" in seen  # "watch" is B2_UW82 and B3_UW97
    assert corpus.word_for("B2", "UW82") == corpus.word_for("B3", "UW97") == "watch"
    assert all(w.startswith("UW") for w in unseen)
    assert sum(vocab.in_vocabulary("common", "B1", w) for w in corpus.word_ids_for_block("B1")) == 155
    # every training utterance is seen; none is unseen
    assert all(vocab.in_vocabulary("seen", b, w) for b in ("B1", "B3") for w in corpus.word_ids_for_block(b))
    with pytest.raises(ValueError, match="vocabulary"):
        vocab.in_vocabulary("rare", "B1", "D0")


def test_seen_compares_words_case_insensitively():
    wl = dict(corpus.builtin_wordlist())
    wl["B2_UW1"] = wl["CW1"].upper()  # a B2 uncommon word spelled like a common word, other case
    assert vocab.is_seen("B2", "UW1", wl)
    assert not vocab.is_seen("B2", "UW1")


def test_expected_counts_per_speaker_and_sets():
    one = vocab.expected_counts(["F02"])
    assert (one.total, one.split["train"], one.split["test"]) == (765, 510, 255)
    assert dict(one.category) == {"digit": 30, "letter": 78, "command": 57, "common": 300, "uncommon": 300}
    assert dict(one.test_seen) == {"seen": 156, "unseen": 99}
    av = vocab.expected_counts(corpus.AV_SPEAKERS)
    assert av.total == 12 * 765 and dict(av.level) == {"very_low": 765, "low": 2295, "mid": 2295, "high": 3825}
    ctl = vocab.expected_counts(corpus.CONTROL_SPEAKERS, "common")
    assert ctl.total == 13 * 465 and dict(ctl.level) == {"control": 13 * 465}


def test_docs_carry_the_generated_tables():
    if not DOC.is_file():
        pytest.fail(f"{DOC} is missing")
    text = DOC.read_text(encoding="utf-8")
    for table in (vocab.expected_table_markdown(), vocab.category_table_markdown(), vocab.level_table_markdown()):
        assert table in text, "docs/UASpeech.md is out of date: paste the output of the uaspeech_prep.vocab *_markdown()"


def test_expected_counts_from_the_real_wordlist(real_wordlist):
    from uaspeech_prep.wordlist import read_wordlist

    wl = read_wordlist(real_wordlist)
    assert vocab.expected_table_markdown(wl) == vocab.expected_table_markdown()
    assert len(vocab.training_words(wl)) == 350  # 155 common + 2 x 100 uncommon - 5 shared by B1 and B3


@pytest.fixture(scope="module")
def release(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("stats") / "rel"
    for spk, words in (("F02", [("B1", "D0"), ("B2", "D0"), ("B2", "UW1"), ("B2", "UW82"), ("B3", "UW4")]),
                       ("M09", [("B1", "LA")])):
        for blk, wid in words:
            for mic in ("M5", "M6"):
                fx.write_wav(root / "audio" / spk / f"{spk}_{blk}_{wid}_{mic}.wav", 0.2)
    fx.write_wav(root / "audio" / "F02" / "F02_B1_junk_M5.wav", 0.2)
    return root


def test_stats_of_a_release_tree(release, capsys):
    st = tree_stats(release)
    c = st.counts
    assert (st.kind, c.total, st.wavs) == ("release", 6, 12)
    assert dict(c.split) == {"train": 3, "test": 3}
    assert dict(c.test_seen) == {"seen": 2, "unseen": 1}  # D0 and UW82 'watch' seen, UW1 unseen
    assert dict(c.level) == {"low": 5, "high": 1}
    assert dict(c.category) == {"digit": 2, "uncommon": 3, "letter": 1}
    assert st.expected.total == 2 * 765
    assert len(st.problems) == 1 and "F02_B1_junk_M5.wav" in st.problems[0]
    st = tree_stats(release, vocabulary="unseen")
    assert st.counts.total == 1 and st.expected.total == 2 * 99
    assert tree_stats(release, vocabulary="common").counts.total == 3
    assert cli_main(["stats", str(release)]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert "release tree" in lines[0] and "6 utterances" in lines[0]
    row = next(x for x in lines if x.startswith("F02 "))
    assert row.split() == ["F02", "5", "765", "760"]
    assert cli_main(["stats", str(release), "--vocabulary", "seen", "--json"]) == 0
    js = json.loads(capsys.readouterr().out)
    assert js["counts"]["total"] == 5 and js["expected"]["total"] == 2 * (510 + 156)


def test_stats_of_a_prepared_tree(tmp_path, capsys):
    recs = [{"utt_id": u, "speaker": "F02", "block": u.split("_")[1], "word_id": u.split("_")[2],
             "audio": {"M5": "a.wav", "M6": "b.wav"}, "clip": "c.mp4", "roi": None}
            for u in ("F02_B1_D0", "F02_B2_UW1", "F02_B2_UW82")]
    (tmp_path / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs) + "{broken\n")
    st = tree_stats(tmp_path, mics=["M6"])
    assert (st.kind, st.counts.total, st.wavs, st.clips, st.rois) == ("prepared", 3, 3, 3, 0)
    assert dict(st.counts.test_seen) == {"unseen": 1, "seen": 1}
    assert len(st.problems) == 1 and "manifest.jsonl:4" in st.problems[0]
    capsys.readouterr()
    assert cli_main(["stats", str(tmp_path / "nowhere")]) == 2
    out = capsys.readouterr()  # errors are one line on stderr, naming the folder
    assert "nowhere: source folder does not exist" in out.err and out.out == ""
