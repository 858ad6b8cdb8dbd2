"""`explainer explain MODEL IMAGE...`: top classes, relevance (.npz), heatmap and overlay PNGs, optional SR maps."""
from __future__ import annotations

import argparse

import numpy as np
from tqdm import tqdm

from explainer.api import Explainer
from explainer.cli.common import (
    add_model_options,
    add_preprocess_options,
    model_input,
    output_dir,
    rule_params,
    safe_stems,
)
from explainer.images.io import list_images
from explainer.images.labels import load_labels, top_k
from explainer.images.preprocess import load_batch
from explainer.images.spec import channel_sum

HELP = "explain images: print top classes, write relevance (.npz) and heatmap/overlay PNGs (and SR maps with --sr)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_model_options(p)
    p.add_argument("images", nargs="+", help="image files or folders")
    add_preprocess_options(p)
    p.add_argument("--target", type=int, help="class to explain (default: the top class of each image)")
    p.add_argument("--top", type=int, default=5, help="how many top classes to print (default 5)")
    p.add_argument("--labels", help="class names, one per line (default: ImageNet names for 1000-class models)")
    p.add_argument("--sr", action="store_true", help="also compute the Salient Relevance (SR) map")
    p.add_argument("--out", default="explanations", help="output folder (default ./explanations)")
    p.add_argument("--batch-size", type=int, default=8, help="images per ONNX Runtime run (default 8)")


def sr_input(relevance: np.ndarray, layout: str, method: str) -> np.ndarray:
    """What the SR map is computed on: the SR paper's |R| RGB image for sr-paper on colour input, else the H×W map."""
    from explainer.sr.sr_map import paper_relevance_image
    channels = relevance.shape[-1] if layout == "NHWC" else relevance.shape[0]
    if method == "sr-paper" and channels == 3:
        return paper_relevance_image(relevance if layout == "NCHW" else np.moveaxis(relevance, -1, 0))
    return channel_sum(relevance, layout, batched=False)


def run(args: argparse.Namespace) -> int:
    from explainer.pictures.heatmaps import heatmap, overlay, sr_image
    from explainer.sr.sr_map import sr_map

    mi = model_input(args)
    paths = list_images(args.images)
    out = output_dir(args.out)
    low, high = mi.bounds(args)
    ex = Explainer(mi.proto, args.method, provider=args.provider, input_shape=mi.input_shape, low=low, high=high,
                   source=mi.source, **rule_params(args))
    labels = load_labels(args.labels, ex.num_classes)
    print(f"model {mi.source}: input {ex.layout} {list(ex.input_shape)}, {ex.num_classes} classes, "
          f"method {ex.method}, preprocessing {mi.describe_preprocessing()}, provider {ex.provider}")
    stems = safe_stems(paths)
    batch = max(1, args.batch_size)
    for start in tqdm(range(0, len(paths), batch), desc="explaining", unit="batch", disable=len(paths) <= batch):
        chunk = paths[start:start + batch]
        x, pixels = load_batch(chunk, mi.spec, mi.prep, size=mi.size)
        e = ex.explain(x, target=args.target)
        maps = e.relevance_map()
        for i, path in enumerate(chunk):
            stem = stems[start + i]
            image = pixels[i][..., 0] if pixels[i].shape[-1] == 1 else pixels[i]
            print(f"{path}:")
            for rank, (idx, name, logit, prob) in enumerate(top_k(e.logits[i], args.top, labels), start=1):
                mark = "  <- explained" if idx == e.target[i] else ""
                print(f"  {rank}. {name} (class {idx}): logit {logit:.3f}, p {prob:.3f}{mark}")
            arrays = {"relevance": maps[i].astype(np.float32), "logits": e.logits[i], "target": e.target[i]}
            heatmap(maps[i]).save(out / f"{stem}_heatmap.png")
            overlay(image, maps[i]).save(out / f"{stem}_overlay.png")
            if args.sr:
                sr = sr_map(sr_input(e.relevance[i], ex.layout, ex.method))
                arrays["sr"] = sr
                sr_image(sr).save(out / f"{stem}_sr.png")
                overlay(image, sr, mode="sr").save(out / f"{stem}_sr_overlay.png")
            np.savez_compressed(out / f"{stem}.npz", **arrays)
    print(f"wrote {len(paths)} explanation(s) to {out}/")
    return 0
