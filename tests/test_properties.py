"""Property tests on random small CNNs (``tests.support.random_graphs.random_cnns``): the explainer keeps the
logits, its gradient is the float64 reference's derivative, LRP-0 is gradient×input, the conservative rules conserve
on bias-free nets, every method gives finite relevance of the input's shape, and every emitted graph passes the ONNX
checker.

Each example is a fresh ONNX graph (conv stride/dilation/asymmetric pads/groups, BatchNorm, residual Add, Concat,
pooling, Flatten/Reshape, Gemm/MatMul+Add, NCHW and NHWC) built in memory."""
from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from explainer import METHODS, Explainer
from tests.support.emitted import check_emitted_graphs
from tests.support.onnx_graphs import run
from tests.support.random_graphs import RandomCNN, random_cnns, random_input

PROPERTY = settings(max_examples=25, deadline=None, derandomize=True, database=None, print_blob=False,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

BOUND = 4.0


def _explainer(net: RandomCNN, method: str, **kwargs) -> Explainer:
    return Explainer(net.onnx(), method, provider="cpu", **kwargs)


@PROPERTY
@given(net=random_cnns(), seed=st.integers(0, 1000))
def test_reference_forward_matches_onnxruntime(net, seed):
    """The float64 NumPy forward the other properties rely on computes what ONNX Runtime computes."""
    x = random_input(net, 2, seed)
    ref = net.forward64(x)
    ort = run(net.onnx(), x)
    np.testing.assert_allclose(ort, ref, rtol=1e-4, atol=1e-5 * np.abs(ref).max())


@PROPERTY
@given(net=random_cnns(), seed=st.integers(0, 1000))
def test_logits_preserved(net, seed):
    """(a) Canonicalisation and rewriting keep the logits: Explainer.forward equals ORT on the original model."""
    model = net.onnx()
    ex = Explainer(model, "gradient", provider="cpu")
    check_emitted_graphs(ex)
    assert ex.layout == net.layout
    assert ex.input_shape == net.input_shape
    assert ex.num_classes == net.num_classes
    x = random_input(net, 3, seed)
    ours, theirs = ex.forward(x), run(model, x)
    assert ours.shape == (3, net.num_classes)
    np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-5 * max(1.0, np.abs(theirs).max()))
    e = ex.explain(x)
    np.testing.assert_allclose(e.logits, theirs, rtol=1e-4, atol=1e-5 * max(1.0, np.abs(theirs).max()))
    np.testing.assert_array_equal(e.target, np.argmax(e.logits, axis=1))


@PROPERTY
@given(net=random_cnns(), seed=st.integers(0, 1000), data=st.data())
def test_gradient_matches_float64_finite_differences(net, seed, data):
    """(b) The 'gradient' method is ∂f_c/∂x: its directional derivatives along two random directions equal central
    finite differences (h = 1e-5) of the independent float64 forward."""
    x = random_input(net, 1, seed)
    target = data.draw(st.integers(0, net.num_classes - 1), label="target")
    grad = _explainer(net, "gradient").explain(x, target).relevance.astype(np.float64)
    assert grad.shape == x.shape
    x64, h = x.astype(np.float64), 1e-5
    rng = np.random.default_rng(seed + 1)
    for _ in range(2):
        v = rng.standard_normal(x.shape)
        fd = (net.forward64(x64 + h * v)[0, target] - net.forward64(x64 - h * v)[0, target]) / (2 * h)
        analytic = float((grad * v).sum())
        scale = float(np.abs(grad * v).sum())
        assert abs(analytic - fd) <= 1e-3 * abs(fd) + 1e-4 * scale + 1e-7, (analytic, fd, scale)


@PROPERTY
@given(net=random_cnns(), seed=st.integers(0, 1000), data=st.data())
def test_lrp0_equals_gradient_times_input(net, seed, data):
    """(c) On ReLU nets (BatchNorm only directly after a conv, where it is folded) LRP-0 is gradient×input, also
    through residual sums and average pools: LRP-0 has no stabiliser, so a pre-ReLU residual sum close to 0 (it
    happens: x + conv(x) with opposite signs) must not bend the result."""
    x = random_input(net, 2, seed)
    target = data.draw(st.integers(0, net.num_classes - 1), label="target")
    lrp = _explainer(net, "lrp-0")
    lrp0 = lrp.explain(x, target).relevance
    gxi = lrp.with_method("gradient-x-input").explain(x, target).relevance
    np.testing.assert_allclose(lrp0, gxi, rtol=1e-3, atol=1e-4 * np.abs(gxi).max())


def _assert_conserves(net: RandomCNN, methods: tuple[str, ...], seed: int, target: int) -> None:
    x = random_input(net, 2, seed, bound=BOUND - 0.5)
    ex = _explainer(net, methods[0], low=-BOUND, high=BOUND)
    for method in methods:
        e = (ex if method == ex.method else ex.with_method(method)).explain(x, target)
        logit = e.logits[:, target].astype(np.float64)
        rel = e.relevance.reshape(len(x), -1).astype(np.float64)
        total = rel.sum(1)
        atol = 1e-4 * np.abs(e.logits).max() + 1e-5 * np.abs(rel).sum(1)
        assert np.all(np.abs(total - logit) <= 1e-3 * np.abs(logit) + atol), (method, total, logit)


@PROPERTY
@given(net=random_cnns(bias=False, batchnorm=False), seed=st.integers(0, 1000), data=st.data())
def test_conservation_on_bias_free_nets(net, seed, data):
    """(d) Σ relevance = target logit on bias-free nets (residual sums and raw Concat branches included) under
    LRP-0 and epsilon-gamma-box (zB on the first conv with x inside [-4, 4], γ, ε, Norm for sums/average pools)."""
    target = data.draw(st.integers(0, net.num_classes - 1), label="target")
    _assert_conserves(net, ("lrp-0", "epsilon-gamma-box"), seed, target)


@PROPERTY
@given(net=random_cnns(bias=False, batchnorm=False, relu_after_conv=True), seed=st.integers(0, 1000),
       data=st.data())
def test_zplus_conservation_on_bias_free_relu_nets(net, seed, data):
    """(d) The same for epsilon-plus and epsilon-plus-flat. z⁺ passes on a neuron's relevance only through its
    positive contributions, so it conserves where every conv output is read through a ReLU (a neuron without
    positive contributions then has output ≤ 0 and receives no relevance); with a residual sum *before* the ReLU,
    Norm can give relevance to such a neuron and z⁺ drops it — that is the rule, not a bug."""
    target = data.draw(st.integers(0, net.num_classes - 1), label="target")
    _assert_conserves(net, ("epsilon-plus", "epsilon-plus-flat"), seed, target)


@settings(PROPERTY, max_examples=10)
@given(net=random_cnns(), seed=st.integers(0, 1000), data=st.data())
def test_every_method_gives_finite_relevance_of_input_shape(net, seed, data):
    """(e) Every method in explainer.METHODS (12 of them, so 10 graphs each) explains any generated net with
    finite float32 relevance shaped like x, from forward and relevance graphs that pass the ONNX checker."""
    x = random_input(net, 2, seed, bound=BOUND - 0.5)
    target = np.array(data.draw(st.lists(st.integers(0, net.num_classes - 1), min_size=2, max_size=2),
                                label="targets"))
    base = _explainer(net, "gradient", low=-BOUND, high=BOUND)
    for method in METHODS:
        ex = base if method == base.method else base.with_method(method)
        assert ex.method == method
        check_emitted_graphs(ex)
        e = ex.explain(x, target)
        assert e.relevance.shape == x.shape, method
        assert e.relevance.dtype == np.float32, method
        assert np.all(np.isfinite(e.relevance)), method
        assert e.logits.shape == (2, net.num_classes), method
        np.testing.assert_array_equal(e.target, target)
