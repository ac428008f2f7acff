"""What every page shares: URL state, the sidebar, the cached model and the cached Trace.

Pages call `page_setup(title)` then `current_trace()`; both stop the page with a readable
message on bad input, never a traceback.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import streamlit as st
import torch
import transformers

from ui import widgets
from ui.cold_start import page_config
from viz import export, figures, predictions
from viz.architectures import DECODER, ENCODER_DECODER
from viz.bertviz_views import head_view_html, model_view_html
from viz.cache import GIB, ByteBudgetCache, default_budgets
from viz.errors import AtlasError
from viz.heads import PATTERNS, HeadScores, Rule, head_scores
from viz.induction import Probe
from viz.lens import Lens, logit_lens
from viz.models import (
    CATALOG,
    CATALOG_BY_KEY,
    COURSE_EXAMPLES,
    SPREAD,
    LoadedModel,
    load_model,
    needs_slow_first_load,
    prepare_first_load,
)
from viz.mosaic import Mosaic, attention_mosaic
from viz.serving import PassQueue, ServingPolicy
from viz.tokens import OVERVIEW_CELLS, MatrixView, TokenOptions, TokenSeq, crop_view, pool_view
from viz.trace import DEFAULT_MAX_TOKENS, AttentionStack, Trace, build_trace

transformers.logging.set_verbosity_error()
transformers.utils.logging.disable_progress_bar()
log = logging.getLogger("attention_atlas")

PAGES = (
    ("attention_maps.py", "Attention maps"),
    ("pages/1_Model_view.py", "Model view (all heads)"),
    ("pages/2_bertviz.py", "bertviz head & model view"),
    ("pages/3_Neuron_view.py", "Neuron view (q · k step by step)"),
    ("pages/4_Alignment.py", "Alignment"),
    ("pages/5_Predictions.py", "Predictions (the model head)"),
    ("pages/6_Hidden_states.py", "Hidden states & logit lens"),
    ("pages/7_Head_roles.py", "Head roles & rollout"),
    ("pages/8_Encoder_vs_decoder.py", "Encoder vs decoder"),
    ("pages/9_Head_ablation.py", "Head ablation"),
    ("pages/11_Induction_probe.py", "Induction probe"),
    ("pages/12_Head_beside_head.py", "Head beside head"),
    ("pages/10_Guided_walk.py", "Guided walk: RNN → attention"),
)
STACK_LABELS = {"encoder": "encoder self-attention", "decoder": "decoder self-attention", "cross": "cross-attention"}
OTHER_HUB, LOCAL_DIR = "__hub__", "__path__"
DEFAULTS: dict[str, object] = {
    "model": "minilm",
    "text": COURSE_EXAMPLES[0],
    "target": "",
    "max_tokens": DEFAULT_MAX_TOKENS,
    "device": "auto",
    "dtype": "float32",
}


MAX_TOKENS_RANGE = (4, 32_768)  # the model's own position limit applies too (SmolLM2: 8,192)
TEXT_LIMIT = 200_000  # characters the text box takes (Max tokens bounds the work, this the session state)


# ------------------------------------------------------------------ URL state
def _from_url() -> None:
    """On a session's first run, take the view from the URL (a copied URL reopens the same view): the
    model now, since it decides which picker the sidebar shows; each widget takes its own value when
    it is drawn (ui.widgets), so unknown keys are simply never read."""
    if st.session_state.get("_url_loaded"):
        return
    st.session_state["_url_loaded"] = True
    params = st.query_params.to_dict()
    model = params.pop("model", DEFAULTS["model"])
    st.session_state["model"] = model
    if model in _model_choices():
        st.session_state["model_choice"] = model
    elif policy().public:  # a public server serves its list only: the default model, and a note why
        st.session_state["model"], st.session_state["refused_model"] = DEFAULTS["model"], model
    elif model.startswith("hub:"):
        st.session_state["model_choice"], st.session_state["hub_id"] = OTHER_HUB, model[4:]
    elif model.startswith("path:"):
        st.session_state["model_choice"], st.session_state["local_dir"] = LOCAL_DIR, model[5:]
    elif model:  # a bare id in a hand-written URL: treat it as a hub model id
        st.session_state["model_choice"], st.session_state["hub_id"] = OTHER_HUB, model
    widgets.start_session(params)
    for key, value in DEFAULTS.items():
        st.session_state.setdefault(key, value)


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


def page_setup(title: str) -> None:
    page_config(title)
    _from_url()
    widgets.keep_values()
    with st.sidebar:
        st.markdown("### 🔭 Attention Atlas")
        for path, label in PAGES:
            st.page_link(path, label=label)
    st.title(title)


# ------------------------------------------------------------------ serving policy (see viz.serving)
def policy() -> ServingPolicy:
    return ServingPolicy.from_env()


@st.cache_resource(show_spinner=False)
def pass_queue(slots: int | None) -> PassQueue:
    """One queue per server process: every session's forward passes wait in it."""
    return PassQueue(slots)


@contextmanager
def _turn(tell: bool = True) -> Iterator[None]:
    """Wait for a free forward-pass slot (public mode), telling the user their place in line.
    (`tell=False` inside st.cache_data functions, which would replay the notice on every hit.)"""
    notice = st.empty() if tell else None

    def waiting(place: int) -> None:
        if notice is not None:
            notice.info(f"The server is busy: you are number {place} in line for a forward pass.", icon="⏳")

    with pass_queue(policy().concurrent_passes).turn(waiting):
        if notice is not None:
            notice.empty()
        yield


def _max_tokens_range() -> tuple[int, int]:
    lo, hi = MAX_TOKENS_RANGE
    return lo, policy().token_cap(hi)


# ------------------------------------------------------------------ sidebar
def _model_choices() -> list[str]:
    """The model picker's options: the catalog, then free choice (local run) or the allowlist (public mode)."""
    serving = policy()
    extra = [f"hub:{hub_id}" for hub_id in serving.allowed_hub_ids] if serving.public else [OTHER_HUB, LOCAL_DIR]
    return [entry.key for entry in CATALOG] + extra


def _model_label(choice: str) -> str:
    if choice == OTHER_HUB:
        return "Other Hugging Face hub model…"
    if choice == LOCAL_DIR:
        return "Local model directory…"
    if choice.startswith("hub:"):
        return f"{choice[4:]} (hub)"
    return CATALOG_BY_KEY[choice].label


def _set_example() -> None:
    st.session_state["text"] = st.session_state["example"]


def _device_options() -> list[str]:
    options = ["auto", "cpu"]
    if torch.cuda.is_available():
        options += ["cuda", SPREAD]
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        options.append("mps")
    return options


def sidebar() -> str:
    """Draw the shared sidebar; returns the chosen model key."""
    with st.sidebar:
        if "refused_model" in st.session_state:
            say(
                st.warning,
                "This server only offers the models listed here, not {model}.",
                model=st.session_state.pop("refused_model"),
            )
        # The URL holds the choice as "model" (written below): the picker and its boxes stay out of it.
        choice = widgets.selectbox(
            "Model", _model_choices(), key="model_choice", format_func=_model_label, in_url=False
        )
        if choice == OTHER_HUB:
            hub_id = widgets.text_input("Hub model id", key="hub_id", placeholder="e.g. bert-base-cased", in_url=False)
            st.session_state["model"] = f"hub:{hub_id.strip()}" if hub_id.strip() else ""
        elif choice == LOCAL_DIR:
            path = widgets.text_input("Directory", key="local_dir", placeholder="/path/to/model", in_url=False)
            st.session_state["model"] = f"path:{path.strip()}" if path.strip() else ""
        else:
            st.session_state["model"] = choice
        widgets.remember("model")
        entry = CATALOG_BY_KEY.get(choice)
        examples = list(dict.fromkeys((*(entry.examples if entry else ()), *COURSE_EXAMPLES)))
        st.selectbox(
            "Examples", examples, index=None, placeholder="Load an example…", key="example", on_change=_set_example
        )
        text = widgets.text_input(
            "Text", key="text", default=DEFAULTS["text"], area=True, height=100, max_chars=TEXT_LIMIT
        )
        if len(text) >= TEXT_LIMIT:  # the browser cut a longer paste without a word
            st.caption(f"The text box holds at most {TEXT_LIMIT:,} characters: the rest of the paste was not kept.")
        if len(text) > widgets.URL_TEXT_LIMIT:
            st.caption("This text is too long for the page's link: a copied URL will not carry it.")
        if entry is None or entry.family == ENCODER_DECODER:
            widgets.text_input(
                "Target text (encoder-decoders)",
                key="target",
                help="Leave empty to let the model generate its own output; type a translation to see "
                "how the model aligns it (forced decoding).",
            )
        with st.expander("Length and device"):
            lo, hi = _max_tokens_range()
            widgets.number_input(
                "Max tokens", lo, hi, key="max_tokens", default=min(hi, DEFAULTS["max_tokens"]), step=16
            )
            device = widgets.selectbox(
                "Device",
                _device_options(),  # a URL from a GPU machine asks for "cuda": this one offers what it has
                key="device",
                format_func=lambda d: "all GPUs (device_map=auto)" if d == SPREAD else d,
                help="'all GPUs' spreads a model too large for one GPU over every GPU (and the CPU) with accelerate.",
            )
            if device != "cpu" and _device_options() != ["auto", "cpu"]:
                widgets.selectbox("Precision", ["float32", "float16", "bfloat16"], key="dtype")
    return st.session_state["model"]


# ------------------------------------------------------------------ cached model and trace
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
    tell: bool = True,
) -> Trace:
    """One forward pass per (model, text, options), shared by every page and every session.
    (`tell=False` outside a page: nobody to tell their place in the queue.)"""
    policy().check_model(key, CATALOG_BY_KEY)
    max_tokens = min(max_tokens, _max_tokens_range()[1])
    args = (key, device, dtype, text, target, max_tokens, continuation, question, chat, ablate, token_ids)

    def build() -> Trace:
        loaded = cached_model(key, device, dtype)
        with _turn(tell):
            return build_trace(
                loaded, text, target or None, max_tokens, continuation, question, chat, ablate, token_ids
            )

    return trace_cache().get(args, build)


def size_text(nbytes: int) -> str:
    return f"{nbytes / GIB:.2f} GB" if nbytes >= GIB / 10 else f"{nbytes / (1 << 20):.1f} MB"


def _safely(message: str, compute):
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


def continuation_slider() -> int:
    """How many tokens a decoder-only model writes after the text before the pass reads both."""
    return widgets.slider("Tokens to generate after the prompt", 1, 64, key="continuation", default=16)


def current_trace(generate: bool = False, offer: Offer | None = None) -> Trace:
    """The sidebar's Trace, or a message and a stopped page.

    `generate`: a decoder-only model first writes a continuation (its length asked for here, once the
    loaded model -- not the catalog -- says it is a decoder: hub ids and directories are decoders too).
    `offer`: for a model of another family, the page offers its model instead, before any forward pass.
    """
    key = sidebar()
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
        if offer is not None and loaded.family not in offer.families:
            _offer_model(offer)
        question, chat = "", False
        if loaded.head.name == "question-answering":
            with st.sidebar:
                question = widgets.text_input("Question (the text above is the context)", key="question")
        if loaded.head.name == "causal-lm" and getattr(loaded.tokenizer, "chat_template", None):
            with st.sidebar:
                chat = widgets.checkbox(
                    "Wrap as a chat turn",
                    key="chat",
                    help="Put the text in the model's chat template, as a user message.",
                )
        continuation = continuation_slider() if generate and loaded.family == DECODER else 0
        args = trace_args(ss, continuation, question, chat)
        ss["current_trace_args"] = args
        return cached_trace(**args)

    first_use = "First use of SmolLM2: its packaged GGUF weights are converted once, then kept"
    trace = _safely(first_use if needs_slow_first_load(key) else f"Running {literal(key)}…", compute)
    if trace.dropped_tokens:
        st.warning(
            f"The text is longer than {trace.token_limit} tokens: the last {trace.dropped_tokens} tokens "
            "were dropped. Raise 'Max tokens' in the sidebar (up to the model's limit) to see more."
        )
    asked, made = ss["current_trace_args"]["continuation"], len(trace.tokens["source"]) - trace.prompt_length
    if made < asked and len(trace.tokens["source"]) >= trace.token_limit:
        say_cut(trace.token_limit, made, asked)
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
        f"{len(trace.tokens['source'])} tokens (limit {trace.token_limit:,}) · {memory}",
        model=trace.model_name,
        model_class=trace.model_class,
    )
    return trace


# ------------------------------------------------------------------ shared selectors
def one_of_stacks(names: list[str], key: str, label: str = "Stack", **kwargs) -> str:
    """Pick one of a model's stacks; a model with a single stack needs no picker."""
    if len(names) == 1:
        return names[0]
    return widgets.radio(label, names, key=key, horizontal=True, **kwargs)


def stack_picker(trace: Trace) -> str:
    """Which attention to show: encoder / decoder / cross (cross first where there is one)."""
    names = trace.stack_names
    default = names[-1] if "cross" in names else names[0]
    return one_of_stacks(names, "stack", "Attention", default=default, format_func=STACK_LABELS.get)


def token_picker(label: str, tokens: TokenSeq, key: str, default: int = 0) -> int:
    """Pick one token position (kept in the URL); `default` on a first visit."""
    format_token = lambda i: f"{i}: {tokens.display[i]}"  # noqa: E731
    return int(widgets.select_slider(label, range(len(tokens)), key=key, default=default, format_func=format_token))


def layer_head_picker(stack: AttentionStack) -> tuple[int, int]:
    left, right = st.columns(2)
    layer = widgets.slider("Layer", 0, stack.n_layers - 1, key="layer", place=left)
    help_text = None
    if stack.kv_heads < stack.n_heads:
        group = stack.n_heads // stack.kv_heads
        help_text = f"Grouped-query attention: each run of {group} query heads shares one key/value head."
    head = widgets.slider("Head", 0, stack.n_heads - 1, key="head", place=right, help=help_text)
    return int(layer), int(head)


@st.cache_resource(show_spinner=False)
def view_cache() -> ByteBudgetCache:
    """Views that stream every head of a Trace (Model view image, head statistics): seconds to compute
    at thousands of tokens, small to keep. Keyed by the Trace's full identity."""
    return ByteBudgetCache(256 << 20, lambda value: getattr(value, "nbytes", 1 << 20))


def _streamed(key: tuple, what: str, compute) -> object:
    """A cached view of every head, computed with a progress bar that counts layers."""
    cache = view_cache()
    if key in cache:
        return cache.get(key, compute)
    bar = st.progress(0.0, text=f"{what}…")
    value = cache.get(key, lambda: compute(lambda done: bar.progress(done, text=f"{what}: {done:.0%} of the layers")))
    bar.empty()
    return value


def cached_mosaic(trace: Trace, stack: str) -> Mosaic:
    s = trace.stacks[stack]
    what = f"Drawing {s.n_layers} layers × {s.n_heads} heads from q and k"
    return _streamed(("mosaic", trace.identity, stack), what, lambda progress: attention_mosaic(s, progress=progress))


def cached_head_scores(
    trace: Trace,
    stack: str,
    exclude_first: bool = False,
    rows: tuple[int, int] | None = None,
    custom: tuple[tuple[str, str], Rule] | None = None,
) -> HeadScores:
    """Every head's pattern scores (viz.heads), over query rows [rows[0], rows[1]) or all; `custom` scores one
    pattern instead of the standard ones: ((kind, parameter) naming it in the cache key, its rule)."""
    s = trace.stacks[stack]
    ids = trace.tokens[s.queries_from].ids
    patterns = {custom[0][0]: custom[1]} if custom else PATTERNS
    span = slice(*rows) if rows else slice(None)
    key = ("scores", trace.identity, stack, exclude_first, rows, custom[0] if custom else None)
    what = f"Scoring {s.n_layers} layers × {s.n_heads} heads"
    return _streamed(key, what, lambda progress: head_scores(s, ids, patterns, span, exclude_first, progress))


@st.cache_data(show_spinner=False, max_entries=16)
def cached_bertviz(identity: tuple, view: str, layer: int, _trace: Trace) -> str:
    return head_view_html(_trace, layer) if view == "head" else model_view_html(_trace)


_TOKEN_FLAGS = {
    "hide_special": ("Hide special tokens", "[CLS], [SEP], </s>, …"),
    "hide_first": ("Hide first token", "Many heads park attention on the first token (an 'attention sink')."),
    "renormalize": ("Renormalise rows", "After hiding columns, rescale each row to sum to 1 again."),
    "merge_words": (
        "Merge subwords into words",
        "A word attends with the mean of its pieces' rows and receives the sum over its pieces' columns.",
    ),
    "value_weighted": (
        "Weigh by what moves: ‖α·f(v)‖",
        "Kobayashi et al. (2020): each weight times the size of what the head moves from that token, "
        "‖v_j · W_O‖ (its value through the head's slice of the output projection). A token that gets much "
        "attention but carries a near-zero vector (often the first token) fades.",
    ),
}


def token_options(merge: bool = True, value_weighted: bool = True) -> TokenOptions:
    """The per-view token filters (kept in the URL like the rest of the view); `merge` and
    `value_weighted` offer those two where the page can compute them."""
    flags = [f for f in _TOKEN_FLAGS if (merge or f != "merge_words") and (value_weighted or f != "value_weighted")]
    with st.expander("Token options"):
        chosen = {
            flag: widgets.checkbox(_TOKEN_FLAGS[flag][0], key=flag, place=col, help=_TOKEN_FLAGS[flag][1])
            for col, flag in zip(st.columns(len(flags)), flags, strict=True)
        }
    return TokenOptions(**chosen)


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


Region = tuple[tuple[int, int], tuple[int, int]]


def zoom_picker(rows: TokenSeq, cols: TokenSeq) -> Region | None:
    """Query and key ranges (token positions) to draw at full resolution; only for matrices too large
    to draw cell by cell. Shared by the maps of a page, so side-by-side maps show the same region."""
    if max(len(rows), len(cols)) <= OVERVIEW_CELLS:
        return None
    region = []
    with st.expander(f"Zoom: {len(rows):,} × {len(cols):,} tokens", expanded=True):
        for key, label, seq in (("zoom_rows", "Queries (rows)", rows), ("zoom_cols", "Keys (columns)", cols)):
            whole = (0, len(seq) - 1)
            region.append(tuple(widgets.slider(label, *whole, key=key, default=whole)))
        st.caption(
            f"Drawn at full resolution when both ranges span at most {OVERVIEW_CELLS} tokens; larger regions "
            "are max-pooled (each cell shows the largest weight in its block, so a sharp head stays visible)."
        )
    return region[0], region[1]


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
    peaks = [float(np.max(s.weights, where=~s.masked, initial=0.0)) for s in shown.values()]
    for column, key, (title, view) in zip(st.columns(len(shown)), keys, shown.items(), strict=True):
        with column:
            _draw(view, title, key, zmax=None if own else max(peaks) or 1.0)
    return shown


def _draw(shown: MatrixView, title: str, key: str, **kwargs) -> MatrixView:
    if shown.pooled > 1:
        title += f" · max-pooled {shown.pooled}×{shown.pooled}"
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
    st.plotly_chart(fig, key=key, config={"toImageButtonOptions": {"format": "png", "filename": key, "scale": 2}})
    return shown


def _switch_model(key: str, example: int) -> None:
    st.session_state["model_choice"] = key
    st.session_state["text"] = CATALOG_BY_KEY[key].examples[example]


@dataclass(frozen=True)
class Offer:
    """A page that shows only some families: which, and the offline model it offers for the others."""

    families: tuple[str, ...]
    key: str  # a catalog model
    example: int  # which of its examples
    reason: str


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


def current_model() -> LoadedModel:
    """The sidebar's model (already loaded by `current_trace`)."""
    ss = st.session_state
    return cached_model(ss["model"], ss["device"], ss["dtype"])


def say_cut(limit: int, made: int, asked: int) -> None:
    """Generation stopped at Max tokens (prompt + new tokens): say how much of what was asked fitted."""
    st.caption(
        f"Max tokens ({limit:,}) left room for {made} of the {asked} tokens asked for: raise it in the sidebar "
        "to generate more."
    )


def variant(**changes) -> Trace:
    """The page's Trace input run again with some options changed (e.g. `ablate=...`), cached alike."""
    args = {**st.session_state["current_trace_args"], **changes}
    return _safely("Running the model again…", lambda: cached_trace(**args))


def probe_trace(probe: Probe, ablate: tuple[tuple[str, int, int], ...] = ()) -> Trace:
    """The sidebar's model reading the induction probe (its token ids, not a text), cached like any Trace."""
    ss = st.session_state
    args = (ss["model"], ss["device"], ss["dtype"], probe.text, "", int(ss["max_tokens"]))
    return _safely("Reading the probe…", lambda: cached_trace(*args, ablate=ablate, token_ids=probe.ids))


_OPEN_IN = (
    ("Open in the maps", "attention_maps.py"),
    ("Open in the Neuron view", "pages/3_Neuron_view.py"),
    ("Switch it off in Head ablation", "pages/9_Head_ablation.py"),
)


def open_head_buttons(stack: str, layer: int, head: int, key: str) -> None:
    """Open one head on another page, selected there (on the sidebar's text). The page that calls this must
    not draw widgets keyed stack/layer/head itself: the buttons set those keys for the next page."""
    row = st.container(horizontal=True)
    for label, page in _OPEN_IN:
        if row.button(f"{label}: L{layer}·H{head}", key=f"{key}_{page}"):
            st.session_state.update(stack=stack, layer=layer, head=head)
            if page.endswith("Head_ablation.py"):
                st.session_state["ablate_heads"] = [(stack, layer, head)]
            st.switch_page(page)


def trace_for(text: str, model: str | None = None) -> Trace:
    """A Trace of another text (or another model) with the sidebar's settings, cached like the main one."""
    ss = st.session_state
    return cached_trace(model or ss["model"], ss["device"], ss["dtype"], text, "", int(ss["max_tokens"]))


@st.cache_data(show_spinner="Generating…", max_entries=64)
def cached_continuation(
    identity: tuple,
    new_tokens: int,
    sample: bool,
    temperature: float,
    top_k: int,
    seed: int,
    _loaded: LoadedModel,
    _trace: Trace,
) -> predictions.Continuation:
    with _turn(tell=False):
        return predictions.continuation(_loaded, _trace, new_tokens, sample, temperature, top_k, seed)


@st.cache_data(show_spinner="Running the batch…", max_entries=16)
def _cached_batch(model: tuple, texts: tuple[str, ...], _loaded: LoadedModel) -> predictions.Batch:
    with _turn(tell=False):
        return predictions.classify_batch(_loaded, texts)


def cached_batch(loaded: LoadedModel, texts: tuple[str, ...]) -> predictions.Batch:
    """The course's batch of texts through a classifier, cached per model, device, dtype and texts."""
    return _cached_batch((loaded.key, str(loaded.device), str(loaded.dtype)), texts, loaded)


@st.cache_data(show_spinner="Reading every layer through the output head…", max_entries=16)
def cached_lens(identity: tuple, start: int, stop: int, _loaded: LoadedModel, _trace: Trace) -> Lens:
    with _turn(tell=False):
        return logit_lens(_loaded, _trace, positions=slice(start, stop))
