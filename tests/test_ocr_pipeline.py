"""The reading pipeline: line cutting, the bigram model, Viterbi decoding (SPEC §1)."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from ocr.bigram import BigramLM
from ocr.segment import best_partition, cut_line, ink_mask, ink_runs, keep_gaps
from ocr.viterbi import path_score, viterbi

CJK_FONT = Path("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc")
needs_cjk_font = pytest.mark.skipif(not CJK_FONT.is_file(), reason="fonts-wqy-microhei is not installed")


def same_boxes(found: list, expected: list, tolerance: int = 1) -> bool:
    """One box per character, each edge within ``tolerance`` px (anti-aliased edge pixels sit near
    any threshold: the cutter binarises by Otsu, the reference at grey level 128)."""
    return len(found) == len(expected) and all(
        abs(a - c) <= tolerance and abs(b - d) <= tolerance for (a, b), (c, d) in zip(found, expected)
    )


def draw_line(text: str, size: int = 40, spacing: int = 4, font: Path = CJK_FONT) -> tuple[np.ndarray, list]:
    """Dark text on white, one character every ``size + spacing`` pixels, and each character's
    ink columns measured on its own image (the boxes a perfect cutter returns)."""
    face = ImageFont.truetype(str(font), size, index=0)
    width, height = 2 * size + len(text) * (size + spacing), size + 20
    line = Image.new("L", (width, height), 255)
    boxes = []
    for i, char in enumerate(text):
        x = size + i * (size + spacing)
        alone = Image.new("L", (width, height), 255)
        ImageDraw.Draw(alone).text((x, 8), char, font=face, fill=0)
        ImageDraw.Draw(line).text((x, 8), char, font=face, fill=0)
        cols = np.flatnonzero((np.asarray(alone) < 128).any(axis=0))
        boxes.append((int(cols[0]), int(cols[-1]) + 1))
    return np.asarray(line), boxes


@needs_cjk_font
@pytest.mark.parametrize("spacing", [0, 4, 10])
def test_cut_line_recovers_the_character_boxes(spacing):
    # 川 and 小 have blank columns inside them, 仆 and 儿 split into two parts: they must stay whole.
    gray, boxes = draw_line("电视川仆机上小儿八们的是了不", spacing=spacing)
    assert same_boxes(cut_line(gray), boxes)


@needs_cjk_font
def test_cut_line_reads_light_text_on_dark_and_jpeg_like_noise():
    gray, boxes = draw_line("中国人民川流不息")
    assert same_boxes(cut_line(255 - gray), boxes)
    noisy = np.clip(gray.astype(int) + np.random.default_rng(0).integers(-20, 21, gray.shape), 0, 255)
    assert same_boxes(cut_line(noisy.astype(np.uint8)), boxes)


def test_cut_line_splits_touching_characters_uniformly():
    gray = np.full((30, 100), 255, np.uint8)
    gray[5:25, 10:70] = 0  # one ink block three line heights (20 px) wide: three touching characters
    assert cut_line(gray) == [(10, 30), (30, 50), (50, 70)]


def test_cut_line_of_a_blank_or_flat_image_is_empty():
    assert cut_line(np.full((20, 50), 255, np.uint8)) == []
    assert cut_line(np.full((20, 50), 30, np.uint8)) == []
    assert not ink_mask(np.zeros((0, 0), np.uint8)).any()


def test_keep_gaps_drops_gaps_inside_a_character():
    # Height 10; ink 0-3, gap 3-4, ink 4-9 (one character with an inner gap), gap 9-12, ink 12-21.
    gaps = [(0, 0), (3, 4), (9, 12), (21, 21)]
    # Gap (3,4): ink from 0 to the next gap's start 9 = 0.9 heights -> dropped.
    # Gap (9,12): ink from 0 to 21 = 2.1 heights -> kept.
    assert keep_gaps(gaps, 10.0) == [(0, 0), (9, 12), (21, 21)]


def _toy_lm() -> BigramLM:
    # 电 is followed 60 times in all (50 + 10): its unigram count says the same.
    unigrams = {"电": 60, "视": 60, "柳": 5, "树": 40, "机": 50}
    bigrams = {("电", "视"): 50, ("柳", "树"): 4, ("视", "机"): 30, ("电", "机"): 10}
    return BigramLM(unigrams, bigrams, alpha=1.0)


def test_bigram_log_prob_is_add_alpha_by_hand():
    lm = _toy_lm()
    v = 5
    assert lm.log_prob("电", "视") == pytest.approx(math.log((50 + 1) / (60 + v)))
    assert lm.log_prob("视", "柳") == pytest.approx(math.log(1 / (60 + v)))
    assert lm.log_prob("?", "电") == pytest.approx(math.log(1 / v))  # unseen context: uniform
    # With counts that agree (#a = sum of #(a, b)), the successors' probabilities sum to 1.
    total = sum(math.exp(lm.log_prob("电", b)) for b in lm.unigrams)
    assert total == pytest.approx(1.0)


def test_viterbi_returns_the_best_path_of_a_hand_built_lattice():
    lm = _toy_lm()
    lattice = [
        [("电", 0.6), ("柳", 0.3), ("树", 0.1)],
        [("机", 0.5), ("视", 0.4), ("柳", 0.1)],
        [("树", 0.4), ("机", 0.35), ("电", 0.25)],
    ]
    best = max(itertools.product(*[[c for c, _ in p] for p in lattice]), key=lambda s: path_score(list(s), lattice, lm))
    assert viterbi(lattice, lm) == "".join(best)
    # A brute-force check of path_score itself on the winning path.
    by_hand = math.log(0.6) + math.log(0.4) + math.log(0.35) + lm.log_prob("电", "视") + lm.log_prob("视", "机")
    assert "".join(best) == "电视机" and path_score(list("电视机"), lattice, lm) == pytest.approx(by_hand)


def test_viterbi_repairs_an_error_the_bigram_model_overrules():
    lm = _toy_lm()
    lattice = [[("电", 0.9), ("柳", 0.1)], [("柳", 0.5), ("视", 0.3), ("树", 0.2)]]
    assert viterbi(lattice, None) == "电柳"  # the CNN alone misreads 视
    assert viterbi(lattice, lm) == "电视"


def test_viterbi_edge_cases():
    assert viterbi([], _toy_lm()) == ""
    assert viterbi([[("电", 1.0)]], _toy_lm()) == "电"
    assert viterbi([[("电", 0.0), ("树", 0.0)]], _toy_lm()) in ("电", "树")  # zero probabilities stay finite
    with pytest.raises(ValueError, match="at least one candidate"):
        viterbi([[("电", 1.0)], []], _toy_lm())


def test_cut_line_recovers_the_boxes_of_lines_the_data_module_renders():
    from ocr.fonts import discover_fonts
    from ocr.render import render_line

    faces = [
        f for f in discover_fonts() if f.family.startswith(("AR PL UKai", "Noto Serif CJK SC", "WenQuanYi Zen Hei"))
    ]
    if not faces:
        pytest.skip("no CJK fonts installed")
    for i, face in enumerate(faces[:3]):
        for seed, text in enumerate(["我们的人民政府", "川流不息的小河儿", "中国经济发展"]):
            gray, boxes = render_line(text, face, seed=seed + 10 * i)
            assert same_boxes(cut_line(gray), boxes), (face, text)


def _table(scores: dict[tuple[int, int], float]) -> dict[tuple[int, int], float]:
    return {span: math.log(p) for span, p in scores.items()}


def test_best_partition_keeps_a_character_whole_when_its_strokes_read_poorly():
    # 川: three strokes, each read as "l" with p = 0.6; the whole read as 川 with p = 0.9.
    scores = {(i, j): 0.05 for i in range(3) for j in range(i + 1, 4)}
    scores.update({(0, 1): 0.6, (1, 2): 0.6, (2, 3): 0.6, (0, 3): 0.9})
    assert best_partition(_table(scores), 3) == [(0, 3)]


def test_best_partition_splits_glued_digits_read_clearly_apart():
    # "19" glued by SPEC's rule: read whole as some character with p = 0.5, apart as "1" and "9" with 0.9 each.
    assert best_partition(_table({(0, 1): 0.9, (1, 2): 0.9, (0, 2): 0.5}), 2) == [(0, 1), (1, 2)]
    # four runs, the best grouping mixes: (0, 2) whole, then 2 and 3 apart
    scores = {(i, j): 0.01 for i in range(4) for j in range(i + 1, 5)}
    scores.update({(0, 2): 0.95, (2, 3): 0.9, (3, 4): 0.9, (0, 1): 0.5, (1, 2): 0.5, (2, 4): 0.3})
    best = best_partition(_table(scores), 4)
    assert best == [(0, 2), (2, 3), (3, 4)]
    # the dynamic programme agrees with trying every grouping
    groupings = []
    for cuts in itertools.product([False, True], repeat=3):
        bounds = [0, *[k + 1 for k, c in enumerate(cuts) if c], 4]
        groupings.append(list(zip(bounds, bounds[1:])))
    brute = max(groupings, key=lambda g: sum(_table(scores)[s] for s in g))
    assert best == brute


def test_best_partition_edge_cases():
    assert best_partition({(0, 1): -0.1}, 1) == [(0, 1)]
    assert best_partition({(0, 2): -3.0}, 2) == [(0, 2)]  # the only scored grouping
    with pytest.raises(ValueError, match="at least one"):
        best_partition({}, 0)
    with pytest.raises(ValueError, match="no grouping"):
        best_partition({(0, 1): -1.0}, 2)


@needs_cjk_font
def test_ink_runs_are_the_inked_column_runs_of_a_box():
    gray, _ = draw_line("川电")
    mask = ink_mask(gray)
    boxes = cut_line(gray)
    assert len(ink_runs(mask, boxes[0])) >= 3  # 川's three strokes
    assert len(ink_runs(mask, boxes[1])) == 1
    runs = ink_runs(mask, boxes[0])
    assert runs[0][0] == boxes[0][0] and runs[-1][1] == boxes[0][1]
    assert all(mask[:, a:b].any(axis=0).all() for a, b in runs)
