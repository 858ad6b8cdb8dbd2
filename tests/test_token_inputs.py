"""Token-id inputs and models with several inputs (issue 12).

- A text classifier's int64 ``input_ids`` are explained at their embedding (relevance [N, T, D], per token [N, T]);
  its companions (``attention_mask``, ``token_type_ids``) are fixed inputs: fed as given, never receiving relevance,
  their share kept and reported; a mask with padding is honoured sample by sample (the mask's arithmetic is taken
  from the model unfolded, so no sample gets another's mask).
- ``transformers``' BERT (seeded, both PyTorch exporters): gradient equals PyTorch autograd with respect to the word
  embeddings in float64; AttnLRP and CP-LRP equal LXT's (cosine ≥ 0.99 per sample); CP-LRP conserves the logit on a
  bias-free BERT as LXT's does.
- A two-input float model: relevance for the named input, the other fixed.
- Bad combinations are one-line InputErrors.
"""
from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from explainer import Explainer, InputError
from tests.support.text_models import (
    CLASSES,
    INPUT_NAMES,
    SEQ,
    VOCAB,
    BagOfEmbeddings,
    bert_gradient,
    bert_logits,
    bert_lxt_relevance,
    export_text_model,
    tiny_bert,
    token_batch,
)


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = a.reshape(len(a), -1), b.reshape(len(b), -1)
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


@pytest.fixture(scope="module")
def bag(tmp_path_factory):
    """The bag-of-embeddings classifier, bias-free, exported by the legacy exporter."""
    model = BagOfEmbeddings(bias=False).eval()
    path = export_text_model(model, tmp_path_factory.mktemp("bag") / "bag.onnx", "legacy", INPUT_NAMES[:2])
    return model, path


def test_token_ids_are_explained_at_their_embedding(bag):
    model, path = bag
    ex = Explainer(path, "gradient", cache=False)
    assert (ex.input_name, ex.input_shape, ex.layout, ex.vocabulary) == ("input_ids", (SEQ,), "tokens", VOCAB)
    assert ex.relevance_shape == (SEQ, 16)
    assert ex.fixed_inputs == {"attention_mask": ((SEQ,), np.dtype(np.int64))}
    assert any("token ids 'input_ids'" in c for c in ex.changes)
    assert "FixedScale" in {n.op for n in ex.graph.nodes}  # the mask multiplying the embeddings
    batch = {k: token_batch(3)[k] for k in INPUT_NAMES[:2]}
    target = np.array([0, 1, 2])
    e = ex.explain(batch, target=target)
    ids, mask = (torch.from_numpy(batch[k]) for k in INPUT_NAMES[:2])
    m64 = model.double()
    emb = m64.embed(ids).detach().requires_grad_(True)
    pooled = (emb * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
    logits = m64.fc2(torch.relu(m64.fc1(pooled)))
    logits.gather(1, torch.from_numpy(target)[:, None]).sum().backward()
    np.testing.assert_allclose(e.relevance, emb.grad.numpy(), rtol=1e-4, atol=1e-6 * float(emb.grad.abs().max()))
    np.testing.assert_allclose(ex.forward(batch), logits.detach().numpy(), rtol=1e-4, atol=1e-5)
    assert e.relevance_map().shape == (3, SEQ)
    assert np.all(e.relevance_map()[batch["attention_mask"] == 0] == 0)  # padding has no say


def test_lrp_on_token_ids_conserves_without_biases(bag):
    _, path = bag
    batch = {k: token_batch(3)[k] for k in INPUT_NAMES[:2]}
    e = Explainer(path, "lrp-0", cache=False).explain(batch)
    chosen = e.logits[np.arange(3), e.target]
    # masked mean: the mask multiplies the embeddings (a fixed factor) and its count divides them (a constant scale)
    np.testing.assert_allclose(e.relevance.reshape(3, -1).sum(1) + sum(e.absorbed.values(), 0), chosen, rtol=1e-4)
    np.testing.assert_allclose(e.conservation, 1.0, rtol=1e-4)


def test_token_errors_are_one_line_input_errors(bag):
    _, path = bag
    ex = Explainer(path, "gradient", cache=False)
    ids = token_batch(2)["input_ids"]
    cases = [
        (ids.astype(np.float32), "token ids must be integers"),
        (np.full((2, SEQ), VOCAB), f"token id {VOCAB} is outside the vocabulary of input 'input_ids' "
                                   f"\\(0..{VOCAB - 1}\\)"),
        (ids[:, :5], r"token ids of shape \[2, 5\] do not match input 'input_ids' of shape \[N, 12\]"),
        ({"input_ids": ids, "mask": ids}, "no input 'mask'; its inputs are 'input_ids', 'attention_mask'"),
        ({"attention_mask": ids}, "lack 'input_ids'"),
        ({"input_ids": ids, "attention_mask": np.ones((3, SEQ))}, r"fixed input 'attention_mask' of shape \[3, 12\]"),
        ({"input_ids": ids, "attention_mask": np.full((2, SEQ), 0.5)}, "takes integers"),
    ]
    for x, message in cases:
        with pytest.raises(InputError, match=message) as info:
            ex.explain(x)
        assert "\n" not in str(info.value)
    with pytest.raises(InputError, match="input 'attention_mask' holds integers .* feeds no embedding lookup"):
        Explainer(path, "gradient", input="attention_mask", cache=False)
    with pytest.raises(InputError, match="the model has no input 'ids'; its inputs are 'input_ids', 'attention_mask'"):
        Explainer(path, "gradient", input="ids", cache=False)


def test_missing_companions_take_tokenizer_defaults(bag):
    _, path = bag
    ex = Explainer(path, "gradient", cache=False)
    ids = token_batch(2)["input_ids"]
    np.testing.assert_allclose(ex.forward(ids), ex.forward({"input_ids": ids, "attention_mask": np.ones_like(ids)}),
                               rtol=1e-6)


class _TwoImages(nn.Module):
    """Conv features of ``a`` gated by a sigmoid of ``b``'s, plus ``b``'s projection: a siamese-style pair."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.fa, self.fb = nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(3, 4, 3, padding=1)
        self.head = nn.Linear(4 * 8 * 8, 5)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return self.head((torch.relu(self.fa(a)) + self.fb(b)).flatten(1))


def test_two_inputs_one_explained_one_fixed(tmp_path):
    model = _TwoImages().eval()
    a, b = (torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(s)) for s in (1, 2))
    path = tmp_path / "two.onnx"
    torch.onnx.export(model, (a, b), str(path), input_names=["a", "b"], output_names=["logits"], dynamo=False,
                      opset_version=17, dynamic_axes={"a": {0: "N"}, "b": {0: "N"}, "logits": {0: "N"}})
    with pytest.raises(InputError, match="2 inputs \\('a', 'b'\\); name the one that receives relevance"):
        Explainer(path, "gradient", cache=False)
    ex = Explainer(path, "gradient", input="b", cache=False)
    assert (ex.input_name, ex.input_shape, ex.layout) == ("b", (3, 8, 8), "NCHW")
    assert list(ex.fixed_inputs) == ["a"]
    with pytest.raises(InputError, match="fixed input 'a' .* is not given"):
        ex.explain(b.numpy())
    e = ex.explain({"a": a.numpy(), "b": b.numpy()}, target=3)
    bt = b.double().requires_grad_(True)
    model.double()(a.double(), bt)[:, 3].sum().backward()
    np.testing.assert_allclose(e.relevance, bt.grad.numpy(), rtol=1e-4, atol=1e-6)
    lrp = Explainer(path, "lrp-epsilon", input="a", cache=False).explain({"a": a.numpy(), "b": b.numpy()})
    assert lrp.relevance.shape == (2, 3, 8, 8) and list(lrp.absorbed) == ["fixed input 'b'"]


# ------------------------------------------------------------------------------------------------------------ BERT
@pytest.fixture(scope="module", params=["legacy", "dynamo"])
def bert(request, tmp_path_factory):
    """A seeded BERT and a bias-free one, exported by one exporter each."""
    folder = tmp_path_factory.mktemp(f"bert_{request.param}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        models = {free: tiny_bert(0, bias_free=free) for free in (False, True)}
        paths = {free: export_text_model(m, folder / f"bert_{free}.onnx", request.param, INPUT_NAMES)
                 for free, m in models.items()}
    return models, paths


@pytest.mark.slow
def test_bert_gradient_matches_autograd_with_padding(bert):
    models, paths = bert
    batch = token_batch(3)
    ex = Explainer(paths[False], "gradient", cache=False)
    assert ex.input_name == "input_ids" and set(ex.fixed_inputs) == {"attention_mask", "token_type_ids"}
    reference = bert_logits(models[False], batch)
    np.testing.assert_allclose(ex.forward(batch), reference, rtol=1e-4, atol=1e-4)
    target = reference.argmax(1)
    expected = bert_gradient(models[False], batch, target)
    got = ex.explain(batch, target=target).relevance
    assert float(np.abs(got - expected).max()) <= 1e-4 * float(np.abs(expected).max())


@pytest.mark.slow
@pytest.mark.parametrize("method", ["attn-lrp", "cp-lrp"])
def test_bert_matches_lxt(bert, method):
    models, paths = bert
    batch = token_batch(3)
    ex = Explainer(paths[False], method, cache=False)
    target = np.array([0, 1, 2]) % CLASSES
    e = ex.explain(batch, target=target)
    expected = bert_lxt_relevance(models[False], batch, target, cp=method == "cp-lrp")
    assert np.all(_cosines(e.relevance, expected) >= 0.99), _cosines(e.relevance, expected)
    assert "fixed input 'token_type_ids'" in e.absorbed  # the token-type embedding keeps its share, reported


@pytest.mark.slow
def test_bias_free_bert_conserves_under_cp_lrp(bert):
    models, paths = bert
    batch = token_batch(3)
    e = Explainer(paths[True], "cp-lrp", cache=False).explain(batch)
    np.testing.assert_allclose(e.conservation, 1.0, rtol=1e-3)
    expected = bert_lxt_relevance(models[True], batch, e.target, cp=True)
    chosen = bert_logits(models[True], batch)[np.arange(3), e.target]
    np.testing.assert_allclose(expected.reshape(3, -1).sum(1), chosen, rtol=1e-3)


class _ImageAndTable(nn.Module):
    """Image features gated by a sigmoid of tabular features, concatenated with a tabular branch."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv, self.gate, self.table = nn.Conv2d(3, 4, 3, padding=1), nn.Linear(5, 4), nn.Linear(5, 4)
        self.head = nn.Linear(8, 3)

    def forward(self, image: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
        features = torch.relu(self.conv(image)).mean((2, 3)) * torch.sigmoid(self.gate(table))
        return self.head(torch.cat([features, torch.relu(self.table(table))], 1))


@pytest.mark.parametrize("exporter", ["legacy", pytest.param("dynamo", marks=pytest.mark.slow)])
def test_either_input_of_an_image_and_table_model(tmp_path, exporter):
    """Each input in turn receives relevance, the other fixed: the gradient equals autograd for both; the fixed
    input's side is a gate (FixedScale) or a concatenated branch whose share is reported."""
    model = _ImageAndTable().eval()
    image, table = torch.randn(2, 3, 8, 8), torch.randn(2, 5)
    path = str(tmp_path / "pair.onnx")
    if exporter == "legacy":
        torch.onnx.export(model, (image, table), path, input_names=["image", "table"], output_names=["y"],
                          dynamo=False, opset_version=17,
                          dynamic_axes={"image": {0: "N"}, "table": {0: "N"}, "y": {0: "N"}})
    else:
        n = torch.export.Dim("N", min=1)
        torch.onnx.export(model, (image, table), path, input_names=["image", "table"], output_names=["y"],
                          dynamo=True, dynamic_shapes=({0: n}, {0: n}))
    feeds = {"image": image.numpy(), "table": table.numpy()}
    for name, value in (("image", image), ("table", table)):
        ex = Explainer(path, "gradient", input=name, cache=False)
        leaf = value.double().clone().requires_grad_(True)
        double = copy.deepcopy(model).double()
        double(*((leaf, table.double()) if name == "image" else (image.double(), leaf)))[:, 1].sum().backward()
        np.testing.assert_allclose(ex.explain(feeds, target=1).relevance, leaf.grad.numpy(), rtol=1e-4, atol=1e-6)
        assert "FixedScale" in {n.op for n in ex.graph.nodes}
    kept = Explainer(path, "epsilon-plus", input="image", cache=False).explain(feeds).absorbed
    assert list(kept) == ["fixed input 'table'"]


def test_several_inputs_receive_relevance_together(tmp_path):
    """``input=[a, b]``: both inputs' relevance from one run. Gradient: each equals autograd; LRP-0 on a bias-free
    model: the two inputs' relevance sums to the logit; at an additive junction the first input's relevance is what
    it gets when the other is held fixed (its share of the sum is the same either way)."""
    model = _TwoImages().eval()
    with torch.no_grad():
        for layer in (model.fa, model.fb, model.head):
            layer.bias.zero_()
    a, b = (torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(s)) for s in (1, 2))
    path = tmp_path / "two.onnx"
    torch.onnx.export(model, (a, b), str(path), input_names=["a", "b"], output_names=["logits"], dynamo=False,
                      opset_version=17, dynamic_axes={"a": {0: "N"}, "b": {0: "N"}, "logits": {0: "N"}})
    feeds = {"a": a.numpy(), "b": b.numpy()}
    ex = Explainer(path, "gradient", input=["a", "b"], cache=False)
    assert ex.explained_inputs == ["a", "b"] and ex.fixed_inputs == {}
    with pytest.raises(InputError, match=r"input 'b' \[N, 3, 8, 8\] float32 is not given"):
        ex.explain(a.numpy())
    e = ex.explain(feeds, target=3)
    leaves = [t.double().clone().requires_grad_(True) for t in (a, b)]
    copy.deepcopy(model).double()(*leaves)[:, 3].sum().backward()
    for name, leaf in zip("ab", leaves):
        np.testing.assert_allclose(e.relevance_of[name], leaf.grad.numpy(), rtol=1e-4, atol=1e-6)
    assert e.relevance is e.relevance_of["a"]
    lrp = Explainer(path, "lrp-0", input=["a", "b"], cache=False).explain(feeds)
    totals = sum(r.reshape(2, -1).sum(axis=1) for r in lrp.relevance_of.values())
    np.testing.assert_allclose(totals, lrp.logits[np.arange(2), lrp.target], rtol=1e-4)
    np.testing.assert_allclose(lrp.conservation, 1.0, rtol=1e-4)
    alone = Explainer(path, "lrp-0", input="a", cache=False).explain(feeds)
    np.testing.assert_allclose(alone.relevance, lrp.relevance_of["a"], rtol=1e-4, atol=1e-6)
    with pytest.raises(InputError, match="input must be the name of one of the model's inputs"):
        Explainer(path, "gradient", input=["a", "a"], cache=False)
