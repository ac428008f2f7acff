"""Drawing figures on a page: every plotly figure (`chart`), heatmaps of matrices, maps side by side on one
colour scale, downloads, and a page's chapters handed out as one lesson file (`Handout`)."""

from __future__ import annotations

import html
import re
from dataclasses import replace
from urllib.parse import urlencode

import numpy as np
import streamlit as st

from ui import messages, presenter, widgets
from ui.pickers import Region
from viz import export, figures
from viz.lesson import Section, figure_html, lesson_html
from viz.tokens import MatrixView, crop_view, pool_view
from viz.trace import Trace


def heatmap(view: MatrixView, title: str, key: str, zoom: Region | None = None, **kwargs) -> MatrixView:
    """A matrix view as an interactive heatmap: cropped to `zoom`, max-pooled to at most OVERVIEW_CELLS a
    side (the title says so). Returns what was drawn. Plotly's camera button saves it as PNG."""
    return _draw(_shown(view, zoom), title, key, **kwargs)


def _shown(view: MatrixView, zoom: Region | None) -> MatrixView:
    """What a map draws: the zoomed region, max-pooled to at most OVERVIEW_CELLS a side."""
    return pool_view(crop_view(view, *zoom) if zoom else view)


def heatmaps_side_by_side(views: dict[str, MatrixView], keys: list[str], zoom: Region | None) -> dict[str, MatrixView]:
    """Maps in columns on ONE colour scale (0 to the largest weight in any of them), so equal colours mean
    equal weights; a checkbox (kept in the URL) scales each to its own maximum instead."""
    shown = {title: _shown(view, zoom) for title, view in views.items()}
    own = widgets.checkbox("Scale each map to its own maximum", key="own_scale")
    peaks = [float(np.max(s.weights, where=~s.masked, initial=0.0)) if s.weights.size else 0.0 for s in shown.values()]
    for column, key, (title, view) in zip(st.columns(len(shown)), keys, shown.items(), strict=True):
        with column:
            _draw(view, title, key, zmax=None if own else max(peaks) or 1.0)
    return shown


EMPTY_VIEW = (
    "Nothing to draw in “{title}”: the token options hide every token of its {side} (they are all special "
    "tokens, like [CLS], </s> or <unk>, or the first token). Untick them in Token options to see the map."
)


def _draw(shown: MatrixView, title: str, key: str, **kwargs) -> MatrixView:
    if not shown.weights.size:  # an empty view says why it is empty
        st.info(EMPTY_VIEW.format(title=title, side="rows" if not shown.weights.shape[0] else "columns"))
        return shown
    if shown.pooled > 1:
        title += f" · each cell: max of a {shown.pooled}×{shown.pooled} token block"
    fig = figures.attention_heatmap(
        shown.weights,
        shown.row_labels,
        shown.col_labels,
        shown.masked,
        title,
        row_positions=shown.row_positions,
        col_positions=shown.col_positions,
        quantity=shown.quantity,
        **kwargs,
    )
    chart(fig, key)
    return shown


def chart(fig, key: str, place=st, **kwargs):
    """Every figure of the app is drawn here: enlarged in presenter mode, its camera button saving an SVG
    named after the chart, and a link under it that saves it as one HTML file (plotly's JavaScript inlined:
    it opens without a server or a network). Returns plotly_chart's selection, where it has one."""
    config = {"toImageButtonOptions": {"format": "svg", "filename": key}, **kwargs.pop("config", {})}
    drawn = place.plotly_chart(figures.scaled(fig, presenter.scale()), key=key, config=config, **kwargs)
    place.download_button(
        "Figure as HTML",
        data=lambda: figure_html(fig, _figure_title(fig, key)).encode(),
        file_name=f"{key}.html",
        mime="text/html",
        key=f"html_{key}",
        type="tertiary",
        icon=":material/download:",
    )
    return drawn


def _figure_title(fig, key: str) -> str:
    """The figure's own title as plain text (plotly's markup and escaped tokens undone: the lesson escapes it)."""
    return html.unescape(re.sub(r"<[^>]+>", "", fig.layout.title.text or "")) or key.replace("_", " ")


def downloads(views: dict[str, MatrixView], trace: Trace) -> None:
    """A CSV per matrix on screen and the whole Trace as NPZ (each built only when clicked)."""
    row = st.container(horizontal=True)  # buttons at their own width, wrapping: long names never overlap
    for name, view in views.items():
        row.download_button(
            f"{name} (CSV)",
            data=lambda v=view: export.matrix_csv(v.weights, v.row_labels, v.col_labels),
            file_name=re.sub(r"\W+", "-", name).strip("-").lower() + ".csv",
            mime="text/csv",
            key=f"csv_{name}",
        )
    row.download_button(
        "Whole trace (NPZ)",
        data=lambda: export.trace_npz(trace),
        file_name="trace.npz",
        mime="application/octet-stream",
        key="npz",
    )


class Handout:
    """A page's chapters as it draws them -- headings, the text to read aloud, figures -- kept to hand out as
    one lesson file that opens without a server or a network (viz.lesson), with the link back to the view."""

    def __init__(self) -> None:
        self.sections: list[Section] = []

    def chapter(self, heading: str) -> None:
        st.header(heading)
        self.sections.append(Section(heading, ""))

    def text(self, template: str, /, **quoted: object) -> None:
        """The app's own Markdown with user or model text filled in literally (messages.say); the lesson keeps
        it as plain text."""
        messages.say(st.markdown, template, **quoted)
        plain = template.format_map({k: str(v) for k, v in quoted.items()}).replace("**", "").replace("  \n", " ")
        self._add(text=plain)

    def chart(self, fig, key: str, place=st, **kwargs):
        drawn = chart(fig, key, place, **kwargs)
        self._add(figures=(fig,))
        return drawn

    def table(self, frame) -> None:
        st.dataframe(frame, hide_index=True)
        self._add(tables=(frame,))

    def _add(self, text: str = "", figures: tuple = (), tables: tuple = ()) -> None:
        last = self.sections.pop() if self.sections else Section("", "")
        joined = " ".join(part for part in (last.text, text) if part)
        self.sections.append(replace(last, text=joined, figures=last.figures + figures, tables=last.tables + tables))

    def download(self, title: str, file_name: str, label: str) -> None:
        """The button that saves the lesson (built only when clicked)."""
        link = f"{st.context.url}?{urlencode(st.query_params.to_dict())}"
        st.download_button(label, data=lambda: lesson_html(title, self.sections, link).encode(),
                           file_name=file_name, mime="text/html", key=f"handout_{file_name}")  # fmt: skip
