"""The rollout viewer in a real headless browser: Debian's chromium, driven by Playwright's own driver.

The set-up installs chromium with apt-get when /usr/bin/chromium is missing (CI runs `make test` as root on a
fresh machine) and fails with the reason when it cannot: this test is never skipped. Playwright's browser
downloads are not used. The screenshot lands in tests/artifacts/viewer.png.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tkjepa.egodex import find_episodes
from tkjepa.paths import EPISODES

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = ROOT / "tests" / "artifacts"
# Headless and offline: no sandbox (root in containers), no GPU (software WebGL draws plotly's 3D scene), and
# none of the background traffic (updates, sync, component downloads) a fresh profile would start.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--enable-unsafe-swiftshader"]

pytestmark = pytest.mark.browser


def ensure_chromium() -> Path:
    """Debian's chromium, installed with apt-get when missing; pytest.fail (never skip) when that fails."""
    if CHROMIUM.exists():
        return CHROMIUM
    if os.geteuid() != 0:
        pytest.fail(f"{CHROMIUM} is missing and installing it needs root: run `sudo apt-get install -y chromium`")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    log = []
    for cmd in (["apt-get", "update"], ["apt-get", "install", "-y", "--no-install-recommends", "chromium"]):
        r = subprocess.run(cmd, capture_output=True, text=True, env=env)
        log.append(f"$ {' '.join(cmd)} -> exit {r.returncode}\n{(r.stdout + r.stderr)[-1500:]}")
        if r.returncode:
            break
    if not CHROMIUM.exists():
        pytest.fail("could not install Debian's chromium for the browser test:\n" + "\n".join(log))
    return CHROMIUM


@pytest.fixture(scope="module")
def page(viewer_url, tmp_path_factory):
    from playwright.sync_api import sync_playwright

    chromium = ensure_chromium()
    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")), executable_path=str(chromium), headless=True,
            args=CHROMIUM_ARGS, viewport={"width": 1400, "height": 1000})
        page = context.new_page()
        page.set_default_timeout(60_000)
        page.goto(viewer_url)
        yield page
        context.close()


PLOT = "document.querySelector('#{} .js-plotly-plot')"


def test_pick_an_episode_see_the_3d_plot_and_the_attribution_chart(page):
    paths = find_episodes(EPISODES)
    key = str(paths[20].relative_to(EPISODES).with_suffix(""))
    page.wait_for_selector("#trajectory .js-plotly-plot")

    page.click("#episode input")
    page.click(f'#episode li[aria-label="{key}"]')
    page.wait_for_function(f"() => document.querySelector('#episode-info').innerText.includes('{key}')")
    # the 3D view redrawn for this episode (its uirevision is the episode's key), in a WebGL scene
    page.wait_for_function(f"() => {PLOT.format('trajectory')}?.layout?.uirevision === '{key}'")
    scene = page.evaluate(f"""() => {{ const gd = {PLOT.format('trajectory')};
        return {{scene: !!gd._fullLayout.scene, canvases: gd.querySelectorAll('.gl-container canvas').length,
                 traces: gd.data.map(t => [t.type, t.name])}}; }}""")
    assert scene["scene"] and scene["canvases"] >= 1, scene
    assert ["scatter3d", "true future"] in scene["traces"] and ["scatter3d", "thinkjepa"] in scene["traces"]

    # the attribution bar chart for the same episode: two bar traces (IG, ΔADE), one bar per thinker layer
    page.wait_for_function(f"() => ({PLOT.format('attribution')}?.layout?.title?.text || '').includes('{key}')")
    bars = page.evaluate(f"() => {PLOT.format('attribution')}.data.map(t => [t.type, t.x.length])")
    assert bars == [["bar", 6], ["bar", 6]], bars
    assert page.locator("#attribution .barlayer .point").count() > 0

    # ablating a layer redraws the forecast: the scores gain the ablated row
    page.click('#ablate label:has-text("layer 0")')
    page.wait_for_function("() => document.querySelector('#scores').innerText.includes('ablated')")
    page.wait_for_function(f"() => {PLOT.format('trajectory')}.data.some(t => (t.name || '').includes('ablated'))")

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "viewer.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 50_000
