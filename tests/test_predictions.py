"""The head's predictions, read from the Trace, equal what transformers' pipelines say."""

import numpy as np
import pytest
import transformers
from transformers import pipeline

from tests.apptest import plotly_specs, problems, run_page
from tests.tiny import TINY, build_tiny, model_logits
from viz import predictions as P
from viz.lens import logit_lens
from viz.models import load_model
from viz.trace import build_trace

LABELS = {0: "negative", 1: "neutral", 2: "positive"}
NER = {0: "O", 1: "B-PER", 2: "I-PER", 3: "B-LOC"}


@pytest.fixture(scope="module")
def heads(tmp_path_factory):
    """Tiny BERTs with each task head, saved like hub checkpoints."""
    build = lambda head, **kw: build_tiny("bert", tmp_path_factory.mktemp(head), head=head, **kw)  # noqa: E731
    return {
        "sequence-classification": build(
            "BertForSequenceClassification", id2label=LABELS, label2id={v: k for k, v in LABELS.items()}
        ),
        "token-classification": build(
            "BertForTokenClassification", id2label=NER, label2id={v: k for k, v in NER.items()}
        ),
        "question-answering": build("BertForQuestionAnswering"),
    }


def _pipe(task, loaded, **kw):
    return pipeline(task, model=loaded.model, tokenizer=loaded.tokenizer, device=loaded.device, **kw)


def test_fill_mask_equals_pipeline(tiny_dirs):
    loaded = load_model(f"path:{tiny_dirs['bert']}")
    text = "the cat sat on the <mask> ."
    ours = P.fill_mask(build_trace(loaded, text), loaded.tokenizer, k=5)
    theirs = _pipe("fill-mask", loaded, top_k=5)(text)
    (candidates,) = ours.values()
    assert [c.token_id for c in candidates] == [t["token"] for t in theirs]
    np.testing.assert_allclose([c.probability for c in candidates], [t["score"] for t in theirs], atol=1e-5)


def test_class_probabilities_equal_pipeline(heads):
    loaded = load_model(f"path:{heads['sequence-classification']}")
    text = "transformers are great !"
    ours = {label: p for label, p, _ in P.class_probabilities(build_trace(loaded, text), loaded.model.config)}
    result = _pipe("text-classification", loaded, top_k=None)([text])[0]  # a list input gives one list per text
    theirs = {d["label"]: d["score"] for d in result}
    assert set(ours) == set(LABELS.values())
    for label in LABELS.values():
        assert ours[label] == pytest.approx(theirs[label], abs=1e-5)


def test_token_labels_equal_pipeline(heads):
    loaded = load_model(f"path:{heads['token-classification']}")
    text = "i looked at my dog and saw that the cat was late"
    trace = build_trace(loaded, text)
    ours = {t.position: (t.label, t.score) for t in P.token_labels(trace, loaded.model.config)}
    theirs = _pipe("token-classification", loaded, ignore_labels=[])(text)
    assert len(theirs) == len(ours)
    for entity in theirs:
        label, score = ours[entity["index"]]
        assert label == entity["entity"] and score == pytest.approx(entity["score"], abs=1e-5)


def test_answer_span_is_the_best_scoring_span(heads):
    """transformers 5 removed the question-answering pipeline: check against its rule, brute force,
    on a separate forward pass: score = p(start) * p(end), both softmaxed over context tokens only,
    start <= end < start + 15."""
    import torch

    loaded = load_model(f"path:{heads['question-answering']}")
    question, context = "where was the cat ?", "the cat sat on the mat and the dog was late"
    spans = P.answer_spans(build_trace(loaded, context, question=question), loaded.tokenizer, k=3)
    enc = loaded.tokenizer(question, context, return_tensors="pt")
    with torch.no_grad():
        out = loaded.model(**enc)
    in_context = [sid == 1 for sid in enc.sequence_ids(0)]
    start = torch.softmax(out.start_logits[0].masked_fill(~torch.tensor(in_context), -1e4), -1)
    end = torch.softmax(out.end_logits[0].masked_fill(~torch.tensor(in_context), -1e4), -1)
    candidates = sorted(
        (
            (float(start[i] * end[j]), i, j)
            for i in range(len(in_context))
            for j in range(i, min(i + 15, len(in_context)))
            if in_context[i] and in_context[j]
        ),
        reverse=True,
    )[:3]
    assert [(s.start, s.end) for s in spans] == [(i, j) for _, i, j in candidates]
    np.testing.assert_allclose([s.score for s in spans], [c[0] for c in candidates], atol=1e-5)


@pytest.mark.parametrize("which", ["gpt2", "smollm2"])
def test_greedy_continuation_equals_text_generation_pipeline(which, tiny_dirs, smollm2):
    loaded = smollm2 if which == "smollm2" else load_model(f"path:{tiny_dirs['gpt2']}")
    text = "The capital of France is" if which == "smollm2" else "the cat sat on"
    trace = build_trace(loaded, text)
    ours = P.continuation(loaded, trace, trace.token_limit, new_tokens=8).text
    theirs = _pipe("text-generation", loaded)(text, max_new_tokens=8, do_sample=False, return_full_text=False)
    assert ours == theirs[0]["generated_text"]
    assert (
        P.next_token(trace, loaded.tokenizer, 1)[0].token_id
        == loaded.tokenizer(text + ours)["input_ids"][len(trace.tokens["source"])]
        or which == "gpt2"
    )


def test_surprisal_is_the_probability_of_the_actual_next_token(smollm2):
    trace = build_trace(smollm2, "The capital of France is Paris")
    s = P.surprisal(trace)
    assert s.rank[-1] == 1 and s.probability[-1] > 0.3  # " Paris" is the model's top guess
    logits = model_logits(smollm2, trace)
    p = P.softmax(logits[2])[trace.tokens["source"].ids[3]]
    assert s.probability[2] == pytest.approx(p, rel=1e-5)  # an eager copy: float rounding apart


@pytest.mark.parametrize("name", [n for n in TINY if n != "llama"] + ["smollm2"])
def test_logit_lens_last_layer_is_the_models_own_logits(name, tiny_dirs, smollm2):
    loaded = smollm2 if name == "smollm2" else load_model(f"path:{tiny_dirs[name]}")
    target = "la voiture" if loaded.family == "encoder-decoder" else None
    trace = build_trace(loaded, "the cat sat on the mat", target_text=target)
    lens = logit_lens(trace)
    reference = model_logits(loaded, trace)
    np.testing.assert_allclose(lens.last_logits, reference, atol=1e-4)
    assert lens.top_ids.shape[0] == next(iter(trace.hidden_states.values())).shape[0]
    np.testing.assert_array_equal(lens.top_ids[-1, :, 0], reference.argmax(-1))


def test_model_without_trained_head_says_so(tmp_path):
    """A checkpoint that claims a masked-LM head but lacks its weights: no random predictions."""
    _, config, template = TINY["bert"]
    config = transformers.BertConfig.from_dict({**config.to_dict(), "architectures": ["BertForMaskedLM"]})
    transformers.BertModel(config).save_pretrained(tmp_path)
    from tests.tiny import tokenizer_for

    tokenizer_for(template).save_pretrained(tmp_path)
    config.architectures = ["BertForMaskedLM"]  # saving the base model rewrote it
    config.save_pretrained(tmp_path)
    loaded = load_model(f"path:{tmp_path}")
    assert loaded.untrained_head
    at = run_page("pages/5_Predictions.py", model=f"path:{tmp_path}", text="the cat sat")
    assert problems(at) == []
    assert any("no trained weights" in w.value for w in at.warning)
    assert not at.get("plotly_chart")


@pytest.mark.parametrize("page", ["pages/5_Predictions.py", "pages/6_Hidden_states.py"])
@pytest.mark.parametrize(
    "kind",
    [
        "minilm",
        "smollm2",
        "masked-lm",
        "sequence-classification",
        "token-classification",
        "question-answering",
        "seq2seq-lm",
    ],
)
def test_prediction_pages_render_for_every_head(page, kind, heads, tiny_dirs):
    paths = {**heads, "masked-lm": tiny_dirs["bert"], "seq2seq-lm": tiny_dirs["marian"]}
    model = kind if kind in ("minilm", "smollm2") else f"path:{paths[kind]}"
    at = run_page(page, model=model, text="the cat sat on the <mask> mat", question="where was the cat ?")
    assert problems(at) == []
    assert at.get("plotly_chart") or at.get("dataframe")


def test_continuation_is_bold_not_literal_asterisks():
    """Issue 9: the continuation " Paris." was wrapped as ** Paris.** -- CommonMark ignores ** next to a
    space, so the page showed the asterisks. Rendered here with a CommonMark parser."""
    from markdown_it import MarkdownIt

    at = run_page("pages/5_Predictions.py", model="smollm2", text="The capital of France is")
    assert problems(at) == []
    shown = next(m.value for m in at.markdown if "France is" in m.value)
    html = MarkdownIt("commonmark").render(shown)
    assert "<strong>Paris" in html and "**" not in html


def test_literal_bold_keeps_marks_literal_and_bold_per_line():
    from markdown_it import MarkdownIt

    from ui.messages import literal_bold

    html = MarkdownIt("commonmark").render("x" + literal_bold(" *a* [b](c)\n  two lines "))
    assert "<strong>*a* [b](c)</strong>" in html and "<strong>two lines</strong>" in html
    assert "<a " not in html and "<em>" not in html


def test_logit_lens_hover_breaks_lines_and_escapes_tokens():
    """Issue 9: the hover showed a literal <br> (the whole string was escaped after joining)."""
    at = run_page("pages/6_Hidden_states.py", model="smollm2", text="The capital of France is")
    assert problems(at) == []
    lens = next(s for s in plotly_specs(at) if "top-1 prediction" in s["layout"]["title"]["text"])
    hover = [h for row in lens["data"][0]["customdata"] for h in row]
    assert all("<br>" in h and "&lt;br&gt;" not in h for h in hover)
    assert all("<" not in h.replace("<br>", "") for h in hover)  # token text can't open a tag


def test_continuation_stays_within_max_tokens(tiny_dirs):
    """A long text cut at Max tokens is continued from the cut, and prompt + new tokens never pass the cap
    (the old continuation re-read the whole text and ignored Max tokens: 5,000 tokens took 170 s)."""
    loaded = load_model(f"path:{tiny_dirs['gpt2']}")
    trace = build_trace(loaded, "the cat sat on the mat " * 200, max_tokens=40)
    assert trace.dropped_tokens > 0
    full = P.continuation(loaded, trace, trace.token_limit, new_tokens=100)
    assert (full.asked, full.allowed) == (100, 40 - len(trace.tokens["source"]))
    assert full.prompt == loaded.tokenizer.decode(trace.tokens["source"].ids, skip_special_tokens=True)
    assert len(loaded.tokenizer(full.prompt + full.text)["input_ids"]) <= 40
    at_cap = P.continuation(loaded, build_trace(loaded, "the cat sat on the mat " * 200, max_tokens=48), 48, 5)
    assert at_cap.allowed == 0 and at_cap.text == ""


def test_an_id_past_the_tokenizers_pieces_is_named_by_its_number(tiny_dirs):
    """Models often pad their embedding matrix past the vocabulary (Pythia: 50,304 rows, 50,277 pieces).
    Tiny GPT-2 has 64 rows and 61 pieces; the Predictions page raised when a padding id made the top 10."""
    from viz.tokens import token_seq

    loaded = load_model(f"path:{tiny_dirs['gpt2']}")
    rows, pieces = loaded.model.config.vocab_size, len(loaded.tokenizer)
    assert rows > pieces
    logits = np.zeros(rows)
    logits[rows - 1] = 5.0
    best = P.top_candidates(logits, loaded.tokenizer, k=3)[0]
    assert (best.token_id, best.token) == (rows - 1, f"<id {rows - 1}>")
    seq = token_seq(loaded.tokenizer, [5, rows - 1])
    assert seq.display[1] == f"<id {rows - 1}>" and seq.raw[1] == f"<id {rows - 1}>"
