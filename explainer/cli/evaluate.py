"""`explainer evaluate MODEL IMAGE|DIR|PATTERN ... [--manifest FILE]`: region perturbation (AOPC/ABPC) of several
methods vs random, journaled per image in rows.jsonl (``--resume``), on the local or the Ray engine."""
from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

import numpy as np

from explainer.cli.common import (
    ModelInput,
    add_model_options,
    add_preprocess_options,
    model_input,
    positive_int,
    rule_params,
)
from explainer.cli.outputs import OutputPlan
from explainer.errors import InputError
from explainer.evaluation.compare import ENGINES, MAX_CHUNK, SIGNAL_NORMS, EvaluationSizes, ImageStream, evaluate
from explainer.evaluation.perturbations import resolve_perturbation
from explainer.evaluation.region_perturbation import forward_passes
from explainer.evaluation.regions import plan_regions
from explainer.evaluation.report import comparison_files, format_table
from explainer.evaluation.rows import ROWS_FILE
from explainer.images.preprocess import load_batch
from explainer.images.sources import ImageList, gather_images
from explainer.limits import DEFAULT_EVALUATION_BYTES, parse_bytes

HELP = "compare methods by region perturbation (MoRF/LeRF, AOPC, ABPC); writes aopc.json and aopc.png"


def add_protocol_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("images", nargs="*", metavar="IMAGE",
                   help="image files, folders, or quoted glob patterns such as 'data/**/*.png'")
    p.add_argument("--manifest", action="append", default=[], metavar="FILE",
                   help="a file listing images, one path per line or CSV 'path,target' (relative paths: from the "
                        "manifest's folder); may be repeated (default: none)")
    p.add_argument("--recursive", action="store_true", help="take images from the subfolders of folders too")
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted run from the rows.jsonl in the output folder, skipping the images "
                        "done (the settings must be the same)")
    p.add_argument("--fail-fast", action="store_true",
                   help="stop at the first image that cannot be read (default: skip it and list it in the summary)")
    p.add_argument("--engine", choices=list(ENGINES), default="local",
                   help="local (default) or ray: spread the images over Ray actors (pip install explainer[ray])")
    p.add_argument("--workers", type=positive_int,
                   help="Ray actors, each holding its own explainer (default: the CPUs Ray sees)")
    p.add_argument("--address",
                   help="Ray cluster to join, e.g. ray://head:10001 or auto (default: start a local Ray instance)")
    add_preprocess_options(p)
    p.add_argument("--steps", type=positive_int,
                   help="perturbation steps L (default: scaled to the input: the paper's 100, at most a quarter of "
                        "the regions, e.g. 64 on 32×32)")
    p.add_argument("--region", type=positive_int,
                   help="region side in pixels (default: scaled to the input: the paper's 9 px per 224 of the "
                        "shorter side, rounded up, e.g. 2 on 32×32)")
    p.add_argument("--grid", choices=["fixed", "sliding"], default="fixed",
                   help="region grid: fixed non-overlapping grid (default) or sliding window with greedy exclusion")
    p.add_argument("--perturb", choices=["uniform", "mean", "zero", "blur"], default="uniform",
                   help="replacement for removed regions (default: uniform noise over the valid input range)")
    p.add_argument("--repeats", type=positive_int, default=10, help="repetitions for random perturbations (default 10)")
    p.add_argument("--signal-norm", choices=list(SIGNAL_NORMS), default="l2",
                   help="channel reduction of gradient-like signals (sensitivity, DeconvNet, guided backprop): l2 "
                        "norm (default) or linf, max |g| over channels (Simonyan et al.'s saliency; docs/aopc.md)")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the random perturbations and orders, drawn per image (default 0; for the relevance "
                        "seed see --seed-mode)")
    p.add_argument("--batch-size", type=positive_int, default=128,
                   help="most perturbed images per ONNX Runtime run (default 128; fewer when --max-memory says so)")
    p.add_argument("--max-memory", type=byte_count, default=DEFAULT_EVALUATION_BYTES, metavar="BYTES",
                   help="memory for the batches of images explained and perturbed, on top of the model and its "
                        "sessions: bytes or e.g. 512M, 2G (default 1G)")
    p.add_argument("--chunk", type=positive_int,
                   help=f"images read from disk, explained and perturbed at a time (default: as many as "
                        f"--max-memory allows, at most {MAX_CHUNK})")


def byte_count(text: str) -> int:
    """argparse type of --max-memory: a positive byte count, with an optional K, M, G or T suffix."""
    try:
        return parse_bytes(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a byte count such as 512M, 2G or 1073741824, got {text!r}") \
            from None


def run_evaluation(args: argparse.Namespace, images: ImageList, methods: list[str], orders: tuple[str, ...], *,
                   rows: Path, include_random: bool = True) -> dict:
    """Check the protocol fits the model's input (before any explanation), say what the run costs and how it is
    split, then evaluate ``methods`` (and, with ``include_random``, the random baseline) with ``args.engine``,
    reading the images from disk a chunk at a time and journaling their rows in ``rows``. The report lists the images
    evaluated; those that could not be read are skipped (``--fail-fast``: the first ends the run)."""
    if args.engine != "ray" and (args.workers is not None or args.address is not None):
        raise InputError("--workers and --address are options of --engine ray")
    mi = model_input(args)
    plan = plan_regions(*mi.size, steps=args.steps, region=args.region, grid=args.grid,
                        names=("--steps", "--region"))
    low, high = mi.bounds(args)
    perturbation = resolve_perturbation(args.perturb, low=low, high=high, layout=mi.spec.layout)
    paths = images.paths
    stream = image_stream(images, mi)
    input_shape, preprocess = mi.input_shape, mi.prep.name
    run_settings = {"preprocess": preprocess, "size": list(mi.size), "resize_mode": mi.resize_mode,
                    "images": len(paths), "image_list_sha256": _list_digest(images)}
    del mi  # the model's protobuf: the explainer reads the file again and keeps only what it needs
    passes = forward_passes(len(paths), plan.steps, methods=len(methods), orders=len(orders), repeats=args.repeats,
                            random_perturbation=perturbation.random, include_random=include_random)
    baseline = " and the random order" if include_random else ""
    repeats = f", {args.repeats} repeats" if perturbation.random or include_random else ""

    def announce(sizes: EvaluationSizes) -> None:
        print(f"evaluating {', '.join(methods)}{baseline} on {len(paths)} image(s) with {plan.describe()}, "
              f"{args.grid} grid, {args.perturb} perturbation{repeats}: {passes:,} forward passes")
        print(f"memory: {sizes.describe()} (--chunk, --max-memory, --batch-size)")

    report = evaluate(args.model, stream, methods, low=low, high=high, orders=orders, include_random=include_random,
                      steps=plan.steps, region=plan.region, perturb=args.perturb, repeats=args.repeats,
                      seed=args.seed, grid=args.grid, provider=args.provider, batch_size=args.batch_size,
                      max_memory=args.max_memory, chunk=args.chunk, input_shape=input_shape,
                      seed_mode=args.seed_mode, announce=announce, names=("--batch-size", "--max-memory"),
                      signal_norm=args.signal_norm, rows=rows, resume=args.resume, fail_fast=args.fail_fast,
                      engine=args.engine, workers=args.workers, address=args.address, run_settings=run_settings,
                      **rule_params(args))
    settings = report["settings"]
    settings["region_choice"] = plan.describe()
    settings["preprocess"] = preprocess
    failed = settings.get("failed_images", [])
    skipped = {entry["index"] for entry in failed}
    settings["image_files"] = [str(p) for i, p in enumerate(paths) if i not in skipped]
    print(f"{settings['images']} of {len(paths)} image(s) evaluated"
          + (f", {len(failed)} could not be read (skipped):" if failed else ""))
    for entry in failed:
        print(f"  - {entry['reason']}")
    return report


def image_stream(images: ImageList, mi: ModelInput) -> ImageStream:
    """The images of ``images``, loaded and preprocessed for the model a few at a time."""
    spec, prep, size, resize_mode, fill, paths = mi.spec, mi.prep, mi.size, mi.resize_mode, mi.fill, images.paths

    def read(start: int, stop: int) -> np.ndarray:
        return load_batch(paths[start:stop], spec, prep, size=size, resize_mode=resize_mode, fill=fill)[0]

    return ImageStream(len(paths), read, paths=paths, targets=images.targets)


def input_images(args: argparse.Namespace) -> ImageList:
    """The images the positional arguments, ``--manifest`` and ``--recursive`` name."""
    if not args.images and not args.manifest:
        raise InputError("no images given: name image files, folders or patterns, or a --manifest")
    return gather_images(args.images, manifests=args.manifest, recursive=args.recursive)


def _list_digest(images: ImageList) -> str:
    """SHA-256 of the image list and its targets: a resumed run must number its images the same way."""
    digest = hashlib.sha256()
    for k, path in enumerate(images.paths):
        target = "" if images.targets is None else f",{images.targets[k]}"
        digest.update(f"{path}{target}\n".encode())
    return digest.hexdigest()


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_model_options(p, method=False, seed_mode=True)
    p.add_argument("--methods", default="epsilon-plus-flat,gradient,random",
                   help="comma-separated methods; 'random' adds the random-order baseline "
                        "(default: epsilon-plus-flat,gradient,random)")
    p.add_argument("--order", choices=["morf", "lerf", "both"], default="morf",
                   help="perturbation order (default morf; lerf or both: MoRF and LeRF, gives ABPC, which is not "
                        "part of Samek et al.'s protocol)")
    p.add_argument("--lerf-by", choices=["abs", "signed"], default="abs",
                   help="LeRF order: least |relevance| first (abs, default) or most negative first (signed)")
    p.add_argument("--out", default="evaluation", help="output folder (default ./evaluation)")
    add_protocol_options(p)


def run(args: argparse.Namespace) -> int:
    from explainer.lrp.composites import METHODS
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m != "random" and m not in METHODS]
    if unknown:
        raise InputError(f"unknown method(s) {', '.join(unknown)}; choose from {', '.join(METHODS)}, random")
    if not [m for m in methods if m != "random"]:
        raise InputError(f"--methods {args.methods!r} names no method to evaluate besides the random baseline")
    images = input_images(args)
    plan = OutputPlan(args.out, "--out")
    json_path, png_path, rows_path = plan.add("aopc.json"), plan.add("aopc.png"), plan.add(ROWS_FILE)
    plan.refuse_inputs([*images.paths, *args.manifest], models=[args.model])
    orders = ("morf",) if args.order == "morf" else ("morf", "lerf" if args.lerf_by == "abs" else "lerf-signed")
    report = run_evaluation(args, images, [m for m in methods if m != "random"], orders, rows=rows_path,
                            include_random="random" in methods)
    kept = f"the report was not written; the per-image rows are kept in {rows_path}: the same command with " \
           "--resume writes it without recomputing them"
    with plan.writing(kept=kept) as writer, writer.group() as files:
        comparison_files(report, files, json_path.name, png_path.name)
    for line in format_table(report).splitlines():
        print(line)
    print(f"wrote {json_path} and {png_path}")
    return 0
