"""The first seconds after `streamlit run app.py`: warm the model stack while the server starts.

PyTorch and transformers take ~5 s to import on two cores, and no page can draw a map before they
are in. So the server imports them, and runs the default text through the default model, in a
background thread as it starts (`lifespan`, given to st.App in app.py). A page that arrives
meanwhile draws an empty chart where its map will be: the browser fetches and starts its 4.7 MB
chart library while the server is still importing, instead of after (bench/bench_first_paint.py).

This module imports nothing heavy: pages read it before the model stack is in. It imports no other
module of ui/ but ui.views (in the warm-up thread), which imports nothing of ui/ that imports it back.
"""

from __future__ import annotations

import gc
import logging
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager

import streamlit as st

from viz.figures import waiting_figure  # numpy and plotly only

log = logging.getLogger("attention_atlas")
_stack_imported = threading.Event()  # set once ui.views (torch, transformers, viz) is fully imported


def page_config(title: str) -> None:
    st.set_page_config(page_title=f"{title} · Attention Atlas", page_icon="🔭", layout="wide")


@contextmanager
def long_lived_imports() -> Iterator[None]:
    """Run imports whose objects live as long as the process (torch, transformers: ~800k of them)
    with the cycle collector paused, then freeze them out of its sight. Otherwise it walks them again
    and again for nothing: imports 5.3 s -> 4.3 s, the first model load 0.5 s -> 0.25 s on 2 cores."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if was_enabled:
            gc.enable()


WAITING = "Starting up: importing PyTorch and transformers (first visit since the server started)…"


@contextmanager
def importing_stack(title: str) -> Iterator[None]:
    """Wrap a page's imports of the model stack. On a cold server the page first shows its title
    and an empty chart (so the browser loads plotly.js meanwhile), removed once the imports are in."""
    if _stack_imported.is_set():
        yield
        return
    page_config(title)
    slot = st.empty()
    slot.plotly_chart(waiting_figure(WAITING), key="waiting_for_model_stack")
    try:
        with long_lived_imports():
            yield
        _stack_imported.set()
    finally:
        slot.empty()


def warm_up() -> None:
    """Import the model stack and put the default text's Trace in the shared cache, so the first
    visitor's page (which waits on these same imports and cache key) finds them done or under way."""
    try:
        with long_lived_imports():
            from ui import views  # the import this thread exists for
        _stack_imported.set()
        views.warm_default_trace()
    except Exception:  # noqa: BLE001 -- a failed warm-up only means the first page does this work itself
        log.exception("warm-up at server start failed")


@asynccontextmanager
async def lifespan(app: object) -> AsyncIterator[None]:
    """st.App's start-up hook: start warming and return at once (the server answers meanwhile)."""
    threading.Thread(target=warm_up, name="atlas-warm-up", daemon=True).start()
    yield
