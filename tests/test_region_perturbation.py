"""Region-perturbation protocol: curves, AOPC/ABPC by hand, perturbations, model inputs, reports, complexity."""
from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from explainer.errors import InputError, ModelError
from explainer.evaluation.complexity import heatmap_complexity, heatmap_to_uint8, histogram_entropy, png_bytes
from explainer.evaluation.perturbations import uniform
from explainer.evaluation.region_perturbation import (
    Comparison,
    abpc,
    as_score_fn,
    compare_heatmaps,
    region_perturbation,
)
from explainer.evaluation.report import format_table, write_comparison


def linear_model(weights: np.ndarray):
    """Logits = sum over pixels of weights[k] * x: a model whose perturbation curves can be computed by hand."""
    return lambda x: np.einsum("bchw,kchw->bk", x, weights)


def four_region_setup():
    """One 1x18x18 image of ones = four 9x9 cells; class 0 gains 4, 1, 3, 2 from cells TL, TR, BL, BR; class 1 = 0."""
    contributions = np.array([[4.0, 1.0], [3.0, 2.0]])
    weights = np.zeros((2, 1, 18, 18))
    weights[0, 0] = np.kron(contributions, np.ones((9, 9))) / 81
    images = np.ones((1, 1, 18, 18), np.float32)
    heatmaps = weights[0, 0][None] * images[:, 0]
    return linear_model(weights), images, heatmaps


def test_morf_lerf_curves_aopc_and_abpc_by_hand() -> None:
    model, images, heatmaps = four_region_setup()
    options = dict(steps=3, perturb="zero", progress=False)
    morf = region_perturbation(model, images, heatmaps, order="morf", **options)
    lerf = region_perturbation(model, images, heatmaps, order="lerf", **options)
    # f(x0) = 10. MoRF removes 4, 3, 2 -> f = 10, 6, 3, 1; LeRF removes 1, 2, 3 -> f = 10, 9, 7, 4.
    np.testing.assert_allclose(morf.curve, [0, 4, 7, 9], atol=1e-5)
    np.testing.assert_allclose(lerf.curve, [0, 1, 3, 6], atol=1e-5)
    assert morf.aopc == pytest.approx((0 + 4 + 7 + 9) / 4, abs=1e-5)
    assert lerf.aopc == pytest.approx((0 + 1 + 3 + 6) / 4, abs=1e-5)
    assert abpc(morf, lerf) == pytest.approx(((10 - 10) + (9 - 6) + (7 - 3) + (4 - 1)) / 4, abs=1e-5)
    np.testing.assert_allclose(morf.scores, [[10, 6, 3, 1]], atol=1e-5)
    assert morf.targets.tolist() == [0] and morf.settings["repeats"] == 1
    assert morf.settings["grid"] == "fixed" and morf.settings["order"] == "morf"


def test_aopc_is_the_mean_over_images_of_per_image_means() -> None:
    model, image, heatmap = four_region_setup()
    images = np.concatenate([image, 2 * image])
    result = region_perturbation(model, images, np.concatenate([heatmap, heatmap]), steps=3, perturb="zero",
                                 progress=False)
    np.testing.assert_allclose(result.per_image, [[0, 4, 7, 9], [0, 8, 14, 18]], atol=1e-5)
    np.testing.assert_allclose(result.per_image_aopc, [5.0, 10.0], atol=1e-5)
    assert result.aopc == pytest.approx(7.5, abs=1e-5)
    np.testing.assert_allclose(result.curve, [0, 6, 10.5, 13.5], atol=1e-5)


def test_compare_heatmaps_report_structure_and_values() -> None:
    model, images, heatmaps = four_region_setup()
    report = compare_heatmaps(model, images, {"exact": heatmaps, "inverted": -heatmaps},
                              orders=("morf", "lerf-signed"), steps=3, perturb="zero", repeats=4, progress=False)
    json.dumps(report, allow_nan=False)
    assert list(report["methods"]) == ["exact", "inverted", "random"]
    exact, inverted, rand = (report["methods"][k] for k in ("exact", "inverted", "random"))
    assert exact["aopc"] == pytest.approx(5.0, abs=1e-5) and exact["abpc"] == pytest.approx(2.5, abs=1e-5)
    assert inverted["aopc"] == pytest.approx(2.5, abs=1e-5) and inverted["abpc"] == pytest.approx(-2.5, abs=1e-5)
    np.testing.assert_allclose(exact["curve_lerf"], [0, 1, 3, 6], atol=1e-5)
    assert len(exact["curve"]) == 4 and np.shape(exact["per_image"]) == (1, 4)
    assert rand["abpc"] is None and rand["complexity"] is None and rand["repeats"] == 4
    assert exact["repeats"] == 1 and set(exact["complexity"]) == {"png_bytes", "entropy"}
    assert inverted["aopc"] < rand["aopc"] < exact["aopc"]
    settings = report["settings"]
    assert settings["grid"] == "fixed" and settings["steps"] == 3 and settings["orders"] == ["morf", "lerf-signed"]
    assert "not part of it" in settings["abpc_definition"] and settings["bootstrap"]["resamples"] == 2000
    assert exact["class_switch_curve"] == [0.0] * 4 and exact["class_switch_rate"] == 0.0


def test_lerf_by_magnitude_does_not_reward_a_negated_heatmap() -> None:
    """LeRF removes the regions of least |h| first, the same for a map and its negation; signed LeRF would remove
    the most negative regions first and give the negated map an ABPC of -2.5."""
    model, images, heatmaps = four_region_setup()
    report = compare_heatmaps(model, images, {"exact": heatmaps, "inverted": -heatmaps}, orders=("morf", "lerf"),
                              steps=3, perturb="zero", include_random=False, progress=False)
    exact, inverted = report["methods"]["exact"], report["methods"]["inverted"]
    np.testing.assert_allclose(inverted["curve_lerf"], exact["curve_lerf"], atol=1e-9)
    np.testing.assert_allclose(exact["curve_lerf"], [0, 1, 3, 6], atol=1e-5)
    assert exact["abpc"] == pytest.approx(2.5, abs=1e-5) and inverted["abpc"] == pytest.approx(0.0, abs=1e-5)


def test_class_switch_curve_by_hand() -> None:
    """Class 1 scores a constant 5: MoRF takes class 0 from 10 to 6, 3, 1, so it loses the argmax at steps 2 and 3."""
    model, images, heatmaps = four_region_setup()

    def with_rival(x: np.ndarray) -> np.ndarray:
        logits = model(x)
        logits[:, 1] = 5.0
        return logits

    report = compare_heatmaps(with_rival, images, {"exact": heatmaps}, steps=3, perturb="zero", progress=False)
    assert report["methods"]["exact"]["class_switch_curve"] == [0.0, 0.0, 1.0, 1.0]
    assert report["methods"]["exact"]["class_switch_rate"] == pytest.approx(0.5)


def test_the_fixed_grid_perturbs_every_pixel_of_an_image_that_is_no_multiple_of_the_region() -> None:
    """20 x 20 pixels in 9 x 9 regions: a 3 x 3 grid of cells, partial at the border; after all 9 steps the image
    is all zeros, so a model summing every pixel scores 0 (with a top-left grid 2 x 2 cells would leave 76 pixels)."""
    weights = np.ones((2, 1, 20, 20))
    images = np.random.default_rng(0).uniform(0.5, 1.0, size=(2, 1, 20, 20)).astype(np.float32)
    heatmaps = np.random.default_rng(1).normal(size=(2, 20, 20))
    result = region_perturbation(linear_model(weights), images, heatmaps, steps=9, region=9, perturb="zero",
                                 progress=False)
    np.testing.assert_allclose(result.scores[:, -1], 0.0, atol=1e-5)
    np.testing.assert_allclose(result.scores[:, 0], images.sum(axis=(1, 2, 3)), rtol=1e-5)

def test_mean_perturbation_by_hand() -> None:
    weights = np.zeros((2, 1, 18, 18))
    weights[0] = 1.0
    images = np.ones((1, 1, 18, 18), np.float32)
    images[0, 0, :9, :9] = 5.0  # channel mean = (81 * 5 + 243 * 1) / 324 = 2
    heatmaps = np.zeros((1, 18, 18))
    heatmaps[0, :9, :9] = 2.0
    heatmaps[0, :9, 9:] = 1.0
    result = region_perturbation(linear_model(weights), images, heatmaps, steps=2, perturb="mean", progress=False)
    # Step 1: the 5s become 2 (drop 81 * 3); step 2: a block of 1s becomes 2 (rise 81).
    np.testing.assert_allclose(result.curve, [0, 243, 162], atol=1e-4)


def test_blur_leaves_a_constant_image_unchanged() -> None:
    weights = np.random.default_rng(0).normal(size=(3, 2, 27, 27))
    images = np.full((2, 2, 27, 27), 0.3, np.float32)
    heatmaps = np.random.default_rng(1).normal(size=(2, 27, 27))
    result = region_perturbation(linear_model(weights), images, heatmaps, steps=9, perturb="blur", progress=False)
    np.testing.assert_allclose(result.per_image, 0.0, atol=1e-4)


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_user_perturbation_sees_the_callers_layout(layout: str) -> None:
    model, images, heatmaps = four_region_setup()
    seen = []

    def sevens(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        seen.append(image.shape)
        return np.full(image.shape, 7.0)

    if layout == "NHWC":
        images, model = images.transpose(0, 2, 3, 1), (lambda f: lambda x: f(x.transpose(0, 3, 1, 2)))(model)
    result = region_perturbation(model, images, heatmaps, layout=layout, steps=2, perturb=sevens, repeats=2,
                                 progress=False)
    # MoRF replaces the cells worth 4 and 3 with sevens: each becomes worth 7 * contribution.
    np.testing.assert_allclose(result.curve, [0, -24, -42], atol=1e-4)
    assert set(seen) == {(1, 18, 18) if layout == "NCHW" else (18, 18, 1)}
    assert result.settings["perturb"] == "sevens" and result.settings["repeats"] == 2


def test_uniform_noise_stays_in_the_per_channel_range() -> None:
    noise = uniform([0.0, -1.0, 2.0], [1.0, 0.0, 2.5])(np.zeros((3, 30, 30)), np.random.default_rng(0))
    low, high = noise.min(axis=(1, 2)), noise.max(axis=(1, 2))
    np.testing.assert_array_less([-1e-7, -1.0 - 1e-7, 2.0 - 1e-7], low)
    np.testing.assert_array_less(high, [1.0 + 1e-7, 1e-7, 2.5 + 1e-7])
    np.testing.assert_array_less(low, [0.01, -0.99, 2.005])
    np.testing.assert_array_less([0.99, -0.01, 2.495], high)


def test_uniform_curve_matches_its_expectation() -> None:
    weights = np.zeros((2, 1, 18, 18))
    weights[0] = 1.0
    images = np.ones((1, 1, 18, 18), np.float32)
    result = region_perturbation(linear_model(weights), images, np.zeros((1, 18, 18)), steps=4, low=0.0, high=1.0,
                                 repeats=10, progress=False)
    # Each removed cell swaps 81 ones for noise of mean 0.5: expected drop 40.5 per step. The drop at step k is
    # 81 k minus the mean over 10 repeats of a sum of 81 k uniform draws: standard error sqrt(81 k / 12 / 10).
    k = np.arange(5)
    np.testing.assert_array_less(np.abs(result.curve - 40.5 * k), 5 * np.sqrt(81 * k / 120) + 1e-9)


def test_heatmap_on_the_only_used_region_beats_random() -> None:
    weights = np.zeros((2, 3, 45, 45))
    weights[0, :, 9:18, 18:27] = 1.0
    weights[1] = -1e-3
    images = np.ones((4, 3, 45, 45), np.float32)
    heatmaps = weights[0].sum(axis=0)[None].repeat(4, axis=0)
    report = compare_heatmaps(linear_model(weights), images, {"focused": heatmaps}, orders=("morf", "lerf"),
                              steps=10, low=0.0, high=1.0, repeats=10, progress=False)
    focused, rand = report["methods"]["focused"], report["methods"]["random"]
    # Expected: removing the used cell drops f by 243 * 0.5; MoRF does so at step 1 -> AOPC ~ 121.5 * 10 / 11;
    # random picks it by step k with probability k / 25 -> AOPC ~ 121.5 * 0.2.
    assert focused["aopc"] == pytest.approx(121.5 * 10 / 11, rel=0.05)
    assert rand["aopc"] == pytest.approx(121.5 * 0.2, rel=0.5)
    assert focused["aopc"] - rand["aopc"] > 60
    assert focused["aopc_lerf"] == pytest.approx(0.0, abs=1e-6)


def noisy_problem(seed: int = 0):
    rng = np.random.default_rng(seed)
    weights = rng.normal(size=(5, 3, 27, 36))
    images = rng.random((3, 3, 27, 36), dtype=np.float32)
    heatmaps = (weights[0] * images).sum(axis=1)
    return linear_model(weights), images, heatmaps


def test_results_are_reproducible_for_a_seed_and_independent_of_batch_size() -> None:
    model, images, heatmaps = noisy_problem()
    options = dict(steps=8, low=0.0, high=1.0, repeats=3, progress=False)
    a = region_perturbation(model, images, heatmaps, seed=5, batch_size=128, **options)
    b = region_perturbation(model, images, heatmaps, seed=5, batch_size=7, **options)
    c = region_perturbation(model, images, heatmaps, seed=6, **options)
    np.testing.assert_allclose(a.per_image, b.per_image, rtol=1e-9, atol=1e-9)
    assert np.abs(a.per_image - c.per_image).max() > 1e-3
    r1 = region_perturbation(model, images, heatmaps, seed=5, order="random", **options)
    r2 = region_perturbation(model, images, heatmaps, seed=5, order="random", batch_size=5, **options)
    np.testing.assert_allclose(r1.per_image, r2.per_image, rtol=1e-9, atol=1e-9)


def test_nhwc_and_nchw_give_identical_results() -> None:
    model, images, heatmaps = noisy_problem(1)
    options = dict(steps=8, low=0.0, high=1.0, repeats=2, seed=3, progress=False)
    nchw = region_perturbation(model, images, heatmaps, layout="NCHW", **options)
    nhwc = region_perturbation(lambda x: model(x.transpose(0, 3, 1, 2)), images.transpose(0, 2, 3, 1), heatmaps,
                               layout="NHWC", **options)
    np.testing.assert_allclose(nhwc.per_image, nchw.per_image, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(nhwc.targets, nchw.targets)


def test_targets_default_to_the_prediction_and_can_be_given() -> None:
    model, images, heatmaps = noisy_problem(2)
    logits = model(images)
    predicted = region_perturbation(model, images, heatmaps, steps=4, perturb="zero", progress=False)
    np.testing.assert_array_equal(predicted.targets, logits.argmax(axis=1))
    chosen = np.array([4, 0, 2])
    given = region_perturbation(model, images, heatmaps, steps=4, perturb="zero", targets=chosen, progress=False)
    np.testing.assert_array_equal(given.targets, chosen)
    np.testing.assert_allclose(given.scores[:, 0], logits[np.arange(3), chosen], rtol=1e-6)
    assert given.settings["score"] == "pre-softmax logit of the given class"


def tiny_onnx_session(batch: int | str = "N") -> ort.InferenceSession:
    weights = np.random.default_rng(0).normal(size=(1 * 18 * 18, 3)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Flatten", ["x"], ["flat"], axis=1), helper.make_node("MatMul", ["flat", "w"], ["y"])],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 1, 18, 18])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 3])],
        [numpy_helper.from_array(weights, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def test_onnx_session_forward_object_and_callable_agree() -> None:
    session = tiny_onnx_session()
    callable_fn = as_score_fn(session)

    class Forward:
        def forward(self, x: np.ndarray) -> np.ndarray:
            return callable_fn(x)

    rng = np.random.default_rng(3)
    images = rng.random((3, 1, 18, 18), dtype=np.float32)
    heatmaps = rng.normal(size=(3, 18, 18))
    options = dict(steps=4, low=0.0, high=1.0, repeats=2, batch_size=5, progress=False)
    results = [region_perturbation(model, images, heatmaps, **options)
               for model in (session, Forward(), callable_fn, tiny_onnx_session(batch=1))]
    for other in results[1:]:
        np.testing.assert_allclose(other.per_image, results[0].per_image, rtol=1e-5, atol=1e-5)


def test_progress_bar_reports_images(capsys: pytest.CaptureFixture) -> None:
    model, images, heatmaps = noisy_problem()
    region_perturbation(model, images, heatmaps, steps=4, perturb="zero", progress=True)
    assert "3/3" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("change", "error", "message"),
    [
        (dict(heatmaps=np.zeros((3, 27, 35))), InputError, r"heatmaps have shape \(3, 27, 35\)"),
        (dict(steps=13), InputError, r"hold only 12 9x9 regions; steps=13"),
        (dict(layout="CHW"), InputError, "layout must be one of"),
        (dict(images=np.zeros((3, 27, 36), np.float32)), InputError, r"4-D NCHW batch; got shape \(3, 27, 36\)"),
        (dict(perturb="uniform", low=None), InputError, "needs low= and high="),
        (dict(low=[0.0, 0.0], high=1.0), InputError, "low has 2 values but the image has 3 channels"),
        (dict(low=1.0, high=0.0), InputError, "need low < high"),
        (dict(perturb="noise"), InputError, "unknown perturbation 'noise'"),
        (dict(perturb=lambda image, rng: image[0]), InputError, r"returned shape \(27, 36\)"),
        (dict(targets=np.array([0, 1, 9])), InputError, "target 9 of image 2 is outside the model's 5 classes"),
        (dict(targets=np.array([0, 1])), InputError, "targets must be 3 integer class indices"),
        (dict(repeats=0), InputError, "repeats must be an integer >= 1"),
        (dict(model=lambda x: np.zeros(len(x))), ModelError, r"returned shape \(3,\) for a batch of 3"),
        (dict(model=lambda x: np.full((len(x), 2), np.nan)), ModelError, "non-finite logits"),
        (dict(model=42), InputError, "cannot score with a int"),
    ],
)
def test_bad_input_raises_a_clear_error(change: dict, error: type, message: str) -> None:
    model, images, heatmaps = noisy_problem()
    arguments = dict(model=model, images=images, heatmaps=heatmaps, steps=4, low=0.0, high=1.0, progress=False)
    arguments.update(change)
    with pytest.raises(error, match=message):
        region_perturbation(arguments.pop("model"), arguments.pop("images"), arguments.pop("heatmaps"), **arguments)


def test_compare_rejects_reserved_name_and_bad_orders() -> None:
    model, images, heatmaps = noisy_problem()
    with pytest.raises(InputError, match="'random' is reserved"):
        compare_heatmaps(model, images, {"random": heatmaps}, steps=2, low=0, high=1, progress=False)
    with pytest.raises(InputError, match="orders must be"):
        compare_heatmaps(model, images, {"a": heatmaps}, orders=("lerf",), steps=2, low=0, high=1, progress=False)
    with pytest.raises(InputError, match="heatmaps of method 'b' have shape"):
        compare_heatmaps(model, images, {"a": heatmaps, "b": heatmaps[:2]}, steps=2, low=0, high=1, progress=False)


def test_a_comparison_fed_chunk_by_chunk_equals_the_whole() -> None:
    """Chunks in any order, methods interleaved: the same report to the last digit (random draws are seeded by the
    image's index in the run, not in its chunk)."""
    rng = np.random.default_rng(4)
    weights = rng.normal(size=(5, 3, 27, 36))
    images = rng.random((5, 3, 27, 36), dtype=np.float32)
    maps = {"lrp": (weights[0] * images).sum(axis=1), "noise": rng.normal(size=(5, 27, 36))}
    options = dict(orders=("morf", "lerf"), steps=6, low=0.0, high=1.0, repeats=2, seed=3, batch_size=4,
                   progress=False)
    whole = compare_heatmaps(linear_model(weights), images, maps, **options)
    comparison = Comparison(linear_model(weights), ["lrp", "noise"], 5, **options)
    chunks = [slice(3, 5), slice(0, 1), slice(1, 3)]
    for chunk in chunks:
        comparison.observe(images[chunk], chunk.start)
    for chunk in reversed(chunks):
        comparison.add_random(images[chunk], chunk.start)
        for name in ("noise", "lrp"):
            comparison.add(name, images[chunk], chunk.start, maps[name][chunk])
    assert comparison.report() == whole


def test_a_comparison_refuses_chunks_that_do_not_fit() -> None:
    model, images, heatmaps = noisy_problem()
    comparison = Comparison(model, ["a"], 3, steps=2, low=0.0, high=1.0, repeats=1, progress=False)
    with pytest.raises(InputError, match="image 0 has not been observed"):
        comparison.add("a", images[:2], 0, heatmaps[:2])
    with pytest.raises(InputError, match="a chunk of 2 image.s. starting at image 2 does not fit a run of 3"):
        comparison.observe(images[:2], 2)
    comparison.observe(images[:2], 0)
    with pytest.raises(InputError, match="method 'b' is not among"):
        comparison.add("b", images[:2], 0, heatmaps[:2])
    with pytest.raises(InputError, match="targets were predicted for earlier images and given for images 2..2"):
        comparison.observe(images[2:], 2, targets=np.array([1]))
    comparison.add("a", images[:2], 0, heatmaps[:2])
    with pytest.raises(InputError, match="image 2 has no curve for method 'a'"):
        comparison.report()


def test_write_comparison_and_table(tmp_path) -> None:
    model, images, heatmaps = noisy_problem()
    report = compare_heatmaps(model, images, {"lrp": heatmaps, "noise": np.random.default_rng(9).normal(
        size=heatmaps.shape)}, orders=("morf", "lerf"), steps=6, low=0.0, high=1.0, repeats=2, progress=False)
    json_path, png_path = write_comparison(report, tmp_path / "out")
    assert json.loads(open(json_path, encoding="utf-8").read()) == report
    assert open(png_path, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    table = format_table(report)
    lines = table.splitlines()
    assert lines[0].split() == ["method", "AOPC", "ABPC", "vs", "random", "95%", "CI", "PNG", "bytes", "entropy"]
    assert [line.split()[0] for line in lines[1:4]] == ["lrp", "noise", "random"]
    gain = report["methods"]["lrp"]["aopc"] - report["methods"]["random"]["aopc"]
    assert f"{gain:+.4f}" in lines[1] and "fixed grid" in lines[-1]


def test_complexity_rendering_and_entropy() -> None:
    heatmap = np.array([[0.0, 2.0], [-2.0, 1.0]])
    np.testing.assert_array_equal(heatmap_to_uint8(heatmap), [[0, 255], [255, 128]])
    np.testing.assert_array_equal(heatmap_to_uint8(np.zeros((3, 3))), 0)
    halves = np.ones((2, 16, 16))
    halves[:, :, :8] = 0
    halves[1] *= -1e-3
    np.testing.assert_allclose(histogram_entropy(halves), [1.0, 1.0], atol=1e-12)
    np.testing.assert_allclose(histogram_entropy(np.zeros((5, 5))), [0.0], atol=1e-12)
    uniform_levels = np.arange(256, dtype=float).reshape(16, 16)
    assert histogram_entropy(uniform_levels)[0] == pytest.approx(8.0, abs=1e-12)


def test_signed_and_unsigned_maps_are_rendered_alike() -> None:
    """Complexity depends on |h| only: a signed map, its negation and its magnitude score the same."""
    signed = np.random.default_rng(3).normal(size=(1, 32, 32))
    for measure in (png_bytes, histogram_entropy):
        assert measure(signed)[0] == measure(-signed)[0] == measure(np.abs(signed))[0]


def test_noisy_heatmaps_are_more_complex_than_smooth_ones() -> None:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:64, :64]
    smooth = np.exp(-((yy - 32.0) ** 2 + (xx - 32.0) ** 2) / 200.0)[None]
    noisy = smooth + rng.normal(scale=0.3, size=(1, 64, 64))
    assert png_bytes(noisy)[0] > 1.5 * png_bytes(smooth)[0]
    assert histogram_entropy(noisy)[0] > histogram_entropy(smooth)[0]
    assert png_bytes(smooth * 1e4)[0] == png_bytes(smooth)[0]
    summary = heatmap_complexity(np.concatenate([smooth, noisy]))
    assert summary["png_bytes"] == pytest.approx(png_bytes(np.concatenate([smooth, noisy])).mean())
    with pytest.raises(InputError, match="non-finite"):
        png_bytes(np.full((4, 4), np.inf))
