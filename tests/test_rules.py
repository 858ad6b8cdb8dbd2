"""The LRP vocabulary as data: weight modifications compared by value (never by a function's name), the unmodified
weights shared with the forward pass, closed vocabularies for term inputs, gates, seeds and layer kinds."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import numpy_helper

from explainer import Explainer, InputError
from explainer.lrp.composites import METHODS, Layer, LayerKind, kind, make_composite
from explainer.lrp.rules import (
    IDENTITY,
    NEGATIVE,
    POSITIVE,
    AlphaBeta,
    Epsilon,
    Gamma,
    LinearRule,
    Term,
    TermGroup,
    WeightMod,
    ZBox,
    ZPlus,
    gamma_mod,
)
from tests.support.paths import DIGITS


@pytest.fixture(scope="module")
def digits():
    return Explainer(str(DIGITS), "lrp-epsilon")


def _signed_input(n: int = 2) -> np.ndarray:
    """Inputs of both signs, so that the first layer's x⁻ terms contribute."""
    return np.random.default_rng(1).standard_normal((n, 1, 32, 32)).astype(np.float32)


def _user_zplus() -> LinearRule:
    """z⁺ written with the user's own functions (all named '<lambda>')."""
    return LinearRule((TermGroup((Term("pos", lambda w: np.maximum(w, 0), lambda b: np.maximum(b, 0)),
                                  Term("neg", lambda w: np.minimum(w, 0), None))),), name="my-zplus")


def _user_alpha2_beta1() -> LinearRule:
    pos, neg = (lambda w: np.maximum(w, 0)), (lambda w: np.minimum(w, 0))
    return LinearRule((TermGroup((Term("pos", pos, pos), Term("neg", neg, None)), coefficient=2.0),
                       TermGroup((Term("pos", neg, neg), Term("neg", pos, None)), coefficient=-1.0)), name="my-a2b1")


USER_RULES = {"zplus": (_user_zplus, ZPlus), "alpha2-beta1": (_user_alpha2_beta1, lambda: AlphaBeta(2.0, 1.0))}


@pytest.mark.parametrize("rule", list(USER_RULES))
def test_rule_written_with_user_functions_equals_the_builtin(digits, rule):
    """Regression: modified weights were cached by ``__name__``, so every '<lambda>' shared the first one's weights
    (z⁺ with lambdas was off by 0.18 against a relevance scale of 0.03, silently)."""
    user, builtin = USER_RULES[rule]
    x = _signed_input()
    expected = digits.with_method({"conv": builtin(), "dense": builtin()}).explain(x, 3).relevance
    got = digits.with_method({"conv": user(), "dense": user()}).explain(x, 3).relevance
    scale = float(np.abs(expected).max())
    assert scale > 0
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6 * scale)


def test_distinct_user_functions_never_share_a_modification():
    double, negate = (lambda w: 2 * w), (lambda w: -w)
    assert double.__name__ == negate.__name__
    a, b = WeightMod.wrap(double), WeightMod.wrap(negate)
    assert a != b and hash(a) != hash(b)
    assert WeightMod.wrap(double) == a and WeightMod.wrap(a) is a
    assert Term("x", double) == Term("x", double) and Term("x", double) != Term("x", negate)
    w = np.array([1.0, -2.0], np.float32)
    np.testing.assert_array_equal(Term("x", negate).weight(w), -w)


def test_builtin_modifications_compare_by_value():
    assert gamma_mod(0.25, POSITIVE) == gamma_mod(0.25, POSITIVE)
    assert gamma_mod(0.25, POSITIVE) != gamma_mod(0.5, POSITIVE) != gamma_mod(0.5, NEGATIVE)
    assert len({gamma_mod(0.25, POSITIVE), gamma_mod(0.25, POSITIVE), IDENTITY, POSITIVE}) == 3
    w = np.array([1.0, -2.0], np.float32)
    np.testing.assert_allclose(gamma_mod(0.5, NEGATIVE)(w), [1.0, -3.0])
    assert ZPlus() == ZPlus() and Gamma(0.25) == Gamma(0.25) and Gamma(0.25) != Gamma(0.5)


def _initializers(ex: Explainer) -> dict[str, np.ndarray]:
    return {t.name: numpy_helper.to_array(t) for t in ex.relevance_model.full().graph.initializer}


@pytest.mark.parametrize("method", ["lrp-epsilon", "epsilon-plus", "epsilon-plus-flat", "gradient", "lrp-0"])
def test_no_parameter_is_stored_twice(digits, method):
    """Regression: the unmodified weight entered the relevance graph twice ('W' and 'W__identity')."""
    arrays = [a for a in _initializers(digits.with_method(method)).values() if a.size > 16]
    seen: set[tuple] = set()
    for a in arrays:
        key = (a.dtype.str, a.shape, a.tobytes())
        assert key not in seen, f"{method}: an initializer of shape {a.shape} is stored twice"
        seen.add(key)


def test_relevance_graph_weights_within_budget(digits):
    """LRP-ε needs the model's parameters once plus, per stride-1 convolution, its flipped kernel (the transposed
    product runs as a Conv): 180 KB on digits, where the duplicated weights made it 315 KB."""
    params = sum(a.nbytes for n in digits.graph.nodes for a in n.params.values() if isinstance(a, np.ndarray))
    flipped = sum(n.params["W"].nbytes for n in digits.graph.nodes if n.op == "Conv")
    total = sum(a.nbytes for a in _initializers(digits.with_method("lrp-epsilon")).values())
    assert params <= total <= params + flipped + 1024, (params, flipped, total)


def test_gamma_stores_only_the_modified_weights_it_runs(digits):
    """γ computes the sum for positive outputs with w + γw⁺ and derives the one for negative outputs from it and the
    layer's output, so w + γw⁻ is stored only as the flipped kernel of its transposed product, never as itself; and
    not at all where the layer's negative outputs receive no relevance (the second conv: ReLU → MaxPool → a conv that
    multiplies by its input), while the last conv (ReLU → MaxPool → Flatten → Gemm) keeps its negative group."""
    arrays = list(_initializers(digits.with_method("epsilon-gamma-box", low=0.0, high=1.0)).values())
    convs = [n for n in digits.graph.nodes if n.op == "Conv"][1:]  # the first layer takes zB

    def stored(a: np.ndarray) -> bool:
        return any(b.shape == a.shape and np.array_equal(b, a) for b in arrays)

    assert len(convs) == 2
    flipped_down = []
    for node in convs:
        w = node.params["W"]
        up, down = gamma_mod(0.25, POSITIVE)(w), gamma_mod(0.25, NEGATIVE)(w)
        assert stored(up) and not stored(down), node.name
        flipped_down.append(stored(np.ascontiguousarray(np.swapaxes(down, 0, 1)[:, :, ::-1, ::-1])))
    assert flipped_down == [False, True]


def test_term_vocabularies_are_closed():
    with pytest.raises(InputError, match="unknown term input 'posx'"):
        Term("posx")
    with pytest.raises(InputError, match="unknown term-group gate 'up'"):
        TermGroup((Term("x"),), gate="up")
    with pytest.raises(InputError, match="sign"):
        Term("x", sign=2.0)
    with pytest.raises(InputError, match="weight modification"):
        Term("x", weight=0.5)
    assert Term("pos").input == "pos" and TermGroup((Term("x"),), gate="neg").gate == "neg"


def test_layer_kinds_are_a_closed_vocabulary_that_compares_as_strings():
    layer = Layer(kind="conv", name="c", op="Conv")
    assert layer.kind is LayerKind.CONV and layer.kind == "conv" and f"{layer.kind}" == "conv"
    assert kind("conv")(layer) and not kind("dense")(layer)
    with pytest.raises(InputError, match="unknown layer kind 'convolution'"):
        kind("convolution")
    with pytest.raises(ValueError):
        Layer(kind="convolution", name="c", op="Conv")


def test_factories_return_linear_rules():
    for rule in (Epsilon(), ZPlus(), AlphaBeta(), ZBox(0.0, 1.0)):
        assert isinstance(rule, LinearRule) and rule.is_gradient is False


def test_composites_declare_whether_they_return_a_signal():
    signals = {name for name in METHODS if make_composite(name, low=0.0, high=1.0).signal}
    assert signals == {"gradient", "deconvnet", "guided-backprop"}


def test_spec_entries_for_specific_layers_take_precedence_over_kinds():
    composite = make_composite({"conv": "zplus", "name:^fc": "flat", "first": "w-square"})
    conv_first = Layer(kind="conv", name="c1", op="Conv", first=True)
    assert composite.rule_for(conv_first).name == "w-square"
    assert composite.rule_for(Layer(kind="dense", name="fc1", op="Dense")).name == "flat"
    assert composite.rule_for(Layer(kind="conv", name="c2", op="Conv")) == ZPlus()


def test_pairs_take_parameters_as_defaults_for_the_rules_they_name():
    composite = make_composite([(kind("dense"), "epsilon"), (kind("conv"), Gamma(0.5))], epsilon=0.25)
    assert composite.rules[0][1] == Epsilon(0.25) and composite.rules[1][1] == Gamma(0.5)
    with pytest.raises(InputError, match="no rule of the composite spec takes 'gamma'"):
        make_composite([(kind("dense"), "epsilon"), (kind("conv"), Gamma(0.5))], gamma=0.25)
