"""ocr_cnn's report sections on an untrained network: the held-out tables and the four line readers."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from lightning.pytorch import Trainer

from evaluation.context import EvalContext
from evaluation.models import ocr_cnn as hook
from evaluation.ocr_lines import tesseract_available
from evaluation.report import Report
from lit_modules.ocr_cnn import OCRCNN
from tests.test_glyphs import needs_cjk


@pytest.fixture(scope="module")
def glyphs():
    from datamodules.glyphs import GlyphsDataModule

    data = GlyphsDataModule(num_chinese=500)
    data.setup()
    return data


@needs_cjk
def test_line_reading_compares_spec_cuts_regrouped_cuts_the_language_model_and_tesseract(
    glyphs, monkeypatch, tmp_path
):
    monkeypatch.setattr(hook, "LINES", 6)
    torch.manual_seed(0)
    model = OCRCNN(num_classes=glyphs.num_classes, class_names=list(glyphs.charset), channels=(8, 8), hidden=32)
    trainer = Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False)
    ctx = EvalContext("ocr_cnn", model, glyphs, trainer, {}, tmp_path, Path("none.ckpt"))
    report = Report("ocr_cnn", tmp_path / "report")
    hook.add_line_reading(report, ctx)
    table = next(t for t in report.tables if t.title.startswith("Character error rate"))
    names = [row[0] for row in table.rows]
    assert names[:3] == ["SPEC cuts + CNN (top-1)", "cuts regrouped by the CNN + CNN (top-1)",
                         "regrouped cuts + CNN + bigram model (Viterbi, top-3)"]  # fmt: skip
    assert ctx.results["ocr/cer_cnn"] > 0.5  # an untrained network reads nearly nothing right
    if tesseract_available() is None:
        assert names[3].startswith("Tesseract") and ctx.results["ocr/cer_tesseract"] < 0.2
    else:
        assert len(names) == 3 and "Tesseract not run" in table.note
    wrong = next(t for t in report.tables if t.title == "Lines some reader got wrong")
    assert 1 <= len(wrong.rows) <= hook.EXAMPLE_LINES
    assert all(len(row) == 1 + len(names) for row in wrong.rows)
