"""The shared sidebar: the model picker, the text, the target, the length and device settings.

On a session's first run it also takes the view from the URL (a copied URL reopens the same view).
What depends on the loaded model -- the target (encoder-decoders only), a question (QA heads), a chat
turn, Max tokens (up to the model's own limit) -- is drawn into slots once the model has loaded.
"""

from __future__ import annotations

from dataclasses import dataclass

import streamlit as st
import torch

from ui import widgets
from ui.messages import say
from ui.views import DEFAULTS, policy
from viz.architectures import ENCODER_DECODER
from viz.models import CATALOG, CATALOG_BY_KEY, COURSE_EXAMPLES, SPREAD

OTHER_HUB, LOCAL_DIR = "__hub__", "__path__"
MIN_TOKENS = 4
TEXT_LIMIT = 200_000  # characters the text box takes (Max tokens bounds the work, this the session state)


def from_url() -> None:
    """On a session's first run, take the view from the URL: the model now, since it decides which picker
    the sidebar shows; each widget takes its own value when it is drawn (ui.widgets), so unknown keys are
    simply never read."""
    if st.session_state.get("_url_loaded"):
        return
    st.session_state["_url_loaded"] = True
    params = st.query_params.to_dict()
    model = params.pop("model", DEFAULTS["model"])
    st.session_state["model"] = model
    if model in model_choices():
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


def model_choices() -> list[str]:
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


def _model_picker() -> str:
    """The model picker (and the hub id or directory box it may open); returns the model key."""
    if "refused_model" in st.session_state:
        say(
            st.warning,
            "This server only offers the models listed here, not {model}.",
            model=st.session_state.pop("refused_model"),
        )
    # The URL holds the choice as "model" (written below): the picker and its boxes stay out of it.
    choice = widgets.selectbox("Model", model_choices(), key="model_choice", format_func=_model_label, in_url=False)
    if choice == OTHER_HUB:
        hub_id = widgets.text_input("Hub model id", key="hub_id", placeholder="e.g. bert-base-cased", in_url=False)
        st.session_state["model"] = f"hub:{hub_id.strip()}" if hub_id.strip() else ""
    elif choice == LOCAL_DIR:
        path = widgets.text_input("Directory", key="local_dir", placeholder="/path/to/model", in_url=False)
        st.session_state["model"] = f"path:{path.strip()}" if path.strip() else ""
    else:
        st.session_state["model"] = choice
    widgets.remember("model")
    return choice


def _text_boxes(choice: str) -> None:
    entry = CATALOG_BY_KEY.get(choice)
    course = COURSE_EXAMPLES if entry is None or entry.reads_any_english else ()  # a small vocabulary: its own
    examples = list(dict.fromkeys((*(entry.examples if entry else ()), *course)))
    if st.session_state.get("example") not in examples or st.session_state.get("example") != st.session_state.get(
        "text"
    ):
        st.session_state["example"] = None  # the box shows an example only while the text is that example
    st.selectbox(
        "Examples", examples, index=None, placeholder="Load an example…", key="example", on_change=_set_example
    )
    text = widgets.text_input("Text", key="text", default=DEFAULTS["text"], area=True, height=100, max_chars=TEXT_LIMIT)
    if len(text) >= TEXT_LIMIT:  # the browser cut a longer paste without a word
        st.caption(f"The text box holds at most {TEXT_LIMIT:,} characters: the rest of the paste was not kept.")
    if len(text) > widgets.URL_TEXT_LIMIT:
        st.caption("This text is too long for the page's link: a copied URL will not carry it.")


def _target_follows_model(model: str) -> None:
    """A target text belongs to the model it was typed for: another model gets its own (none at first), and
    coming back brings the first one back."""
    ss = st.session_state
    owner = ss.get("_target_model")
    if owner == model:
        return
    targets = ss.setdefault("_targets", {})
    if owner is not None:
        targets[owner] = ss.get("target", "")
    ss["target"] = targets.get(model, DEFAULTS["target"]) if owner is not None else ss.get("target", "")
    ss["_target_model"] = model


def target_box(slot, family: str) -> None:
    """The target text, for an encoder-decoder only (forced decoding)."""
    if family != ENCODER_DECODER:
        return
    with slot:
        widgets.text_input(
            "Target text",
            key="target",
            help="Leave empty to let the model generate its own output; type a translation to see "
            "how the model aligns it (forced decoding).",
        )


def length_box(slot, limit: int) -> None:
    """Max tokens, up to `limit` (the model's positions and the server's cap)."""
    with slot:
        widgets.number_input(
            "Max tokens",
            MIN_TOKENS,
            max(MIN_TOKENS, limit),
            key="max_tokens",
            default=min(limit, DEFAULTS["max_tokens"]),
            step=16,
            help=f"Tokens one pass reads: at most {limit:,} here (the model's position limit and this server's cap).",
        )


def _device_boxes() -> None:
    with st.container():
        device = widgets.selectbox(
            "Device",
            _device_options(),  # a URL from a GPU machine asks for "cuda": this one offers what it has
            key="device",
            format_func=lambda d: "all GPUs (device_map=auto)" if d == SPREAD else d,
            help="'all GPUs' spreads a model too large for one GPU over every GPU (and the CPU) with accelerate.",
        )
        if device != "cpu" and _device_options() != ["auto", "cpu"]:
            widgets.selectbox("Precision", ["float32", "float16", "bfloat16"], key="dtype")


@dataclass
class Sidebar:
    model: str  # the chosen model key ("" while none is given)
    model_options: object  # slot under the text: the target, a question, a chat turn
    length: object  # slot in "Length and device": Max tokens


def sidebar() -> Sidebar:
    """Draw the shared sidebar; what depends on the loaded model goes into the returned slots."""
    with st.sidebar:
        choice = _model_picker()
        _target_follows_model(st.session_state["model"])
        _text_boxes(choice)
        model_options = st.container()
        with st.expander("Length and device"):
            length = st.container()
            _device_boxes()
    return Sidebar(st.session_state["model"], model_options, length)
