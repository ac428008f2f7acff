"""Generation one token at a time: temperature, top-k, top-p, a seed; each step's distribution, attention, KV cache."""

from urllib.parse import urlencode

import numpy as np
import pandas as pd
import streamlit as st

from ui import messages, page, pickers, render, views, widgets
from viz import figures
from viz.errors import AtlasError
from viz.generation import MAX_STEPS, Sampling, generate
from viz.lesson import lesson_html
from viz.sampling_figures import cache_figure, distribution_figure, generation_sections

page.setup("Generation, step by step")
trace = page.current_trace()  # the sidebar's model reads the prompt (a decoder) or the source (an encoder-decoder)
loaded = page.current_model()
st.markdown(
    "A model that writes text does it one token at a time: it reads everything so far, gives every token of its "
    "vocabulary a score, and one is **chosen** — the highest (greedy), or **sampled** after reshaping the "
    "distribution: divide the scores by a **temperature** T (below 1 sharper, above 1 flatter), keep only the "
    "**top-k** tokens, or the smallest set whose probability reaches **top-p**. Earlier tokens' keys and values "
    "are not recomputed: they wait in the **KV cache**, and each step adds one token's."
)
columns = st.columns(5)
temperature = widgets.slider("Temperature T (0: greedy)", 0.0, 2.0, key="gen_temperature", default=0.8, step=0.05,
                             place=columns[0])  # fmt: skip
top_k = widgets.number_input("top-k (0: off)", 0, 1000, key="gen_top_k", default=50, place=columns[1])
top_p = widgets.slider("top-p (1: off)", 0.05, 1.0, key="gen_top_p", default=0.95, step=0.05, place=columns[2])
seed = widgets.number_input("Seed", 0, 2**31 - 1, key="gen_seed", place=columns[3])
count = widgets.slider("Tokens to write", 1, MAX_STEPS, key="gen_tokens", default=16, place=columns[4])
sampling = Sampling(float(temperature), int(top_k), float(top_p), int(seed))
prompt = tuple(int(t) for t in trace.tokens["source"].ids[: trace.prompt_length])
try:
    run = views.derived(generate, loaded, prompt, sampling, int(count), queued=True)
except AtlasError as err:
    messages.say(st.info, "{message} Pick one in the sidebar (SmolLM2, or the dates model).", message=err)
    st.stop()

tokenizer = loaded.tokenizer
piece = lambda t: tokenizer.decode([t]).replace("\n", "⏎") or f"<{t}>"  # noqa: E731
messages.say(st.markdown, "**Written:** {text}", text=tokenizer.decode(list(run.tokens), skip_special_tokens=True))
step = int(widgets.stepper("Step", 1, len(run.steps), key="gen_step", default=1)) - 1
this = run.steps[step]
st.caption(f"Step {step + 1} of {len(run.steps)} — forward to see the next token written, back to go over it again.")
render.chart(distribution_figure(this, sampling, piece), key="gen_distribution")

# The whole sequence read in one pass: its causal rows are what each step's newest token attended to.
if trace.cross_stack is None:
    written = page.trace_for(trace.text, token_ids=prompt + run.tokens)
else:
    written = page.trace_for(trace.text, target_ids=run.tokens)
stack_name = written.output_stack
stack = written.stacks[stack_name]
query = len(run.start) - 1 + step  # the newest token when this step's scores were made
keys = written.tokens[stack.keys_from]
messages.say(st.subheader, "What the newest token, {token}, attended to", token=keys.display[query])
layer, head = pickers.layer_head_picker(stack)


def newest_row(q: int, h: int | None = head) -> np.ndarray:
    """What the token at q attended to, over every token up to it: head h, or (None) every head of the layer."""
    weights = stack.attention(layer, h, rows=slice(q, q + 1), cols=slice(0, q + 1))
    return weights[0] if h is not None else weights[:, 0]


row = newest_row(query)
labels = list(keys.display[: query + 1])
render.chart(figures.weight_bars(row, labels, f"layer {layer}, head {head}"), key="gen_row")
every_head = newest_row(query, None)
heads = [f"head {h}" for h in range(stack.n_heads)]
render.chart(figures.attention_heatmap(every_head, heads, labels, title=f"layer {layer}: every head"),
                key="gen_heads")  # fmt: skip
if written.cross_stack is not None:
    cross = written.stacks[written.cross_stack]
    source = written.tokens[cross.keys_from]
    cross_row = cross.attention(layer, head, rows=slice(step, step + 1))[0]
    title = f"cross-attention, layer {layer}, head {head}"
    render.chart(figures.weight_bars(cross_row, list(source.display), title), key="gen_cross")

st.subheader("The KV cache")
reused = this.reused
render.chart(cache_figure(labels, reused, f"{reused} keys and values read from the cache, 1 computed now"),
                key="gen_cache")  # fmt: skip
sizes = pd.DataFrame({"layer": np.arange(len(this.cache.self_bytes)), "self-attention keys + values (bytes)":
                      this.cache.self_bytes})  # fmt: skip
if this.cache.cross_bytes:
    sizes["cross-attention keys + values (bytes, made once)"] = this.cache.cross_bytes
st.dataframe(sizes, hide_index=True)
total = sum(this.cache.self_bytes) + sum(this.cache.cross_bytes)
st.caption(
    f"After this step the cache holds {this.cache.positions} positions: {total / 1024:.1f} KiB over "
    f"{len(this.cache.self_bytes)} layers — 2 (keys, values) × {stack.kv_heads} key/value heads × "
    f"{this.cache.positions} positions × {stack.d_head} numbers × {loaded.model.dtype.itemsize} bytes per layer "
    "for self-attention. A step without it would recompute every earlier token's keys and values."
)

st.subheader("Hand it out")
if st.button("Make the lesson file: every step, opens offline"):
    queries = [len(run.start) - 1 + t for t in range(len(run.steps))]
    rows = [(list(keys.display[: q + 1]), newest_row(q)) for q in queries]  # fmt: skip
    link = f"{st.context.url}?{urlencode(st.query_params.to_dict())}"
    sections = generation_sections(run, piece, rows, f"layer {layer}, head {head}")
    title = f"{trace.model_name} writes, one token at a time"
    st.download_button("Download the lesson (HTML)", lesson_html(title, sections, link).encode(), mime="text/html",
                       file_name="generation-lesson.html", key="gen_lesson")  # fmt: skip
