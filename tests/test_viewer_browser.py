"""The rollout viewer in a real headless browser: Debian's chromium, driven by Playwright's own driver.

The `chromium` fixture (conftest) installs chromium with apt-get when /usr/bin/chromium is missing and fails
with the reason when it cannot: this test is never skipped. The screenshot lands in tests/artifacts/viewer.png.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import CHROMIUM_ARGS

from tkjepa.egodex import find_episodes
from tkjepa.paths import EPISODES

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "tests" / "artifacts"

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def page(viewer_url, chromium, tmp_path_factory):
    from playwright.sync_api import sync_playwright

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
