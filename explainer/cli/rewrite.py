"""`explainer rewrite MODEL --method M -o OUT.onnx`: write the relevance graph as a standalone ONNX model."""
from __future__ import annotations

import argparse
from pathlib import Path

from explainer.api import Explainer
from explainer.cli.common import add_model_options, add_preprocess_options, model_input, rule_params
from explainer.cli.outputs import OutputPathError, OutputPlan

HELP = "write the relevance graph (inputs: image, target; outputs: logits, relevance) as an ONNX file"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_model_options(p, seed_mode=True)
    add_preprocess_options(p)
    p.add_argument("-o", "--output", required=True, help="where to write the relevance graph (.onnx)")
    p.add_argument("--force", action="store_true",
                   help="allow -o to replace the model being rewritten (or its external-data file)")


def run(args: argparse.Namespace) -> int:
    output = Path(args.output)
    if not args.output.strip() or not output.name or args.output.endswith(("/", "\\")):
        raise OutputPathError(f"-o {args.output!r}: expected the path of an .onnx file")
    plan = OutputPlan(str(output.parent), "-o")
    plan.add(output.name)
    plan.add(output.name + ".data")      # written next to the model when it is too large for one protobuf
    if not args.force:
        plan.refuse_inputs([], models=[args.model], advice="choose another path, or pass --force to replace it")
    mi = model_input(args)
    low, high = mi.bounds(args)
    ex = Explainer(mi.proto, args.method, provider="cpu", input_shape=mi.input_shape, low=low, high=high,
                   source=mi.source, seed=args.seed_mode, **rule_params(args))
    with plan.writing() as writer, writer.group() as files:
        ex.save(files.path(output.name))
    print(f"wrote {output}: method {ex.method} (seed {ex.seed}), input '{ex.input_name}' {ex.layout} "
          f"[N, {', '.join(map(str, ex.input_shape))}], target int64 [N] -> logits [N, {ex.num_classes}], relevance")
    return 0
