"""English -> a French-like word order, for a small Marian model with crossing alignments.

A small grammar over a real English/French lexicon. Most French adjectives follow the noun and,
when there are two, come in mirrored order ("the heavy red box" -> "la boîte rouge lourde"), as
in Bahdanau et al. 2015, Fig. 3 ("European Economic Area" -> "zone économique européenne").
Short common adjectives of beauty, age, goodness and size (BAGS: joli, petit, grand) come before
the noun as in real French ("the small black cat" -> "le petit chat noir"). Determiners and
adjectives agree in gender with the noun.

Besides sentences (NP is ADJ; NP VERB NP [PREP NP]; NP VERB) the data holds bare noun phrases of
two to four words ("the black cat" -> "le chat noir"): without them the model, never having seen
a phrase end after its noun, went on writing ("le chat noir noir").
"""

from __future__ import annotations

import random

from training.common import Example, Piece

# english -> (french, gender)
NOUNS = {
    "cat": ("chat", "m"),
    "dog": ("chien", "m"),
    "car": ("voiture", "f"),
    "house": ("maison", "f"),
    "book": ("livre", "m"),
    "table": ("table", "f"),
    "flower": ("fleur", "f"),
    "boy": ("garçon", "m"),
    "girl": ("fille", "f"),
    "woman": ("femme", "f"),
    "city": ("ville", "f"),
    "garden": ("jardin", "m"),
    "ball": ("balle", "f"),
    "horse": ("cheval", "m"),
    "door": ("porte", "f"),
    "train": ("train", "m"),
    "river": ("rivière", "f"),
    "mouse": ("souris", "f"),
    "teacher": ("professeur", "m"),
    "bike": ("vélo", "m"),
    "road": ("route", "f"),
    "box": ("boîte", "f"),
    "cake": ("gâteau", "m"),
    "shirt": ("chemise", "f"),
    "hat": ("chapeau", "m"),
    "boat": ("bateau", "m"),
    "song": ("chanson", "f"),
    "letter": ("lettre", "f"),
}
# english -> (masculine, feminine)
ADJECTIVES = {
    "red": ("rouge", "rouge"),
    "black": ("noir", "noire"),
    "white": ("blanc", "blanche"),
    "green": ("vert", "verte"),
    "blue": ("bleu", "bleue"),
    "small": ("petit", "petite"),
    "big": ("grand", "grande"),
    "fast": ("rapide", "rapide"),
    "slow": ("lent", "lente"),
    "happy": ("heureux", "heureuse"),
    "sad": ("triste", "triste"),
    "strong": ("fort", "forte"),
    "tired": ("fatigué", "fatiguée"),
    "pretty": ("joli", "jolie"),
    "heavy": ("lourd", "lourde"),
    "round": ("rond", "ronde"),
}
BEFORE_THE_NOUN = {"small", "big", "pretty"}  # BAGS adjectives in this lexicon: petit, grand, joli
VERBS = {
    "sees": "voit",
    "eats": "mange",
    "likes": "aime",
    "follows": "suit",
    "watches": "regarde",
    "finds": "trouve",
    "takes": "prend",
    "wants": "veut",
    "pushes": "pousse",
    "draws": "dessine",
}
INTRANSITIVE = {"sleeps": "dort", "runs": "court", "sings": "chante", "waits": "attend", "falls": "tombe"}
PREPOSITIONS = {"in": "dans", "on": "sur", "under": "sous", "with": "avec", "near": "contre"}
DETERMINERS = {"the": {"m": "le", "f": "la"}, "a": {"m": "un", "f": "une"}}


def vocabulary() -> list[str]:
    english = [*NOUNS, *ADJECTIVES, *VERBS, *INTRANSITIVE, *PREPOSITIONS, *DETERMINERS, "is", "."]
    french = [n for n, _ in NOUNS.values()] + [a for pair in ADJECTIVES.values() for a in pair]
    french += [*VERBS.values(), *INTRANSITIVE.values(), *PREPOSITIONS.values(), "le", "la", "un", "une", "est"]
    return list(dict.fromkeys(english + french))


class _Builder:
    """Appends aligned English and French words; a content word links to its translation."""

    def __init__(self) -> None:
        self.source: list[Piece] = []
        self.target: list[Piece] = []
        self.links = 0

    def english(self, word: str, content: bool) -> str | None:
        """Add an English word; a content word gets a link name its French translation will carry."""
        role = None
        if content:
            role = f"w{self.links}"
            self.links += 1
        self.source += [Piece(" ", None)] if self.source else []
        self.source.append(Piece(word, role))
        return role

    def french(self, word: str, role: str | None) -> None:
        self.target += [Piece(" ", None)] if self.target else []
        self.target.append(Piece(word, role))


def _noun_phrase(b: _Builder, rng: random.Random, max_adjectives: int = 2) -> str:
    """Adds a random determiner, adjectives and noun; returns the noun's gender."""
    det = rng.choice(list(DETERMINERS))
    noun = rng.choice(list(NOUNS))
    adjectives = rng.sample(list(ADJECTIVES), rng.choice(range(max_adjectives + 1)))
    return _add_noun_phrase(b, det, adjectives, noun)


def _add_noun_phrase(b: _Builder, det: str, adjectives: list[str], noun: str) -> str:
    """Adds this determiner, these adjectives and this noun in both languages; returns the noun's gender."""
    french_noun, gender = NOUNS[noun]
    b.english(det, content=False)
    roles = [b.english(adj, content=True) for adj in adjectives]
    noun_role = b.english(noun, content=True)
    b.french(DETERMINERS[det][gender], None)
    pairs = list(zip(adjectives, roles, strict=True))
    for adj, role in pairs:  # BAGS adjectives: before the noun, in English order
        if adj in BEFORE_THE_NOUN:
            b.french(ADJECTIVES[adj][gender == "f"], role)
    b.french(french_noun, noun_role)
    for adj, role in reversed(pairs):  # the others: after the noun, mirrored
        if adj not in BEFORE_THE_NOUN:
            b.french(ADJECTIVES[adj][gender == "f"], role)
    return gender


PHRASES, INTRANSITIVE_SHARE = 0.3, 0.1  # shares of bare noun phrases and of "NP VERB" sentences


def sentence(rng: random.Random) -> Example:
    b = _Builder()
    gender = _noun_phrase(b, rng)
    kind = rng.random()
    if kind < PHRASES:  # a bare noun phrase
        return Example(source=b.source, target=b.target, tag=f"phrase of {len(b.source) // 2 + 1} words")
    kind = (kind - PHRASES) / (1 - PHRASES)
    if kind < INTRANSITIVE_SHARE:  # NP VERB
        verb = rng.choice(list(INTRANSITIVE))
        b.french(INTRANSITIVE[verb], b.english(verb, content=True))
    elif kind < 0.4:  # NP is ADJ
        adj = rng.choice(list(ADJECTIVES))
        b.english("is", content=False)
        b.french("est", None)
        role = b.english(adj, content=True)
        b.french(ADJECTIVES[adj][gender == "f"], role)
    else:  # NP VERB NP [PREP NP]
        verb = rng.choice(list(VERBS))
        role = b.english(verb, content=True)
        b.french(VERBS[verb], role)
        _noun_phrase(b, rng)
        if kind > 0.75:
            prep = rng.choice(list(PREPOSITIONS))
            b.english(prep, content=False)
            b.french(PREPOSITIONS[prep], None)
            _noun_phrase(b, rng, max_adjectives=1)
    return Example(source=b.source, target=b.target, tag="sentence")


def is_held_out(example: Example) -> bool:
    """Split by sentence: a sentence is held out by its hash, so it never appears in training."""
    return random.Random(example.source_text).random() < 0.10


def sample(n: int, held_out: bool, seed: int) -> list[Example]:
    """`n` examples from one side of the split. Held-out examples are distinct; training ones repeat as
    the grammar draws them (so the few two-word phrases are seen as often as the grammar makes them)."""
    rng = random.Random(seed)
    out, seen = [], set()
    while len(out) < n:
        ex = sentence(rng)
        if is_held_out(ex) == held_out and not (held_out and ex.source_text in seen):
            seen.add(ex.source_text)
            out.append(ex)
    return out


def short_phrases(held_out: bool) -> list[Example]:
    """Every noun phrase of two or three words ("the cat", "a black dog") on one side of the split."""
    out = []
    for det in DETERMINERS:
        for adjectives in [(), *((adj,) for adj in ADJECTIVES)]:
            for noun in NOUNS:
                b = _Builder()
                _add_noun_phrase(b, det, list(adjectives), noun)
                ex = Example(source=b.source, target=b.target, tag=f"phrase of {len(adjectives) + 2} words")
                if is_held_out(ex) == held_out:
                    out.append(ex)
    return out
