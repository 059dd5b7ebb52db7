"""Font discovery and glyph coverage: which faces can draw which characters, as the glyph they mean.

Every face of a collection (``.ttc``/``.otc``) is a :class:`FontFace` of its own, addressed by its
index. A face *covers* a character when its cmap maps the code point to a glyph other than
``.notdef`` **and** the glyph it draws is not the font's missing-glyph box (some fonts map code
points they lack onto a copy of the box; pixel counts do not catch that, a comparison with the
rendered ``.notdef`` does) and not empty.

Region: the same code point is drawn in different forms by the Chinese-simplified, traditional,
Japanese and Korean faces of a pan-CJK font (Noto CJK's SC/TC/HK/JP/KR faces, AR PL's CN/TW/HK
faces). Simplified labels use only faces whose region is SC/CN (or unknown: a font made for one
region only, e.g. WenQuanYi) unless other regions are asked for.

The training fonts are those of the Debian packages fonts-noto-cjk, fonts-wqy-zenhei,
fonts-wqy-microhei, fonts-arphic-{ukai,uming,gbsn00lp,gkai00mp} (:data:`TRAINING_FAMILIES`) and, for
Latin letters and digits, DejaVu; any other font on a machine is left for measuring generalisation.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
from dataclasses import dataclass
from functools import cache, lru_cache
from pathlib import Path

import numpy as np

FONT_SUFFIXES = (".ttf", ".otf", ".ttc", ".otc")
REGION = re.compile(r"\s+(SC|TC|JP|KR|HK|CN|TW MBE|TW|GB)$")
REGION_ALIASES = {"GB": "CN"}  # AR PL's "… GB" fonts are GB 2312 (simplified) fonts
SIMPLIFIED_REGIONS = ("SC", "CN", None)

# Design families of the Debian packages the models are trained on (see the module docstring);
# DejaVu is on every machine and draws the Latin letters and digits of Latin-only charsets.
TRAINING_FAMILIES = (
    "Noto Sans CJK",
    "Noto Sans Mono CJK",
    "Noto Serif CJK",
    "WenQuanYi Zen Hei",
    "WenQuanYi Zen Hei Mono",
    "WenQuanYi Micro Hei",
    "WenQuanYi Micro Hei Mono",
    "AR PL UKai",
    "AR PL UMing",
    "AR PL SungtiL",
    "AR PL KaitiM",
    "DejaVu Sans",
    "DejaVu Sans Mono",
    "DejaVu Serif",
)


@dataclass(frozen=True)
class FontFace:
    """One face of a font file: ``index`` addresses it inside a collection (0 for a single font).

    ``family`` is the typographic family name (``Noto Sans CJK SC``), ``style`` its style
    (``Bold``), ``region`` the CJK region its glyph forms follow (``SC``, ``TC``, ``JP``, ``KR``,
    ``HK``, ``CN``, ``TW``, ``TW MBE``) or None for a font made for one script or region only.
    """

    path: str
    index: int
    family: str
    style: str
    region: str | None

    @property
    def design_family(self) -> str:
        """The family without its region and bitmap-variant suffix: the unit held out for testing
        (``Noto Serif CJK SC`` → ``Noto Serif CJK``, ``WenQuanYi Zen Hei Sharp`` → ``WenQuanYi Zen Hei``)."""
        return REGION.sub("", self.family).removesuffix(" Sharp")

    @property
    def name(self) -> str:
        return f"{self.family} {self.style}"


class FontCoverageError(ValueError):
    """Characters no available face can draw; the message lists them."""


def font_dirs() -> list[Path]:
    """The system's and the user's font folders on Linux, macOS and Windows (those that exist)."""
    home = Path.home()
    data_home = Path(os.environ.get("XDG_DATA_HOME", home / ".local" / "share"))
    candidates = [
        Path("/usr/share/fonts"),
        Path("/usr/local/share/fonts"),
        data_home / "fonts",
        home / ".fonts",
        Path("/System/Library/Fonts"),
        Path("/Library/Fonts"),
        home / "Library" / "Fonts",
    ]
    if sys.platform == "win32":
        candidates += [Path(os.environ.get("WINDIR", "C:/Windows")) / "Fonts"]
        candidates += [Path(os.environ.get("LOCALAPPDATA", home)) / "Microsoft" / "Windows" / "Fonts"]
    return [d for d in candidates if d.is_dir()]


def _english_name(name_table, *ids: int) -> str | None:
    for name_id in ids:
        record = name_table.getName(name_id, 3, 1, 0x409) or name_table.getName(name_id, 1, 0, 0)
        text = record.toUnicode() if record is not None else name_table.getDebugName(name_id)
        if text:
            return text.strip()
    return None


def read_faces(path: Path | str) -> list[FontFace]:
    """Every face of one font file (a collection has several); [] for a file fontTools cannot read."""
    from fontTools.ttLib import TTCollection, TTFont, TTLibError

    path = str(path)
    try:
        if path.lower().endswith((".ttc", ".otc")):
            count = len(TTCollection(path, lazy=True).fonts)
        else:
            count = 1
        faces = []
        for index in range(count):
            font = TTFont(path, fontNumber=index, lazy=True)
            family = _english_name(font["name"], 16, 1) or Path(path).stem
            style = _english_name(font["name"], 17, 2) or "Regular"
            match = REGION.search(family)
            region = REGION_ALIASES.get(match.group(1), match.group(1)) if match else None
            faces.append(FontFace(path, index, family, style, region))
            font.close()
        return faces
    except (TTLibError, OSError, KeyError, AssertionError, ValueError):
        return []


def discover_fonts(dirs: list[Path | str] | None = None) -> list[FontFace]:
    """Every face of every font file under ``dirs`` (default :func:`font_dirs`), sorted by path and index."""
    roots = [Path(d) for d in (dirs if dirs is not None else font_dirs())]
    files = sorted(
        {p.resolve() for d in roots if d.is_dir() for p in d.rglob("*") if p.suffix.lower() in FONT_SUFFIXES}
    )
    return [face for f in files for face in _read_faces_cached(str(f), f.stat().st_mtime_ns)]


@cache
def _read_faces_cached(path: str, mtime_ns: int) -> tuple[FontFace, ...]:
    return tuple(read_faces(path))


@lru_cache(maxsize=256)
def pil_font(path: str, index: int, size: int):
    """A Pillow font for one face and pixel size, cached per process (loading a CJK font takes ms)."""
    from PIL import ImageFont

    return ImageFont.truetype(path, size, index=index, layout_engine=ImageFont.Layout.BASIC)


def glyph_mask(path: str, index: int, size: int, char: str) -> np.ndarray:
    """The glyph Pillow draws for ``char``, as a bool array cropped to its ink (0×0 when none)."""
    font = pil_font(path, index, size)
    mask = font.getmask(char, mode="1")
    width, height = mask.size
    pixels = np.frombuffer(bytes(mask), dtype=np.uint8) if width and height else np.zeros(0, np.uint8)
    array = pixels.reshape(height, width) > 0 if width and height else np.zeros((0, 0), bool)
    rows, cols = np.flatnonzero(array.any(1)), np.flatnonzero(array.any(0))
    if not len(rows):
        return np.zeros((0, 0), bool)
    return array[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]


COVERAGE_PX = 32


def _notdef_mask(face: FontFace, cmap: dict[int, str]) -> np.ndarray:
    """The missing-glyph box as Pillow draws it: a private-use code point the font does not map."""
    code = next(c for c in range(0xF0000, 0xFFFFE) if c not in cmap)
    return glyph_mask(face.path, face.index, COVERAGE_PX, chr(code))


def _dilate(mask: np.ndarray) -> np.ndarray:
    """Binary dilation by one pixel (3×3 square)."""
    padded = np.pad(mask, 1)
    h, w = mask.shape
    return np.logical_or.reduce([padded[dy : dy + h, dx : dx + w] for dy in range(3) for dx in range(3)])


def _same_drawing(a: np.ndarray, b: np.ndarray, tolerance: float = 0.95) -> bool:
    """Whether two cropped glyph masks draw the same shape up to a pixel of rasterisation: sizes
    within 2 px, and at least ``tolerance`` of each one's ink within one pixel of the other's ink.
    (The same outline under another glyph name can land a pixel apart: FreeType positions glyphs
    by their own side bearings.)"""
    if a.size == 0 or b.size == 0 or abs(a.shape[0] - b.shape[0]) > 2 or abs(a.shape[1] - b.shape[1]) > 2:
        return False
    h, w = max(a.shape[0], b.shape[0]), max(a.shape[1], b.shape[1])
    a = np.pad(a, ((0, h - a.shape[0]), (0, w - a.shape[1])))
    b = np.pad(b, ((0, h - b.shape[0]), (0, w - b.shape[1])))
    return bool((a & _dilate(b)).sum() >= tolerance * a.sum() and (b & _dilate(a)).sum() >= tolerance * b.sum())


def covers(face: FontFace, chars) -> list[str]:
    """The characters of ``chars`` that ``face`` cannot draw (in the order given): not in its cmap,
    mapped to ``.notdef``, drawn as the ``.notdef`` box, or drawn with no ink (spaces excepted).
    Results are cached on disk per font file, face and character set."""
    chars = list(dict.fromkeys(chars))
    key = _coverage_key(face, chars)
    cached = _coverage_cache().get(key)
    if cached is not None:
        return cached
    from fontTools.ttLib import TTFont

    font = TTFont(face.path, fontNumber=face.index, lazy=True)
    # Glyph ids are all the check needs: numbered names spare decoding the glyph names of the
    # 'post' table, which took most of the time on CJK fonts of 65,000 glyphs.
    font.setGlyphOrder([".notdef"] + [f"gid{i}" for i in range(1, font["maxp"].numGlyphs)])
    cmap = font.getBestCmap() or {}
    font.close()
    notdef = _notdef_mask(face, cmap)
    missing = []
    for char in chars:
        glyph = cmap.get(ord(char))
        if glyph is None or glyph == ".notdef":
            missing.append(char)
            continue
        if char.isspace():
            continue
        drawn = glyph_mask(face.path, face.index, COVERAGE_PX, char)
        if drawn.size == 0 or _same_drawing(drawn, notdef):
            missing.append(char)
    _store_coverage(key, missing)
    return missing


def _coverage_key(face: FontFace, chars: list[str]) -> str:
    stat = os.stat(face.path)
    digest = hashlib.sha1("".join(chars).encode("utf-8")).hexdigest()[:16]
    return f"{face.path}|{face.index}|{stat.st_size}|{stat.st_mtime_ns}|{COVERAGE_PX}|{digest}"


def _coverage_file() -> Path:
    from ocr.charset import cache_dir

    return cache_dir() / "font_coverage.json"


def _coverage_cache() -> dict:
    path = _coverage_file()
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _store_coverage(key: str, missing: list[str]) -> None:
    path = _coverage_file()
    cache = _coverage_cache()
    cache[key] = missing
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(cache, ensure_ascii=False), encoding="utf-8")
    tmp.replace(path)


def is_training_family(face: FontFace) -> bool:
    """A face of the fonts the models are trained on (:data:`TRAINING_FAMILIES`)."""
    return face.design_family in TRAINING_FAMILIES


def training_faces(
    chars,
    allow_regions=SIMPLIFIED_REGIONS,
    faces: list[FontFace] | None = None,
    families=TRAINING_FAMILIES,
    min_coverage: float = 0.95,
) -> list[FontFace]:
    """The faces that draw ``chars`` in the wanted regional forms.

    Of ``faces`` (default: :func:`discover_fonts`), keep those of a design family in ``families``
    (None: any), of a region in ``allow_regions`` (None: any) and that cover at least
    ``min_coverage`` of ``chars`` (a face may miss a few: AR PL SungtiL GB draws 2,998 of the 3,000
    default characters; pair characters with the faces that cover them with :func:`coverage`).
    Raises :class:`FontCoverageError` listing the characters no kept face can draw.
    """
    chars = list(dict.fromkeys(chars))
    pool = discover_fonts() if faces is None else list(faces)
    pool = [f for f in pool if families is None or f.design_family in families]
    pool = [f for f in pool if allow_regions is None or f.region in allow_regions]
    missing = {face: set(covers(face, chars)) for face in pool}
    lacking = [c for c in chars if all(c in m for m in missing.values())]
    if lacking:
        shown = " ".join(lacking[:50]) + (f" … ({len(lacking)} in all)" if len(lacking) > 50 else "")
        regions = "any region" if allow_regions is None else "regions " + "/".join(str(r) for r in allow_regions)
        raise FontCoverageError(
            f"no font face ({len(pool)} searched, {regions}) draws these {len(lacking)} characters: {shown}; "
            "install fonts-noto-cjk (or another font that has them) or drop them from the charset"
        )
    kept = [face for face in pool if len(chars) - len(missing[face]) >= min_coverage * len(chars)]
    orphans = [c for c in chars if all(c in missing[face] for face in kept)]
    if orphans:
        raise FontCoverageError(
            f"only faces that lack more than {1 - min_coverage:.0%} of the charset draw these {len(orphans)} "
            f"characters: {' '.join(orphans[:50])}; lower min_coverage or install a font that has them"
        )
    return kept


def coverage(faces: list[FontFace], chars) -> np.ndarray:
    """Bool array (len(faces), len(chars)): whether each face draws each character."""
    chars = list(chars)
    table = np.ones((len(faces), len(chars)), dtype=bool)
    index = {c: i for i, c in enumerate(chars)}
    for f, face in enumerate(faces):
        for char in covers(face, chars):
            table[f, index[char]] = False
    return table
