"""Issue 9: every page at 1440×900 and 390×844 with no overlapping text.

Each page is opened in Chromium at 1440×900, measured, then narrowed to 390×844 (a phone) and measured
again: Streamlit's own text (titles, captions, labels, messages) must not overlap other text, no link or
button label may be cut off, and in every plotly figure the title, axis titles, tick labels, legend,
annotations and the toolbar must not overlap each other (issue 26: on a phone the toolbar stays shown).
Set ATLAS_SCREENSHOTS=<folder> to keep a full-page screenshot of each.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.browser import CHROMIUM, wait_until_idle

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Debian chromium is not installed"),
]
SENTENCE = "model=minilm&text=The+cat+sat+on+the+mat+because+it+was+warm."
PAGES = {
    "Attention_maps": f"/?{SENTENCE}",
    "Model_view": f"/Model_view?{SENTENCE}",
    "bertviz": f"/bertviz?{SENTENCE}",
    "Neuron_view": f"/Neuron_view?{SENTENCE}",
    "Alignment": "/Alignment?model=dates&text=the+3rd+of+march+1999",
    "Predictions": "/Predictions?model=smollm2&text=The+capital+of+France+is",
    "Hidden_states": "/Hidden_states?model=smollm2&text=The+capital+of+France+is",
    "Head_roles": f"/Head_roles?{SENTENCE}",
    "Encoder_vs_decoder": "/Encoder_vs_decoder?text=The+cat+sat+on+the+mat.",
    "Head_ablation": f"/Head_ablation?{SENTENCE}&ablate_heads=encoder:0:1",
    "Guided_walk": "/Guided_walk?model=dates&text=the+3rd+of+march+1999&walk_step=2",
    "Induction_probe": "/Induction_probe?model=smollm2&text=Hello",
    "Head_beside_head": f"/Head_beside_head?{SENTENCE}",
}

# Text boxes that overlap by more than a pixel each way: Streamlit text among itself, and within each
# plotly figure between its groups (title, axis titles, ticks, legend, annotations). Rotated tick labels
# are compared with other groups only: their axis-aligned boxes overlap each other while the glyphs don't.
OVERLAPS = """() => {
  const visible = r => r.width > 1 && r.height > 1;
  const hit = (a, b) => Math.min(a.right, b.right) - Math.max(a.left, b.left) > 1
                     && Math.min(a.bottom, b.bottom) - Math.max(a.top, b.top) > 1;
  const found = [];
  // Streamlit's text: the boxes of the glyphs themselves (a text node's range), not of the elements,
  // whose padding and label rows legitimately overlap their neighbours.
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  const own = [];
  for (let n = walker.nextNode(); n; n = walker.nextNode()) {
    const e = n.parentElement;
    if (!n.textContent.trim() || !e.closest('[data-testid=stMain], [data-testid=stSidebar]')) continue;
    if (e.closest('.js-plotly-plot, iframe, [data-testid=stDataFrame], [data-testid=stTable], svg')) continue;
    if (!e.checkVisibility({checkOpacity: true, checkVisibilityCSS: true})) continue;
    const range = document.createRange();
    range.selectNodeContents(n);
    for (const r of range.getClientRects()) if (visible(r)) own.push({n, t: n.textContent, r});
  }
  for (let i = 0; i < own.length; i++)
    for (let j = i + 1; j < own.length; j++)
      if (own[i].n !== own[j].n && hit(own[i].r, own[j].r)) found.push([own[i].t.slice(0, 40), own[j].t.slice(0, 40)]);
  const groups = {title: '.gtitle', xtitle: '.xtitle', ytitle: '.ytitle', xtick: '.xtick text',
                  ytick: '.ytick text', legend: '.legendtext', note: '.annotation-text'};
  // A link or button whose label is cut off (an ellipsis, or text wider than its box).
  for (const e of document.querySelectorAll('[data-testid=stPageLink] span, [data-testid=stButton] p')) {
    const r = e.getBoundingClientRect();  // on screen (a phone's collapsed sidebar is not)
    if (visible(r) && r.left >= 0 && r.right <= window.innerWidth && e.scrollWidth > e.clientWidth + 1)
      found.push(['cut off', e.textContent.slice(0, 40)]);
  }
  for (const plot of document.querySelectorAll('.js-plotly-plot')) {
    const boxes = Object.entries(groups).flatMap(([g, sel]) => [...plot.querySelectorAll(sel)]
      .map(e => ({g, t: e.textContent, r: e.getBoundingClientRect()}))).filter(x => visible(x.r) && x.t.trim());
    const toolbar = plot.querySelector('.modebar');  // shown on hover, and for good on a touch screen
    if (toolbar && visible(toolbar.getBoundingClientRect()))
      boxes.push({g: 'toolbar', t: 'toolbar', r: toolbar.getBoundingClientRect()});
    for (let i = 0; i < boxes.length; i++)
      for (let j = i + 1; j < boxes.length; j++)
        if (boxes[i].g !== boxes[j].g && hit(boxes[i].r, boxes[j].r))
          found.push([boxes[i].g + ': ' + boxes[i].t.slice(0, 30), boxes[j].g + ': ' + boxes[j].t.slice(0, 30)]);
  }
  return found;
}"""


VIEWPORTS = ((1440, 900), (390, 844))


def _lasting_overlaps(page) -> list:
    """Overlaps that are still there after plotly's relayouts (on a busy machine they can land late)."""
    page.wait_for_timeout(1500)  # plotly lays out its labels after the script has finished
    overlaps = page.evaluate(OVERLAPS)
    for _ in range(5):
        if not overlaps:
            break
        page.wait_for_timeout(1000)
        overlaps = page.evaluate(OVERLAPS)
    return overlaps


@pytest.mark.parametrize("name", list(PAGES))
def test_no_text_overlaps_on_any_page(chromium, app_url, name):
    """One visit a page: measured wide, then narrowed to a phone's width (the page lays itself out again)."""
    page = chromium.new_page(viewport={"width": VIEWPORTS[0][0], "height": VIEWPORTS[0][1]})
    try:
        page.goto(app_url + PAGES[name])
        wait_until_idle(page)
        found = {}
        for width, height in VIEWPORTS:
            page.set_viewport_size({"width": width, "height": height})
            assert page.locator('[data-testid="stException"]').count() == 0
            found[f"{width}x{height}"] = _lasting_overlaps(page)
            if folder := os.environ.get("ATLAS_SCREENSHOTS"):  # the whole page: Streamlit scrolls inside stMain
                Path(folder).mkdir(parents=True, exist_ok=True)
                tall = page.evaluate("document.querySelector('[data-testid=stMain]').scrollHeight")
                page.set_viewport_size({"width": width, "height": max(height, tall)})
                page.wait_for_timeout(1000)
                page.screenshot(path=f"{folder}/{name}-{width}x{height}.png")
        assert found == {size: [] for size in found}, found
    finally:
        page.close()
