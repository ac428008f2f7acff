"""What each head does, in numbers: where its attention goes, and how it adds up across layers.

Pattern scores follow TransformerLens's `head_detector` (its default "mul" error measure):

    score(head, P) = Σ_ij A_ij · P_ij / Σ_ij A_ij

A is the head's attention (row i = query, column j = key), P a 0/1 detection pattern:

    previous token   P_ij = [j = i - 1]
    duplicate token  P_ij = [j < i and tok_j = tok_i]              (an earlier copy of this token)
    induction        P_ij = [1 ≤ j ≤ i and tok_{j-1} = tok_i]      (the token after an earlier copy)
    first token      P_ij = [j = 0];   self  P_ij = [j = i]

`exclude_first` zeroes A's first column before both sums (TL's `exclude_bos`): the score becomes a
share of the attention that does not go to the first token. As Σ_ij A_ij is the number of rows,
rows that the pattern cannot apply to (no earlier copy: the first half of a repeated text) dilute
TL's score; labels therefore use the same ratio over only the rows where P marks a key ("where it
applies"), and show that number beside the label. Roles are stated rules, not a classifier.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np
import torch

from viz.errors import AtlasError
from viz.mosaic import Thumbnails, ThumbnailTally
from viz.trace import ALL, AttentionStack, Trace, WeightBlock

# (token ids [T] float, query positions i [rows, 1], key positions j [1, keys]) -> bool [rows, keys]
Rule = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


def _tok(ids: np.ndarray, index: np.ndarray) -> np.ndarray:
    """ids at `index`, NaN outside the text (NaN equals nothing, so tok[i-1] of the first token matches none)."""
    inside = (index >= 0) & (index < len(ids))
    return np.where(inside, ids[np.clip(index, 0, len(ids) - 1)], np.nan)


def k_back(k: int) -> Rule:
    return lambda ids, i, j: j == i - k


PATTERNS: Mapping[str, Rule] = MappingProxyType(
    {
        "previous token": k_back(1),
        "duplicate token": lambda ids, i, j: (j < i) & (_tok(ids, j) == _tok(ids, i)),
        "induction": lambda ids, i, j: (j >= 1) & (j <= i) & (_tok(ids, j - 1) == _tok(ids, i)),
        "first token": lambda ids, i, j: j == 0,
        "self": k_back(0),
    }
)
ROLE_SHARE = 0.4  # a head takes a role when this share of its attention follows the pattern where it applies
MIN_ROWS = 4  # ... on at least this many rows (one repeated word is not evidence of an induction head)
ABOVE_CHANCE = 2  # ... and at least this many times the share a uniform head would give it there
BROAD_ENTROPY = 0.8  # no role, and rows at least this close to uniform: "broad"
MAX_PATTERN_CELLS = 1 << 24  # a typed rule may mark at most this many (query, key) cells


def pattern_cells(
    rule: Rule, ids: np.ndarray, rows: range, n_keys: int, causal: bool, exclude_first: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """The (query, key) cells a pattern marks, as two int64 arrays sorted by query: patterns are sparse
    (a diagonal, a few repeats), so scoring reads only these cells of each block of attention."""
    ids = np.asarray(ids, dtype=np.float64)
    keys = np.arange(n_keys)[None, :]
    found_r, found_c, count = [], [], 0
    step = max(1, (1 << 22) // max(n_keys, 1))
    for start in range(rows.start, rows.stop, step):
        i = np.arange(start, min(rows.stop, start + step))[:, None]
        marked = np.broadcast_to(np.asarray(rule(ids, i, keys), dtype=bool), (len(i), n_keys)).copy()
        if causal:
            marked &= keys <= i  # a decoder's head can't follow a pattern into the future
        if exclude_first:
            marked[:, 0] = False
        r, c = np.nonzero(marked)
        count += len(r)
        if count > MAX_PATTERN_CELLS:
            raise AtlasError(
                f"This pattern marks more than {MAX_PATTERN_CELLS:,} (query, key) cells: write a narrower rule "
                "(a pattern says where a head should look, e.g. j == i - 2)."
            )
        found_r.append(r + start)
        found_c.append(c)
    return np.concatenate(found_r or [np.zeros(0, int)]), np.concatenate(found_c or [np.zeros(0, int)])


@dataclass(frozen=True)
class HeadScores:
    scores: Mapping[str, np.ndarray]  # pattern -> [layers, heads]: TransformerLens's score over the rows scored
    where_applies: Mapping[str, np.ndarray]  # pattern -> [layers, heads]: the same ratio over rows it marks a key in
    rows_applying: Mapping[str, int]  # pattern -> how many query rows it marks a key in
    chance: Mapping[str, float]  # pattern -> the share a uniform head gets where it applies (short causal rows: high)
    entropy: np.ndarray  # [layers, heads]: mean row entropy / log(visible keys), 0..1 (rows with ≥ 2 keys)
    distance: np.ndarray  # [layers, heads]: mean |query - key| in tokens, weighted by attention
    exclude_first: bool

    @property
    def nbytes(self) -> int:
        return (2 * len(self.scores) + 2) * self.entropy.nbytes

    def roles(self) -> np.ndarray:
        """[layers, heads] str: every pattern the head follows (with its share where the pattern applies),
        strongest first; else "broad" or "mixed"."""
        labels = np.full(self.entropy.shape, "", dtype=object)
        for index in np.ndindex(self.entropy.shape):
            found = sorted(
                (
                    (float(share[index]), name)
                    for name, share in self.where_applies.items()
                    if self._plays(name, share[index])
                ),
                reverse=True,
            )
            fallback = "broad" if self.entropy[index] >= BROAD_ENTROPY else "mixed"
            labels[index] = " · ".join(f"{name} {share:.2f}" for share, name in found) or fallback
        return labels

    def _plays(self, name: str, share):
        """A head follows a pattern: enough of its attention, on enough rows, well above what chance gives."""
        enough = self.rows_applying[name] >= MIN_ROWS
        return enough & (share >= ROLE_SHARE) & (share >= ABOVE_CHANCE * self.chance[name])

    def has_role(self, name: str) -> np.ndarray:
        """[layers, heads] bool: the heads labelled `name`."""
        return self._plays(name, self.where_applies[name])


@dataclass(frozen=True)
class HeadStats:
    """Everything one streamed pass over every head's attention gives: the pattern scores with and without
    the first token, entropy and distance (in both), and the Model view's thumbnails when asked for."""

    scores: HeadScores
    scores_without_first: HeadScores
    thumbnails: Thumbnails | None = None

    def scored(self, exclude_first: bool) -> HeadScores:
        return self.scores_without_first if exclude_first else self.scores

    @property
    def nbytes(self) -> int:
        thumbs = self.thumbnails.nbytes if self.thumbnails is not None else 0
        return self.scores.nbytes + self.scores_without_first.nbytes + thumbs


VARIANTS = (False, True)  # exclude_first: the first key counted, or left out (TL's exclude_bos)


class _PatternCells:
    """Every pattern's (query, key) cells in one list sorted by query, so that each block of rows gathers the
    weights on its cells at once; the sums per pattern and variant are taken when a layer is complete."""

    def __init__(self, patterns: Mapping[str, Rule], ids: np.ndarray, span: range, stack: AttentionStack):
        found = [pattern_cells(rule, ids, span, stack.n_keys, stack.causal) for rule in patterns.values()]
        rows = np.concatenate([r for r, _ in found] or [np.zeros(0, int)])
        order = np.argsort(rows, kind="stable")
        self.names = list(patterns)
        self.rows = rows[order]
        self.cols = np.concatenate([c for _, c in found] or [np.zeros(0, int)])[order]
        pattern = np.concatenate([np.full(len(r), p) for p, (r, _) in enumerate(found)] or [np.zeros(0, int)])[order]
        # Per (pattern, variant): which cells count (exclude_first drops key 0) and the rows they apply to.
        self.counted = {
            (p, v): (pattern == p) & ((self.cols != 0) | (not v)) for p in range(len(found)) for v in VARIANTS
        }
        self.applying = {key: np.unique(self.rows[cells]) for key, cells in self.counted.items()}
        self.span = span
        self.weights = torch.empty(0)  # [heads, cells]: α on every cell of the current layer, block by block

    def gather(self, block: WeightBlock) -> None:
        """α on this block's cells, into the layer's list."""
        lo, hi = np.searchsorted(self.rows, [block.start, block.stop])
        r = torch.from_numpy(self.rows[lo:hi] - block.start)
        c = torch.from_numpy(self.cols[lo:hi])
        self.weights[:, lo:hi] = (block.exp[:, r, c] / block.total[:, r, 0]).cpu()

    def chance(self, key: tuple[int, bool], visible: np.ndarray) -> float:
        """The share of a pattern's cells in a uniform head's rows (each visible key gets 1 / keys seen)."""
        rows, applying = self.rows[self.counted[key]] - self.span.start, self.applying[key] - self.span.start
        per_row = np.bincount(rows, minlength=len(self.span)) / np.maximum(visible - int(key[1]), 1)
        return float(per_row[applying].mean()) if len(applying) else 0.0


def head_stats(
    stack: AttentionStack,
    ids: np.ndarray,
    patterns: Mapping[str, Rule] = PATTERNS,
    rows: slice = ALL,
    cell: int | None = None,
    progress: Callable[[float], None] | None = None,
) -> HeadStats:
    """Score every head of a self-attention stack against `patterns` (see the module docstring) over the query
    rows `rows`, with and without the first token, plus entropy and mean distance -- and, with `cell`, every
    head's max-pooled thumbnail (at most cell × cell pixels) -- in ONE pass over the attention, a block of
    rows at a time (`progress` hears the fraction of layers done). Per query row i, with s its scores:

        α_ij = e_ij / Σ_j e_ij,  e = exp(s − max s)
        entropy_i  = −Σ_j α_ij log α_ij = log Σ_j e_ij − Σ_j α_ij (s_ij − max s),  divided by log(keys i sees)
        distance_i = Σ_j α_ij |i − j|  = i − Σ_j α_ij j  (+ 2 Σ_{j>i} α_ij (j − i) where later keys are seen)
    """
    span = range(stack.n_queries)[rows]
    shape = (stack.n_layers, stack.n_heads)
    cells = _PatternCells(patterns, ids, span, stack)
    thumbnails = ThumbnailTally(stack, cell) if cell else None
    matched = {key: np.zeros(shape) for key in cells.counted}
    total_applying = {key: np.zeros(shape) for key in cells.counted}
    total = {v: np.zeros(shape) for v in VARIANTS}
    entropy, distance = np.zeros(shape), np.zeros(shape)
    rows_with_choice = np.zeros(stack.n_layers)  # queries that see more than one key (entropy is defined)
    for layer in range(stack.n_layers):
        cells.weights = torch.empty(stack.n_heads, len(cells.rows))
        first_key = torch.empty(stack.n_heads, len(span))  # α_i0 of every row: what exclude_first leaves out
        for block in stack.row_blocks(layer, rows=rows, pool=thumbnails.size if thumbnails else None):
            row_entropy, row_distance, seen = _entropy_and_distance(stack, layer, block)
            choice = seen > 1
            entropy[layer] += (row_entropy[:, choice] / seen[choice].log()).sum(-1).cpu().numpy()
            rows_with_choice[layer] += int(choice.sum())
            distance[layer] += row_distance.sum(-1).cpu().numpy()
            first_key[:, block.start - span.start : block.stop - span.start] = block.exp[..., 0] / block.total[..., 0]
            cells.gather(block)
            if thumbnails:
                thumbnails.add(layer, block)
        row_totals = {False: torch.ones_like(first_key), True: 1 - first_key}  # Σ_j α_ij over the keys counted
        for v, row_total in row_totals.items():
            total[v][layer] = row_total.sum(-1).numpy()
        for (p, v), counted in cells.counted.items():
            matched[p, v][layer] = cells.weights[:, torch.from_numpy(counted)].sum(-1).numpy()
            applying = torch.from_numpy(cells.applying[p, v] - span.start)
            total_applying[p, v][layer] = row_totals[v][:, applying].sum(-1).numpy()
        if progress:
            progress((layer + 1) / stack.n_layers)
    visible = np.arange(span.start, span.stop) + 1 if stack.causal else np.full(len(span), stack.n_keys)
    ratio = lambda part, whole: np.divide(part, whole, out=np.zeros(shape), where=whole > 0)  # noqa: E731
    entropy = entropy / np.maximum(rows_with_choice, 1)[:, None]
    distance = distance / max(len(span), 1)

    def scores(v: bool) -> HeadScores:
        named = {name: (p, v) for p, name in enumerate(cells.names)}
        return HeadScores(
            scores=MappingProxyType({name: ratio(matched[key], total[v]) for name, key in named.items()}),
            where_applies=MappingProxyType({name: ratio(matched[k], total_applying[k]) for name, k in named.items()}),
            rows_applying=MappingProxyType({name: len(cells.applying[key]) for name, key in named.items()}),
            chance=MappingProxyType({name: cells.chance(key, visible) for name, key in named.items()}),
            entropy=entropy,
            distance=distance,
            exclude_first=v,
        )

    return HeadStats(scores(False), scores(True), thumbnails.finish() if thumbnails else None)


def _entropy_and_distance(
    stack: AttentionStack, layer: int, block: WeightBlock
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per row of the block: entropy and distance [heads, rows] (head_stats' formulas), keys seen [rows]."""
    rule, keys = stack.layers[layer].mask, block.exp.shape[-1]
    i = torch.arange(block.start, block.stop, dtype=torch.float32)[:, None]
    forbidden = rule.forbidden(slice(block.start, block.stop), slice(0, keys))
    seen = torch.full((len(i),), float(keys)) if forbidden is None else (~forbidden).sum(-1).float()
    distance = i[:, 0] - block.mean_key
    if not rule.causal:  # keys after the query are seen too: |i − j| = (i − j) + 2 max(j − i, 0)
        later = (torch.arange(keys, dtype=torch.float32) - i).clamp_min(0)
        distance += 2 * torch.einsum("hrk,rk->hr", block.exp, later) / block.total[..., 0]
    return block.entropy, distance, seen


THUMBNAIL_CELL = 64  # the Model view's thumbnails: at most 64 × 64 pixels a head


def stack_stats(
    trace: Trace,
    stack_name: str,
    rows: tuple[int, int] | None = None,
    pattern: tuple[str, int, str] | None = None,
    progress: Callable[[float], None] | None = None,
) -> HeadStats:
    """`head_stats` of one stack of a Trace: every query row, the standard patterns (self-attention only: the
    patterns compare a query's token with its keys') and the Model view's thumbnails -- or only over query
    `rows` (start, stop), or for one `pattern` (kind, k, rule text) of `custom_pattern`, without thumbnails."""
    stack = trace.stacks[stack_name]
    patterns = PATTERNS if stack.queries_from == stack.keys_from else {}
    if pattern is not None:
        (name, _), rule = custom_pattern(*pattern)
        patterns = {name: rule}
    whole = rows is None and pattern is None
    span = slice(*rows) if rows else ALL
    ids = trace.tokens[stack.queries_from].ids
    return head_stats(stack, ids, patterns, span, THUMBNAIL_CELL if whole else None, progress)


def head_scores(
    stack: AttentionStack,
    ids: np.ndarray,
    patterns: Mapping[str, Rule] = PATTERNS,
    rows: slice = ALL,
    exclude_first: bool = False,
    progress: Callable[[float], None] | None = None,
) -> HeadScores:
    """The pattern scores of `head_stats` (one of its two variants)."""
    return head_stats(stack, ids, patterns, rows, progress=progress).scored(exclude_first)


# ---------------------------------------------------------------- ranking heads by a chosen pattern
CUSTOM_KINDS = ("the token after its previous occurrence", "same token earlier", "k tokens back", "first token")
CUSTOM_KINDS += ("a rule you type",)
_BUILT_IN = {CUSTOM_KINDS[0]: "induction", CUSTOM_KINDS[1]: "duplicate token", "first token": "first token"}


def custom_pattern(kind: str, k: int = 1, rule_text: str = "") -> tuple[tuple[str, str], Rule]:
    """A pattern to rank heads by: ((name, parameter) -- a name that says it all, for caches), its rule.
    A pattern that is one of PATTERNS is named as it, so its scores come with the standard ones."""
    if kind == "k tokens back":
        built_in = {1: "previous token", 0: "self"}.get(k)
        return ((built_in, "") if built_in else (kind, str(k))), k_back(k)
    if kind == "a rule you type":
        return (kind, rule_text.strip()), parse_rule(rule_text)
    return (_BUILT_IN[kind], ""), PATTERNS[_BUILT_IN[kind]]


ROLE_CODES = {"previous token": "prev", "duplicate token": "dup", "induction": "ind", "first token": "1st"}
ROLE_CODES |= {"self": "self", "broad": "broad", "mixed": "·"}


def role_codes(labels: np.ndarray) -> np.ndarray:
    """Short cell text for a grid of role labels: the strongest role's code ("ind", "prev", ...)."""
    first = lambda label: ROLE_CODES.get(label.split(" · ")[0].rsplit(" ", 1)[0], ROLE_CODES.get(label, label))  # noqa: E731
    return np.vectorize(first, otypes=[object])(labels)


# ---------------------------------------------------------------- patterns typed as rules
RULE_NAMES = {"i": "the query's position", "j": "the key's position", "n": "the number of tokens"}
RULE_HELP = (
    "A condition on the query position i and the key position j (and n, the number of tokens); tok[x] is the "
    "token id at position x. Operators: + - * // %, == != < <= > >=, and or not, abs(). "
    "Examples: j == i - 2 · tok[j] == tok[i] and j < i · tok[j-1] == tok[i] and j <= i · j % 2 == 0"
)
_COMPARE = {ast.Eq: np.equal, ast.NotEq: np.not_equal, ast.Lt: np.less, ast.LtE: np.less_equal}
_COMPARE |= {ast.Gt: np.greater, ast.GtE: np.greater_equal}
_ARITHMETIC = {ast.Add: np.add, ast.Sub: np.subtract, ast.Mult: np.multiply}
_BY_CONSTANT = {ast.Mod: np.mod, ast.FloorDiv: np.floor_divide}


def parse_rule(text: str) -> Rule:
    """A typed rule (RULE_HELP) as a pattern. Parsed into Python's syntax tree and evaluated node by node
    over a small whitelist -- never `eval`: a rule is user text."""
    text = text.strip()
    if not text or len(text) > 200:
        raise AtlasError("Type a rule of at most 200 characters, e.g. j == i - 2.")
    try:
        tree = ast.parse(text, mode="eval").body
    except SyntaxError as err:
        raise AtlasError(f"The rule is not a formula: {err.msg} (at character {err.offset}).") from err

    def rule(ids: np.ndarray, i: np.ndarray, j: np.ndarray) -> np.ndarray:
        names = {"i": i, "j": j, "n": np.int64(len(ids))}
        value = _evaluate(tree, names, ids)
        if np.asarray(value).dtype != bool:
            raise AtlasError("A rule must be a condition that is true or false for each cell, e.g. j == i - 2.")
        return value

    rule(np.zeros(2), np.arange(2)[:, None], np.arange(2)[None, :])  # check it once, on a 2-token text
    return rule


def _evaluate(node: ast.AST, names: dict, ids: np.ndarray):
    recurse = lambda child: _evaluate(child, names, ids)  # noqa: E731
    if isinstance(node, ast.Constant) and type(node.value) is int and abs(node.value) <= 10**9:
        return np.int64(node.value)
    if isinstance(node, ast.Name) and node.id in names:
        return names[node.id]
    if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name) and node.value.id == "tok":
        return _tok(ids, np.asarray(recurse(node.slice), dtype=np.int64))
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "abs" and len(node.args) == 1:
        return np.abs(recurse(node.args[0]))
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        return np.logical_not(recurse(node.operand))
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return -recurse(node.operand)
    if isinstance(node, ast.BinOp) and type(node.op) in _ARITHMETIC:
        return _ARITHMETIC[type(node.op)](recurse(node.left), recurse(node.right))
    if isinstance(node, ast.BinOp) and type(node.op) in _BY_CONSTANT:
        divisor = recurse(node.right)
        if not (isinstance(node.right, ast.Constant) and divisor != 0):
            raise AtlasError("% and // take a non-zero number on their right, e.g. j % 2 == 0.")
        return _BY_CONSTANT[type(node.op)](recurse(node.left), divisor)
    if isinstance(node, ast.BoolOp):
        combine = np.logical_and if isinstance(node.op, ast.And) else np.logical_or
        values = [np.asarray(recurse(v), dtype=bool) for v in node.values]
        out = values[0]
        for value in values[1:]:
            out = combine(out, value)
        return out
    if isinstance(node, ast.Compare) and all(type(op) in _COMPARE for op in node.ops):
        left, out = recurse(node.left), True
        for op, right_node in zip(node.ops, node.comparators, strict=True):
            right = recurse(right_node)
            out = np.logical_and(out, _COMPARE[type(op)](left, right))
            left = right
        return out
    raise AtlasError(
        f"The rule can't use “{ast.unparse(node)[:40]}”: only i, j, n, tok[…], whole numbers, "
        "+ - * // %, comparisons, and/or/not and abs()."
    )


ROLLOUT_MAX_TOKENS = 1024  # rollout multiplies T×T matrices layer by layer: T³ work per layer


def rollout(stack: AttentionStack, upto_layer: int, residual: float = 0.5) -> np.ndarray:
    """Attention rollout (Abnar & Zuidema 2020) after `upto_layer`: [T, T], row i = how much token i's
    representation draws on each input token, following attention through the residual stream:
    Â_l = residual·I + (1 - residual)·mean_heads(A_l), rows renormalised, rollout = Â_l · Â_{l-1} ··· Â_0."""
    t = stack.n_queries
    if t > ROLLOUT_MAX_TOKENS:
        raise AtlasError(
            f"Rollout multiplies {t}×{t} matrices layer by layer; it is offered up to {ROLLOUT_MAX_TOKENS:,} "
            "tokens. Lower 'Max tokens' in the sidebar to see it."
        )
    product = np.eye(t)
    for layer in range(upto_layer + 1):
        mixed = residual * np.eye(t) + (1 - residual) * stack.head_mean(layer).astype(np.float64)
        mixed /= mixed.sum(-1, keepdims=True)
        product = mixed @ product
    return product
