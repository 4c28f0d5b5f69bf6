"""The web console's layering: responder/ never imports web/, and no Python file of
either builds HTML in strings (pages come from web/templates, autoescaped)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HTML_TAG = re.compile(r"<(div|table|tr|td|th|span|a|li|ul|p|form|button|section|script|html|input|select)[\s>]")


def _py_files(package: str) -> list[Path]:
    files = sorted((ROOT / package).rglob("*.py"))
    assert files, f"no Python files under {package}/"
    return files


def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.add(node.module)
    return out


def test_responder_never_imports_web() -> None:
    offenders = {
        str(p.relative_to(ROOT)): sorted(m for m in _imported_modules(p) if m == "web" or m.startswith("web."))
        for p in _py_files("responder")
    }
    offenders = {k: v for k, v in offenders.items() if v}
    assert not offenders, f"responder/ must not import web/: {offenders}"


def test_the_import_check_sees_an_import(tmp_path) -> None:
    f = tmp_path / "x.py"
    f.write_text("def f():\n    from web.app import create_app\n    import web\n", encoding="utf-8")
    assert {"web.app", "web"} <= _imported_modules(f)


def _string_literals(path: Path) -> list[tuple[int, str]]:
    """Every string constant but docstrings (which may name a tag, as in "an ``<a>``")."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    docs = {id(n.value) for n in ast.walk(tree) if isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant)}
    return [(n.lineno, n.value) for n in ast.walk(tree)
            if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docs]


def test_no_html_built_in_python() -> None:
    found = [
        f"{p.relative_to(ROOT)}:{line}: {m.group(0)!r}"
        for pkg in ("web", "responder")
        for p in _py_files(pkg)
        for line, value in _string_literals(p)
        for m in [HTML_TAG.search(value)]
        if m
    ]
    assert not found, "HTML belongs in web/templates:\n" + "\n".join(found)


def test_pages_reference_only_local_assets() -> None:
    templates = sorted((ROOT / "web" / "templates").glob("*.html"))
    assert templates
    for t in templates:
        text = t.read_text(encoding="utf-8")
        assert not re.search(r'(src|href)="(https?:)?//', text), t.name
        # No inline script and no inline event handlers (a CSP will forbid them).
        assert not re.search(r"<script(?![^>]*\bsrc=)", text), t.name
        assert not re.search(r"\son[a-z]+=", text), t.name
