"""Attention views: every number comes from the Trace, and matches independent references."""

import re
from html import unescape

import numpy as np
import pytest
import torch

from tests.apptest import decode, plotly_specs, problems, run_page
from tests.tiny import TINY, all_attention, build_tiny, eager_attentions
from ui.page import pages as all_pages
from viz.bertviz_views import head_view_html, model_view_html, too_large
from viz.heads import head_stats
from viz.models import load_model
from viz.neuron import neuron_view
from viz.share import copy_link_html
from viz.tokens import TokenOptions, TokenSeq, crop_view, matrix_view, pool_view
from viz.trace import build_trace


# ------------------------------------------------------------------ neuron view
@pytest.mark.parametrize("name", list(TINY))
def test_neuron_view_reproduces_the_model_on_every_architecture(tiny_dirs, name):
    loaded = load_model(f"path:{tiny_dirs[name]}")
    target = "la voiture rouge" if loaded.family == "encoder-decoder" else None
    trace = build_trace(loaded, "the cat sat on the mat", target_text=target)
    reference = eager_attentions(loaded, trace)
    for name, stack in trace.stacks.items():
        for layer in range(stack.n_layers):
            for head in range(stack.n_heads):
                for query in range(stack.n_queries):
                    v = neuron_view(stack, layer, head, query)
                    np.testing.assert_allclose(v.weights, reference[name][layer, head, query], atol=1e-5)
                    np.testing.assert_allclose(v.output, stack.context(layer, head)[query], atol=1e-5)
                    assert v.max_output_error < 1e-5
                    np.testing.assert_allclose(v.products.sum(axis=1), v.dots)


def _bertviz_reference(name: str, hf_model) -> list[dict]:
    """bertviz's own neuron-view models, loaded with the same weights (its vendored pytorch-transformers)."""
    from bertviz.transformers_neuron_view import modeling_bert, modeling_gpt2

    c = hf_model.config
    if name == "bert":
        config = modeling_bert.BertConfig(
            c.vocab_size,
            hidden_size=c.hidden_size,
            num_hidden_layers=c.num_hidden_layers,
            num_attention_heads=c.num_attention_heads,
            intermediate_size=c.intermediate_size,
            max_position_embeddings=c.max_position_embeddings,
            type_vocab_size=c.type_vocab_size,
        )
        config.output_attentions = True
        reference = modeling_bert.BertModel(config)
        state = hf_model.bert.state_dict()
    else:
        config = modeling_gpt2.GPT2Config(
            c.vocab_size,
            n_positions=c.n_positions,
            n_ctx=c.n_positions,
            n_embd=c.n_embd,
            n_layer=c.n_layer,
            n_head=c.n_head,
        )
        config.output_attentions = True
        reference = modeling_gpt2.GPT2Model(config)
        state = hf_model.transformer.state_dict()
    missing, _ = reference.load_state_dict(state, strict=False)
    assert not [k for k in missing if not k.endswith("attn.bias") and "pooler" not in k]  # unused by attention
    return reference.eval()


@pytest.mark.parametrize("name", ["bert", "gpt2"])
def test_neuron_view_matches_bertviz_neuron_view(tiny_dirs, name):
    loaded = load_model(f"path:{tiny_dirs[name]}")
    trace = build_trace(loaded, "time flies like an arrow")
    stack = next(iter(trace.stacks.values()))
    reference = _bertviz_reference(name, loaded.model)
    with torch.no_grad():
        attn_data = reference(torch.tensor([trace.tokens["source"].ids.tolist()]))[-1]
    for layer, data in enumerate(attn_data):
        queries, keys = data["queries"][0].numpy(), data["keys"][0].numpy()
        for head in range(stack.n_heads):
            np.testing.assert_allclose(stack.query(layer, head), queries[head], atol=1e-5)
            np.testing.assert_allclose(stack.key(layer, head), keys[head], atol=1e-5)
            for query in range(len(trace.tokens["source"])):
                v = neuron_view(stack, layer, head, query)
                scores = queries[head, query] @ keys[head].T / np.sqrt(keys.shape[-1])
                visible = ~v.masked
                np.testing.assert_allclose(v.scores[visible], scores[visible], atol=1e-5)
                np.testing.assert_allclose(v.weights, data["attn"][0, head, query].numpy(), atol=1e-5)


# ------------------------------------------------------------------ alignment: one pass == generate
@pytest.mark.parametrize("name", ["marian", "t5", "bart"])
def test_single_pass_cross_attention_equals_generate(tiny_dirs, name):
    loaded = load_model(f"path:{tiny_dirs[name]}")
    trace = build_trace(loaded, "the cat sat on the mat")
    enc = loaded.tokenizer("the cat sat on the mat", return_tensors="pt")
    eager = type(loaded.model).from_pretrained(tiny_dirs[name], attn_implementation="eager").eval()
    out = eager.generate(
        **enc, max_new_tokens=48, do_sample=False, num_beams=1, output_attentions=True, return_dict_in_generate=True
    )
    assert out.sequences[0, 1:].tolist() == trace.tokens["target"].ids.tolist()
    for step, per_layer in enumerate(out.cross_attentions):  # step i produces target token i
        for layer, attention in enumerate(per_layer):
            np.testing.assert_allclose(
                trace.stacks["cross"].attention(layer, rows=slice(step, step + 1))[:, 0],
                attention[0, :, -1].numpy(),
                atol=1e-5,
            )


def test_decoder_only_alignment_block(tiny_dirs):
    from viz.alignment import alignment

    loaded = load_model(f"path:{tiny_dirs['gpt2']}")
    trace = build_trace(loaded, "the cat sat", continuation=5)
    assert trace.prompt_length == 3 and len(trace.tokens["source"]) == 8
    align = alignment(trace)
    assert align.head(1, 3).shape == (5, 3) and (len(align.outputs), len(align.inputs)) == (5, 3)
    # the step that produced generated token 0 is the row of the last prompt token
    decoder = trace.stacks["decoder"]
    np.testing.assert_array_equal(align.head(1, 3)[0], decoder.attention(1, 3)[2, :3])
    np.testing.assert_allclose(align.overall_mean(), all_attention(decoder)[:, :, 2:7, :3].mean((0, 1)), atol=1e-6)


# ------------------------------------------------------------------ bertviz offline
def test_bertviz_html_fetches_nothing(minilm, tiny_dirs):
    traces = [
        build_trace(minilm, "time flies like an arrow </script><script>alert(1)</script>"),
        build_trace(load_model(f"path:{tiny_dirs['marian']}"), "the cat sat", target_text="la voiture"),
    ]
    for trace in traces:
        for html in (head_view_html(trace, 0), model_view_html(trace)):
            urls = set(re.findall(r"https?://[^\s'\"<>)]+", html))
            # Only XML namespace names inside d3 (identifiers, never fetched) and d3's banner remain.
            assert all(u.startswith(("http://www.w3.org/", "https://d3js.org")) for u in urls), urls
            assert "<script src" not in html and "cdnjs" not in html
            assert "<script>alert(1)" not in html  # a token can't close the script it is embedded in
            assert "Encoder" in html if "cross" in trace.stacks else True


def test_bertviz_refuses_sizes_that_stall_the_browser(minilm):
    trace = build_trace(minilm, "word " * 200)
    assert too_large(trace, "model") is not None and "Model view" in too_large(trace, "model")
    assert too_large(build_trace(minilm, "time flies like an arrow"), "model") is None


# ------------------------------------------------------------------ token options on hand-made matrices
def _seq(tokens, word_ids, special):
    n = len(tokens)
    return TokenSeq(np.arange(n), tuple(tokens), tuple(tokens), np.array(special), tuple(word_ids))


def test_word_merging_sums_attended_pieces_and_averages_attending_pieces():
    seq = _seq(["[CLS]", "play", "ing", "now", "[SEP]"], [None, 0, 0, 1, None], [True, False, False, False, True])
    w = np.array(
        [
            [0.2, 0.2, 0.2, 0.2, 0.2],
            [0.1, 0.3, 0.3, 0.2, 0.1],
            [0.5, 0.1, 0.1, 0.1, 0.2],
            [0.0, 0.5, 0.25, 0.25, 0.0],
            [0.2, 0.2, 0.2, 0.2, 0.2],
        ]
    )
    view = matrix_view(w, seq, seq, np.zeros((5, 5), bool), TokenOptions(merge_words=True))
    assert view.row_labels == ["[CLS]", "playing", "now", "[SEP]"]
    np.testing.assert_allclose(view.weights[1], [0.3, 0.4, 0.15, 0.15])  # mean of rows 1-2, columns 1+2 summed
    np.testing.assert_allclose(view.weights[2], [0.0, 0.75, 0.25, 0.0])
    np.testing.assert_allclose(view.weights.sum(axis=1), 1.0)


def test_hiding_special_tokens_and_renormalising():
    seq = _seq(["[CLS]", "a", "b", "[SEP]"], [None, 0, 1, None], [True, False, False, True])
    w = np.array([[0.4, 0.2, 0.2, 0.2], [0.5, 0.25, 0.25, 0.0], [0.6, 0.1, 0.3, 0.0], [0.25] * 4])
    view = matrix_view(w, seq, seq, np.zeros((4, 4), bool), TokenOptions(hide_special=True))
    assert view.row_labels == ["a", "b"]
    np.testing.assert_allclose(view.weights, [[0.25, 0.25], [0.1, 0.3]])
    view = matrix_view(w, seq, seq, np.zeros((4, 4), bool), TokenOptions(hide_special=True, renormalize=True))
    np.testing.assert_allclose(view.weights, [[0.5, 0.5], [0.25, 0.75]])
    view = matrix_view(w, seq, seq, np.zeros((4, 4), bool), TokenOptions(hide_first=True))
    assert view.col_labels == ["a", "b", "[SEP]"]


# ------------------------------------------------------------------ model-view mosaic
def _max_pool(a: np.ndarray, size: int) -> np.ndarray:
    """Reference: pad with zeros to a multiple of `size`, take each block's maximum."""
    rows, cols = -(-a.shape[-2] // size) * size, -(-a.shape[-1] // size) * size
    padded = np.zeros((*a.shape[:-2], rows, cols))
    padded[..., : a.shape[-2], : a.shape[-1]] = a
    return padded.reshape(*a.shape[:-2], rows // size, size, cols // size, size).max(axis=(-3, -1))


@pytest.mark.parametrize("tokens", [150, 1000])
def test_mosaic_thumbnails_are_max_pooled_eager_attention(tmp_path, tokens, monkeypatch):
    """Streamed a block of rows at a time (blocks smaller than a pixel row here), and still exact."""
    monkeypatch.setattr("viz.trace.BLOCK_CELLS", 6 * 700 * 7)
    loaded = load_model(f"path:{build_tiny('llama', tmp_path, max_position_embeddings=1024)}")
    trace = build_trace(loaded, "the cat sat on the mat " * 200, max_tokens=tokens)
    stack = trace.stacks["decoder"]
    reference = eager_attentions(loaded, trace)["decoder"]
    thumbnails = head_stats(stack, trace.tokens["source"].ids, cell=64).thumbnails
    for layer in range(stack.n_layers):
        thumbs, masked = thumbnails.weights[layer], thumbnails.masked[layer]
        size = -(-tokens // 64)
        np.testing.assert_allclose(thumbs, _max_pool(reference[layer], size), atol=1e-5)
        assert masked.shape == thumbs.shape[1:] and masked[0, -1] and not masked[-1, 0]
    mosaic = thumbnails.mosaic
    assert (mosaic.layers, mosaic.heads) == (2, 6) and mosaic.png.startswith(b"\x89PNG")


def test_overview_is_max_pooled_and_zoom_keeps_full_resolution():
    n = 1300
    seq = _seq([f"t{i}" for i in range(n)], list(range(n)), [False] * n)
    weights = np.zeros((n, n))
    weights[700, 3] = 1.0  # one sharp cell: a mean would wash it out, a max keeps it
    view = matrix_view(weights, seq, seq, np.zeros((n, n), bool), TokenOptions())
    overview = pool_view(view, 512)
    assert overview.pooled == 3 and overview.weights.shape == (434, 434)
    assert overview.weights[700 // 3, 1] == 1.0 and overview.weights.sum() == 1.0
    assert overview.row_positions[233] == 699 and overview.row_labels[233] == "t699…"
    zoomed = pool_view(crop_view(view, (600, 900), (0, 400)), 512)
    assert zoomed.pooled == 1 and zoomed.weights.shape == (301, 401)
    assert zoomed.row_positions[0] == 600 and zoomed.weights[100, 3] == 1.0


# ------------------------------------------------------------------ pages
ENCODERS = {"minilm", "minilm-mlm", "minilm-sentiment", "tiny:bert", "tiny:distilbert", "tiny:roberta"}
ENCODER_DECODERS = {"dates", "word-order", "tiny:t5", "tiny:bart", "tiny:marian"}
OFFLINE_AND_TINY = ["minilm", "minilm-mlm", "minilm-sentiment", "smollm2", "dates", "word-order"] + [
    f"tiny:{name}" for name in TINY
]


@pytest.mark.parametrize("page", [path for path, _, _ in all_pages()])
@pytest.mark.parametrize("model", OFFLINE_AND_TINY)
def test_every_page_renders_for_every_offline_model_and_architecture(page, model, tiny_dirs):
    """Each page on each offline model and each tiny architecture (RoBERTa, T5, BART, ...): no error, and
    a view drawn. This found the Induction probe raising on models with fewer than ten heads, RoBERTa
    overrunning its positions, and next-token candidates crashing on ids past the tokenizer's pieces."""
    key = f"path:{tiny_dirs[model[5:]]}" if model.startswith("tiny:") else model
    text = "the 3rd of march 1999" if model == "dates" else "the cat sat on the mat"
    at = run_page(page, model=key, text=text, target="la voiture rouge" if model == "tiny:marian" else "")
    assert problems(at) == []
    needs_other_model = (page.endswith("Alignment.py") and model in ENCODERS) or (
        page.endswith("Guided_walk.py") and model not in ENCODER_DECODERS
    )
    if needs_other_model:  # says why and offers the offline dates model
        assert at.info and at.button(key="offer_model")
    elif page.endswith("Head_ablation.py"):  # asks which heads to switch off (tested with heads below)
        assert at.info
    elif page.endswith("Corpus.py"):  # no run in the tests' corpus folder yet (tests/test_corpus.py has runs)
        assert any("No corpus run yet" in i.value for i in at.info)
    elif page.endswith("Generation.py") and model in ENCODERS:  # an encoder writes nothing: says so
        assert any("writes text" in i.value for i in at.info)
    elif page.endswith("Patching.py") and model not in ("smollm2", "minilm-mlm", "dates"):  # no offline example:
        assert at.info or at.warning  # says why: no LM head, no difference to measure, or unequal token counts
    else:
        drawn = [frame for frame in at.get("iframe") if frame.proto.srcdoc != copy_link_html()]  # not the link button
        assert at.get("plotly_chart") or drawn or at.dataframe


def test_neuron_page_numbers_are_the_models(minilm):
    at = run_page("pages/3_Neuron_view.py", model="minilm", text="time flies like an arrow", layer=0, head=8, query=2)
    assert problems(at) == []
    trace = build_trace(minilm, "time flies like an arrow")
    bars = [s for s in plotly_specs(at) if s["data"][0]["type"] == "bar"][0]
    reference = eager_attentions(minilm, trace)["encoder"]
    np.testing.assert_allclose(decode(bars["data"][0]["y"]), reference[0, 8, 2], atol=1e-6)


@pytest.mark.parametrize(
    "page, offered, example", [("pages/4_Alignment.py", "dates", 0), ("pages/90_Guided_walk.py", "word-order", 1)]
)
def test_pages_that_need_an_encoder_decoder_offer_one_and_never_take_the_sidebar(page, offered, example):
    """Reproduction (issue 9): type a sentence, visit the page, go back: model and text must be yours."""
    from viz.models import CATALOG_BY_KEY

    at = run_page("attention_maps.py", model="minilm", text="My lecture example.")
    at.switch_page(page).run()
    assert problems(at) == [] and any("encoder" in i.value for i in at.info)
    assert at.selectbox(key="model_choice").value == "minilm"
    assert at.text_area(key="text").value == "My lecture example."
    at.switch_page("attention_maps.py").run()
    assert at.selectbox(key="model_choice").value == "minilm"
    assert at.text_area(key="text").value == "My lecture example."
    assert at.query_params["model"] == "minilm" and at.query_params["text"] == "My lecture example."

    at.switch_page(page).run()
    at.button(key="offer_model").click().run()  # the switch happens when asked for, and only then
    assert problems(at) == []
    assert at.selectbox(key="model_choice").value == offered
    assert at.text_area(key="text").value == CATALOG_BY_KEY[offered].examples[example]
    assert at.get("plotly_chart")


def test_custom_target_forces_the_decoder(tiny_dirs):
    at = run_page(
        "pages/4_Alignment.py",
        model=f"path:{tiny_dirs['marian']}",
        text="the cat sat",
        target="la voiture rouge est rapide",
    )
    assert problems(at) == []
    spec = plotly_specs(at)[0]
    assert spec["layout"]["yaxis"]["ticktext"] == ["la", "voiture", "rouge", "est", "rapide", "&lt;/s&gt;"]


def test_exports_round_trip(minilm):
    import io

    import pandas as pd

    from viz.export import matrix_csv, trace_npz

    trace = build_trace(minilm, "the cat sat on the mat")
    stack = trace.stacks["encoder"]
    labels = list(trace.tokens["source"].display)
    frame = pd.read_csv(io.BytesIO(matrix_csv(stack.attention(2, 3), labels, labels)), index_col=0)
    assert list(frame.index) == [f"{i}:{t}" for i, t in enumerate(labels)]  # repeated "the" stays apart
    np.testing.assert_allclose(frame.to_numpy(), stack.attention(2, 3), rtol=1e-5)
    archive = np.load(io.BytesIO(trace_npz(trace)))
    np.testing.assert_array_equal(archive["encoder/queries"][2, 3], stack.query(2, 3))
    np.testing.assert_array_equal(archive["encoder/contexts"][5, 11], stack.context(5, 11))
    # the archive says how to recompute attention, and following it gives the model's weights back
    q, k = archive["encoder/queries"][2, 3], archive["encoder/keys"][2, 3]
    scores = q @ k.T * archive["encoder/scaling"][2]
    assert archive["encoder/mask_rule"][2].startswith("none")
    recomputed = np.exp(scores - scores.max(-1, keepdims=True))
    np.testing.assert_allclose(recomputed / recomputed.sum(-1, keepdims=True), stack.attention(2, 3), atol=1e-5)
    assert list(archive["tokens/source/raw"]) == list(trace.tokens["source"].raw)


# ------------------------------------------------------------------ head statistics and rollout
def _reference_stats(attentions: np.ndarray, masked: np.ndarray) -> dict:
    """Head statistics straight from full [layers, heads, T, T] attention (the definitions, unstreamed)."""
    a = attentions.astype(np.float64)
    t = a.shape[-1]
    visible = (~masked).sum(-1)
    plogp = np.where(a > 0, a * np.log(np.where(a > 0, a, 1.0)), 0.0)
    entropy = -plogp.sum(-1) / np.log(np.maximum(visible, 2))[:, None, :]
    entropy = np.where((visible > 1)[:, None, :], entropy, np.nan)
    rows = np.arange(t)
    return dict(
        entropy=np.nanmean(entropy, -1),
        distance=(a * np.abs(rows[:, None] - rows[None, :])).sum(-1).mean(-1),
        first_token=a[..., 0].mean(-1),
        self=np.diagonal(a, axis1=-2, axis2=-1).mean(-1),
        previous_token=np.diagonal(a, offset=-1, axis1=-2, axis2=-1).sum(-1) / t,  # TL: over all t rows
    )


@pytest.mark.parametrize("name", ["llama", "bert"])
def test_streamed_head_stats_equal_the_definitions_on_eager_attention(tmp_path, name, monkeypatch):
    from viz.heads import head_scores

    monkeypatch.setattr("viz.trace.BLOCK_CELLS", 6 * 300 * 5)  # many small blocks
    loaded = load_model(f"path:{build_tiny(name, tmp_path, max_position_embeddings=512)}")
    trace = build_trace(loaded, "the cat sat on the mat time flies " * 40, max_tokens=300)
    stack = next(iter(trace.stacks.values()))
    reference = eager_attentions(loaded, trace)[stack.name]
    masked = np.stack([stack.forbidden(layer) for layer in range(stack.n_layers)])
    expected = _reference_stats(reference, masked)
    stats = head_scores(stack, trace.tokens["source"].ids)
    for key, values in expected.items():
        got = getattr(stats, key) if key in ("entropy", "distance") else stats.scores[key.replace("_", " ")]
        np.testing.assert_allclose(got, values, atol=1e-5, err_msg=key)


def _hand_made_stack(t: int = 6):
    """Four heads whose q/k make exact patterns: self, previous token, first token, uniform (causal)."""
    import torch

    from viz.capture import AttentionRecord, MaskRule
    from viz.trace import AttentionStack

    eye = torch.eye(t) * 60.0  # large scores: softmax is one-hot up to e^-60
    previous = torch.roll(eye, 1, dims=0)
    first = torch.zeros(t, t)
    first[:, 0] = 60.0
    query = torch.stack([eye, previous, first, torch.zeros(t, t)])
    record = AttentionRecord(
        None, query, torch.eye(t).expand(4, t, t), torch.zeros(4, t, t), MaskRule(t, t, causal=True), None, 1.0,
        torch.zeros(4, t, t),
    )  # fmt: skip
    return AttentionStack("decoder", "source", "source", (record,))


def test_head_roles_on_hand_made_heads():
    from viz.heads import head_scores

    stats = head_scores(_hand_made_stack(), np.arange(6))
    assert stats.roles()[0].tolist() == ["self 1.00", "previous token 1.00", "first token 1.00", "broad"]
    np.testing.assert_allclose(stats.distance[0, :2], [0.0, 5 / 6], atol=1e-12)
    np.testing.assert_allclose(stats.entropy[0, 3], 1.0)
    np.testing.assert_allclose(stats.entropy[0, 0], 0.0, atol=1e-12)


def test_rollout_follows_the_residual_stream(tiny_dirs, tmp_path):
    from viz.errors import AtlasError
    from viz.heads import rollout

    loaded = load_model(f"path:{tiny_dirs['bert']}")
    trace = build_trace(loaded, "the cat sat on the mat")
    stack = trace.stacks["encoder"]
    a = eager_attentions(loaded, trace)["encoder"]
    t = a.shape[-1]
    first = 0.5 * np.eye(t) + 0.5 * a[0].mean(0)
    np.testing.assert_allclose(rollout(stack, 0), first, atol=1e-6)
    np.testing.assert_allclose(rollout(stack, 1), (0.5 * np.eye(t) + 0.5 * a[1].mean(0)) @ first, atol=1e-6)
    np.testing.assert_allclose(rollout(stack, 1).sum(-1), 1.0)
    long_model = load_model(f"path:{build_tiny('bert', tmp_path, max_position_embeddings=1100)}")
    long = build_trace(long_model, "the cat " * 600, max_tokens=1100)
    with pytest.raises(AtlasError, match="up to 1,024 tokens"):  # T³ per layer: refused with a reason
        rollout(long.stacks["encoder"], 0)


def test_known_heads_of_the_offline_models_get_their_roles(minilm, smollm2):
    """Real phenomena: MiniLM's layer 0 head 2 attends to the previous token; most SmolLM2 heads
    park their attention on the first token (an attention sink)."""
    from viz.heads import head_scores

    text = "The capital of France is Paris. The capital of Germany is Berlin. The capital of Italy is Rome."
    trace = build_trace(minilm, text)
    stats = head_scores(trace.stacks["encoder"], trace.tokens["source"].ids)
    assert stats.roles()[0, 2].startswith("previous token") and stats.scores["previous token"][0, 2] > 0.9
    trace = build_trace(smollm2, text)
    stats = head_scores(trace.stacks["decoder"], trace.tokens["source"].ids)
    assert stats.has_role("first token").mean() > 0.5


def test_encoder_vs_decoder_curves_are_the_models_statistics(minilm):
    from viz.heads import head_scores

    text = "The cat sat on the mat."
    at = run_page("pages/8_Encoder_vs_decoder.py", model="minilm", text=text)
    assert problems(at) == []
    entropy = next(s for s in plotly_specs(at) if s["layout"].get("title", {}).get("text") == "entropy")
    minilm_line = next(trace for trace in entropy["data"] if trace["name"] == "all-MiniLM-L6-v2 (left)")
    trace = build_trace(minilm, text)
    stats = head_scores(trace.stacks["encoder"], trace.tokens["source"].ids)
    np.testing.assert_allclose(decode(minilm_line["y"]), stats.entropy.mean(1))
    heatmaps = [s for s in plotly_specs(at) if s["data"][0]["type"] == "heatmap"]
    assert len(heatmaps) == 2 and np.isnan(decode(heatmaps[1]["data"][0]["z"])[0, 1:]).all()  # decoder: causal


def test_encoder_vs_decoder_with_the_same_model_on_both_sides():
    """Issue 9: the same model left and right raised StreamlitDuplicateElementKey."""
    at = run_page("pages/8_Encoder_vs_decoder.py", model="minilm", text="The cat sat on the mat.")
    at.selectbox(key="compare_right").set_value("minilm").run()
    assert problems(at) == []
    heatmaps = [s for s in plotly_specs(at) if s["data"][0]["type"] == "heatmap"]
    assert len(heatmaps) == 2
    np.testing.assert_array_equal(decode(heatmaps[0]["data"][0]["z"]), decode(heatmaps[1]["data"][0]["z"]))
    entropy = next(s for s in plotly_specs(at) if s["layout"].get("title", {}).get("text") == "entropy")
    assert [line["name"] for line in entropy["data"]] == ["all-MiniLM-L6-v2 (left)", "all-MiniLM-L6-v2 (right)"]


@pytest.mark.parametrize("model", ["smollm2", "minilm"])
def test_head_ablation_page_shows_the_change(model):
    from viz.ablation import hidden_cosine, kl_divergence

    at = run_page("pages/9_Head_ablation.py", model=model, text="The capital of France is")
    assert problems(at) == [] and at.info  # nothing picked yet: it says what to do
    at.multiselect(key="ablate_heads").select(("decoder" if model == "smollm2" else "encoder", 0, 1)).run()
    assert problems(at) == []
    loaded = load_model(model)
    plain = build_trace(loaded, "The capital of France is")
    stack = "decoder" if model == "smollm2" else "encoder"
    ablated = build_trace(loaded, "The capital of France is", ablate=((stack, 0, 1),))
    bars = decode(plotly_specs(at)[0]["data"][0]["y"])
    if model == "smollm2":
        expected = kl_divergence(plain.logits(), ablated.logits())
    else:
        expected = hidden_cosine(plain.hidden_states[stack], ablated.hidden_states[stack])
    np.testing.assert_allclose(bars, expected, atol=1e-6)


def test_guided_walk_uses_the_models_numbers():
    at = run_page("pages/90_Guided_walk.py", model="dates", text="the 3rd of march 1999")
    assert problems(at) == []
    at.select_slider(key="walk_step").set_value(2).run()  # the step that writes the month
    assert problems(at) == []
    loaded = load_model("dates")
    trace = build_trace(loaded, at.text_area(key="text").value)
    cross = eager_attentions(loaded, trace)["cross"]  # [layers, heads, outputs, inputs]
    written = loaded.tokenizer.decode(trace.tokens["target"].ids, skip_special_tokens=True)
    rnn = build_trace(load_model("rnn-dates-attention"), trace.text, target_text=written)  # made to write the same
    rnn_alpha = rnn.stacks["cross"].attention(0, 0)
    specs = [s for s in plotly_specs(at) if s["data"]]  # (the diagram has shapes, no traces)
    bars = {s["layout"]["title"]["text"]: decode(s["data"][0]["y"]) for s in specs if s["data"][0]["type"] == "bar"}
    maps = {s["layout"]["title"]["text"]: decode(s["data"][0]["z"]) for s in specs if s["data"][0]["type"] == "heatmap"}
    np.testing.assert_allclose(next(v for k, v in bars.items() if k.startswith("α_t,i")), rnn_alpha[2], atol=1e-6)
    np.testing.assert_allclose(next(v for k, v in maps.items() if "cross-attention" in k), cross.mean((0, 1)), 1e-5)
    used = next(v for k, v in bars.items() if k.startswith("what the model uses"))
    np.testing.assert_allclose(used, cross[-1, 0, 2], atol=1e-5)
    source = list(trace.tokens["source"].display)
    assert source[int(cross[:, :, 2].mean((0, 1)).argmax())] == "march"  # month written from "march"
    assert source[int(rnn_alpha[2].argmax())] == "march"  # by both mechanisms


# ------------------------------------------------------------------ defaults that serve the lesson (issue 9)
def test_neuron_view_opens_a_decoder_on_its_last_token():
    """A decoder's first token can only attend to itself: a one-hot lesson. Open on the last one."""
    at = run_page("pages/3_Neuron_view.py", model="smollm2", text="The capital of France is")
    assert problems(at) == []
    assert at.select_slider(key="query").value == 4  # 5 tokens: the last one sees them all
    at = run_page("pages/3_Neuron_view.py", model="smollm2", text="The capital of France is", query=1)
    assert at.select_slider(key="query").value == 1  # a URL's choice still wins


def test_guided_walk_opens_on_a_step_where_scaling_matters():
    at = run_page("pages/90_Guided_walk.py", model="dates", text="the 3rd of march 1999")
    assert problems(at) == []
    assert at.select_slider(key="walk_step").value > 0  # step 0: scaled and unscaled were both one-hot
    bars = {
        s["layout"]["title"]["text"]: decode(s["data"][0]["y"])
        for s in plotly_specs(at)
        if s["data"] and s["data"][0]["type"] == "bar"
    }
    scaled = next(v for k, v in bars.items() if k.startswith("what the model uses"))
    assert np.abs(bars["softmax(q·k): without scaling"] - scaled).sum() > 0.3  # scaling visibly changes the weights


def test_head_ablation_offers_no_select_all():
    """One click on multiselect's "Select all" switched off all 270 heads of SmolLM2."""
    at = run_page("pages/9_Head_ablation.py", model="minilm", text="The cat sat on the mat.")
    assert problems(at) == []
    assert at.multiselect(key="ablate_heads").proto.select_all == 0


def test_split_characters_show_their_bytes_and_the_completing_piece_the_character(smollm2):
    """Issue 9: SmolLM2 showed emoji and CJK pieces as "�" (each byte-level piece alone is no character)."""
    tok = smollm2.tokenizer
    seq = build_trace(smollm2, "I love 🤗 and 日本語, café").tokens["source"]
    assert not any("\ufffd" in token for token in seq.display)
    assert list(seq.display) == [
        "I", "love", "⟨F0 9F⟩", "⟨A4⟩", "🤗", "and", "⟨E6⟩", "⟨97⟩", "日", "本", "⟨E8⟩", "⟨AA⟩", "語", ",", "café",
    ]  # fmt: skip
    assert tok.decode(seq.ids.tolist()) == "I love 🤗 and 日本語, café"  # the tokens themselves are untouched


@pytest.mark.parametrize("which", ["gpt2", "llama"])
def test_alignment_generates_for_a_decoder_from_a_directory_or_the_hub(which, tiny_dirs):
    """A decoder outside the catalog (a hub id, a directory) got no 'Tokens to generate' slider, so the
    page said 'the model generated nothing'. The page asks the loaded model, not the catalog."""
    key = f"path:{tiny_dirs[which]}"
    at = run_page("pages/4_Alignment.py", model=key, text="the cat sat on the mat")
    at.slider(key="continuation").set_value(5).run()
    assert problems(at) == [] and not at.warning
    generated = build_trace(load_model(key), "the cat sat on the mat", continuation=5)
    source = generated.tokens["source"]
    outputs = source.slice(generated.prompt_length, len(source))
    assert 0 < len(outputs) <= 5  # a random tiny model may write its end token early
    rows = [unescape(t) for t in plotly_specs(at)[0]["layout"]["yaxis"]["ticktext"]]
    assert rows == list(outputs.display)  # one row per token it wrote
    assert at.query_params["continuation"] == "5"
