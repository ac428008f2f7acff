"""What each head, token and MLP adds to the residual stream: information-flow routes (Ferrando & Voita 2024).

The definition, as the paper and the LLM Transparency Tool (its `get_contributions`) state it: for a residual
vector `whole` and the vectors `parts` that add up to it,

    c(part) = max(‖whole‖₁ − ‖whole − part‖₁, ε)   (ε = 1e-5),   normalised over the parts: c / Σ c

A node is the residual stream of one position after one stage of one layer: (stack, layer, position, stage).
Its parts, per stage (viz.residual rebuilds the vectors; all float32):

- attention  for every head h and every source token j the query may see:  α_ij^h · v_j^h · W_O^h,
             v_j^h = x_j W_V^h + b_V^h the value as the model computes it (grouped-query heads share theirs),
             W_O^h head h's rows of the output projection; plus the residual x_i entering the layer.
             whole: x_i + Σ_hj parts + b_O. The output projection's bias b_O is added once per token and belongs
             to no head and no token: it is in the whole, in no part (as in the LLM Transparency Tool).
- cross      an encoder-decoder's decoder layer: the same parts over the ENCODER's positions j (values from
             the encoder's output), plus the residual after self-attention; its edges lead into the encoder's
             output nodes, from where routes go on through the encoder.
- mlp        the MLP's output m_i and the residual it read; whole: their sum. Per neuron (for one node):
             a_n · W_out[n] for every neuron n (its activation times its row of the MLP's last linear map; that
             map's bias, like b_O, is in the whole only), plus the residual.
Post-LayerNorm models (BERT, BART, Marian): each stage's whole is the sum before its LayerNorm (x + attention,
then LN). LayerNorm rescales a token's vector as a whole, so the shares of the sum are the shares of the
normalised vector. Parallel blocks (GPT-J, NeoX, Phi: x + attention(LN x) + mlp(LN x)) would be one stage
with the attention parts, the MLP output and the residual; no adapter of the table has them yet.
A query's parts are the tokens it may see: a causal model's future tokens are no parts (the LLM Transparency
Tool keeps them as zero vectors, each worth ε).

Graph. Edges point from the node a part comes from to the node it flows into, weighted by its contribution:
an attention edge j → i carries Σ_h c(h, j) (exports keep one row per head), the residual its own. Threshold τ:
an edge is kept when its weight is above τ; renormalising (on by default, as in the paper) divides a node's
kept edges by their sum, so they add up to 1 again. Routes: every node reached backwards along kept edges from
the chosen output node, computed top-down a layer at a time and only at the positions reached: nothing
[positions × positions × heads × d_model] is ever held.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from viz.errors import AtlasError
from viz.models import LoadedModel
from viz.residual import LayerStream, cross_reading, layer_stream
from viz.trace import AttentionStack, Trace

EPS = 1e-5
KEYS_AT_ONCE = 1 << 22  # parts × d_model floats made at once for one position (16 MB)
MOVED_BYTES = 1 << 30  # a layer's v·W_O for every head and token may take this much


def raw_contributions(whole: torch.Tensor, parts: torch.Tensor) -> torch.Tensor:
    """max(‖whole‖₁ − ‖whole − part‖₁, ε) for each part [..., d], summed as Σ_d (|whole_d| − |whole_d − part_d|): the
    same number, without subtracting two large sums (residual streams reach norms of thousands, float32 keeps
    seven digits)."""
    return (whole.abs() - (whole - parts).abs()).sum(-1).clamp_min(EPS)


def contributions(whole: torch.Tensor, parts: torch.Tensor) -> torch.Tensor:
    """The definition: c = max(‖whole‖₁ − ‖whole − part‖₁, ε) / Σ over the parts.  whole [d], parts [n, d]."""
    raw = raw_contributions(whole.float(), parts.float())
    return raw / raw.sum()


@dataclass(frozen=True, order=True)
class Node:
    stack: str  # "encoder" | "decoder"
    layer: int  # -1: the embeddings
    position: int
    stage: str  # "embedding" | "attention" | "cross" | "mlp": the stream after that stage


@dataclass(frozen=True)
class Parts:
    """One node's contributions before any threshold (they sum to 1), each with the node it comes from."""

    node: Node
    residual: float  # the stream the stage added to ...
    residual_from: Node  # ... and where it was
    heads: np.ndarray | None = None  # attention / cross: [heads, sources]
    positions: np.ndarray | None = None  # ... the sources' positions, in ...
    source_stack: str = ""  # ... this stack's stream ...
    source_layer: int = -1  # ... after this layer (-1: the embeddings)
    mlp: float | None = None  # mlp: the MLP's output (it read `residual_from`)

    def source(self, column: int) -> Node:
        """The node a source column's parts come from."""
        layer = self.source_layer
        return Node(self.source_stack, layer, int(self.positions[column]), "embedding" if layer < 0 else "mlp")

    @property
    def sources(self) -> tuple[Node, ...]:
        return tuple(self.source(j) for j in range(len(self.positions))) if self.positions is not None else ()

    def edges(self) -> list[tuple[Node, str, int | None, float]]:
        """(source node, kind, head, contribution) of every part: one row per head for attention."""
        stage = self.node.stage
        if stage == "mlp":
            rows = [(self.residual_from, "mlp", None, self.mlp)]
        else:
            sources = self.sources
            rows = [(sources[j], stage, h, float(c)) for (h, j), c in np.ndenumerate(self.heads)]
        return rows + [(self.residual_from, f"{stage} residual", None, self.residual)]


class Moved:
    """What every head moves from every key of one layer, v_j^h · W_O^h [heads, keys, d_model], and its L1 norm
    [heads, keys]: made once a layer, read by every node of it. A part α·v·W_O with α ‖v W_O‖₁ ≤ ε is worth
    exactly ε (‖whole‖₁ − ‖whole − part‖₁ ≤ ‖part‖₁), so only the others are computed."""

    def __init__(self, stack: AttentionStack, layer: int) -> None:
        size = stack.n_heads * stack.n_keys * stack.output_projections[layer].weight.shape[-1] * 4
        if size > MOVED_BYTES:
            raise AtlasError(
                f"What every head moves from every token of this layer would take {size / 2**30:.1f} GB (over "
                f"{MOVED_BYTES / 2**30:.0f} GB): lower 'Max tokens' to follow contributions on this model."
            )
        group = stack.n_heads // stack.kv_heads
        v = stack.layers[layer].value.float().cpu().repeat_interleave(group, dim=0)  # [heads, keys, d_head]
        self.vectors = v @ stack.head_output_weights(layer).cpu()
        self.norms = self.vectors.abs().sum(-1)


def _attention_parts(stack: AttentionStack, layer: int, position: int, whole, residual, moved: Moved):
    """Raw contributions (before normalising) of every (head, visible source) part and of the residual, and the
    sources' positions; parts are made KEYS_AT_ONCE floats at a time, never [keys × heads × d] for all."""
    row = slice(position, position + 1)
    sources = torch.from_numpy(np.flatnonzero(~stack.forbidden(layer, rows=row)[0]))
    alpha = torch.from_numpy(stack.attention(layer, rows=row)[:, 0])[:, sources]  # [heads, sources]
    raw = torch.full(alpha.shape, EPS)
    heads, keys = torch.nonzero(alpha * moved.norms[:, sources] > EPS, as_tuple=True)  # the rest: exactly ε
    step = max(1, KEYS_AT_ONCE // whole.numel())
    for start in range(0, len(heads), step):
        h, k = heads[start : start + step], keys[start : start + step]
        parts = alpha[h, k, None] * moved.vectors[h, sources[k]]  # [parts, d]
        raw[h, k] = raw_contributions(whole, parts)
    return raw, raw_contributions(whole, residual), sources.tolist()


def _attention_of(trace: Trace, node: Node) -> str:
    """The attention stack an attention or cross node's parts come through."""
    return cross_reading(trace, node.stack) if node.stage == "cross" else node.stack


def _output_node(trace: Trace, stack: str, layer: int, position: int) -> Node:
    """The stream after `layer` (the embeddings for layer -1) at a position: a source of the next layer."""
    return Node(stack, layer, position, "embedding" if layer < 0 else "mlp")


def stage_parts(
    loaded: LoadedModel, trace: Trace, node: Node, stream: LayerStream | None = None, moved: Moved | None = None
) -> Parts:
    """A node's contributions (the module docstring's parts for its stage); `stream` and `moved`: its layer's,
    if at hand (a route search makes them once a layer)."""
    stream = stream or layer_stream(loaded, trace, node.stack, node.layer)
    i, layer = node.position, node.layer
    if node.stage == "mlp":
        c = contributions(stream.mlp_sum[i], torch.stack([stream.mlp[i], stream.mlp_in[i]]))
        read = Node(node.stack, layer, i, "attention" if stream.cross is None else "cross")
        return Parts(node, float(c[1]), read, mlp=float(c[0]))
    if node.stage == "cross":
        cross = trace.stacks[cross_reading(trace, node.stack)]
        encoder = next(s for s in trace.self_stacks if trace.stacks[s].queries_from == cross.keys_from)
        moved = moved or Moved(cross, layer)
        raw, res, keys = _attention_parts(cross, layer, i, stream.cross_sum[i], stream.after_attention[i], moved)
        last = trace.stacks[encoder].n_layers - 1
        source = dict(source_stack=encoder, source_layer=last)
        residual_from = Node(node.stack, layer, i, "attention")
    else:
        stack = trace.stacks[node.stack]
        moved = moved or Moved(stack, layer)
        raw, res, keys = _attention_parts(stack, layer, i, stream.attention_sum[i], stream.x[i], moved)
        source = dict(source_stack=node.stack, source_layer=layer - 1)
        residual_from = _output_node(trace, node.stack, layer - 1, i)
    total = raw.sum() + res
    return Parts(node, float(res / total), residual_from, (raw / total).numpy(), np.asarray(keys), **source)


# ---------------------------------------------------------------- threshold and routes
@dataclass(frozen=True)
class Edge:
    source: Node
    target: Node
    kind: str  # "attention", "attention residual", "cross", "cross residual", "mlp", "mlp residual"
    head: int | None  # attention and cross: one edge per head
    contribution: float  # after the threshold (and renormalising)


def kept_edges(parts: Parts, threshold: float, renormalise: bool = True) -> list[Edge]:
    """The paper's rule at one node: an edge (a source token's attention summed over heads, or the residual, or
    the MLP) is kept when its weight is above `threshold`; `renormalise` scales the kept ones to sum to 1.
    Attention edges come back one per head of a kept source."""
    residual = (parts.residual_from, f"{parts.node.stage} residual", None, parts.residual)
    if parts.heads is None:
        rows = [(parts.residual_from, "mlp", None, parts.mlp), residual]
        kept = [row for row in rows if row[3] > threshold]
        total = sum(row[3] for row in kept)
    else:
        per_source = parts.heads.sum(0)
        columns = np.flatnonzero(per_source > threshold)
        kept = [(parts.source(j), parts.node.stage, h, float(parts.heads[h, j])) for j in columns
                for h in range(len(parts.heads))]  # fmt: skip
        kept += [residual] if parts.residual > threshold else []
        total = float(per_source[columns].sum()) + (parts.residual if parts.residual > threshold else 0.0)
    scale = 1.0 / total if renormalise and total > 0 else 1.0
    return [Edge(source, parts.node, kind, head, c * scale) for source, kind, head, c in kept]


@dataclass(frozen=True)
class Graph:
    target: Node
    threshold: float
    renormalised: bool
    edges: tuple[Edge, ...]
    nodes: frozenset[Node] = field(default_factory=frozenset)

    @property
    def nbytes(self) -> int:
        return 200 * len(self.edges) + 64 * len(self.nodes)


def default_target(trace: Trace, tokenizer) -> Node:
    """Where routes start: a decoder's last token, an encoder's [MASK] (else its first token, [CLS]),
    an encoder-decoder's last generated token."""
    stack = trace.output_stack
    n = trace.stacks[stack].n_layers
    seq = trace.hidden_tokens(stack)
    if trace.stacks[stack].causal:
        return Node(stack, n - 1, len(seq) - 1, "mlp")
    masks = np.flatnonzero(seq.ids == getattr(tokenizer, "mask_token_id", -1))
    return Node(stack, n - 1, int(masks[0]) if len(masks) else 0, "mlp")


def _top_down(node: Node) -> int:
    """Within a layer: the MLP's node first, then cross-attention's, then self-attention's."""
    return {"mlp": 0, "cross": 1, "attention": 2}[node.stage]


def routes(
    loaded: LoadedModel,
    trace: Trace,
    target: Node,
    threshold: float = 0.04,
    renormalise: bool = True,
    progress: Callable[[float], None] | None = None,
) -> Graph:
    """Every node and kept edge on the routes into `target` (module docstring), a layer at a time, top-down;
    each node's parts are computed once, only where a route arrives. `progress` hears the share of layers done."""
    todo, done, edges = {target}, set(), []
    stacks = [target.stack] + [s for s in trace.self_stacks if s != target.stack]  # a decoder before its encoder
    layers = [(stack, layer) for stack in stacks for layer in range(trace.stacks[stack].n_layers - 1, -1, -1)]
    for finished, (stack, layer) in enumerate(layers, 1):
        stream, moved = None, {}
        while here := sorted((n for n in todo if (n.stack, n.layer) == (stack, layer)), key=_top_down):
            node = here[0]
            stream = stream or layer_stream(loaded, trace, stack, layer)
            if node.stage != "mlp" and node.stage not in moved:
                moved[node.stage] = Moved(trace.stacks[_attention_of(trace, node)], layer)
            todo.discard(node)
            done.add(node)
            new = kept_edges(stage_parts(loaded, trace, node, stream, moved.get(node.stage)), threshold, renormalise)
            edges += new
            for source in {e.source for e in new} - done:
                (done if source.stage == "embedding" else todo).add(source)
        if progress:
            progress(finished / len(layers))
    return Graph(target, threshold, renormalise, tuple(edges), frozenset(done))


def edges_csv(graph: Graph) -> bytes:
    """layer, stage, source_position, target_position, head, contribution: one row per head for attention edges
    (the threshold was applied to their sum), head empty for residual and MLP edges. In an encoder-decoder the
    encoder's stages are named "encoder attention", ...; "cross" edges come from the encoder's positions."""
    lines = ["layer,stage,source_position,target_position,head,contribution"]
    prefix = _stage_prefix(graph)
    for e in graph.edges:
        head = "" if e.head is None else str(e.head)
        stage = prefix.get(e.target.stack, "") + e.kind
        lines.append(f"{e.target.layer},{stage},{e.source.position},{e.target.position},{head},{e.contribution:.6g}")
    return ("\n".join(lines) + "\n").encode("utf-8")


def _stage_prefix(graph: Graph) -> dict[str, str]:
    stacks = {n.stack for n in graph.nodes} | {graph.target.stack}
    return {"encoder": "encoder "} if len(stacks) > 1 else {}


MAP_TOKENS = 1024  # a layer's every query × key contribution is offered up to this many tokens a side


def contribution_maps(
    loaded: LoadedModel, trace: Trace, stack_name: str, layer: int, progress: Callable[[float], None] | None = None
) -> np.ndarray:
    """[heads, queries, keys]: c(h, j) at every query i of one layer's attention stage (a cross-attention stack:
    the decoder's cross stage), before any threshold; keys a query may not see hold 0. The residual's share is
    what a row leaves below 1."""
    stack = trace.stacks[stack_name]
    if max(stack.n_queries, stack.n_keys) > MAP_TOKENS:
        raise AtlasError(
            f"Every query's contributions at {stack.n_queries:,} tokens would take minutes; they are offered up to "
            f"{MAP_TOKENS:,} tokens. Lower 'Max tokens', or follow single routes on the Contributions page."
        )
    reader = next((s for s in trace.self_stacks if cross_reading(trace, s) == stack_name), stack_name)
    stage = "cross" if reader != stack_name else "attention"
    stream, moved = layer_stream(loaded, trace, reader, layer), Moved(stack, layer)
    maps = np.zeros((stack.n_heads, stack.n_queries, stack.n_keys))
    for i in range(stack.n_queries):
        parts = stage_parts(loaded, trace, Node(reader, layer, i, stage), stream, moved)
        maps[:, i, [s.position for s in parts.sources]] = parts.heads
        if progress and (i + 1) % 16 == 0:
            progress((i + 1) / stack.n_queries)
    return maps
