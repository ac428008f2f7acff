"""What both small translation tasks share: examples with known alignments, and their scoring."""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class Piece:
    text: str
    role: str | None  # what this piece carries ("year", "w3", ...); None for function words


@dataclass(frozen=True)
class Example:
    source: list[Piece]
    target: list[Piece]
    tag: str  # the date format, or "sentence"

    @property
    def source_text(self) -> str:
        return "".join(p.text for p in self.source)

    @property
    def target_text(self) -> str:
        return "".join(p.text for p in self.target)


def role_positions(pieces: list[Piece], tokenizer) -> list[str | None]:
    """The role of every token the tokenizer makes of these pieces (specials excluded)."""
    roles: list[str | None] = []
    for piece in pieces:
        roles += [piece.role] * len(tokenizer.tokenize(piece.text))
    return roles


def alignment_links(example: Example, tokenizer) -> list[tuple[int, list[int]]]:
    """(target token position, source token positions carrying the same content) for each content token."""
    source_roles = role_positions(example.source, tokenizer)
    links = []
    for j, role in enumerate(role_positions(example.target, tokenizer)):
        if role is not None:
            links.append((j, [k for k, r in enumerate(source_roles) if r == role]))
    return links


def alignment_hits(attention: np.ndarray, source_roles: list[str | None], target_roles: list[str | None]) -> list[bool]:
    """For each content token of the target: does its row's argmax fall on a source token with the same role?

    `attention` is [target tokens, source tokens]; row j is the decoder step that produces
    target token j. Both sequences start with their first word (no leading special token).
    """
    hits = []
    for j, role in enumerate(target_roles):
        if role is None:
            continue
        k = int(attention[j].argmax())  # may be </s> or padding, which carry no role
        hits.append(k < len(source_roles) and source_roles[k] == role)
    return hits


@torch.inference_mode()
def evaluate(model, tokenizer, examples: list[Example], batch_size: int = 250) -> dict:
    """Exact match of greedy outputs, and alignment of cross-attention under forced decoding."""
    if model.config._attn_implementation != "eager":  # output_attentions needs eager; leave the caller's model be
        model = copy.deepcopy(model)
        model.set_attn_implementation("eager")
    model.eval()
    exact, last_layer, all_layers = [], [], []
    by_tag: dict[str, list[bool]] = {}
    for start in range(0, len(examples), batch_size):
        batch = examples[start : start + batch_size]
        enc = tokenizer([ex.source_text for ex in batch], return_tensors="pt", padding=True)
        generated = model.generate(**enc)  # greedy, as the model's generation config says
        outputs = tokenizer.batch_decode(generated, skip_special_tokens=True)
        for ex, out in zip(batch, outputs, strict=True):
            ok = out.strip() == ex.target_text
            exact.append(ok)
            by_tag.setdefault(ex.tag, []).append(ok)
        labels = tokenizer(text_target=[ex.target_text for ex in batch], return_tensors="pt", padding=True)
        out = model(
            **enc, labels=labels["input_ids"].masked_fill(labels["attention_mask"] == 0, -100), output_attentions=True
        )
        cross = torch.stack(out.cross_attentions).float()  # [layers, batch, heads, T_target, T_source]
        mean_last = cross[-1].mean(1).numpy()
        mean_all = cross.mean((0, 2)).numpy()
        for i, ex in enumerate(batch):
            source_roles = role_positions(ex.source, tokenizer)
            target_roles = role_positions(ex.target, tokenizer)
            last_layer += alignment_hits(mean_last[i], source_roles, target_roles)
            all_layers += alignment_hits(mean_all[i], source_roles, target_roles)
    return {
        "examples": len(examples),
        "exact_match": float(np.mean(exact)),
        "alignment_last_layer": float(np.mean(last_layer)),
        "alignment_all_layers": float(np.mean(all_layers)),
        "content_tokens": len(last_layer),
        "exact_match_by_tag": {tag: float(np.mean(v)) for tag, v in sorted(by_tag.items())},
    }
