"""The linear rules' graphs at their FLOP floor (``relevance/linear_rule.py``: derived sums, shared denominators,
sign-known stabilisers, scaled transposed products) give the relevance of the rules' literal formula.

The reference is the formula written out in this test, one forward product per term, one stabiliser and one gate per
group and one transposed product per term; it replaces the product's emitter only while a reference graph is built.
The count of convolutions per layer pins each rule to its floor, and the transposed product of a strided convolution
split into phases (``ops/conv.py``) is checked against torch's gradient.
"""
from __future__ import annotations

import collections

import numpy as np
import pytest
from onnx import numpy_helper

from explainer import METHODS, Explainer
from explainer.images.preprocess import input_bounds, preprocessing
from explainer.lrp.composites import LINEAR_KINDS, make_composite
from explainer.lrp.rules import Epsilon, Gamma, LinearRule, TermInput, ZPlus
from explainer.relevance.analysis import layer_info
from explainer.relevance.context import EmitContext
from tests.support.onnx_graphs import G
from tests.test_ops_registry import HIGH, LOW, every_op_model

IMAGENET_LOW, IMAGENET_HIGH = input_bounds(preprocessing("imagenet"), 3)
#: composites beyond the named methods: γ and αβ on signed inputs and on token-wise dense layers, a zero coefficient
#: (α1β0), bias-free rules (no derived sum), w²
SPECS = {
    "gamma-everywhere": {"conv": "gamma", "dense": "gamma"},
    "alpha1-beta0": {"conv": {"rule": "alpha-beta", "alpha": 1.0, "beta": 0.0}, "dense": "alpha2-beta1"},
    "bias-free": {"conv": Gamma(0.5, bias=False), "dense": ZPlus(bias=False)},
    "w-square": {"conv": "w-square", "dense": Epsilon(0.1, bias=False)},
}


def _literal_rule(ctx: EmitContext, op, node, rule: LinearRule, r: str) -> str:
    """R_in = Σ_g coef_g Σ_t sign_t a'_t ⊙ W'_tᵀ(gate_g ⊙ R / stab(Σ_t sign_t z'_t)), term by term."""
    b, x = ctx.b, node.inputs[0]
    inputs = {TermInput.X: lambda: x, TermInput.POS: lambda: b.relu(x), TermInput.NEG: lambda: b.neg_part(x),
              TermInput.ONES: lambda: b.const(np.ones((1, *ctx.shape(x)[1:]), np.float32)),
              TermInput.LOW: lambda: b.const(ctx.bounds[x][0]), TermInput.HIGH: lambda: b.const(ctx.bounds[x][1])}
    total = []
    for gi, group in enumerate(rule.groups):
        terms = []
        for ti, term in enumerate(group.terms):
            key = f"literal{gi}_{ti}"
            w = term.weight(node.params["W"])
            bias = None if term.bias is None else ctx.weight(node, key + "B", term.bias(node.params["B"]))
            terms.append((term, inputs[term.input](), key, w, bias))
        g = r
        if rule.normalise:
            zs = [op.apply(ctx, node, a, ctx.weight(node, key, w), bias) for _, a, key, w, bias in terms]
            z = b.sum([z if t.sign > 0 else b.op("Neg", [z]) for (t, *_), z in zip(terms, zs)])
            g = b.div(r, b.stabilise(z, rule.stabiliser))
        if group.gate is not None:
            cmp = "Greater" if group.gate == "pos" else "Less"
            g = b.mul(g, b.cast_float(b.op(cmp, [node.output, b.const(0.0)])))
        parts = []
        for term, a, key, w, _ in terms:
            back = op.transpose(ctx, node, g, key, w)
            part = b.mul(a, back) if rule.multiply_input else back
            parts.append(b.mul(part, b.const(term.sign * group.coefficient)))
        total.append(b.sum(parts))
    return b.sum(total)


def _strided_model():
    """Signed activations into a 3×3 stride-2 conv (ConvTranspose), a depthwise conv, a 1×1 conv padded beyond its
    reach (ConvTranspose at stride 1), a dilated conv, a grouped 4×4 stride-2 conv (phase split), a token-wise dense
    layer ([N, T, C]) and a dense layer."""
    g = G(seed=7)
    s = g.conv("x", 3, 8, strides=[2, 2], pads=[1, 1, 1, 1])
    d = g.node("Relu", [g.conv(s, 8, 8, group=8, pads=[1, 1, 1, 1])])
    p = g.conv(d, 8, 6, k=1, pads=[1, 1, 1, 1])
    c = g.node("Relu", [g.conv(p, 6, 6, dilations=[2, 2], pads=[2, 2, 2, 2])])
    q = g.node("Relu", [g.conv(c, 6, 4, k=4, group=2, strides=[2, 2], pads=[1, 0, 2, 1])])
    tokens = g.node("Transpose", [g.node("Reshape", [q, g.w((3,), value=[0, 4, -1], dtype=np.int64)])], perm=[0, 2, 1])
    mixed = g.node("Add", [g.node("MatMul", [tokens, g.w((4, 6))]), g.w((6,), 0.1)])
    out = g.node("Gemm", [g.node("Flatten", [mixed]), g.w((20 * 6, 4)), g.w((4,), 0.1)])
    return g.model(["N", 3, 16, 16], out, opset=17)


def _chain_model(shared: bool = False):
    """conv → ReLU → conv → ReLU → conv → ReLU → Gemm on a signed input; ``shared``: the second ReLU's output is also
    read by the Gemm (a second reader, so its relevance is a sum)."""
    g = G(seed=5)
    a = g.node("Relu", [g.conv("x", 3, 6, pads=[1, 1, 1, 1])])
    b = g.node("Relu", [g.conv(a, 6, 6, pads=[1, 1, 1, 1])])
    c = g.node("Relu", [g.conv(b, 6, 4, pads=[1, 1, 1, 1])])
    flat = g.node("Flatten", [c])
    if shared:
        flat = g.node("Concat", [flat, g.node("Flatten", [b])], axis=1)
    out = g.node("Gemm", [flat, g.w((4 * 64 + (6 * 64 if shared else 0), 3)), g.w((3,), 0.1)])
    return g.model(["N", 3, 8, 8], out, opset=17)


def _models():
    from graphs.cache import reference_graph
    rng = np.random.default_rng(3)
    small = np.clip(rng.standard_normal((2, 3, 32, 32)), IMAGENET_LOW.min(), IMAGENET_HIGH.max())
    return {
        "every-op": (every_op_model(17), LOW, HIGH, rng.uniform(LOW, HIGH, (2, 8, 8, 3))),
        "small": (reference_graph("small", "legacy"), IMAGENET_LOW, IMAGENET_HIGH, small),
        "strided": (_strided_model(), -2.0, 2.0, rng.uniform(-2.0, 2.0, (2, 3, 16, 16))),
        "chain": (_chain_model(), -2.0, 2.0, rng.uniform(-2.0, 2.0, (2, 3, 8, 8))),
    }


@pytest.mark.parametrize("model", [pytest.param("every-op", marks=pytest.mark.slow),
                                   pytest.param("small", marks=pytest.mark.slow), "strided", "chain"])
def test_every_method_gives_the_literal_formulas_relevance(model, monkeypatch):
    source, low, high, x = _models()[model]
    x = x.astype(np.float32)
    base = Explainer(source, "gradient", provider="cpu", low=low, high=high)
    ours = _distinct_linear_rules(base, {**{m: m for m in METHODS}, **SPECS}, low, high)
    with monkeypatch.context() as patch:
        patch.setattr("explainer.ops.linear.apply_linear_rule", _literal_rule)
        literal = {name: base.with_method(ex.composite) for name, ex in ours.items()}
    for name in ours:
        expected = literal[name].explain(x, [1, 2]).relevance
        got = ours[name].explain(x, [1, 2]).relevance
        scale = float(np.abs(expected).max())
        assert scale > 0, name
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6 * scale, err_msg=f"{model}: {name}")


def _distinct_linear_rules(base: Explainer, methods: dict, low, high) -> dict[str, Explainer]:
    """An explainer for each distinct assignment of rules to the model's linear layers among ``methods`` (methods
    that assign the same rules, e.g. the gradient-based ones, emit the same linear-layer nodes)."""
    layers = [layer for layer in layer_info(base.graph).values() if layer.kind in LINEAR_KINDS]
    distinct: dict[tuple, str] = {}
    for name, spec in methods.items():
        composite = make_composite(spec, low=low, high=high)
        distinct.setdefault(tuple(composite.rule_for(layer) for layer in layers), name)
    return {name: base.with_method(methods[name]) for name in distinct.values()}


def _products(ex: Explainer) -> collections.Counter:
    """Convolutions of the relevance graph that read data (those of constants are folded by ONNX Runtime)."""
    graph = ex.relevance_model.skeleton.graph
    constants = {t.name for t in graph.initializer}
    return collections.Counter(n.op_type for n in graph.node if n.op_type == "Conv" and n.input[0] not in constants)


def test_convolutions_per_layer_are_the_rules_floor(small_legacy):
    """n stride-1 conv layers after ReLUs (the first on the image): each costs its forward pass plus one transposed
    product per term, plus one modified forward per sum that cannot be derived: z⁺ one, γ one (the sum for negative
    outputs is derived), αβ two; the first layer's flat or zB sums read constants only. γ leaves out the negative
    group (one transposed product) of the second layer, whose output reaches the third conv through ReLU → MaxPool
    and so receives no relevance where it is negative."""
    base = Explainer(small_legacy, "gradient", low=IMAGENET_LOW, high=IMAGENET_HIGH)
    n = sum(node.op == "Conv" for node in base.graph.nodes)
    expected = {"gradient": 2 * n, "lrp-epsilon": 2 * n, "epsilon-plus-flat": n + 1 + 2 * (n - 1),
                "epsilon-gamma-box": n + 3 + 3 * (n - 1) - 1, "epsilon-alpha2-beta1-flat": n + 1 + 4 * (n - 1)}
    assert n == 3
    for method, count in expected.items():
        assert _products(base.with_method(method))["Conv"] == count, method


@pytest.mark.parametrize(("shared", "count"), [(False, 12), (True, 13)])
def test_gamma_leaves_out_negative_outputs_that_receive_no_relevance(shared, count):
    """A γ layer whose output only a ReLU reads, whose output only a layer multiplying by its input reads, receives
    no relevance at negative outputs: its negative group is left out. Forward 3 convs; the last layer (its ReLU feeds
    the Gemm) 1 modified forward + 2 transposed; the middle one 1 + 1; the first on a signed input (x⁺ and x⁻ terms)
    2 + 2. With the middle ReLU's output read twice, that layer keeps both groups (+1 transposed). That the relevance
    is the literal formula's is checked on the same model above ("chain")."""
    ex = Explainer(_chain_model(shared), {"conv": Gamma(0.25), "dense": "epsilon"}, provider="cpu")
    assert _products(ex)["Conv"] == count


@pytest.mark.parametrize(("k", "s", "pads", "group"), [(11, 4, [2, 1, 3, 0], 1), (4, 2, [0, 1, 2, 0], 2),
                                                      (2, 2, [0, 0, 0, 0], 4), (6, 3, [1, 2, 0, 1], 1)])
def test_strided_transposed_products_split_into_phases_give_the_gradient(k, s, pads, group):
    """A stride-s conv whose kernel is large against s transposes as one Conv over the s² phases (DepthToSpace, then
    a crop): the gradient equals torch's, with asymmetric padding, groups and input rows the conv never reads."""
    import torch
    g = G(seed=k)
    size, cin, cout = 19, 4, 8
    conv = g.conv("x", cin, cout, k=k, group=group, strides=[s, s], pads=pads)
    out_h, out_w = ((size + pads[i] + pads[i + 2] - k) // s + 1 for i in range(2))
    weights = {"conv": g.inits[-2], "bias": g.inits[-1]}
    dense = g.w((cout * out_h * out_w, 3))
    ex = Explainer(g.model(["N", cin, size, size], g.node("Gemm", [g.node("Flatten", [conv]), dense])),
                   "gradient", provider="cpu")
    assert "DepthToSpace" in {n.op_type for n in ex.relevance_model.skeleton.graph.node}
    x = np.random.default_rng(k).standard_normal((2, cin, size, size)).astype(np.float32)
    got = ex.explain(x, [0, 2]).relevance
    w, b = (torch.from_numpy(numpy_helper.to_array(weights[n]).copy()) for n in ("conv", "bias"))
    xt = torch.from_numpy(x).requires_grad_(True)
    padded = torch.nn.functional.pad(xt, (pads[1], pads[3], pads[0], pads[2]))
    y = torch.nn.functional.conv2d(padded, w, b, stride=s, groups=group).flatten(1)
    y = y @ torch.from_numpy(numpy_helper.to_array(next(t for t in g.inits if t.name == dense)).copy())
    (expected,) = torch.autograd.grad(y, xt, torch.eye(3)[[0, 2]])
    np.testing.assert_allclose(got, expected.numpy(), rtol=1e-4, atol=1e-6 * float(expected.abs().max()))
