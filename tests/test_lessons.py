"""The lessons' shape, read from the notebooks' sources (`make test` also executes each one with nbmake).

Every lesson: a title, the "paper ↔ this toolkit" line under it (00 holds the whole card), exercises that a
student can check (an answer cell set to None, a `check(...)` of it, a collapsed answer), at least one
"predict, then run" exercise, a References cell with links last, no history or CI remarks in the prose, and a
size a student reads in one sitting.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))
MAX_CHARS = 15_000   # prose + code, outputs excluded
ANSWER = re.compile(r"^(answer|prediction)_(\d+)\s*=\s*None\b", re.M)
HISTORY = re.compile(r"#\s*CI\b|\bCI:|\bissue\s*#?\d|\bBENCHMARKS\.md\s*§|\btracker\b", re.I)


def cells(path: Path) -> list[tuple[str, str]]:
    nb = json.loads(path.read_text(encoding="utf-8"))
    return [(c["cell_type"], "".join(c["source"])) for c in nb["cells"]]


def test_every_lesson_is_numbered_and_the_set_is_complete():
    stems = [p.stem for p in NOTEBOOKS]
    assert [s[:2] for s in stems] == [f"{i:02d}" for i in range(len(stems))], stems
    assert len(stems) >= 11


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_a_lesson_has_its_title_card_line_size_and_references(path):
    cs = cells(path)
    kind, first = cs[0]
    assert kind == "markdown" and first.startswith(f"# {path.stem[:2]} · "), first[:80]
    card = cs[1][1] if path.stem.startswith("00") else first
    assert "toolkit" in card.lower() and "paper" in card.lower(), f"{path.stem}: no paper ↔ toolkit line"
    size = sum(len(s) for _, s in cs)
    assert size <= MAX_CHARS, f"{path.stem}: {size} characters of source (≤ {MAX_CHARS})"
    kind, last = cs[-1]
    assert kind == "markdown" and last.startswith("## References"), f"{path.stem}: References is not last"
    assert len(re.findall(r"\]\((https?://[^)\s]+)\)", last)) >= 2, f"{path.stem}: references need links"
    for _, s in cs:
        m = HISTORY.search(s)
        assert m is None, f"{path.stem}: history or CI remark in the lesson: {s[max(0, m.start() - 40):m.end() + 40]!r}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_exercise_is_checked_and_answered_out_of_sight(path):
    cs = cells(path)
    code = "\n".join(s for k, s in cs if k == "code")
    found = ANSWER.findall(code)
    assert found, f"{path.stem}: no exercises"
    for name, n in found:
        var = f"{name}_{n}"
        assert re.search(rf"check\([^\n]*\b{var}\b", code), f"{path.stem}: {var} is never checked"
        assert re.search(rf"<summary>\s*Answer {n}\s*</summary>", "\n".join(s for k, s in cs if k == "markdown")), \
            f"{path.stem}: exercise {n} has no collapsed answer"
    predicts = [s for k, s in cs if k == "markdown" and re.search(r"\*\*\d+\. Predict, then run\.\*\*", s)]
    assert predicts, f"{path.stem}: no 'predict, then run' exercise"
    assert re.search(r"^prediction_\d+\s*=\s*None", code, re.M), f"{path.stem}: the prediction is not asked for"
