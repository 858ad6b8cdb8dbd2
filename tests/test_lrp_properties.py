"""The checks every LRP implementation should pass (shared/docs/lrp.md), on small exported networks:
gradient = autograd and finite differences, LRP-0 = gradient×input on ReLU nets, conservation on bias-free nets,
any batch size, any target class, and a standalone relevance graph that matches the API."""
from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch
import torch.nn as nn

from explainer import METHODS, Explainer, InputError
from tests.support.emitted import check_emitted_graphs


def _export(model: nn.Module, path, shape=(1, 3, 16, 16)) -> str:
    torch.onnx.export(model.eval(), torch.zeros(shape), str(path), input_names=["input"], output_names=["scores"],
                      dynamic_axes={"input": {0: "N"}, "scores": {0: "N"}}, dynamo=False, opset_version=13)
    return str(path)


def _relu_net(bias: bool, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=bias), nn.ReLU(), nn.MaxPool2d(2),
                        nn.Conv2d(8, 8, 3, stride=2, padding=(1, 0), bias=bias), nn.ReLU(),
                        nn.AvgPool2d(2, ceil_mode=True), nn.Flatten(), nn.Linear(8 * 2 * 2, 16, bias=bias), nn.ReLU(),
                        nn.Linear(16, 5, bias=bias))
    with torch.no_grad():
        for p in net.parameters():
            if p.ndim == 1:
                p.uniform_(-0.2, 0.2)
    return net.eval()


@pytest.fixture(scope="module")
def relu_net(tmp_path_factory):
    net = _relu_net(bias=True)
    return net, _export(net, tmp_path_factory.mktemp("relu") / "net.onnx")


@pytest.fixture(scope="module")
def bias_free_net(tmp_path_factory):
    net = _relu_net(bias=False, seed=1)
    return net, _export(net, tmp_path_factory.mktemp("nobias") / "net.onnx")


def _x(n=3, seed=0):
    return np.random.default_rng(seed).standard_normal((n, 3, 16, 16)).astype(np.float32)


def test_gradient_equals_autograd(relu_net):
    net, path = relu_net
    x = _x()
    target = np.array([0, 3, 4])
    e = Explainer(path, "gradient").explain(x, target)
    xt = torch.from_numpy(x).requires_grad_(True)
    net(xt).gather(1, torch.from_numpy(target)[:, None]).sum().backward()
    np.testing.assert_allclose(e.relevance, xt.grad.numpy(), rtol=1e-4, atol=1e-6)


def test_gradient_matches_finite_differences(relu_net):
    _, path = relu_net
    ex = Explainer(path, "gradient")
    x = _x(1, seed=3).astype(np.float64)
    target = 2
    grad = ex.explain(x.astype(np.float32), target).relevance.astype(np.float64)
    rng = np.random.default_rng(7)
    for _ in range(3):
        v = rng.standard_normal(x.shape)
        h = 1e-2
        fp = ex.forward((x + h * v).astype(np.float32))[0, target]
        fm = ex.forward((x - h * v).astype(np.float32))[0, target]
        assert abs((fp - fm) / (2 * h) - float((grad * v).sum())) <= 2e-2 * max(1.0, abs(float((grad * v).sum())))


def test_lrp0_equals_gradient_times_input(relu_net):
    _, path = relu_net
    x = _x()
    lrp0 = Explainer(path, "lrp-0").explain(x)
    gxi = Explainer(path, "gradient-x-input").explain(x, lrp0.target)
    scale = np.abs(gxi.relevance).max()
    np.testing.assert_allclose(lrp0.relevance, gxi.relevance, atol=1e-4 * scale)


@pytest.mark.parametrize("method", ["lrp-0", "epsilon-plus", "epsilon-plus-flat", "epsilon-gamma-box", "sr-paper"])
def test_conservation_on_bias_free_net(bias_free_net, method):
    """Σ R_input = f_c(x) under the conservative rules (LRP-0, small ε, z+, flat, γ, zB); α2β1 is left out on
    purpose: it is only conservative where every neuron has both positive and negative contributions."""
    _, path = bias_free_net
    x = _x(4, seed=5)
    e = Explainer(path, method, low=-3.0, high=3.0).explain(x)
    logit = e.logits[np.arange(len(x)), e.target]
    total = e.relevance.reshape(len(x), -1).sum(1)
    np.testing.assert_allclose(total, logit, rtol=1e-3, atol=1e-4 * np.abs(logit).max())


def test_epsilon_absorbs_relevance(bias_free_net):
    """A large ε must lose relevance (|ΣR| < |f|): the check above would pass for any conserving rule."""
    _, path = bias_free_net
    x = _x(2, seed=5)
    e = Explainer(path, "lrp-epsilon", epsilon=10.0).explain(x)
    logit = np.abs(e.logits[np.arange(2), e.target])
    assert np.all(np.abs(e.relevance.reshape(2, -1).sum(1)) < 0.9 * logit)


@pytest.mark.parametrize("method", list(METHODS))
def test_every_method_finite_and_batch_independent(relu_net, method):
    _, path = relu_net
    ex = Explainer(path, method, low=-3.0, high=3.0)
    check_emitted_graphs(ex)
    x = _x(5, seed=9)
    together = ex.explain(x)
    one_by_one = np.concatenate([ex.explain(x[i:i + 1]).relevance for i in range(5)])
    chunked = ex.explain(x, batch_size=2)
    assert np.all(np.isfinite(together.relevance))
    assert together.relevance.shape == x.shape
    np.testing.assert_allclose(one_by_one, together.relevance, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(chunked.relevance, together.relevance, rtol=1e-4, atol=1e-6)


def test_any_class_from_one_graph(relu_net):
    net, path = relu_net
    ex = Explainer(path, "epsilon-plus")
    x = _x(2)
    maps = [ex.explain(x, k).relevance for k in range(5)]
    assert all(not np.allclose(maps[0], m) for m in maps[1:])
    default = ex.explain(x)
    with torch.no_grad():
        np.testing.assert_array_equal(default.target, net(torch.from_numpy(x)).argmax(1).numpy())


def test_saved_graph_runs_in_plain_onnxruntime(relu_net, tmp_path):
    _, path = relu_net
    ex = Explainer(path, "epsilon-gamma-box", low=-3.0, high=3.0)
    out = ex.save(tmp_path / "rel.onnx")
    sess = ort.InferenceSession(out, providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == ["input", "target"]
    assert [o.name for o in sess.get_outputs()] == ["logits", "relevance", "explained_target"]
    x = _x(3)
    target = np.array([1, 2, 3], np.int64)
    logits, rel, _ = sess.run(None, {"input": x, "target": target})
    api = ex.explain(x, target)
    np.testing.assert_allclose(rel, api.relevance, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(logits, api.logits, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("bad, message", [(7, "out of range"), (-1, "out of range"), ([0, 1], "2 entries"),
                                          (1.5, "integer")])
def test_bad_targets_are_named(relu_net, bad, message):
    _, path = relu_net
    with pytest.raises(InputError, match=message):
        Explainer(path, "gradient").explain(_x(3), bad)


def test_bad_inputs_are_named(relu_net):
    _, path = relu_net
    ex = Explainer(path, "gradient")
    with pytest.raises(InputError, match="does not match"):
        ex.explain(np.zeros((1, 3, 8, 8), np.float32))
    with pytest.raises(InputError, match="empty"):
        ex.explain(np.zeros((0, 3, 16, 16), np.float32))
    x = _x(1)
    x[0, 0, 0, 0] = np.nan
    with pytest.raises(InputError, match="NaN"):
        ex.explain(x)
