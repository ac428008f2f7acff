"""What every page starts with: its title and the links to every page, then the sidebar's Trace.

    page.setup("Model view")
    trace = page.current_trace()        # the sidebar's model and text, one cached forward pass

Pages are found, not listed: the first page, then `pages/N_Name.py` in the order of N, each linked
as "Name" (the first line of its docstring is the link's tooltip). A new page is one new file.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import streamlit as st

from ui import presenter, widgets
from ui.cold_start import page_config
from ui.messages import literal, say, say_cut, size_text
from ui.sidebar import Sidebar, from_url, length_box, sidebar, target_box
from ui.views import cached_model, cached_trace, derived, safely, token_cap, trace_args, trace_cache
from viz.architectures import DECODER
from viz.contributions import contribution_maps
from viz.errors import AtlasError
from viz.models import CATALOG_BY_KEY, CAUSAL_LM, LoadedModel, needs_slow_first_load, prepare_first_load
from viz.share import COPY_LINK_HEIGHT, copy_link_html
from viz.tokens import unknown_words
from viz.trace import Trace, token_limit

ROOT = Path(__file__).resolve().parent.parent
FIRST_PAGE = ("attention_maps.py", "Attention maps")


@cache
def pages() -> tuple[tuple[str, str, str], ...]:
    """(path, label, tooltip) of every page, in menu order."""
    found = [(*FIRST_PAGE, "One head's map beside the mean over heads.")]
    files = sorted((ROOT / "pages").glob("*.py"), key=lambda p: (int(p.name.split("_")[0]), p.name))
    for file in files:
        doc = ast.get_docstring(ast.parse(file.read_text(encoding="utf-8"))) or ""
        label = file.stem.split("_", 1)[1].replace("_", " ")
        found.append((f"pages/{file.name}", label, doc.split("\n")[0]))
    return tuple(found)


def setup(title: str) -> None:
    """The page's title, the URL's view (first run of a session), and the links to every page."""
    page_config(title)
    from_url()
    widgets.keep_values()
    widgets.fresh_url()
    with st.sidebar:
        st.markdown("### 🔭 Attention Atlas")
        st.iframe(copy_link_html(), height=COPY_LINK_HEIGHT)
        presenter.switch()
        for path, label, tooltip in pages():
            st.page_link(path, label=label, help=tooltip or None)
    st.title(title)


@dataclass(frozen=True)
class Offer:
    """A page that shows only some families: which, and the offline model it offers for the others."""

    families: tuple[str, ...]
    key: str  # a catalog model
    example: int  # which of its examples
    reason: str


def _switch_model(key: str, example: int) -> None:
    st.session_state["model_choice"] = key
    st.session_state["text"] = CATALOG_BY_KEY[key].examples[example]


def _offer_model(offer: Offer) -> None:
    """This page can't show the sidebar's model: say why and offer a one-click switch to an offline
    model. Never switch silently -- a teacher's model and text stay theirs until they click."""
    st.info(offer.reason)
    entry = CATALOG_BY_KEY[offer.key]
    st.button(
        f"Open on {entry.label.split(' · ')[0]} with “{entry.examples[offer.example]}”",
        on_click=_switch_model,
        args=(offer.key, offer.example),
        key="offer_model",
    )
    st.stop()


@cache
def recurrent_pages() -> tuple[tuple[str, str, str], ...]:
    """The pages that read a recurrent model (those calling `current_trace(recurrent=True)`)."""

    def reads_rnns(path: str) -> bool:
        calls = ast.walk(ast.parse((ROOT / path).read_text(encoding="utf-8")))
        return any(k.arg == "recurrent" and getattr(k.value, "value", False) is True
                   for node in calls if isinstance(node, ast.Call) for k in node.keywords)  # fmt: skip

    return tuple(p for p in pages() if reads_rnns(p[0]))


def _needs_layers(loaded: LoadedModel) -> None:
    """A page about layers × heads on a recurrent model: say why it doesn't apply, link the pages that do."""
    say(
        st.info,
        "{model} is a recurrent encoder-decoder: it has one attention (α, Bahdanau et al. 2015), or none, and no "
        "layers or heads of self-attention, so this page does not apply. These pages read it:",
        model=loaded.name,
    )
    for path, label, tooltip in recurrent_pages():
        st.page_link(path, label=label, help=tooltip or None)
    st.stop()


def continuation_slider() -> int:
    """How many tokens a decoder-only model writes after the text before the pass reads both."""
    return widgets.slider("Tokens to generate after the prompt", 1, 64, key="continuation", default=16)


def _model_options(loaded: LoadedModel, slots: Sidebar, generate: bool) -> dict:
    """The settings only some models take, drawn once the model says what it is: a target (encoder-decoders),
    a question (QA heads), a chat turn (instruct decoders), Max tokens (up to the model's limit), and a
    continuation (decoders on pages that read one)."""
    target_box(slots.model_options, loaded.family)
    length_box(slots.length, token_limit(loaded, token_cap()))
    question, chat = "", False
    if loaded.head.name == "question-answering":
        with slots.model_options:
            question = widgets.text_input("Question (the text above is the context)", key="question")
    if loaded.head == CAUSAL_LM and getattr(loaded.tokenizer, "chat_template", None):
        with slots.model_options:
            chat = widgets.checkbox(
                "Wrap as a chat turn", key="chat", help="Put the text in the model's chat template, as a user message."
            )
    continuation = continuation_slider() if generate and loaded.family == DECODER else 0
    return dict(continuation=continuation, question=question, chat=chat)


def current_trace(generate: bool = False, offer: Offer | None = None, recurrent: bool = False) -> Trace:
    """The sidebar's Trace, or a message and a stopped page.

    `generate`: a decoder-only model first writes a continuation (its length asked for here, once the
    loaded model -- not the catalog -- says it is a decoder: hub ids and directories are decoders too).
    `offer`: for a model of another family, the page offers its model instead, before any forward pass.
    `recurrent`: the page reads a recurrent model's Trace too (its one attention, its states, its logits); other
    pages say why they don't apply to one.
    """
    slots = sidebar()
    key = slots.model
    if not key:
        st.info("Enter a model id or directory in the sidebar.")
        st.stop()
    ss = st.session_state

    def compute() -> Trace:
        if needs_slow_first_load(key):  # real progress, tensor by tensor, instead of a promise
            bar = st.progress(0.0, text="Preparing SmolLM2 for its first use…")
            prepare_first_load(key, lambda done, what: bar.progress(done, text=what))  # a disk cache, not st's
            bar.empty()
        loaded = cached_model(key, ss["device"], ss["dtype"])
        if not (recurrent or loaded.adapter.layered):
            _needs_layers(loaded)
        if offer is not None and loaded.family not in offer.families:
            _offer_model(offer)
        ss["current_trace_args"] = trace_args(ss, **_model_options(loaded, slots, generate))
        return cached_trace(**ss["current_trace_args"])

    first_use = "First use of SmolLM2: its packaged GGUF weights are converted once, then kept"
    trace = safely(first_use if needs_slow_first_load(key) else f"Running {literal(key)}…", compute)
    _describe(trace)
    return trace


def sidebar_only() -> None:
    """The sidebar on a page that reads its text with other models (Encoder vs decoder): Max tokens still
    stops at the sidebar model's limit, as on every other page."""
    slots = sidebar()
    ss = st.session_state
    try:
        limit = token_limit(cached_model(slots.model, ss["device"], ss["dtype"]), token_cap())
    except Exception:  # noqa: BLE001 -- a model that doesn't load (a typo'd hub id) still leaves the page usable
        limit = token_cap()
    length_box(slots.length, limit)


def session_limit() -> int:
    """The most tokens this session's pass may read: Max tokens, the server's cap, the model's positions."""
    return token_limit(current_model(), min(int(st.session_state["max_tokens"]), token_cap()))


def _say_unknown_words(trace: Trace) -> None:
    """Words the model has no token for are read as its unknown token: name them, as every view shows <unk>."""
    tokenizer = current_model().tokenizer
    unknown = unknown_words(tokenizer, trace.text)
    if trace.target_text:
        unknown += [w for w in unknown_words(tokenizer, trace.target_text, target=True) if w not in unknown]
    if unknown:
        shown = ", ".join(f"“{word}”" for word in unknown[:12]) + (" …" if len(unknown) > 12 else "")
        say(
            st.warning,
            "{model} does not know {count}: {words}. It reads each as {unk}, so the maps show {unk} there and "
            "what the model makes of it means little. Pick one of the model's own examples in the sidebar.",
            model=trace.model_name,
            count=f"{len(unknown)} word" + ("s" if len(unknown) > 1 else "") + " of this text",
            words=shown,
            unk=tokenizer.unk_token,
        )


def _describe(trace: Trace) -> None:
    """What was cut, words the model can't read, and one caption: model, device, timings, tokens and memory."""
    _say_unknown_words(trace)
    limit = session_limit()
    if trace.dropped_tokens:
        st.warning(
            f"The text is longer than {limit:,} tokens: the last {trace.dropped_tokens} tokens were dropped. "
            "Raise 'Max tokens' in the sidebar (up to the model's limit) to see more."
        )
    asked = st.session_state["current_trace_args"]["continuation"]
    read = len(trace.tokens["source"])
    if read - trace.prompt_length < asked and read >= trace.token_limit:
        say_cut(limit, read - trace.prompt_length, asked)
    timings = " · ".join(f"{name} {ms:.0f} ms" for name, ms in trace.timings_ms.items() if ms)
    cache = trace_cache()
    used = cache.used_by_device()
    memory = " · ".join(
        f"{device}: trace {size_text(size)}, cache {size_text(used[device])} of {size_text(cache.budgets[device])}"
        for device, size in trace.bytes_by_device().items()
        if size and device in cache.budgets
    )
    say(
        st.caption,
        f"**{{model}}** ({{model_class}}, {trace.family}) · device **{trace.device}** ({trace.dtype}) · {timings} · "
        f"{len(trace.tokens['source'])} tokens (limit {limit:,}) · {memory}",
        model=trace.model_name,
        model_class=trace.model_class,
    )


def contribution_maps_of(trace: Trace, stack_name: str, layer: int) -> np.ndarray | None:
    """Every head's contributions at one layer (the Contributions page's numbers, cached), or None and a message
    saying why they can't be had here (a long text, an architecture the adapter table doesn't describe)."""
    try:
        return derived(contribution_maps, current_model(), trace, stack_name, layer, what="Every query's contributions")
    except AtlasError as err:
        say(st.info, "{message} The maps show attention weights instead.", message=err)
        return None


def current_model() -> LoadedModel:
    """The sidebar's model (already loaded by `current_trace`)."""
    ss = st.session_state
    return cached_model(ss["model"], ss["device"], ss["dtype"])


def output_text(trace: Trace) -> str:
    """What a Trace's decoder wrote (or was given), as its own model's tokenizer decodes it."""
    ss = st.session_state
    tokenizer = cached_model(trace.model_key, ss["device"], ss["dtype"]).tokenizer
    return tokenizer.decode(trace.output_tokens.ids.tolist(), skip_special_tokens=True)


def variant(**changes) -> Trace:
    """The page's Trace input run again with some options changed (e.g. `ablate=...`), cached alike."""
    args = {**st.session_state["current_trace_args"], **changes}
    return safely("Running the model again…", lambda: cached_trace(**args))


def trace_for(text: str, model: str | None = None, target: str = "", **options) -> Trace:
    """A Trace of another text (or another model, or with a target to force; `options` as `cached_trace` takes
    them: token ids, ablated heads) with the sidebar's settings, cached like the main one."""
    ss = st.session_state
    key = model or ss["model"]
    return cached_trace(key, ss["device"], ss["dtype"], text, target, int(ss["max_tokens"]), **options)
