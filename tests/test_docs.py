"""`make docs`: the lessons executed and rendered to a browsable HTML site (docs/build_site.py)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def site():
    from conftest import load_script

    return load_script("docs/build_site.py")


def test_a_lesson_becomes_a_page_with_its_outputs_and_an_index(site, tmp_path):
    lesson = ROOT / "notebooks" / "01_dual_temporal_sampler.ipynb"
    pages = site.build([lesson], tmp_path)
    assert [p["lesson"] for p in pages] == [lesson.stem]
    page = (tmp_path / f"{lesson.stem}.html").read_text(encoding="utf-8")
    assert pages[0]["title"].startswith("01 ·") and html_title(page) == pages[0]["title"]
    assert "plotly-graph-div" in page and "Plotly.newPlot" in page        # executed figures, drawn
    assert not re.search(r"<script[^>]*src=[\"']https?://cdn\.plot\.ly", page)     # plotly.js inline: works
    assert len(page) > 3_000_000                                         # offline (the bundle is ~3.5 MB)
    assert "exercise 1" in page                                           # the check() outputs are there
    index = (tmp_path / "index.html").read_text(encoding="utf-8")
    assert f'href="{lesson.stem}.html"' in index


def html_title(page: str) -> str:
    import html

    return html.unescape(re.search(r"<title>(.*?)</title>", page, re.S).group(1).strip())


def test_a_missing_lesson_is_refused(site, tmp_path, capsys):
    assert site.main([str(tmp_path / "nope.ipynb"), "--out", str(tmp_path / "site")]) == 2
    assert "no such notebook" in capsys.readouterr().err and not (tmp_path / "site").exists()


def test_make_docs_builds_the_site():
    make = (ROOT / "Makefile").read_text()
    assert re.search(r"^docs: \$\(STAMP\)\n\t\$\(PYTHON\) docs/build_site.py --out docs/site$", make, re.M)
