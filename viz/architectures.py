"""The adapter table: everything that differs between model architectures lives here.

Pages and analyses never branch on the architecture; they ask this table.
"""

from __future__ import annotations

from dataclasses import dataclass

ENCODER, DECODER, ENCODER_DECODER = "encoder", "decoder", "encoder-decoder"


@dataclass(frozen=True)
class Adapter:
    family: str  # ENCODER | DECODER | ENCODER_DECODER
    # Substring of the module name of cross-attention layers (encoder-decoders only).
    cross_attention: str = ""
    # Logit lens: module that normalises an intermediate hidden state before the output head,
    # and the output head itself; dotted paths inside the loaded model.  The last hidden
    # state already went through the final norm in all these models, so it is not normalised again.
    final_norm: str | None = None
    output_head: str | None = None


ADAPTERS: dict[str, Adapter] = {
    "bert": Adapter(ENCODER, output_head="cls"),
    "roberta": Adapter(ENCODER, output_head="lm_head"),
    "xlm-roberta": Adapter(ENCODER, output_head="lm_head"),
    "distilbert": Adapter(ENCODER, output_head="vocab_projector"),
    "electra": Adapter(ENCODER),
    "gpt2": Adapter(DECODER, final_norm="transformer.ln_f", output_head="lm_head"),
    "llama": Adapter(DECODER, final_norm="model.norm", output_head="lm_head"),
    "mistral": Adapter(DECODER, final_norm="model.norm", output_head="lm_head"),
    "qwen2": Adapter(DECODER, final_norm="model.norm", output_head="lm_head"),
    "t5": Adapter(ENCODER_DECODER, "EncDecAttention", "decoder.final_layer_norm", "lm_head"),
    "mt5": Adapter(ENCODER_DECODER, "EncDecAttention", "decoder.final_layer_norm", "lm_head"),
    "bart": Adapter(ENCODER_DECODER, "encoder_attn", output_head="lm_head"),
    "mbart": Adapter(ENCODER_DECODER, "encoder_attn", "model.decoder.layer_norm", "lm_head"),
    "marian": Adapter(ENCODER_DECODER, "encoder_attn", output_head="lm_head"),
    "pegasus": Adapter(ENCODER_DECODER, "encoder_attn", "model.decoder.layer_norm", "lm_head"),
}

GENERIC_CROSS_NAMES = ("encoder_attn", "EncDecAttention", "crossattention")


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
