"""Pickers pages share: the stack, layer and head, a token, the zoom region, the token options, and
buttons that open one head on another page. Each is kept in the URL (ui.widgets)."""

from __future__ import annotations

import streamlit as st

from ui import widgets
from viz.tokens import OVERVIEW_CELLS, TokenOptions, TokenSeq
from viz.trace import AttentionStack, Trace

STACK_LABELS = {"encoder": "encoder self-attention", "decoder": "decoder self-attention", "cross": "cross-attention"}
Region = tuple[tuple[int, int], tuple[int, int]]


def one_of_stacks(names: list[str], key: str, label: str = "Stack", **kwargs) -> str:
    """Pick one of a model's stacks; a model with a single stack needs no picker."""
    if len(names) == 1:
        return names[0]
    return widgets.radio(label, names, key=key, horizontal=True, **kwargs)


def stack_picker(trace: Trace) -> str:
    """Which attention to show: encoder / decoder / cross (cross first where there is one)."""
    names = list(trace.stack_names)
    default = trace.cross_stack or names[0]
    return one_of_stacks(names, "stack", "Attention", default=default, format_func=STACK_LABELS.get)


def token_picker(label: str, tokens: TokenSeq, key: str, default: int = 0) -> int:
    """Pick one token position (kept in the URL); `default` on a first visit."""
    format_token = lambda i: f"{i}: {tokens.display[i]}"  # noqa: E731
    return int(widgets.select_slider(label, range(len(tokens)), key=key, default=default, format_func=format_token))


def layer_head_picker(stack: AttentionStack) -> tuple[int, int]:
    if stack.n_layers == stack.n_heads == 1:  # one attention (a recurrent model's α): nothing to pick
        return 0, 0
    left, right = st.columns(2)
    layer = widgets.slider("Layer", 0, stack.n_layers - 1, key="layer", place=left)
    help_text = None
    if stack.kv_heads < stack.n_heads:
        group = stack.n_heads // stack.kv_heads
        help_text = f"Grouped-query attention: each run of {group} query heads shares one key/value head."
    head = widgets.slider("Head", 0, stack.n_heads - 1, key="head", place=right, help=help_text)
    return int(layer), int(head)


def zoom_picker(rows: TokenSeq, cols: TokenSeq) -> Region | None:
    """Query and key ranges (token positions) to draw at full resolution; only for matrices too large
    to draw cell by cell. Shared by the maps of a page, so side-by-side maps show the same region."""
    if max(len(rows), len(cols)) <= OVERVIEW_CELLS:
        return None
    region = []
    with st.expander(f"Zoom: {len(rows):,} × {len(cols):,} tokens", expanded=True):
        for key, label, seq in (("zoom_rows", "Queries (rows)", rows), ("zoom_cols", "Keys (columns)", cols)):
            region.append(_token_range(label, key, len(seq)))
        st.caption(
            f"Drawn at full resolution when both ranges span at most {OVERVIEW_CELLS} tokens; larger regions "
            "are max-pooled (each cell shows the largest weight in its block, so a sharp head stays visible)."
        )
    return region[0], region[1]


def _token_range(label: str, key: str, n: int) -> tuple[int, int]:
    """A range of token positions: a slider (in the URL) and two boxes to type its ends, kept in step."""
    whole = (0, n - 1)
    ends = (f"{key}_from", f"{key}_to")

    def boxes_changed() -> None:
        first, last = (int(st.session_state[end]) for end in ends)
        st.session_state[key] = (min(first, last), max(first, last))

    value = tuple(widgets.slider(label, *whole, key=key, default=whole))
    for end, position in zip(ends, value, strict=True):
        st.session_state[end] = position  # the boxes show the slider's range
    left, right = st.columns(2)
    for place, end, name in ((left, ends[0], "from"), (right, ends[1], "to")):
        place.number_input(f"{label}: {name}", *whole, key=end, on_change=boxes_changed, label_visibility="collapsed")
    return value


_TOKEN_FLAGS = {
    "hide_special": ("Hide special tokens", "[CLS], [SEP], </s>, …"),
    "hide_first": ("Hide first token", "Many heads park attention on the first token (an 'attention sink')."),
    "renormalize": ("Renormalise rows", "After hiding columns, rescale each row to sum to 1 again."),
    "merge_words": (
        "Merge subwords into words",
        "A word attends with the mean of its pieces' rows and receives the sum over its pieces' columns.",
    ),
    "value_weighted": (
        "Weigh by what moves: ‖α·f(v)‖",
        "Kobayashi et al. (2020): each weight times the size of what the head moves from that token, "
        "‖v_j · W_O‖ (its value through the head's slice of the output projection). A token that gets much "
        "attention but carries a near-zero vector (often the first token) fades.",
    ),
    "contribution": (
        "Show what each token adds: contribution",
        "Ferrando & Voita (2024): each cell is the share c(h, j) that what head h moves from token j has in "
        "token i's residual stream after the layer's attention (see the Contributions page). Rows don't sum to "
        "1: the residual stream itself takes the rest. Wins over ‖α·f(v)‖ when both are ticked.",
    ),
}


def token_options(merge: bool = True, value_weighted: bool = True, contribution: bool = False) -> TokenOptions:
    """The per-view token filters (kept in the URL like the rest of the view); `merge`, `value_weighted` and
    `contribution` offer those where the page can compute them."""
    offered = {"merge_words": merge, "value_weighted": value_weighted, "contribution": contribution}
    flags = [f for f in _TOKEN_FLAGS if offered.get(f, True)]
    with st.expander("Token options"):
        chosen = {
            flag: widgets.checkbox(_TOKEN_FLAGS[flag][0], key=flag, place=col, help=_TOKEN_FLAGS[flag][1])
            for col, flag in zip(st.columns(len(flags)), flags, strict=True)
        }
    return TokenOptions(**chosen)


_OPEN_IN = (
    ("Open in the maps", "attention_maps.py"),
    ("Open in the Neuron view", "pages/3_Neuron_view.py"),
    ("Switch it off in Head ablation", "pages/9_Head_ablation.py"),
)


def open_head_buttons(stack: str, layer: int, head: int, key: str, also: dict | None = None) -> None:
    """Open one head on another page, selected there (on the sidebar's text; `also` sets other sidebar values
    too, e.g. another text and model). The page that calls this must not draw widgets keyed stack/layer/head
    itself: the buttons set those keys for the next page (in a callback: before any widget is drawn again)."""
    row = st.container(horizontal=True)
    for label, target in _OPEN_IN:
        chosen = {"stack": stack, "layer": layer, "head": head, **(also or {})}
        if target.endswith("Head_ablation.py"):
            chosen["ablate_heads"] = [(stack, layer, head)]
        if row.button(f"{label}: L{layer}·H{head}", key=f"{key}_{target}", on_click=st.session_state.update,
                      args=(chosen,)):  # fmt: skip
            st.switch_page(target)
