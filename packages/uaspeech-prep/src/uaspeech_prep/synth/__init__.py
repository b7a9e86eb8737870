"""Synthetic UASpeech-like corpus: ``uaspeech-prep synth``.

Modules: :mod:`.tts` (espeak-ng speech with phoneme times), :mod:`.degrade` (dysarthric degradations
by level, microphone channels), :mod:`.visemes` (phonemes -> mouth shapes), :mod:`.face` (the drawn
talking face), :mod:`.video` (block videos and frame indices), :mod:`.profiles` (per-speaker voice and
look), :mod:`.utterance` (one word), :mod:`.xls` (doc/speaker_wordlist.xls), :mod:`.corpus_writer`
(the release layout) and :mod:`.command` (the CLI).
"""
