"""A lesson in a real JupyterLab, in a real browser: open it, run every cell, move a widget, see the figure change.

JupyterLab serves a copy of lesson 01 from a temporary folder (the lesson in the repository is never written);
Debian's chromium (the `chromium` fixture) drives it headless. The widgets come from ipywidgets' JupyterLab
extension and the figures from plotly's: both must be installed and working for this test to pass. The screenshot
lands in tests/artifacts/lab.png.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import CHROMIUM_ARGS, free_port

ROOT = Path(__file__).resolve().parents[1]
LESSON = ROOT / "notebooks" / "01_dual_temporal_sampler.ipynb"
ARTIFACTS = ROOT / "tests" / "artifacts"
TOKEN = "tkjepa-test"

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """JupyterLab on a free port, serving a folder with a copy of the lesson -> (base url, folder)."""
    root = tmp_path_factory.mktemp("lab")
    shutil.copy(LESSON, root / LESSON.name)
    # a fresh user's settings, except: every cell in the page (no windowing, so each output can be read) and no
    # news or update checks (offline)
    settings = root / ".lab-settings" / "@jupyterlab"
    (settings / "notebook-extension").mkdir(parents=True)
    (settings / "notebook-extension" / "tracker.jupyterlab-settings").write_text('{"windowingMode": "none"}')
    (settings / "apputils-extension").mkdir()
    (settings / "apputils-extension" / "notification.jupyterlab-settings").write_text(
        '{"fetchNews": "false", "checkForUpdates": false}')
    port = free_port()
    env = {**os.environ, "JUPYTER_PLATFORM_DIRS": "1", "JUPYTER_CONFIG_DIR": str(root / ".jupyter-config"),
           "JUPYTER_RUNTIME_DIR": str(root / ".jupyter-runtime"),
           "JUPYTERLAB_SETTINGS_DIR": str(root / ".lab-settings")}
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip", "127.0.0.1", f"--port={port}",
           f"--ServerApp.root_dir={root}", f"--IdentityProvider.token={TOKEN}", "--ServerApp.allow_root=True",
           "--LabApp.news_url="]
    log = open(root / "lab.log", "w")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=root)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            with urllib.request.urlopen(f"{base}/api/status?token={TOKEN}", timeout=5) as r:
                json.load(r)
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail("JupyterLab did not start:\n" + (root / "lab.log").read_text()[-3000:])
            time.sleep(0.5)
    yield base, root
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


# the figure in the output area that holds the widgets: its traces' names and x values, as JSON
FIGURE = """() => {
  const area = [...document.querySelectorAll('.jp-Cell-outputArea')].find(a => a.querySelector('.widget-slider'));
  const gd = area && area.querySelector('.js-plotly-plot');
  // _fullData: the traces as plotly drew them (gd.data may hold base64-packed arrays)
  return gd && gd._fullData ? JSON.stringify(gd._fullData.map(t => [t.name, Array.from(t.x || [])])) : null;
}"""


def test_run_the_lesson_move_a_slider_and_the_figure_redraws(lab, chromium, tmp_path):
    from playwright.sync_api import sync_playwright

    base, root = lab
    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=str(chromium), headless=True, args=CHROMIUM_ARGS,
            viewport={"width": 1400, "height": 1000})
        page = context.new_page()
        page.set_default_timeout(120_000)
        try:
            before, after = run_and_move(page, base)
        finally:   # the page as it was, pass or fail
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "lab.png"))
            context.close()

    # the redrawn timeline forecasts from frame 0.7 · 64 ≈ 45 instead of 32: its frames moved later
    last = lambda fig: max(max(x) for _, x in json.loads(fig) if x)  # noqa: E731
    assert last(after) > last(before)


def run_and_move(page, base: str) -> tuple[str, str]:
    """Open the lesson, Run All Cells, then type a new value into the first slider -> (figure before, after)."""
    page.goto(f"{base}/lab/tree/{LESSON.name}?token={TOKEN}")
    page.wait_for_selector(".jp-Notebook .jp-Cell")
    # the kernel is up when the toolbar's status says idle; then Run ▸ Run All Cells
    page.wait_for_function("() => !!document.querySelector('.jp-Notebook-ExecutionIndicator[data-status=\"idle\"]')")
    started = "() => [...document.querySelectorAll('.jp-CodeCell .jp-InputPrompt')].some(p => /\\[(\\d+|\\*)\\]/.test(p.innerText))"
    for _ in range(5):   # a menu command clicked before the notebook has settled is ignored: click again
        page.click(".jp-Notebook .jp-Cell >> nth=0")
        page.click('.lm-MenuBar-item:has-text("Run")')
        page.click('.lm-Menu-item:has-text("Run All Cells")')
        try:
            page.wait_for_function(started, timeout=15_000)
            break
        except Exception:  # noqa: BLE001 - playwright's TimeoutError: not started yet
            page.keyboard.press("Escape")
    else:
        raise AssertionError("Run ▸ Run All Cells never started the lesson")
    # every code cell ran: no prompt left at [*] or empty, and the kernel is idle again
    page.wait_for_function("""() => {
        const prompts = [...document.querySelectorAll('.jp-CodeCell .jp-InputPrompt')].map(p => p.innerText);
        return prompts.length > 0 && prompts.every(t => /\\[\\d+\\]/.test(t)) &&
               !!document.querySelector('.jp-Notebook-ExecutionIndicator[data-status="idle"]');
    }""", timeout=300_000)
    errors = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']").all_inner_texts()
    assert not [e for e in errors if "Traceback" in e or "Error" in e], errors
    page.wait_for_function(f"() => ({FIGURE})() !== null")   # the widgets' figure, drawn once
    before = page.evaluate(FIGURE)

    # move the first slider (the split) by typing into its readout, as a student would after dragging
    readout = page.locator(".jp-Cell-outputArea .widget-slider .widget-readout").first
    readout.scroll_into_view_if_needed()
    readout.click()
    page.keyboard.press("Control+A")
    page.keyboard.type("0.7")
    page.keyboard.press("Enter")
    page.wait_for_function(f"(before) => {{ const now = ({FIGURE})(); return now !== null && now !== before; }}",
                           arg=before)
    return before, page.evaluate(FIGURE)
