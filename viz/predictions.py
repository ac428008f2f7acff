"""What the model head predicts, read from the Trace's logits (no second forward pass; the course's
batch of two texts, `classify_batch`, and a continuation are the stated exceptions).

Each function mirrors what the matching transformers pipeline computes, so the numbers
can be checked against it: softmax over the vocabulary or the labels, spans scored by
start × end probabilities.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import numpy as np
import torch

from viz.tokens import display_token, pieces
from viz.trace import Trace


def softmax(logits: np.ndarray, axis: int = -1) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64)
    z = np.exp(z - z.max(axis=axis, keepdims=True))
    return z / z.sum(axis=axis, keepdims=True)


@dataclass(frozen=True)
class Candidate:
    token_id: int
    token: str
    probability: float
    logit: float


def top_candidates(logits: np.ndarray, tokenizer, k: int = 10) -> list[Candidate]:
    probs = softmax(logits)
    order = np.argsort(-probs, kind="stable")[:k].tolist()
    return [
        Candidate(i, display_token(piece, tokenizer.decode([i])), float(probs[i]), float(logits[i]))
        for i, piece in zip(order, pieces(tokenizer, order), strict=True)
    ]


# ---------------------------------------------------------------- masked LM
def mask_positions(trace: Trace, tokenizer) -> list[int]:
    return [i for i, t in enumerate(trace.tokens["source"].ids) if t == tokenizer.mask_token_id]


def fill_mask(trace: Trace, tokenizer, k: int = 10) -> dict[int, list[Candidate]]:
    """For every mask token: the top-k fillers (as the fill-mask pipeline)."""
    return {i: top_candidates(trace.logits(slice(i, i + 1))[0], tokenizer, k) for i in mask_positions(trace, tokenizer)}


def text_with_mask_at(trace: Trace, tokenizer, position: int) -> str:
    """The input text with one token replaced by the mask: ask the model what it would put there."""
    seq = trace.tokens["source"]
    ids = [
        tokenizer.mask_token_id if j == position else int(i)
        for j, i in enumerate(seq.ids)
        if j == position or not seq.special[j]
    ]
    return tokenizer.decode(ids)


# ---------------------------------------------------------------- causal LM
def next_token(trace: Trace, tokenizer, k: int = 10) -> list[Candidate]:
    return top_candidates(trace.logits(slice(-1, None))[0], tokenizer, k)


def step_candidates(trace: Trace, tokenizer, step: int, k: int = 10) -> list[Candidate]:
    """A decoder's output distribution at one step (the step that wrote target token `step`)."""
    return top_candidates(trace.logits(slice(step, step + 1))[0], tokenizer, k)


@dataclass(frozen=True)
class Surprisal:
    positions: np.ndarray  # [T-1]: index of the predicted token
    probability: np.ndarray  # [T-1]: p(actual token | everything before it)
    rank: np.ndarray  # [T-1]: 1 = the model's top guess
    bits: np.ndarray  # [T-1]: -log2 p


ROWS_AT_ONCE = 256  # positions × vocabulary in float64 at a time (4,096 × 49,152 at once would be 1.6 GB a copy)


def surprisal(trace: Trace) -> Surprisal:
    """How expected each actual next token was (position i's logits predict token i+1)."""
    actual = trace.tokens["source"].ids[1:]
    p, rank = np.empty(len(actual)), np.empty(len(actual), dtype=int)
    for start in range(0, len(actual), ROWS_AT_ONCE):
        rows = slice(start, min(start + ROWS_AT_ONCE, len(actual)))
        probs = softmax(trace.logits(rows))
        p[rows] = probs[np.arange(len(probs)), actual[rows]]
        rank[rows] = (probs > p[rows, None]).sum(axis=1) + 1
    return Surprisal(np.arange(1, len(actual) + 1), p, rank, -np.log2(np.maximum(p, 1e-300)))


# ---------------------------------------------------------------- encoder-decoder
def target_probabilities(trace: Trace) -> np.ndarray:
    """p(target token i) at the decoder step that produced it."""
    probs = softmax(trace.logits())
    target = trace.tokens["target"].ids
    return probs[np.arange(len(target)), target]


# ---------------------------------------------------------------- classification heads
def label_scores(logits: np.ndarray, config) -> np.ndarray:
    """Softmax, or sigmoid for multi-label / single-logit heads (the pipelines' rule)."""
    if config.problem_type == "multi_label_classification" or config.num_labels == 1:
        return 1.0 / (1.0 + np.exp(-np.asarray(logits, dtype=np.float64)))
    return softmax(logits)


def class_probabilities(trace: Trace, config) -> list[tuple[str, float, float]]:
    """(label, probability, logit) for every id2label entry, in label order."""
    logits = trace.logits()
    scores = label_scores(logits, config)
    return [(config.id2label[i], float(scores[i]), float(logits[i])) for i in range(len(logits))]


@dataclass(frozen=True)
class Batch:
    """The course's batch: texts padded to one length, one pass of the classifier, softmax, id2label."""

    texts: tuple[str, ...]
    tokens: tuple[tuple[str, ...], ...]  # per text, padded with the tokenizer's pad token
    input_ids: np.ndarray  # [texts, T]
    attention_mask: np.ndarray  # [texts, T]: 0 where padding was added (the model ignores those keys)
    logits: np.ndarray  # [texts, labels]
    scores: np.ndarray  # [texts, labels]: softmax (or sigmoid, as the pipeline does)
    labels: tuple[str, ...]  # id2label of each text's top score


def classify_batch(loaded, texts: tuple[str, ...]) -> Batch:
    """`tokenizer(texts, padding=True, truncation=True)` → model → softmax → id2label, as the course's
    second example does it (a separate small pass: a Trace reads one text)."""
    tokenizer, config = loaded.tokenizer, loaded.model.config
    enc = tokenizer(list(texts), padding=True, truncation=True, return_tensors="pt")
    accepted = inspect.signature(loaded.model.forward).parameters
    inputs = {k: v.to(loaded.device) for k, v in enc.items() if k in accepted}
    with torch.inference_mode():
        logits = loaded.model(**inputs).logits.float().cpu().numpy()
    scores = np.stack([label_scores(row, config) for row in logits])
    return Batch(
        texts=tuple(texts),
        tokens=tuple(tuple(tokenizer.convert_ids_to_tokens(row)) for row in enc["input_ids"].tolist()),
        input_ids=enc["input_ids"].numpy(),
        attention_mask=enc["attention_mask"].numpy(),
        logits=logits,
        scores=scores,
        labels=tuple(config.id2label[int(row.argmax())] for row in scores),
    )


@dataclass(frozen=True)
class TokenLabel:
    position: int
    token: str
    label: str
    score: float


def token_labels(trace: Trace, config) -> list[TokenLabel]:
    """The argmax label of every non-special token (token-classification pipeline, no aggregation)."""
    scores = softmax(trace.logits())
    seq = trace.tokens["source"]
    return [
        TokenLabel(i, seq.display[i], config.id2label[int(scores[i].argmax())], float(scores[i].max()))
        for i in range(len(seq))
        if not seq.special[i]
    ]


def word_labels(labels: list[TokenLabel], trace: Trace) -> list[tuple[str, str, float]]:
    """Merge pieces of one word: the word takes its first piece's label (the pipeline's 'first' rule)."""
    seq = trace.tokens["source"]
    words: list[tuple[str, str, float]] = []
    previous = None
    for item in labels:
        word = seq.word_ids[item.position]
        if word is not None and word == previous:
            text, label, score = words[-1]
            words[-1] = (text + item.token, label, score)
        else:
            words.append((item.token, item.label, item.score))
        previous = word
    return words


# ---------------------------------------------------------------- question answering
@dataclass(frozen=True)
class Span:
    start: int
    end: int  # inclusive token positions
    score: float  # p(start) * p(end)
    start_logit: float
    end_logit: float
    text: str


def answer_spans(trace: Trace, tokenizer, k: int = 5, max_answer_len: int = 15) -> list[Span]:
    """Best answer spans inside the context (as the question-answering pipeline scores them)."""
    seq = trace.tokens["source"]
    context = np.array([s == 1 for s in seq.segments]) if seq.segments else ~seq.special
    start_logits, end_logits = trace.outputs["start_logits"], trace.outputs["end_logits"]
    start = softmax(np.where(context, start_logits, -10000.0))
    end = softmax(np.where(context, end_logits, -10000.0))
    scores = np.triu(np.tril(np.outer(start, end), max_answer_len - 1))
    spans = []
    for flat in np.argsort(-scores, axis=None, kind="stable")[: k * 4]:
        s, e = np.unravel_index(flat, scores.shape)
        if not (context[s] and context[e]):
            continue
        text = tokenizer.decode(seq.ids[s : e + 1].tolist()).strip()
        spans.append(Span(int(s), int(e), float(scores[s, e]), float(start_logits[s]), float(end_logits[e]), text))
        if len(spans) == k:
            break
    return spans


# ---------------------------------------------------------------- sentence embeddings
def sentence_embedding(trace: Trace) -> np.ndarray:
    """Mean over all token vectors of the last layer, L2-normalised (sentence-transformers' recipe)."""
    vector = trace.hidden_states["encoder"][-1].astype(np.float64).mean(axis=0)
    return vector / np.linalg.norm(vector)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


# ---------------------------------------------------------------- continuation (a separate generate call)
@dataclass(frozen=True)
class Continuation:
    prompt: str  # the text the model continued: the Trace's tokens (cut at Max tokens), decoded
    text: str  # what it wrote
    asked: int  # new tokens asked for
    allowed: int  # new tokens Max tokens and the model's position limit leave room for


def continuation(
    loaded,
    trace: Trace,
    limit: int,
    new_tokens: int = 20,
    sample: bool = False,
    temperature: float = 1.0,
    top_k: int = 50,
    seed: int = 0,
) -> Continuation:
    """Greedy or sampled continuation of the tokens the Trace read (what the text-generation pipeline
    returns for that text). Prompt plus new tokens stay within `limit` tokens (Max tokens, the model's positions)."""
    ids = torch.as_tensor(trace.tokens["source"].ids, dtype=torch.long, device=loaded.device)[None]
    allowed = max(0, min(new_tokens, limit - ids.shape[1]))
    prompt = loaded.tokenizer.decode(ids[0], skip_special_tokens=True)
    if allowed == 0:
        return Continuation(prompt, "", new_tokens, 0)
    kwargs = dict(max_new_tokens=allowed, do_sample=sample)
    if sample:
        torch.manual_seed(seed)
        kwargs.update(temperature=temperature, top_k=top_k)
    else:
        kwargs.update(num_beams=1)
    with torch.inference_mode():
        out = loaded.model.generate(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            **kwargs,
            pad_token_id=loaded.tokenizer.pad_token_id or loaded.tokenizer.eos_token_id,
        )
    text = loaded.tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True)
    return Continuation(prompt, text, new_tokens, allowed)


def head_modules(model) -> list[tuple[str, str]]:
    """The modules a task head adds on top of the base transformer, with their parameter shapes."""
    base = getattr(model, "base_model_prefix", "")
    rows = []
    for name, module in model.named_children():
        if name == base:
            continue
        shapes = ", ".join(f"{p}: {tuple(t.shape)}" for p, t in module.named_parameters()) or "no parameters"
        rows.append((name, f"{type(module).__name__} — {shapes}"))
    return rows
