"""Issue 24: presenter mode, and every figure handed out as SVG and as one HTML file that opens offline.

In Chromium, on the session's one app server: with `present=1` the sidebar is folded away, the app's text and
every figure are larger, and no text overlaps at 1440×900 or 1920×1080; → and ← press the Generation page's
stepper (exactly one step each) and walk the guided walk's chapters; a figure's "Figure as HTML" file opens
with every request blocked and holds the page's own numbers; the camera button saves SVG.
"""

from __future__ import annotations

import os
import re

import numpy as np
import pytest

from tests.browser import CHROMIUM, wait_until_idle
from tests.test_layout import _lasting_overlaps
from ui.presenter import FIGURE_SCALE
from viz import figures

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Debian chromium is not installed"),
]
GENERATION = "/Generation?model=smollm2&text=The+capital+of+France+is&gen_tokens=6&present=1"
WALK = "/Guided_walk?model=word-order&text=the+small+black+cat+sees+the+big+white+dog&present=1"
PAGES = {
    "Generation": GENERATION,
    "Guided_walk": WALK,
    "Fill-mask": "/Predictions?model=minilm-mlm&text=This+course+will+teach+you+all+about+%5BMASK%5D+models.&present=1",
    "Attention_maps": "/?model=minilm&text=The+cat+sat+on+the+mat+because+it+was+warm.&present=1",
}
SIZES = ((1440, 900), (1920, 1080))
# Every heatmap layer's numbers as the page and the file hold them (plotly's base64 float arrays).
Z = "JSON.stringify(document.querySelector('.js-plotly-plot').data.filter(t => t.z).map(t => t.z))"
TITLE_SIZE = "() => parseFloat(document.querySelector('.js-plotly-plot .gtitle').style.fontSize)"


def _open(chromium, url: str, width: int = 1440, height: int = 900):
    page = chromium.new_page(viewport={"width": width, "height": height})
    page.goto(url)
    wait_until_idle(page)
    return page


def _step(page) -> int:
    return int(re.search(r"gen_step=(\d+)", page.url).group(1))


def _press(page, key: str) -> None:
    page.keyboard.press(key)
    page.wait_for_timeout(500)
    wait_until_idle(page)


def _arrows_press_the_generation_stepper_one_step_each(page) -> None:
    assert "present=True" in page.url  # the switch lives in the link
    page.locator('[data-testid="stMain"] h1').click()  # focus on the page, not on a widget
    for key, expected in (("ArrowRight", 2), ("ArrowRight", 3), ("ArrowLeft", 2)):
        _press(page, key)
        page.wait_for_function(f"() => location.search.includes('gen_step={expected}')", timeout=60_000)
        assert _step(page) == expected
        assert page.get_by_text(f"Step {expected} of 6").count() == 1
    page.get_by_label("Seed").focus()  # typing in a box: the arrows move its caret, not the step
    _press(page, "ArrowRight")
    assert _step(page) == 2


HEADING_AT_TOP = """() => {
  const main = document.querySelector('[data-testid=stMain]');
  const line = main.getBoundingClientRect().top;
  const near = [...main.querySelectorAll('h2')].filter(h => Math.abs(h.getBoundingClientRect().top - line - 99) < 30);
  return near.length ? near[0].textContent : null;
}"""


def _arrows_walk_the_chapters(page) -> None:
    page.locator('[data-testid="stMain"] h1').click()
    seen = []
    for key in ("ArrowRight", "ArrowRight", "ArrowRight", "ArrowLeft"):
        page.keyboard.press(key)
        page.wait_for_timeout(400)
        seen.append(page.evaluate(HEADING_AT_TOP))
    assert [s.split(" · ")[0] if s else None for s in seen] == ["1", "2", "3", "2"], seen


def _heatmap_title_size() -> float:
    """The attention map's own title size (viz.figures), before any presenter scale."""
    return figures.attention_heatmap(np.ones((2, 2)), ["a", "b"], ["a", "b"], title="t").layout.title.font.size


def _figures_are_larger(page) -> None:
    assert page.evaluate(TITLE_SIZE) == pytest.approx(FIGURE_SCALE * _heatmap_title_size(), rel=0.01)


THEN = {  # what each page checks after the layout: its keys, its figure sizes
    "Generation": _arrows_press_the_generation_stepper_one_step_each,
    "Guided_walk": _arrows_walk_the_chapters,
    "Attention_maps": _figures_are_larger,
}


@pytest.mark.parametrize("name", list(PAGES))
def test_presenter_mode_folds_the_sidebar_enlarges_overlaps_nothing_and_steps(chromium, app_url, name):
    page = _open(chromium, app_url + PAGES[name])
    try:
        # A cold server's first page can look idle before its script has run: wait for presenter mode's CSS.
        page.wait_for_function("getComputedStyle(document.documentElement).fontSize === '22px'", timeout=60_000)
        wait_until_idle(page)
        assert page.locator('[data-testid="stException"]').count() == 0
        sidebar = page.locator('[data-testid="stSidebar"]')
        assert sidebar.get_attribute("aria-expanded") == "false" or sidebar.bounding_box()["x"] < -100
        found = {}
        for width, height in SIZES:
            page.set_viewport_size({"width": width, "height": height})
            found[f"{width}x{height}"] = _lasting_overlaps(page)
        assert found == {f"{w}x{h}": [] for w, h in SIZES}, found
        THEN.get(name, lambda _: None)(page)
    finally:
        page.close()


def test_a_figure_saved_as_html_opens_offline_with_the_pages_numbers(chromium, app_url, tmp_path):
    page = _open(chromium, app_url + PAGES["Attention_maps"].replace("&present=1", ""))
    try:
        page.wait_for_selector(".js-plotly-plot .gtitle")
        assert page.evaluate(TITLE_SIZE) == pytest.approx(_heatmap_title_size())  # outside presenter mode: as made
        config = page.evaluate("document.querySelector('.js-plotly-plot')._context.toImageButtonOptions")
        assert config["format"] == "svg"
        shown = page.evaluate(Z)
        page.locator(".js-plotly-plot").first.hover()
        with page.expect_download() as camera:  # the toolbar's camera: an SVG, drawn by plotly.js in the browser
            page.locator(".js-plotly-plot").first.locator('.modebar-btn[data-title^="Download plot"]').click()
        svg = tmp_path / "figure.svg"
        camera.value.save_as(svg)
        assert svg.read_text().startswith("<svg") and camera.value.suggested_filename.endswith(".svg")
        with page.expect_download() as download:
            page.get_by_text("Figure as HTML").first.click()
        path = tmp_path / "figure.html"
        download.value.save_as(path)
    finally:
        page.close()
    offline, requests = _offline(chromium, path)
    offline.wait_for_selector(".plotly-graph-div .main-svg")
    assert requests == [path.as_uri()]
    saved = offline.evaluate(Z)
    offline.close()
    assert saved == shown and "bdata" in saved and len(saved) > 200


def _offline(chromium, path):
    """The file opened with every request but the file itself blocked: (page, requests made)."""
    page, requests = chromium.new_page(), []
    page.on("request", lambda request: requests.append(request.url))
    page.route("**/*", lambda r: r.continue_() if r.request.url.startswith("file:") else r.abort())
    page.goto(path.as_uri())
    return page, requests


def test_the_walk_saves_as_one_lesson_with_every_chapter_and_figure(chromium, app_url, tmp_path):
    page = _open(chromium, app_url + WALK.replace("&present=1", ""))
    try:
        page.wait_for_timeout(1500)
        headings = page.evaluate("[...document.querySelectorAll('[data-testid=stMain] h2')].map(h => h.textContent)")
        figures = page.locator("[data-testid=stMain] .js-plotly-plot").count()
        with page.expect_download() as download:
            page.get_by_text("Save the walk as one lesson file").click()
        path = tmp_path / "walk.html"
        download.value.save_as(path)
    finally:
        page.close()
    lesson, requests = _offline(chromium, path)
    lesson.wait_for_function(f"document.querySelectorAll('.plotly-graph-div .main-svg').length >= {figures}")
    assert requests == [path.as_uri()]
    assert lesson.evaluate("[...document.querySelectorAll('h2')].map(h => h.textContent)") == headings
    assert len(headings) == 10 and lesson.locator(".plotly-graph-div").count() == figures
    assert "Live view: " in lesson.inner_text("body") and "Guided_walk?" in lesson.inner_text("body")
    assert lesson.locator("table").count() == 4  # the walk's tables, with their numbers
    assert "\t1.0000\t" in lesson.locator("table").nth(2).inner_text()  # SmolLM2's identical inputs under RoPE
    lesson.close()
