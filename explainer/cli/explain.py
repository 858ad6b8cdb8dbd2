"""`explainer explain MODEL IMAGE...`: top classes, relevance (.npz), heatmap and overlay PNGs, optional SR maps."""
from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from explainer.api import LOW_CONSERVATION, Explainer, LowConservationWarning
from explainer.cli.common import (
    ModelInput,
    add_model_options,
    add_preprocess_options,
    model_input,
    non_negative_int,
    positive_int,
    rule_params,
)
from explainer.cli.outputs import OutputPlan, file_stem
from explainer.cli.text import print_error
from explainer.errors import InputError
from explainer.images.io import list_images
from explainer.images.labels import find_labels, top_k
from explainer.images.preprocess import load_batch, to_model_input
from explainer.images.spec import channel_sum

HELP = "explain images: print top classes, write relevance (.npz) and heatmap/overlay PNGs (and SR maps with --sr)"
EXIT_CODES = ("exit status: 0 every image explained; 2 bad input (nothing is written), or with --keep-going some "
              "images could not be read (they are listed; the others are written)")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.epilog = EXIT_CODES
    add_model_options(p, seed_mode=True)
    p.add_argument("images", nargs="+", help="image files or folders")
    add_preprocess_options(p)
    p.add_argument("--target", type=int, help="class to explain (default: the top class of each image)")
    p.add_argument("--top", type=positive_int, default=5, help="how many top classes to print (default 5)")
    p.add_argument("--labels", help="class names, one per line (default: names in the model's metadata, else "
                                    "ImageNet names for 1000-class models)")
    p.add_argument("--sr", action="store_true", help="also compute the Salient Relevance (SR) map")
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


def sr_input(relevance: np.ndarray, layout: str, method: str) -> np.ndarray:
    """What the SR map is computed on: the SR paper's |R| RGB image for sr-paper on colour input, else the H×W map."""
    from explainer.sr.sr_map import paper_relevance_image
    channels = relevance.shape[-1] if layout == "NHWC" else relevance.shape[0]
    if method == "sr-paper" and channels == 3:
        return paper_relevance_image(relevance if layout == "NCHW" else np.moveaxis(relevance, -1, 0))
    return channel_sum(relevance, layout, batched=False)


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
    from explainer.pictures.heatmaps import PICTURE_SIZE, explanation_pictures
    from explainer.sr.sr_map import sr_map

    paths = list_images(args.images)
    plan = OutputPlan(args.out, "--out")
    stems = [plan.add_set(file_stem(p), lambda s: output_names(s, args.sr)) for p in paths]
    plan.refuse_inputs([args.labels, *paths], models=[args.model])
    mi = model_input(args)
    images, skipped = read_images(paths, mi, keep_going=args.keep_going)
    if not images:
        return report_skipped(skipped, len(paths))
    low, high = mi.bounds(args)
    ex = Explainer(mi.proto, args.method, provider=args.provider, input_shape=mi.input_shape, low=low, high=high,
                   source=mi.source, seed=args.seed_mode, **rule_params(args))
    labels, labels_from = find_labels(args.labels, ex.num_classes, ex.metadata)
    print(f"model {mi.source}: input {ex.layout} {list(ex.input_shape)}, {ex.num_classes} classes, "
          f"method {ex.method}, seed {ex.seed}, preprocessing {mi.describe_preprocessing()}, "
          f"provider {ex.provider}, labels: {labels_from}")
    picture_size = PICTURE_SIZE if args.picture_size is None else args.picture_size
    channels_layout = "HWC" if ex.layout == "NHWC" else "CHW"
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
                sr = sr_map(sr_input(e.relevance[j], ex.layout, ex.method)) if args.sr else None
                if sr is not None:
                    arrays["sr"] = sr
                pictures = explanation_pictures(pixels[j], maps[j], sr, minimum=picture_size,
                                                with_colorbar=args.colorbar)
                with writer.group() as files:
                    for name, picture in pictures.items():
                        picture.save(files.path(f"{stem}_{name}.png"))
                    np.savez_compressed(files.path(f"{stem}.npz"), **arrays)
    print(f"wrote {len(order)} explanation(s) to {plan.folder}/")
    return report_skipped(skipped, len(paths))


def explain_batch(ex: Explainer, x: np.ndarray, target: int | None) -> tuple[Any, dict[int, LowConservationWarning]]:
    """``ex.explain(x)`` and the samples its :class:`LowConservationWarning` names, ``{index in batch: warning}``;
    other warnings pass on unchanged."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", LowConservationWarning)
        e = ex.explain(x, target=target)
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
