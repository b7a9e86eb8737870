"""Small release trees for the prepare tests, built from scratch (no synth, no network).

Block videos show the astronaut's head (``skimage.data.astronaut()``, a real face photo) on the left and,
on the right, the frame's own number as 12 black/white 40x40 blocks, which survive lossy compression:
:func:`decode_index` reads the number back from any decoded frame.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import soundfile as sf

FRAME_W, FRAME_H = 320, 240
HEAD_BOX = (10, 250, 105, 345)  # rows y0:y1, cols x0:x1 of the astronaut photo: a 240x240 head square
MOUTH_IN_PHOTO = (223.0, 145.0)  # (x, y) of the mouth centre in the 512x512 photo, read off the image
BITS, CELL = 12, 40
SR = 16000


def head_bgr() -> np.ndarray:
    from skimage import data

    y0, y1, x0, x1 = HEAD_BOX
    return np.ascontiguousarray(cv2.cvtColor(data.astronaut()[y0:y1, x0:x1], cv2.COLOR_RGB2BGR))


def mouth_in_head() -> tuple[float, float]:
    return MOUTH_IN_PHOTO[0] - HEAD_BOX[2], MOUTH_IN_PHOTO[1] - HEAD_BOX[0]


_HEAD = None


def encode_frame(i: int) -> np.ndarray:
    """Frame ``i``: the head at (0, 0), and ``i`` in binary (12 cells of 40x40, 2 columns x 6 rows) at x >= 240."""
    global _HEAD
    if _HEAD is None:
        _HEAD = head_bgr()
    f = np.full((FRAME_H, FRAME_W, 3), 128, np.uint8)
    f[:, :240] = _HEAD
    for b in range(BITS):
        col, row = divmod(b, 6)
        x0, y0 = 240 + col * CELL, row * CELL
        f[y0:y0 + CELL, x0:x0 + CELL] = 255 if (i >> b) & 1 else 0
    return f


def decode_index(frame: np.ndarray) -> int:
    g = frame if frame.ndim == 2 else cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
    v = 0
    for b in range(BITS):
        col, row = divmod(b, 6)
        x0, y0 = 240 + col * CELL, row * CELL
        if g[y0 + 8:y0 + CELL - 8, x0 + 8:x0 + CELL - 8].mean() > 128:
            v |= 1 << b
    return v


def write_block_video(path: Path, n_frames: int, fps: float = 30.0, fourcc: str = "DIVX") -> Path:
    """Frames 0..n-1 encoding their number. OpenCV picks the container from the extension and does not
    know ``.divx``: such files are written as AVI and renamed (the real release's .divx are AVI too)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".avi") if path.suffix.lower() == ".divx" else path
    w = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*fourcc), fps, (FRAME_W, FRAME_H))
    assert w.isOpened(), path
    for i in range(n_frames):
        w.write(encode_frame(i))
    w.release()
    if tmp != path:
        tmp.replace(path)
    return path


def write_wav(path: Path, duration_s: float, sr: int = SR, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    n = int(round(duration_s * sr))
    x = (0.1 * np.random.default_rng(seed).standard_normal(n)).astype(np.float32)
    sf.write(str(path), x, sr, subtype="PCM_16")
    return path


@dataclass
class Tree:
    root: Path
    fps: float
    ranges: dict[str, tuple[int, int]]  # utt_id -> (begin, end)
    mics: tuple[str, ...]


# per block: word id -> (begin, end); D1 and D2 overlap on purpose
RANGES = {"D0": (4, 27), "D1": (30, 61), "D2": (58, 84), "LA": (95, 120)}
BLOCK_FRAMES = 130


def make_tree(root: Path, speaker: str = "F02", blocks=("B1", "B2"), mics=("M5", "M6"), fps: float = 30.0,
              ranges: dict[str, tuple[int, int]] | None = None) -> Tree:
    """A release tree: audio/<SPK>/*.wav, video/<SPK>/<SPK>-<BLK>-DV-1.divx + frame index per block."""
    ranges = ranges or RANGES
    out: dict[str, tuple[int, int]] = {}
    for blk in blocks:
        lines = ["# utt begin end", ""]
        for k, (wid, (b, e)) in enumerate(ranges.items()):
            utt = f"{speaker}_{blk}_{wid}"
            out[utt] = (b, e)
            sep = "," if k % 2 else " "
            lines.append(f"{utt}{sep}{b}{sep}{e}")
            for m in mics:
                write_wav(root / "audio" / speaker / f"{utt}_{m}.wav", (e - b + 1) / fps, seed=k)
        vdir = root / "video" / speaker
        write_block_video(vdir / f"{speaker}-{blk}-DV-1.divx", BLOCK_FRAMES, fps)
        (vdir / f"{speaker}_{blk}_frame_index.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return Tree(root, fps, out, tuple(mics))


def write_wordlist_xls(path: Path, overrides: dict[str, str] | None = None) -> Path:
    """A ``speaker_wordlist.xls`` in the release's shape (sheets Word_filename and Speaker, the latter with
    title rows and its header on row 4), from the built-in tables (``overrides``: key -> other word)."""
    import xlwt

    from uaspeech_prep import corpus

    book = xlwt.Workbook()
    sp = book.add_sheet("Speaker")
    sp.write(0, 1, "Demographic information for speakers with dysarthria")
    for c, h in enumerate(["Speaker", "Age", "Intelligibility (%)", "Diagnosis", "Motor Control"]):
        sp.write(3, c, h)
    names = {"very_low": "Very low", "low": "Low", "mid": "Mid", "high": "High"}
    row = 5
    for sid in corpus.DYSARTHRIC_SPEAKERS:
        s = corpus.speaker(sid)
        pct = f"{s.intelligibility:g}"
        for c, v in enumerate([sid, ">18", f"{names[s.level]} ({pct}%)", s.diagnosis, ""]):
            sp.write(row, c, v)
        row += 2
    wf = book.add_sheet("Word_filename")
    wf.write(0, 0, "WORD")
    wf.write(0, 1, "FILE NAME")
    for r, (key, word) in enumerate({**corpus.builtin_wordlist(), **(overrides or {})}.items(), 1):
        wf.write(r, 0, word)
        wf.write(r, 1, key)
    path.parent.mkdir(parents=True, exist_ok=True)
    book.save(str(path))
    return path


def animate_head(n_frames: int, fps: float = 30.0, shift_px: float = 14.0, angle_deg: float = 8.0,
                 zoom: float = 0.06, size: int = 320) -> tuple[list[np.ndarray], np.ndarray]:
    """The astronaut's head moving on a grey ``size`` x ``size`` canvas: sway left/right by ``shift_px``,
    nod by half of it, roll by +-``angle_deg`` and zoom by +-``zoom`` (periods 2 s, 1.5 s, 2.5 s, 3 s).
    Returns (BGR frames, (n, 2, 3) head-photo -> canvas matrices), so that any point of the head photo
    (e.g. :func:`mouth_in_head`) is known on every frame."""
    head = head_bgr()
    hh, hw = head.shape[:2]
    frames, mats = [], []
    for i in range(n_frames):
        t = i / fps
        ang = angle_deg * np.sin(2 * np.pi * t / 2.5)
        sc = 1.0 + zoom * np.sin(2 * np.pi * t / 3.0)
        dx = shift_px * np.sin(2 * np.pi * t / 2.0)
        dy = 0.5 * shift_px * np.sin(2 * np.pi * t / 1.5)
        m = cv2.getRotationMatrix2D((hw / 2, hh / 2), ang, sc)
        m[:, 2] += (size - hw) / 2 + dx, (size - hh) / 2 + dy
        frames.append(cv2.warpAffine(head, m, (size, size), flags=cv2.INTER_LINEAR, borderValue=(128, 128, 128)))
        mats.append(m)
    return frames, np.stack(mats)


def apply_affine(m: np.ndarray, pts) -> np.ndarray:
    p = np.atleast_2d(np.asarray(pts, dtype=np.float64))
    return p @ m[:, :2].T + m[:, 2]
