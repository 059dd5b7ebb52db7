"""Rendering (glyphs, lines, the shared preprocessing) and the ``glyphs`` data module."""

from __future__ import annotations

import string
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from datamodules.base import DataError, collate_stacked
from datamodules.glyphs import GlyphsDataModule
from ocr.fonts import discover_fonts
from ocr.render import ink_image, normalize_crop, render_glyph, render_line

DEJAVU = Path("/usr/share/fonts/truetype/dejavu")
HAVE_CJK = Path("/usr/share/fonts/opentype/noto/NotoSerifCJK-Regular.ttc").is_file()
needs_cjk = pytest.mark.skipif(not HAVE_CJK, reason="the Debian CJK fonts are not installed")


@pytest.fixture(scope="module")
def dejavu_sans():
    return next(f for f in discover_fonts([DEJAVU]) if f.family == "DejaVu Sans" and f.style == "Book")


@pytest.fixture(scope="module")
def glyphs():
    data = GlyphsDataModule(num_chinese=500)
    data.setup()
    return data


def reference_normalize(img: np.ndarray) -> np.ndarray:
    """SPEC's steps written independently with Pillow: crop, centre in a square, nearest 46×46, 1-px border."""
    ys, xs = np.nonzero(img)
    crop = img[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
    side = max(crop.shape)
    square = Image.new("L", (side, side), 0)
    square.paste(Image.fromarray(crop), ((side - crop.shape[1]) // 2, (side - crop.shape[0]) // 2))
    small = np.asarray(square.resize((46, 46), Image.Resampling.NEAREST), dtype=np.float32)
    return np.pad(small, 1) / small.max()


@pytest.mark.parametrize(
    "shape, box", [((60, 90), (10, 30, 5, 70)), ((50, 50), (3, 47, 20, 24)), ((20, 30), (0, 20, 0, 30))]
)
def test_normalize_crop_matches_the_spec_steps(shape, box):
    img = np.zeros(shape, np.uint8)
    y0, y1, x0, x1 = box
    img[y0:y1, x0:x1] = 200
    img[y0, x0] = 255  # a brighter pixel: the output is divided by the maximum
    out = normalize_crop(img)
    assert out.shape == (48, 48) and out.dtype == np.float32
    np.testing.assert_allclose(out, reference_normalize(img), atol=1e-6)
    assert out.max() == 1.0 and not out[0].any() and not out[:, 0].any() and not out[-1].any()
    assert not normalize_crop(np.zeros((10, 10))).any()


def test_ink_image_takes_either_polarity():
    dark_on_light = np.full((20, 40), 240, np.uint8)
    dark_on_light[5:15, 10:30] = 20
    ink = ink_image(dark_on_light)
    assert ink.sum() == 200 and ink[5:15, 10:30].all()
    np.testing.assert_array_equal(ink_image(255 - dark_on_light), ink)
    assert not ink_image(np.full((5, 5), 7)).any()


def test_render_glyph_is_deterministic_binary_and_adds_noise(dejavu_sans):
    a = render_glyph("A", dejavu_sans, 48, 0.0, seed=3)
    assert a.shape == (48, 48) and a.dtype == np.uint8 and set(np.unique(a)) == {0, 255}
    np.testing.assert_array_equal(a, render_glyph("A", dejavu_sans, 48, 0.0, seed=3))
    assert (a != render_glyph("A", dejavu_sans, 48, 0.0, seed=4)).any()  # another jitter
    clean = render_glyph("A", dejavu_sans, 48, 0.0, seed=5, jitter=False)
    noisy = np.stack([render_glyph("A", dejavu_sans, 48, 0.15, seed=s, jitter=False) for s in range(20)])
    assert ((noisy > 0) >= (clean > 0)).all()  # noise only adds ink
    added = ((noisy > 0) & (clean == 0)).sum() / (20 * (clean == 0).sum())
    assert abs(added - 0.15) < 0.01


def test_render_line_boxes_are_the_ink_of_each_character(dejavu_sans):
    gray, boxes = render_line("Ab1 xy", dejavu_sans, height_px=40, spacing_px=5, seed=1)
    assert gray.dtype == np.uint8 and gray.shape[0] == 40 and gray.min() == 0 and gray.max() == 255
    assert len(boxes) == 5
    ink = (gray < 128).any(0)
    for (x0, x1), (next_x0, _) in zip(boxes, boxes[1:]):
        assert ink[x0] and ink[x1 - 1] and next_x0 - x1 >= 5 and not ink[x1:next_x0].any()
    assert not ink[: boxes[0][0]].any() and not ink[boxes[-1][1] :].any()
    np.testing.assert_array_equal(render_line("Ab1 xy", dejavu_sans, 40, 5, seed=1)[0], gray)


@needs_cjk
def test_held_out_families_never_train(glyphs):
    train = {f.design_family for f in glyphs.train_faces}
    test = {f.design_family for f in glyphs.test_faces}
    assert test == {"AR PL UKai", "Noto Serif CJK"} and not train & test
    assert all(f.region in ("SC", "CN", None) for f in glyphs.train_faces + glyphs.test_faces)
    assert glyphs.num_classes == 562 and glyphs.class_names[-62:] == list(
        string.ascii_uppercase + string.ascii_lowercase + string.digits
    )
    train_faces = {glyphs.train_set.faces[f] for f in np.unique(glyphs.train_set.pairs[:, 1])}
    assert train_faces.isdisjoint(glyphs.test_set.faces)


@needs_cjk
def test_every_class_renders_non_blank_and_unlike_the_missing_glyph_box(glyphs):
    data = glyphs.train_set
    first_pair = {int(k): p for p, k in reversed(list(enumerate(data.pairs[:, 0])))}
    per_pair = len(data) // len(data.pairs)
    assert sorted(first_pair) == list(range(glyphs.num_classes))
    boxes = {}  # what each face draws for a code point no font maps, through the same pipeline
    for k, pair in first_pair.items():
        x, y = data[pair * per_pair]
        assert int(y) == k and x.shape == (1, 48, 48) and x.dtype == torch.float32
        assert 0.02 < float(x.mean()) < 0.9, glyphs.charset[k]
        face = data.faces[data.pairs[pair, 1]]
        if face not in boxes:
            boxes[face] = render_glyph("\U0010fffd", face, 48, 0.0, 0, jitter=False) > 0
        clean = render_glyph(glyphs.charset[k], face, 48, 0.0, 0, jitter=False) > 0
        assert np.mean(clean != boxes[face]) > 0.05, (glyphs.charset[k], face.name)


@needs_cjk
def test_samples_are_fixed_per_index_and_the_same_in_workers(glyphs):
    again = GlyphsDataModule(num_chinese=500)
    again.setup()
    for index in (0, 7, 12_345, len(glyphs.train_set) - 1):
        torch.testing.assert_close(glyphs.train_set[index], again.train_set[index])
    assert not torch.equal(glyphs.train_set[0][0], glyphs.val_set[0][0])
    subset = torch.utils.data.Subset(glyphs.test_set, range(0, 4000, 97))
    loaders = [DataLoader(subset, batch_size=8, num_workers=n, collate_fn=collate_stacked) for n in (0, 2)]
    for (xa, ya), (xb, yb) in zip(*loaders):
        torch.testing.assert_close(xa, xb)
        torch.testing.assert_close(ya, yb)


@needs_cjk
def test_noise_of_the_test_split_can_be_chosen(glyphs):
    clean, noisy = glyphs.dataset("test", noise=0.0), glyphs.dataset("test", noise=0.15)
    assert len(clean) == len(noisy) == len(glyphs.test_set)
    extra = float((noisy[100][0] - clean[100][0]).mean())
    assert 0.08 < extra < 0.16


def test_latin_charset_trains_on_dejavu_alone(tmp_path):
    charset = tmp_path / "latin.txt"
    charset.write_text("\n".join(string.ascii_letters + string.digits), encoding="utf-8")
    data = GlyphsDataModule(charset=str(charset), num_chinese=None, font_dirs=(str(DEJAVU),), sizes=(24,), noise=(0.0,))
    data.setup()
    # DejaVu Math TeX Gyre is not a training family: it joins the test split as another font
    assert {f.design_family for f in data.test_faces} == {"DejaVu Serif", "DejaVu Math TeX Gyre"}
    assert {f.design_family for f in data.train_faces} == {"DejaVu Sans", "DejaVu Sans Mono"}
    x, y = next(iter(data.train_dataloader()))
    assert x.shape == (256, 1, 48, 48) and y.max() < 62


def test_a_charset_without_fonts_is_refused_with_its_characters(tmp_path):
    charset = tmp_path / "c.txt"
    charset.write_text("A\n\U0010fffd\n", encoding="utf-8")
    data = GlyphsDataModule(charset=str(charset), num_chinese=None, font_dirs=(str(DEJAVU),))
    with pytest.raises(DataError, match="draws these 1 characters: \U0010fffd"):
        data.setup()


@needs_cjk
def test_line_samples_draw_held_out_text_with_held_out_faces(glyphs):
    lines = glyphs.line_samples(n=6, length=8)
    assert len(lines) == 6
    for line in lines:
        assert len(line.text) == 8 and len(line.boxes) == 8 and line.face in glyphs.test_faces
        assert set(line.text) <= set(glyphs.charset)


@needs_cjk
@pytest.mark.slow
def test_all_3062_classes_render_with_training_and_held_out_faces():
    data = GlyphsDataModule(num_chinese=3000)
    data.setup()
    assert data.num_classes == 3062 and len(data.class_frequency_ranks) == 3062
    for split in (data.train_set, data.test_set):
        assert sorted(set(split.pairs[:, 0].tolist())) == list(range(3062))
    per_pair = len(data.train_set) // len(data.train_set.pairs)
    seen = set()
    for pair, (k, _) in enumerate(data.train_set.pairs):
        if k not in seen:
            seen.add(int(k))
            x, _ = data.train_set[pair * per_pair]
            assert 0.02 < float(x.mean()) < 0.9, data.charset[k]


def test_no_training_fonts_says_how_to_train_on_the_fonts_there_are(tmp_path):
    charset = tmp_path / "c.txt"
    charset.write_text("A\nB\n", encoding="utf-8")
    data = GlyphsDataModule(charset=str(charset), num_chinese=None, font_dirs=(str(DEJAVU),), families=("Nope",))
    with pytest.raises(DataError, match="no training font faces .* --data.init_args.families null"):
        data.setup()
