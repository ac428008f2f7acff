"""Word-level tokenizers built from an explicit vocabulary.

Used by the project's own small translation models (one token per word keeps an alignment
matrix legible) and by the tests' tiny models. The result is an ordinary
`PreTrainedTokenizerFast`: `save_pretrained(dir)` then `AutoTokenizer.from_pretrained(dir)`.
"""

from __future__ import annotations

from collections.abc import Iterable

from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

SPECIALS = {
    "pad_token": "<pad>",
    "unk_token": "<unk>",
    "bos_token": "<s>",
    "eos_token": "</s>",
    "mask_token": "<mask>",
    "cls_token": "<cls>",
    "sep_token": "<sep>",
}

# How special tokens wrap a sequence, per model family.
TEMPLATES = {
    "cls-sep": ("<cls> $A <sep>", ["<cls>", "<sep>"]),  # BERT family
    "eos": ("$A </s>", ["</s>"]),  # Marian, T5
    "bos-eos": ("<s> $A </s>", ["<s>", "</s>"]),  # BART, RoBERTa
    "none": ("$A", []),  # GPT-2, Llama
}

# Digits, letter runs and single punctuation marks each become a word:
# "22nd" -> "22", "nd";  "22/11/26" -> "22", "/", "11", "/", "26".
WORD_PATTERN = r"\d+|[^\W\d_]+|[^\w\s]|_"


def build_word_tokenizer(
    words: Iterable[str],
    template: str = "eos",
    lowercase: bool = True,
    join_with: str = " ",
    model_max_length: int = 512,
) -> PreTrainedTokenizerFast:
    """A word-level tokenizer over `words` plus the special tokens in SPECIALS.

    `join_with` is what decoding puts between tokens ("" turns `2026 - 11 - 22` into
    "2026-11-22").
    """
    vocab: dict[str, int] = {}
    for token in [*SPECIALS.values(), *words]:
        vocab.setdefault(token, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token=SPECIALS["unk_token"]))
    if lowercase:
        tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Split(Regex(WORD_PATTERN), behavior="isolated")]
    )
    single, specials = TEMPLATES[template]
    if specials:
        tok.post_processor = processors.TemplateProcessing(
            single=single, special_tokens=[(s, vocab[s]) for s in specials]
        )
    if join_with == "":  # without a decoder, tokenizers joins tokens with one space
        tok.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(tokenizer_object=tok, model_max_length=model_max_length, **SPECIALS)
