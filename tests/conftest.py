import os
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Corpus runs of the tests go to a folder of their own, never the developer's (~/.cache/attention-atlas/corpus).
os.environ["ATLAS_CORPUS_DIR"] = tempfile.mkdtemp(prefix="atlas-corpus-")

from tests.tiny import TINY, build_tiny  # noqa: E402
from viz.models import load_model  # noqa: E402


@pytest.fixture(scope="session")
def tiny_dirs(tmp_path_factory) -> dict[str, Path]:
    """Every tiny architecture saved once per test session."""
    return {name: build_tiny(name, tmp_path_factory.mktemp(name)) for name in TINY}


@pytest.fixture(scope="session")
def minilm():
    return load_model("minilm")


@pytest.fixture(scope="session")
def smollm2():
    return load_model("smollm2")


@pytest.fixture(scope="session")
def app_url():
    """One app server for every browser test of the session (a server per module cost ~10 s each)."""
    from tests.browser import running_app

    with running_app() as server:
        yield server.url


@pytest.fixture(scope="session")
def chromium():
    from playwright.sync_api import sync_playwright

    from tests.browser import CHROMIUM, CHROMIUM_ARGS

    with sync_playwright() as p:
        instance = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield instance
        instance.close()
