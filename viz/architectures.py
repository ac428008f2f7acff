"""The adapter table: everything that differs between model architectures lives here.

Pages and analyses never branch on the architecture; they ask this table.
"""

from __future__ import annotations

from dataclasses import dataclass

ENCODER, DECODER, ENCODER_DECODER = "encoder", "decoder", "encoder-decoder"
RNN = "RNN encoder-decoder"  # viz.recurrent: one attention (or none), no layers × heads


@dataclass(frozen=True)
class Block:
    """How one layer passes the residual stream, as module paths from the layer (the numbered module holding the
    attention; "-1" picks a list's last entry). Contributions (viz.contributions) read the stream from it."""

    norm: str  # "pre": x + f(LN x), the stream itself is added to;  "post": LN(x + f(x)), a LayerNorm after each sum
    mlp: tuple[str, ...]  # applied in order to the stream the MLP reads, give the MLP's output (pre: its LN first)
    mlp_down: str  # the MLP's last linear map: its input is the neurons' activations
    attention_norm: str = ""  # post: the LayerNorm after the self-attention sum
    cross_norm: str = ""  # post: the LayerNorm after the cross-attention sum


@dataclass(frozen=True)
class Adapter:
    family: str  # ENCODER | DECODER | ENCODER_DECODER
    # Substring(s, "|"-separated) of the module names of cross-attention layers (encoder-decoders).
    cross_attention: str = ""
    # Logit lens: the model's own path from a hidden state to logits, as dotted module paths.
    # `final_norm` is applied to intermediate layers only: the last hidden state the model
    # returns has already been through it.
    final_norm: str | None = None
    output_head: tuple[str, ...] = ()  # modules applied in order
    logits_bias: str | None = None  # a buffer added to the logits (BART, Marian)
    tied_output_scale: bool = False  # T5 multiplies by d_model**-0.5 before a tied LM head
    positions: str = "learned absolute position embeddings, added to the token embeddings"
    # The output projection W_O (the heads' concatenated outputs -> the residual stream), as a module path
    # from the attention module; "../" goes up one level (BERT keeps it beside its self-attention).
    # Empty: try GENERIC_OUTPUT_NAMES. Value-weighted attention reads each head's slice of it.
    output_projection: str = ""
    block: Block | None = None  # None: contributions aren't offered (an architecture not in this table)
    layered: bool = True  # False: a recurrent model (viz.recurrent): one attention α or none, no layers × heads


_BERT_BLOCK = Block("post", ("intermediate", "output.dense"), "output.dense", "attention.output.LayerNorm")
_LLAMA_BLOCK = Block("pre", ("post_attention_layernorm", "mlp"), "mlp.down_proj")
_T5_BLOCK = Block("pre", ("layer.-1.layer_norm", "layer.-1.DenseReluDense"), "layer.-1.DenseReluDense.wo")
_BART_BLOCK = Block("post", ("fc1", "activation_fn", "fc2"), "fc2", "self_attn_layer_norm", "encoder_attn_layer_norm")
_MBART_BLOCK = Block("pre", ("final_layer_norm", "fc1", "activation_fn", "fc2"), "fc2")
_MLM = ("cls",)
_T5_POSITIONS = "relative position bias: a learned per-head bias added to the scores (no 1/√d scaling)"
_SINUSOIDAL = "fixed sinusoidal position embeddings, added to the token embeddings"
_LM = ("lm_head",)
_BERT_OUTPUT = "../output.dense"
_LLAMA_LIKE = Adapter(
    DECODER,
    final_norm="model.norm",
    output_head=_LM,
    positions="rotary (RoPE): applied to q and k inside every layer, so the captured q, k include it",
    output_projection="o_proj",
    block=_LLAMA_BLOCK,
)
_T5_LIKE = Adapter(
    ENCODER_DECODER,
    "EncDecAttention",
    "decoder.final_layer_norm",
    _LM,
    tied_output_scale=True,
    positions=_T5_POSITIONS,
    output_projection="o",
    block=_T5_BLOCK,
)
ADAPTERS: dict[str, Adapter] = {
    "bert": Adapter(ENCODER, output_head=_MLM, output_projection=_BERT_OUTPUT, block=_BERT_BLOCK),
    "roberta": Adapter(ENCODER, output_head=_LM, output_projection=_BERT_OUTPUT, block=_BERT_BLOCK),
    "xlm-roberta": Adapter(ENCODER, output_head=_LM, output_projection=_BERT_OUTPUT, block=_BERT_BLOCK),
    "distilbert": Adapter(
        ENCODER,
        output_head=("vocab_transform", "activation", "vocab_layer_norm", "vocab_projector"),
        output_projection="out_lin",
        block=Block("post", ("ffn",), "ffn.lin2", "sa_layer_norm"),
    ),
    "electra": Adapter(ENCODER, output_projection=_BERT_OUTPUT, block=_BERT_BLOCK),
    "gpt2": Adapter(
        DECODER,
        final_norm="transformer.ln_f",
        output_head=_LM,
        output_projection="c_proj",
        block=Block("pre", ("ln_2", "mlp"), "mlp.c_proj"),
    ),
    "llama": _LLAMA_LIKE,
    "mistral": _LLAMA_LIKE,
    "qwen2": _LLAMA_LIKE,
    "t5": _T5_LIKE,
    "mt5": _T5_LIKE,
    "bart": Adapter(
        ENCODER_DECODER, "encoder_attn", None, _LM, "final_logits_bias", output_projection="out_proj", block=_BART_BLOCK
    ),
    "mbart": Adapter(
        ENCODER_DECODER,
        "encoder_attn",
        "model.decoder.layer_norm",
        _LM,
        "final_logits_bias",
        output_projection="out_proj",
        block=_MBART_BLOCK,
    ),
    "marian": Adapter(
        ENCODER_DECODER,
        "encoder_attn",
        None,
        _LM,
        "final_logits_bias",
        positions=_SINUSOIDAL,
        output_projection="out_proj",
        block=_BART_BLOCK,
    ),
    "pegasus": Adapter(
        ENCODER_DECODER,
        "encoder_attn",
        "model.decoder.layer_norm",
        _LM,
        "final_logits_bias",
        positions=_SINUSOIDAL,
        output_projection="out_proj",
        block=_MBART_BLOCK,
    ),
}

RECURRENT = Adapter(
    RNN, positions="none: a recurrent encoder reads the tokens in order, one step at a time", layered=False
)
GENERIC_CROSS_NAMES = ("encoder_attn", "EncDecAttention", "crossattention")
GENERIC_OUTPUT_NAMES = ("o_proj", "out_proj", "c_proj", "o", "out_lin", "dense", _BERT_OUTPUT)


def adapter_for(config) -> Adapter:
    """The table's entry, or one derived from the config for architectures not listed."""
    if config.model_type in ADAPTERS:
        return ADAPTERS[config.model_type]
    if getattr(config, "is_encoder_decoder", False):
        return Adapter(ENCODER_DECODER, cross_attention="|".join(GENERIC_CROSS_NAMES))
    archs = " ".join(getattr(config, "architectures", None) or [])
    if "CausalLM" in archs or "LMHeadModel" in archs or getattr(config, "is_decoder", False):
        return Adapter(DECODER)
    return Adapter(ENCODER)


def stack_of(module_name: str, adapter: Adapter) -> str:
    """Which attention stack a module belongs to: 'encoder', 'decoder' or 'cross'."""
    if adapter.family == ENCODER_DECODER:
        if any(part in module_name for part in adapter.cross_attention.split("|")):
            return "cross"
        return DECODER if "decoder." in module_name else ENCODER
    return adapter.family
