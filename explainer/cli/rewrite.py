"""`explainer rewrite MODEL --method M -o OUT.onnx`: write the relevance graph as a standalone ONNX model, for any
model explain takes (images with their preprocessing bounds; features, signals, token ids, several inputs)."""
from __future__ import annotations

import argparse
from pathlib import Path

from explainer.api import Explainer
from explainer.cli import inputs
from explainer.cli.common import add_model_options, add_output_option, add_preprocess_options, model_input, rule_params
from explainer.cli.outputs import OutputPathError, OutputPlan
from explainer.onnx_io import load_model

HELP = "write the relevance graph (inputs: the model's, target; outputs: logits, relevance) as an ONNX file"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_model_options(p, seed_mode=True)
    add_preprocess_options(p)
    add_output_option(p)
    p.add_argument("--input", metavar="NAME", help="the input that receives relevance when the model has several "
                                                   "(default: the one float input, else the token ids)")
    p.add_argument("-o", "--out", required=True, metavar="FILE.onnx", help="where to write the relevance graph")
    p.add_argument("--force", action="store_true",
                   help="allow -o to replace the model being rewritten (or its external-data file)")


def run(args: argparse.Namespace) -> int:
    output = Path(args.out)
    if not args.out.strip() or not output.name or args.out.endswith(("/", "\\")):
        raise OutputPathError(f"-o {args.out!r}: expected the path of an .onnx file")
    plan = OutputPlan(str(output.parent), "-o")
    plan.add(output.name)
    plan.add(output.name + ".data")      # written next to the model when it is too large for one protobuf
    if not args.force:
        plan.refuse_inputs([], models=[args.model], advice="choose another path, or pass --force to replace it")
    common = {"provider": "cpu", "seed": args.seed_mode, "output": args.output, **rule_params(args)}
    loaded = load_model(args.model)
    if inputs.is_image_model(loaded[0]) and args.input is None:
        mi = model_input(args, loaded)
        low, high = mi.bounds(args)
        ex = Explainer(mi.proto, args.method, input_shape=mi.input_shape, low=low, high=high, source=mi.source,
                       **common)
    else:
        ex = Explainer(loaded[0], args.method, low=args.low, high=args.high, input=args.input, source=loaded[1],
                       **common)
    with plan.writing() as writer, writer.group() as files:
        ex.save(files.path(output.name))
    fed = ", ".join(f"'{name}' [N, {', '.join(map(str, shape))}]" for name, (shape, _) in ex.fixed_inputs.items())
    print(f"wrote {output}: method {ex.method} (seed {ex.seed}), input '{ex.input_name}' {ex.layout} "
          f"[N, {', '.join(map(str, ex.input_shape))}]" + (f", fixed inputs {fed}" if fed else "")
          + f", target int64 [N] -> logits [N, {ex.num_classes}], relevance [N, "
          f"{', '.join(map(str, ex.relevance_shape))}]")
    return 0
