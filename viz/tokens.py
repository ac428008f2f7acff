"""Token sequences as the model saw them, and as a person should read them."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Word-start markers of the common subword schemes: GPT-2 byte-level BPE, SentencePiece.
WORD_START = ("Ġ", "▁")
CONTINUATION = "##"  # WordPiece
VISIBLE_WHITESPACE = {"\n": "⏎", "\t": "⇥", " ": "␣"}


@dataclass(frozen=True)
class TokenSeq:
    ids: np.ndarray  # [T] int
    raw: tuple[str, ...]  # the tokenizer's own strings ("Ġcat", "▁the", "##ing")
    display: tuple[str, ...]  # readable: markers removed, whitespace made visible
    special: np.ndarray  # [T] bool: [CLS], </s>, <|im_start|>, ...
    word_ids: tuple[int | None, ...]  # which word each token belongs to; None for specials

    def __len__(self) -> int:
        return len(self.raw)


def display_token(raw: str, decoded: str) -> str:
    """`decoded` is tokenizer.decode([id]): it turns byte-level pieces back into text."""
    text = decoded if decoded else raw
    text = text.removeprefix(CONTINUATION) if raw.startswith(CONTINUATION) else text
    if text.strip():
        return text.strip()
    return "".join(VISIBLE_WHITESPACE.get(ch, ch) for ch in text) or "␣"


def guess_word_ids(raw: list[str], special: np.ndarray) -> list[int | None]:
    """Word ids from subword markers, for sequences no fast tokenizer produced (generated text)."""
    marks_word_starts = any(tok.startswith(WORD_START) for tok in raw)
    word_ids: list[int | None] = []
    word = -1
    for tok, is_special in zip(raw, special, strict=True):
        if is_special:
            word_ids.append(None)
            continue
        if marks_word_starts:
            starts_word = tok.startswith(WORD_START)
        else:
            starts_word = not tok.startswith(CONTINUATION)
        if starts_word or word < 0:
            word += 1
        word_ids.append(word)
    return word_ids


def token_seq(tokenizer, ids: list[int], word_ids: list[int | None] | None = None) -> TokenSeq:
    raw = tokenizer.convert_ids_to_tokens(ids)
    special = np.array(tokenizer.get_special_tokens_mask(ids, already_has_special_tokens=True), dtype=bool)
    decoded = [tokenizer.decode([i], clean_up_tokenization_spaces=False) for i in ids]
    ids_array = np.asarray(ids, dtype=np.int64)
    for arr in (ids_array, special):
        arr.flags.writeable = False
    return TokenSeq(
        ids=ids_array,
        raw=tuple(raw),
        display=tuple(display_token(r, d) for r, d in zip(raw, decoded, strict=True)),
        special=special,
        word_ids=tuple(word_ids if word_ids is not None else guess_word_ids(raw, special)),
    )
