"""Build a browsable HTML site of the executed lessons: `make docs` (-> docs/site/index.html).

    .venv/bin/python docs/build_site.py [--out docs/site] [notebooks/01_dual_temporal_sampler.ipynb ...]

Each lesson is executed from a clean kernel (in its own folder, as JupyterLab runs it) and exported with its
outputs; the plotly figures are written with plotly.js inline (the `notebook` renderer), so the pages work
offline. Widgets are drawn once, as the lessons draw each figure before its controls. `index.html` lists the
lessons with their titles. A lesson that fails to execute stops the build with its name and error.
"""

from __future__ import annotations

import argparse
import html
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LESSONS = ROOT / "notebooks"


def title_of(nb) -> str:
    """The lesson's first Markdown heading, without its '#'."""
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                if line.startswith("# "):
                    return line[2:].strip()
    return ""


def build(notebooks: list[Path], out: Path, timeout: int = 600) -> list[dict]:
    """Execute and export each notebook to out/<stem>.html; write out/index.html -> one record per lesson."""
    import nbformat
    from nbclient import NotebookClient
    from nbconvert import HTMLExporter

    out.mkdir(parents=True, exist_ok=True)
    os.environ["PLOTLY_RENDERER"] = "notebook"  # the kernels inherit it: figures carry plotly.js inline
    exporter = HTMLExporter(template_name="lab")
    pages = []
    for path in notebooks:
        nb = nbformat.read(path, as_version=4)
        t0 = time.perf_counter()
        try:
            NotebookClient(nb, timeout=timeout, kernel_name="python3",
                           resources={"metadata": {"path": str(path.parent)}}).execute()
        except Exception as e:  # noqa: BLE001 - the build names the lesson that failed
            raise SystemExit(f"{path.name}: did not execute: {type(e).__name__}: {e}") from e
        body, _ = exporter.from_notebook_node(nb, resources={"metadata": {"name": title_of(nb) or path.stem}})
        (out / f"{path.stem}.html").write_text(body, encoding="utf-8")
        pages.append({"lesson": path.stem, "title": title_of(nb), "seconds": round(time.perf_counter() - t0, 1)})
        print(f"{path.name}: {pages[-1]['seconds']} s", flush=True)
    items = "\n".join(f'<li><a href="{p["lesson"]}.html">{html.escape(p["title"] or p["lesson"])}</a></li>'
                      for p in pages)
    (out / "index.html").write_text(
        "<!doctype html>\n<html><head><meta charset='utf-8'><title>tkjepa lessons</title></head><body>\n"
        "<h1>tkjepa lessons</h1>\n<p>The executed lessons of tkjepa, a teaching toolkit for ThinkJEPA. "
        "Run them yourself with <code>make lab</code>.</p>\n<ol>\n" + items + "\n</ol>\n</body></html>\n",
        encoding="utf-8")
    (out / "pages.json").write_text(json.dumps(pages, indent=1) + "\n")
    return pages


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("notebooks", nargs="*", type=Path, help="lessons to build (default: every notebooks/*.ipynb)")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "site")
    ap.add_argument("--timeout", type=int, default=600, help="seconds per cell")
    args = ap.parse_args(argv)
    notebooks = args.notebooks or sorted(LESSONS.glob("*.ipynb"))
    missing = [str(p) for p in notebooks if not p.is_file()]
    if missing:
        print(f"no such notebook: {', '.join(missing)}", file=sys.stderr)
        return 2
    build(notebooks, args.out, args.timeout)
    print(f"-> {args.out / 'index.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
