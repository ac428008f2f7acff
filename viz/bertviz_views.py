"""bertviz's head view and model view, made to work with no network.

bertviz's HTML loads require.js, d3 and jQuery from a CDN. We inline d3 5.16 and jQuery 3.7
(vendored from npm, see viz/vendor/) and a four-line `requirejs(deps, callback)` stand-in,
so the views draw with zero external requests -- also when saved and opened later.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch

from viz.trace import AttentionStack, Trace

VENDOR = Path(__file__).resolve().parent / "vendor"
REQUIRE_STANDIN = """
window.require = window.requirejs = function (deps, callback) {
  var modules = {jquery: window.jQuery, d3: window.d3};
  callback.apply(null, deps.map(function (name) { return modules[name]; }));
};
window.require.config = function () {};
"""
# bertviz draws every head of every included layer: the HTML grows with layers × heads × T².
# Above these many attention cells the browser tab stalls (104 MB of HTML at 12×12 heads × 128 tokens).
MAX_CELLS = {"head": 1_500_000, "model": 400_000}


def _script(code: str) -> str:
    # "</" inside a script would end it early: a token like "</script>" must stay data.
    return "<script>" + code.replace("</", "<\\/").replace("<!--", "<\\!--") + "</script>"


def _offline(bertviz_html: str) -> str:
    """Swap the CDN loader for inlined libraries and make every script body inert to HTML parsing."""
    head, _, rest = bertviz_html.partition("</script>")  # the require.js <script src=...> tag
    if "require.js" not in head:
        raise RuntimeError("bertviz HTML layout changed: cannot make it offline")
    markup, _, js = rest.partition('<script type="text/javascript">')
    js = js.rsplit("</script>", 1)[0]
    js = re.sub(r"/\*.*?\*/", "", js, count=1, flags=re.S)  # license header (has URLs)
    js = re.sub(r"require\.config\(\{.*?\}\);", "", js, count=1, flags=re.S)
    libraries = "".join(
        _script((VENDOR / name).read_text(encoding="utf-8")) for name in ("jquery.3.7.1.min.js", "d3.v5.16.0.min.js")
    )
    page = (
        '<!DOCTYPE html><html><head><meta charset="utf-8">'
        + libraries
        + _script(REQUIRE_STANDIN)
        + "</head><body style='font-family: sans-serif'>"
        + markup
        + _script(js)
        + "</body></html>"
    )
    if re.search(r"(src|href)\s*=\s*['\"]?https?:", page) or "cdnjs" in page:
        raise RuntimeError("bertviz HTML still references the network")
    return page


def _layers(stack: AttentionStack) -> list[torch.Tensor]:
    # float64 rounded to 4 decimals: JSON numbers like 0.1234 instead of 0.12339999526739121
    return [
        torch.from_numpy(np.round(stack.attention(layer).astype(np.float64), 4))[None]
        for layer in range(stack.n_layers)
    ]


def too_large(trace: Trace, view: str, layers: int | None = None) -> str | None:
    """Why bertviz's `view` ("head" or "model") would be unusable for this trace, or None."""
    cells = sum((layers or s.n_layers) * s.n_heads * s.n_queries * s.n_keys for s in trace.stacks.values())
    if cells > MAX_CELLS[view]:
        return (
            f"bertviz's {view} view would have to draw {cells:,} attention weights for this input "
            f"(its limit for a responsive page is about {MAX_CELLS[view]:,}). Use a shorter text, "
            "or the Model view page, which draws every head as one image."
        )
    return None


def _arguments(trace: Trace) -> dict:
    if "cross" in trace.stacks:
        return dict(
            encoder_attention=_layers(trace.stacks["encoder"]),
            decoder_attention=_layers(trace.stacks["decoder"]),
            cross_attention=_layers(trace.stacks["cross"]),
            encoder_tokens=list(trace.tokens["source"].display),
            decoder_tokens=list(trace.tokens["decoder_input"].display),
        )
    (name,) = trace.stacks
    return dict(attention=_layers(trace.stacks[name]), tokens=list(trace.tokens["source"].display))


# Our layer slider picks the one layer drawn, so bertviz's own (single-entry) layer drop-down is hidden with
# its label -- and only those: the Encoder / Decoder / Cross drop-down shares their line.
BERTVIZ_LAYER_CONTROL = 'Layer: <select id="layer"></select>'
HIDDEN_LAYER_CONTROL = '<select id="layer" hidden></select>'


def head_view_html(trace: Trace, layer: int = 0) -> str:
    """bertviz head view of one layer (our own layer slider picks it; keeps the page small)."""
    from bertviz import head_view  # with IPython ~0.25 s to import: paid when a view is drawn, not at start

    html = head_view(**_arguments(trace), include_layers=[layer], prettify_tokens=False, html_action="return").data
    if BERTVIZ_LAYER_CONTROL not in html:
        raise RuntimeError("bertviz HTML layout changed: cannot hide its layer drop-down")
    return _offline(html.replace(BERTVIZ_LAYER_CONTROL, HIDDEN_LAYER_CONTROL, 1))


def drawn_height(trace: Trace, view: str) -> int:
    """Pixels bertviz's view takes (measured in Chromium: head ~23 px a token; model ~7 px a token a layer)."""
    tokens = max(len(seq) for seq in trace.tokens.values())
    layers = next(iter(trace.stacks.values())).n_layers
    return 60 + 23 * tokens if view == "head" else 30 + layers * (7 * tokens + 17)


def model_view_html(trace: Trace) -> str:
    """bertviz model view: every layer and head as thumbnails."""
    from bertviz import model_view

    return _offline(model_view(**_arguments(trace), prettify_tokens=False, html_action="return").data)
