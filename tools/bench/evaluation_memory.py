"""Peak resident memory of ``explainer evaluate`` as the number of images grows, each run in a fresh process.

Digits rows: the shipped digits CNN on 50, 100, 200 and 400 augmented copies of ``examples/digit_*.png`` (shifted,
rotated, rescaled, noisy; saved at 224×224, so the CLI reads 224² images and resizes them to the model's 32×32).
224² rows: a CNN of the digits CNN's widths (conv 8, 16, 32 with 2×2 max pooling, dense 64, 10 classes; seeded
weights) on 224×224 colour input, with as many 224² colour images and 16 steps at one repetition.
VGG rows (``--vgg``): VGG-16 with seeded weights (``graphs.cache.reference_graph("vgg16")``, fixed 224×224 input) on
smooth random 240×240 colour images, centre-cropped by the CLI; one explained method and the random baseline at one
repetition keep a run to a few minutes on two cores (the batches, not the repetitions, set the memory). The floor
row is what the explainer alone holds: the model loaded, one explanation and one forward pass of one image.

Each figure is the VmHWM of a fresh ``python -c`` process that runs the CLI in-process, with the working directory at
the tree under test, so ``--old DIR`` (and ``--new DIR``) measure other checkouts the same way, e.g. one made with
``git archive HEAD | tar -x -C /tmp/old`` (which leaves the repository as it is).

    python -m tools.bench.evaluation_memory [--old /tmp/old] [--vgg]      (from the repository root)

Prints a Markdown table: model, images, steps, peak RSS (before → after with ``--old``).
"""
from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]

_CHILD = """
import sys
from explainer.cli import main
code = main(sys.argv[1:])
peak = next(line for line in open("/proc/self/status") if line.startswith("VmHWM"))
print("VMHWM", peak.split()[1], code, file=sys.stderr)
"""

_FLOOR = """
import sys
import numpy as np
from explainer import Explainer
ex = Explainer(sys.argv[1], sys.argv[2], provider="cpu", low=-2.2, high=2.7)
x = np.random.default_rng(0).normal(size=(1,) + ex.input_shape).astype(np.float32)
ex.explain(x, 0)
ex.forward(x)
peak = next(line for line in open("/proc/self/status") if line.startswith("VmHWM"))
print("VMHWM", peak.split()[1], 0, file=sys.stderr)
"""


@dataclass(frozen=True)
class Case:
    """One measured run: ``argv`` of ``explainer`` (without the output folder), described by the other fields."""

    model: str
    images: int
    steps: int
    methods: str
    argv: tuple[str, ...]


def digit_images(folder: Path, count: int, side: int = 224, seed: int = 0) -> Path:
    """``count`` augmented copies of the example digits as ``side``×``side`` grayscale PNGs in ``folder``."""
    rng = np.random.default_rng(seed)
    digits = [Image.open(p).convert("L") for p in sorted((ROOT / "examples").glob("digit_*.png"))]
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        image = digits[i % len(digits)].rotate(float(rng.uniform(-12, 12)), resample=Image.BILINEAR,
                                               translate=tuple(int(v) for v in rng.integers(-3, 4, 2)))
        scale = rng.uniform(0.85, 1.1)
        big = image.resize((side, side), Image.BILINEAR)
        pixels = np.asarray(big, dtype=np.float32) * scale + rng.normal(0, 8, (side, side))
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), mode="L").save(folder / f"digit_{i:04d}.png")
    return folder


def colour_images(folder: Path, count: int, side: int = 240, seed: int = 0) -> Path:
    """``count`` smooth random ``side``×``side`` RGB PNGs in ``folder`` (blobs of colour at a few scales)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        pixels = np.zeros((side, side, 3))
        for cells in (4, 12, 40):
            coarse = Image.fromarray((rng.random((cells, cells, 3)) * 255).astype(np.uint8), mode="RGB")
            pixels += np.asarray(coarse.resize((side, side), Image.BICUBIC), dtype=np.float64) / 3
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), mode="RGB").save(folder / f"photo_{i:03d}.png")
    return folder


def digits_size_cnn(path: Path, side: int = 224, seed: int = 0) -> Path:
    """Write a CNN with the digits CNN's layer widths for ``side``×``side`` RGB input to ``path``."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    widths, nodes, weights, x = (3, 8, 16, 32), [], {}, "x"
    for i, (cin, cout) in enumerate(zip(widths, widths[1:])):
        weights[f"w{i}"] = rng.normal(0, np.sqrt(2 / (9 * cin)), (cout, cin, 3, 3))
        weights[f"b{i}"] = np.zeros(cout)
        nodes += [helper.make_node("Conv", [x, f"w{i}", f"b{i}"], [f"c{i}"], kernel_shape=[3, 3], pads=[1] * 4),
                  helper.make_node("Relu", [f"c{i}"], [f"r{i}"]),
                  helper.make_node("MaxPool", [f"r{i}"], [f"p{i}"], kernel_shape=[2, 2], strides=[2, 2])]
        x = f"p{i}"
    flat = widths[-1] * (side // 8) ** 2
    weights.update(d0=rng.normal(0, np.sqrt(2 / flat), (flat, 64)), e0=np.zeros(64),
                   d1=rng.normal(0, np.sqrt(1 / 64), (64, 10)), e1=rng.normal(0, 0.1, 10))
    nodes += [helper.make_node("Flatten", [x], ["flat"], axis=1), helper.make_node("Gemm", ["flat", "d0", "e0"], ["h"]),
              helper.make_node("Relu", ["h"], ["hr"]), helper.make_node("Gemm", ["hr", "d1", "e1"], ["logits"])]
    graph = helper.make_graph(nodes, "digits_size_cnn",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, side, side])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10])],
                              [numpy_helper.from_array(v.astype(np.float32), k) for k, v in weights.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


def peak_kib(tree: Path, code: str, argv: list[str]) -> tuple[int, float]:
    """(VmHWM in KiB, seconds) of ``python -c code argv`` run in ``tree``; a failed run is a RuntimeError."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code, *argv], cwd=tree, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    found = re.search(r"^VMHWM (\d+) (\d+)$", done.stderr, re.MULTILINE)
    if done.returncode != 0 or not found or found.group(2) != "0":
        tail = (done.stdout + done.stderr).strip().splitlines()[-3:]
        raise RuntimeError(f"run in {tree} failed ({done.returncode}): {' | '.join(tail)}")
    return int(found.group(1)), seconds


def measure(tree: Path, case: Case, scratch: Path) -> tuple[int, float]:
    out = Path(tempfile.mkdtemp(dir=scratch))
    return peak_kib(tree, _CHILD, ["evaluate", *case.argv, "--out", str(out)])


def cases(scratch: Path, args: argparse.Namespace) -> list[Case]:
    found = []
    digits = str(ROOT / "graphs" / "digits_cnn.onnx")
    methods = "epsilon-plus-flat,gradient,random"
    for count in args.counts:
        folder = digit_images(scratch / f"digits{count}", count)
        found.append(Case("digits CNN (32² input, 224² files)", count, 64, methods,
                          (digits, str(folder), "--methods", methods, "--repeats", str(args.repeats))))
    cnn = str(digits_size_cnn(scratch / "digits_size_cnn.onnx"))
    for count in args.counts:
        folder = colour_images(scratch / f"colour{count}", count, side=224)
        found.append(Case("digits-size CNN (224² input and files)", count, 16, methods,
                          (cnn, str(folder), "--methods", methods, "--steps", "16", "--repeats", "1")))
    if args.vgg:
        from graphs.cache import reference_graph
        vgg = str(reference_graph("vgg16"))
        for count, steps in args.vgg_runs:
            folder = colour_images(scratch / f"photos{count}", count)
            found.append(Case("VGG-16 (224² input, 240² files)", count, steps, args.vgg_methods,
                              (vgg, str(folder), "--methods", args.vgg_methods, "--steps", str(steps),
                               "--repeats", "1")))
    return found


def run_pair(text: str) -> tuple[int, int]:
    images, steps = text.split("x")
    return int(images), int(steps)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tools.bench.evaluation_memory",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--old", type=Path, help="an older checkout to measure as 'before' (default: none)")
    parser.add_argument("--new", type=Path, default=ROOT, help="the checkout to measure as 'after' (default: this one)")
    parser.add_argument("--counts", type=int, nargs="*", default=[50, 100, 200, 400],
                        help="numbers of images of the digits rows; none to leave them out (default 50 100 200 400)")
    parser.add_argument("--repeats", type=int, default=2, help="repetitions on the digits (default 2)")
    parser.add_argument("--vgg", action="store_true", help="add the VGG-16 rows (minutes each; default off)")
    parser.add_argument("--vgg-runs", type=run_pair, nargs="+", default=[(4, 40)], metavar="IMAGESxSTEPS",
                        help="VGG-16 runs (default 4x40)")
    parser.add_argument("--vgg-methods", default="epsilon-plus-flat,random",
                        help="methods of the VGG-16 runs (default epsilon-plus-flat,random)")
    args = parser.parse_args()
    new = args.new.resolve()
    trees = [("before", args.old.resolve()), ("after", new)] if args.old else [("after", new)]
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        for case in cases(scratch, args):
            figures = []
            for label, tree in trees:
                kib, seconds = measure(tree, case, scratch)
                print(f"{case.model}, {case.images} images, {case.steps} steps, {label}: {kib / 2**20:.2f} GiB "
                      f"in {seconds:.0f} s", file=sys.stderr, flush=True)
                figures.append(kib)
            rows.append((case, figures))
        floor = None
        if args.vgg:
            from graphs.cache import reference_graph
            method = args.vgg_methods.split(",")[0]
            floor = (method, peak_kib(new, _FLOOR, [str(reference_graph("vgg16")), method])[0])
    header = "| model | methods | images | steps | peak RSS " + ("before → after |" if args.old else "|")
    print(header)
    print("|---|---|---:|---:|---:|")
    for case, figures in rows:
        shown = " → ".join(f"{kib / 2**20:.2f} GiB" for kib in figures)
        print(f"| {case.model} | {case.methods} | {case.images} | {case.steps} | {shown} |")
    if floor:
        print(f"| VGG-16, the explainer alone ({floor[0]}: load, one explanation and one forward of one image) | "
              f"| 1 | | {floor[1] / 2**20:.2f} GiB |")


if __name__ == "__main__":
    main()
