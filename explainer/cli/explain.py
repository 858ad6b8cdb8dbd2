"""`explainer explain MODEL IMAGE...`: top classes, relevance (.npz), heatmap and overlay PNGs, optional SR maps;
for a model whose output is a map [N, K, H, W] (segmentation, saliency), the sum of a channel over a box, a mask or
the whole map, outlined on the pictures; `explainer explain MODEL X.npy`: the same for a model on features or 1-D
signals, with a bar chart or a line plot."""
from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from explainer import seeds
from explainer.api import LOW_CONSERVATION, Explainer, LowConservationWarning
from explainer.cli import inputs
from explainer.cli.common import (
    ModelInput,
    add_model_options,
    add_output_option,
    add_preprocess_options,
    model_input,
    non_negative_int,
    positive_int,
    rule_params,
)
from explainer.cli.outputs import OutputPlan, file_stem
from explainer.cli.text import print_error
from explainer.errors import InputError, describe
from explainer.images.io import list_images
from explainer.images.labels import find_labels, top_k
from explainer.images.preprocess import load_batch, to_model_input

HELP = ("explain images or arrays (.npy): print top classes, write relevance (.npz) and pictures (heatmap/overlay "
        "PNGs, SR maps with --sr; a line plot per signal, a bar chart per feature row)")
EXIT_CODES = ("exit status: 0 every image explained; 2 bad input (nothing is written), or with --keep-going some "
              "images could not be read (they are listed; the others are written)")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.epilog = EXIT_CODES
    add_model_options(p, seed_mode=True)
    p.add_argument("images", nargs="*", metavar="INPUT",
                   help="image files or folders; or, for models on features [N, F], 1-D signals [N, C, L] or "
                        "volumes (any model), one .npy file of float values: one sample (without the batch axis) or "
                        "a batch, fed as it is (no preprocessing); or, for a token model, one file of token ids "
                        "(.npy, or text: one sample a line) instead of --text")
    add_output_option(p)
    inputs.add_arguments(p)
    add_preprocess_options(p)
    p.add_argument("--target", type=int, help="class to explain (default: the top class of each image or sample; "
                                               "0 for a model with one output value, a regressor); for a model whose "
                                               "output is a map [N, K, H, W]: the channel, summed over the whole map "
                                               "or over --region/--mask (default: each pixel's arg-max channel)")
    p.add_argument("--region", type=int, nargs=4, metavar=("X0", "Y0", "X1", "Y1"),
                   help="for an output map: explain the sum over this box of the map, in the map's pixels, half-open "
                        "(columns X0..X1-1, rows Y0..Y1-1); drawn on the pictures (default: the whole map)")
    p.add_argument("--mask", metavar="FILE",
                   help="for an output map: explain the sum over this mask of the map's H x W pixels (.npy of "
                        "booleans or 0/1, or an image whose non-zero pixels are chosen); its outline is drawn "
                        "(default: the whole map)")
    p.add_argument("--seed-file", metavar="FILE.npy",
                   help="with a .npy input: explain this array of the output's shape ([N, classes], or [classes] "
                        "for every sample) as the relevance at the output, in place of one class (several classes "
                        "at once, a weighting of them; default: none, one class per sample)")
    p.add_argument("--feature-names", metavar="FILE",
                   help="with a .npy input of features: their names, one per line, for the bar charts (default "
                        "f0, f1, ...)")
    p.add_argument("--top", type=positive_int, default=5, help="how many top classes to print (default 5)")
    p.add_argument("--labels", help="class names, one per line (default: names in the model's metadata, else "
                                    "ImageNet names for 1000-class models)")
    p.add_argument("--sr", action="store_true", help="also compute the Salient Relevance (SR) map")
    p.add_argument("--sr-input", choices=("abs", "positive"), default="abs",
                   help="what the SR map is computed on: abs (default, as Li et al.: |R| per colour channel as an RGB "
                        "image; |R| summed over channels for other inputs) or positive (max(R, 0) in place of |R|: "
                        "only evidence for the class)")
    p.add_argument("--out", default="explanations", help="output folder (default ./explanations)")
    p.add_argument("--picture-size", type=non_negative_int, metavar="N",
                   help="enlarge the PNGs by a whole factor (nearest neighbour) until their longer side is at least N "
                        "pixels; 0: the model's input size (default 256)")
    p.add_argument("--colorbar", action="store_true", help="add a colour bar with the value scale under every PNG")
    p.add_argument("--batch-size", type=positive_int, default=8, help="images per ONNX Runtime run (default 8)")
    p.add_argument("--keep-going", action="store_true",
                   help="skip images that cannot be read, explain the others, list the skipped ones and exit 2")


def output_names(stem: str, sr: bool) -> list[str]:
    """The files written for one image: its result set."""
    names = [f"{stem}.npz", f"{stem}_heatmap.png", f"{stem}_overlay.png"]
    return names + [f"{stem}_sr.png", f"{stem}_sr_overlay.png"] if sr else names


def sr_png_info(sr_label: str | None, name: str) -> Any:
    """PNG text chunks saying what an SR picture shows (None for the other pictures)."""
    if sr_label is None or not name.startswith("sr"):
        return None
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text("Description", f"Salient Relevance map (Li et al. 2017) computed on {sr_label}")
    return info


def read_images(paths: list[Path], mi: ModelInput, *, keep_going: bool) -> tuple[dict[int, np.ndarray], list[str]]:
    """Decode every image and bring it to the model's size before anything is written: ``({index: pixels},
    skipped)``. The first unreadable image is an error, unless ``keep_going`` (then its message is listed in
    ``skipped``)."""
    images, skipped = {}, []
    for i, path in enumerate(paths):
        try:
            images[i] = load_batch([path], mi.spec, mi.prep, size=mi.size, resize_mode=mi.resize_mode,
                                   fill=mi.fill)[1][0]
        except InputError as exc:
            if not keep_going:
                raise
            skipped.append(str(exc))
    return images, skipped


def run(args: argparse.Namespace) -> int:
    if inputs.wants_inputs_path(args):
        return inputs.run(args)
    if not args.images:
        raise InputError("give image files or folders, a .npy file, or --text (for a token model)")
    arrays = [str(p).lower().endswith(".npy") for p in args.images]
    if any(arrays):
        if args.region is not None or args.mask is not None:
            raise InputError("--region and --mask are for image inputs of models whose output is a map")
        return run_array(args)
    for option in ("seed_file", "feature_names"):
        if getattr(args, option) is not None:
            raise InputError(f"--{option.replace('_', '-')} is for .npy inputs (features or signals), not images")
    return run_images(args)


def run_images(args: argparse.Namespace) -> int:
    from explainer.pictures.heatmaps import PICTURE_SIZE, explanation_pictures
    from explainer.sr.sr_map import describe_sr_input

    paths = list_images(args.images)
    plan = OutputPlan(args.out, "--out")
    stems = [plan.add_set(file_stem(p), lambda s: output_names(s, args.sr)) for p in paths]
    plan.refuse_inputs([args.labels, args.mask, *paths], models=[args.model])
    if args.region is not None and args.mask is not None:
        raise InputError("pass --region or --mask, not both")
    mask = read_mask(args.mask) if args.mask is not None else None
    mi = model_input(args)
    images, skipped = read_images(paths, mi, keep_going=args.keep_going)
    if not images:
        return report_skipped(skipped, len(paths))
    low, high = mi.bounds(args)
    ex = Explainer(mi.proto, args.method, provider=args.provider, input_shape=mi.input_shape, low=low, high=high,
                   source=mi.source, seed=args.seed_mode, output=args.output, **rule_params(args))
    if seeds.is_map(ex.output_shape) or args.region is not None or mask is not None:
        run_maps(args, ex, mi, paths, stems, plan, images, mask)
        return report_skipped(skipped, len(paths))
    labels, labels_from = find_labels(args.labels, ex.num_classes, ex.metadata)
    print(f"model {mi.source}: input {ex.layout} {list(ex.input_shape)}, {ex.num_classes} classes, "
          f"method {ex.method}, seed {ex.seed}, preprocessing {mi.describe_preprocessing()}, "
          f"provider {ex.provider}, labels: {labels_from}")
    print_precision(ex)
    picture_size = PICTURE_SIZE if args.picture_size is None else args.picture_size
    channels_layout = "HWC" if ex.layout == "NHWC" else "CHW"
    sr_label = describe_sr_input(args.sr_input, ex.input_shape[-1 if ex.layout == "NHWC" else 0]) if args.sr else None
    if sr_label:
        print(f"SR maps computed on: {sr_label}")
    advised: set[str] = set()
    order = sorted(images)
    batches = [order[start:start + args.batch_size] for start in range(0, len(order), args.batch_size)]
    with plan.writing(total=len(order)) as writer:
        for batch in tqdm(batches, desc="explaining", unit="batch", disable=len(batches) <= 1):
            pixels = np.stack([images[i] for i in batch])
            e, vanished = explain_batch(ex, to_model_input(pixels, mi.prep, mi.spec.layout), args.target)
            maps = e.relevance_map()
            for j, i in enumerate(batch):
                print(f"{paths[i]}:")
                for rank, (idx, name, logit, prob) in enumerate(top_k(e.logits[j], args.top, labels), start=1):
                    mark = "  <- explained" if idx == e.target[j] else ""
                    print(f"  {rank}. {name} (class {idx}): logit {logit:.3f}, p {prob:.3f}{mark}")
                arrays = {"relevance": maps[j].astype(np.float32),
                          "relevance_channels": e.relevance[j].astype(np.float32),
                          "relevance_channels_layout": np.array(channels_layout),
                          "logits": e.logits[j], "target": e.target[j], "seed": np.array(e.seed)}
                seed = "logit" if e.seed == "logit" else "one-hot seed"
                if e.conservation is not None:
                    arrays["conservation"] = e.conservation[j]
                    print(f"  relevance at the input: {e.conservation[j]:.1%} of the explained {seed}")
                for k, (label, kept) in enumerate(e.absorbed.items()):
                    logit = float(e.logits[j, e.target[j]]) if e.seed == "logit" else 1.0
                    share = f" ({kept[j] / logit:.1%} of the {seed})" if logit else ""
                    print(f"  relevance kept by {label}: {kept[j]:.4g}{share}")
                    arrays[f"absorbed_{k}"], arrays[f"absorbed_{k}_label"] = kept[j], np.array(label)
                if j in vanished:
                    warn_vanished(paths[i], float(e.conservation[j]), vanished[j], advised)
                stem = stems[i]
                sr = with_sr_map(args, e.relevance[j], channels_layout, sr_label, arrays)
                pictures = explanation_pictures(pixels[j], maps[j], sr, minimum=picture_size,
                                                with_colorbar=args.colorbar)
                write_set(writer, stem, pictures, arrays, sr_label)
    print(f"wrote {len(order)} explanation(s) to {plan.folder}/")
    return report_skipped(skipped, len(paths))


#: how the ``changes`` lines of a float16/bfloat16 model computed in float32 begin (``frontend.precision``)
PRECISION = ("computed in float32", "the float32 scores")


def print_precision(ex: Explainer) -> None:
    """Say that a float16/bfloat16 model is computed in float32, and how far that moves its scores."""
    for change in ex.changes:
        if change.startswith(PRECISION):
            print(f"  {change}")


def with_sr_map(args: argparse.Namespace, relevance: np.ndarray, channels_layout: str, sr_label: str | None,
                arrays: dict[str, Any]) -> np.ndarray | None:
    """The SR map of one image's ``relevance`` with ``--sr`` (also put into its ``arrays``), else None."""
    if not args.sr:
        return None
    from explainer.sr.sr_map import sr_input, sr_map

    sr = sr_map(sr_input(relevance, layout=channels_layout.lower(), part=args.sr_input))
    arrays["sr"], arrays["sr_input"] = sr, np.array(sr_label)
    return sr


def write_set(writer: Any, stem: str, pictures: dict[str, Any], arrays: dict[str, Any], sr_label: str | None) -> None:
    """One image's pictures and ``.npz``, written as one group (complete or absent)."""
    with writer.group() as files:
        for name, picture in pictures.items():
            picture.save(files.path(f"{stem}_{name}.png"), pnginfo=sr_png_info(sr_label, name))
        np.savez_compressed(files.path(f"{stem}.npz"), **arrays)


def read_mask(path: str) -> np.ndarray:
    """The mask in ``path``: a .npy array as it is (``seeds.check_mask`` checks it), or an image's non-zero pixels."""
    if path.lower().endswith(".npy"):
        return read_array(path, "the mask")
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as picture:
            return np.asarray(picture.convert("L")) != 0
    except (OSError, UnidentifiedImageError) as exc:
        raise InputError(f"{path}: cannot read the mask as a .npy array or an image ({describe(exc)})") from None


def run_maps(args: argparse.Namespace, ex: Explainer, mi: ModelInput, paths: list[Path], stems: list[str],
             plan: OutputPlan, images: dict[int, np.ndarray], mask: np.ndarray | None) -> None:
    """Explain a model whose output is a map [N, K, H, W] (``explainer.seeds``): the sum of channel ``--target`` (or
    of each pixel's arg-max channel) over ``--region``, ``--mask`` or the whole map; the pictures outline it."""
    from explainer.pictures.heatmaps import PICTURE_SIZE
    from explainer.pictures.regions import region_pictures
    from explainer.sr.sr_map import describe_sr_input

    region = tuple(args.region) if args.region is not None else None
    shape = seeds.map_shape(ex.output_shape)
    what = seeds.describe(shape, args.target, region, mask, mask_name=f"the mask {args.mask}")
    chosen = seeds.pixels(shape, region, mask)
    if args.target is not None:
        seeds.region_seed(shape, args.target, region, mask)  # a bad channel fails before any run
    labels, labels_from = find_labels(args.labels, shape[0], ex.metadata)
    print(f"model {mi.source}: input {ex.layout} {list(ex.input_shape)}, output map {list(shape)} (channels, "
          f"height, width), method {ex.method}, seed {ex.seed}, preprocessing {mi.describe_preprocessing()}, "
          f"provider {ex.provider}, channel names: {labels_from}")
    print(f"explained: {what}")
    spatial = ex.input_shape[:2] if ex.layout == "NHWC" else ex.input_shape[-2:]
    if tuple(spatial) != shape[1:]:
        print(f"  the output map is {shape[2]}×{shape[1]} and the input {spatial[1]}×{spatial[0]}: the region is "
              "drawn scaled onto the input (nearest output pixel)")
    picture_size = PICTURE_SIZE if args.picture_size is None else args.picture_size
    channels_layout = "HWC" if ex.layout == "NHWC" else "CHW"
    sr_label = describe_sr_input(args.sr_input, ex.input_shape[-1 if ex.layout == "NHWC" else 0]) if args.sr else None
    if sr_label:
        print(f"SR maps computed on: {sr_label}")
    order = sorted(images)
    batches = [order[start:start + args.batch_size] for start in range(0, len(order), args.batch_size)]
    with plan.writing(total=len(order)) as writer:
        for batch in tqdm(batches, desc="explaining", unit="batch", disable=len(batches) <= 1):
            pixels = np.stack([images[i] for i in batch])
            x = to_model_input(pixels, mi.prep, mi.spec.layout)
            logits = ex.forward(x).reshape(-1, *shape)
            indicator = seeds.dense_seed(shape, logits, args.target, region, mask, seed="one-hot")
            e = ex.explain(x, seed=indicator * logits if ex.seed == "logit" else indicator)
            maps = e.relevance_map()
            for j, i in enumerate(batch):
                print(f"{paths[i]}:")
                picked = indicator[j].astype(bool)
                counts = picked.reshape(shape[0], -1).sum(axis=1)
                names = ", ".join(f"{labels[k] if labels else k}: {int(c)}" for k, c in enumerate(counts) if c)
                print(f"  explained values: {int(picked.sum())} (pixels per channel: {names}), logit sum "
                      f"{float(logits[j][picked].sum()):.4g}")
                arrays = {"relevance": maps[j].astype(np.float32), "relevance_channels": e.relevance[j],
                          "relevance_channels_layout": np.array(channels_layout), "logits": logits[j],
                          "explained": picked, "channel": np.int64(-1 if args.target is None else args.target),
                          "seed": np.array(ex.seed)}
                if region is not None:
                    arrays["region"] = np.array(region, np.int64)
                if e.conservation is not None:
                    arrays["conservation"] = e.conservation[j]
                    seed = "logit sum" if ex.seed == "logit" else "one-hot seed"
                    print(f"  relevance at the input: {e.conservation[j]:.1%} of the explained {seed}")
                sr = with_sr_map(args, e.relevance[j], channels_layout, sr_label, arrays)
                pictures = region_pictures(pixels[j], maps[j], chosen, sr, minimum=picture_size,
                                           with_colorbar=args.colorbar)
                write_set(writer, stems[i], pictures, arrays, sr_label)
    print(f"wrote {len(order)} explanation(s) to {plan.folder}/")


def read_array(path: str, what: str) -> np.ndarray:
    """The array in the .npy file at ``path`` (no pickled objects); InputError naming ``what`` otherwise."""
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise InputError(f"{path}: cannot read {what} as a .npy array ({' '.join(str(exc).split())[:200]})") from None


def run_array(args: argparse.Namespace) -> int:
    """Explain the samples of one .npy file (features, signals, or any float input fed as it is)."""
    from explainer.frontend.inputs import image_input
    from explainer.onnx_io import load_model
    from explainer.pictures.signals import feature_names, plot_features, plot_signal
    from explainer.pictures.volumes import plot_volume

    if len(args.images) != 1 or not str(args.images[0]).lower().endswith(".npy"):
        raise InputError("give one .npy file (one sample or a batch), or image files and folders, not both")
    path = Path(args.images[0])
    x = read_array(str(path), "the input")
    if x.dtype.kind not in "iuf":
        raise InputError(f"{path}: the input must hold real numbers, got dtype {x.dtype}")
    proto, source = load_model(args.model)
    vi = image_input(proto, source)
    rank = len(vi.type.tensor_type.shape.dim) or x.ndim
    if x.ndim == rank - 1:
        x = x[None]
    elif x.ndim != rank:
        raise InputError(f"{path}: an array of shape {list(x.shape)} does not fit input '{vi.name}' of rank {rank} "
                         f"(give one sample of rank {rank - 1} or a batch of rank {rank})")
    if x.shape[0] == 0:
        raise InputError(f"{path}: the input batch is empty (0 samples)")
    seeds = read_array(args.seed_file, "the seed") if args.seed_file else None
    if seeds is not None and args.target is not None:
        raise InputError("pass --target or --seed-file, not both")
    stems = [f"{file_stem(path)}_{i}" for i in range(len(x))]
    plan = OutputPlan(args.out, "--out")
    for stem in stems:
        plan.add_set(stem, lambda s: [f"{s}.npz", f"{s}.png"])
    plan.refuse_inputs([path, args.seed_file, args.feature_names, args.labels], models=[args.model])
    ex = Explainer(proto, args.method, provider=args.provider, input_shape=tuple(int(d) for d in x.shape[1:]),
                   low=args.low, high=args.high, source=source, seed=args.seed_mode, output=args.output,
                   **rule_params(args))
    kind = {"NC": "features", "NCW": "signal", "NCDHW": "volume"}.get(ex.layout)
    names = feature_names(ex.input_shape[0], args.feature_names) if kind == "features" else None
    if args.feature_names and kind != "features":
        raise InputError(f"--feature-names is for feature inputs [N, F]; input '{ex.input_name}' is "
                         f"[N, {', '.join(map(str, ex.input_shape))}]")
    labels, labels_from = find_labels(args.labels, ex.num_classes, ex.metadata)
    sigmoid = any("final Sigmoid" in c for c in ex.changes)
    kinds = "labels (multi-label: pre-sigmoid logits explained)" if sigmoid else "classes"
    head = "one output value" if ex.num_classes == 1 else f"{ex.num_classes} {kinds}"
    print(f"model {source}: input '{ex.input_name}' {ex.layout} {list(ex.input_shape)}, {head}, method {ex.method}, "
          f"seed {'array' if seeds is not None else ex.seed}, provider {ex.provider}")
    for change in ex.changes:
        if "final Sigmoid" in change or "explained output" in change or change.startswith(PRECISION):
            print(f"  {change}")
    if seeds is not None:
        e = ex.explain(x, seed=seeds, batch_size=args.batch_size)
    else:
        e = explain_batch(ex, x, args.target, args.batch_size)[0]
    with plan.writing(total=len(x)) as writer:
        for j in range(len(x)):
            print(f"{path} [{j}]:")
            print_scores(e.logits[j], int(e.target[j]), labels, sigmoid, args.top)
            if e.conservation is not None:
                print(f"  relevance at the input: {e.conservation[j]:.1%} of the explained "
                      f"{'seed' if e.seed != 'logit' else 'logit'}")
            arrays = {"relevance": e.relevance[j].astype(np.float32), "layout": np.array(ex.layout),
                      "logits": e.logits[j], "target": e.target[j], "seed": np.array(e.seed)}
            if e.conservation is not None:
                arrays["conservation"] = e.conservation[j]
            with writer.group() as files:
                t = int(e.target[j])
                name = f"{labels[t]} (class {t})" if labels and 0 <= t < len(labels) else f"output {t}"
                title = f"{path.name} [{j}]: " + ("seed array" if t < 0 else name)
                if kind == "features":
                    plot_features(e.relevance[j], files.path(f"{stems[j]}.png"), names=names, values=x[j],
                                  title=title)
                elif kind == "signal":
                    plot_signal(x[j], e.relevance[j], files.path(f"{stems[j]}.png"), title=title)
                elif kind == "volume":
                    plot_volume(x[j], e.relevance[j], files.path(f"{stems[j]}.png"), title=title)
                np.savez_compressed(files.path(f"{stems[j]}.npz"), **arrays)
    pictures = "" if kind else f" (no pictures for a {ex.layout} input: relevance in the .npz files)"
    print(f"wrote {len(x)} explanation(s) to {plan.folder}/{pictures}")
    return 0


def print_scores(logits: np.ndarray, target: int, labels: list[str] | None, sigmoid: bool, top: int) -> None:
    """The sample's output: its value for a regressor, per-label sigmoid probabilities for a multi-label head, else
    the top classes with softmax probabilities; the explained one marked."""
    if len(logits) == 1:
        print(f"  output value {float(logits[0]):.4g}" + ("  <- explained" if target == 0 else ""))
        return
    if not sigmoid:
        for rank, (idx, name, logit, prob) in enumerate(top_k(logits, top, labels), start=1):
            mark = "  <- explained" if idx == target else ""
            print(f"  {rank}. {name} (class {idx}): logit {logit:.3f}, p {prob:.3f}{mark}")
        return
    probs = 1.0 / (1.0 + np.exp(-logits.astype(np.float64)))
    for rank, idx in enumerate(np.argsort(-logits, kind="stable")[:top], start=1):
        name = f"{labels[idx]} (label {idx})" if labels else f"label {idx}"
        mark = "  <- explained" if idx == target else ""
        print(f"  {rank}. {name}: logit {float(logits[idx]):.3f}, sigmoid {probs[idx]:.3f}{mark}")


def explain_batch(ex: Explainer, x: np.ndarray, target: int | None,
                  batch_size: int | None = None) -> tuple[Any, dict[int, LowConservationWarning]]:
    """``ex.explain(x)`` and the samples its :class:`LowConservationWarning` names, ``{index in batch: warning}``;
    other warnings pass on unchanged."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", LowConservationWarning)
        e = ex.explain(x, target=target, batch_size=batch_size)
    vanished = {}
    for record in caught:
        if isinstance(record.message, LowConservationWarning):
            vanished.update({int(j): record.message for j in record.message.samples})
        else:
            warnings.warn_explicit(record.message, record.category, record.filename, record.lineno)
    return e, vanished


def warn_vanished(path: Path, share: float, warning: LowConservationWarning, advised: set[str]) -> None:
    """Say on stderr that relevance vanished for the image at ``path`` (``share`` of the logit reached the input);
    the first time, name the methods that bring more of it to the input on this model."""
    sys.stdout.flush()  # after the image's lines, also when stdout and stderr share a pipe
    print_error(f"{path}: only {share:.2%} of the explained logit reaches the input under method '{warning.method}', "
                f"below {LOW_CONSERVATION:.0%} (counting what constant inputs keep): biases and stabilisers absorbed "
                "the rest, and the heatmap, scaled to its maximum, hides that", prefix="explainer: warning: ")
    if warning.method in advised:
        return
    advised.add(warning.method)
    if warning.better:
        kept = ", ".join(f"{m} {warning.alternatives[m]:.1%}" for m in warning.better)
        print_error(f"on this model these methods bring more of it to the input: {kept} (median over the first such "
                    f"images); try --method {warning.better[0]}", prefix="explainer: warning: ")
    elif warning.alternatives:
        kept = ", ".join(f"{m} {c:.1%}" for m, c in warning.alternatives.items())
        print_error(f"no other method brings more of it to the input on this model ({kept}); a model whose biases "
                    "carry the decision is explained by none of them", prefix="explainer: warning: ")


def report_skipped(skipped: list[str], total: int) -> int:
    """List the images ``--keep-going`` skipped on stderr; the exit code: 0 when none was, else 2."""
    if not skipped:
        return 0
    for message in skipped:
        print_error(message, prefix="explainer: skipped: ")
    print_error(f"{len(skipped)} of {total} image(s) could not be read and were skipped")
    return 2
