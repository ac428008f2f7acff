"""A freshly started server: the warm-up at start (app.py's st.App lifespan) and the first page's
frame while the model stack is still importing (ui/cold_start.py)."""

import os

import pytest

from tests.apptest import problems, run_page
from tests.browser import CHROMIUM, wait_until_idle
from ui import cold_start, views

WAITING = b"Starting up: importing PyTorch"


def test_warm_up_computes_the_trace_a_new_visitor_reads():
    views.trace_cache().clear()
    cold_start.warm_up()
    assert len(views.trace_cache()) == 1
    at = run_page()  # no URL parameters: a new visitor's first page
    assert not problems(at)
    assert at.session_state["current_trace_args"] == views.trace_args(views.DEFAULTS)
    assert len(views.trace_cache()) == 1  # the page read the warmed Trace: no second forward pass
    assert len(at.get("plotly_chart")) == 3  # the head, the mean over heads, one query's line


def test_a_failed_warm_up_is_logged_and_the_page_still_serves(monkeypatch, caplog):
    def refuse() -> None:
        raise RuntimeError("no default model here")

    monkeypatch.setattr(views, "warm_default_trace", refuse)
    cold_start.warm_up()  # must not raise: it runs in the server's start-up thread
    assert "warm-up at server start failed" in caplog.text
    monkeypatch.undo()
    assert not problems(run_page(model="minilm", text="The cat sat on the mat."))


@pytest.mark.browser
@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Debian chromium is not installed")
def test_a_cold_first_page_draws_a_waiting_chart_then_only_its_own_content(chromium):
    from tests.browser import running_app

    # The first page run directly (no st.App, so no warm-up): its own script imports the stack, always
    # after sending the waiting chart -- the browser must receive it, then see it replaced by the page.
    with running_app("attention_maps.py") as server:
        page = chromium.new_page(viewport={"width": 1440, "height": 900})
        frames: list[bytes] = []
        page.on("websocket", lambda ws: ws.on("framereceived", lambda data: frames.append(data)))
        page.goto(server.url)
        page.wait_for_selector(".js-plotly-plot .heatmaplayer", timeout=120_000)
        wait_until_idle(page)
        assert any(isinstance(f, bytes) and WAITING in f for f in frames)
        assert page.get_by_text("Starting up").count() == 0
        assert page.locator("h1").all_inner_texts() == ["Attention maps"]
        assert page.locator(".js-plotly-plot").count() == 3  # the page's own charts only
        assert page.locator(".js-plotly-plot .heatmaplayer").count() == 2
        page.close()
