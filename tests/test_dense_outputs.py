"""Dense outputs (issue 12): seeds over a box, a mask or the whole map of an output map [K, H, W]
(``explainer.seeds``); the ops a U-Net needs (Resize nearest and linear, ConvTranspose) checked against PyTorch
autograd in float64 for both PyTorch exporters; LRP-0 conserving a region's logit sum; and the CLI's --region and
--mask, with the region drawn on the pictures and bad combinations refused with nothing written."""
from __future__ import annotations

import itertools
import warnings

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper
from PIL import Image

from explainer import Explainer, InputError, seeds
from explainer.ops.resize import ROUNDING, TRANSFORMS, interpolation_matrix
from explainer.pictures.regions import REGION_COLOUR, border, to_input
from tests.support.cli import cli
from tests.support.onnx_graphs import G
from tests.support.paths import DIGITS
from tests.support.unet import CLASSES, SHAPE, exported_unet

MAP = (CLASSES, 16, 16)
BOX = (2, 3, 10, 8)  # x0 y0 x1 y1: columns 2..9, rows 3..7


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("unets")


def _x(n: int = 2, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, *SHAPE)).astype(np.float32)


def _autograd(module, x: np.ndarray, seed: np.ndarray) -> np.ndarray:
    """∂(Σ seed ⊙ module(x))/∂x in float64."""
    import torch

    xt = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    (module.double()(xt) * torch.tensor(seed, dtype=torch.float64)).sum().backward()
    return xt.grad.numpy()


# ---------------------------------------------------------------------------------------------- seeds
def test_a_region_seed_is_the_half_open_box_of_one_channel():
    seed = seeds.region_seed(MAP, 1, BOX, n=2)
    assert seed.shape == (2, *MAP) and seed.dtype == np.float32
    expected = np.zeros(MAP, np.float32)
    expected[1, 3:8, 2:10] = 1.0
    assert np.array_equal(seed[0], expected) and np.array_equal(seed[1], expected)
    assert seeds.region_seed(MAP, 2, (0, 0, 16, 16)).sum() == 256 == seeds.region_seed(MAP, 2).sum()
    mask = np.zeros((16, 16), bool)
    mask[5, 7] = mask[0, 15] = True
    assert np.argwhere(seeds.region_seed(MAP, [0, 2], mask=mask.astype(np.uint8), n=2)).tolist() == \
        [[0, 0, 0, 15], [0, 0, 5, 7], [1, 2, 0, 15], [1, 2, 5, 7]]
    assert "box x 2..9, y 3..7" in seeds.describe(MAP, 1, BOX) and "40 of the 16×16" in seeds.describe(MAP, 1, BOX)


def test_without_a_channel_each_pixel_explains_its_arg_max_channel():
    logits = np.random.default_rng(3).normal(size=(2, *MAP)).astype(np.float32)
    indicator = seeds.dense_seed(MAP, logits.reshape(2, -1), region=BOX, seed="one-hot")
    winners = logits.argmax(axis=1)
    inside = seeds.region_mask(MAP, BOX)
    assert np.array_equal(indicator.sum(axis=1), np.broadcast_to(inside, (2, 16, 16)))
    for n, k, y, x in np.argwhere(indicator):
        assert winners[n, y, x] == k
    assert np.array_equal(seeds.dense_seed(MAP, logits, region=BOX), indicator * logits)


@pytest.mark.parametrize("call, fragment", [
    (lambda: seeds.region_mask(MAP, (2, 3, 17, 8)), "outside the output map of 16×16"),
    (lambda: seeds.region_mask(MAP, (-1, 3, 4, 8)), "outside"),
    (lambda: seeds.region_mask(MAP, (5, 3, 5, 8)), "empty or reversed"),
    (lambda: seeds.region_mask(MAP, (9, 3, 2, 8)), "empty or reversed"),
    (lambda: seeds.region_mask(MAP, (1, 2, 3)), "4 integers"),
    (lambda: seeds.region_mask(MAP, (1.0, 2, 3, 4)), "4 integers"),
    (lambda: seeds.region_mask(MAP, (True, 2, 3, 4)), "4 integers"),
    (lambda: seeds.check_mask(MAP, np.ones((8, 8))), "mask of shape [8, 8] does not fit the output map"),
    (lambda: seeds.check_mask(MAP, np.zeros((16, 16))), "selects no pixel"),
    (lambda: seeds.check_mask(MAP, np.full((16, 16), 0.5)), "values other than 0 and 1"),
    (lambda: seeds.check_mask(MAP, "abc"), "booleans or of 0 and 1"),
    (lambda: seeds.region_seed(MAP, 3, BOX), "channel 3 is out of range: the output map has 3 channel(s)"),
    (lambda: seeds.region_seed(MAP, 1.5, BOX), "must be an integer"),
    (lambda: seeds.region_seed(MAP, [0, 1, 2], BOX, n=2), "3 channels for a batch of 2"),
    (lambda: seeds.pixels(MAP, BOX, np.ones((16, 16))), "region or mask, not both"),
    (lambda: seeds.region_mask((10,), BOX), "needs an output of shape [N, K, H, W]; the explained output is [N, 10]"),
    (lambda: seeds.dense_seed(MAP, np.zeros((1, 768)), 0, seed="logits"), "'logit' or 'one-hot'"),
])
def test_bad_regions_masks_and_channels_are_one_line_input_errors(call, fragment):
    with pytest.raises(InputError) as info:
        call()
    assert fragment in str(info.value) and "\n" not in str(info.value)


def test_the_outline_is_the_chosen_pixels_border_scaled_to_the_input():
    chosen = seeds.region_mask((1, 8, 8), (1, 2, 4, 3))
    big = to_input(chosen, 16, 16)
    assert np.array_equal(np.argwhere(big)[[0, -1]], [[4, 2], [5, 7]])
    ring = border(big)
    assert ring.sum() == big.sum() and not border(np.pad(np.ones((3, 3), bool), 1))[2, 2]


# ---------------------------------------------------------------------------------------------- ops against ORT
def _ort_resize_matrix(size_in: int, scale: float, mode: str, transform: str, rounding: str) -> np.ndarray:
    """ORT's Resize along the last axis as a matrix (column j: the resize of the j-th one-hot row)."""
    node = helper.make_node("Resize", ["x", "", "scales"], ["y"], mode=mode, coordinate_transformation_mode=transform,
                            nearest_mode=rounding)
    graph = helper.make_graph([node], "resize", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                               [size_in, 1, 1, size_in])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              [helper.make_tensor("scales", TensorProto.FLOAT, [4], [1, 1, 1, scale])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)])
    model.ir_version = 9
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    columns = session.run(None, {"x": np.eye(size_in, dtype=np.float32).reshape(size_in, 1, 1, size_in)})[0]
    return columns.reshape(size_in, -1).T


_RESIZES = [("nearest", t, r, s) for t, r, s in itertools.product(TRANSFORMS, ROUNDING, (2.0, 0.5, 1.5))] + \
    [("linear", t, "floor", s) for t, s in itertools.product(TRANSFORMS, (2.0, 0.5, 2.5))]


@pytest.mark.parametrize("mode, transform, rounding, scale", _RESIZES)
def test_the_interpolation_matrix_is_what_onnxruntime_resizes_by(mode, transform, rounding, scale):
    size_in = 6
    ours = interpolation_matrix(size_in, int(np.floor(size_in * scale)), scale, mode, transform, rounding)
    np.testing.assert_allclose(ours, _ort_resize_matrix(size_in, scale, mode, transform, rounding), atol=1e-6)


@pytest.mark.parametrize("op, opset", [("Upsample", 9), ("Resize", 10)])
@pytest.mark.parametrize("mode", ["nearest", "linear"])
def test_upsample_and_resize_10_are_asymmetric_scales(op, opset, mode):
    """Upsample and Resize-10 (scales only, asymmetric coordinates, nearest rounding down): on a linear net the
    gradient predicts the forward's change along any direction exactly."""
    g = G(seed=1)
    model = g.model(["N", 2, 6, 6], g.node(op, [g.conv("x", 2, 3, pads=[1, 1, 1, 1]), g.w((4,), value=[1, 1, 2, 1.5])],
                                            mode=mode), opset=opset)
    ex = Explainer(model, "gradient", cache=False)
    assert ex.output_shape == (3, 12, 9)
    rng = np.random.default_rng(0)
    x, step = rng.normal(size=(2, 1, 2, 6, 6)).astype(np.float32)
    seed = rng.normal(size=(1, 3 * 12 * 9)).astype(np.float32)
    change = float(((ex.forward(x + step) - ex.forward(x)) * seed).sum())
    assert change == pytest.approx(float((ex.explain(x, seed=seed).relevance * step).sum()), rel=1e-4)


@pytest.mark.parametrize("build, reason", [
    (lambda g: g.node("Resize", [g.conv("x", 2, 3), "", g.w((4,), value=[1, 1, 2, 2])], mode="cubic"),
     "Resize with mode 'cubic'"),
    (lambda g: g.node("Resize", [g.conv("x", 2, 3), "", g.w((4,), value=[1, 2, 2, 2])]),
     "Resize of the batch or channel axis"),
    (lambda g: g.node("ConvTranspose", [g.conv("x", 2, 3), g.w((3, 2, 2, 2))], strides=[2, 2], output_shape=[8, 8]),
     "ConvTranspose with an output_shape attribute"),
])
def test_what_the_upsampling_ops_refuse_is_named(build, reason):
    from explainer.errors import UnsupportedOpError

    g = G()
    with pytest.raises(UnsupportedOpError, match=reason):
        Explainer(g.model(["N", 2, 6, 6], build(g), opset=17), "gradient", cache=False)


# ---------------------------------------------------------------------------------------------- the U-Net
_UPS = [("nearest", "transpose"), ("bilinear", "bilinear")]


@pytest.mark.parametrize("dynamo", [False, pytest.param(True, marks=pytest.mark.slow)], ids=["legacy", "dynamo"])
@pytest.mark.parametrize("up", _UPS + [pytest.param(("nearest", "nearest"), marks=pytest.mark.slow)],
                         ids=lambda u: "-".join(u))
def test_unet_gradient_of_a_region_sum_is_autograds(folder, up, dynamo):
    from tests.support.unet import seeded_unet

    ex = Explainer(exported_unet(folder, up=up, dynamo=dynamo), "gradient", cache=False)
    assert ex.output_shape == MAP
    x = _x()
    seed = seeds.region_seed(MAP, [1, 2], BOX, n=2)
    reference = _autograd(seeded_unet(up=up), x, seed)
    e = ex.explain(x, seed=seed)
    np.testing.assert_allclose(e.relevance, reference, rtol=1e-4, atol=1e-4 * np.abs(reference).max())


def test_a_region_seed_is_the_sum_of_its_pixel_seeds(folder):
    """The gradient is linear in the seed: a 2×2 box's explanation is the sum of its four pixels' (one batch)."""
    ex = Explainer(exported_unet(folder), "gradient", cache=False)
    x = _x(1)
    box = (5, 6, 7, 8)
    pixels = [seeds.region_seed(MAP, 0, (c, r, c + 1, r + 1))[0] for r in (6, 7) for c in (5, 6)]
    whole = ex.explain(x, seed=seeds.region_seed(MAP, 0, box)).relevance[0]
    parts = ex.explain(np.repeat(x, 4, axis=0), seed=np.stack(pixels)).relevance
    np.testing.assert_allclose(parts.sum(axis=0), whole, rtol=1e-5, atol=1e-6 * np.abs(whole).max())
    assert np.abs(whole).max() > 0 and not np.allclose(parts[0], parts[3])


@pytest.mark.parametrize("dynamo", [False, pytest.param(True, marks=pytest.mark.slow)], ids=["legacy", "dynamo"])
@pytest.mark.parametrize("up", _UPS, ids=lambda u: "-".join(u))
def test_lrp_on_a_bias_free_unet_conserves_the_region_logit_sum(folder, up, dynamo):
    """Without biases every share of the chosen logits reaches the input under LRP-0, and under ε = 1e-6 nearly all:
    the logit seed (indicator × logits) sums to the region's logit sum, and so does the relevance; LRP-0's is
    gradient × input."""
    ex = Explainer(exported_unet(folder, up=up, dynamo=dynamo, bias=False), "lrp-0", cache=False)
    x = _x(2, seed=4)
    logits = ex.forward(x).reshape(2, *MAP)
    sums = logits[:, :, 3:8, 2:10].astype(np.float64).sum(axis=(2, 3))
    largest = np.argsort(-np.abs(sums).min(axis=0))  # channels whose box sums lie farthest from 0 in both samples
    for method, channel in (("lrp-0", largest[0]), ("lrp-epsilon", largest[1])):
        other = ex if method == "lrp-0" else ex.with_method(method, epsilon=1e-6)
        seed = seeds.dense_seed(MAP, logits, int(channel), BOX)
        total = sums[:, channel]
        assert np.abs(total).min() > 1.0
        np.testing.assert_allclose(seed.reshape(2, -1).sum(axis=1), total, rtol=1e-5)
        e = other.explain(x, seed=seed)
        np.testing.assert_allclose(e.relevance.reshape(2, -1).sum(axis=1), total, rtol=1e-3)
        np.testing.assert_allclose(e.conservation, 1.0, rtol=1e-3)
        if method == "lrp-0":  # on a bias-free ReLU net LRP-0 is gradient × input, the resizes' rules included
            gradient = ex.with_method("gradient").explain(x, seed=seeds.region_seed(MAP, int(channel), BOX, n=2))
            np.testing.assert_allclose(e.relevance, x * gradient.relevance, rtol=1e-3,
                                       atol=1e-5 * np.abs(e.relevance).max())


def _upsampling_net():
    """ConvTranspose with output padding and groups, a dilated one, a bilinear resize to a size with aligned
    corners and a nearest downscale: [N, 2, 8, 8] -> [N, 3, 8, 7]."""
    import torch
    from torch import nn

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.ConvTranspose2d(2, 4, 3, stride=2, padding=1, output_padding=1, groups=2)
            self.b = nn.ConvTranspose2d(4, 3, 3, stride=1, padding=2, dilation=2)

        def forward(self, x):
            h = torch.relu(self.a(x))
            h = nn.functional.interpolate(self.b(h), size=(16, 14), mode="bilinear", align_corners=True)
            return nn.functional.interpolate(h, scale_factor=0.5, mode="nearest")

    torch.manual_seed(0)
    return Net().eval()


def test_conv_transpose_and_resize_variants_match_autograd(tmp_path):
    import torch

    net = _upsampling_net()
    path = tmp_path / "up.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (torch.randn(1, 2, 8, 8),), str(path), dynamo=False, opset_version=17,
                          input_names=["x"], output_names=["y"], dynamic_axes={"x": {0: "n"}, "y": {0: "n"}})
    ex = Explainer(path, "gradient", cache=False)
    assert ex.output_shape == (3, 8, 7)
    x = np.random.default_rng(0).normal(size=(2, 2, 8, 8)).astype(np.float32)
    seed = np.random.default_rng(1).normal(size=(2, 3, 8, 7)).astype(np.float32)
    reference = _autograd(net, x, seed)
    np.testing.assert_allclose(ex.explain(x, seed=seed).relevance, reference, rtol=1e-4,
                               atol=1e-4 * np.abs(reference).max())


# ---------------------------------------------------------------------------------------------- API keywords
def test_explain_takes_a_channel_with_a_region_or_a_mask(folder):
    """``target`` is a channel of an output map; ``region``/``mask`` choose its pixels; neither target nor region:
    each pixel's arg-max channel over the whole map (all run as seed arrays)."""
    ex = Explainer(exported_unet(folder), "gradient", cache=False)
    x = _x()
    logits = ex.forward(x)
    mask = seeds.region_mask(MAP, BOX)
    by_seed = ex.explain(x, seed=seeds.region_seed(MAP, 1, BOX, n=2)).relevance
    for e in (ex.explain(x, 1, region=BOX), ex.explain(x, 1, mask=mask)):
        np.testing.assert_allclose(e.relevance, by_seed, rtol=1e-6)
        assert e.seed == "array" and list(e.target) == [-1, -1]
    default = ex.explain(x).relevance
    np.testing.assert_allclose(default, ex.explain(x, seed=seeds.dense_seed(MAP, logits, seed="one-hot")).relevance,
                               rtol=1e-6)
    with pytest.raises(InputError, match="outside the output map"):
        ex.explain(x, 1, region=(0, 0, 17, 4))


def test_a_classes_by_one_by_one_output_is_a_score_vector_not_a_map():
    assert not seeds.is_map((1000, 1, 1)) and seeds.is_map((3, 16, 16)) and seeds.is_map((1, 2, 1))


# ---------------------------------------------------------------------------------------------- CLI
@pytest.fixture(scope="module")
def image(tmp_path_factory):
    path = tmp_path_factory.mktemp("images") / "noise.png"
    Image.fromarray(np.random.default_rng(5).integers(0, 256, (16, 16), dtype=np.uint8)).save(path)
    return path


def _green(picture: Image.Image) -> np.ndarray:
    return np.all(np.array(picture.convert("RGB")) == REGION_COLOUR, axis=-1)


def test_cli_region_draws_the_box_on_the_pictures(capsys, folder, image, tmp_path):
    out = tmp_path / "out"
    rc, stdout, err = cli(capsys, "explain", exported_unet(folder), image, "--target", "1", "--region", *BOX,
                          "--method", "gradient", "--out", out)
    assert rc == 0, err
    assert "output map [3, 16, 16]" in stdout and "sum of channel 1 over box x 2..9, y 3..7" in stdout
    assert "explained values: 40 (pixels per channel: 1: 40)" in stdout
    assert sorted(p.name for p in out.iterdir()) == ["noise.npz", "noise_heatmap.png", "noise_overlay.png"]
    saved = np.load(out / "noise.npz")
    assert np.array_equal(saved["explained"], seeds.region_seed(MAP, 1, BOX)[0].astype(bool))
    assert list(saved["region"]) == list(BOX) and int(saved["channel"]) == 1
    for name in ("heatmap", "overlay"):
        picture = Image.open(out / f"noise_{name}.png")
        assert picture.size == (256, 256)  # 16 px enlarged ×16
        green = _green(picture)
        x0, y0, x1, y1 = (16 * v for v in BOX)
        assert green[y0, x0:x1].all() and green[y1 - 1, x0:x1].all() and green[y0:y1, x0].all()
        assert green[y0:y1, x1 - 1].all() and green.sum() == (x1 - x0) * (y1 - y0) - (x1 - x0 - 4) * (y1 - y0 - 4)
        assert not green[y0 + 8, x0 + 8] and not green[:y0 - 1].any()


def test_cli_mask_and_a_stride_two_head(capsys, image, tmp_path):
    """A head at half the input's resolution: the mask's outline is drawn scaled ×2 onto the input, and said so."""
    g = G(seed=2)
    model = tmp_path / "half.onnx"
    onnx.save(g.model(["N", 1, 16, 16], g.conv("x", 1, 2, strides=[2, 2], pads=[1, 1, 1, 1])), str(model))
    mask = np.zeros((8, 8), np.uint8)
    mask[2:4, 1:6] = 1
    np.save(tmp_path / "mask.npy", mask)
    out = tmp_path / "out"
    rc, stdout, err = cli(capsys, "explain", model, image, "--mask", tmp_path / "mask.npy", "--target", "0",
                          "--method", "gradient", "--picture-size", "0", "--sr", "--out", out)
    assert rc == 0, err
    assert "the output map is 8×8 and the input 16×16: the region is drawn scaled" in stdout
    for name in ("heatmap", "overlay", "sr", "sr_overlay"):
        green = _green(Image.open(out / f"noise_{name}.png"))
        assert green.shape == (16, 16) and np.array_equal(np.argwhere(green)[[0, -1]], [[4, 2], [7, 11]]), name
        assert green.sum() == 4 * 10 - 2 * 8, name


@pytest.mark.parametrize("extra, fragment", [
    (["--region", "2", "3", "17", "8"], "outside the output map of 16×16"),
    (["--region", "5", "3", "2", "8"], "empty or reversed"),
    (["--target", "3"], "channel 3 is out of range"),
    (["--region", "0", "0", "4", "4", "--mask", "MASK"], "--region or --mask, not both"),
    (["--mask", "MASK"], "mask of shape [4, 4] does not fit the output map: expected [16, 16]"),
    (["--mask", "PNG"], "mask of shape [4, 4] does not fit the output map: expected [16, 16]"),
    (["--mask", "TEXT"], "cannot read the mask as a .npy array or an image"),
])
def test_cli_bad_regions_exit_2_and_write_nothing(capsys, folder, image, tmp_path, extra, fragment):
    files = {"MASK": tmp_path / "mask.npy", "PNG": tmp_path / "mask.png", "TEXT": tmp_path / "mask.txt"}
    np.save(files["MASK"], np.ones((4, 4), bool))
    Image.fromarray(np.full((4, 4), 255, np.uint8)).save(files["PNG"])
    files["TEXT"].write_text("not a mask")
    out = tmp_path / "out"
    args = [str(files.get(a, a)) for a in extra]
    rc, _, err = cli(capsys, "explain", exported_unet(folder), image, *args, "--method", "gradient", "--out", out)
    assert rc == 2 and fragment in err and err.count("\n") == 1 and "Traceback" not in err
    assert not out.exists()


def test_cli_region_on_a_score_vector_or_an_array_input_is_refused(capsys, tmp_path):
    out = tmp_path / "out"
    image = tmp_path / "digit.png"
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(image)
    rc, _, err = cli(capsys, "explain", DIGITS, image, "--region", "0", "0", "4", "4", "--out", out)
    assert rc == 2 and "needs an output of shape [N, K, H, W]; the explained output is [N, 10]" in err
    np.save(tmp_path / "x.npy", np.zeros((1, 1, 32, 32), np.float32))
    rc, _, err = cli(capsys, "explain", DIGITS, tmp_path / "x.npy", "--region", "0", "0", "4", "4", "--out", out)
    assert rc == 2 and "--region and --mask are for image inputs" in err
    assert not out.exists()
