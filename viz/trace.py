"""The Trace: one forward pass, everything every view needs, under stable names.

    trace = build_trace(loaded, "time flies like an arrow")
    stack = trace.stacks["encoder"]
    stack.attention(layer, head)                         # [Tq, Tk], computed on request, rows sum to 1
    stack.attention(layer, head, rows=slice(5, 6))       # one query row
    stack.query(layer, head)                             # [Tq, d_head] as the scores use it (after RoPE)
    trace.hidden_states["encoder"][layer]                # [T, d_model], layer 0 = embeddings
    trace.logits(slice(-1, None))                         # the head's logits at the last position

A Trace keeps q, k, v and each head's output per layer -- never a T×T attention array. Any
map is recomputed from them with the model's own formula, softmax(q·kᵀ·scale + bias, masked),
in float32 on the device the vectors live on. That keeps a 4,096-token trace of a 30-layer
model near a gigabyte instead of twenty.

Stacks are "encoder" (encoder-only models and the encoder of encoder-decoders), "decoder"
(decoder-only models and the decoder of encoder-decoders) and "cross" (decoder rows attending
to encoder tokens). Token sequences are "source" (the text) and, for encoder-decoders,
"decoder_input" (what the decoder reads: start token + target[:-1]) and "target" (what each
decoder step produces). Returned numpy arrays are float32 and new, or read-only views: a
Trace is shared between browser sessions through the cache.
"""

from __future__ import annotations

import inspect
import math
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

import numpy as np
import torch

from viz.architectures import DECODER, ENCODER_DECODER
from viz.capture import AttentionRecord, MaskRule, ablating, recording
from viz.errors import AtlasError
from viz.models import LoadedModel, OutputProjection, group_by_stack
from viz.readout import Readout, readout_for
from viz.recurrent import StoredAttention, read
from viz.tokens import TokenSeq, token_seq

DEFAULT_MAX_TOKENS = 256
MAX_NEW_TOKENS = 48  # encoder-decoder output length when no target text is given
ALL = slice(None)
BLOCK_CELLS = 1 << 21  # heads × rows × keys scored at once when streaming (8 MB of float32; tuned on 2 cores)


def _numpy(t: torch.Tensor) -> np.ndarray:
    array = t.detach().float().cpu().numpy()
    array.flags.writeable = False
    return array


def _stacked(tensors: list[torch.Tensor]) -> np.ndarray:
    """One read-only array from per-layer tensors (which may sit on different devices)."""
    array = np.stack([t.detach().float().cpu().numpy() for t in tensors])
    array.flags.writeable = False
    return array


@dataclass(frozen=True)
class AttentionStack:
    name: str  # "encoder" | "decoder" | "cross"
    queries_from: str  # token sequence of the rows
    keys_from: str  # token sequence of the columns
    layers: tuple[AttentionRecord, ...]  # one per layer, in order
    # Each layer's output projection (W_O as [heads * d_head, d_model] and b_O: the model's own), or None.
    output_projections: tuple[OutputProjection | None, ...] = ()
    # ‖f(v)‖ per layer, computed on first request (small: [heads, keys]); a cache, not part of the identity.
    _value_norms: dict = field(default_factory=dict, compare=False, repr=False)

    # ---------------------------------------------------------------- shape
    @property
    def n_layers(self) -> int:
        return len(self.layers)

    @property
    def n_heads(self) -> int:
        return self.layers[0].query.shape[0]

    @property
    def kv_heads(self) -> int:
        """Distinct key/value heads (< n_heads under grouped-query attention)."""
        return self.layers[0].key.shape[0]

    @property
    def d_head(self) -> int:
        return self.layers[0].query.shape[-1]

    @property
    def n_queries(self) -> int:
        return self.layers[0].query.shape[1]

    @property
    def n_keys(self) -> int:
        return self.layers[0].key.shape[1]

    @property
    def causal(self) -> bool:
        """A decoder's self-attention: no query sees a later key."""
        return any(r.mask.causal for r in self.layers)

    @property
    def nbytes(self) -> int:
        return sum(self.bytes_by_device().values())

    def bytes_by_device(self) -> Counter:
        """{"cpu": bytes, "cuda": bytes}: the vectors stay where their layer ran."""
        sizes: Counter = Counter()
        for r in self.layers:
            for t in (r.query, r.key, r.value, r.context):
                sizes[t.device.type] += t.nelement() * t.element_size()
        return sizes

    def kv_head(self, head: int) -> int:
        """The key/value head a query head reads (GQA: a run of query heads shares one)."""
        return head // (self.n_heads // self.kv_heads)

    # ---------------------------------------------------------------- the captured vectors
    def query(self, layer: int, head: int) -> np.ndarray:
        """[Tq, d_head] as the scores use it (after RoPE)."""
        return _numpy(self.layers[layer].query[head])

    def key(self, layer: int, head: int) -> np.ndarray:
        """[Tk, d_head]: the key vectors query head `head` scores against."""
        return _numpy(self.layers[layer].key[self.kv_head(head)])

    def value(self, layer: int, head: int) -> np.ndarray:
        return _numpy(self.layers[layer].value[self.kv_head(head)])

    def context(self, layer: int, head: int) -> np.ndarray:
        """[Tq, d_head]: the head's output as the model's kernel computed it (before the output projection)."""
        return _numpy(self.layers[layer].context[head])

    def scaling(self, layer: int) -> float:
        return self.layers[layer].scaling

    def forbidden(self, layer: int, rows: slice = ALL, cols: slice = ALL) -> np.ndarray:
        """[rows, cols] bool: True where the model forbids attending."""
        rule = self.layers[layer].mask
        mask = rule.forbidden(rows, cols)
        if mask is None:
            return np.zeros((len(range(rule.n_queries)[rows]), len(range(rule.n_keys)[cols])), dtype=bool)
        return mask.numpy()

    def bias(self, layer: int, head: int, rows: slice = ALL, cols: slice = ALL) -> np.ndarray | None:
        """[rows, cols] additive score bias (T5's relative position bias), or None."""
        bias = self.layers[layer].bias
        return None if bias is None else bias.block([head], rows, cols, self.n_keys)[0].cpu().numpy()

    @property
    def has_value_weights(self) -> bool:
        return bool(self.output_projections) and all(p is not None for p in self.output_projections)

    def head_output_weights(self, layer: int) -> torch.Tensor:
        """W_O^h of every head, [heads, d_head, d_model] float32: head h's rows of the output projection."""
        if not self.has_value_weights:
            raise AtlasError("This model's output projection wasn't found: what each head writes can't be read.")
        return self.output_projections[layer].weight.float().reshape(self.n_heads, self.d_head, -1)

    def value_norms(self, layer: int) -> torch.Tensor:
        """[heads, keys] float32: ‖f_h(v_j)‖ = ‖v_j · W_O^h‖, the size of what head h moves from key j into the
        residual stream per unit of attention (Kobayashi et al. 2020). W_O^h is the head's d_head rows of
        the output projection; v includes the value bias; the output bias, added once per token, is left out.
        Via the head's Gram matrix: ‖v W‖² = v (W Wᵀ) vᵀ, so no [keys, d_model] array is made."""
        if layer not in self._value_norms:
            if not self.has_value_weights:
                raise AtlasError("This model's output projection wasn't found: no value-weighted attention.")
            w = self.head_output_weights(layer)  # [heads, d_head, d_model]
            gram = w @ w.transpose(-1, -2)  # [heads, d_head, d_head]
            group = self.n_heads // self.kv_heads
            v = self.layers[layer].value.float().repeat_interleave(group, dim=0)  # [heads, keys, d_head]
            self._value_norms[layer] = ((v @ gram) * v).sum(-1).clamp_min(0).sqrt()
        return self._value_norms[layer]

    # ---------------------------------------------------------------- attention on request
    def scores(
        self,
        layer: int,
        head: int | None,
        rows: slice,
        keys: int | None = None,
        masked: float = float("-inf"),
        out: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """[heads, rows, keys] float32 for one head or (None) all: q·kᵀ·scale + bias, `masked` where the
        model forbids attending -- what the softmax reads. `keys` keeps only the first so many columns (a
        causal block never sees beyond its last row). The scale goes on q before the product (one pass less;
        exact for the usual power-of-two scales). `out`: memory to write all heads' scores into."""
        record = self.layers[layer]
        cols = slice(0, keys or self.n_keys)
        k = record.key[:, cols].float()
        if head is None:  # all heads: each group of query heads against its own key head (GQA, no copies)
            q = record.query[:, rows].float() * record.scaling
            group = self.n_heads // self.kv_heads
            stacked = q.reshape(self.kv_heads, group * q.shape[1], q.shape[2])  # a group's rows, one after another
            shape = (self.kv_heads, stacked.shape[1], k.shape[1])
            buffer = None if out is None else out[: np.prod(shape)].view(shape)
            scores = torch.bmm(stacked, k.transpose(-1, -2), out=buffer).view(self.n_heads, q.shape[1], k.shape[1])
            heads = slice(None)
        else:
            kv = self.kv_head(head)
            q = record.query[head : head + 1, rows].float() * record.scaling
            scores = q @ k[kv : kv + 1].transpose(-1, -2)
            heads = [head]
        if record.bias is not None:
            scores += record.bias.block(heads, rows, cols, self.n_keys)
        record.mask.fill_forbidden(scores, rows, cols, masked)
        return scores

    def attention(
        self, layer: int, head: int | None = None, rows: slice = ALL, cols: slice = ALL, value_weighted: bool = False
    ) -> np.ndarray:
        """Attention weights: [rows, cols] for one head, [heads, rows, cols] for head=None (all heads).

        Rows are softmaxed over all keys, then cut to `cols`, so a zoomed region keeps the true weights.
        `value_weighted`: ‖α_ij · f(v_j)‖ instead of α_ij (see `value_norms`)."""
        weights = self.scores(layer, head, rows).softmax(-1)
        if value_weighted:
            weights *= self.value_norms(layer)[slice(None) if head is None else [head], None, :]
        out = _numpy(weights[..., cols])
        return out if head is None else out[0]

    def head_mean(self, layer: int, rows: slice = ALL, cols: slice = ALL, value_weighted: bool = False) -> np.ndarray:
        """[rows, cols]: the layer's attention (or value-weighted attention) averaged over its heads,
        streamed a block of rows at a time."""
        first = range(self.n_queries)[rows].start
        mean = torch.zeros(len(range(self.n_queries)[rows]), self.n_keys)
        for block in self.row_blocks(layer, rows=rows):
            weights = block.weights()
            if value_weighted:
                weights *= self.value_norms(layer)[:, None, : weights.shape[-1]]
            mean[block.start - first : block.stop - first, : weights.shape[-1]] = weights.mean(0).cpu()
        return _numpy(mean[:, cols])

    def row_blocks(self, layer: int, rows: slice = ALL, pool: int | None = None) -> Iterator[WeightBlock]:
        """Stream a layer's attention, every head, a block of query rows at a time (see WeightBlock; `pool`:
        also each row's largest weight per block of that many keys).

        Each block holds about BLOCK_CELLS scores, so that it stays in the CPU's cache while every pass over
        it runs; it stops at the last key any of its rows can see (causal blocks skip the future, so early
        blocks take more rows). Blocks share two buffers: a block is valid until the next one is made."""
        rule = self.layers[layer].mask
        span = range(self.n_queries)[rows]
        device = self.layers[layer].query.device
        cells = min(max(BLOCK_CELLS, self.n_heads * self.n_keys), self.n_heads * len(span) * self.n_keys)
        buffers = torch.empty(cells, device=device), torch.empty(cells, device=device)  # no fresh pages per block
        start = span.start
        while start < span.stop:
            stop = min(span.stop, start + self._rows_per_block(start, rule))
            scores = self.scores(layer, None, slice(start, stop), rule.visible_keys(stop), MASKED_SCORE, buffers[0])
            yield WeightBlock(start, stop, scores, buffers[1][: scores.nelement()].view(scores.shape), pool)
            start = stop

    def _rows_per_block(self, start: int, rule: MaskRule) -> int:
        """Rows from `start` whose scores fill about BLOCK_CELLS: heads × rows × keys seen. A causal block
        from `start` with r rows sees start + r keys, so r is the root of r (start + r) = BLOCK_CELLS / heads."""
        per_head = BLOCK_CELLS / self.n_heads
        if rule.visible_keys(start + 1) < self.n_keys:  # causal
            rows = (math.sqrt(start * start + 4 * per_head) - start) / 2
        else:
            rows = per_head / self.n_keys
        return max(1, int(rows))


MASKED_SCORE = -1e30  # a forbidden key's score in streamed blocks: exp gives 0 and 0 · score stays 0 (−inf gives NaN)
MODERATE = 60.0  # |score| below this: e^score neither overflows nor vanishes in float32, so no shift is needed


class WeightBlock:
    """Rows [start, stop) of one layer's attention, every head, as the softmax's parts and what one pass over
    them gives. With s the scores (forbidden keys MASKED_SCORE) and c_i a shift (softmax ignores it):

        exp_ij   = e^(s_ij − c_i)          total_i = Σ_j exp_ij          α_ij = exp_ij / total_i
        entropy_i  = −Σ_j α_ij log α_ij = log total_i − Σ_j α_ij (s_ij − c_i)
        mean_key_i = Σ_j α_ij j
        column_log_max[h, i, b] = max over keys j of column block b of log α_ij    (when `pool` is given)

    c_i = max_j s_ij, unless every row's largest score is moderate (|max| < MODERATE): then c = 0 and the
    block is read one time less. Tensors are [heads, rows, keys'], [heads, rows, 1] or [heads, rows]."""

    def __init__(
        self, start: int, stop: int, scores: torch.Tensor, exp_out: torch.Tensor | None = None, pool: int | None = None
    ) -> None:
        self.start, self.stop = start, stop
        column_max = _column_max(scores, pool) if pool else None
        row_max = (column_max if pool else scores).amax(-1, keepdim=True)
        if not bool((row_max.abs() < MODERATE).all()):
            scores.sub_(row_max)  # in place: the scores are this block's own
            column_max = None if column_max is None else column_max - row_max
        self.exp = torch.exp(scores, out=exp_out)
        keys = scores.shape[-1]
        ones_and_positions = torch.stack([torch.ones(keys), torch.arange(keys, dtype=torch.float32)], 1)
        moments = (self.exp.view(-1, keys) @ ones_and_positions.to(scores.device)).view(*scores.shape[:2], 2)
        self.total = moments[..., :1]
        self.mean_key = moments[..., 1] / moments[..., 0]
        self.column_log_max = None if column_max is None else column_max - self.total.log()
        self.entropy = self.total[..., 0].log() - scores.mul_(self.exp).sum(-1) / self.total[..., 0]  # scores spent

    def weights(self) -> torch.Tensor:
        """α [heads, rows, keys'] (a new tensor)."""
        return self.exp / self.total


def _column_max(scores: torch.Tensor, pool: int) -> torch.Tensor:
    """[heads, rows, ceil(keys / pool)]: each row's largest score in each block of `pool` keys (no copy)."""
    if pool == 1:
        return scores.clone()
    keys = scores.shape[-1]
    whole = keys // pool * pool
    parts = [scores[..., :whole].unflatten(-1, (whole // pool, pool)).amax(-1)] if whole else []
    if whole < keys:
        parts.append(scores[..., whole:].amax(-1, keepdim=True))
    return torch.cat(parts, dim=-1)


@dataclass(frozen=True)
class Trace:
    model_key: str
    model_name: str
    model_class: str
    family: str
    head: str
    text: str
    target_text: str | None
    question: str | None
    ablated: tuple[tuple[str, int, int], ...]  # (stack, layer, head) zeroed in this pass
    tokens: Mapping[str, TokenSeq]
    stacks: Mapping[str, AttentionStack]
    hidden_states: Mapping[str, np.ndarray]  # "encoder"/"decoder": [layers + 1, T, d_model]
    outputs: Mapping[str, np.ndarray]  # the head's small outputs: a classifier's "logits", "start_logits", ...
    dropped_tokens: int  # how many tokens the length cap cut from the end of the text
    prompt_length: int  # source tokens that came from the text (the rest were generated)
    token_limit: int
    timings_ms: Mapping[str, float]
    device: str
    dtype: str
    identity: tuple = ()  # everything the pass was built from: derived views are cached under it
    readout: Readout | None = field(default=None, compare=False, repr=False)  # a language model's logits on request

    @property
    def stack_names(self) -> tuple[str, ...]:
        return tuple(self.stacks)

    @property
    def self_stacks(self) -> tuple[str, ...]:
        """Stacks whose queries and keys are one sequence (the patterns, rollout and PCA read these)."""
        return tuple(name for name, s in self.stacks.items() if s.queries_from == s.keys_from)

    @property
    def cross_stack(self) -> str | None:
        """The stack whose queries read another sequence's keys (encoder-decoders' cross-attention), if any."""
        return next((name for name, s in self.stacks.items() if s.queries_from != s.keys_from), None)

    @property
    def output_stack(self) -> str:
        """The stack whose last hidden state the model's head reads (a decoder's, where there is one)."""
        return list(self.hidden_states)[-1]

    def hidden_tokens(self, stack: str) -> TokenSeq:
        """The tokens of a stack's hidden states (row t of `hidden_states[stack][layer]`)."""
        return self.tokens[self.stacks[stack].queries_from]

    @property
    def output_tokens(self) -> TokenSeq:
        """What labels the rows of the head's per-position outputs: the tokens read where the head runs on the
        text (a causal LM's row i predicts token i + 1), the target where a decoder writes one."""
        return self.tokens["target"] if "target" in self.tokens else self.tokens["source"]

    def stack_tokens(self, stack: str) -> tuple[TokenSeq, TokenSeq]:
        """(row tokens, column tokens) of a stack's attention matrices."""
        s = self.stacks[stack]
        return self.tokens[s.queries_from], self.tokens[s.keys_from]

    def logits(self, rows: slice = ALL) -> np.ndarray:
        """The head's logits: [rows, vocabulary] for a language model's positions (row i of `output_tokens`),
        [labels] for a sequence classifier. A language model's are computed here from the last hidden state
        through the model's own head (viz.readout) -- equal to the forward pass's, which a Trace does not keep:
        4,096 SmolLM2 positions would hold 0.8 GB of them."""
        if self.readout is None:
            logits = self.outputs["logits"]
            return logits if logits.ndim == 1 else logits[rows]
        return _numpy(self.readout.logits(self.hidden_states[self.output_stack][-1][rows]))

    @property
    def has_logits(self) -> bool:
        return self.readout is not None or "logits" in self.outputs

    @property
    def output_shapes(self) -> dict[str, tuple[int, ...]]:
        """The head's outputs as the forward pass returns them, without the batch axis: "logits", ..."""
        shapes = {name: value.shape for name, value in self.outputs.items()}
        if self.readout is not None:
            shapes = {"logits": (len(self.output_tokens), self.logits(slice(-1, None)).shape[-1]), **shapes}
        return shapes

    def bytes_by_device(self) -> Counter:
        """What this Trace holds, per device: q/k/v where their layer ran, hidden states and small outputs in RAM."""
        sizes = Counter({"cpu": sum(a.nbytes for a in (*self.hidden_states.values(), *self.outputs.values()))})
        for stack in self.stacks.values():
            sizes.update(stack.bytes_by_device())
        return sizes

    @property
    def nbytes(self) -> int:
        return sum(self.bytes_by_device().values())


def token_limit(loaded: LoadedModel, max_tokens: int) -> int:
    """The smaller of the user's cap and the model's positions (None for relative positions)."""
    positions = loaded.position_limit
    return min(max_tokens, positions) if positions else max_tokens


# ---------------------------------------------------------------- build_trace: encode → extend → forward → assemble
@dataclass
class _Inputs:
    """What the forward pass reads, and the token sequences the views label it with."""

    enc: dict  # tokenizer output on the model's device
    tokens: dict[str, TokenSeq]
    full_length: int  # tokens the text would have without the cap
    prompt_length: int
    extra: dict  # decoder_input_ids for encoder-decoders
    timings: dict[str, float]


def _encode_ids(loaded: LoadedModel, ids: tuple[int, ...], limit: int) -> _Inputs:
    """Token ids read as they are (the induction probe: random tokens no text would tokenize to)."""
    kept = list(ids[:limit])
    tensor = torch.tensor([kept], device=loaded.device)
    enc = {"input_ids": tensor, "attention_mask": torch.ones_like(tensor)}
    return _Inputs(enc, {"source": token_seq(loaded.tokenizer, kept)}, len(ids), len(kept), {}, {})


def _tokenizer_input(loaded: LoadedModel, text: str, question: str | None, chat: bool) -> tuple[tuple, dict]:
    """What the tokenizer is given: (text,) or (question, context), and its special-token option."""
    tokenizer = loaded.tokenizer
    if chat and getattr(tokenizer, "chat_template", None):
        turn = [{"role": "user", "content": text}]
        # The template already holds the special tokens.
        return (tokenizer.apply_chat_template(turn, tokenize=False, add_generation_prompt=True),), {
            "add_special_tokens": False
        }
    return ((question.strip(), text) if question and question.strip() else (text,)), {}


def reading_limit(
    loaded: LoadedModel,
    text: str,
    max_tokens: int,
    continuation: int = 0,
    question: str | None = None,
    chat: bool = False,
    token_ids: tuple[int, ...] = (),
    target_text: str | None = None,
) -> int:
    """The length cap as it matters for this input: the most tokens a pass at `max_tokens` would read in
    any of its sequences. Every cap from there up gives the same pass, so it is the one cache key."""
    limit = token_limit(loaded, max_tokens)
    if token_ids:
        length = len(token_ids)
    else:
        pair, special = _tokenizer_input(loaded, text, question, chat)
        length = len(loaded.tokenizer(*pair, **special)["input_ids"])
    if loaded.family == DECODER:
        length += continuation
    elif loaded.family == ENCODER_DECODER:
        forced = target_text and target_text.strip()
        target = len(loaded.tokenizer(text_target=target_text)["input_ids"]) if forced else MAX_NEW_TOKENS
        length = max(length, target)
    return max(1, min(limit, length))


def _encode(loaded: LoadedModel, text: str, limit: int, question: str | None, chat: bool) -> _Inputs:
    model, tokenizer = loaded.model, loaded.tokenizer
    pair, special = _tokenizer_input(loaded, text, question, chat)
    enc = tokenizer(*pair, return_tensors="pt", **special)
    full_length = enc["input_ids"].shape[1]
    if full_length > limit:  # tokenize again with the cap: truncation keeps the closing special tokens
        enc = tokenizer(*pair, return_tensors="pt", truncation=True, max_length=limit, **special)
    if "token_type_ids" not in inspect.signature(model.forward).parameters:
        enc.pop("token_type_ids", None)  # e.g. DistilBERT's tokenizer makes them, its model refuses them
    word_ids = enc.word_ids(0) if enc.is_fast else None
    segments = enc.sequence_ids(0) if enc.is_fast and len(pair) == 2 else None
    enc = {k: v.to(loaded.device) for k, v in enc.items()}
    ids = enc["input_ids"][0].tolist()
    return _Inputs(enc, {"source": token_seq(tokenizer, ids, word_ids, segments)}, full_length, len(ids), {}, {})


def _extend(
    loaded: LoadedModel, inputs: _Inputs, limit: int, continuation: int, target_text: str | None, target_ids: tuple
) -> None:
    """Generate what the single pass should also read: a decoder's continuation, an encoder-decoder's target
    (or take the target given as text or as token ids)."""
    model, tokenizer = loaded.model, loaded.tokenizer
    room = max(0, limit - inputs.prompt_length)  # a prompt that fills the cap leaves nothing to generate
    if continuation and room and loaded.family == DECODER and loaded.head.name == "causal-lm":
        t0 = time.perf_counter()
        generated = model.generate(**inputs.enc, max_new_tokens=min(continuation, room), do_sample=False, num_beams=1)
        inputs.timings["generate"] = (time.perf_counter() - t0) * 1000
        inputs.tokens["source"] = token_seq(tokenizer, generated[0].tolist())
        inputs.enc = {"input_ids": generated, "attention_mask": torch.ones_like(generated)}
    if loaded.family == ENCODER_DECODER:
        start = model.generation_config.decoder_start_token_id
        if start is None:
            start = model.config.decoder_start_token_id
        if target_ids:
            sequence = [start, *target_ids]
        elif target_text is not None and target_text.strip():
            labels = tokenizer(text_target=target_text, truncation=True, max_length=limit)["input_ids"]
            sequence = [start, *labels]
        else:
            t0 = time.perf_counter()
            steps = min(MAX_NEW_TOKENS, limit)  # the output, too, stays within Max tokens
            generated = model.generate(**inputs.enc, max_new_tokens=steps, do_sample=False, num_beams=1)
            inputs.timings["generate"] = (time.perf_counter() - t0) * 1000
            sequence = generated[0].tolist()
        inputs.tokens["decoder_input"] = token_seq(tokenizer, sequence[:-1])
        inputs.tokens["target"] = token_seq(tokenizer, sequence[1:])
        inputs.extra["decoder_input_ids"] = torch.tensor([sequence[:-1]], device=loaded.device)


def _heads_to_ablate(loaded: LoadedModel, ablate: tuple[tuple[str, int, int], ...]) -> dict:
    heads: dict[torch.nn.Module, list[int]] = {}
    for stack, layer, head in ablate:
        heads.setdefault(loaded.attention_modules[stack][layer], []).append(head)
    return heads


def _forward(loaded: LoadedModel, inputs: _Inputs, ablate: tuple[tuple[str, int, int], ...], readout: bool):
    """The one forward pass, on the fused attention kernel, recording q/k/v per layer. With a `readout` the
    logits are read later from the last hidden state: a causal LM computes only its last position's."""
    t0 = time.perf_counter()
    keep = (
        {"logits_to_keep": 1}
        if readout and "logits_to_keep" in inspect.signature(loaded.model.forward).parameters
        else {}
    )
    with recording() as calls, ablating(_heads_to_ablate(loaded, ablate)):
        out = loaded.model(**inputs.enc, **inputs.extra, output_hidden_states=True, return_dict=True, **keep)
    if loaded.device.type == "cuda":
        torch.cuda.synchronize()
    inputs.timings["forward"] = (time.perf_counter() - t0) * 1000
    loaded.count_forward()
    return out, calls


_STACK_TOKENS = {"encoder": ("source", "source"), "decoder": ("source", "source"), "cross": ("target", "source")}


def _stacks(loaded: LoadedModel, calls: list[AttentionRecord]) -> dict[str, AttentionStack]:
    """Group the records by stack and check them against the modules learnt when the model loaded."""
    by_stack = group_by_stack(loaded, calls)
    expected = {name: len(modules) for name, modules in loaded.attention_modules.items()}
    if {name: len(records) for name, records in by_stack.items()} != expected:
        raise AtlasError(
            f"'{loaded.name}' routed {len(calls)} attention calls differently from its {sum(expected.values())} "
            "attention layers: this architecture's attention can't be inspected reliably."
        )
    stacks = {}
    for name, records in by_stack.items():
        rows, cols = _STACK_TOKENS[name]
        if loaded.family == ENCODER_DECODER and name == "decoder":
            rows = cols = "decoder_input"
        projections = tuple(loaded.output_projections.get(id(r.module)) for r in records)
        stacks[name] = AttentionStack(name, rows, cols, tuple(records), projections)
    return stacks


def _recurrent_trace(loaded: LoadedModel, text: str, target_text: str | None, limit: int) -> Trace:
    """A recurrent encoder-decoder's one pass (viz.recurrent) as a Trace: its α as a one-layer, one-head
    cross-attention (none without attention), the encoder's and the decoder's states, each step's logits."""
    tokenizer = loaded.tokenizer
    t0 = time.perf_counter()
    full = tokenizer(text)["input_ids"]
    inputs = full[:limit]
    forced = tokenizer(text_target=target_text)["input_ids"][:limit] if target_text and target_text.strip() else None
    reading = read(loaded.model, inputs, tokenizer.pad_token_id, tokenizer.eos_token_id, forced)
    loaded.count_forward()
    timings = {"forward": (time.perf_counter() - t0) * 1000}
    tokens = {
        "source": token_seq(tokenizer, inputs),
        "decoder_input": token_seq(tokenizer, [tokenizer.pad_token_id, *reading.outputs[:-1]]),
        "target": token_seq(tokenizer, reading.outputs),
    }
    stacks = {} if reading.alpha is None else {"cross": StoredAttention("cross", "target", "source", reading.alpha)}
    frozen = lambda a: np.require(a, np.float32, requirements="C")[None]  # noqa: E731 -- [1 layer, T, hidden]
    hidden = {"encoder": frozen(reading.encoder_states), "decoder": frozen(reading.decoder_states[1:])}
    for array in hidden.values():
        array.flags.writeable = False
    identity = (*loaded.identity, text, target_text or None, limit)
    return Trace(
        model_key=loaded.key, model_name=loaded.name, model_class=type(loaded.model).__name__, family=loaded.family,
        head=loaded.head.name, text=text, target_text=target_text or None, question=None, ablated=(),
        tokens=MappingProxyType(tokens), stacks=MappingProxyType(stacks), hidden_states=MappingProxyType(hidden),
        outputs=MappingProxyType({"logits": reading.logits}), dropped_tokens=max(0, len(full) - len(inputs)),
        prompt_length=len(inputs), token_limit=limit, timings_ms=MappingProxyType(timings), device="cpu",
        dtype="float32", identity=identity,
    )  # fmt: skip


def build_trace(
    loaded: LoadedModel,
    text: str,
    target_text: str | None = None,
    max_tokens: int = DEFAULT_MAX_TOKENS,
    continuation: int = 0,
    question: str | None = None,
    chat: bool = False,
    ablate: tuple[tuple[str, int, int], ...] = (),
    token_ids: tuple[int, ...] = (),
    target_ids: tuple[int, ...] = (),
) -> Trace:
    """Run the model once on `text`, keeping q/k/v and head outputs per layer, hidden states and logits.

    Encoder-decoders also need a target: `target_text` (forced decoding) or, when it is
    empty, the model's own greedy output (generated first, then read in the same single pass).
    Decoder-only models with `continuation` > 0 likewise first generate that many tokens
    greedily; the pass then reads prompt + continuation (`Trace.prompt_length` marks the split).
    Question-answering models read (`question`, `text`) as a pair, `text` being the context.
    `chat` wraps the text as a user turn in the tokenizer's chat template (instruct models).
    `ablate` lists (stack, layer, head) whose outputs are zeroed in this pass (head ablation).
    `token_ids`, when given, are read instead of the tokenized text (`text` then only names them); `target_ids`
    likewise stand for an encoder-decoder's target (e.g. tokens a sampler chose, which text might not re-encode to).
    """
    if not text or not text.strip():
        raise AtlasError("The text is empty: type something for the model to read.")
    limit = token_limit(loaded, max_tokens)
    if not loaded.adapter.layered:
        return _recurrent_trace(loaded, text, target_text, limit)
    with torch.inference_mode():
        inputs = _encode_ids(loaded, token_ids, limit) if token_ids else _encode(loaded, text, limit, question, chat)
        _extend(loaded, inputs, limit, continuation, target_text, target_ids)
        readout = readout_for(loaded)
        out, calls = _forward(loaded, inputs, ablate, readout is not None)
    stacks = _stacks(loaded, calls)
    if loaded.family == ENCODER_DECODER:
        hidden = {"encoder": out.encoder_hidden_states, "decoder": out.decoder_hidden_states}
    else:
        hidden = {loaded.family: out.hidden_states}
    outputs = {k: _numpy(v[0]) for k, v in out.items() if k.endswith("logits") and isinstance(v, torch.Tensor)}
    if readout is not None:
        del outputs["logits"]
    identity = (*loaded.identity, text, target_text or None, limit)
    identity += (continuation, question or None, chat, tuple(ablate), tuple(token_ids), tuple(target_ids))
    return Trace(
        model_key=loaded.key,
        model_name=loaded.name,
        model_class=type(loaded.model).__name__,
        family=loaded.family,
        head=loaded.head.name,
        text=text,
        target_text=target_text or None,
        question=question or None,
        ablated=tuple(ablate),
        tokens=MappingProxyType(inputs.tokens),
        stacks=MappingProxyType(stacks),
        hidden_states=MappingProxyType({k: _stacked([h[0] for h in v]) for k, v in hidden.items()}),
        outputs=MappingProxyType(outputs),
        dropped_tokens=max(0, inputs.full_length - inputs.prompt_length),
        prompt_length=inputs.prompt_length,
        token_limit=limit,
        timings_ms=MappingProxyType(inputs.timings),
        device=str(loaded.device),
        dtype=str(loaded.dtype).removeprefix("torch."),
        identity=identity,
        readout=readout,
    )
