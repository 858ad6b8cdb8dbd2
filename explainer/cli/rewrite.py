"""`explainer rewrite MODEL --method M -o OUT.onnx`: write the relevance graph as a standalone ONNX model."""
from __future__ import annotations

import argparse

from explainer.api import Explainer
from explainer.cli.common import add_model_options, add_preprocess_options, model_input, rule_params

HELP = "write the relevance graph (inputs: image, target; outputs: logits, relevance) as an ONNX file"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_model_options(p)
    add_preprocess_options(p)
    p.add_argument("-o", "--output", required=True, help="where to write the relevance graph (.onnx)")


def run(args: argparse.Namespace) -> int:
    mi = model_input(args)
    low, high = mi.bounds(args)
    ex = Explainer(mi.proto, args.method, provider="cpu", input_shape=mi.input_shape, low=low, high=high,
                   source=mi.source, **rule_params(args))
    path = ex.save(args.output)
    print(f"wrote {path}: method {ex.method}, input '{ex.input_name}' {ex.layout} "
          f"[N, {', '.join(map(str, ex.input_shape))}], target int64 [N] -> logits [N, {ex.num_classes}], relevance")
    return 0
