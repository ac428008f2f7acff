"""A "Copy link to this view" button: the browser's own address, which holds the whole view.

Each run writes exactly the settings its page and model use into the address (ui.widgets), so the
link is read in the browser when the button is clicked -- after the run -- not on the server. The
button lives in an iframe of the app's own origin (Streamlit grants it clipboard-write).
"""

from __future__ import annotations

COPY_LINK_HEIGHT = 44

_COPY_LINK = """<!DOCTYPE html><html><head><meta charset="utf-8"><style>
body { margin: 0; font-family: "Source Sans Pro", sans-serif; }
button { width: 100%; padding: 6px 10px; font-size: 15px; border: 1px solid #c8ccd4; border-radius: 8px;
         background: #fff; color: #31333f; cursor: pointer; }
button:hover { border-color: #1f5fa8; color: #1f5fa8; }
</style></head><body>
<button id="copy" type="button">🔗 Copy link to this view</button>
<script>
const button = document.getElementById("copy");
button.addEventListener("click", async () => {
  const link = window.parent.location.href;
  try {
    await navigator.clipboard.writeText(link);
    button.textContent = "✓ Link copied";
  } catch (error) {  // no clipboard (an old browser, a blocked permission): show it to copy by hand
    window.prompt("Copy this link:", link);
  }
  setTimeout(() => { button.textContent = "🔗 Copy link to this view"; }, 2000);
});
</script></body></html>"""


def copy_link_html() -> str:
    """The button's page (no user text in it)."""
    return _COPY_LINK
