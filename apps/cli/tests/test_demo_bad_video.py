"""The demo's bad-video table (apps/cli/src/av_cli/demo.py, step 7): rows, columns and figures."""

from __future__ import annotations

from av_cli.demo import BAD_VIDEO_ROWS, NOISY_SNR_DB, bad_video_table


def test_bad_video_table_rows_columns_and_percentages():
    assert NOISY_SNR_DB == 0.0
    av = {c: {"clean": 0.01 * k, "0": 0.02 * k} for k, c in enumerate(BAD_VIDEO_ROWS)}
    del av["mismatched"]["0"]  # a missing score prints as "-"
    table = bad_video_table({"clean": 0.075, "0": 0.1875}, av)
    lines = table.splitlines()
    assert lines[0] == "| video | audio-only clean | audio-visual clean | audio-only 0 dB | audio-visual 0 dB |"
    assert lines[1] == "|---|---:|---:|---:|---:|"
    assert [ln.split(" | ")[0][2:] for ln in lines[2:]] == [
        "good", "late-400ms", "early-400ms", "occluded", "frozen", "mismatched"]
    assert lines[2] == "| good | 7.5 | 0.0 | 18.8 | 0.0 |"  # the audio-only columns are the same in every row
    assert lines[3] == "| late-400ms | 7.5 | 1.0 | 18.8 | 2.0 |"
    assert lines[-1] == "| mismatched | 7.5 | 5.0 | 18.8 | - |"
