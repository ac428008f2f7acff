"""A sentiment head for the offline MiniLM encoder, trained with the encoder frozen: BERT's pooler →
POSITIVE / NEGATIVE, loaded as `BertForSequenceClassification`. Also the fortunes text and BERT's masking
that training/minilm_mlm.py (the fill-mask model, trained whole) shares.

    python -m training.minilm_heads            # ~5 min on 2 cores: the head, its model card, held-out sets

Text: the Debian package `fortunes` (BSD licence; `apt-get install fortunes`), English quotations,
split into sentences; sentences are assigned to training or held-out by a hash of their text, so
no held-out sentence is ever trained on. Labels come from VADER (`vaderSentiment` 3.3.2
on PyPI, MIT licence), a rule-based sentiment lexicon: sentences with compound ≥ 0.5 are POSITIVE,
≤ -0.5 NEGATIVE, the rest are left out. The encoder never changes, so every attention view of the
model equals plain MiniLM's.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import time
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file
from transformers import AutoTokenizer, BertConfig, BertModel

from viz.models import REPO_MODELS, minilm_dir

FORTUNES = Path("/usr/share/games/fortunes")
SEED = 1234
HELD_OUT_SHARE = 0.1  # of sentences, by hash of their text
MAX_TOKENS = 64
MASK_SHARE = 0.15
COURSE_SENTENCE = "I've been waiting for a HuggingFace course my whole life."
CI_SUBSET = 300  # held-out examples stored beside each head, re-checked by the tests


def sentences() -> list[str]:
    """Distinct English sentences of 5-40 words from the fortune files, in a fixed order."""
    seen, out = set(), []
    for path in sorted(FORTUNES.glob("*.u8")):
        for entry in path.read_text(encoding="utf-8", errors="replace").split("\n%\n"):
            if entry.lstrip().startswith(("--", "|", "+")):  # attributions and ASCII art
                continue
            flat = re.sub(r"\s+", " ", entry).strip()
            for sentence in re.split(r"(?<=[.!?])\s+(?=[A-Z\"'])", flat):
                words = sentence.split()
                ascii_letters = sum(c.isascii() and c.isalpha() for c in sentence)
                if 5 <= len(words) <= 40 and ascii_letters > 0.6 * len(sentence) and sentence not in seen:
                    seen.add(sentence)
                    out.append(sentence)
    return out


def held_out(sentence: str) -> bool:
    return int(hashlib.sha256(sentence.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF < HELD_OUT_SHARE


def mask_tokens(
    ids: list[int], special: set[int], mask_id: int, rng: np.random.Generator
) -> tuple[list[int], list[int]]:
    """BERT's masking, always with [MASK] (what fill-mask feeds at inference): 15 % of the word pieces,
    at least one. Returns (masked ids, masked positions)."""
    candidates = [i for i, t in enumerate(ids) if t not in special]
    picked = sorted(rng.choice(candidates, size=max(1, round(MASK_SHARE * len(candidates))), replace=False).tolist())
    masked = list(ids)
    for i in picked:
        masked[i] = mask_id
    return masked, picked


@torch.inference_mode()
def hidden_at(encoder: BertModel, ids: list[list[int]], positions: list[list[int]], batch: int = 128) -> torch.Tensor:
    """The frozen encoder's last hidden state at the given positions of each sequence: [Σ positions, 384]."""
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    found = [None] * len(ids)
    for start in range(0, len(order), batch):
        chunk = order[start : start + batch]
        width = max(len(ids[i]) for i in chunk)
        input_ids = torch.zeros(len(chunk), width, dtype=torch.long)
        attention = torch.zeros(len(chunk), width, dtype=torch.long)
        for row, i in enumerate(chunk):
            input_ids[row, : len(ids[i])] = torch.tensor(ids[i])
            attention[row, : len(ids[i])] = 1
        out = encoder(input_ids=input_ids, attention_mask=attention).last_hidden_state
        for row, i in enumerate(chunk):
            found[i] = out[row, positions[i]]
    return torch.cat(found)


def top_k_hits(logits: torch.Tensor, targets: torch.Tensor, k: int) -> int:
    return int((logits.topk(k, dim=-1).indices == targets[:, None]).any(-1).sum())


LABELS = ("NEGATIVE", "POSITIVE")


def vader_labelled(texts: list[str]) -> list[tuple[str, int]]:
    """(sentence, 1 = POSITIVE / 0 = NEGATIVE) where VADER is confident (|compound| ≥ 0.5); the rest left out."""
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    analyzer = SentimentIntensityAnalyzer()
    out = []
    for text in texts:
        compound = analyzer.polarity_scores(text)["compound"]
        if abs(compound) >= 0.5:
            out.append((text, int(compound > 0)))
    return out


# Sentences built from templates and hand-written word lists: the label comes from the word's list.
# Every fourth word of each list and every fourth template are held out, so a held-out sentence has a
# word or a frame the head never saw: the held-out score measures what the encoder knows of new words.
POSITIVE_ADJECTIVES = (
    "great wonderful excellent fantastic amazing delightful superb brilliant lovely enjoyable charming outstanding "
    "marvelous terrific pleasant impressive beautiful fun helpful inspiring perfect remarkable engaging refreshing "
    "splendid uplifting awesome satisfying heartwarming gorgeous"
).split()
NEGATIVE_ADJECTIVES = (
    "terrible awful horrible dreadful boring disappointing useless annoying poor bad miserable painful tedious dull "
    "frustrating pathetic lousy mediocre unpleasant confusing awkward disgusting worthless sloppy infuriating bland "
    "clumsy depressing atrocious dismal"
).split()
POSITIVE_VERBS = "love adore enjoy like appreciate treasure admire recommend".split()
NEGATIVE_VERBS = "hate despise dislike loathe detest resent regret avoid".split()
NOUNS = (
    "course movie book class meal lecture song show game hotel car phone teacher restaurant service app album trip "
    "workshop tutorial concert museum coffee camera film novel podcast keyboard"
).split()
ADJECTIVE_FRAMES = (
    "The {noun} was {adj}.",
    "What a {adj} {noun}!",
    "This {noun} is really {adj}.",
    "Honestly, the {noun} felt {adj}.",
    "I found the {noun} {adj}.",
    "My friends said the {noun} was {adj}, and they were right.",
    "I have never seen such a {adj} {noun}.",
    "The {noun} turned out to be {adj}.",
)
VERB_FRAMES = (
    "I {verb} this {noun}.",
    "We {verb} the {noun} we saw last week.",
    "Everyone I know would {verb} this {noun}.",
    "I really {verb} that {noun}.",
)


def built_sentences(held_out: bool) -> list[tuple[str, int]]:
    """Template sentences, 1 = POSITIVE / 0 = NEGATIVE; held-out ones use a held-out word or frame."""
    out = []
    for frames, slot, lists in (
        (ADJECTIVE_FRAMES, "adj", (NEGATIVE_ADJECTIVES, POSITIVE_ADJECTIVES)),
        (VERB_FRAMES, "verb", (NEGATIVE_VERBS, POSITIVE_VERBS)),
    ):
        for f, frame in enumerate(frames):
            for label, words in enumerate(lists):
                for w, word in enumerate(words):
                    if (f % 4 == 3 or w % 4 == 3) != held_out:
                        continue
                    for noun in NOUNS:
                        out.append((frame.format(noun=noun, **{slot: word}), label))
    return out


class SentimentHead(torch.nn.Module):
    """BERT's pooler (dense + tanh on [CLS]) and a linear classifier, as BertForSequenceClassification has them."""

    def __init__(self, pooler: torch.nn.Linear):
        super().__init__()
        self.pooler = torch.nn.Linear(pooler.in_features, pooler.out_features)
        self.pooler.load_state_dict(pooler.state_dict())  # start from MiniLM's own pooler
        self.classifier = torch.nn.Linear(pooler.out_features, len(LABELS))

    def forward(self, cls: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.tanh(self.pooler(cls)))

    def state_for_bert(self) -> dict[str, torch.Tensor]:
        return {
            "bert.pooler.dense.weight": self.pooler.weight,
            "bert.pooler.dense.bias": self.pooler.bias,
            "classifier.weight": self.classifier.weight,
            "classifier.bias": self.classifier.bias,
        }


def train_sentiment(
    encoder, tokenizer, train: list[tuple[str, int]], tests: dict[str, list[tuple[str, int]]], epochs: int
):
    def features(pairs):
        ids = [tokenizer(t, truncation=True, max_length=MAX_TOKENS)["input_ids"] for t, _ in pairs]
        return hidden_at(encoder, ids, [[0]] * len(ids)), torch.tensor([label for _, label in pairs])

    x, y = features(train)
    head = SentimentHead(encoder.pooler.dense)
    weights = len(y) / (len(LABELS) * torch.bincount(y, minlength=len(LABELS)).float())  # balance the classes
    optimizer = torch.optim.AdamW(head.parameters(), lr=1e-3, weight_decay=0.01)
    generator = torch.Generator().manual_seed(SEED)
    for _ in range(epochs):
        for batch in torch.randperm(len(y), generator=generator).split(128):
            loss = torch.nn.functional.cross_entropy(head(x[batch]), y[batch], weight=weights)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    metrics = {"train_sentences": len(y), "train_positive": int(y.sum())}
    with torch.no_grad():
        for name, pairs in tests.items():
            x_test, y_test = features(pairs)
            metrics[f"{name}_sentences"] = len(y_test)
            metrics[f"{name}_positive"] = int(y_test.sum())
            metrics[f"{name}_accuracy"] = float((head(x_test).argmax(-1) == y_test).float().mean())
        course = hidden_at(encoder, [tokenizer(COURSE_SENTENCE)["input_ids"]], [[0]])
        metrics["course_sentence"] = {LABELS[i]: round(float(p), 4) for i, p in enumerate(head(course).softmax(-1)[0])}
    return head, metrics


def save_head(name: str, architecture: str, state: dict, config_changes: dict, metrics: dict, held_out: list) -> Path:
    folder = REPO_MODELS / name
    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().float().contiguous() for k, v in state.items()}, folder / "head.safetensors")
    config = BertConfig.from_pretrained(minilm_dir())
    config.architectures = [architecture]
    for key, value in config_changes.items():
        setattr(config, key, value)
    config.to_json_file(folder / "config.json")
    (folder / "metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
    (folder / "held_out.json").write_text(json.dumps(held_out) + "\n")
    return folder


DATA = (
    "Text: the Debian package `fortunes` 1:1.99.1-7.3 (BSD licence; `apt-get install fortunes`), English quotations "
    "from its `*.u8` files, split into sentences of 5-40 words ({total:,} distinct). A sentence is held out when the "
    "first 32 bits of the SHA-256 of its text fall in the lowest 10 %: held-out sentences are never trained on."
)
COMMAND = "`python -m training.minilm_heads` (seed 1234)"


CARDS = Path(__file__).parent / "cards"  # model-card templates, filled with the figures training wrote


def write_card(sentences_total: int) -> None:
    """The model card (models/minilm-sentiment/README.md) from its template and the figures in metrics.json."""
    metrics = json.loads((REPO_MODELS / "minilm-sentiment" / "metrics.json").read_text())
    extra = dict(data=DATA.format(total=sentences_total), command=COMMAND, course_sentence=COURSE_SENTENCE)
    extra["course"] = ", ".join(f"{label} {p:.3f}" for label, p in metrics.pop("course_sentence").items())
    card = (CARDS / "minilm-sentiment.md").read_text().format(**metrics, **extra)
    (REPO_MODELS / "minilm-sentiment" / "README.md").write_text(card)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sentiment-epochs", type=int, default=40)
    args = parser.parse_args()
    torch.manual_seed(SEED)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    rng = np.random.default_rng(SEED)
    tokenizer = AutoTokenizer.from_pretrained(minilm_dir())
    encoder = BertModel.from_pretrained(minilm_dir()).eval()
    for p in encoder.parameters():
        p.requires_grad_(False)
    texts = sentences()
    train = [t for t in texts if not held_out(t)]
    test = [t for t in texts if held_out(t)]
    rng.shuffle(train)
    started = time.perf_counter()
    labelled_train, labelled_test = vader_labelled(train), vader_labelled(test)
    built_train, built_test = built_sentences(held_out=False), built_sentences(held_out=True)
    tests = {"built_held_out": built_test, "vader_held_out": labelled_test}
    head, sentiment = train_sentiment(encoder, tokenizer, labelled_train + built_train, tests, args.sentiment_epochs)
    sentiment.update(
        built_train=len(built_train),
        vader_train=len(labelled_train),
        source="template sentences labelled by their word lists, and fortunes sentences labelled by "
        "vaderSentiment 3.3.2 (MIT): compound ≥ 0.5 POSITIVE, ≤ -0.5 NEGATIVE, others left out",
        epochs=args.sentiment_epochs,
        seed=SEED,
        train_seconds=round(time.perf_counter() - started, 1),
    )
    print(json.dumps(sentiment))
    labels = {"id2label": dict(enumerate(LABELS)), "label2id": {label: i for i, label in enumerate(LABELS)}}
    subset = [
        {"set": name, "text": t, "label": LABELS[y]}
        for name, pairs in tests.items()
        for t, y in pairs[:: max(1, len(pairs) // (CI_SUBSET // 2))][: CI_SUBSET // 2]
    ]
    save_head("minilm-sentiment", "BertForSequenceClassification", head.state_for_bert(), labels, sentiment, subset)
    write_card(len(texts))


if __name__ == "__main__":
    main()
