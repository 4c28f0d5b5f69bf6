"""Cut the shipped Chinese font (README.md beside this file) from Noto Sans CJK SC.

Run from the repository root: ``python web/static/fonts/subset_font.py SOURCE.otf``.

The subset's cubic CFF outlines are converted to quadratic TrueType ones
(fontTools' cu2qu, 1 font unit of tolerance): ReportLab embeds only TrueType
fonts, and an embedded font is what makes a brief's PDF show its Chinese on
a machine without Chinese fonts. Browsers and matplotlib read it as well.
"""

from __future__ import annotations

import pathlib
import sys

from fontTools import subset
from fontTools.pens.cu2quPen import Cu2QuPen
from fontTools.pens.ttGlyphPen import TTGlyphPen
from fontTools.ttLib import TTFont, newTable

OUT = pathlib.Path(__file__).with_name("NotoSansCJKsc-subset.ttf")


def wanted() -> set[str]:
    chars: set[str] = set()
    for b1 in range(0xA1, 0xF8):  # every two-byte GB 2312 code
        for b2 in range(0xA1, 0xFF):
            try:
                chars.add(bytes([b1, b2]).decode("gb2312"))
            except UnicodeDecodeError:
                pass
    chars |= {chr(c) for c in range(0x20, 0x7F)}
    chars |= {chr(c) for c in range(0x3000, 0x3040)} | {chr(c) for c in range(0xFF00, 0xFFF0)}
    chars |= set("—–…·‰℃№○●■□▲△◆◇★☆→←↑↓％")
    root = pathlib.Path(".")
    for p in [*root.glob("config/**/*.yaml"), *root.glob("classifiers/data/*.tsv"), *root.glob("web/templates/**/*.html"), *root.glob("*/**/*.py")]:
        if ".venv" in p.parts:
            continue
        try:
            chars |= set(p.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError):
            pass
    return chars


def to_truetype(font: TTFont) -> None:
    """CFF (cubic) outlines → glyf (quadratic), in place."""
    order = font.getGlyphOrder()
    glyphs = font.getGlyphSet()
    glyf = newTable("glyf")
    glyf.glyphOrder, glyf.glyphs = order, {}
    for name in order:
        pen = TTGlyphPen(glyphs)
        glyphs[name].draw(Cu2QuPen(pen, 1.0, reverse_direction=True))
        glyf[name] = pen.glyph()
    font["glyf"], font["loca"] = glyf, newTable("loca")
    maxp = font["maxp"]
    maxp.tableVersion = 0x00010000
    for attr in ("maxPoints", "maxContours", "maxCompositePoints", "maxCompositeContours", "maxTwilightPoints",
                 "maxStorage", "maxFunctionDefs", "maxInstructionDefs", "maxStackElements",
                 "maxSizeOfInstructions", "maxComponentElements", "maxComponentDepth"):
        setattr(maxp, attr, 0)
    maxp.maxZones = 1
    for tag in ("CFF ", "VORG"):
        if tag in font:
            del font[tag]
    font["head"].glyphDataFormat = 0
    font["post"].formatType = 3.0  # no glyph names
    font.sfntVersion = "\x00\x01\x00\x00"


def main(src: str) -> None:
    font = TTFont(src)
    cmap = font.getBestCmap()
    keep = sorted(ord(c) for c in wanted() if ord(c) in cmap)
    opts = subset.Options()
    opts.name_IDs, opts.name_languages, opts.layout_features = ["*"], ["*"], ["*"]
    opts.notdef_outline, opts.hinting = True, False
    s = subset.Subsetter(opts)
    s.populate(unicodes=keep)
    s.subset(font)
    to_truetype(font)
    font.save(str(OUT))
    print(f"{len(keep)} characters → {OUT} ({OUT.stat().st_size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main(sys.argv[1])
