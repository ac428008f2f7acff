"""Presenter mode: the app on a projector, read from the back of a room.

A switch in the sidebar (or `present=1` in a link) collapses the sidebar, enlarges the app's text
(Streamlit sizes it in rem: one root size moves it all) and every figure (`ui.render.chart` scales each
by `scale()`), and lets the arrow keys step the page: a page's stepper (◀ ▶, `widgets.stepper`) where it
has one, else the next or previous section heading (the guided walk's chapters).
"""

from __future__ import annotations

import streamlit as st

from ui import widgets

KEY = "present"
FIGURE_SCALE = 1.4  # fonts, heights and margins of every figure
ROOT_FONT_PX = 22  # Streamlit's own text: 16 px → 22 px (× 1.375, like the figures)

CSS = f"""<style>
html {{ font-size: {ROOT_FONT_PX}px; }}
[data-testid="stMain"] h2 {{ scroll-margin-top: 4.5rem; }}
</style>"""

# Installed once into the app's page (the iframe is same-origin), so it outlives the iframe it came from;
# it acts only while the switch is on, and never while the user types or drags a slider.
KEYS_HTML = """<!DOCTYPE html><html><body><script>
const host = window.parent;
if (!host.atlasPresenterKeys) {
  host.atlasPresenterKeys = true;
  const script = host.document.createElement("script");
  script.textContent = `(() => {
    document.addEventListener("keydown", (event) => {
      const on = document.querySelector(".st-key-present input[type=checkbox]");
      const forward = event.key === "ArrowRight" || event.key === "PageDown";
      if (!on || !on.checked || !(forward || event.key === "ArrowLeft" || event.key === "PageUp")) return;
      const typing = "input, textarea, select, [role=slider], [contenteditable]";
      if (event.target.closest && event.target.closest(typing)) return;
      event.preventDefault();
      const button = document.querySelector(".st-key-stepper_" + (forward ? "next" : "back") + " button");
      if (button) { if (!button.disabled) button.click(); return; }
      const main = document.querySelector("[data-testid=stMain]");
      const headings = [...main.querySelectorAll("h2")];
      // Where a heading stands against where scrollIntoView puts it (the scroller's top plus its scroll margin).
      const top = (h) => h.getBoundingClientRect().top - main.getBoundingClientRect().top
                         - parseFloat(getComputedStyle(h).scrollMarginTop);
      const target = forward ? headings.find((h) => top(h) > 8) : headings.reverse().find((h) => top(h) < -8);
      if (target) target.scrollIntoView({block: "start"});
    });
  })();`;
  host.document.head.appendChild(script);
}
</script></body></html>"""


def switch() -> bool:
    """The sidebar's switch; when on, the page is laid out for a projector."""
    on = widgets.checkbox(
        "Presenter mode",
        key=KEY,
        place=st.sidebar,
        help="For a projector: larger text and figures, the sidebar folded away; ← → step the page. "
        "A link with present=1 opens in it.",
    )
    if not on:  # links carry present=True only when it is on
        st.query_params.pop(KEY, None)
        return False
    st.set_page_config(initial_sidebar_state="collapsed")
    st.html(CSS)
    st.iframe(KEYS_HTML, height=1)
    return True


def scale() -> float:
    """How much larger every figure is drawn (1 outside presenter mode)."""
    return FIGURE_SCALE if st.session_state.get(KEY) else 1.0
