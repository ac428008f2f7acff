"""Widgets whose value follows the user from page to page and lives in the URL.

Each widget is declared once, where it is drawn: its key, its kind (which function), its range or
options and its default. From those alone this module
- takes the URL's value the first time the widget is drawn in a session (a copied link reopens the
  view) -- parsed by the widget's own kind and checked against its own range or options, so a
  hand-edited URL can only ever pick a value the widget offers;
- moves a remembered number into the widget's range (another model has fewer layers), and falls back
  to the default for a choice the widget no longer offers;
- keeps the value while the user visits pages without the widget (Streamlit forgets a widget's state
  on a run that doesn't draw it; `keep_values` re-assigns it at the top of every page);
- writes the value back to the URL.
Widgets are drawn without a default argument: the value is always in session state first.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from numbers import Real
from typing import Any

import streamlit as st

URL_TEXT_LIMIT = 2_000  # longer texts stay in the session but not in the link (browsers and servers cap URLs)
_PENDING = "_url_pending"  # the URL's values not yet taken by a widget
_KEPT = "_kept_keys"  # keys of widgets drawn in this session


def start_session(params: dict[str, str]) -> None:
    """On a session's first run: hold the URL's values until each widget is drawn."""
    st.session_state[_PENDING] = dict(params)


def fresh_url() -> None:
    """Start the run with an empty address: each widget drawn writes its value back, so the address holds the
    settings this page and model use and no other (a link never carries another page's or model's)."""
    st.query_params.clear()


def keep_values() -> None:
    """Re-assign every widget value seen so far, so a page without that widget doesn't drop it."""
    for key in st.session_state.get(_KEPT, ()):
        if key in st.session_state:
            st.session_state[key] = st.session_state[key]


def option_text(option: object) -> str:
    """An option as the URL writes it: ("encoder", 0, 1) -> "encoder:0:1"."""
    return ":".join(str(part) for part in option) if isinstance(option, tuple | list) else str(option)


def remember(key: str) -> None:
    """Write one value into the URL (also for state that is not a widget, e.g. the model key)."""
    value = st.session_state.get(key)
    if isinstance(value, list):  # a multiselect
        value = ",".join(option_text(v) for v in value)
    elif isinstance(value, tuple):  # a range slider
        value = option_text(value)
    if value is None or value == "" or (isinstance(value, str) and len(value) > URL_TEXT_LIMIT):
        st.query_params.pop(key, None)
    else:
        st.query_params[key] = str(value)


def _settle(
    key: str,
    parse: Callable[[str], Any],
    fits: Callable[[Any], bool],
    default: Any,
    in_url: bool,
    nearest: Callable[[Any], Any] = lambda value: value,
) -> None:
    """Before drawing: the URL's value on first sight, else the value kept -- moved to the `nearest`
    one the widget offers (numbers: into its range) -- and `default` if it still doesn't fit."""
    state = st.session_state
    pending = state.get(_PENDING, {})
    if in_url and key in pending:
        parsed = parse(pending.pop(key))
        if parsed is not None:
            state[key] = parsed
    value = nearest(state[key]) if key in state else default
    state[key] = value if fits(value) else default
    state.setdefault(_KEPT, set()).add(key)


def _number(value: str, kind: type) -> int | float | None:
    try:
        return kind(value)
    except ValueError:
        return None


def _numeric_kind(*values: object) -> type:
    return float if any(isinstance(v, float) for v in values) else int


def _draw(place, draw: str, key: str, in_url: bool, *args, **kwargs) -> Any:
    value = getattr(place, draw)(*args, key=key, **kwargs)
    if in_url:
        remember(key)
    return value


def _is_number(value: object) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool)


def _clip(value: Any, lo, hi) -> Any:
    """A number moved into [lo, hi] (a URL's 5,000 tokens on a 1,024 cap: 1,024); anything else as it is."""
    return min(max(value, lo), hi) if _is_number(value) and value == value else value


def _number_rules(lo, hi, *examples) -> tuple[Callable, Callable, Callable]:
    """(parse, fits, nearest) for one number in [lo, hi]: an int unless a bound or an example
    (the default, the step) is a float."""
    kind = _numeric_kind(lo, hi, *examples)
    return (lambda text: _number(text, kind)), (lambda v: _is_number(v) and lo <= v <= hi), (lambda v: _clip(v, lo, hi))


def slider(label: str, lo, hi, *, key: str, default=None, place=st, in_url: bool = True, **kwargs) -> Any:
    """A number in [lo, hi] (default: lo), or a range (start, stop) when `default` is a pair."""
    default = lo if default is None else default
    if isinstance(default, tuple):  # a range: "3:9" in the URL
        parse_one, fits_one, nearest_one = _number_rules(lo, hi, *default)

        def parse(text: str) -> tuple | None:
            parts = tuple(parse_one(part) for part in text.split(":"))
            return parts if len(parts) == 2 and None not in parts else None

        def fits(v) -> bool:
            return isinstance(v, tuple | list) and len(v) == 2 and all(map(fits_one, v)) and v[0] <= v[1]

        def nearest(v):
            return tuple(map(nearest_one, v)) if isinstance(v, tuple | list) else v

    else:
        parse, fits, nearest = _number_rules(lo, hi, default, kwargs.get("step"))
    _settle(key, parse, fits, default, in_url, nearest)
    if isinstance(st.session_state[key], list):  # a range widget hands its value back as a list
        st.session_state[key] = tuple(st.session_state[key])
    return _draw(place, "slider", key, in_url, label, lo, hi, **kwargs)


def stepper(label: str, lo: int, hi: int, *, key: str, default: int | None = None) -> int:
    """A slider over steps lo..hi with ◀ ▶ buttons beside it (presenter mode's arrow keys press them).
    One per page: the buttons' keys are fixed, so the keys find them."""

    def move(by: int) -> None:
        st.session_state[key] = min(max(int(st.session_state[key]) + by, lo), hi)

    back, middle, forward = st.columns([1, 12, 1], vertical_alignment="bottom")
    value = slider(label, lo, hi, key=key, default=default, place=middle)
    back.button("◀", key="stepper_back", on_click=move, args=(-1,), disabled=value <= lo, help="One step back (←)")
    forward.button("▶", key="stepper_next", on_click=move, args=(1,), disabled=value >= hi, help="One step on (→)")
    return value


def number_input(label: str, lo, hi, *, key: str, default=None, place=st, in_url: bool = True, **kwargs) -> Any:
    """A number in [lo, hi] typed into a box (default: lo)."""
    default = lo if default is None else default
    parse, fits, nearest = _number_rules(lo, hi, default, kwargs.get("step"))
    _settle(key, parse, fits, default, in_url, nearest)
    return _draw(place, "number_input", key, in_url, label, lo, hi, **kwargs)


def checkbox(label: str, *, key: str, default: bool = False, place=st, in_url: bool = True, **kwargs) -> bool:
    """A tick box; a link may write it True/False or 1/0."""
    parse = {"True": True, "False": False, "1": True, "0": False}.get
    _settle(key, parse, lambda v: isinstance(v, bool), default, in_url)
    return _draw(place, "checkbox", key, in_url, label, **kwargs)


def text_input(
    label: str, *, key: str, default: str = "", area: bool = False, place=st, in_url: bool = True, **kwargs
) -> str:
    """A line of text (`area`: a box of several lines), never longer than its `max_chars`."""
    limit = kwargs.get("max_chars") or float("inf")
    _settle(key, str, lambda v: isinstance(v, str) and len(v) <= limit, default, in_url)
    return _draw(place, "text_area" if area else "text_input", key, in_url, label, **kwargs)


def _choice(draw: str, label: str, options: Sequence, key: str, default, place, in_url: bool, **kwargs) -> Any:
    """One of `options`; in the URL as its `option_text`. default None: nothing chosen yet."""
    options = list(options)
    by_text = {option_text(o): o for o in options}
    default = options[0] if default is ... else default
    _settle(key, by_text.get, lambda v: v in options or (v is None and default is None), default, in_url)
    if default is None:
        kwargs["index"] = None
    return _draw(place, draw, key, in_url, label, options, **kwargs)


def selectbox(label: str, options: Sequence, *, key: str, default=..., place=st, in_url: bool = True, **kwargs) -> Any:
    """One of `options` (default: the first; None: nothing chosen yet)."""
    return _choice("selectbox", label, options, key, default, place, in_url, **kwargs)


def radio(label: str, options: Sequence, *, key: str, default=..., place=st, in_url: bool = True, **kwargs) -> Any:
    return _choice("radio", label, options, key, default, place, in_url, **kwargs)


def select_slider(label: str, options: Sequence, *, key: str, default=..., place=st, **kwargs) -> Any:
    return _choice("select_slider", label, options, key, default, place, True, **kwargs)


def multiselect(label: str, options: Sequence, *, key: str, default: Sequence = (), place=st, **kwargs) -> list:
    """Any of `options`; in the URL as their `option_text`s joined by commas."""
    options = list(options)
    by_text = {option_text(o): o for o in options}

    def parse(text: str) -> list | None:
        chosen = [by_text.get(part) for part in text.split(",") if part]
        return None if None in chosen else chosen

    _settle(key, parse, lambda v: isinstance(v, list) and all(o in options for o in v), list(default), True)
    return _draw(place, "multiselect", key, True, label, options, **kwargs)
