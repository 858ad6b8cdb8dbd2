"""Region perturbation study of issue 17, with the protocol of docs/aopc.md fixed in this file before any result.

    python -m tools.aopc_study digits [--images N] [--steps L] [--repeats R] [--out docs/aopc]
    python -m tools.aopc_study photos [--images N] [--steps L] [--repeats R] [--out docs/aopc]
    python -m tools.aopc_study digits --render     # tables and figures again from the summary JSON, no evaluation

``digits``: the shipped digits CNN on the full held-out split of its training script (360 images). ``photos``:
EfficientNet-Lite0 on every offline photo listed in :data:`PHOTO_FILES`. Every method's heatmaps are computed once
and evaluated under the four perturbations (uniform noise, per-channel mean, zero, blur) side by side, with the
random-order baseline and the controls (spatially clustered random "blobs", transposed and negated heatmaps of
:data:`CONTROL_METHOD`); class-switch rates come with every curve. Writes into ``--out``:
``<dataset>_summary.json`` (settings, curves, bootstrap intervals; no per-image values), ``<dataset>_per_image.csv``
(per image, perturbation and method: AOPC, the mean gain over random in the first steps, class-switch rate),
``<dataset>_table.md`` and ``<dataset>_<perturbation>.png``. Options other than the defaults are recorded in the
output and the table's first line, so the committed run is one command.
"""
from __future__ import annotations

import argparse
import csv
import json
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

# ---- the protocol (docs/aopc.md), fixed before the first run -------------------------------------------------------
METHODS = ("gradient", "deconvnet", "lrp-epsilon", "lrp-alpha2-beta1", "epsilon-plus-flat",
           "epsilon-alpha2-beta1-flat")
CONTROL_METHOD = "epsilon-plus-flat"
CONTROLS = ("blobs", f"{CONTROL_METHOD}-transposed", f"{CONTROL_METHOD}-negated")
PERTURBATIONS = ("uniform", "mean", "zero", "blur")
SIGNAL_NORM = "linf"
SEED = 0
EARLY_STEPS = 10
BLOB_SIGMA_REGIONS = 2.0
"""The blobs control: per image, white noise smoothed with a Gaussian of this many region sides, used as a heatmap:
its MoRF order is a random order of spatially clustered regions."""
DATASETS: dict[str, dict[str, Any]] = {
    # 32x32 digits: the paper's 9 px per 224 scaled to 2 px, L = 64 (a quarter of the 256 regions)
    "digits": {"images": None, "steps": 64, "region": 2, "repeats": 5},
    # 224x224 photos: the paper's 9x9 regions; L = 30 (5 % of the 625 regions) and one draw of the random
    # perturbations and orders, to fit a shared 2-core machine (the paper: L = 100, 10 repeats; --steps 100
    # --repeats 10 runs that)
    "photos": {"images": None, "steps": 30, "region": 9, "repeats": 1},
}
PHOTO_FILES = {
    "astronaut": "skimage/data/astronaut.png", "brick": "skimage/data/brick.png",
    "camera": "skimage/data/camera.png", "cell": "skimage/data/cell.png", "chelsea": "skimage/data/chelsea.png",
    "clock_motion": "skimage/data/clock_motion.png", "coffee": "skimage/data/coffee.png",
    "coins": "skimage/data/coins.png", "grass": "skimage/data/grass.png", "gravel": "skimage/data/gravel.png",
    "hubble_deep_field": "skimage/data/hubble_deep_field.jpg", "ihc": "skimage/data/ihc.png",
    "moon": "skimage/data/moon.png", "motorcycle_left": "skimage/data/motorcycle_left.png",
    "motorcycle_right": "skimage/data/motorcycle_right.png", "retina": "skimage/data/retina.jpg",
    "rocket": "skimage/data/rocket.jpg", "china": "sklearn/datasets/images/china.jpg",
    "flower": "sklearn/datasets/images/flower.jpg", "grace_hopper": "matplotlib/mpl-data/sample_data/grace_hopper.jpg",
}
"""Every natural photo of at least 200 px a side inside the installed packages (site-packages relative paths);
left out: synthetic or binary images (chessboard, color, horse, logo, phantom), scanned text (page, text) and
images under 200 px."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.aopc_study", description=__doc__.splitlines()[0])
    parser.add_argument("dataset", choices=sorted(DATASETS))
    parser.add_argument("--images", type=int, help="use the first N images (default: all)")
    parser.add_argument("--steps", type=int, help="perturbation steps L (default: see DATASETS)")
    parser.add_argument("--repeats", type=int, help="draws of the random perturbations and orders")
    parser.add_argument("--out", default=str(ROOT / "docs" / "aopc"))
    parser.add_argument("--render", action="store_true",
                        help="only write the table and figures again from --out's summary JSON")
    args = parser.parse_args(argv)
    out = Path(args.out)
    if args.render:
        summary = json.loads((out / f"{args.dataset}_summary.json").read_text(encoding="utf-8"))
        render(out, args.dataset, summary)
        return 0
    protocol = dict(DATASETS[args.dataset])
    for key in ("images", "steps", "repeats"):
        if getattr(args, key) is not None:
            protocol[key] = getattr(args, key)
    model, images, names, low, high = load_dataset(args.dataset, protocol["images"])
    command = shlex.join(["python", "-m", "tools.aopc_study", *(sys.argv[1:] if argv is None else argv)])
    summary, rows = run_study(model, images, names, low, high, protocol)
    summary["settings"].update(dataset=args.dataset, command=command, images_used=names)
    write_outputs(out, args.dataset, summary, rows)
    return 0


def load_dataset(dataset: str, count: int | None) -> tuple[str, np.ndarray, list[str], float, float]:
    """(model path, NCHW images, image names, low, high) of a dataset."""
    if dataset == "digits":
        from graphs.train_digits_cnn import TrainSettings, load_images, split
        _, x_test, _, _ = split(*load_images(), TrainSettings())
        x = x_test[:count]
        return str(ROOT / "graphs" / "digits_cnn.onnx"), x, [f"test{i}" for i in range(len(x))], 0.0, 1.0
    import sysconfig

    from PIL import Image

    from explainer.images.preprocess import input_bounds, resize_center_crop, to_model_input
    from graphs.efficientnet import efficientnet_path, preprocessing
    site = Path(sysconfig.get_paths()["purelib"])
    names = list(PHOTO_FILES)[:count]
    pixels = [resize_center_crop(np.asarray(Image.open(site / PHOTO_FILES[n]).convert("RGB")), 224) for n in names]
    prep = preprocessing()
    low, high = input_bounds(prep, 3)
    return str(efficientnet_path()), to_model_input(np.stack(pixels), prep, "NCHW"), names, low, high


def heatmaps_of(model: str, images: np.ndarray, low: Any, high: Any, region: int) -> dict[str, np.ndarray]:
    """Every method's and control's (N, H, W) heatmap, explaining the predicted class."""
    from scipy import ndimage

    from explainer import Explainer
    from explainer.evaluation.compare import heatmap_from_relevance
    from explainer.lrp.composites import METHODS as AVAILABLE
    maps: dict[str, np.ndarray] = {}
    for method in METHODS:
        if method not in AVAILABLE:
            print(f"skipping {method}: not among this checkout's methods")
            continue
        ex = Explainer(model, method, low=low, high=high)
        relevance = np.concatenate([ex.explain(images[i:i + 32]).relevance for i in range(0, len(images), 32)])
        maps[method] = heatmap_from_relevance(relevance, "NCHW", ex.composite.signal, SIGNAL_NORM)
    control = maps[CONTROL_METHOD]
    blobs = np.empty(control.shape, np.float32)
    for i in range(len(blobs)):
        noise = np.random.default_rng(np.random.SeedSequence(SEED, spawn_key=(7, i))).standard_normal(control.shape[1:])
        blobs[i] = ndimage.gaussian_filter(noise, BLOB_SIGMA_REGIONS * region, mode="wrap")
    maps["blobs"] = blobs
    maps[f"{CONTROL_METHOD}-transposed"] = np.ascontiguousarray(control.transpose(0, 2, 1))
    maps[f"{CONTROL_METHOD}-negated"] = -control
    return maps


def run_study(model: str, images: np.ndarray, names: list[str], low: Any, high: Any,
              protocol: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The summary (settings and, per perturbation, the report without per-image curves) and the per-image rows."""
    from explainer import Explainer
    from explainer.evaluation.complexity import histogram_entropy, png_bytes
    from explainer.evaluation.region_perturbation import Comparison
    from explainer.evaluation.statistics import Resamples, interval
    start = time.time()
    maps = heatmaps_of(model, images, low, high, protocol["region"])
    print(f"heatmaps of {len(maps)} methods and controls in {time.time() - start:.0f} s")
    score = Explainer(model, "gradient", low=low, high=high).forward
    weights = Resamples(len(images), seed=SEED)
    summary: dict[str, Any] = {"settings": {
        "protocol": "docs/aopc.md", "methods": list(maps), "control_method": CONTROL_METHOD,
        "signal_norm": SIGNAL_NORM, "blob_sigma_regions": BLOB_SIGMA_REGIONS, "early_steps": EARLY_STEPS,
        "perturbations": list(PERTURBATIONS), **protocol, "images": len(images)},
        "complexity": {name: {"png_bytes": float(png_bytes(m).mean()), "entropy": float(histogram_entropy(m).mean())}
                       for name, m in maps.items() if name != "blobs"},
        "perturbations": {}}
    rows: list[dict[str, Any]] = []
    for perturb in PERTURBATIONS:
        begin = time.time()
        comparison = Comparison(score, list(maps), len(images), steps=protocol["steps"], region=protocol["region"],
                                perturb=perturb, low=low, high=high, repeats=protocol["repeats"], seed=SEED,
                                batch_size=256, progress=False)
        comparison.observe(images, 0)
        for name, heatmap in maps.items():
            comparison.add(name, images, 0, heatmap)
        comparison.add_random(images, 0)
        report = comparison.report()
        random_curves = np.asarray(report["methods"]["random"]["per_image"])
        for name, entry in report["methods"].items():
            curves = np.asarray(entry.pop("per_image"))
            switch = np.asarray(entry["class_switch_curve"])
            early = (curves - random_curves)[:, 1:EARLY_STEPS + 1].mean(axis=1)
            if name != "random":
                entry["early_vs_random"] = interval(early, weights)
            per_switch = _per_image_switch(comparison, name)
            for i, image in enumerate(names):
                rows.append({"image": image, "perturbation": perturb, "method": name,
                             "aopc": round(entry["per_image_aopc"][i], 4),
                             "early_gain_vs_random": "" if name == "random" else round(float(early[i]), 4),
                             "class_switch_rate": round(float(per_switch[i]), 4)})
            del entry["per_image_aopc"]
            entry["class_switch_at_end"] = float(switch[-1])
        summary["perturbations"][perturb] = report
        print(f"{perturb}: {time.time() - begin:.0f} s")
    summary["settings"]["seconds"] = round(time.time() - start)
    return summary, rows


def _per_image_switch(comparison: Any, name: str) -> np.ndarray:
    """Per image, the class-switch rate over the L+1 steps (step 0 included) of ``name``'s MoRF (or random) run."""
    order = "random" if name == "random" else "morf"
    switched = comparison.switched[name, order]
    return (switched.sum(axis=1) + comparison.switched0) / (switched.shape[1] + 1)


def write_outputs(out: Path, dataset: str, summary: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    """The summary JSON, per-image CSV, Markdown table and one figure per perturbation."""
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{dataset}_summary.json").write_text(json.dumps(summary, indent=1, allow_nan=False) + "\n",
                                                 encoding="utf-8")
    with open(out / f"{dataset}_per_image.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    render(out, dataset, summary)


def render(out: Path, dataset: str, summary: dict[str, Any]) -> None:
    """``<dataset>_table.md`` and one figure per perturbation from the summary."""
    from explainer.pictures.curves import plot_curves
    for perturb, report in summary["perturbations"].items():
        plot_curves(report, out / f"{dataset}_{perturb}.png",
                    title=f"{dataset}: {perturb} perturbation, {report['settings']['images']} images")
    table = markdown_table(summary)
    (out / f"{dataset}_table.md").write_text(f"`{summary['settings']['command']}`\n\n{table}", encoding="utf-8")
    print(table)


def markdown_table(summary: dict[str, Any]) -> str:
    """The gain over random of every method under every perturbation (95 % paired CI), then one table per
    perturbation: AOPC, gain over random, early gain, class switches, complexity."""
    s = summary["settings"]
    perturbations = list(summary["perturbations"])
    lines = [f"{s['images']} images, L = {s['steps']} steps of {s['region']}×{s['region']} px (fixed grid covering "
             f"the image), {s['repeats']} draw(s) of random perturbations and orders, seed {SEED}, sensitivity "
             f"channel reduction {SIGNAL_NORM}; {s['seconds']} s.", "",
             "AOPC(method) − AOPC(random), mean over images [95 % paired bootstrap CI]:", "",
             "| method | " + " | ".join(perturbations) + " |", "|---|" + "---:|" * len(perturbations)]
    for name in summary["perturbations"][perturbations[0]]["methods"]:
        if name != "random":
            cells = [_ci(summary["perturbations"][p]["methods"][name].get("aopc_vs_random")) for p in perturbations]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines.append("")
    for perturb, report in summary["perturbations"].items():
        lines += [f"### {perturb}", "",
                  "| method | AOPC [95 % CI] | AOPC − random [95 % CI] | steps 1–10 − random [95 % CI] | "
                  "class switch (mean / at L) | PNG bytes | entropy |", "|---|---:|---:|---:|---:|---:|---:|"]
        for name, entry in report["methods"].items():
            low, high = entry["aopc_ci"]
            gain = _ci(entry.get("aopc_vs_random"))
            early = _ci(entry.get("early_vs_random"))
            c = summary["complexity"].get(name)
            png, entropy = (f"{c['png_bytes']:.0f}", f"{c['entropy']:.2f}") if c else ("–", "–")
            lines.append(f"| {name} | {entry['aopc']:.3f} [{low:.3f}, {high:.3f}] | {gain} | {early} | "
                         f"{entry['class_switch_rate']:.2f} / {entry['class_switch_at_end']:.2f} | {png} | "
                         f"{entropy} |")
        lines.append("")
    return "\n".join(lines)


def _ci(value: dict[str, float] | None) -> str:
    if value is None:
        return "–"
    return f"{value['mean']:+.3f} [{value['low']:+.3f}, {value['high']:+.3f}]"


if __name__ == "__main__":
    raise SystemExit(main())
