"""Helpers for driving the app with Streamlit's AppTest (no browser)."""

from __future__ import annotations

import base64
import json

import numpy as np
from streamlit.testing.v1 import AppTest

from tests.conftest import ROOT


def run_page(page: str = "attention_maps.py", **params) -> AppTest:
    """Run the first page (switching to `page`) with URL query parameters preset, as a copied URL would."""
    at = AppTest.from_file(str(ROOT / "attention_maps.py"), default_timeout=300)
    for key, value in params.items():
        at.query_params[key] = str(value)
    at.run()
    if page != "attention_maps.py":
        at.switch_page(page).run()
    return at


def problems(at: AppTest) -> list[str]:
    """Exceptions and error boxes on the page: a healthy page has none."""
    return [e.value for e in at.exception] + [e.value for e in at.error]


def plotly_specs(at: AppTest) -> list[dict]:
    return [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]


def decode(value) -> np.ndarray:
    """Plotly JSON arrays arrive as lists or as base64 typed arrays."""
    if isinstance(value, dict) and "bdata" in value:
        array = np.frombuffer(base64.b64decode(value["bdata"]), dtype=np.dtype(value["dtype"]))
        shape = value.get("shape")
        if isinstance(shape, str):  # "9, 9"
            shape = [int(n) for n in shape.split(",")]
        return array.reshape(shape) if shape else array
    return np.array(value, dtype=float)


def option_value(at: AppTest, widget, shown: str | list[str]):
    """The option a choice widget shows as `shown` (a list of labels for a multiselect or a range).
    The browser sends labels and the widget's own deserializer maps them back; the element tree holds
    only the labels, so this asks the deserializer the running app registered for the widget."""
    metadata = at.session_state._state._state._new_widget_state.widget_metadata[widget.id]  # pinned streamlit
    return metadata.deserializer([shown] if type(widget).__name__ == "SelectSlider" else shown)
