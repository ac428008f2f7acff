"""The server's caches: the model, the Trace, and every view derived from a Trace -- one mechanism each.

    trace = views.cached_trace(**views.trace_args(st.session_state))      # one forward pass, shared
    stats = views.derived(every_head, trace, "decoder", what="Reading every head")

`derived(compute, *args)` caches `compute(*args)` under the arguments' identities (a Trace or a model
by its `identity`, anything else by value) in one byte-budgeted cache shared by all sessions; each
value is computed once even when several sessions ask at the same moment. A new page calls it with
its own viz function: no cache function is added to a shared file.

Forward passes wait in one queue per server (public mode: a few at a time, first come first served).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from functools import partial

import streamlit as st

from ui.messages import say
from viz.cache import ByteBudgetCache, default_budgets, nbytes
from viz.errors import AtlasError
from viz.models import CATALOG_BY_KEY, COURSE_EXAMPLES, LoadedModel, load_model
from viz.serving import PassQueue, ServingPolicy
from viz.trace import DEFAULT_MAX_TOKENS, Trace, build_trace, reading_limit

log = logging.getLogger("attention_atlas")

MAX_TOKENS = 32_768  # the Max tokens box's top; the model's own position limit applies too (SmolLM2: 8,192)
DEFAULTS: dict[str, object] = {
    "model": "minilm",
    "text": COURSE_EXAMPLES[0],
    "target": "",
    "max_tokens": DEFAULT_MAX_TOKENS,
    "device": "auto",
    "dtype": "float32",
}


# ------------------------------------------------------------------ serving policy and the pass queue
def policy() -> ServingPolicy:
    return ServingPolicy.from_env()


def token_cap() -> int:
    """The most tokens a pass may read on this server (public mode lowers it)."""
    return policy().token_cap(MAX_TOKENS)


@st.cache_resource(show_spinner=False)
def pass_queue(slots: int | None) -> PassQueue:
    """One queue per server process: every session's forward passes wait in it."""
    return PassQueue(slots)


@contextmanager
def turn(tell: bool = True) -> Iterator[None]:
    """Wait for a free forward-pass slot (public mode), telling the user their place in line.
    (`tell=False` where no page can show the notice, e.g. the warm-up thread.)"""
    notice = st.empty() if tell else None

    def waiting(place: int) -> None:
        if notice is not None:
            notice.info(f"The server is busy: you are number {place} in line for a forward pass.", icon="⏳")

    with pass_queue(policy().concurrent_passes).turn(waiting):
        if notice is not None:
            notice.empty()
        yield


# ------------------------------------------------------------------ the model and the Trace
@st.cache_resource(show_spinner=False, max_entries=4)
def cached_model(key: str, device: str, dtype: str) -> LoadedModel:
    return load_model(key, device, dtype)


@st.cache_resource(show_spinner=False)
def trace_cache() -> ByteBudgetCache[Trace]:
    """Traces of every session of this server, bounded by bytes per device (see viz.cache.default_budgets)."""
    return ByteBudgetCache(default_budgets(), lambda trace: trace.bytes_by_device())


def cached_trace(
    key: str,
    device: str,
    dtype: str,
    text: str,
    target: str,
    max_tokens: int,
    continuation: int = 0,
    question: str = "",
    chat: bool = False,
    ablate: tuple[tuple[str, int, int], ...] = (),
    token_ids: tuple[int, ...] = (),
    target_ids: tuple[int, ...] = (),
    tell: bool = True,
) -> Trace:
    """One forward pass per (model, text, options), shared by every page and every session. Keyed by
    the tokens the pass would actually read: a Max tokens above the text's length is the same pass.
    (`tell=False` outside a page: nobody to tell their place in the queue.)"""
    policy().check_model(key, CATALOG_BY_KEY)
    loaded = cached_model(key, device, dtype)
    limit = reading_limit(loaded, text, min(max_tokens, token_cap()), continuation, question, chat, token_ids, target)
    args = (loaded.identity, text, target, limit, continuation, question, chat, ablate, token_ids, target_ids)

    def build() -> Trace:
        with turn(tell):
            options = (continuation, question, chat, ablate, token_ids, target_ids)
            return build_trace(loaded, text, target or None, limit, *options)

    return trace_cache().get(args, build)


def trace_args(state: Mapping, continuation: int = 0, question: str = "", chat: bool = False) -> dict:
    """`cached_trace`'s arguments for the sidebar's state (a session's, or DEFAULTS for a new visitor)."""
    return dict(
        key=state["model"],
        device=state["device"],
        dtype=state["dtype"],
        text=state["text"],
        target=state["target"].strip(),
        max_tokens=int(state["max_tokens"]),
        continuation=continuation,
        question=question.strip(),
        chat=chat,
    )


def warm_default_trace() -> Trace:
    """The Trace a visitor with no URL parameters sees first: computed at server start (ui.cold_start)."""
    return cached_trace(**trace_args(DEFAULTS), tell=False)


# ------------------------------------------------------------------ views derived from a Trace
@st.cache_resource(show_spinner=False)
def view_cache() -> ByteBudgetCache:
    """Every derived view of every session (head statistics, images, lens readings, continuations...):
    a quarter of the Traces' RAM budget."""
    return ByteBudgetCache(default_budgets()["cpu"] // 4, nbytes)


def _identity(value: object) -> object:
    """How an argument enters a cache key: a Trace or a model by what it was built from."""
    if hasattr(value, "identity"):
        return value.identity
    if isinstance(value, slice):  # unhashable before Python 3.12
        return ("slice", value.start, value.stop, value.step)
    if isinstance(value, list | tuple):
        return tuple(_identity(v) for v in value)
    return value


def _view_key(compute: Callable, args: tuple, kwargs: dict) -> tuple:
    return compute.__module__, compute.__qualname__, _identity(args), _identity(tuple(sorted(kwargs.items())))


def already_derived(compute: Callable, *args: object, **kwargs: object) -> object | None:
    """`derived`'s value if some session has computed it already, else None (nothing is computed)."""
    return view_cache().lookup(_view_key(compute, args, kwargs))[1]


def derived(
    compute: Callable, *args: object, what: str | None = None, queued: bool = False, **kwargs: object
) -> object:
    """`compute(*args, **kwargs)`, cached for every session under the function and the arguments' identities.

    `what`: the computation streams (it takes `progress=`): a progress bar says what it does, the first
    time. `queued`: it runs the model, so it waits its turn in the forward-pass queue."""
    cache = view_cache()
    found, value = cache.lookup(_view_key(compute, args, kwargs))
    if found:
        return value
    run = partial(compute, *args, **kwargs)
    bar = None
    if what is not None:
        bar = st.progress(0.0, text=f"{what}…")
        run = partial(run, progress=lambda done: bar.progress(min(done, 1.0), text=f"{what}: {done:.0%}"))
    if queued:
        inner = run

        def run() -> object:
            with turn(tell=False):
                return inner()

    value = cache.get(_view_key(compute, args, kwargs), run)
    if bar is not None:
        bar.empty()
    return value


# ------------------------------------------------------------------ failures become messages
def safely(message: str, compute: Callable[[], object]) -> object:
    """Run `compute` under a spinner; any failure becomes a message and a stopped page."""
    try:
        with st.spinner(message):
            return compute()
    except AtlasError as err:
        say(st.error, "{message}", message=err)
        st.stop()
    except Exception as err:  # noqa: BLE001 -- whatever a model throws, the page shows a message, not a traceback
        log.exception("trace failed")
        # A library's message may name server paths: a public server keeps it in its log.
        detail = "details are in the server's log" if policy().public else str(err)[:300]
        say(
            st.error,
            "The model could not process this input ({kind}: {detail}).",
            kind=type(err).__name__,
            detail=detail,
        )
        st.stop()
