"""Real photos that ship inside installed Python packages, for trying ImageNet classifiers offline.

============  ========================================================  ================================================
name          source (a file inside the installed wheel)                content; licence as the package states it
============  ========================================================  ================================================
astronaut     ``skimage.data.astronaut()``                              Eileen Collins (NASA); public domain
chelsea       ``skimage.data.chelsea()``                                Chelsea the cat; CC0 (Stefan van der Walt)
coffee        ``skimage.data.coffee()``                                 a cup of espresso; CC0 (Rachel Michetti)
rocket        ``skimage.data.rocket()``                                 Falcon 9 / DSCOVR launch (SpaceX); public domain
motorcycle    ``skimage.data.stereo_motorcycle()[0]``                   Middlebury 2014 stereo scene; no licence stated
china         ``sklearn.datasets.load_sample_image("china.jpg")``       a temple; CC BY 2.0 (danielbuechele, Flickr)
flower        ``sklearn.datasets.load_sample_image("flower.jpg")``      a flower; CC BY 2.0 (vultilion, Flickr)
grace_hopper  ``matplotlib.cbook.get_sample_data("grace_hopper.jpg")``  Grace Hopper (US Navy photo); no licence stated
============  ========================================================  ================================================

scikit-image 0.26 has no ``skimage.data.motorcycle``; the motorcycle is the left image of the bundled stereo
pair (``motorcycle_left.png``). All eight load without network access. ``photos()`` skips a photo whose package
is missing only when asked (``missing="skip"``); by default a missing package is an error naming it.

Command line: ``python -m tools.photos DIR`` writes them as ``DIR/<name>.png`` (``--jpeg`` for JPEG).
"""
from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image


def _skimage(name: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        import skimage.data
        if name == "motorcycle":
            return skimage.data.stereo_motorcycle()[0]
        return getattr(skimage.data, name)()
    return load


def _sklearn(file: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        from sklearn.datasets import load_sample_image
        return load_sample_image(file)
    return load


def _grace_hopper() -> np.ndarray:
    from matplotlib import cbook
    with cbook.get_sample_data("grace_hopper.jpg") as f:
        return np.asarray(Image.open(f).convert("RGB"))


SOURCES: dict[str, Callable[[], np.ndarray]] = {
    "astronaut": _skimage("astronaut"),
    "chelsea": _skimage("chelsea"),
    "coffee": _skimage("coffee"),
    "rocket": _skimage("rocket"),
    "motorcycle": _skimage("motorcycle"),
    "china": _sklearn("china.jpg"),
    "flower": _sklearn("flower.jpg"),
    "grace_hopper": _grace_hopper,
}
NAMES: tuple[str, ...] = tuple(SOURCES)


def photo(name: str) -> np.ndarray:
    """One photo as a uint8 ``H x W x 3`` RGB array."""
    if name not in SOURCES:
        raise KeyError(f"unknown photo {name!r}; choose one of {', '.join(NAMES)}")
    image = np.asarray(SOURCES[name]())
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    image = image[:, :, :3]
    if image.dtype != np.uint8:
        raise TypeError(f"photo {name!r}: expected uint8 pixels, got {image.dtype}")
    return np.ascontiguousarray(image)


def photos(names: tuple[str, ...] | list[str] | None = None, *, missing: str = "raise") -> dict[str, np.ndarray]:
    """``{name: uint8 H x W x 3}`` for ``names`` (default: all of :data:`NAMES`), in that order.

    ``missing="skip"`` leaves out photos whose package (scikit-image, scikit-learn) is not installed.
    """
    if missing not in ("raise", "skip"):
        raise ValueError(f"missing must be 'raise' or 'skip', got {missing!r}")
    result = {}
    for name in names or NAMES:
        try:
            result[name] = photo(name)
        except ImportError:
            if missing == "raise":
                raise
    return result


def write_photos(directory: str | Path, names: tuple[str, ...] | list[str] | None = None, *,
                 fmt: str = "png") -> list[Path]:
    """Write the photos as ``directory/<name>.png`` (lossless) or ``.jpg`` (quality 95); returns the paths."""
    if fmt not in ("png", "jpg", "jpeg"):
        raise ValueError(f"fmt must be 'png' or 'jpg', got {fmt!r}")
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, image in photos(names).items():
        path = out / f"{name}.{'png' if fmt == 'png' else 'jpg'}"
        Image.fromarray(image).save(path, **({} if fmt == "png" else {"quality": 95}))
        paths.append(path)
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.photos", description="write the offline photos to DIR")
    parser.add_argument("directory")
    parser.add_argument("names", nargs="*", help=f"photos to write (default: all of {', '.join(NAMES)})")
    parser.add_argument("--jpeg", action="store_true", help="write JPEG (quality 95) instead of PNG")
    args = parser.parse_args(argv)
    unknown = [n for n in args.names if n not in SOURCES]
    if unknown:
        parser.error(f"unknown photo(s) {', '.join(unknown)}; choose from {', '.join(NAMES)}")
    for path in write_photos(args.directory, args.names or None, fmt="jpg" if args.jpeg else "png"):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
