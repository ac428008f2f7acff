"""Generation one token at a time: sampling settings, each step's distribution before and after them, the
sampled token, and the KV cache the model keeps (Radford et al. 2019; Holtzman et al. 2020 for top-p).

At step t the model reads only the newest token; the keys and values of every earlier token come from its
cache. From the logits z of that token (float32, as transformers' `generate` takes them):

    temperature T      z' = z / T                                   (T = 0: greedy, argmax z)
    top-k              keep the k largest z' (ties with the k-th kept), the rest −∞
    top-p (nucleus)    keep the smallest set of most probable tokens whose probability reaches p, the rest −∞
    sample             x_t ~ softmax(z'), drawn with torch.multinomial from a generator seeded with `seed`

in that order, with transformers' own warpers (TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper),
so a seed reproduces `generate(do_sample=True, temperature=T, top_k=k, top_p=p)` after `torch.manual_seed(seed)`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from transformers.generation.logits_process import (
    LogitsProcessorList,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from viz.architectures import DECODER, ENCODER_DECODER
from viz.errors import AtlasError
from viz.models import LoadedModel
from viz.predictions import softmax

MAX_STEPS = 64


@dataclass(frozen=True)
class Sampling:
    temperature: float = 1.0  # 0: greedy
    top_k: int = 0  # 0: off
    top_p: float = 1.0  # 1: off
    seed: int = 0

    def processors(self) -> LogitsProcessorList:
        warpers = LogitsProcessorList()
        if self.temperature > 0 and self.temperature != 1.0:
            warpers.append(TemperatureLogitsWarper(self.temperature))
        if self.top_k > 0:
            warpers.append(TopKLogitsWarper(self.top_k))
        if self.top_p < 1.0:
            warpers.append(TopPLogitsWarper(self.top_p))
        return warpers


@dataclass(frozen=True)
class CacheSize:
    """The KV cache after a step, per layer: bytes of keys and of values, and the positions it holds."""

    self_bytes: tuple[int, ...]  # per layer: keys + values of the tokens read so far (grows a token a step)
    cross_bytes: tuple[int, ...]  # per layer: an encoder-decoder's keys + values of the source (made once)
    positions: int  # tokens whose keys and values are cached


@dataclass(frozen=True)
class Step:
    token: int  # the token chosen at this step
    logits: np.ndarray  # [vocab] float32: the model's raw logits for it
    scores: np.ndarray  # [vocab]: after temperature, top-k and top-p (−inf where cut)
    cache: CacheSize  # after this step's forward pass
    reused: int  # cached positions this step read instead of recomputing

    @property
    def probabilities(self) -> np.ndarray:
        """What the token was drawn from: softmax of the warped scores (one-hot-like when greedy)."""
        return softmax(self.scores)


@dataclass(frozen=True)
class Generation:
    model_key: str
    prompt: tuple[int, ...]  # a decoder's prompt ids; an encoder-decoder's source ids
    start: tuple[int, ...]  # what the decoder starts from: a decoder's prompt, an encoder-decoder's start token
    steps: tuple[Step, ...]
    sampling: Sampling

    @property
    def tokens(self) -> tuple[int, ...]:
        return tuple(step.token for step in self.steps)

    @property
    def identity(self) -> tuple:
        return (self.model_key, self.prompt, self.tokens, self.sampling)


def _cache_size(cache) -> CacheSize:
    """Bytes in transformers' cache objects: DynamicCache, or EncoderDecoderCache (self + cross)."""
    self_cache = getattr(cache, "self_attention_cache", cache)
    cross_cache = getattr(cache, "cross_attention_cache", None)

    def per_layer(c) -> tuple[int, ...]:
        if c is None:
            return ()
        return tuple(int(layer.keys.nbytes + layer.values.nbytes) for layer in c.layers if layer.keys is not None)

    return CacheSize(per_layer(self_cache), per_layer(cross_cache), int(self_cache.get_seq_length()))


def generate(loaded: LoadedModel, ids: tuple[int, ...], sampling: Sampling, steps: int) -> Generation:
    """Up to `steps` tokens after `ids` (a decoder's prompt or an encoder-decoder's source), one forward pass of
    the newest token per step over the KV cache; stops after the end-of-sequence token."""
    model, family = loaded.model, loaded.family
    if family not in (DECODER, ENCODER_DECODER) or not hasattr(model, "generation_config"):
        raise AtlasError("Generation needs a model that writes text: a decoder or an encoder-decoder.")
    config = model.generation_config
    eos = config.eos_token_id if config.eos_token_id is not None else loaded.tokenizer.eos_token_id
    eos = set(eos if isinstance(eos, list) else [eos])
    device = loaded.device
    generator = torch.Generator(device="cpu").manual_seed(int(sampling.seed))
    warpers = sampling.processors()
    source = torch.tensor([ids], device=device)
    with torch.inference_mode():
        if family == ENCODER_DECODER:
            start = config.decoder_start_token_id
            start = model.config.decoder_start_token_id if start is None else start
            encoded = model.get_encoder()(input_ids=source)
            sequence, extra = [int(start)], {"encoder_outputs": encoded}
        else:
            sequence, extra = list(ids), {}
        past, out = None, []
        for _ in range(min(steps, MAX_STEPS)):
            fresh = sequence if past is None else sequence[-1:]
            reused = 0 if past is None else len(sequence) - 1
            key = "decoder_input_ids" if family == ENCODER_DECODER else "input_ids"
            result = model(**{key: torch.tensor([fresh], device=device)}, past_key_values=past, use_cache=True, **extra)
            past = result.past_key_values
            logits = result.logits[:, -1, :].to(dtype=torch.float32)
            scores = warpers(torch.tensor([sequence], device=device), logits.clone())
            if sampling.temperature > 0:
                probabilities = scores.softmax(-1).cpu()
                token = int(torch.multinomial(probabilities, 1, generator=generator)[0, 0])
            else:
                token = int(logits.argmax(-1)[0])
            out.append(Step(token, logits[0].cpu().numpy(), scores[0].cpu().numpy(), _cache_size(past), reused))
            sequence.append(token)
            if token in eos:
                break
    start_ids = tuple(sequence[: len(sequence) - len(out)])
    return Generation(loaded.key, tuple(ids), start_ids, tuple(out), sampling)
