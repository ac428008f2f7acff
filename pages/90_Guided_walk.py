"""A guided walk from the RNN bottleneck to the three transformer families, on real models' numbers.

Chapters 1–2 run the project's recurrent encoder-decoders (without and with Bahdanau attention) on the text and set
their α beside a transformer's cross-attention; 3–6 follow an encoder-decoder transformer; 7–10 add where position
comes from, causal masking, cross-attention and the three families (MiniLM, SmolLM2 beside it). Offers the
offline word-order models; the whole walk saves as one lesson file.
"""

import numpy as np
import pandas as pd
import streamlit as st

from ui import messages, page, render, views, widgets
from viz import diagrams, figures
from viz.alignment import alignment
from viz.architectures import ENCODER_DECODER, RNN
from viz.bottleneck import bottleneck, by_length_figure
from viz.models import CATALOG_BY_KEY, task_models
from viz.neuron import neuron_view
from viz.predictions import softmax
from viz.walk import POSITION_TEXT, attention_kinds, future_share, same_token_two_places

page.setup("Guided walk: from RNN to attention")
walk = render.Handout()
walk.chapter("1 · The bottleneck")
walk.text(
    "A sequence-to-sequence RNN (Sutskever et al. 2014) reads the input one token at a time into a state, "
    "and writes the output from its **last state alone**. However long the input, everything the decoder "
    "will ever know about it must fit through that one vector:"
)
walk.chart(diagrams.bottleneck_diagram(), key="walk_bottleneck", config={"displayModeBar": False})
trace = page.current_trace(
    recurrent=True,
    offer=page.Offer(
        (ENCODER_DECODER, RNN), "word-order", 1, "The walk follows encoder-decoders: RNNs, then a transformer."
    ),
)
LONG_INPUTS = "word-order"  # the task whose inputs (up to 13 tokens) outgrow one vector; dates have 3 to 6
entry = CATALOG_BY_KEY.get(trace.model_key)
task = entry.task if entry else ""
walk_task = task or LONG_INPUTS  # the RNNs' task: the sidebar model's, else word order
models = task_models(walk_task)
text = trace.text if task else CATALOG_BY_KEY[models.transformer].examples[1]
if not task:
    messages.say(st.info, "The walk's RNNs read one small language: steps 1–2 follow them on “{text}”; from step 3 "
                 "on, {model}.", text=text, model=trace.model_name)  # fmt: skip
name = lambda key: CATALOG_BY_KEY[key].label.split(" · ")[0]  # noqa: E731


def scaling_effect(walked, step: int) -> float:
    """How far scaling moves this step's weights (L1): open where step 4 has something to show."""
    v = neuron_view(walked.stacks[walked.cross_stack], walked.stacks[walked.cross_stack].n_layers - 1, 0, step)
    return float(np.abs(softmax(np.where(v.masked, -np.inf, v.dots)) - v.weights).sum())


def step_name(target, i: int) -> str:
    """An output step as a reader says it: its token, its place, what came before."""
    before = f", after “{target.display[i - 1]}”" if i else ", the first"
    return f"“{target.display[i]}” (output token {i + 1} of {len(target)}{before})"


def step_slider(walked, key: str) -> int:
    target = walked.tokens["target"]
    default = int(np.argmax([scaling_effect(walked, i) for i in range(len(target))]))
    label = lambda i: f"{i + 1}: “{target.display[i]}”"  # noqa: E731
    chosen = widgets.select_slider(
        "Follow the decoder while it writes…", range(len(target)), key=key, default=default, format_func=label
    )
    return int(chosen)


# Beside the RNNs, a transformer reading their text with their tokens: the sidebar's, or the task's own.
paired = trace if task and page.current_model().adapter.layered else page.trace_for(text, model=models.transformer)
plain = page.trace_for(text, model=models.without_attention)
attending = page.trace_for(text, model=models.with_attention)
source = plain.tokens["source"]
walk.text(
    "Here is a real one, a GRU encoder-decoder trained on this task. Reading {text} "
    f"({len(source)} tokens), its decoder gets this one vector h_n of {plain.hidden_states['encoder'].shape[-1]} "
    "numbers, and nothing else:",
    text=text,
)
last_state = plain.hidden_states["encoder"][0][-1:]
walk.chart(
    figures.vectors_heatmap(last_state, ["h_n"], "the encoder's last state: all the decoder gets", height=150),
    key="walk_last_state",
)
walk.table(
    pd.DataFrame(
        {
            "model": [name(t.model_key) for t in (plain, attending, paired)],
            "writes": [page.output_text(t) for t in (plain, attending, paired)],
        }
    )
)
walk.text(
    "On short inputs one vector can be enough. As inputs grow, it is not — held-out exact match by input length, "
    "the two RNNs and the task's transformer on the same examples:"
)
for shown in dict.fromkeys((walk_task, LONG_INPUTS)):
    measured = bottleneck(shown)
    walk.chart(by_length_figure(measured, {k: name(k) for k in measured.by_length}), key=f"walk_length_{shown}")
long_inputs = bottleneck(LONG_INPUTS)
walk.text(f"Held-out inputs of {long_inputs.title} the model without attention gets wrong, longest first:")
walk.table(pd.DataFrame(long_inputs.only_attention_right))

walk.chapter("2 · Look back instead (Bahdanau et al. 2015)")
walk.text(
    "Attention removes the bottleneck: at every output step the decoder looks back at **all** the encoder's "
    "states h_i, scores each against its own state s_t−1 — e_t,i = vᵀ tanh(W s_t−1 + U h_i) — and reads their "
    "mix weighted by α_t = softmax(e_t). The same GRU with attention, made to write the transformer's output "
    "({output}) so the rows match:",
    output=page.output_text(paired),
)
rnn_alpha = alignment(page.trace_for(text, model=models.with_attention, target=page.output_text(paired))).head(0, 0)
transformer_alpha = alignment(paired).overall_mean()
outputs = paired.tokens["target"]
pair_step = step_slider(paired, "walk_step")
walk.text("While writing {step}, the RNN's α over the input:", step=step_name(outputs, pair_step))
walk.chart(
    figures.weight_bars(rnn_alpha[pair_step], list(source.display), f"α_t,i ({name(models.with_attention)})"),
    key="walk_rnn_alpha",
)
top = float(max(rnn_alpha.max(), transformer_alpha.max()))
walk.text(
    f"The whole matrices side by side, on one colour scale (black 0, white {top:.2f}): the RNN's α, and the "
    "transformer's cross-attention averaged over its layers and heads. Row t: the step that wrote output token t."
)
for place, (title, weights) in zip(st.columns(2), {name(models.with_attention): rnn_alpha,
                                                   name(paired.model_key) + ", cross-attention": transformer_alpha
                                                   }.items(), strict=True):  # fmt: skip
    walk.chart(figures.attention_heatmap(weights, outputs.display, source.display, title=title, zmax=top,
                                                 colorscale="gray"), key=f"walk_pair_{title}", place=place)  # fmt: skip

walk.chapter("3 · Scores from queries and keys")
walked = trace if page.current_model().adapter.layered else paired  # a transformer's queries and keys from here on
if walked.cross_stack is None:  # an encoder-decoder whose cross-attention modules weren't recognised
    st.warning("The walk reads cross-attention, and none was found in this model.")
    st.stop()
source, target = walked.tokens["source"], walked.tokens["target"]
cross, encoder = walked.stacks[walked.cross_stack], walked.stacks[walked.self_stacks[0]]
layer = cross.n_layers - 1
if walked is paired:
    step = pair_step
else:
    walk.text("From here on, {model} on the sidebar's text.", model=walked.model_name)
    step = step_slider(walked, "walk_step_sidebar")
this_step = slice(step, step + 1)
v = neuron_view(cross, layer, 0, step)
walk.text(
    "**Output:** {output}  \nWhile writing {step}, this model's weights (layer {layer}, head 0) come from scores: "
    "the decoder's **query** vector q against each input token's **key** k — a dot product q·k (Luong et al. "
    "2015), with its real vectors:",
    output=page.output_text(walked), step=step_name(target, step), layer=layer,
)  # fmt: skip
walk.chart(figures.weight_bars(v.dots, list(source.display), "q · k for each input token", ".2f"), key="walk_dots")

walk.chapter("4 · Scale, then softmax (Vaswani et al. 2017)")
d = cross.d_head
unscaled = softmax(np.where(v.masked, -np.inf, v.dots))
left, right = st.columns(2)
walk.chart(
    figures.weight_bars(unscaled, list(source.display), "softmax(q·k): without scaling"),
    key="walk_unscaled",
    place=left,
)
walk.chart(
    figures.weight_bars(v.weights, list(source.display), f"what the model uses (scale {v.scaling:.3g})"),
    key="walk_scaled",
    place=right,
)
walk.text(
    f"Dot products of {d}-dimensional vectors grow with √{d}; dividing by √d keeps the softmax from "
    "saturating on one key. The right-hand bars are the model's own attention row: their weighted sum of "
    f"values differs from the model's head output by {v.max_output_error:.1e}."
)

walk.chapter("5 · Several heads at once")
d_model = walked.hidden_states[walked.output_stack].shape[-1]
walk.text(
    f"Each head has its own W_q, W_k, W_v and so its own idea of what to look at. This model runs {cross.n_heads} "
    f"heads of {cross.d_head} numbers side by side; their {cross.n_heads} outputs are laid end to end "
    f"({cross.n_heads} × {cross.d_head} = {cross.n_heads * cross.d_head} numbers, the model's width is {d_model}) "
    "and one matrix W_O mixes them back into the token's vector. The same step, every head of the last layer:"
)
heads = cross.attention(layer, rows=this_step)[:, 0]
columns = st.columns(min(4, len(heads)))
for head in range(len(heads)):
    walk.chart(
        figures.weight_bars(heads[head], list(source.display), f"layer {layer}, head {head}"),
        key=f"walk_head{head}",
        place=columns[head % len(columns)],
    )

walk.chapter("6 · Self-attention")
walk.text(
    "Take queries and keys from the **same** sequence and the same mechanism lets every input token look at "
    "every other: the encoder's self-attention (layer 0, mean over heads)."
)
walk.chart(figures.attention_heatmap(encoder.head_mean(0), source.display, source.display), key="walk_self")

# Chapters 7-10 set the walked encoder-decoder beside an encoder (MiniLM) and a decoder (SmolLM2), offline.
family_keys = ("minilm", "smollm2", walked.model_key)
beside = [page.trace_for(POSITION_TEXT, model=key) for key in family_keys]
adapters = [views.cached_model(key, st.session_state["device"], st.session_state["dtype"]).adapter
            for key in family_keys]  # fmt: skip
walk.chapter("7 · Where position comes from")
walk.text(
    "Attention itself is blind to order: shuffle the keys and each weight moves with its key. Position has to "
    "come from somewhere else, and these three models do it differently. In “{text}” a word comes back; compare "
    "it with itself at its two places:",
    text=POSITION_TEXT,
)
repeats = [same_token_two_places(t) for t in beside]
walk.table(pd.DataFrame([
    {"model": t.model_name, "position": a.positions, "token": r.token, "places": f"{r.first} and {r.second}",
     "inputs alike: cos(x₁, x₂)": round(r.input_cosine, 4),
     "layer-0 queries alike: cos(q₁, q₂)": round(r.query_cosine, 4)}
    for t, a, r in zip(beside, adapters, repeats, strict=True) if r
]))  # fmt: skip
walk.text(
    "Added positions (learned, or sinusoidal) change the input vector itself: the two copies differ before the "
    "first layer. Rotary positions (RoPE) leave the inputs identical (cosine 1.0000) and turn q and k by an angle "
    "that grows with the position, so only the queries and keys differ — and a score q·k then depends on how far "
    "apart two tokens are, not on where they stand."
)

walk.chapter("8 · Causal masking")
decoder = beside[1].stacks[beside[1].self_stacks[0]]
tokens = beside[1].tokens["source"].display
walk.text(
    "A model that writes must not peek at the words it has yet to write. Its self-attention is masked: each token "
    "attends only to itself and the tokens before it. SmolLM2 on the same sentence, layer 0, mean over heads — "
    f"the weight a token gives to later tokens is {future_share(decoder, 0):.4f} on average (exactly zero), "
    f"where MiniLM, an encoder, gives them {future_share(beside[0].stacks['encoder'], 0):.2f}:"
)
walk.chart(figures.attention_heatmap(decoder.head_mean(0), tokens, tokens, decoder.forbidden(0),
                                     "SmolLM2, layer 0: the upper triangle is masked"), key="walk_causal")  # fmt: skip

walk.chapter("9 · Cross-attention")
decoder_tokens = walked.tokens[cross.queries_from].display
walk.text(
    f"An encoder-decoder has a third attention. In each of its {cross.n_layers} decoder layers, the queries come "
    "from the decoder (the output so far) and the keys and values from the encoder's last layer (the whole input): "
    f"a {len(decoder_tokens)} × {len(source)} map, no mask, each row summing to 1. This is the alignment of "
    "chapters 2–5, for every output token at once (last layer, mean over heads):"
)
cross_map = figures.attention_heatmap(cross.head_mean(layer), decoder_tokens, source.display,
                                     title="cross-attention: output tokens × input tokens")  # fmt: skip
walk.chart(cross_map, key="walk_cross")

walk.chapter("10 · Three families")
walk.text(
    "The same attention, wired three ways. An encoder (BERT, MiniLM) reads a whole text in both directions: for "
    "understanding — classifying, filling a blank. A decoder (GPT, Llama, SmolLM2) reads left to right and writes the "
    "next token: for generation. An encoder-decoder (the original Transformer, Marian, T5, BART) reads the input with "
    "an encoder and writes with a decoder that looks back at it: for translation. Every attention of the three "
    "models here:"
)
walk.table(pd.DataFrame([row for t in beside for row in attention_kinds(t)]))
walk.download(f"Guided walk: from RNN to attention ({walked.model_name})", "guided-walk.html",
              "Save the walk as one lesson file (HTML, opens offline)")  # fmt: skip
