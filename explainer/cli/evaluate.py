"""`explainer evaluate MODEL IMAGE|DIR ...`: region perturbation (AOPC/ABPC) of several methods vs random."""
from __future__ import annotations

import argparse
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
from explainer.evaluation.compare import MAX_CHUNK, EvaluationSizes, ImageStream, evaluate
from explainer.evaluation.perturbations import resolve_perturbation
from explainer.evaluation.region_perturbation import forward_passes
from explainer.evaluation.regions import plan_regions
from explainer.evaluation.report import comparison_files, format_table
from explainer.images.io import list_images
from explainer.images.preprocess import load_batch
from explainer.limits import DEFAULT_EVALUATION_BYTES, parse_bytes

HELP = "compare methods by region perturbation (MoRF/LeRF, AOPC, ABPC); writes aopc.json and aopc.png"


def add_protocol_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("images", nargs="+", help="image files or folders")
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


def run_evaluation(args: argparse.Namespace, paths: list[Path], methods: list[str], orders: tuple[str, ...], *,
                   include_random: bool = True) -> dict:
    """Check the protocol fits the model's input (before any explanation) and that every image can be read, say
    what the run costs and how it is split, then evaluate ``methods`` (and, with ``include_random``, the random
    baseline), reading the images from disk a chunk at a time."""
    mi = model_input(args)
    plan = plan_regions(*mi.size, steps=args.steps, region=args.region, grid=args.grid,
                        names=("--steps", "--region"))
    low, high = mi.bounds(args)
    perturbation = resolve_perturbation(args.perturb, low=low, high=high, layout=mi.spec.layout)
    images = image_stream(paths, mi)
    for start in range(len(paths)):  # an unreadable image fails now, not after the images before it were evaluated
        images.read(start, start + 1)
    input_shape, preprocess = mi.input_shape, mi.prep.name
    del mi  # the model's protobuf: the explainer reads the file again and keeps only what it needs
    passes = forward_passes(len(paths), plan.steps, methods=len(methods), orders=len(orders), repeats=args.repeats,
                            random_perturbation=perturbation.random, include_random=include_random)
    baseline = " and the random order" if include_random else ""
    repeats = f", {args.repeats} repeats" if perturbation.random or include_random else ""

    def announce(sizes: EvaluationSizes) -> None:
        print(f"evaluating {', '.join(methods)}{baseline} on {len(paths)} image(s) with {plan.describe()}, "
              f"{args.grid} grid, {args.perturb} perturbation{repeats}: {passes:,} forward passes")
        print(f"memory: {sizes.describe()} (--chunk, --max-memory, --batch-size)")

    report = evaluate(args.model, images, methods, low=low, high=high, orders=orders, include_random=include_random,
                      steps=plan.steps, region=plan.region, perturb=args.perturb, repeats=args.repeats,
                      seed=args.seed, grid=args.grid, provider=args.provider, batch_size=args.batch_size,
                      max_memory=args.max_memory, chunk=args.chunk, input_shape=input_shape,
                      seed_mode=args.seed_mode, announce=announce, names=("--batch-size", "--max-memory"),
                      **rule_params(args))
    report["settings"]["region_choice"] = plan.describe()
    report["settings"]["preprocess"] = preprocess
    report["settings"]["image_files"] = [str(p) for p in paths]
    return report


def image_stream(paths: list[Path], mi: ModelInput) -> ImageStream:
    """The images of ``paths``, loaded and preprocessed for the model a few at a time."""
    spec, prep, size, resize_mode, fill = mi.spec, mi.prep, mi.size, mi.resize_mode, mi.fill

    def read(start: int, stop: int) -> np.ndarray:
        return load_batch(paths[start:stop], spec, prep, size=size, resize_mode=resize_mode, fill=fill)[0]

    return ImageStream(len(paths), read)


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_model_options(p, method=False, seed_mode=True)
    p.add_argument("--methods", default="epsilon-plus-flat,gradient,random",
                   help="comma-separated methods; 'random' adds the random-order baseline "
                        "(default: epsilon-plus-flat,gradient,random)")
    p.add_argument("--order", choices=["morf", "lerf", "both"], default="morf",
                   help="perturbation order (default morf; both: MoRF and LeRF, gives ABPC)")
    p.add_argument("--out", default="evaluation", help="output folder (default ./evaluation)")
    add_protocol_options(p)


def run(args: argparse.Namespace) -> int:
    from explainer.errors import InputError
    from explainer.lrp.composites import METHODS
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m != "random" and m not in METHODS]
    if unknown:
        raise InputError(f"unknown method(s) {', '.join(unknown)}; choose from {', '.join(METHODS)}, random")
    if not [m for m in methods if m != "random"]:
        raise InputError(f"--methods {args.methods!r} names no method to evaluate besides the random baseline")
    paths = list_images(args.images)
    plan = OutputPlan(args.out, "--out")
    json_path, png_path = plan.add("aopc.json"), plan.add("aopc.png")
    plan.refuse_inputs(paths, models=[args.model])
    orders = ("morf",) if args.order == "morf" else ("morf", "lerf")
    report = run_evaluation(args, paths, [m for m in methods if m != "random"], orders,
                            include_random="random" in methods)
    with plan.writing() as writer, writer.group() as files:
        comparison_files(report, files, json_path.name, png_path.name)
    for line in format_table(report).splitlines():
        print(line)
    print(f"wrote {json_path} and {png_path}")
    return 0
