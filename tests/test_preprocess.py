"""Preprocessing presets, layouts, bounds, resize/centre-crop and input-spec resolution."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from explainer.errors import InputError
from explainer.images.preprocess import (
    PRESETS,
    Preprocessing,
    fit_image,
    from_model_input,
    input_bounds,
    load_batch,
    model_preprocessing,
    model_resize,
    preprocessing,
    resize_center_crop,
    to_model_input,
)
from explainer.images.spec import InputSpec
from explainer.limits import check_bytes, format_bytes, forward_bytes, graph_bytes, max_bytes, parse_bytes

# 2x2 RGB image; pixel (row, col) -> (R, G, B)
IMAGE = np.array(
    [[[0, 128, 255], [10, 20, 30]],
     [[255, 0, 64], [100, 200, 50]]],
    dtype=np.uint8,
)
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406])
IMAGENET_STD = np.array([0.229, 0.224, 0.225])
CAFFE_BGR_MEAN = np.array([103.939, 116.779, 123.68])
TOL = dict(rtol=1e-6, atol=1e-5)


def hand_nhwc(name: str) -> np.ndarray:
    """Expected NHWC model input for IMAGE, written out per preset from its textbook formula."""
    rgb = IMAGE.astype(np.float64)
    if name == "imagenet":
        out = (rgb / 255 - IMAGENET_MEAN) / IMAGENET_STD
    elif name == "unit":
        out = rgb / 255
    elif name == "caffe":
        out = rgb[..., [2, 1, 0]] - CAFFE_BGR_MEAN
    else:
        out = rgb
    return out[None]


@pytest.mark.parametrize("name", ["imagenet", "unit", "caffe", "raw"])
def test_presets_match_hand_computed_values_in_both_layouts(name: str) -> None:
    prep = preprocessing(name)
    expected = hand_nhwc(name)
    nhwc = to_model_input(IMAGE, prep, "NHWC")
    nchw = to_model_input([IMAGE], prep, "NCHW")
    assert nhwc.dtype == np.float32 and nchw.dtype == np.float32
    assert nhwc.shape == (1, 2, 2, 3) and nchw.shape == (1, 3, 2, 2)
    np.testing.assert_allclose(nhwc, expected, **TOL)
    np.testing.assert_allclose(nchw, expected.transpose(0, 3, 1, 2), **TOL)


def test_single_pixel_values_spelled_out() -> None:
    """A few entries computed by hand, independent of the helper above."""
    x = to_model_input(IMAGE, preprocessing("imagenet"), "NCHW")
    assert x[0, 0, 0, 0] == pytest.approx((0 - 0.485) / 0.229, abs=1e-5)  # R of pixel (0,0)
    assert x[0, 2, 0, 0] == pytest.approx((1 - 0.406) / 0.225, abs=1e-5)  # B of pixel (0,0) = 255
    caffe = to_model_input(IMAGE, preprocessing("caffe"), "NCHW")
    # channel 0 is blue: pixel (0,0) has B = 255, pixel (1,0) has B = 64
    assert caffe[0, 0, 0, 0] == pytest.approx(255 - 103.939, abs=1e-4)
    assert caffe[0, 0, 1, 0] == pytest.approx(64 - 103.939, abs=1e-4)
    # channel 2 is red: pixel (1,0) has R = 255
    assert caffe[0, 2, 1, 0] == pytest.approx(255 - 123.68, abs=1e-4)


def test_preset_fields() -> None:
    caffe = preprocessing("caffe")
    assert caffe.bgr and caffe.scale == 255 and caffe.mean == tuple(CAFFE_BGR_MEAN) and caffe.std == (1.0, 1.0, 1.0)
    imagenet = preprocessing("ImageNet")
    assert not imagenet.bgr and imagenet.scale == 1 and imagenet.name == "imagenet"
    assert set(PRESETS) == {"imagenet", "unit", "caffe", "raw", "inception"}
    inception = preprocessing("inception")
    x = to_model_input(np.array([[[0, 255, 128]]], dtype=np.uint8), inception, "NHWC")
    np.testing.assert_allclose(x.reshape(-1)[:3], [-1.0, 1.0, 128 / 255 * 2 - 1], **TOL)


def test_one_channel_imagenet_uses_mean_of_means() -> None:
    prep = preprocessing("imagenet", channels=1)
    assert prep.channels == 1
    assert prep.mean[0] == pytest.approx(IMAGENET_MEAN.mean(), abs=1e-12)
    assert prep.std[0] == pytest.approx(IMAGENET_STD.mean(), abs=1e-12)
    gray = np.array([[0, 255]], dtype=np.uint8)
    x = to_model_input(gray, prep, "NCHW")
    assert x.shape == (1, 1, 1, 2)
    np.testing.assert_allclose(x[0, 0, 0], (np.array([0.0, 1.0]) - IMAGENET_MEAN.mean()) / IMAGENET_STD.mean(), **TOL)


def test_overrides_are_on_unit_scale_and_converted() -> None:
    prep = preprocessing("imagenet", mean=[0.5, 0.5, 0.5], std=[0.25])
    assert prep.mean == (0.5, 0.5, 0.5) and prep.std == (0.25, 0.25, 0.25)
    np.testing.assert_allclose(to_model_input(IMAGE, prep, "NHWC")[0], (IMAGE / 255 - 0.5) / 0.25, **TOL)
    caffe = preprocessing("caffe", mean=[0.5])
    assert caffe.mean == pytest.approx((127.5,) * 3) and caffe.std == (1.0, 1.0, 1.0)
    np.testing.assert_allclose(to_model_input(IMAGE, caffe, "NHWC")[0], IMAGE[..., ::-1] - 127.5, **TOL)


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        (dict(mean=[0.1, 0.2]), "mean override has 2 values"),
        (dict(std=[0.1, 0.2, 0.3, 0.4]), "std override has 4 values"),
        (dict(std=[0.1, 0.0, 0.2]), "must be finite and > 0"),
        (dict(mean=["a", "b", "c"]), "not a list of numbers"),
        (dict(channels=4), "4 input channels"),
    ],
)
def test_bad_preprocessing_options(kwargs: dict, fragment: str) -> None:
    with pytest.raises(InputError, match=fragment):
        preprocessing("imagenet", **kwargs)


def test_unknown_preset_names_choices() -> None:
    with pytest.raises(InputError, match="unknown preprocessing 'torch'.*imagenet, unit, caffe, raw"):
        preprocessing("torch")


@pytest.mark.parametrize("name", ["imagenet", "unit", "caffe", "raw"])
def test_input_bounds_follow_preset_formulas(name: str) -> None:
    prep = preprocessing(name)
    low, high = input_bounds(prep, 3)
    expected = {
        "imagenet": ((0 - IMAGENET_MEAN) / IMAGENET_STD, (1 - IMAGENET_MEAN) / IMAGENET_STD),
        "unit": (np.zeros(3), np.ones(3)),
        "caffe": (-CAFFE_BGR_MEAN, 255 - CAFFE_BGR_MEAN),
        "raw": (np.zeros(3), np.full(3, 255.0)),
    }[name]
    assert low.shape == (3,) and high.shape == (3,)
    np.testing.assert_allclose(low, expected[0], **TOL)
    np.testing.assert_allclose(high, expected[1], **TOL)
    assert np.all(low < high)
    # the bounds are exactly what black and white images map to
    black = to_model_input(np.zeros((1, 1, 3), np.uint8), prep, "NCHW")[0, :, 0, 0]
    white = to_model_input(np.full((1, 1, 3), 255, np.uint8), prep, "NCHW")[0, :, 0, 0]
    assert np.array_equal(black, low) and np.array_equal(white, high)


def test_input_bounds_channel_mismatch() -> None:
    with pytest.raises(InputError, match="model has 1 channel"):
        input_bounds(preprocessing("imagenet"), 1)


@pytest.mark.parametrize("name", ["imagenet", "unit", "caffe", "raw"])
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_round_trip(name: str, layout: str) -> None:
    rng = np.random.default_rng(7)
    images = rng.integers(0, 256, size=(3, 5, 4, 3), dtype=np.uint8)
    prep = preprocessing(name)
    back = from_model_input(to_model_input(images, prep, layout), prep, layout)
    assert back.dtype == np.uint8 and back.shape == images.shape
    assert np.array_equal(back, images)


def test_from_model_input_clips_out_of_range() -> None:
    prep = preprocessing("unit")
    x = np.array([-0.5, 0.5, 2.0], dtype=np.float32).reshape(1, 3, 1, 1)
    assert from_model_input(x, prep, "NCHW").ravel().tolist() == [0, 128, 255]


def test_conversion_errors() -> None:
    prep = preprocessing("imagenet")
    with pytest.raises(InputError, match="layout 'CHW'"):
        to_model_input(IMAGE, prep, "CHW")
    with pytest.raises(InputError, match="uint8"):
        to_model_input(IMAGE.astype(np.float32), prep)
    with pytest.raises(InputError, match="1 channel"):
        to_model_input(IMAGE[..., :1], prep)
    with pytest.raises(InputError, match="share a shape"):
        to_model_input([IMAGE, IMAGE[:1]], prep)
    with pytest.raises(InputError, match="4-D"):
        from_model_input(np.zeros((3, 2, 2)), prep)
    with pytest.raises(InputError, match="3 channel"):
        Preprocessing("x", mean=(0.0,), std=(1.0,), scale=1.0, bgr=True)


def test_resize_center_crop_shapes_like_torchvision() -> None:
    image = np.zeros((300, 400, 3), np.uint8)
    assert resize_center_crop(image, 224).shape == (224, 224, 3)
    assert resize_center_crop(image[:, :, :1], 32).shape == (32, 32, 1)
    assert resize_center_crop(image[:, :, 0], (20, 40)).shape == (20, 40)
    tall = np.zeros((400, 100, 3), np.uint8)
    assert resize_center_crop(tall, (50, 30), resize=40).shape == (50, 30, 3)


def test_resize_shorter_side_default_ratio() -> None:
    """Size 224 on a 300 x 400 image: shorter side to 256, longer to int(400 * 256 / 300) = 341
    (torchvision's Resize(256)), then the crop starts at round(32 / 2) = 16, round(117 / 2) = 58."""
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=(300, 400, 3), dtype=np.uint8)
    resized = np.asarray(Image.fromarray(image).resize((341, 256), Image.Resampling.BILINEAR))
    assert np.array_equal(resize_center_crop(image, 224), resized[16:240, 58:282])
    same = rng.integers(0, 256, size=(256, 320, 3), dtype=np.uint8)
    assert np.array_equal(resize_center_crop(same, 224), same[16:240, 48:272])


def test_crop_is_centred() -> None:
    """A white square marked in the middle of a black image lands in the middle of the crop."""
    image = np.zeros((90, 150, 3), np.uint8)
    image[40:50, 70:80] = 255
    out = resize_center_crop(image, 40, resize=45)  # scale by 0.5: 45 x 75, crop offsets (2, 18)
    bright = np.argwhere(out[..., 0] > 127)
    centre = bright.mean(axis=0)
    np.testing.assert_allclose(centre, [19.5, 19.5], atol=1.0)
    assert out[0].max() == 0 and out[-1].max() == 0 and out[:, 0].max() == 0 and out[:, -1].max() == 0


def test_non_square_target_covers_crop() -> None:
    image = np.full((100, 100, 3), 200, np.uint8)
    out = resize_center_crop(image, (30, 60))
    assert out.shape == (30, 60, 3) and np.all(out == 200)


def test_resize_errors() -> None:
    image = np.zeros((10, 10, 3), np.uint8)
    with pytest.raises(InputError, match="resize \\(100\\) must be at least"):
        resize_center_crop(image, 224, resize=100)
    with pytest.raises(InputError, match="size must be"):
        resize_center_crop(image, 0)
    with pytest.raises(InputError, match="uint8"):
        resize_center_crop(image.astype(float), 4)
    with pytest.raises(InputError, match="shape"):
        resize_center_crop(np.zeros((4, 4, 2), np.uint8), 2)


def test_input_spec_from_shape_and_resolve() -> None:
    nchw = InputSpec.from_shape([1, 3, 224, 224])
    assert (nchw.layout, nchw.channels, nchw.resolve()) == ("NCHW", 3, (224, 224))
    assert nchw.batch_shape(2) == (2, 3, 224, 224)
    nhwc = InputSpec.from_shape(["batch", 32, 48, 1])
    assert (nhwc.layout, nhwc.channels, nhwc.resolve()) == ("NHWC", 1, (32, 48))
    assert nhwc.batch_shape(4) == (4, 32, 48, 1)
    dynamic = InputSpec.from_shape(["N", 3, "H", "W"], name="data")
    assert dynamic.resolve(64) == (64, 64) and dynamic.resolve((32, 48)) == (32, 48)
    with pytest.raises(InputError, match="'data' has a dynamic height and width; pass an explicit size"):
        dynamic.resolve()
    with pytest.raises(InputError, match="fixed height of 224, but size 100"):
        nchw.resolve(100)
    with pytest.raises(InputError, match="cannot tell the channel axis"):
        InputSpec.from_shape([1, 8, 8, 8])
    with pytest.raises(InputError, match="dynamic channel"):
        InputSpec.from_shape([1, "C", 8, 8], layout="NCHW")
    with pytest.raises(InputError, match="4-D"):
        InputSpec.from_shape([3, 224, 224])


def test_load_batch_end_to_end(tmp_path) -> None:
    for i, shape in enumerate([(40, 60, 3), (50, 30, 3)]):
        Image.fromarray(np.full(shape, 60 * i, np.uint8)).save(tmp_path / f"{i}.png")
    spec = InputSpec(layout="NCHW", channels=3)
    prep = preprocessing("unit")
    x, pixels = load_batch(sorted(tmp_path.iterdir()), spec, prep, size=16)
    assert x.shape == (2, 3, 16, 16) and pixels.shape == (2, 16, 16, 3)
    np.testing.assert_allclose(x[1], 60 / 255, atol=1e-6)
    with pytest.raises(InputError, match="1 channel"):
        load_batch([tmp_path / "0.png"], InputSpec("NCHW", 1), prep, size=16)


# ------------------------------------------------------------------------------- channel order and resize modes
def test_channel_order_bgr_for_imagenet_reverses_pixels_and_statistics() -> None:
    """An ImageNet model trained on OpenCV's BGR images: channel 0 is blue, normalised with blue's mean and std."""
    prep = preprocessing("imagenet", channel_order="BGR")
    assert prep.bgr and prep.channel_order == "bgr"
    assert prep.mean == (0.406, 0.456, 0.485) and prep.std == (0.225, 0.224, 0.229)
    x = to_model_input(IMAGE, prep, "NHWC")
    np.testing.assert_allclose(x, hand_nhwc("imagenet")[..., ::-1], **TOL)
    assert x[0, 0, 0, 0] == pytest.approx((1 - 0.406) / 0.225, abs=1e-5)  # B of pixel (0,0) = 255
    assert "BGR channel order" in prep.describe() and "BGR" not in preprocessing("imagenet").describe()
    # from_model_input inverts it, and the input bounds follow the order
    np.testing.assert_array_equal(from_model_input(x, prep, "NHWC")[0], IMAGE)
    low, _ = input_bounds(prep, 3)
    np.testing.assert_allclose(low, -np.array([0.406, 0.456, 0.485]) / np.array([0.225, 0.224, 0.229]), **TOL)


def test_channel_order_rgb_for_caffe_and_overrides_in_model_order() -> None:
    rgb = preprocessing("caffe", channel_order="rgb")
    assert not rgb.bgr and rgb.mean == tuple(CAFFE_BGR_MEAN[::-1])
    np.testing.assert_allclose(to_model_input(IMAGE, rgb, "NHWC")[0], IMAGE - CAFFE_BGR_MEAN[::-1], **TOL)
    # the preset's own order is kept when it is asked for, and --mean is taken in the model's order
    assert preprocessing("caffe", channel_order="bgr") == preprocessing("caffe")
    custom = preprocessing("unit", channel_order="bgr", mean=[0.1, 0.2, 0.3])
    np.testing.assert_allclose(to_model_input(IMAGE, custom, "NHWC")[0], IMAGE[..., ::-1] / 255 - [0.1, 0.2, 0.3],
                               **TOL)
    # a one-channel model has no order to change
    assert not preprocessing("imagenet", channels=1, channel_order="bgr").bgr
    with pytest.raises(InputError, match="unknown channel order 'gbr'.*rgb, bgr"):
        preprocessing("imagenet", channel_order="gbr")


def test_model_metadata_gives_channel_order_and_resize_defaults() -> None:
    metadata = {"explainer.preprocess": "imagenet", "explainer.channel_order": "bgr", "explainer.resize": "letterbox",
                "explainer.fill": "114, 114, 114"}
    assert model_preprocessing(metadata, 3).bgr
    assert not model_preprocessing(metadata, 3, channel_order="rgb").bgr     # the option wins
    assert model_resize(metadata) == ("letterbox", (114, 114, 114))
    assert model_resize(metadata, "stretch", 0) == ("stretch", 0)
    assert model_resize({}) == ("center-crop", 0)
    with pytest.raises(InputError, match="model metadata 'explainer.resize' is 'squash'.*center-crop, letterbox"):
        model_resize({"explainer.resize": "squash"})
    with pytest.raises(InputError, match="model metadata 'explainer.fill' is '300'"):
        model_resize({"explainer.fill": "300"})
    with pytest.raises(InputError, match="model metadata 'explainer.channel_order'"):
        model_preprocessing({"explainer.channel_order": "bgra"}, 3)


def test_letterbox_keeps_the_whole_image_centred_on_the_fill() -> None:
    wide = np.random.default_rng(4).integers(0, 256, size=(20, 40, 3), dtype=np.uint8)
    out = fit_image(wide, 20, mode="letterbox", fill=(1, 2, 3))
    assert out.shape == (20, 20, 3)
    assert (out[:5] == (1, 2, 3)).all() and (out[15:] == (1, 2, 3)).all()
    expected = np.asarray(Image.fromarray(wide).resize((20, 10), Image.Resampling.BILINEAR))
    np.testing.assert_array_equal(out[5:15], expected)
    tall = fit_image(wide.transpose(1, 0, 2)[:, :, :1], (10, 10), mode="letterbox", fill=7)   # 40 x 20 x 1
    assert tall.shape == (10, 10, 1) and (tall[:, :2] == 7).all() and (tall[:, 7:] == 7).all()
    gray = fit_image(wide[..., 0], (20, 20), mode="letterbox")                              # 2-D stays 2-D
    assert gray.shape == (20, 20) and (gray[:5] == 0).all()


def test_stretch_scales_to_the_size_and_model_sized_images_stay_untouched() -> None:
    image = np.random.default_rng(5).integers(0, 256, size=(30, 50, 3), dtype=np.uint8)
    out = fit_image(image, (16, 24), mode="stretch")
    np.testing.assert_array_equal(out, np.asarray(Image.fromarray(image).resize((24, 16), Image.Resampling.BILINEAR)))
    for mode in ("center-crop", "letterbox", "stretch"):
        np.testing.assert_array_equal(fit_image(image, (30, 50), mode=mode), image)
    assert fit_image(image, 12, mode="Centre_Crop").shape == (12, 12, 3)


@pytest.mark.parametrize("kwargs, fragment", [
    (dict(mode="squash"), "unknown resize mode 'squash'"),
    (dict(mode="letterbox", fill=256), "fill 256"),
    (dict(mode="letterbox", fill=(1, 2)), "one integer 0..255 or 3"),
    (dict(mode="letterbox", fill=1.5), "fill 1.5"),
    (dict(mode="stretch", resize=20), "does not apply to resize mode 'stretch'"),
])
def test_fit_image_refuses_bad_options(kwargs, fragment) -> None:
    with pytest.raises(InputError, match=fragment):
        fit_image(np.zeros((8, 12, 3), np.uint8), 6, **kwargs)


def test_load_batch_letterbox_and_bad_fill_before_reading(tmp_path) -> None:
    Image.fromarray(np.full((10, 30, 3), 200, np.uint8)).save(tmp_path / "wide.png")
    spec = InputSpec(layout="NCHW", channels=3)
    x, pixels = load_batch([tmp_path / "wide.png"], spec, preprocessing("unit"), size=12, resize_mode="letterbox",
                           fill=50)
    assert pixels.shape == (1, 12, 12, 3)
    assert (pixels[0, :4] == 50).all() and (pixels[0, 4:8] == 200).all() and (pixels[0, 8:] == 50).all()
    np.testing.assert_allclose(x[0, :, 0, 0], 50 / 255, atol=1e-6)
    with pytest.raises(InputError, match="fill"):
        load_batch([tmp_path / "absent.png"], spec, preprocessing("unit"), size=12, resize_mode="letterbox", fill=-1)


# ---------------------------------------------------------------------------------------------- memory limits
@pytest.mark.parametrize("text, value", [("4096", 4096), ("512M", 512 * 2**20), ("32g", 32 * 2**30),
                                         ("1.5GiB", 3 * 2**29), (" 8 GB ", 8 * 2**30), ("2T", 2 * 2**40)])
def test_parse_bytes(text, value) -> None:
    assert parse_bytes(text) == value


@pytest.mark.parametrize("text", ["", "-1", "0", "1.5X", "lots", "inf", "nan"])
def test_parse_bytes_refuses(text) -> None:
    with pytest.raises(ValueError):
        parse_bytes(text)


def test_max_bytes_from_the_environment(monkeypatch) -> None:
    monkeypatch.delenv("EXPLAINER_MAX_BYTES", raising=False)
    assert max_bytes() == 4 * 2**30
    monkeypatch.setenv("EXPLAINER_MAX_BYTES", "64G")
    assert max_bytes() == 64 * 2**30
    monkeypatch.setenv("EXPLAINER_MAX_BYTES", "lots")
    with pytest.raises(InputError, match="EXPLAINER_MAX_BYTES='lots' is not a byte count"):
        max_bytes()


def test_format_bytes_and_check_bytes(monkeypatch) -> None:
    assert [format_bytes(n) for n in (0, 1023, 1536, 4 * 2**30, 3 * 10**10 * 4)] == \
        ["0 B", "1023 B", "1.5 KiB", "4 GiB", "112 GiB"]
    assert format_bytes(10**400) == "about 2^1328 B"
    monkeypatch.setenv("EXPLAINER_MAX_BYTES", "1K")
    assert check_bytes(1024, "a request") == 1024
    with pytest.raises(InputError, match=r"^a request needs 1 KiB of memory, more than the limit of 1023 B \(set "
                                         r"EXPLAINER_MAX_BYTES to allow more\)$") as caught:
        monkeypatch.setenv("EXPLAINER_MAX_BYTES", "1023")
        check_bytes(1024, "a request")
    assert "\n" not in str(caught.value)


def test_graph_estimates() -> None:
    shapes = [(1, 3, 8, 8), (1, 16, 8, 8), (1, 16, 4, 4), (1, 10)]
    assert graph_bytes(shapes) == 4 * (192 + 1024 + 256 + 10)
    assert graph_bytes(shapes, batch=8) == 8 * 4 * (192 + 1024 + 256 + 10)
    assert forward_bytes(shapes, batch=8) == 8 * 4 * (1024 + 256)
    assert graph_bytes([(1, 10**10, 10**10)]) == 4 * 10**20        # exact, no int64 overflow


def test_input_spec_refuses_sizes_over_the_memory_limit(monkeypatch) -> None:
    dynamic = InputSpec.from_shape(["N", 3, "H", "W"], name="data")
    with pytest.raises(InputError, match=r"model input 'data': one image of shape \[3, 20000, 20000\] needs 4\.47 GiB "
                                         r"of memory, more than the limit of 4 GiB"):
        dynamic.resolve(20000)
    declared = InputSpec.from_shape([1, 3, 10**9, 10], name="x")
    with pytest.raises(InputError, match=r"\[3, 1000000000, 10\] needs 112 GiB"):
        declared.resolve()
    with pytest.raises(InputError, match="112 GiB"):
        declared.batch_shape(1)
    monkeypatch.setenv("EXPLAINER_MAX_BYTES", "8G")
    assert dynamic.resolve(20000) == (20000, 20000)
    nhwc = InputSpec.from_shape([1, 300, 300, 1], name="g")
    monkeypatch.setenv("EXPLAINER_MAX_BYTES", "100K")
    with pytest.raises(InputError, match=r"one image of shape \[300, 300, 1\] needs 352 KiB"):
        nhwc.resolve()


def test_resize_refuses_a_thin_strip_before_allocating(monkeypatch) -> None:
    """A 1×30000 strip covering a 32×32 crop would be scaled to 1,110,000×37: refused with the figure."""
    strip = np.zeros((1, 30000), np.uint8)
    monkeypatch.setenv("EXPLAINER_MAX_BYTES", "16M")
    with pytest.raises(InputError, match=r"resizing a 30000x1 image to 1110000x37 \(to cover the 32x32 crop\) needs "
                                         r"78\.3 MiB of memory, more than the limit of 16 MiB"):
        resize_center_crop(strip, 32)
    with pytest.raises(InputError, match=r"needs 274 MiB"):       # RGB: 4 bytes a pixel in Pillow, 3 in NumPy
        resize_center_crop(np.zeros((1, 30000, 3), np.uint8), 32)
    assert resize_center_crop(np.zeros((1, 100), np.uint8), 32).shape == (32, 32)


def test_load_batch_names_the_file_of_a_refused_resize(tmp_path, monkeypatch) -> None:
    Image.fromarray(np.zeros((1, 30000), np.uint8)).save(tmp_path / "strip.png")
    monkeypatch.setenv("EXPLAINER_MAX_BYTES", "16M")
    with pytest.raises(InputError, match=r"strip\.png: resizing a 30000x1 image"):
        load_batch([tmp_path / "strip.png"], InputSpec("NCHW", 1), preprocessing("unit", channels=1), size=32)
