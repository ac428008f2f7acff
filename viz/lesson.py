"""A lesson as one HTML file that opens without a server or a network: headings, text read aloud, tables,
figures (plotly's JavaScript inlined once, nothing fetched), and the link back to the live view."""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass

import plotly.graph_objects as go
from plotly.offline import get_plotlyjs

STYLE = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2rem auto;padding:0 1rem;color:#222}
h1{font-size:1.8rem}h2{font-size:1.3rem;margin-top:2.5rem;border-top:1px solid #ddd;padding-top:1rem}
p{font-size:1.05rem;line-height:1.5}.link{font-size:.9rem;color:#555}
table{border-collapse:collapse;margin:1rem 0}td,th{border-bottom:1px solid #ddd;padding:.3rem .6rem;text-align:left}"""


@dataclass(frozen=True)
class Section:
    heading: str
    text: str  # plain text: escaped, never read as HTML
    figures: tuple[go.Figure, ...] = ()
    tables: tuple = ()  # pandas DataFrames, drawn after the text (every cell escaped)


def lesson_html(title: str, sections: Sequence[Section], link: str = "") -> str:
    """The whole lesson as one HTML document. Every string from the user or the model is escaped."""
    parts = [f"<h1>{html.escape(title)}</h1>"]
    if link:
        parts.append(
            f'<p class="link">Live view: <a href="{html.escape(link, quote=True)}">{html.escape(link)}</a></p>'
        )
    for number, section in enumerate(sections):
        parts += [f"<h2>{html.escape(section.heading)}</h2>"] if section.heading else []
        parts += [f"<p>{html.escape(section.text)}</p>"] if section.text else []
        parts += [table.to_html(index=False, escape=True, border=0, float_format=lambda x: f"{x:.4f}")
                  for table in section.tables]  # fmt: skip
        for index, figure in enumerate(section.figures):
            parts.append(figure.to_html(full_html=False, include_plotlyjs=False, div_id=f"figure-{number}-{index}",
                                        config={"displaylogo": False}))  # fmt: skip
    return (
        f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{STYLE}</style><script>{get_plotlyjs()}</script></head><body>{''.join(parts)}</body></html>"
    )


def figure_html(figure: go.Figure, title: str, link: str = "") -> str:
    """One figure as a standalone HTML file (a lesson of one section, opens offline)."""
    return lesson_html(title, [Section("", "", (figure,))], link)
