"""Driving the app in a real browser (Debian's Chromium through Playwright), fully offline."""

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from typing import NamedTuple

import pytest

from tests.conftest import ROOT

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-default-apps",
]
LOCAL = ("http://localhost", "http://127.0.0.1", "ws://localhost", "ws://127.0.0.1", "data:", "blob:", "about:")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server(NamedTuple):
    url: str
    pid: int  # for memory and CPU figures (bench/bench_load.py)


@contextlib.contextmanager
def running_app(script: str = "app.py", **env: str):
    """`streamlit run app.py` (or another script) on a free port, with extra environment variables;
    yields the Server."""
    port = _free_port()
    log = tempfile.TemporaryFile(mode="w+")  # the server's output, printed if the test fails
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", script, "--server.port", str(port), "--server.headless", "true"],
        cwd=ROOT,
        env={**os.environ, "HF_HUB_OFFLINE": "1", **env},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://localhost:{port}"
    try:
        for _ in range(120):
            try:
                if urllib.request.urlopen(f"{url}/_stcore/health", timeout=1).read() == b"ok":
                    break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail("streamlit did not start")
        yield Server(url, proc.pid)
    except BaseException:
        log.seek(0)
        print(f"--- streamlit run {script} ({env}) printed:\n{log.read()[-6000:]}")
        raise
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        log.close()


def open_page(chromium, url: str):
    """A new page that records every request leaving localhost and every JS dialog."""
    page = chromium.new_page(viewport={"width": 1400, "height": 1000})
    page.external, page.dialogs = [], []
    page.on("request", lambda r: None if r.url.startswith(LOCAL) else page.external.append(r.url))
    page.on("dialog", lambda d: (page.dialogs.append(d.message), d.dismiss()))
    page.goto(url)
    return page


def wait_until_idle(page) -> None:
    """Until Streamlit has finished running the script (its status widget is gone) and the page settled."""
    page.wait_for_function(
        "() => { const app = document.querySelector('[data-testid=\"stApp\"]');"
        " return app && app.getAttribute('data-test-script-state') === 'notRunning'; }",
        timeout=120_000,
    )
    page.wait_for_timeout(300)


# Distinct one-token words: session i's text names WORDS[i], so its map must show that word and no other's.
WORDS = ("cat", "dog", "bird", "fish", "horse", "cow", "lion", "tiger", "bear", "wolf", "fox", "duck", "goat")
WORDS += ("sheep", "mouse", "frog", "snake", "owl", "bee", "ant")


def concurrent_sessions(url: str, model: str, sessions: int, timeout_s: float = 600, first_word: int = 0) -> list[dict]:
    """Open `sessions` browser sessions at once, each with its own text, and wait for each first map.

    Returns per session: seconds from navigation to its first heatmap, the animal words its map shows,
    and any traceback or error box. Runs asyncio Playwright so the sessions really overlap."""
    import asyncio
    import concurrent.futures
    import urllib.parse

    from playwright.async_api import async_playwright

    async def one(browser, i: int) -> dict:
        page = await browser.new_page(viewport={"width": 1400, "height": 1000})
        text = f"the {WORDS[i]} sat on the mat"
        start = time.perf_counter()
        page.set_default_timeout(timeout_s * 1000)  # 16 sessions on 2 cores take longer than 30 s to load
        await page.goto(f"{url}/?{urllib.parse.urlencode({'model': model, 'text': text})}")
        await page.wait_for_selector(".js-plotly-plot .heatmaplayer")
        seconds = time.perf_counter() - start
        labels = await page.locator(".js-plotly-plot").first.inner_text()
        boxes = page.locator("[data-testid=stException], [data-testid=stAlertContentError]")
        errors = await boxes.all_inner_texts()
        await page.close()
        shown = {word for word in WORDS if word in labels.split()}
        return dict(session=i, word=WORDS[i], seconds=round(seconds, 2), words_shown=sorted(shown), errors=errors)

    async def run() -> list[dict]:
        async with async_playwright() as p:
            browser = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                return await asyncio.gather(*(one(browser, first_word + i) for i in range(sessions)))
            finally:
                await browser.close()

    # A thread of its own: a sync Playwright (the module's `chromium` fixture) keeps a loop running here.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, run()).result()
