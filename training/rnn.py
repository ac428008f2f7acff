"""Train the recurrent models of the RNN chapter, reproducibly, on the CPU (about 2 minutes each).

    python3 -m training.rnn            # -> models/rnn-<task>[-attention] for the dates and word-order tasks,
                                       #    and models/bottleneck-<task>.json (exact match by input length)

For each task, two viz.recurrent.GRUSeq2Seq with the same sizes, data, seed and steps: one decodes from the
encoder's last state alone, the other with Bahdanau et al.'s (2015) additive attention. Data and held-out
split are the task's Marian model's (training/dates.py, training/word_order.py), tokens its word-level
vocabulary. Each folder gets the weights, the tokenizer, metrics.json and a card; bottleneck-<task>.json holds
held-out exact match by input length for both RNNs and the task's Marian transformer, on the same examples.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file
from transformers import AutoTokenizer

from training import dates, word_order
from training.common import Example, alignment_hits, role_positions
from viz.recurrent import GRUSeq2Seq, greedy, load, load_tokenizer, read
from viz.wordtok import build_word_tokenizer

ROOT = Path(__file__).resolve().parent.parent
SEED, N_TRAIN, N_TEST = 1234, 60_000, 2_000
SIZES = dict(hidden=64, embedding=32)
STEPS, BATCH, LR = 3000, 128, 3e-3
TASKS = {
    "dates": dict(module=dates, join_with="", title="dates → ISO 8601"),
    "word-order": dict(module=word_order, join_with=" ", title="English → French word order"),
}


def model_key(task: str, attention: bool) -> str:
    return f"rnn-{task}" + ("-attention" if attention else "")


def tokenizer(task: str):
    spec = TASKS[task]
    return build_word_tokenizer(spec["module"].vocabulary(), template="eos", join_with=spec["join_with"],
                                model_max_length=64)  # fmt: skip


def held_out(task: str) -> list[Example]:
    return TASKS[task]["module"].sample(N_TEST, held_out=True, seed=SEED + 1)


def _batch(rows: list[tuple[list[int], list[int]]], pad: int):
    width = max(len(s) for s, _ in rows)
    steps = max(len(t) for _, t in rows)
    ids = torch.full((len(rows), width), pad)
    targets = torch.full((len(rows), steps), -100)
    decoder_in = torch.full((len(rows), steps), pad)  # the start token is the pad token (as the Marian models)
    for r, (s, t) in enumerate(rows):
        ids[r, : len(s)] = torch.tensor(s)
        targets[r, : len(t)] = torch.tensor(t)
        decoder_in[r, 1 : len(t)] = torch.tensor(t[:-1])
    return ids, torch.tensor([len(s) for s, _ in rows]), decoder_in, targets


def by_length(outputs: list[str], examples: list[Example], lengths: list[int]) -> dict:
    """Exact match overall and by input length in tokens (its </s> not counted): {n: [share, examples]}."""
    hits: dict[int, list[bool]] = {}
    for out, ex, n in zip(outputs, examples, lengths, strict=True):
        hits.setdefault(n, []).append(out.strip() == ex.target_text)
    every = [h for group in hits.values() for h in group]
    return {"exact_match": float(np.mean(every)),
            "by_input_length": {str(n): [float(np.mean(h)), len(h)] for n, h in sorted(hits.items())}}  # fmt: skip


def evaluate(model: GRUSeq2Seq, tok, examples: list[Example]) -> dict:
    """Held-out exact match (greedy, batched), by input length; with attention, also how often α's largest
    weight, under forced decoding, falls on a source token that carries the target token written."""
    inputs = [tok(ex.source_text)["input_ids"] for ex in examples]
    outputs = tok.batch_decode(greedy(model, inputs, tok.pad_token_id, tok.eos_token_id), skip_special_tokens=True)
    metrics = by_length(outputs, examples, [len(ids) - 1 for ids in inputs])
    if model.attends:
        hits = []
        for ex, ids in zip(examples, inputs, strict=True):
            forced = tok(text_target=ex.target_text)["input_ids"]
            alpha = read(model, ids, tok.pad_token_id, tok.eos_token_id, forced).alpha
            hits += alignment_hits(alpha, role_positions(ex.source, tok), role_positions(ex.target, tok))
        metrics["alignment"] = float(np.mean(hits))
    return metrics


def train(task: str, attention: bool, steps: int = STEPS) -> dict:
    torch.manual_seed(SEED)
    random.seed(SEED)
    torch.set_num_threads(2)
    tok, module = tokenizer(task), TASKS[task]["module"]
    rows = [(tok(ex.source_text)["input_ids"], tok(text_target=ex.target_text)["input_ids"])
            for ex in module.sample(N_TRAIN, held_out=False, seed=SEED)]  # fmt: skip
    model = GRUSeq2Seq(len(tok), attention=attention, **SIZES)
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    rng = np.random.default_rng(SEED)
    start, name = time.perf_counter(), model_key(task, attention)
    for step in range(1, steps + 1):
        ids, lengths, decoder_in, targets = _batch([rows[i] for i in rng.integers(0, len(rows), BATCH)],
                                                   tok.pad_token_id)  # fmt: skip
        logits = model(ids, lengths, decoder_in)
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        if step % 500 == 0:
            print(f"{name} step {step} loss {loss.item():.4f} {time.perf_counter() - start:.0f}s", flush=True)
    model.eval()
    seconds = round(time.perf_counter() - start, 1)
    metrics = {"task": task, **evaluate(model, tok, held_out(task)), "examples": N_TEST, "attention": attention,
               "steps": steps, "batch": BATCH, "seed": SEED, "train_examples": N_TRAIN, "train_seconds": seconds,
               "parameters": sum(p.numel() for p in model.parameters()), **SIZES}  # fmt: skip
    out = ROOT / "models" / name
    out.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, out / "model.safetensors")
    model.config.save_pretrained(out)
    tok.save_pretrained(out)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    (out / "README.md").write_text(card(name, metrics))
    print(json.dumps(metrics, indent=2), flush=True)
    return metrics


def transformer_by_length(task: str) -> dict:
    """The task's Marian model on the same held-out examples, by input length (its tokenizer is the RNNs')."""
    from transformers import MarianMTModel

    folder = ROOT / "models" / f"marian-{task}"
    tok, model = AutoTokenizer.from_pretrained(str(folder)), MarianMTModel.from_pretrained(str(folder)).eval()
    examples, outputs, lengths = held_out(task), [], []
    with torch.inference_mode():
        for start in range(0, len(examples), 250):
            batch = [ex.source_text for ex in examples[start : start + 250]]
            enc = tok(batch, return_tensors="pt", padding=True)
            outputs += tok.batch_decode(model.generate(**enc), skip_special_tokens=True)
            lengths += [int(n) - 1 for n in enc["attention_mask"].sum(1)]
    return by_length(outputs, examples, lengths)


def outputs_of(key: str, examples: list[Example]) -> list[str]:
    """A shipped RNN's greedy outputs (decoded) for these examples."""
    folder = ROOT / "models" / key
    tok = load_tokenizer(folder)
    inputs = [tok(ex.source_text)["input_ids"] for ex in examples]
    written = greedy(load(folder), inputs, tok.pad_token_id, tok.eos_token_id)
    return [text.strip() for text in tok.batch_decode(written, skip_special_tokens=True)]


def bottleneck_examples(task: str, n: int = 6) -> list[dict]:
    """Held-out inputs the model without attention gets wrong and the one with attention right, longest first."""
    examples = held_out(task)
    plain, attending = (outputs_of(model_key(task, attention), examples) for attention in (False, True))
    found = [{"source": ex.source_text, "target": ex.target_text, "without attention": a, "with attention": b}
             for ex, a, b in zip(examples, plain, attending, strict=True) if a != ex.target_text == b]  # fmt: skip
    return sorted(found, key=lambda row: -len(row["source"]))[:n]


def write_bottleneck(task: str, rnns: dict[str, dict]) -> None:
    """models/bottleneck-<task>.json: held-out exact match by input length (both RNNs and the transformer), and
    long inputs only the attention model gets right."""
    curves = {key: {"exact_match": m["exact_match"], "by_input_length": m["by_input_length"]}
              for key, m in {**rnns, task: transformer_by_length(task)}.items()}  # fmt: skip
    record = {"task": task, "title": TASKS[task]["title"], "examples": N_TEST, "seed": SEED + 1, "models": curves,
              "only_attention_right": bottleneck_examples(task)}  # fmt: skip
    (ROOT / "models" / f"bottleneck-{task}.json").write_text(json.dumps(record, indent=2) + "\n")


HOW = {
    True: "At every output step the decoder looks back at all encoder states: e_t,i = vᵀ tanh(W s_t−1 + U h_i), "
    "α = softmax(e), c_t = Σ α_t,i h_i.",
    False: "The decoder starts from the encoder's last state and sees nothing else of the input: everything it "
    "learns of the input passes through that one vector (the bottleneck).",
}


def card(name: str, m: dict) -> str:
    kind = "with Bahdanau et al.'s (2015) additive attention" if m["attention"] else "without attention"
    rows = "\n".join(f"| {n} | {share:.4f} | {count} |" for n, (share, count) in m["by_input_length"].items())
    alignment = f"\nα's largest weight on the source token carrying the output: **{m['alignment']:.4f}**\n" if (
        "alignment" in m) else ""  # fmt: skip
    return f"""# {name}: {TASKS[m["task"]]["title"]}, a GRU encoder-decoder {kind}

Trained by `python3 -m training.rnn` for Attention Atlas's RNN chapter (viz/recurrent.py has the model and
its equations). {HOW[m["attention"]]}

## Model and training
{m["parameters"]:,} parameters: embeddings {m["embedding"]}, GRU encoder and decoder of {m["hidden"]} units.
{m["steps"]} steps × batch {m["batch"]} on {m["train_examples"]:,} generated examples (the task's Marian
training data, held-out split unchanged), seed {m["seed"]}, {m["train_seconds"]:.0f} s on 2 CPU cores.
Data: generated by this project (no licence concerns).

## Measured on {m["examples"]:,} held-out examples (never seen in training)
Exact match (greedy): **{m["exact_match"]:.4f}**
{alignment}
| input length (tokens) | exact match | examples |
|---:|---:|---:|
{rows}
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=STEPS)
    parser.add_argument("--task", choices=sorted(TASKS), action="append", help="default: every task")
    args = parser.parse_args()
    for task in args.task or TASKS:
        rnns = {model_key(task, attention): train(task, attention, args.steps) for attention in (False, True)}
        write_bottleneck(task, rnns)


if __name__ == "__main__":
    main()
