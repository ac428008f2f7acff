"""What each head and MLP adds: information-flow routes (Ferrando & Voita 2024) into an output token."""

import numpy as np
import pandas as pd
import streamlit as st

from ui import messages, page, pickers, render, views, widgets
from viz import figures
from viz.contribution_detail import lens_at, neuron_parts, promoted_tokens
from viz.contributions import MAP_TOKENS, Node, contribution_maps, default_target, edges_csv, routes, stage_parts
from viz.errors import AtlasError
from viz.graph_figure import clicked_node, head_shares, route_figure
from viz.residual import layer_stream
from viz.tokens import TokenOptions, matrix_view

NEURONS = 12  # neurons listed at an MLP node

page.setup("Contributions")
st.markdown(
    "An attention map says where a head **looks**; a contribution says what it **adds**. Each node below is one "
    "token's residual stream after one stage of one layer; each edge's weight is the share a part — a head "
    "reading a token, the MLP, the residual — has in that vector: c = max(‖whole‖₁ − ‖whole − part‖₁, ε), "
    "normalised (Ferrando & Voita 2024). Edges above the threshold make the routes into the chosen token."
)
trace = page.current_trace()
loaded = page.current_model()
if loaded.adapter.block is None:
    messages.say(st.info, "The adapter table doesn't say yet how a {kind} layer passes its residual stream.",
                 kind=loaded.model.config.model_type)  # fmt: skip
    st.stop()
tokens = {name: trace.hidden_tokens(name) for name in trace.self_stacks}
out = trace.output_stack
start = default_target(trace, loaded.tokenizer)
left, middle, right = st.columns([3, 2, 2])
with left:
    position = pickers.token_picker("Routes into", tokens[out], key="contrib_target", default=start.position)
threshold = widgets.slider("Threshold", 0.01, 0.10, key="contrib_threshold", default=0.04, step=0.01, place=middle)
renormalise = widgets.checkbox("Renormalise after the threshold", key="contrib_renormalise", default=True, place=right)
target = Node(out, start.layer, position, "mlp")
graph = views.derived(routes, loaded, trace, target, threshold, renormalise, what="Following the routes down")
nodes = sorted(graph.nodes | {target}, key=lambda n: (n.stack != out, -n.layer, n.position, n.stage))
node_names = [f"{n.stack}:{n.layer}:{n.position}:{n.stage}" for n in nodes if n.stage != "embedding"]


def picked_on_graph() -> None:
    points = st.session_state["routes"]["selection"]["points"]
    if points:
        node = clicked_node(points[0])
        st.session_state["contrib_node"] = f"{node.stack}:{node.layer}:{node.position}:{node.stage}"


def node_label(name: str) -> str:
    stack, layer, position, stage = name.split(":")
    prefix = f"{stack} " if len(trace.self_stacks) > 1 else ""
    return f"{prefix}layer {layer}, #{position} “{tokens[stack].display[int(position)]}”, after {stage}"


target_name = f"{target.stack}:{target.layer}:{target.position}:{target.stage}"
selected_name = widgets.selectbox("Node", node_names, key="contrib_node", default=target_name, format_func=node_label)
stack, layer, pos, stage = selected_name.split(":")
node = Node(stack, int(layer), int(pos), stage)
render.chart(route_figure(graph, tokens, node), "routes", on_select=picked_on_graph, selection_mode="points")
st.caption(
    "Blue: after attention · purple: after cross-attention · orange: after the MLP · grey: embeddings. Click a "
    "node (or pick it above) to see what it is made of. Columns are only the positions some route reaches."
)
st.download_button("Edges (CSV)", edges_csv(graph), file_name="contribution-edges.csv", mime="text/csv")

st.subheader(f"Inside the node: {node_label(selected_name)}")
stream = views.derived(layer_stream, loaded, trace, node.stack, node.layer)
parts = views.derived(stage_parts, loaded, trace, node)
predicted = int(np.argmax(trace.logits(slice(position, position + 1))[0])) if trace.readout else None
if predicted is not None:
    lens = lens_at(trace, stream, node, parts.residual_from, predicted)
    tops = zip(lens.top_ids, lens.top_probs, strict=True)
    words = ", ".join(f"“{loaded.tokenizer.decode([int(i)])}” {p:.2f}" for i, p in tops)
    messages.say(
        st.markdown,
        "**Read through the model's head here:** {words}. The model's prediction {token} ranks {rank} here, "
        "{before} in the stream this stage read.",
        words=words, token=f"“{loaded.tokenizer.decode([predicted])}”", rank=f"#{lens.rank}",
        before=f"#{lens.rank_before}",
    )  # fmt: skip
rows = []
if node.stage == "mlp":
    neurons = views.derived(neuron_parts, loaded, trace, node)
    st.metric("the MLP's share", f"{parts.mlp:.3f}", help=f"the residual's: {parts.residual:.3f}")
    top = np.argsort(-neurons.contribution)[:NEURONS]
    table = pd.DataFrame(
        {"neuron": top, "contribution": neurons.contribution[top], "activation": neurons.activation[top]}
    )
    if trace.readout is not None:
        promoted = promoted_tokens(trace, neurons.rows[top])
        table["promotes"] = [" ".join(repr(loaded.tokenizer.decode([int(t)])) for t in ids) for ids in promoted]
    st.dataframe(table, hide_index=True)
    st.caption("Each neuron's part is its activation times its output row; 'promotes': the tokens that row raises "
               "most through the model's head.")  # fmt: skip
    rows = [("mlp", node.position, None, parts.mlp), ("mlp residual", node.position, None, parts.residual)]
else:
    shares = head_shares(parts.heads)
    render.chart(
        figures.weight_bars(shares, [f"h{h}" for h in range(len(shares))], "each head's share of this node", ".3f"),
        key="head_shares",
    )
    per_head = (zip(parts.sources, row, strict=True) for row in parts.heads)
    rows = [(node.stage, source.position, h, float(c)) for h, pairs in enumerate(per_head) for source, c in pairs]
    rows.append((f"{node.stage} residual", node.position, None, parts.residual))
table = pd.DataFrame(rows, columns=["stage", "source_position", "head", "contribution"]).astype({"head": "Int64"})
with st.expander("Every part of this node (a table, and as CSV)"):
    st.dataframe(table, hide_index=True)
    st.download_button("Parts (CSV)", table.to_csv(index=False).encode(), file_name="node-parts.csv", mime="text/csv")

if node.stage != "mlp":
    st.subheader("One head: where it looks beside what it adds")
    attention = trace.cross_stack if node.stage == "cross" else node.stack
    s = trace.stacks[attention]
    head = widgets.slider("Head", 0, s.n_heads - 1, key="contrib_head", default=int(np.argmax(shares)))
    try:
        maps = views.derived(
            contribution_maps, loaded, trace, attention, node.layer, what="Every query's contributions"
        )
    except AtlasError as err:
        messages.say(st.info, "{message}", message=err)
        st.stop()
    rows_seq, cols_seq = trace.stack_tokens(attention)
    forbidden = s.forbidden(node.layer)
    views_of_head = {
        f"attention, layer {node.layer} head {head}": s.attention(node.layer, head),
        f"contribution, layer {node.layer} head {head}": maps[head],
    }
    shown = {title: matrix_view(m, rows_seq, cols_seq, forbidden, TokenOptions()) for title, m in views_of_head.items()}
    render.heatmaps_side_by_side(shown, ["contrib_attention", "contrib_map"], None)
    st.caption(f"Contribution maps are offered up to {MAP_TOKENS:,} tokens. A head that looks at a token but moves "
               "almost nothing from it is bright on the left and pale on the right.")  # fmt: skip
