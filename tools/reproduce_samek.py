"""Samek et al.'s headline, in kind: region perturbation (MoRF, L = 100, 9×9 regions, uniform noise) on
EfficientNet-Lite0 and the photos that ship inside packages, for LRP composites vs sensitivity (gradient) vs
guided backprop / DeconvNet vs random.

    python -m tools.reproduce_samek [--repeats 10] [--out docs/samek]

writes ``aopc.json``, ``aopc.png`` and ``table.md`` into ``--out`` and prints the table (the README carries it).
"""
from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

import numpy as np

from explainer import Explainer, evaluate
from explainer.evaluation.report import format_table, write_comparison
from explainer.images.preprocess import input_bounds, resize_center_crop, to_model_input
from graphs.efficientnet import efficientnet_path, preprocessing
from tools.photos import photos

ROOT = Path(__file__).resolve().parents[1]

METHODS = ("epsilon-plus-flat", "epsilon-gamma-box", "epsilon-alpha2-beta1-flat", "lrp-epsilon", "gradient",
           "guided-backprop", "deconvnet")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.reproduce_samek", description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10, help="repetitions of the random perturbations")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--region", type=int, default=9)
    parser.add_argument("--perturb", default="uniform", choices=["uniform", "blur", "mean", "zero"])
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--out", default=str(ROOT / "docs" / "samek"))
    args = parser.parse_args(argv)
    prep = preprocessing()
    images = photos()
    pixels = np.stack([resize_center_crop(img, 224) for img in images.values()])
    x = to_model_input(pixels, prep, "NCHW")
    low, high = input_bounds(prep, 3)
    ex = Explainer(efficientnet_path(), "gradient", low=low, high=high)
    report = evaluate(ex, x, args.methods.split(","), low=low, high=high, steps=args.steps, region=args.region,
                      repeats=args.repeats, perturb=args.perturb)
    report["settings"]["images_used"] = list(images)
    out = Path(args.out)
    write_comparison(report, str(out))
    table = format_table(report)
    command = shlex.join(["python", "-m", "tools.reproduce_samek", *(sys.argv[1:] if argv is None else argv)])
    (out / "table.md").write_text(f"`{command.strip()}`\n\n```\n{table}\n```\n", encoding="utf-8")
    print(command)
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
