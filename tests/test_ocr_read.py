"""``python -m ocr read``: a trained checkpoint reads a rendered line; bad input gets one clear line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import lightning
import numpy as np
import pytest
import torch
from PIL import Image

from lit_modules.ocr_cnn import OCRCNN
from ocr.read import MODEL_CLASS_PATH, Reader, glyph_batch, main
from ocr.segment import cut_line
from tests.test_ocr_pipeline import CJK_FONT, draw_line, needs_cjk_font, same_boxes

ROOT = Path(__file__).resolve().parents[1]
TEXT = "电视机上"


def save_checkpoint(model: torch.nn.Module, path: Path, class_path: str = MODEL_CLASS_PATH) -> Path:
    """A checkpoint as ``train.py`` writes one: weights, hyperparameters with LightningCLI's ``_class_path``."""
    hparams = {**dict(model.hparams), "_class_path": class_path}
    torch.save(
        {
            "state_dict": model.state_dict(),
            "hyper_parameters": hparams,
            "pytorch-lightning_version": lightning.__version__,
        },
        path,
    )
    return path


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A small ocr_cnn that knows the four characters of TEXT, trained on lines cut as the reader cuts them."""
    if not CJK_FONT.is_file():
        pytest.skip("fonts-wqy-microhei is not installed")
    torch.manual_seed(0)
    glyphs = []
    for size in (30, 36, 40, 44, 48):
        for spacing in (2, 6):
            gray, _ = draw_line(TEXT, size=size, spacing=spacing)
            glyphs.append(glyph_batch(gray, cut_line(gray)))
    x = torch.from_numpy(np.concatenate(glyphs))
    y = torch.arange(len(TEXT)).repeat(len(glyphs))
    return save_checkpoint(train_tiny(x, y, TEXT, steps=100), tmp_path_factory.mktemp("ckpt") / "ocr.ckpt")


def train_tiny(x: torch.Tensor, y: torch.Tensor, chars: str, steps: int) -> OCRCNN:
    """A small ocr_cnn (8/8 channels, 32 hidden, no dropout) fitted by full-batch Adam, in eval mode."""
    model = OCRCNN(num_classes=len(chars), class_names=list(chars), channels=(8, 8), hidden=32, dropout=0.0)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny network: two threads only fight over a busy CPU
    try:
        for _ in range(steps):
            optimizer.zero_grad()
            loss, _, _ = model.loss(x, y)
            loss.backward()
            optimizer.step()
    finally:
        torch.set_num_threads(threads)
    return model.eval()


def write_line(path: Path, text: str = TEXT, size: int = 42, invert: bool = False) -> Path:
    gray, _ = draw_line(text, size=size, spacing=3)
    Image.fromarray(255 - gray if invert else gray).save(path)
    return path


@needs_cjk_font
def test_reader_reads_a_line_in_process(tiny_checkpoint, tmp_path):
    reader = Reader.from_checkpoint(tiny_checkpoint)
    assert reader.charset == list(TEXT)
    gray, _ = draw_line(TEXT, size=42, spacing=3)
    assert reader.read_gray(gray) == TEXT
    assert reader.read_gray(255 - gray) == TEXT  # light text on dark
    candidates = reader.candidates(glyph_batch(gray, cut_line(gray)))
    assert [len(c) for c in candidates] == [3] * len(TEXT)
    assert all(abs(sum(p for _, p in c) - 1) < 1 and c[0][1] >= c[1][1] >= c[2][1] for c in candidates)


def test_main_prints_one_line_per_image(tiny_checkpoint, tmp_path, capsys):
    line = write_line(tmp_path / "line.png")
    assert main([str(line), "--ckpt", str(tiny_checkpoint), "--no-lm"]) == 0
    assert capsys.readouterr().out == TEXT + "\n"


@pytest.mark.slow
@needs_cjk_font
def test_python_m_ocr_read_prints_the_text(tiny_checkpoint, tmp_path):
    line = write_line(tmp_path / "line.png")
    dark = write_line(tmp_path / "dark.jpg", invert=True)
    done = subprocess.run(
        [sys.executable, "-m", "ocr", "read", str(line), str(dark), "--ckpt", str(tiny_checkpoint), "--no-lm"],
        capture_output=True, text=True, cwd=ROOT, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [f"{line}\t{TEXT}", f"{dark}\t{TEXT}"]


def one_error_line(capsys, argv: list[str]) -> str:
    assert main(argv) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), captured.err
    assert captured.out == ""
    return lines[0]


@needs_cjk_font
def test_bad_images_get_one_clear_line(tiny_checkpoint, tmp_path, capsys):
    ckpt = ["--ckpt", str(tiny_checkpoint), "--no-lm"]
    text_file = tmp_path / "notes.png"
    text_file.write_text("not a picture")
    assert "not an image" in one_error_line(capsys, [str(text_file), *ckpt])
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    assert "not an image" in one_error_line(capsys, [str(empty), *ckpt])
    blank = tmp_path / "blank.png"
    Image.new("L", (200, 40), 255).save(blank)
    assert "no text found" in one_error_line(capsys, [str(blank), *ckpt])
    assert "no such image" in one_error_line(capsys, [str(tmp_path / "missing.png"), *ckpt])


def test_bad_checkpoints_get_one_clear_line(tmp_path, capsys):
    line = tmp_path / "line.png"
    Image.new("L", (60, 20), 255).save(line)
    assert "no such checkpoint" in one_error_line(capsys, [str(line), "--ckpt", str(tmp_path / "nope.ckpt")])
    from lit_modules.cnn_baseline import CNNBaseline

    other = save_checkpoint(CNNBaseline(), tmp_path / "cnn.ckpt", "lit_modules.cnn_baseline.CNNBaseline")
    message = one_error_line(capsys, [str(line), "--ckpt", str(other)])
    assert "cnn_baseline" in message and "ocr_cnn" in message
    junk = tmp_path / "junk.ckpt"
    junk.write_text("hello")
    assert str(junk) in one_error_line(capsys, [str(line), "--ckpt", str(junk)])


DIGITS = "年1973"


def proportional_line(text: str, height: int, seed: int) -> tuple[np.ndarray, list]:
    """A line set as the data module sets them: each character's ink a few pixels after the last's."""
    from ocr.fonts import FontFace
    from ocr.render import render_line

    return render_line(text, FontFace(str(CJK_FONT), 0, "WenQuanYi Micro Hei", "Regular", None), height, 3, seed)


@pytest.fixture(scope="module")
def digits_checkpoint(tmp_path_factory) -> Path:
    """A small ocr_cnn that knows 年 and three digits, trained on each character's true box."""
    if not CJK_FONT.is_file():
        pytest.skip("fonts-wqy-microhei is not installed")
    torch.manual_seed(0)
    index = {c: i for i, c in enumerate(DIGITS)}
    glyphs, labels = [], []
    for seed, height in enumerate((36, 42, 48, 56)):
        for text in ("1973年", "年3197", "71年39"):
            gray, boxes = proportional_line(text, height, seed)
            glyphs.append(glyph_batch(gray, boxes))
            labels += [index[c] for c in text]
    x, y = torch.from_numpy(np.concatenate(glyphs)), torch.tensor(labels)
    return save_checkpoint(train_tiny(x, y, DIGITS, steps=150), tmp_path_factory.mktemp("digits") / "digits.ckpt")


def test_reader_regroups_digits_that_spec_cutting_glues_in_pairs(digits_checkpoint):
    gray, boxes = proportional_line("1997年", 48, seed=7)
    assert len(cut_line(gray)) < len(boxes)  # SPEC's rule: digits are narrower than a line height
    reader = Reader.from_checkpoint(digits_checkpoint)
    assert same_boxes(reader.cut(gray), boxes)
    assert reader.read_gray(gray) == "1997年"
    spec = Reader.from_checkpoint(digits_checkpoint, refine_cuts=False)
    assert spec.cut(gray) == cut_line(gray) and len(spec.read_gray(gray)) < 5


def test_spec_cuts_flag_reads_the_rules_boxes(digits_checkpoint, tmp_path, capsys):
    gray, _ = proportional_line("1997年", 48, seed=7)
    path = tmp_path / "digits.png"
    Image.fromarray(gray).save(path)
    assert main([str(path), "--ckpt", str(digits_checkpoint), "--no-lm"]) == 0
    assert capsys.readouterr().out == "1997年\n"
    assert main([str(path), "--ckpt", str(digits_checkpoint), "--no-lm", "--spec-cuts"]) == 0
    assert len(capsys.readouterr().out.strip()) < 5
