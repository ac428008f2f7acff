"""Text on the page: every user- or model-supplied string reaches Streamlit's Markdown through here.

`literal(text)` shows text exactly as typed (no link, emphasis, HTML, LaTeX can form); `say(show,
template, name=value)` fills a template of the app's own Markdown with literal values. A model id
quoted in an error is user text too.
"""

from __future__ import annotations

import re

import streamlit as st

from viz.cache import GIB

# Every ASCII punctuation mark, backslash-escaped, is the literal character in CommonMark: no link,
# image, emphasis, HTML, :colour[...] directive, :emoji: shortcode or $LaTeX$ can form. GFM still turns
# bare URLs and e-mail addresses into links after escaping, so an invisible word joiner (U+2060) after
# "http", "www" and "@" breaks those patterns while the text reads the same.
_MARKDOWN_MARK = re.compile(r"([!-/:-@\[-`{-~])")
_AUTOLINK_START = re.compile(r"(?i)(https?(?=:)|ftp(?=:)|www(?=\.)|@)")


def literal(text: str) -> str:
    """User or model text for anything Streamlit reads as Markdown (messages, captions, spinners):
    shown exactly as typed. The one way such text reaches the page."""
    text = _AUTOLINK_START.sub("\\1\u2060", str(text))
    return _MARKDOWN_MARK.sub(r"\\\1", text).replace("\n", "  \n")


def say(show, template: str, /, **quoted: object) -> None:
    """`show` (st.error, st.info, st.caption, ...) the template with each {name} filled by user or
    model text shown literally; the template itself is the app's own Markdown."""
    show(template.format_map({name: literal(str(value)) for name, value in quoted.items()}))


def literal_bold(text: str) -> str:
    """User or model text in bold, shown literally. CommonMark ignores ** next to a space and bold
    does not cross lines, so each line's non-space part is wrapped on its own (" Paris" -> " **Paris**")."""
    lines = []
    for line in text.split("\n"):
        core = line.strip()
        lead, trail = (" " if line[:1].isspace() else ""), (" " if line[-1:].isspace() else "")
        lines.append(f"{lead}**{literal(core)}**{trail}" if core else "")
    return "  \n".join(lines)


def size_text(nbytes: int) -> str:
    return f"{nbytes / GIB:.2f} GB" if nbytes >= GIB / 10 else f"{nbytes / (1 << 20):.1f} MB"


def say_cut(limit: int, made: int, asked: int) -> None:
    """Generation stopped at Max tokens (prompt + new tokens): say how much of what was asked fitted."""
    st.caption(
        f"Max tokens ({limit:,}) left room for {made} of the {asked} tokens asked for: raise it in the sidebar "
        "to generate more."
    )
