"""Token sequences as the model saw them, and as a person should read them."""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass, replace

import numpy as np
import torch
from transformers.convert_slow_tokenizer import bytes_to_unicode

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
    segments: tuple[int | None, ...] = ()  # for text pairs (question, context): 0 or 1 per token

    def __len__(self) -> int:
        return len(self.raw)

    def slice(self, start: int, stop: int) -> TokenSeq:
        return TokenSeq(
            self.ids[start:stop],
            self.raw[start:stop],
            self.display[start:stop],
            self.special[start:stop],
            self.word_ids[start:stop],
            self.segments[start:stop],
        )


def pieces(tokenizer, ids: list[int]) -> list[str]:
    """The tokenizer's piece for each id. Many models pad their embedding matrix past the vocabulary
    (Pythia: 50,304 rows for 50,277 pieces); an id with no piece is named by its number."""
    raw = tokenizer.convert_ids_to_tokens(ids)
    return [piece if piece is not None else f"<id {i}>" for i, piece in zip(ids, raw, strict=True)]


def display_token(raw: str, decoded: str) -> str:
    """`decoded` is tokenizer.decode([id]): it turns byte-level pieces back into text."""
    text = decoded if decoded else raw
    text = text.removeprefix(CONTINUATION) if raw.startswith(CONTINUATION) else text
    if text.strip():
        return text.strip()
    return "".join(VISIBLE_WHITESPACE.get(ch, ch) for ch in text) or "␣"


# Byte-level BPE (GPT-2, Llama 3, SmolLM2) writes each byte as one printable character; SentencePiece's
# byte fallback writes "<0xF0>". A character of several UTF-8 bytes (emoji, CJK) can be split across
# tokens, and each piece alone decodes to "�".
_BYTE_OF = {char: byte for byte, char in bytes_to_unicode().items()}
_BYTE_FALLBACK = re.compile(r"<0x([0-9A-Fa-f]{2})>")


def _token_bytes(raw: str) -> bytes | None:
    if match := _BYTE_FALLBACK.fullmatch(raw):
        return bytes([int(match[1], 16)])
    if raw and all(char in _BYTE_OF for char in raw):
        return bytes(_BYTE_OF[char] for char in raw)
    return None


def byte_pieces(raw: list[str], display: list[str]) -> list[str]:
    """Readable pieces of split characters: the piece that completes a character shows it ("🤗"), a
    piece that only starts one shows its bytes ("⟨F0 9F⟩"). Other tokens are left as they are."""
    out, decoder = list(display), codecs.getincrementaldecoder("utf-8")(errors="replace")
    for i, (piece, shown) in enumerate(zip(raw, display, strict=True)):
        data = _token_bytes(piece) if "\ufffd" in shown else None
        if data is None:
            decoder.reset()
            continue
        text = decoder.decode(data).strip()
        if not text:  # only the start of a character: this piece's own bytes (less a word-start space)
            out[i] = f"⟨{data.lstrip(b' ').hex(' ').upper()}⟩"
        else:  # completes a character (and may start the next one)
            pending = decoder.getstate()[0]
            out[i] = text + (f"⟨{pending.hex(' ').upper()}⟩" if pending else "")
    return out


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


def unknown_words(tokenizer, text: str, target: bool = False) -> list[str]:
    """The pieces of `text` this tokenizer has no token for and reads as its unknown token (<unk>), in order,
    each once. Empty for byte-level tokenizers, which have a token for everything."""
    unk = getattr(tokenizer, "unk_token_id", None)
    if unk is None or not text or not getattr(tokenizer, "is_fast", False):
        return []
    kind = {"text_target": text} if target else {"text": text}
    enc = tokenizer(**kind, return_offsets_mapping=True, add_special_tokens=False)
    found = [text[a:b] for i, (a, b) in zip(enc["input_ids"], enc["offset_mapping"], strict=True) if i == unk]
    return list(dict.fromkeys(word for word in found if word.strip()))


def token_seq(
    tokenizer, ids: list[int], word_ids: list[int | None] | None = None, segments: list[int | None] | None = None
) -> TokenSeq:
    raw = pieces(tokenizer, ids)
    special = np.array(tokenizer.get_special_tokens_mask(ids, already_has_special_tokens=True), dtype=bool)
    decoded = [tokenizer.decode([i], clean_up_tokenization_spaces=False) for i in ids]
    ids_array = np.asarray(ids, dtype=np.int64)
    for arr in (ids_array, special):
        arr.flags.writeable = False
    display = [display_token(r, d) for r, d in zip(raw, decoded, strict=True)]
    return TokenSeq(
        ids=ids_array,
        raw=tuple(raw),
        display=tuple(byte_pieces(raw, display)),
        special=special,
        word_ids=tuple(word_ids if word_ids is not None else guess_word_ids(raw, special)),
        segments=tuple(segments or ()),
    )


# ---------------------------------------------------------------- what a matrix view shows
@dataclass(frozen=True)
class TokenOptions:
    hide_special: bool = False  # [CLS], </s>, <|im_start|>, ...
    hide_first: bool = False  # the first token, where many heads park attention ("attention sink")
    renormalize: bool = False  # after hiding columns, rescale each row to sum to 1 again
    merge_words: bool = False  # subword pieces -> words
    value_weighted: bool = False  # ‖α_ij · f(v_j)‖ (Kobayashi et al. 2020) instead of α_ij: the caller computes it
    contribution: bool = False  # c(h, j) of Ferrando & Voita 2024 (viz.contributions) instead: the caller computes it

    @property
    def quantity(self) -> str:
        """What a cell of the map holds (colour bar and hover)."""
        if self.contribution:
            return "contribution"
        return VALUE_WEIGHTED if self.value_weighted else "weight"


VALUE_WEIGHTED = "‖α·f(v)‖"


@dataclass(frozen=True)
class MatrixView:
    weights: np.ndarray  # [rows, cols]
    row_labels: list[str]
    col_labels: list[str]
    masked: np.ndarray  # [rows, cols] bool
    row_groups: list[list[int]]  # token positions behind each row
    col_groups: list[list[int]]
    pooled: int = 1  # each cell is the max over up to pooled × pooled cells of the full-resolution view
    quantity: str = "weight"  # what a cell holds: attention weight, or value-weighted norm

    @property
    def row_positions(self) -> list[int]:
        """The first token position behind each row (axes and hover show positions, not indices)."""
        return [g[0] for g in self.row_groups]

    @property
    def col_positions(self) -> list[int]:
        return [g[0] for g in self.col_groups]


def _keep(seq: TokenSeq, options: TokenOptions) -> np.ndarray:
    keep = np.ones(len(seq), dtype=bool)
    if options.hide_special:
        keep &= ~seq.special
    if options.hide_first and len(seq):
        keep[0] = False
    return keep


def _groups(seq: TokenSeq, keep: np.ndarray, merge: bool) -> list[list[int]]:
    """Consecutive kept positions of one word form a group; special tokens stay alone."""
    groups: list[list[int]] = []
    previous: int | None = None
    for i in np.flatnonzero(keep):
        word = seq.word_ids[i]
        if merge and groups and word is not None and word == previous and groups[-1][-1] == i - 1:
            groups[-1].append(int(i))
        else:
            groups.append([int(i)])
        previous = word
    return groups


def special_share(weights: np.ndarray, cols: TokenSeq) -> float:
    """The share of a map's attention that goes to special-token columns ([CLS], [SEP], </s>),
    averaged over its rows. Where it is large those columns hold the colour scale's top and the
    rest of the map looks white."""
    return float(np.asarray(weights)[:, cols.special].sum(axis=1).mean()) if cols.special.any() else 0.0


def matrix_view(
    weights: np.ndarray, rows: TokenSeq, cols: TokenSeq, masked: np.ndarray, options: TokenOptions
) -> MatrixView:
    """Hide tokens, optionally renormalise, and merge subwords into words.

    Word rule: a word attends with the MEAN of its pieces' rows (each piece is one query),
    and is attended to with the SUM over its pieces' columns (the weight the word receives),
    so rows still sum to 1 after merging.
    """
    row_groups = _groups(rows, _keep(rows, options), options.merge_words)
    col_groups = _groups(cols, _keep(cols, options), options.merge_words)
    # Vectorised, and a no-op where nothing is hidden or merged (a 4,096² map must stay cheap).
    w, m = np.asarray(weights), np.asarray(masked)
    col_index = np.array([i for group in col_groups for i in group], dtype=int)
    if len(col_index) < w.shape[1]:
        w, m = w[:, col_index], m[:, col_index]
    if options.renormalize:
        totals = w.sum(axis=1, keepdims=True)
        w = np.divide(w, totals, out=np.zeros_like(w), where=totals > 0)
    if len(col_groups) < len(col_index):  # merged words: a word receives the sum over its pieces
        starts = np.cumsum([0] + [len(g) for g in col_groups[:-1]])
        w, m = np.add.reduceat(w, starts, axis=1), np.logical_and.reduceat(m, starts, axis=1)
    row_index = np.array([i for group in row_groups for i in group], dtype=int)
    if len(row_index) < w.shape[0]:
        w, m = w[row_index], m[row_index]
    if len(row_groups) < len(row_index):  # ... and attends with the mean of its pieces' rows
        sizes = np.array([len(g) for g in row_groups])
        starts = np.cumsum(np.concatenate([[0], sizes[:-1]]))
        w = np.add.reduceat(w, starts, axis=0) / sizes[:, None]
        m = np.logical_and.reduceat(m, starts, axis=0)
    label = lambda seq, group: "".join(seq.display[i] for i in group)  # noqa: E731
    return MatrixView(
        weights=w,
        row_labels=[label(rows, g) for g in row_groups],
        col_labels=[label(cols, g) for g in col_groups],
        masked=m,
        row_groups=row_groups,
        col_groups=col_groups,
        quantity=options.quantity,
    )


def same_cells(a: MatrixView, b: MatrixView) -> bool:
    """Both views show the same tokens in the same rows and columns (two tokenizers, or two stacks of
    different shapes, do not)."""
    aligned = a.weights.shape == b.weights.shape and (a.row_groups, a.col_groups) == (b.row_groups, b.col_groups)
    return aligned and (a.row_labels, a.col_labels) == (b.row_labels, b.col_labels)


def difference_view(a: MatrixView, b: MatrixView) -> MatrixView | None:
    """a − b cell by cell, when `same_cells(a, b)`; else None (no cell-by-cell difference)."""
    if not same_cells(a, b):
        return None
    return replace(a, weights=a.weights - b.weights, masked=a.masked | b.masked, quantity=f"difference of {a.quantity}")


# ---------------------------------------------------------------- long inputs: zoom and overview
OVERVIEW_CELLS = 512  # a drawn matrix has at most this many rows and columns


def crop_view(view: MatrixView, rows: tuple[int, int], cols: tuple[int, int]) -> MatrixView:
    """Keep the rows and columns whose tokens lie in [rows[0], rows[1]] and [cols[0], cols[1]] (positions)."""
    r = [i for i, g in enumerate(view.row_groups) if rows[0] <= g[0] <= rows[1]]
    c = [j for j, g in enumerate(view.col_groups) if cols[0] <= g[0] <= cols[1]]
    return MatrixView(
        view.weights[np.ix_(r, c)],
        [view.row_labels[i] for i in r],
        [view.col_labels[j] for j in c],
        view.masked[np.ix_(r, c)],
        [view.row_groups[i] for i in r],
        [view.col_groups[j] for j in c],
        quantity=view.quantity,
    )


def pool_view(view: MatrixView, max_cells: int = OVERVIEW_CELLS) -> MatrixView:
    """Max-pool a large view down to at most `max_cells` a side, so a sharp head stays visible.

    Each cell takes the largest weight of its block (a mean would wash a one-token spike out);
    a cell is masked only when its whole block is. Labels name the block's first token ("the…")."""
    n_rows, n_cols = view.weights.shape
    factor = max(1, -(-max(n_rows, n_cols) // max_cells))
    if factor == 1:
        return view
    r, c = np.arange(0, n_rows, factor), np.arange(0, n_cols, factor)  # first row / column of each block

    def block_max(x: np.ndarray) -> np.ndarray:
        x = x if x.flags.writeable else x.copy()  # torch refuses read-only arrays (a Trace's are); pooling only reads
        pooled = torch.nn.functional.max_pool2d(torch.from_numpy(x)[None], factor, factor, ceil_mode=True)
        return pooled[0].numpy()

    weights = block_max(np.ascontiguousarray(view.weights))
    masked = block_max((~view.masked).astype(np.float32)) == 0  # masked only where no cell is visible

    def blocks(labels: list[str], groups: list[list[int]], starts: np.ndarray):
        ends = [*starts[1:], len(groups)]
        return (
            [f"{labels[a]}…" if b - a > 1 else labels[a] for a, b in zip(starts, ends, strict=True)],
            [[p for g in groups[a:b] for p in g] for a, b in zip(starts, ends, strict=True)],
        )

    row_labels, row_groups = blocks(view.row_labels, view.row_groups, r)
    col_labels, col_groups = blocks(view.col_labels, view.col_groups, c)
    return MatrixView(weights, row_labels, col_labels, masked, row_groups, col_groups, factor, view.quantity)
