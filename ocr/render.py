"""Drawing characters and lines with Pillow, and the one preprocessing step training and reading share.

- :func:`render_glyph`: one character, 48×48 binary (ink 255 on 0), mild random affine jitter
  (rotation, shear, aspect), then :func:`normalize_crop` and noise that sets a share of the
  pixels to ink (noise only adds ink). Deterministic in ``seed``.
- :func:`render_line`: a printed line (dark text on white) and each character's column box, for
  evaluating line cutting and reading.
- :func:`normalize_crop`: SPEC §1's inference preprocessing (crop blank margins, pad to a square,
  nearest-neighbour resize to 46×46, place in 48×48 with a 1-px border, divide by the maximum).
  The training images go through it too, so the network sees at training what it sees reading.
- :func:`ink_image`: a grey crop of a printed page (dark on light or the reverse) to ink-high binary.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw

from ocr.fonts import FontFace, pil_font

SIDE = 48
INNER = 46
JITTER = {"rotation_deg": 4.0, "shear": 0.12, "log_aspect": 0.12}


def normalize_crop(img: np.ndarray) -> np.ndarray:
    """SPEC's preprocessing of one character image, ink high.

    ``img``: (H, W) array, ink > 0 on a background of 0 (use :func:`ink_image` on a grey page
    crop first). Blank rows and columns at the margins are cut, the rest is padded with background
    to a centred square of side max(h, w), resized to 46×46 by nearest neighbour (output pixel i
    samples input row ⌊(i + ½)·s/46⌋) and placed in a 48×48 frame with a 1-px border.

    Returns float32 (48, 48) divided by its maximum, so ink is 1.0 for a binary input; an image
    with no ink gives all zeros.
    """
    img = np.asarray(img)
    if img.ndim != 2:
        raise ValueError(f"normalize_crop expects a 2-D image, got shape {img.shape}")
    out = np.zeros((SIDE, SIDE), dtype=np.float32)
    ink = img > 0
    rows, cols = np.flatnonzero(ink.any(1)), np.flatnonzero(ink.any(0))
    if not len(rows):
        return out
    crop = img[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1].astype(np.float32)
    h, w = crop.shape
    side = max(h, w)
    square = np.zeros((side, side), dtype=np.float32)
    top, left = (side - h) // 2, (side - w) // 2
    square[top : top + h, left : left + w] = crop
    sample = ((np.arange(INNER) + 0.5) * side / INNER).astype(np.int64)
    out[1 : 1 + INNER, 1 : 1 + INNER] = square[np.ix_(sample, sample)]
    return out / out.max()


def ink_image(gray: np.ndarray) -> np.ndarray:
    """Binary ink mask (uint8 1 = ink) of a grey image of dark text on light or light on dark.

    Otsu's threshold splits the grey levels; the class that holds the majority of the border
    pixels is the background (a line image's margins are background), so either polarity works.
    """
    gray = np.asarray(gray)
    if gray.ndim == 3:
        gray = gray[..., :3].mean(-1)
    gray = gray.astype(np.float64)
    lo, hi = gray.min(), gray.max()
    if hi - lo < 1e-9:
        return np.zeros(gray.shape, np.uint8)
    levels = np.clip(((gray - lo) / (hi - lo) * 255).round(), 0, 255).astype(np.int64)
    hist = np.bincount(levels.ravel(), minlength=256).astype(np.float64)
    weight = np.cumsum(hist)
    mean = np.cumsum(hist * np.arange(256))
    total, total_mean = weight[-1], mean[-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        between = (total_mean * weight - mean * total) ** 2 / (weight * (total - weight))
    threshold = int(np.nanargmax(between[:-1]))
    dark = levels <= threshold
    border = np.concatenate([dark[0], dark[-1], dark[:, 0], dark[:, -1]])
    background_dark = border.mean() > 0.5
    return (~dark if background_dark else dark).astype(np.uint8)


def _jitter_matrix(rng: np.random.Generator, cx: float, cy: float) -> tuple[float, ...]:
    """Pillow's inverse affine coefficients (a, b, c, d, e, f) of a random rotation R(θ), shear
    S = [[1, s], [0, 1]] and aspect A = diag(α, 1/α) about (cx, cy): the forward map is M = R·S·A,
    and output (x, y) samples input (a·x + b·y + c, d·x + e·y + f) with [[a, b], [d, e]] = M⁻¹
    = A⁻¹·S⁻¹·R⁻¹, written out below. θ, s and log α are uniform in ±``JITTER``."""
    u = rng.uniform(-1.0, 1.0, 3)
    theta = math.radians(u[0] * JITTER["rotation_deg"])
    shear = u[1] * JITTER["shear"]
    aspect = math.exp(u[2] * JITTER["log_aspect"])
    cos, sin = math.cos(theta), math.sin(theta)
    # S⁻¹·R⁻¹ = [[1, −s], [0, 1]]·[[cos, sin], [−sin, cos]], then rows scaled by 1/α and α
    a, b = (cos + shear * sin) / aspect, (sin - shear * cos) / aspect
    d, e = -sin * aspect, cos * aspect
    return (a, b, cx - a * cx - b * cy, d, e, cy - d * cx - e * cy)


def render_glyph(char: str, face: FontFace, size_px: int, noise: float, seed: int, jitter: bool = True) -> np.ndarray:
    """One character as the network sees it: uint8 (48, 48), ink 255 on 0.

    Drawn with ``face`` at ``size_px`` on a canvas 1.5 times that size, distorted by a random affine
    map (rotation ±4°, shear ±0.12, aspect ×e^±0.12; ``jitter=False`` skips it), binarised at half
    intensity, put through :func:`normalize_crop`, then each pixel is set to ink with probability
    ``noise``. Everything random comes from ``numpy.random.default_rng(seed)``, so the same
    arguments give the same image in any process.
    """
    if not 0.0 <= noise <= 1.0:
        raise ValueError(f"noise is a share of pixels in [0, 1], got {noise}")
    rng = np.random.default_rng(seed)
    font = pil_font(face.path, face.index, int(size_px))
    canvas_side = 3 * int(size_px) // 2  # room for the glyph turned by the jitter
    canvas = Image.new("L", (canvas_side, canvas_side), 0)
    ImageDraw.Draw(canvas).text((canvas_side / 2, canvas_side / 2), char, font=font, fill=255, anchor="mm")
    if jitter:
        centre = canvas_side / 2
        canvas = canvas.transform(
            canvas.size, Image.Transform.AFFINE, _jitter_matrix(rng, centre, centre), resample=Image.Resampling.BILINEAR
        )
    binary = np.asarray(canvas) >= 128
    glyph = normalize_crop(binary) > 0.5
    if noise > 0:
        glyph |= rng.random(glyph.shape) < noise
    return glyph.astype(np.uint8) * 255


def render_line(
    text: str, face: FontFace, height_px: int = 48, spacing_px: int = 4, seed: int = 0
) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """A printed line: uint8 (height_px, W) grey image, dark text (0) on white (255), and the
    column box ``(x0, x1)`` (x1 exclusive) of each non-space character's ink.

    Characters are set on one baseline at a font size of 0.75·``height_px``; each starts
    ``spacing_px`` plus a random 0–2 px (from ``seed``) after the previous one's ink ends, so the
    boxes never touch; a space advances by a third of the font size and gets no box. Margins of
    ``height_px``/4 on the left and right.
    """
    if not text.strip():
        raise ValueError("render_line needs at least one non-space character")
    rng = np.random.default_rng(seed)
    size = max(4, round(0.75 * height_px))
    font = pil_font(face.path, face.index, size)
    ascent, descent = font.getmetrics()
    baseline = (height_px - (ascent + descent)) / 2 + ascent
    margin = max(2, height_px // 4)
    placements, x = [], margin
    for char in text:
        if char.isspace():
            x += size // 3
            continue
        left, _, right, _ = font.getbbox(char, anchor="ls")
        if right <= left:  # nothing drawn: keep a box of the advance so the text stays aligned
            right = left + 1
        placements.append((char, x - left, x, x + (right - left)))
        x += (right - left) + spacing_px + int(rng.integers(0, 3))
    width = x - spacing_px + margin
    image = Image.new("L", (width, height_px), 255)
    draw = ImageDraw.Draw(image)
    for char, origin, _, _ in placements:
        draw.text((origin, baseline), char, font=font, fill=0, anchor="ls")
    gray = np.asarray(image).copy()
    boxes = [_ink_box(gray, x0, x1) for _, _, x0, x1 in placements]
    return gray, boxes


def _ink_box(gray: np.ndarray, x0: int, x1: int) -> tuple[int, int]:
    """The columns of [x0, x1) that hold ink (the bbox Pillow reports may include blank edges)."""
    cols = np.flatnonzero((gray[:, x0:x1] < 128).any(0))
    return (x0 + int(cols[0]), x0 + int(cols[-1]) + 1) if len(cols) else (x0, x1)
