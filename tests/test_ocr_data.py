"""OCR language data (charset, bigrams) and fonts (discovery, coverage, regions)."""

from __future__ import annotations

import string
from pathlib import Path

import pytest

from ocr import charset as cs
from ocr.fonts import (
    FontCoverageError,
    FontFace,
    covers,
    discover_fonts,
    font_dirs,
    read_faces,
    training_faces,
)

NOTO_SANS = Path("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc")


# --------------------------------------------------------------------------- language data


def test_default_charset_is_ranked_simplified_chinese_then_latin():
    chars = cs.load_charset()
    assert len(chars) == 3062 and len(set(chars)) == 3062
    assert chars[:5] == ["的", "一", "是", "不", "了"] or chars[0] == "的"
    assert "".join(chars[3000:]) == string.ascii_uppercase + string.ascii_lowercase + string.digits
    assert all(cs.is_simplified(c) for c in chars[:3000])
    # Jun Da's list holds traditional and variant forms; none of them may enter the charset
    assert not {"硃", "祐", "籓", "們", "這"} & set(chars)
    small = cs.load_charset(size=500)
    assert small == chars[:500] + chars[3000:]


def test_frequency_ranks_follow_counts_and_put_unknown_characters_last():
    freq = {"a": 5.0, "b": 50.0, "c": 5.0}
    assert cs.frequency_ranks(["a", "b", "c", "z"], freq) == [1, 0, 2, 3]
    chars = cs.load_charset(size=500)
    ranks = cs.frequency_ranks(chars)
    assert sorted(ranks) == list(range(len(chars)))
    assert ranks[0] == 0  # 的 is the most frequent class
    # digits are common in news text: "1" outranks the 500th Chinese character; "Q" does not
    assert ranks[chars.index("1")] < ranks[499] < ranks[chars.index("Q")]


def test_people_daily_tags_and_full_width_forms_are_removed():
    tagged = "[中央/nt  人民/n  广播/vn  电台/n]nt  １２月/t  ３１日/t  ，/w\n迈向/v  新/a"
    assert cs.normalize_text(tagged, tagged=True) == "中央人民广播电台12月31日,\n迈向新"
    assert cs.normalize_text("ＡＢ　c", tagged=False) == "AB c"


def test_bigrams_count_running_text_and_skip_the_held_out_lines(tmp_path):
    lines = [f"held{i}" if i % cs.HELD_OUT_EVERY == 0 else "电视机 电视" for i in range(2 * cs.HELD_OUT_EVERY)]
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = cs.build_language_data(tmp_path / "data", n_chinese=100, corpus=corpus)
    unigram, bigram = cs.load_bigram_counts(out / "bigrams.tsv")
    n_counted = 2 * (cs.HELD_OUT_EVERY - 1)
    # "电视机 电视" → 电视, 视机, 机电 (the space is not text), 电视: counted by hand
    assert bigram == {("电", "视"): 2 * n_counted, ("视", "机"): n_counted, ("机", "电"): n_counted}
    assert unigram == {"电": 2 * n_counted, "视": n_counted, "机": n_counted}  # #a = Σ_b #(a, b)
    assert not any("h" in pair for pair in bigram)  # held-out lines never counted
    assert cs.corpus_lines(corpus, held_out=True) == ["held0", "held20"]
    charset = cs.load_charset(out / "charset.txt")
    assert len(charset) == 162
    first = (out / "bigrams.tsv").read_bytes(), (out / "charset.txt").read_bytes()
    cs.build_language_data(tmp_path / "again", n_chinese=100, corpus=corpus)
    assert first == ((tmp_path / "again/bigrams.tsv").read_bytes(), (tmp_path / "again/charset.txt").read_bytes())


@pytest.mark.parametrize(
    "content, message",
    [
        ("的\n一二\n", ":2: expected one character per line"),
        ("的\n一\n的\n", ":3: '的' repeats line 1"),
        ("\n", "no characters"),
    ],
)
def test_bad_charset_files_are_refused_with_the_line(tmp_path, content, message):
    path = tmp_path / "charset.txt"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(cs.LanguageDataError, match=message):
        cs.load_charset(path)


def test_build_data_command_and_its_errors(tmp_path, capsys):
    corpus = tmp_path / "c.txt"
    corpus.write_text("一二三\n" * 3, encoding="utf-8")
    assert cs.main(["--out", str(tmp_path / "d"), "--corpus", str(corpus), "--n-chinese", "10"]) == 0
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == sorted(cs.FILES)
    assert cs.main(["--out", str(tmp_path / "e"), "--corpus", str(tmp_path / "nope")]) == 2
    assert "neither a file, a folder nor one of people_daily" in capsys.readouterr().err


@pytest.mark.slow
def test_default_bigrams_come_from_people_daily():
    unigram, bigram = cs.load_bigram_counts()
    assert bigram[("电", "视")] > 10 and bigram[("中", "国")] > 1000
    assert bigram.get(("电", "柳"), 0) == 0  # SPEC's example of a repair the bigram model makes


# --------------------------------------------------------------------------- fonts


def _glyph(contours):
    from fontTools.pens.ttGlyphPen import TTGlyphPen

    pen = TTGlyphPen(None)
    for contour in contours:
        pen.moveTo(contour[0])
        for point in contour[1:]:
            pen.lineTo(point)
        pen.closePath()
    return pen.glyph()


BOX = [[(100, 0), (100, 700), (500, 700), (500, 0)], [(150, 50), (450, 50), (450, 650), (150, 650)]]
TRIANGLE = [[(50, 0), (300, 700), (550, 0)]]


def make_font(path: Path, family: str, cmap: dict[str, str]) -> Path:
    """A TrueType font whose .notdef is a hollow box; ``cmap`` maps characters to glyphs named
    ``box`` (a copy of .notdef: a box-drawing fallback), ``triangle`` (a real glyph) or ``empty``."""
    from fontTools.fontBuilder import FontBuilder

    shapes = {".notdef": BOX, "box": BOX, "triangle": TRIANGLE, "empty": []}
    builder = FontBuilder(1000, isTTF=True)
    builder.setupGlyphOrder(list(shapes))
    builder.setupCharacterMap({ord(c): g for c, g in cmap.items()})
    builder.setupGlyf({name: _glyph(contours) for name, contours in shapes.items()})
    builder.setupHorizontalMetrics({name: (600, 50) for name in shapes})
    builder.setupHorizontalHeader(ascent=800, descent=-200)
    builder.setupNameTable({"familyName": family, "styleName": "Regular"})
    builder.setupOS2(sTypoAscender=800, sTypoDescender=-200, usWinAscent=800, usWinDescent=200)
    builder.setupPost()
    builder.save(str(path))
    return path


def test_coverage_catches_missing_glyphs_and_box_drawing_fallbacks(tmp_path):
    path = make_font(tmp_path / "test.ttf", "Box Test", {"A": "box", "B": "triangle", "C": "empty", "E": ".notdef"})
    face = read_faces(path)[0]
    assert face == FontFace(str(path), 0, "Box Test", "Regular", None)
    # A draws the .notdef box under another glyph name, C draws nothing, D is not mapped, E maps to .notdef
    assert covers(face, "ABCDE") == ["A", "C", "D", "E"]
    assert covers(face, "B") == []


def test_discovery_addresses_every_face_of_a_collection(tmp_path):
    from fontTools.ttLib import TTCollection, TTFont

    fonts = tmp_path / "fonts"
    (fonts / "sub").mkdir(parents=True)
    one = make_font(tmp_path / "one.ttf", "Coll One SC", {"B": "triangle"})
    two = make_font(tmp_path / "two.ttf", "Coll Two JP", {"B": "triangle"})
    collection = TTCollection()
    collection.fonts = [TTFont(str(one)), TTFont(str(two))]
    collection.save(str(fonts / "sub" / "pair.ttc"))
    make_font(fonts / "single.ttf", "Single", {"B": "triangle"})
    (fonts / "broken.ttf").write_bytes(b"not a font")
    faces = discover_fonts([fonts])
    assert [(Path(f.path).name, f.index, f.family, f.region) for f in faces] == [
        ("single.ttf", 0, "Single", None),
        ("pair.ttc", 0, "Coll One SC", "SC"),
        ("pair.ttc", 1, "Coll Two JP", "JP"),
    ]
    kept = training_faces("B", faces=faces, families=None)
    assert [f.family for f in kept] == ["Single", "Coll One SC"]  # the JP face draws other forms
    assert len(training_faces("B", faces=faces, families=None, allow_regions=None)) == 3


def test_a_charset_the_fonts_cannot_draw_is_refused_listing_the_characters(tmp_path):
    font = make_font(tmp_path / "f.ttf", "Only B", {"B": "triangle", "A": "box"})
    with pytest.raises(FontCoverageError, match=r"draws these 2 characters: A X"):
        training_faces("ABX", faces=read_faces(font), families=None, min_coverage=0.0)


@pytest.mark.skipif(not NOTO_SANS.is_file(), reason="fonts-noto-cjk is not installed")
def test_noto_cjk_faces_of_other_regions_are_kept_out_of_simplified_labels():
    faces = read_faces(NOTO_SANS)
    assert {f.region for f in faces} == {"SC", "TC", "HK", "JP", "KR"}
    chars = cs.load_charset(size=50)
    kept = training_faces(chars, faces=faces)
    assert {f.family for f in kept} == {"Noto Sans CJK SC", "Noto Sans Mono CJK SC"}
    assert {f.region for f in training_faces(chars, faces=faces, allow_regions=None)} == {"SC", "TC", "HK", "JP", "KR"}


def test_fonts_in_the_users_font_folder_are_found(tmp_path, monkeypatch):
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    user_fonts = Path.home() / ".local" / "share" / "fonts"  # HOME is a fresh folder in every test
    user_fonts.mkdir(parents=True)
    make_font(user_fonts / "mine.ttf", "My Own Font", {"B": "triangle"})
    assert user_fonts in font_dirs()
    assert "My Own Font" in {f.family for f in discover_fonts()}
