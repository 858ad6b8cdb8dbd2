"""`explainer evaluate MODEL IMAGE|DIR|PATTERN ... [--manifest FILE]` or `explainer evaluate MODEL SAMPLES.npy`:
region perturbation (AOPC/ABPC) of several methods vs random, journaled per image or sample in rows.jsonl
(``--resume``), on the local or the Ray engine. A .npy holds a batch of feature rows, 1-D signals or token ids, cut
into the units of :mod:`explainer.evaluation.units`. A model whose output is a map [N, K, H, W] is scored by the sum of
the logits chosen at the unperturbed image (``--target`` channel over ``--region X0 Y0 X1 Y1``, ``--mask`` or the
whole map; :mod:`explainer.evaluation.maps`)."""
from __future__ import annotations

import argparse
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from explainer.cli.common import (
    ModelInput,
    add_model_options,
    add_preprocess_options,
    model_input,
    non_negative_int,
    positive_int,
    rule_params,
)
from explainer.cli.inputs import read_fixed
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
                   help="image files, folders, or quoted glob patterns such as 'data/**/*.png'; or, for a model on "
                        "feature rows [N, F], 1-D signals [N, C, L] or token ids [N, T], one .npy file holding a "
                        "batch of them (fed as it is, no preprocessing)")
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
                        "the regions, e.g. 64 on 32×32, or of a signal's windows; every feature of a row; the most "
                        "real tokens of any row; all at most 100)")
    p.add_argument("--region", action=RegionOption, nargs="+", type=int, metavar=("PX|X0", "Y0 X1 Y1"),
                   help="one number: region side in pixels, or a 1-D signal's window in samples (default: scaled to "
                        "the input: the paper's 9 px per 224 of the shorter side, rounded up, e.g. 2 on 32×32; a "
                        "signal's length / 400, rounded up; features and tokens are removed one at a time); four: "
                        "for a model whose output is a map, the box of output-map pixels whose logits are summed "
                        "(half-open, as in explain)")
    p.add_argument("--region-size", dest="region", type=positive_int, metavar="PX",
                   help="the region side or window alone, as the one-number --region (default: scaled to the "
                        "input)")
    p.add_argument("--target", type=non_negative_int, metavar="K",
                   help="for a model whose output is a map: the channel whose logits are summed over --region, "
                        "--mask or the whole map (default: each pixel's arg-max channel on the unperturbed image)")
    p.add_argument("--mask", metavar="FILE",
                   help="for a model whose output is a map: sum over this mask of the map's H x W pixels (.npy of "
                        "booleans or 0/1, or an image's non-zero pixels; default: none, the whole map or --region)")
    p.set_defaults(output_region=None)
    p.add_argument("--grid", choices=["fixed", "sliding"], default="fixed",
                   help="region grid: fixed non-overlapping grid (default) or sliding window with greedy exclusion")
    p.add_argument("--perturb", choices=["uniform", "mean", "zero", "blur", "baseline", "mask-token"],
                   help="replacement for removed regions (default: uniform noise over the valid input range for "
                        "images; for signals mean, each channel's mean; features: baseline, the --baseline-row; "
                        "token ids: mask-token, the --mask-token)")
    p.add_argument("--baseline-row", metavar="FILE.npy",
                   help="feature rows: the row [F] whose values replace removed features, e.g. the training mean "
                        "(default: the mean of the evaluated rows, said so in the report)")
    p.add_argument("--mask-token", type=non_negative_int, metavar="ID",
                   help="token ids: the id that replaces removed tokens (default: the model's metadata entry "
                        "mask_token_id, else pad_token_id, else 0; the report says which)")
    p.add_argument("--input", metavar="NAME",
                   help="with a .npy input: the model input it holds, which receives relevance, when the model has "
                        "several (default: the single float input, else the token ids that feed an embedding)")
    p.add_argument("--fixed", action="append", default=[], metavar="NAME=FILE.npy",
                   help="token ids: a companion input fed as given, [N, T] like the ids, e.g. "
                        "attention_mask=mask.npy (positions where the attention mask is 0 are never removed); may "
                        "be repeated (default: none; the model's defaults for missing text companions)")
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


class RegionOption(argparse.Action):
    """``--region PX`` (the perturbed regions' side, ``args.region``) or ``--region X0 Y0 X1 Y1`` (a box of an output
    map, ``args.output_region``)."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        if len(values) == 1:
            if values[0] < 1:
                raise argparse.ArgumentError(self, f"the region side must be a positive integer, got {values[0]}")
            namespace.region = values[0]
        elif len(values) == 4:
            namespace.output_region = tuple(values)
        else:
            raise argparse.ArgumentError(self, f"takes one number (the region side in pixels) or four (X0 Y0 X1 Y1, "
                                               f"a box of an output map), got {len(values)}")


def byte_count(text: str) -> int:
    """argparse type of --max-memory: a positive byte count, with an optional K, M, G or T suffix."""
    try:
        return parse_bytes(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a byte count such as 512M, 2G or 1073741824, got {text!r}") \
            from None


@dataclass(frozen=True)
class ArrayInputs:
    """A .npy batch of samples (feature rows, signals, token ids), the companion inputs given with ``--fixed`` and
    the ``--baseline-row``; ``paths``: every file read."""

    path: Path
    array: np.ndarray
    fixed: dict[str, np.ndarray] = field(default_factory=dict)
    baseline: np.ndarray | None = None
    paths: list[Path] = field(default_factory=list)


#: options that shape how images are read, refused with a .npy input (fed as it is)
IMAGE_OPTIONS = ("preprocess", "mean", "std", "channel_order", "resize", "fill", "size", "recursive", "manifest")


def run_evaluation(args: argparse.Namespace, images: ImageList | ArrayInputs, methods: list[str],
                   orders: tuple[str, ...], *, rows: Path, include_random: bool = True) -> dict:
    """Check the protocol fits the model's input (before any explanation), say what the run costs and how it is
    split, then evaluate ``methods`` (and, with ``include_random``, the random baseline) with ``args.engine``,
    reading the images from disk a chunk at a time and journaling their rows in ``rows``. The report lists the images
    evaluated; those that could not be read are skipped (``--fail-fast``: the first ends the run). A .npy batch
    (:class:`ArrayInputs`) is evaluated by :func:`run_array_evaluation`."""
    if args.engine != "ray" and (args.workers is not None or args.address is not None):
        raise InputError("--workers and --address are options of --engine ray")
    if isinstance(images, ArrayInputs):
        return run_array_evaluation(args, images, methods, orders, rows=rows, include_random=include_random)
    mi = model_input(args)
    plan = plan_regions(*mi.size, steps=args.steps, region=args.region, grid=args.grid,
                        names=("--steps", "--region"))
    low, high = mi.bounds(args)
    perturb = args.perturb or "uniform"
    perturbation = resolve_perturbation(perturb, low=low, high=high, layout=mi.spec.layout)
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
              f"{args.grid} grid, {perturb} perturbation{repeats}: {passes:,} forward passes")
        print(f"memory: {sizes.describe()} (--chunk, --max-memory, --batch-size)")

    report = evaluate(args.model, stream, methods, low=low, high=high, orders=orders, include_random=include_random,
                      steps=plan.steps, region=plan.region, perturb=perturb, repeats=args.repeats,
                      seed=args.seed, grid=args.grid, provider=args.provider, batch_size=args.batch_size,
                      max_memory=args.max_memory, chunk=args.chunk, input_shape=input_shape,
                      seed_mode=args.seed_mode, announce=announce, names=("--batch-size", "--max-memory"),
                      signal_norm=args.signal_norm, rows=rows, resume=args.resume, fail_fast=args.fail_fast,
                      engine=args.engine, workers=args.workers, address=args.address, run_settings=run_settings,
                      **map_options(args), **rule_params(args))
    settings = report["settings"]
    settings["region_choice"] = plan.describe()
    settings["preprocess"] = preprocess
    say_explained(args, settings)
    failed = settings.get("failed_images", [])
    skipped = {entry["index"] for entry in failed}
    settings["image_files"] = [str(p) for i, p in enumerate(paths) if i not in skipped]
    print(f"{settings['images']} of {len(paths)} image(s) evaluated"
          + (f", {len(failed)} could not be read (skipped):" if failed else ""))
    for entry in failed:
        print(f"  - {entry['reason']}")
    return report


def run_array_evaluation(args: argparse.Namespace, inputs: ArrayInputs, methods: list[str],
                         orders: tuple[str, ...], *, rows: Path, include_random: bool = True) -> dict:
    """:func:`run_evaluation` of a .npy batch: the model's explainer built for the samples' shape (method ``auto``:
    the model's default), the units and steps planned and announced, then
    :func:`~explainer.evaluation.compare.evaluate` on the samples in memory."""
    from explainer.api import Explainer
    from explainer.evaluation.units import KINDS, prepare_units
    from explainer.lrp.composites import AUTO, params_for

    x = inputs.array
    ex = Explainer(args.model, AUTO, provider=args.provider, input_shape=tuple(x.shape[1:]), low=args.low,
                   high=args.high, seed=args.seed_mode, input=args.input)
    methods = list(dict.fromkeys(ex.method if m == AUTO else m for m in methods))
    shares = params_for(methods, rule_params(args))
    ex = ex.with_method(methods[0], low=args.low, high=args.high, seed=args.seed_mode, **shares[methods[0]])
    if ex.layout not in KINDS:
        raise InputError(f"{inputs.path}: a .npy input is evaluated for models on feature rows, 1-D signals or token "
                         f"ids; input '{ex.input_name}' is {ex.layout}: give image files")
    samples: Any = {ex.input_name: x, **inputs.fixed} if inputs.fixed else x
    options = dict(steps=args.steps, region=args.region, grid=args.grid, perturb=args.perturb,
                   baseline=inputs.baseline, mask_token=args.mask_token, low=args.low, high=args.high)
    units, _, perturb, plan = prepare_units(ex, samples, **options, names=("--steps", "--region-size"))
    replacement = units.settings(perturb)["replacement"]
    random_perturbation = units.perturbation(perturb).random
    passes = forward_passes(len(x), plan.steps, methods=len(methods), orders=len(orders), repeats=args.repeats,
                            random_perturbation=random_perturbation, include_random=include_random)
    baseline = " and the random order" if include_random else ""
    repeats = f", {args.repeats} repeats" if random_perturbation or include_random else ""

    def announce(sizes: EvaluationSizes) -> None:
        print(f"evaluating {', '.join(methods)}{baseline} on {len(x)} sample(s) ({units.kind}) of {inputs.path} with "
              f"{plan.describe()}, replaced by {replacement}{repeats}: {passes:,} forward passes")
        print(f"memory: {sizes.describe()} (--chunk, --max-memory, --batch-size)")

    digest = hashlib.sha256()
    for array in (x, *inputs.fixed.values(), *(() if inputs.baseline is None else (inputs.baseline,))):
        digest.update(np.ascontiguousarray(array).tobytes())
    report = evaluate(ex, samples, methods, orders=orders, include_random=include_random, repeats=args.repeats,
                      seed=args.seed, provider=args.provider, batch_size=args.batch_size, max_memory=args.max_memory,
                      chunk=args.chunk, input_shape=tuple(x.shape[1:]), seed_mode=args.seed_mode, announce=announce,
                      names=("--batch-size", "--max-memory"), signal_norm=args.signal_norm, rows=rows,
                      resume=args.resume, fail_fast=args.fail_fast, engine=args.engine, workers=args.workers,
                      address=args.address, unit_names=("--steps", "--region-size"),
                      run_settings={"input_file": str(inputs.path), "input_sha256": digest.hexdigest()},
                      **options, **map_options(args), **rule_params(args))
    settings = report["settings"]
    settings["input_file"] = str(inputs.path)
    settings["preprocess"] = "none: the .npy samples are fed as they are"
    say_explained(args, settings)
    print(f"{settings['images']} sample(s) evaluated")
    return report


def map_options(args: argparse.Namespace) -> dict[str, Any]:
    """evaluate's options of an output map: ``--target``, the four-number ``--region`` and ``--mask`` (read here)."""
    mask = None
    if args.mask is not None:
        if args.output_region is not None:
            raise InputError("pass --region X0 Y0 X1 Y1 or --mask, not both")
        from explainer.cli.explain import read_mask
        mask = read_mask(args.mask)
    return {"target": args.target, "output_region": args.output_region, "output_mask": mask}


def say_explained(args: argparse.Namespace, settings: dict[str, Any]) -> None:
    """On an output map: print what was summed, and name the --mask file in the settings."""
    if "explained" in settings:
        if args.mask is not None:
            settings["output_mask_file"] = str(args.mask)
        print(f"scored: {settings['explained']}" + (f" (--mask {args.mask})" if args.mask is not None else ""))


def image_stream(images: ImageList, mi: ModelInput) -> ImageStream:
    """The images of ``images``, loaded and preprocessed for the model a few at a time."""
    spec, prep, size, resize_mode, fill, paths = mi.spec, mi.prep, mi.size, mi.resize_mode, mi.fill, images.paths

    def read(start: int, stop: int) -> np.ndarray:
        return load_batch(paths[start:stop], spec, prep, size=size, resize_mode=resize_mode, fill=fill)[0]

    return ImageStream(len(paths), read, paths=paths, targets=images.targets)


def array_input(args: argparse.Namespace) -> bool:
    """Whether the inputs named are a .npy batch of samples rather than images."""
    return any(str(path).lower().endswith(".npy") for path in args.images)


def input_images(args: argparse.Namespace) -> ImageList | ArrayInputs:
    """The images the positional arguments, ``--manifest`` and ``--recursive`` name, or the one .npy batch (with
    ``--fixed`` companions and ``--baseline-row``) given instead."""
    if array_input(args):
        return input_arrays(args)
    for option in ("baseline_row", "mask_token", "fixed", "input"):
        if getattr(args, option) not in (None, []):
            raise InputError(f"--{option.replace('_', '-')} is for a .npy input (feature rows, signals, token ids), "
                             "not images")
    if not args.images and not args.manifest:
        raise InputError("no images given: name image files, folders or patterns, or a --manifest")
    return gather_images(args.images, manifests=args.manifest, recursive=args.recursive)


def input_arrays(args: argparse.Namespace) -> ArrayInputs:
    """The .npy batch of the positional argument, its ``--fixed`` companions and the ``--baseline-row``; the image
    options are refused (a .npy is fed as it is)."""
    from explainer.cli.explain import read_array

    if len(args.images) != 1:
        raise InputError("give one .npy file (a batch of samples), or image files, folders and patterns, not both")
    given = [name for name in IMAGE_OPTIONS if getattr(args, name, None) not in (None, False, [])]
    if given:
        listed = ", ".join(f"--{name.replace('_', '-')}" for name in given)
        raise InputError(f"{listed}: for images; a .npy input is fed to the model as it is")
    path = Path(args.images[0])
    x = read_array(str(path), "the samples")
    if x.dtype.kind not in "iuf" or x.ndim < 2 or len(x) == 0:
        raise InputError(f"{path}: expected a batch of real numbers [N, ...] with N >= 1; got shape {list(x.shape)}, "
                         f"dtype {x.dtype}")
    fixed = read_fixed(args.fixed)
    paths = [path, *(Path(entry.partition("=")[2]) for entry in args.fixed)]
    baseline = None
    if args.baseline_row is not None:
        baseline = read_array(args.baseline_row, "the baseline row")
        paths.append(Path(args.baseline_row))
    return ArrayInputs(path, x, fixed, baseline, paths)


def _list_digest(images: ImageList) -> str:
    """SHA-256 of the image list and its targets: a resumed run must number its images the same way."""
    digest = hashlib.sha256()
    for k, path in enumerate(images.paths):
        target = "" if images.targets is None else f",{images.targets[k]}"
        digest.update(f"{path}{target}\n".encode())
    return digest.hexdigest()


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_model_options(p, method=False, seed_mode=True)
    p.add_argument("--methods",
                   help="comma-separated methods; 'random' adds the random-order baseline; with a .npy input 'auto' "
                        "is the model's default method (epsilon-plus for feature rows, attn-lrp for transformers) "
                        "(default: epsilon-plus-flat,gradient,random for images, auto,gradient,random for a .npy)")
    p.add_argument("--order", choices=["morf", "lerf", "both"], default="morf",
                   help="perturbation order (default morf; lerf or both: MoRF and LeRF, gives ABPC, which is not "
                        "part of Samek et al.'s protocol)")
    p.add_argument("--lerf-by", choices=["abs", "signed"], default="abs",
                   help="LeRF order: least |relevance| first (abs, default) or most negative first (signed)")
    p.add_argument("--out", default="evaluation", help="output folder (default ./evaluation)")
    add_protocol_options(p)


def run(args: argparse.Namespace) -> int:
    from explainer.lrp.composites import AUTO, METHODS
    arrays = array_input(args)
    text = args.methods if args.methods is not None else \
        ("auto,gradient,random" if arrays else "epsilon-plus-flat,gradient,random")
    methods = [m.strip() for m in text.split(",") if m.strip()]
    known = [*METHODS, AUTO] if arrays else list(METHODS)
    unknown = [m for m in methods if m != "random" and m not in known]
    if unknown:
        raise InputError(f"unknown method(s) {', '.join(unknown)}; choose from {', '.join(known)}, random")
    if not [m for m in methods if m != "random"]:
        raise InputError(f"--methods {text!r} names no method to evaluate besides the random baseline")
    images = input_images(args)
    plan = OutputPlan(args.out, "--out")
    json_path, png_path, rows_path = plan.add("aopc.json"), plan.add("aopc.png"), plan.add(ROWS_FILE)
    plan.refuse_inputs([*images.paths, *args.manifest, args.mask], models=[args.model])
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
