"""Tiny random models of every supported architecture, built in memory (no download).

Each is saved with a word-level tokenizer to a directory, so the app loads it like any
local model ("path:<dir>").
"""

from __future__ import annotations

import copy
import weakref
from pathlib import Path

import numpy as np
import torch
import transformers

from viz.wordtok import build_word_tokenizer

WORDS = (
    "the a cat dog sat on mat time flies like an arrow i looked at my and saw that was late "
    "transformers are great red car is fast la voiture rouge est rapide what where who "
    "paris france capital of , . ! ? ' s ve been waiting for huggingface course whole life"
).split()
VOCAB = 64  # > len(WORDS) + specials

_common = dict(vocab_size=VOCAB, pad_token_id=0, bos_token_id=2, eos_token_id=3)
ENC = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37, max_position_embeddings=64)

SEQ2SEQ = dict(
    d_model=32,
    encoder_layers=2,
    decoder_layers=2,
    encoder_attention_heads=4,
    decoder_attention_heads=4,
    encoder_ffn_dim=37,
    decoder_ffn_dim=37,
    max_position_embeddings=64,
)

# name -> (model class, config, tokenizer template)
TINY = {
    "bert": ("BertForMaskedLM", transformers.BertConfig(**ENC, **_common), "cls-sep"),
    "distilbert": (
        "DistilBertForMaskedLM",
        transformers.DistilBertConfig(
            dim=32, n_layers=2, n_heads=4, hidden_dim=37, max_position_embeddings=64, **_common
        ),
        "cls-sep",
    ),
    "roberta": (
        "RobertaForMaskedLM",
        transformers.RobertaConfig(**{**ENC, "max_position_embeddings": 70}, **_common),
        "bos-eos",
    ),
    "gpt2": (
        "GPT2LMHeadModel",
        transformers.GPT2Config(n_embd=32, n_layer=2, n_head=4, n_positions=64, **_common),
        "none",
    ),
    "llama": (
        "LlamaForCausalLM",
        transformers.LlamaConfig(
            hidden_size=48,
            num_hidden_layers=2,
            num_attention_heads=6,
            num_key_value_heads=2,
            intermediate_size=64,
            max_position_embeddings=64,
            **_common,
        ),
        "none",
    ),
    "t5": (
        "T5ForConditionalGeneration",
        transformers.T5Config(
            d_model=32,
            d_kv=8,
            d_ff=37,
            num_layers=2,
            num_decoder_layers=2,
            num_heads=4,
            decoder_start_token_id=0,
            **_common,
        ),
        "eos",
    ),
    "bart": (
        "BartForConditionalGeneration",
        transformers.BartConfig(
            **SEQ2SEQ,
            decoder_start_token_id=3,
            forced_eos_token_id=None,
            **_common,
        ),
        "bos-eos",
    ),
    "marian": (
        "MarianMTModel",
        transformers.MarianConfig(
            **SEQ2SEQ,
            decoder_start_token_id=0,
            decoder_vocab_size=VOCAB,
            **_common,
        ),
        "eos",
    ),
}


def tokenizer_for(template: str):
    return build_word_tokenizer(WORDS, template=template, model_max_length=60)


def build_tiny(name: str, directory: Path, head: str | None = None, **config_overrides) -> Path:
    """Save tiny model `name` (optionally with another head class) to `directory`; returns it."""
    class_name, config, template = TINY[name]
    config = config.__class__.from_dict({**config.to_dict(), **config_overrides})
    torch.manual_seed(0)
    model = getattr(transformers, head or class_name)(config)
    model.save_pretrained(directory)
    tokenizer_for(template).save_pretrained(directory)
    return directory


# ---------------------------------------------------------------- the reference every on-demand map is held to
# Keyed by the model object (weakly): an id() key was reused by a later model once the first was freed.
_EAGER: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def eager_attentions(loaded, trace) -> dict[str, np.ndarray]:
    """The model's own attention weights for the trace's tokens, from an eager copy of the model run
    with `output_attentions=True`: {"encoder" | "decoder" | "cross": [layers, heads, Tq, Tk]}."""
    if loaded.model not in _EAGER:
        eager = copy.deepcopy(loaded.model)
        eager.set_attn_implementation("eager")
        _EAGER[loaded.model] = eager
    model = _EAGER[loaded.model]
    kwargs = {"input_ids": torch.tensor([trace.tokens["source"].ids.tolist()], device=loaded.device)}
    if "decoder_input" in trace.tokens:
        kwargs["decoder_input_ids"] = torch.tensor([trace.tokens["decoder_input"].ids.tolist()], device=loaded.device)
    with torch.no_grad():
        out = model(**kwargs, output_attentions=True)
    stacked = lambda layers: np.stack([a[0].float().cpu().numpy() for a in layers])  # noqa: E731
    if "decoder_input" in trace.tokens:
        return {
            "encoder": stacked(out.encoder_attentions),
            "decoder": stacked(out.decoder_attentions),
            "cross": stacked(out.cross_attentions),
        }
    return {next(iter(trace.stacks)): stacked(out.attentions)}


def model_logits(loaded, trace) -> np.ndarray:
    """The model's own logits for the trace's tokens, from an eager copy's plain forward: [positions, vocabulary]."""
    eager_attentions(loaded, trace)  # makes the eager copy
    kwargs = {"input_ids": torch.tensor([trace.tokens["source"].ids.tolist()], device=loaded.device)}
    if "decoder_input" in trace.tokens:
        kwargs["decoder_input_ids"] = torch.tensor([trace.tokens["decoder_input"].ids.tolist()], device=loaded.device)
    with torch.no_grad():
        return _EAGER[loaded.model](**kwargs).logits[0].float().cpu().numpy()


def all_attention(stack) -> np.ndarray:
    """[layers, heads, Tq, Tk] from the Trace's on-demand maps (small inputs only)."""
    return np.stack([stack.attention(layer) for layer in range(stack.n_layers)])
