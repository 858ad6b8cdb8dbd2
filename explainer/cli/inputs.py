"""`explainer explain` for models that are not image classifiers with one input: token-id models (texts through an
offline tokenizer, or ids from a file) and models with several inputs, the others fed from files (``--fixed``).

Token relevance is summed over the embedding per token, printed as coloured text (plain text with signed values
when stdout is no terminal), and written per sample as ``<stem>.npz`` (relevance at the embedding [T, D], per token
[T], ids, tokens, logits, target), ``<stem>.png`` (the tokens on coloured boxes) and ``<stem>.html``.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from explainer.errors import InputError, shorten

#: the names ``--text`` samples get in output file names
TEXT_STEM = "text"


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options for token and several-input models."""
    p.add_argument("--input", metavar="NAME", action="append",
                   help="the input that receives relevance when the model has several (default: the one float "
                        "input, else the token ids); repeat it for several, each read from the input file at its "
                        "place; the others are fixed inputs")
    p.add_argument("--text", action="append", metavar="TEXT",
                   help="a text to explain (repeatable), tokenised with the tokenizer next to the model or "
                        "--tokenizer; instead of token ids from a file (default: none)")
    p.add_argument("--tokenizer", metavar="PATH",
                   help="a tokenizer.json, or a folder holding one (default: <model>.tokenizer.json or "
                        "tokenizer.json beside the model); needs the 'tokenizers' package")
    p.add_argument("--fixed", action="append", metavar="NAME=FILE.npy", default=[],
                   help="the value of a fixed input (repeatable): an array [N, ...] or one sample for all; "
                        "attention masks and token types default to ones and zeros")


def _graph_inputs(proto: Any) -> list[Any]:
    """The model's inputs that are not initializers."""
    inits = {t.name for t in proto.graph.initializer}
    return [i for i in proto.graph.input if i.name not in inits]


def wants_inputs_path(args: argparse.Namespace) -> bool:
    """Whether ``args`` ask for this module's path: texts, named or fixed inputs, or array/id files for a model
    whose explained input is not one float tensor (several inputs, or integer ids). Image files and folders go the
    image path without reading the model here (it is read once, there)."""
    if args.text or args.fixed or args.input:
        return True
    if args.images and not any(str(p).lower().endswith((".npy", ".txt")) for p in args.images):
        return False
    import onnx

    try:
        found = _graph_inputs(onnx.load(args.model, load_external_data=False))
    except Exception:  # unreadable: the array path reports it as it always has
        return False
    return len(found) > 1 or (len(found) == 1 and found[0].type.tensor_type.elem_type in (
        onnx.TensorProto.INT64, onnx.TensorProto.INT32))


def is_image_model(proto: Any) -> bool:
    """Whether the model has one input of rank 4 (an image: preprocessing applies)."""
    found = _graph_inputs(proto)
    return len(found) == 1 and len(found[0].type.tensor_type.shape.dim) == 4


def read_fixed(specs: list[str]) -> dict[str, np.ndarray]:
    """``NAME=FILE.npy`` options as arrays (InputError naming the option that is malformed or unreadable)."""
    from explainer.cli.explain import read_array

    values: dict[str, np.ndarray] = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path:
            raise InputError(f"--fixed {spec!r}: expected NAME=FILE.npy")
        if name in values:
            raise InputError(f"--fixed: input '{name}' given twice")
        values[name] = read_array(path, f"fixed input '{name}'")
    return values


def run(args: argparse.Namespace) -> int:
    """Explain texts or token ids, or the named input of a several-input model; see the module docstring."""
    from explainer.api import Explainer
    from explainer.cli.common import rule_params
    from explainer.cli.explain import read_array
    from explainer.cli.outputs import OutputPlan, file_stem
    from explainer.onnx_io import load_model

    fixed = read_fixed(args.fixed)
    if args.region is not None or args.mask is not None:
        raise InputError("--region and --mask are for image inputs of models whose output is a map")
    if args.text and args.images:
        raise InputError("give --text or token-id/array files, not both")
    wanted = len(args.input or ()) or 1
    if not args.text and len(args.images) != wanted:
        raise InputError(f"give {wanted} input file(s), one per --input (token ids: .npy or text; else .npy), or "
                         "--text")
    proto, source = load_model(args.model)
    ex = Explainer(proto, args.method, provider=args.provider, low=args.low, high=args.high, source=source,
                   seed=args.seed_mode, output=args.output, input=args.input, **rule_params(args))
    unknown = [name for name in fixed if name not in ex.fixed_inputs]
    if unknown:
        listed = ", ".join(f"'{n}'" for n in ex.fixed_inputs) or "none"
        raise InputError(f"--fixed {unknown[0]}: not a fixed input of the model (its fixed inputs: {listed})")
    if args.text and not ex.vocabulary:
        raise InputError(f"--text needs a model that reads token ids; input '{ex.input_name}' is "
                         f"[N, {', '.join(map(str, ex.input_shape))}] float")
    path = None if args.text else Path(args.images[0])
    samples, tokenizer = _samples(args, ex, path)
    main = samples.input_ids if ex.vocabulary else samples
    stems = ([f"{TEXT_STEM}_{i}" for i in range(len(main))] if args.text
             else [f"{file_stem(path)}_{i}" for i in range(len(main))])
    plan = OutputPlan(args.out, "--out")
    for stem in stems:
        plan.add_set(stem, (lambda s: [f"{s}.npz", f"{s}.png", f"{s}.html"]) if ex.vocabulary
                     else (lambda s: [f"{s}.npz"]))
    plan.refuse_inputs([*(Path(p) for p in args.images), args.labels, args.tokenizer,
                        *(spec.partition("=")[2] for spec in args.fixed)], models=[args.model])
    feeds = samples.feeds(ex.input_name, ex.fixed_inputs) if ex.vocabulary else {ex.input_name: main}
    feeds.update(fixed)
    feeds.update({name: read_array(str(file), f"input '{name}'")
                  for name, file in zip(ex.explained_inputs[1:], args.images[1:])})
    return _explain(args, ex, feeds, samples if ex.vocabulary else None, tokenizer, stems, plan, source)


def _samples(args: argparse.Namespace, ex: Any, path: Path | None) -> tuple[Any, Any]:
    """The encoded texts or token ids (an ``EncodedText``) of a token model, or the explained input's array, and
    the tokenizer (None without one)."""
    from explainer.cli.explain import read_array
    from explainer.text import text_input

    if not ex.vocabulary:
        x = read_array(str(path), "the input")
        return (x[None] if x.ndim == len(ex.input_shape) else x), None
    encoded, tokenizer = text_input(args.model, ex.input_shape[0], texts=args.text,
                                    ids=None if args.text else path, tokenizer=args.tokenizer, metadata=ex.metadata)
    for note in encoded.notes:
        print(f"  note: {note}")
    return encoded, tokenizer


def _explain(args: argparse.Namespace, ex: Any, feeds: dict[str, np.ndarray], encoded: Any, tokenizer: Any,
             stems: list[str], plan: Any, source: str) -> int:
    from explainer.cli.explain import explain_batch, print_scores
    from explainer.images.labels import find_labels
    from explainer.pictures.tokens import html_page, plot_tokens, write_tokens
    from explainer.text import merge_pieces, special_tokens

    labels, labels_from = find_labels(args.labels, ex.num_classes, ex.metadata)
    sigmoid = any("final Sigmoid" in c for c in ex.changes)
    shown = "token ids" if ex.vocabulary else ex.layout
    fixed = ", ".join(f"'{n}'" for n in ex.fixed_inputs) or "none"
    print(f"model {source}: input '{ex.input_name}' {shown} {list(ex.input_shape)}, fixed inputs {fixed}, "
          f"{ex.num_classes} classes, method {ex.method}, seed {ex.seed}, provider {ex.provider}, class names: "
          f"{labels_from}")
    e, _ = explain_batch(ex, feeds, args.target, args.batch_size)
    per_token = e.relevance_map() if ex.vocabulary else None
    special = special_tokens(tokenizer)
    with plan.writing(total=len(stems)) as writer:
        for j, stem in enumerate(stems):
            print(f"text {j}: {shorten(args.text[j], 100)!r}:" if args.text else f"{stem}:")
            print_scores(e.logits[j], int(e.target[j]), labels, sigmoid, args.top)
            if e.conservation is not None:
                kept = "; ".join(f"{label} {float(v[j]) / float(e.logits[j, e.target[j]]):.1%}"
                                 for label, v in e.absorbed.items()) if e.seed == "logit" else ""
                print(f"  relevance at the input: {e.conservation[j]:.1%} of the explained logit"
                      + (f" (kept by {kept})" if kept else ""))
            arrays = {"relevance": e.relevance[j].astype(np.float32), "logits": e.logits[j], "target": e.target[j],
                      "seed": np.array(e.seed), "layout": np.array(e.layout),
                      **{f"relevance_{name}": e.relevance_of[name][j].astype(np.float32)
                         for name in ex.explained_inputs[1:]}}
            if e.conservation is not None:
                arrays["conservation"] = e.conservation[j]
            with writer.group() as files:
                if ex.vocabulary:
                    words, values = merge_pieces(*encoded.real(j, per_token[j]), special)
                    write_tokens(words, values)
                    t = int(e.target[j])
                    name = labels[t] if labels and 0 <= t < len(labels) else f"class {t}"
                    title = f"{stem}: relevance for {name} ({e.method})"
                    plot_tokens(words, values, files.path(f"{stem}.png"), title=title)
                    page = html_page([(words, values, title)], title=title)
                    with open(files.path(f"{stem}.html"), "w", encoding="utf-8") as handle:
                        handle.write(page)
                    arrays.update({"token_relevance": per_token[j].astype(np.float32),
                                   "input_ids": encoded.input_ids[j], "attention_mask": encoded.attention_mask[j],
                                   "tokens": np.array(encoded.tokens[j])})
                for k, (label, kept) in enumerate(e.absorbed.items()):
                    arrays[f"absorbed_{k}"], arrays[f"absorbed_{k}_label"] = kept[j], np.array(label)
                np.savez_compressed(files.path(f"{stem}.npz"), **arrays)
    pictures = "" if ex.vocabulary else " (relevance in the .npz files)"
    print(f"wrote {len(stems)} explanation(s) to {plan.folder}/{pictures}")
    return 0
