"""The Trace: one forward pass, everything every view needs, under stable names.

    trace = build_trace(loaded, "time flies like an arrow")
    trace.stacks["encoder"].attentions[layer, head]      # [T, T], rows sum to 1
    trace.stacks["encoder"].queries[layer, head]         # [T, d_head]
    trace.hidden_states["encoder"][layer]                # [T, d_model], layer 0 = embeddings
    trace.outputs["logits"]                              # what the model head produced

Stacks are "encoder" (encoder-only models and the encoder of encoder-decoders), "decoder"
(decoder-only models and the decoder of encoder-decoders) and "cross" (decoder rows attending
to encoder tokens). Token sequences are "source" (the text) and, for encoder-decoders,
"decoder_input" (what the decoder reads: start token + target[:-1]) and "target" (what each
decoder step produces). Arrays are float32 numpy and read-only: a Trace is shared between
browser sessions through the cache.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np
import torch

from viz.architectures import DECODER, ENCODER_DECODER, stack_of
from viz.capture import AttentionCall, ablating, recording
from viz.errors import AtlasError
from viz.models import LoadedModel
from viz.tokens import TokenSeq, token_seq

DEFAULT_MAX_TOKENS = 256
MAX_NEW_TOKENS = 48  # encoder-decoder output length when no target text is given


@dataclass(frozen=True)
class AttentionStack:
    name: str  # "encoder" | "decoder" | "cross"
    queries_from: str  # token sequence of the rows
    keys_from: str  # token sequence of the columns
    attentions: np.ndarray  # [layers, heads, Tq, Tk] as the model returned them
    queries: np.ndarray  # [layers, heads, Tq, d_head] as the scores use them (after RoPE)
    keys: np.ndarray  # [layers, heads, Tk, d_head] (GQA: KV heads repeated to query heads)
    values: np.ndarray  # [layers, heads, Tk, d_head]
    contexts: np.ndarray  # [layers, heads, Tq, d_head]: each head's output, before the output projection
    masked: np.ndarray  # [layers, Tq, Tk] bool: True where attending is forbidden
    bias: np.ndarray | None  # [layers, heads, Tq, Tk] added to the scores (T5 position bias)
    scaling: np.ndarray  # [layers]: scores = q·k * scaling
    kv_heads: int  # distinct key/value heads (< heads under grouped-query attention)

    @property
    def n_layers(self) -> int:
        return self.attentions.shape[0]

    @property
    def n_heads(self) -> int:
        return self.attentions.shape[1]

    @property
    def causal(self) -> bool:
        return bool(self.masked.any())


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
    outputs: Mapping[str, np.ndarray]  # the head's outputs: "logits", "start_logits", ...
    dropped_tokens: int  # how many tokens the length cap cut from the end of the text
    prompt_length: int  # source tokens that came from the text (the rest were generated)
    token_limit: int
    timings_ms: Mapping[str, float]
    device: str
    dtype: str

    @property
    def stack_names(self) -> tuple[str, ...]:
        return tuple(self.stacks)

    def stack_tokens(self, stack: str) -> tuple[TokenSeq, TokenSeq]:
        """(row tokens, column tokens) of a stack's attention matrices."""
        s = self.stacks[stack]
        return self.tokens[s.queries_from], self.tokens[s.keys_from]


def _frozen(array: np.ndarray) -> np.ndarray:
    array.flags.writeable = False
    return array


def _numpy(t: torch.Tensor) -> np.ndarray:
    return _frozen(t.detach().float().cpu().numpy())


def token_limit(loaded: LoadedModel, max_tokens: int) -> int:
    """The smaller of the user's cap and the model's positions (None for relative positions)."""
    config = loaded.model.config
    positions = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)
    return min(max_tokens, positions) if positions else max_tokens


def _stack(
    name: str, calls: list[AttentionCall], returned: tuple[torch.Tensor, ...], rows: str, cols: str
) -> AttentionStack:
    if len(calls) != len(returned):
        raise AtlasError(
            f"Captured {len(calls)} {name} attention layers but the model returned {len(returned)}: "
            "this architecture's attention can't be inspected reliably."
        )
    shape = (calls[0].query.shape[0], calls[0].query.shape[1], calls[0].key.shape[1])
    biases = [c.bias for c in calls]
    return AttentionStack(
        name=name,
        queries_from=rows,
        keys_from=cols,
        attentions=_numpy(torch.stack([a[0] for a in returned])),
        queries=_frozen(torch.stack([c.query for c in calls]).numpy()),
        keys=_frozen(torch.stack([c.key for c in calls]).numpy()),
        values=_frozen(torch.stack([c.value for c in calls]).numpy()),
        contexts=_frozen(torch.stack([c.context for c in calls]).numpy()),
        masked=_frozen(torch.stack([c.masked for c in calls]).numpy()),
        bias=None
        if all(b is None for b in biases)
        else _frozen(torch.stack([torch.zeros(shape) if b is None else b for b in biases]).numpy()),
        scaling=_frozen(np.array([c.scaling for c in calls], dtype=np.float32)),
        kv_heads=calls[0].kv_heads,
    )


def _decoder_ids(loaded: LoadedModel, enc: dict, target_text: str | None, limit: int) -> tuple[list[int], float]:
    """Start token + target: the user's target (forced decoding), else the model's greedy output."""
    model, tokenizer = loaded.model, loaded.tokenizer
    start = model.generation_config.decoder_start_token_id
    if start is None:
        start = model.config.decoder_start_token_id
    if target_text is not None and target_text.strip():
        labels = tokenizer(text_target=target_text, truncation=True, max_length=limit)["input_ids"]
        return [start, *labels], 0.0
    t0 = time.perf_counter()
    generated = model.generate(**enc, max_new_tokens=MAX_NEW_TOKENS, do_sample=False, num_beams=1)
    return generated[0].tolist(), (time.perf_counter() - t0) * 1000


def _heads_to_ablate(loaded: LoadedModel, ablate: tuple[tuple[str, int, int], ...]) -> dict:
    if not ablate:
        return {}
    if not loaded.attention_modules:
        raise AtlasError("Run the model once on a text before ablating heads.")
    heads: dict[torch.nn.Module, list[int]] = {}
    for stack, layer, head in ablate:
        heads.setdefault(loaded.attention_modules[stack][layer], []).append(head)
    return heads


def build_trace(
    loaded: LoadedModel,
    text: str,
    target_text: str | None = None,
    max_tokens: int = DEFAULT_MAX_TOKENS,
    continuation: int = 0,
    question: str | None = None,
    chat: bool = False,
    ablate: tuple[tuple[str, int, int], ...] = (),
) -> Trace:
    """Run the model once on `text` and capture attentions, q/k/v, hidden states and logits.

    Encoder-decoders also need a target: `target_text` (forced decoding) or, when it is
    empty, the model's own greedy output (generated first, then read in the same single pass).
    Decoder-only models with `continuation` > 0 likewise first generate that many tokens
    greedily; the pass then reads prompt + continuation (`Trace.prompt_length` marks the split).
    Question-answering models read (`question`, `text`) as a pair, `text` being the context.
    `chat` wraps the text as a user turn in the tokenizer's chat template (instruct models).
    `ablate` lists (stack, layer, head) whose outputs are zeroed in this pass (head ablation).
    """
    if not text or not text.strip():
        raise AtlasError("The text is empty: type something for the model to read.")
    model, tokenizer = loaded.model, loaded.tokenizer
    limit = token_limit(loaded, max_tokens)
    pair = (question.strip(), text) if question and question.strip() else (text,)
    special = {}
    if chat and getattr(tokenizer, "chat_template", None):
        turn = [{"role": "user", "content": text}]
        pair = (tokenizer.apply_chat_template(turn, tokenize=False, add_generation_prompt=True),)
        special = {"add_special_tokens": False}  # the template already holds them
    full_length = len(tokenizer(*pair, **special)["input_ids"])
    enc = tokenizer(*pair, return_tensors="pt", truncation=True, max_length=limit, **special)
    if "token_type_ids" not in inspect.signature(model.forward).parameters:
        enc.pop("token_type_ids", None)  # e.g. DistilBERT's tokenizer makes them, its model refuses them
    word_ids = enc.word_ids(0) if enc.is_fast else None
    segments = enc.sequence_ids(0) if enc.is_fast and len(pair) == 2 else None
    enc = {k: v.to(loaded.device) for k, v in enc.items()}
    source_ids = enc["input_ids"][0].tolist()
    tokens = {"source": token_seq(tokenizer, source_ids, word_ids, segments)}
    timings = {}
    kwargs = {}
    prompt_length = len(source_ids)
    with torch.inference_mode():
        if continuation and loaded.family == DECODER and loaded.head.name == "causal-lm":
            t0 = time.perf_counter()
            room = max(0, limit - prompt_length)
            generated = model.generate(**enc, max_new_tokens=min(continuation, room), do_sample=False, num_beams=1)
            timings["generate"] = (time.perf_counter() - t0) * 1000
            source_ids = generated[0].tolist()
            tokens["source"] = token_seq(tokenizer, source_ids)
            enc = {"input_ids": generated, "attention_mask": torch.ones_like(generated)}
        if loaded.family == ENCODER_DECODER:
            sequence, timings["generate"] = _decoder_ids(loaded, enc, target_text, limit)
            tokens["decoder_input"] = token_seq(tokenizer, sequence[:-1])
            tokens["target"] = token_seq(tokenizer, sequence[1:])
            kwargs["decoder_input_ids"] = torch.tensor([sequence[:-1]], device=loaded.device)
        t0 = time.perf_counter()
        with recording() as calls, ablating(_heads_to_ablate(loaded, ablate)):
            out = model(**enc, **kwargs, output_attentions=True, output_hidden_states=True, return_dict=True)
        if loaded.device.type == "cuda":
            torch.cuda.synchronize()
        timings["forward"] = (time.perf_counter() - t0) * 1000
    loaded.count_forward()

    by_stack: dict[str, list[AttentionCall]] = {"encoder": [], "decoder": [], "cross": []}
    for call in calls:
        by_stack[stack_of(loaded.module_names[id(call.module)], loaded.adapter)].append(call)
    if not loaded.attention_modules:  # the same for every pass: learnt once, used for ablation
        loaded.attention_modules = {name: [c.module for c in stack] for name, stack in by_stack.items() if stack}
    if loaded.family == ENCODER_DECODER:
        stacks = {
            "encoder": _stack("encoder", by_stack["encoder"], out.encoder_attentions, "source", "source"),
            "decoder": _stack("decoder", by_stack["decoder"], out.decoder_attentions, "decoder_input", "decoder_input"),
            "cross": _stack("cross", by_stack["cross"], out.cross_attentions, "target", "source"),
        }
        hidden = {"encoder": out.encoder_hidden_states, "decoder": out.decoder_hidden_states}
    else:
        name = loaded.family  # ENCODER or DECODER
        if not getattr(out, "attentions", None):
            raise AtlasError(f"'{loaded.name}' did not return attention weights; it can't be inspected here.")
        stacks = {name: _stack(name, by_stack[name], out.attentions, "source", "source")}
        hidden = {name: out.hidden_states}
    outputs = {k: _numpy(v[0]) for k, v in out.items() if k.endswith("logits") and isinstance(v, torch.Tensor)}
    return Trace(
        model_key=loaded.key,
        model_name=loaded.name,
        model_class=type(model).__name__,
        family=loaded.family,
        head=loaded.head.name,
        text=text,
        target_text=target_text or None,
        question=question or None,
        ablated=tuple(ablate),
        tokens=MappingProxyType(tokens),
        stacks=MappingProxyType(stacks),
        hidden_states=MappingProxyType({k: _numpy(torch.stack([h[0] for h in v])) for k, v in hidden.items()}),
        outputs=MappingProxyType(outputs),
        dropped_tokens=max(0, full_length - prompt_length),
        prompt_length=prompt_length,
        token_limit=limit,
        timings_ms=MappingProxyType(timings),
        device=str(loaded.device),
        dtype=str(loaded.dtype).removeprefix("torch."),
    )
