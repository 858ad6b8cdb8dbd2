"""Composites as data: a user's spec dict reproduces a named composite; rule parameters are validated."""
from __future__ import annotations

import numpy as np
import pytest

from explainer import Composite, Explainer, InputError
from explainer.lrp.composites import Layer, first, kind, make_composite, name_matches
from explainer.lrp.rules import AlphaBeta, Epsilon, Flat, ZBox, ZPlus
from explainer.relevance.bounds import expand_bounds

DIGITS = "graphs/digits_cnn.onnx"


@pytest.fixture(scope="module")
def digits():
    from pathlib import Path
    root = Path(__file__).resolve().parents[1]
    x = np.random.default_rng(0).random((2, 1, 32, 32)).astype(np.float32)
    return Explainer(str(root / DIGITS), "epsilon-plus-flat"), x


def test_spec_dict_equals_named_composite(digits):
    ex, x = digits
    named = ex.explain(x, 3).relevance
    spec = {"first": "flat", "conv": "zplus", "dense": {"rule": "epsilon", "epsilon": 1e-6}}
    np.testing.assert_allclose(ex.with_method(spec).explain(x, 3).relevance, named, rtol=1e-5, atol=1e-7)


def test_composite_object_with_predicates(digits):
    ex, x = digits
    layers = [n.name for n in ex.graph.nodes if n.op == "Conv"]
    custom = Composite("mine", [(first(), Flat()), (name_matches("^" + layers[1] + "$"), ZPlus()),
                                (kind("conv", "dense"), ZPlus())])
    a = ex.with_method(custom).explain(x, 3).relevance
    b = ex.with_method({"first": "flat", "conv": "zplus", "dense": "zplus"}).explain(x, 3).relevance
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    assert not np.allclose(a, ex.explain(x, 3).relevance)


@pytest.mark.parametrize("params, message", [({"epsilon": -1.0}, "epsilon"), ({"gamma": -0.5}, "gamma"),
                                             ({"stabiliser": 0.0}, "stabiliser"),
                                             ({"low": 1.0, "high": 0.0}, "low < high")])
def test_bad_rule_parameters_are_refused(digits, params, message):
    ex, _ = digits
    method = "epsilon-gamma-box" if "low" in params else "epsilon-plus"
    with pytest.raises(InputError, match=message):
        ex.with_method(method, **params)


def test_unknown_spec_keys_and_rules_are_named(digits):
    ex, _ = digits
    with pytest.raises(InputError, match="unknown composite key 'convolution'"):
        ex.with_method({"convolution": "zplus"})
    with pytest.raises(InputError, match="unknown rule 'zminus'"):
        ex.with_method({"conv": "zminus"})


# ---------------------------------------------------------------- parameters are never silently ignored
def test_unknown_method_parameters_are_named(digits):
    """Regression: every method factory ended in ``**_``, so a misspelt parameter was accepted."""
    ex, _ = digits
    with pytest.raises(InputError, match=r"method 'epsilon-plus' takes no parameter 'gama' \(it takes: epsilon, "
                                         r"stabiliser\)"):
        ex.with_method("epsilon-plus", gama=0.3)
    with pytest.raises(InputError, match=r"method 'gradient' takes no parameter 'epsilon' \(it takes: no param"):
        ex.with_method("gradient", epsilon=0.1)


def test_parameters_with_a_composite_object_are_refused(digits):
    """Regression: ``epsilon`` passed next to a Composite was dropped."""
    ex, _ = digits
    with pytest.raises(InputError, match="pass parameters to make_composite or the rule, not with a Composite"):
        ex.with_method(make_composite("epsilon-plus"), epsilon=100.0)


def test_parameters_with_a_spec_are_defaults_for_the_rules_it_names(digits):
    """Regression: ``epsilon`` passed next to a spec dict was dropped."""
    ex, x = digits
    spec = {"conv": "zplus", "dense": "epsilon"}
    explicit = {"conv": "zplus", "dense": {"rule": "epsilon", "epsilon": 100.0}}
    got = ex.with_method(spec, epsilon=100.0).explain(x, 3).relevance
    np.testing.assert_allclose(got, ex.with_method(explicit).explain(x, 3).relevance, rtol=1e-5, atol=1e-8)
    assert not np.allclose(got, ex.with_method(spec).explain(x, 3).relevance, rtol=1e-3)
    own = {"conv": "zplus", "dense": {"rule": "epsilon", "epsilon": 1e-6}}
    np.testing.assert_allclose(ex.with_method(own, epsilon=100.0).explain(x, 3).relevance,
                               ex.with_method(spec).explain(x, 3).relevance, rtol=1e-5, atol=1e-8)
    with pytest.raises(InputError, match=r"no rule of the composite spec takes 'gamma' \(its named rules take: "
                                         r"bias, epsilon, stabiliser\)"):
        ex.with_method(spec, gamma=0.3)
    with pytest.raises(InputError, match=r"rule 'epsilon' takes no parameter 'gama'"):
        ex.with_method({"dense": {"rule": "epsilon", "gama": 0.3}})


BOX = {"conv": "gamma", "dense": "epsilon"}


def test_zbox_bounds_given_in_the_rule_are_used(digits):
    """Regression: the zB rule's own low/high were ignored (without Explainer bounds: a misleading ModelError)."""
    ex, x = digits
    named = ex.with_method("epsilon-gamma-box", low=0.0, high=1.0).explain(x, 3).relevance
    in_rule = ex.with_method({"first": {"rule": "zbox", "low": 0.0, "high": 1.0}, **BOX}).explain(x, 3).relevance
    np.testing.assert_allclose(in_rule, named, rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(ex.with_method({"first": ZBox(0.0, 1.0), **BOX}).explain(x, 3).relevance, named,
                               rtol=1e-5, atol=1e-8)
    by_name = ex.with_method({"first": "zbox", **BOX}, low=0.0, high=1.0).explain(x, 3).relevance
    np.testing.assert_allclose(by_name, named, rtol=1e-5, atol=1e-8)
    wide = ex.with_method({"first": ZBox(-5.0, 5.0), **BOX}).explain(x, 3).relevance
    assert np.abs(wide - named).max() > 1e-3 * np.abs(named).max()


def test_conflicting_or_missing_zbox_bounds_are_refused(digits):
    ex, _ = digits
    second = [n.name for n in ex.graph.nodes if n.op == "Conv"][1]
    two = {"first": ZBox(0.0, 1.0), f"name:^{second}$": ZBox(-1.0, 1.0), **BOX}
    with pytest.raises(InputError, match="have different input bounds"):
        ex.with_method(two)
    with pytest.raises(InputError, match="differ from those of the zB rule"):
        ex.with_method({"first": ZBox(0.0, 1.0), **BOX}, low=-1.0, high=1.0)
    with pytest.raises(InputError, match="rule 'zbox': missing a required argument: 'low'"):
        ex.with_method({"first": "zbox", **BOX})
    with pytest.raises(InputError, match="give both input bounds low and high"):
        ex.with_method("epsilon-plus", low=0.0)
    with pytest.raises(InputError, match="cannot be carried there"):
        ex.with_method({"conv": "zbox"}, low=0.0, high=1.0)


def test_method_parameters_are_checked_before_the_model_is_read():
    """The parameter error wins over the missing file: nothing is loaded or canonicalised first."""
    with pytest.raises(InputError, match="epsilon-gamma-box needs the input bounds"):
        Explainer("no/such/model.onnx", "epsilon-gamma-box")
    with pytest.raises(InputError, match="gama"):
        Explainer("no/such/model.onnx", "epsilon-plus", gama=0.3)
    with pytest.raises(InputError, match="not with a Composite"):
        Explainer("no/such/model.onnx", make_composite("gradient"), epsilon=0.1)


# ---------------------------------------------------------------- zB bounds: shapes
def test_batch_shaped_bounds_are_accepted_when_alike(digits):
    """Zennit users pass bounds shaped like the batch; identical samples collapse to one sample's bounds."""
    ex, x = digits
    scalar = ex.with_method("epsilon-gamma-box", low=0.0, high=1.0).explain(x, 3).relevance
    low, high = np.zeros((2, 1, 32, 32), np.float32), np.ones((2, 1, 32, 32), np.float32)
    batch = ex.with_method("epsilon-gamma-box", low=low, high=high).explain(x, 3).relevance
    np.testing.assert_allclose(batch, scalar, rtol=1e-6, atol=1e-9)
    low[1, 0, 5, 5] = -1.0
    with pytest.raises(InputError, match="differ between the 2 samples"):
        ex.with_method("epsilon-gamma-box", low=low, high=high)


def test_bounds_of_the_wrong_shape_are_an_input_error(digits):
    ex, _ = digits
    with pytest.raises(InputError, match="do not broadcast to the input's shape"):
        ex.with_method("epsilon-gamma-box", low=np.zeros((1, 1, 16, 16)), high=1.0)
    with pytest.raises(InputError, match="bounds have 3 values but the input has 1 channels"):
        ex.with_method("epsilon-gamma-box", low=[0.0, 0.0, 0.0], high=1.0)


def test_expand_bounds_nhwc_batch():
    low = np.broadcast_to(np.array([0.0, -1.0, -2.0], np.float32), (4, 5, 6, 3))
    out = expand_bounds(low, (1, 5, 6, 3), "NHWC")
    assert out.shape == (1, 5, 6, 3)
    np.testing.assert_array_equal(out[0, 2, 3], [0.0, -1.0, -2.0])
    np.testing.assert_array_equal(expand_bounds([0.0, -1.0, -2.0], (1, 5, 6, 3), "NHWC"), out)


# ---------------------------------------------------------------- Samek et al. (2017)'s one-rule-everywhere variants
def _layers() -> list[Layer]:
    """A first conv (the layer a '-flat' or '-box' composite treats specially), a later conv and dense layers."""
    return [Layer("conv", "conv0", "Conv", first=True), Layer("conv", "conv1", "Conv"),
            Layer("dense", "fc0", "Gemm"), Layer("dense", "fc1", "Gemm")]


@pytest.mark.parametrize("method, rule", [("lrp-epsilon", Epsilon(0.01)), ("lrp-alpha2-beta1", AlphaBeta(2.0, 1.0))])
def test_samek_variants_apply_one_rule_to_every_layer_the_first_included(method, rule):
    """Samek et al. evaluate LRP with one rule on all layers, ε (default 0.01) and α2β1: the first conv and the dense
    layers get it too."""
    composite = make_composite(method)
    assert [composite.rule_for(layer) for layer in _layers()] == [rule] * 4


def test_lrp_epsilon_takes_the_papers_large_epsilon():
    composite = make_composite("lrp-epsilon", epsilon=100.0)
    assert [composite.rule_for(layer) for layer in _layers()] == [Epsilon(100.0)] * 4


def test_lrp_alpha2_beta1_differs_from_epsilon_alpha2_beta1_on_dense_layers_only(digits):
    ex, x = digits
    samek = ex.with_method("lrp-alpha2-beta1").explain(x, 3).relevance
    spec = {"conv": "alpha2-beta1", "dense": "alpha2-beta1"}
    np.testing.assert_allclose(ex.with_method(spec).explain(x, 3).relevance, samek, rtol=1e-5, atol=1e-7)
    assert not np.allclose(ex.with_method("epsilon-alpha2-beta1").explain(x, 3).relevance, samek, rtol=1e-3)
    modern, conv, dense = make_composite("epsilon-alpha2-beta1"), _layers()[1], _layers()[2]
    assert modern.rule_for(conv) == make_composite("lrp-alpha2-beta1").rule_for(conv)
    assert modern.rule_for(dense) == Epsilon(1e-6)
