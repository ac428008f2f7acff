"""A recurrent encoder-decoder, with or without Bahdanau et al.'s (2015) attention: the models the story of
attention starts from, run as models of the app.

Encoder: a GRU reads the input's embeddings into states h_1 … h_n. Decoder: a GRU cell writes one token a step
from its state s_t, starting from s_0 = h_n (the encoder's last state).
- without attention (Sutskever et al. 2014; Cho et al. 2014) the decoder sees nothing else of the input:
      s_t = GRU([y_{t−1}], s_{t−1}),           p(y_t) = softmax(W_o s_t)
  everything it learns of the input passes through h_n: the bottleneck;
- with additive attention (Bahdanau et al. 2015) it looks back at every state at every step:
      e_t,i = vᵀ tanh(W s_{t−1} + U h_i),   α_t = softmax(e_t),   c_t = Σ_i α_t,i h_i
      s_t = GRU([y_{t−1}; c_t], s_{t−1}),  p(y_t) = softmax(W_o [s_t; c_t])
One forward pass (greedy, or a target given) records α, the encoder's and the decoder's states and each step's
logits into a Trace the Alignment and Predictions pages read as they read a transformer's.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file
from torch import nn
from transformers import PretrainedConfig, PreTrainedTokenizerFast

from viz.errors import AtlasError

CONFIG_FIELDS = ("vocab", "hidden", "embedding", "attention")  # config.json's fields GRUSeq2Seq takes
MAX_STEPS = 32  # tokens a decoder writes at most (the longest held-out output has 22)


class RNNConfig(PretrainedConfig):
    """The sizes of a GRUSeq2Seq, as a transformers config: pages ask every model's config the same things."""

    model_type = "atlas-gru-seq2seq"

    def __init__(self, vocab: int = 0, hidden: int = 64, embedding: int = 32, attention: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.vocab, self.hidden, self.embedding, self.attention = vocab, hidden, embedding, attention
        self.num_hidden_layers = 1  # one recurrent layer each side
        self.hidden_size = hidden


class GRUSeq2Seq(nn.Module):
    def __init__(self, vocab: int, hidden: int = 64, embedding: int = 32, attention: bool = True) -> None:
        super().__init__()
        self.config = RNNConfig(vocab=vocab, hidden=hidden, embedding=embedding, attention=attention)
        self.embed = nn.Embedding(vocab, embedding)
        self.encoder = nn.GRU(embedding, hidden, batch_first=True)
        self.decoder = nn.GRUCell(embedding + (hidden if attention else 0), hidden)
        if attention:
            self.W = nn.Linear(hidden, hidden, bias=False)  # reads the decoder's state s_{t−1}
            self.U = nn.Linear(hidden, hidden, bias=False)  # reads each encoder state h_i
            self.v = nn.Linear(hidden, 1, bias=False)
        self.out = nn.Linear(hidden * (2 if attention else 1), vocab)

    @property
    def attends(self) -> bool:
        return self.config.attention

    def encode(self, ids: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """States h [batch, n, hidden], and each input's last one h_n [batch, hidden] (padding comes after it)."""
        states, _ = self.encoder(self.embed(ids))
        return states, states[torch.arange(len(ids)), lengths - 1]

    def align(self, s: torch.Tensor, states: torch.Tensor, keys: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
        """α [batch, n]: softmax over i of vᵀ tanh(W s + U h_i) (`keys` = U h, made once an input)."""
        e = self.v(torch.tanh(self.W(s)[:, None] + keys))[..., 0]
        return e.masked_fill(pad, float("-inf")).softmax(-1)

    def step(self, y: torch.Tensor, s: torch.Tensor, states, keys, pad):
        """One decoder step: (logits [batch, vocab], new state, α or None)."""
        if not self.attends:
            s = self.decoder(self.embed(y), s)
            return self.out(s), s, None
        alpha = self.align(s, states, keys, pad)
        context = (alpha[..., None] * states).sum(1)
        s = self.decoder(torch.cat([self.embed(y), context], -1), s)
        return self.out(torch.cat([s, context], -1)), s, alpha

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor, decoder_in: torch.Tensor) -> torch.Tensor:
        """Teacher-forced logits [batch, steps, vocab] (training)."""
        states, s = self.encode(ids, lengths)
        keys = self.U(states) if self.attends else None
        pad = torch.arange(ids.shape[1])[None] >= lengths[:, None]
        logits = []
        for t in range(decoder_in.shape[1]):
            out, s, _ = self.step(decoder_in[:, t], s, states, keys, pad)
            logits.append(out)
        return torch.stack(logits, 1)


@dataclass(frozen=True)
class Reading:
    """What one forward pass of a recurrent model did (batch of one)."""

    inputs: list[int]
    outputs: list[int]  # the tokens written (or forced), ending with </s>
    alpha: np.ndarray | None  # [steps, inputs]: α_t,i; None without attention
    encoder_states: np.ndarray  # [inputs, hidden]
    decoder_states: np.ndarray  # [steps + 1, hidden]: s_0 = h_n, then one a step
    logits: np.ndarray  # [steps, vocab]


@torch.inference_mode()
def read(model: GRUSeq2Seq, inputs: list[int], start: int, end: int, forced: list[int] | None = None) -> Reading:
    """Greedy decoding (or `forced` outputs), one step at a time, recording α, the states and the logits."""
    ids = torch.tensor([inputs])
    states, s = model.encode(ids, torch.tensor([len(inputs)]))
    keys = model.U(states) if model.attends else None
    pad = torch.zeros(1, len(inputs), dtype=torch.bool)
    y, outputs, alphas, decoder_states, logits = start, [], [], [s[0]], []
    for t in range(len(forced) if forced else MAX_STEPS):
        out, s, alpha = model.step(torch.tensor([y]), s, states, keys, pad)
        y = forced[t] if forced else int(out[0].argmax())
        outputs.append(y)
        logits.append(out[0])
        decoder_states.append(s[0])
        if alpha is not None:
            alphas.append(alpha[0])
        if y == end and not forced:
            break
    return Reading(
        inputs=list(inputs),
        outputs=outputs,
        alpha=torch.stack(alphas).numpy() if alphas else None,
        encoder_states=states[0].numpy(),
        decoder_states=torch.stack(decoder_states).numpy(),
        logits=torch.stack(logits).numpy(),
    )


@torch.inference_mode()
def greedy(model: GRUSeq2Seq, inputs: list[list[int]], pad_id: int, end: int) -> list[list[int]]:
    """Greedy outputs for many inputs at once (held-out evaluation); each ends at its first </s>."""
    lengths = torch.tensor([len(ids) for ids in inputs])
    ids = torch.full((len(inputs), int(lengths.max())), pad_id)
    for row, seq in enumerate(inputs):
        ids[row, : len(seq)] = torch.tensor(seq)
    states, s = model.encode(ids, lengths)
    keys = model.U(states) if model.attends else None
    pad = torch.arange(ids.shape[1])[None] >= lengths[:, None]
    y, written = torch.full((len(inputs),), pad_id), []
    for _ in range(MAX_STEPS):
        out, s, _ = model.step(y, s, states, keys, pad)
        y = out.argmax(-1)
        written.append(y)
    outputs = torch.stack(written, 1).tolist()
    return [row[: row.index(end) + 1] if end in row else row for row in outputs]


def load_tokenizer(folder: Path) -> PreTrainedTokenizerFast:
    """Its word-level tokenizer (not AutoTokenizer: that reads config.json and warns of an unknown model type)."""
    return PreTrainedTokenizerFast.from_pretrained(str(folder))


def load(folder: Path) -> GRUSeq2Seq:
    if not (folder / "config.json").is_file():
        raise AtlasError(f"The bundled recurrent model is missing from {folder}.")
    sizes = json.loads((folder / "config.json").read_text())
    model = GRUSeq2Seq(**{name: sizes[name] for name in CONFIG_FIELDS})
    model.load_state_dict(load_file(folder / "model.safetensors"))
    return model.eval()


# ---------------------------------------------------------------- one attention, as the pages read it
@dataclass(frozen=True)
class StoredAttention:
    """The recurrent model's α as a one-layer, one-head attention stack: the weights are the model's own,
    recorded step by step (additive attention has no q·k to recompute them from)."""

    name: str
    queries_from: str
    keys_from: str
    weights: np.ndarray  # [steps, inputs]
    layers: tuple = ()
    output_projections: tuple = ()

    n_layers, n_heads, kv_heads = 1, 1, 1
    causal = False
    has_value_weights = False

    @property
    def n_queries(self) -> int:
        return self.weights.shape[0]

    @property
    def n_keys(self) -> int:
        return self.weights.shape[1]

    @property
    def nbytes(self) -> int:
        return self.weights.nbytes

    def bytes_by_device(self):
        from collections import Counter

        return Counter({"cpu": self.weights.nbytes})

    def attention(self, layer: int, head: int | None = None, rows=slice(None), cols=slice(None), value_weighted=False):
        if value_weighted:
            raise AtlasError("An RNN's attention mixes encoder states, not heads' values: no value-weighted view.")
        out = self.weights[rows][:, cols]
        return out if head is not None else out[None]

    def head_mean(self, layer: int, rows=slice(None), cols=slice(None), value_weighted=False) -> np.ndarray:
        return self.attention(layer, 0, rows, cols, value_weighted)

    def forbidden(self, layer: int, rows=slice(None), cols=slice(None)) -> np.ndarray:
        return np.zeros_like(self.weights[rows][:, cols], dtype=bool)
