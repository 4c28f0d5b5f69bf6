"""Cut the shipped Chinese font (README.md beside this file) from Noto Sans CJK SC.

Run from the repository root: ``python web/static/fonts/subset_font.py SOURCE.otf``.
"""

from __future__ import annotations

import pathlib
import sys

from fontTools import subset
from fontTools.ttLib import TTFont

OUT = pathlib.Path(__file__).with_name("NotoSansCJKsc-subset.otf")


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
    font.save(str(OUT))
    print(f"{len(keep)} characters → {OUT} ({OUT.stat().st_size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main(sys.argv[1])
