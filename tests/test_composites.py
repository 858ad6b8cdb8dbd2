"""Composites as data: a user's spec dict reproduces a named composite; rule parameters are validated."""
from __future__ import annotations

import numpy as np
import pytest

from explainer import Composite, Explainer, InputError
from explainer.lrp.composites import first, kind, name_matches
from explainer.lrp.rules import Flat, ZPlus

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
