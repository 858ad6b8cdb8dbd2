"""Image decoding: colour modes, bit depths, orientation, frames, and every bad-file case."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from explainer.errors import InputError
from explainer.images.io import list_images, load_image

RNG = np.random.default_rng(1234)
RGB = RNG.integers(0, 256, size=(6, 5, 3), dtype=np.uint8)


def save(image: Image.Image, path: Path, **kwargs) -> Path:
    image.save(path, **kwargs)
    return path


@pytest.mark.parametrize("suffix", [".png", ".bmp", ".tif"])
def test_lossless_rgb_round_trip(tmp_path: Path, suffix: str) -> None:
    path = save(Image.fromarray(RGB), tmp_path / f"rgb{suffix}")
    out = load_image(path)
    assert out.dtype == np.uint8 and out.shape == (6, 5, 3)
    assert np.array_equal(out, RGB)


def test_jpeg_loads_close_to_source(tmp_path: Path) -> None:
    smooth = np.tile(np.linspace(0, 255, 32, dtype=np.uint8)[None, :, None], (16, 1, 3))
    out = load_image(save(Image.fromarray(smooth), tmp_path / "a.jpg", quality=95))
    assert out.shape == (16, 32, 3)
    assert np.abs(out.astype(int) - smooth).mean() < 3


def test_grayscale_replicated_or_kept(tmp_path: Path) -> None:
    gray = RGB[..., 0]
    path = save(Image.fromarray(gray, mode="L"), tmp_path / "g.png")
    rgb = load_image(path, channels=3)
    assert rgb.shape == (6, 5, 3)
    assert all(np.array_equal(rgb[..., c], gray) for c in range(3))
    one = load_image(path, channels=1)
    assert one.shape == (6, 5, 1) and np.array_equal(one[..., 0], gray)


def test_rgb_to_one_channel_uses_luma(tmp_path: Path) -> None:
    out = load_image(save(Image.fromarray(RGB), tmp_path / "c.png"), channels=1)
    luma = RGB.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    assert out.shape == (6, 5, 1)
    assert np.abs(out[..., 0] - luma).max() <= 1.0


def test_rgba_composited_on_white(tmp_path: Path) -> None:
    rgba = np.zeros((1, 3, 4), np.uint8)
    rgba[0, :, :3] = [200, 10, 50]
    rgba[0, :, 3] = [0, 255, 128]
    out = load_image(save(Image.fromarray(rgba, mode="RGBA"), tmp_path / "t.png"))
    assert out[0, 0].tolist() == [255, 255, 255]
    assert out[0, 1].tolist() == [200, 10, 50]
    expected = np.array([200, 10, 50]) * 128 / 255 + 255 * (1 - 128 / 255)
    assert np.abs(out[0, 2] - expected).max() <= 1.0


def test_la_composited_on_white(tmp_path: Path) -> None:
    la = Image.merge("LA", [Image.new("L", (2, 1), 40), Image.frombytes("L", (2, 1), bytes([0, 255]))])
    out = load_image(save(la, tmp_path / "la.png"), channels=1)
    assert out[..., 0].tolist() == [[255, 40]]


def test_palette_with_and_without_transparency(tmp_path: Path) -> None:
    palette = Image.new("P", (2, 1))
    palette.putpalette([255, 0, 0, 0, 0, 255] + [0] * (256 * 3 - 6))
    palette.putdata([0, 1])
    opaque = load_image(save(palette, tmp_path / "p.png"))
    assert opaque[0].tolist() == [[255, 0, 0], [0, 0, 255]]
    clear = load_image(save(palette, tmp_path / "pt.png", transparency=1))
    assert clear[0].tolist() == [[255, 0, 0], [255, 255, 255]]


def test_sixteen_bit_divided_by_257(tmp_path: Path) -> None:
    values = np.array([[0, 100, 255], [17, 128, 254]], dtype=np.uint16)
    path = save(Image.fromarray(values * 257), tmp_path / "deep.png")
    with Image.open(path) as check:
        assert check.mode in ("I;16", "I")
    out = load_image(path, channels=1)
    assert np.array_equal(out[..., 0], values.astype(np.uint8))
    tiff = save(Image.fromarray(values * 257), tmp_path / "deep.tif")
    assert np.array_equal(load_image(tiff)[..., 1], values.astype(np.uint8))
    # not a shift by 8 bits: 65280 / 257 = 254.0 (>> 8 gives 255), 200 / 257 rounds to 1 (>> 8 gives 0)
    odd = np.array([[65280, 200, 65535]], dtype=np.uint16)
    out = load_image(save(Image.fromarray(odd), tmp_path / "odd.png"), channels=1)
    assert out[..., 0].tolist() == [[254, 1, 255]]


def test_float_and_wide_integer_data_scaled_by_range(tmp_path: Path) -> None:
    floats = np.array([[0.0, 0.5, 1.0]], dtype=np.float32)
    out = load_image(save(Image.fromarray(floats, mode="F"), tmp_path / "f.tif"), channels=1)
    assert out[..., 0].tolist() == [[0, 128, 255]]
    wide = np.array([[-1000, 0, 99000]], dtype=np.int32)
    out = load_image(save(Image.fromarray(wide, mode="I"), tmp_path / "i.tif"), channels=1)
    expected = np.rint((wide - wide.min()) * 255 / (wide.max() - wide.min()))
    assert out[..., 0].tolist() == expected.astype(int).tolist()


def test_cmyk_converted_to_rgb(tmp_path: Path) -> None:
    cmyk = Image.new("CMYK", (2, 1))
    cmyk.putpixel((0, 0), (0, 0, 0, 0))
    cmyk.putpixel((1, 0), (255, 0, 0, 0))
    out = load_image(save(cmyk, tmp_path / "cmyk.tif"))
    assert out.shape == (1, 2, 3)
    assert out[0].tolist() == [[255, 255, 255], [0, 255, 255]]


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    stored = np.zeros((10, 20, 3), np.uint8)  # H=10, W=20; left half red
    stored[:, :10] = [255, 0, 0]
    image = Image.fromarray(stored)
    exif = image.getexif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to display
    path = save(image, tmp_path / "rotated.jpg", exif=exif.tobytes(), quality=95)
    out = load_image(path)
    assert out.shape == (20, 10, 3)
    # the stored left edge becomes the displayed top edge
    assert out[:8, :, 0].mean() > 200 and out[12:, :, 0].mean() < 50


def test_animated_gif_uses_first_frame(tmp_path: Path) -> None:
    frames = [Image.new("RGB", (4, 3), colour) for colour in ((255, 0, 0), (0, 0, 255))]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=50, loop=0)
    with Image.open(path) as check:
        assert check.n_frames == 2
    out = load_image(path)
    assert out.shape == (3, 4, 3) and np.all(out == [255, 0, 0])


def test_bad_channels_argument(tmp_path: Path) -> None:
    path = save(Image.fromarray(RGB), tmp_path / "x.png")
    with pytest.raises(InputError, match="channels must be 1"):
        load_image(path, channels=4)


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def write_truncated_png(path: Path) -> Path:
    buffer = io.BytesIO()
    Image.fromarray(RNG.integers(0, 256, size=(64, 64, 3), dtype=np.uint8)).save(buffer, format="PNG")
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    return path


@pytest.mark.parametrize(
    "make, fragment",
    [
        (lambda d: d / "missing.png", "not found"),
        (lambda d: write(d / "empty.png", b""), "empty"),
        (lambda d: write(d / "noise.jpg", np.random.default_rng(5).bytes(256)), "not an image"),
        (lambda d: write(d / "text.png", b"this is not a picture\n"), "not an image"),
        (lambda d: write_truncated_png(d / "cut.png"), "corrupt or truncated"),
        (lambda d: d, "not a regular file"),
    ],
    ids=["missing", "empty", "random-bytes", "text", "truncated", "directory"],
)
def test_bad_files_raise_input_error_naming_file(tmp_path: Path, make, fragment: str) -> None:
    path = make(tmp_path)
    with pytest.raises(InputError, match=fragment) as info:
        load_image(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("limit", [300, 100], ids=["warning-level", "error-level"])
def test_decompression_bomb_limit_enforced(tmp_path: Path, monkeypatch, limit: int) -> None:
    path = save(Image.new("RGB", (20, 20)), tmp_path / "bomb.png")  # 400 pixels
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", limit)
    with pytest.raises(InputError, match="decompression-bomb") as info:
        load_image(path)
    assert str(path) in str(info.value) and "400 pixels" in str(info.value)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 400)
    assert load_image(path).shape == (20, 20, 3)


def test_list_images_expands_directories(tmp_path: Path) -> None:
    folder = tmp_path / "imgs"
    folder.mkdir()
    for name in ["b.png", "a.JPG", "c.tiff", "notes.txt", ".hidden.png"]:
        (folder / name).write_bytes(b"x")
    (folder / "sub.png").mkdir()
    single = tmp_path / "single.dat"
    single.write_bytes(b"x")
    found = list_images([single, folder])
    assert found == [single, folder / "a.JPG", folder / "b.png", folder / "c.tiff"]
    assert list_images(str(folder / "b.png")) == [folder / "b.png"]


def test_list_images_errors(tmp_path: Path) -> None:
    (tmp_path / "readme.txt").write_text("no images")
    with pytest.raises(InputError, match=f"directory {tmp_path} contains no image files"):
        list_images([tmp_path])
    with pytest.raises(InputError, match="image path not found: .*nope"):
        list_images([tmp_path / "nope"])
    with pytest.raises(InputError, match="no image paths"):
        list_images([])
