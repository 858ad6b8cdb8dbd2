"""Performance of explainer against its targets, in one run on one machine and one set of weights.

    python -m tools.bench [--models alexnet vgg16] [--batches 1 8] [--methods gradient epsilon-plus-flat ...]
                          [--repeats 3] [--no-zennit] [--threads N] [--quick] [--out FILE]

Measures, per reference model (``graphs.cache``: the ONNX export and the torch module with the same weights):

* explanation time -- ``Explainer.explain(x, target)`` (logits + relevance) against a plain ``onnxruntime``
  forward pass of the original exported file; Zennit's attribution of the same method on the same weights
  (torch CPU) and the speed-up ours / Zennit (target >= 1.7x). Median of ``--repeats`` after one warm-up, the three
  interleaved round by round so that load drift on a shared machine hits all of them alike;
* ``explain(x)`` without targets (the arg-max path: one extra forward pass, and a forward session built on the
  first call);
* session creation -- ``Explainer(path, method)`` against a plain session on the original file (target <= 1.5x),
  split into the stages of ``Explainer.timings`` (load, canonicalise, verify, build, session);
* peak resident memory, each measurement in a fresh subprocess: a plain session + forward against
  ``Explainer`` + ``explain`` (target <= 2x), and Zennit's; the second build of the first method, its session taken
  from the session cache a first build filled (in a temporary folder; target <= 1.1x the plain session's creation).
  Every other measurement runs with the session cache off (first builds);
* SR map time per 224 x 224 map (median of 3; target 0.5 s);
* region perturbation (L=100) scored by ``Explainer.forward`` against the bare images x repeats x (L+1) forwards
  of the original model (target <= 1.2x).

All runtimes use the same thread count (``--threads``, default: the cores this process may use): ONNX Runtime's
intra-op threads (``Explainer(threads=)`` for the explainer's sessions) and ``torch.set_num_threads``. The tables
are Markdown; ``--out FILE`` writes them to a file as well.
"""
from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
import time
from pathlib import Path

from graphs.reference_models import MODEL_NAMES
from tools.bench.harness import log, run_worker, usable_cores
from tools.bench.report import machine_lines, report

DEFAULT_METHODS = ("gradient", "epsilon-plus-flat", "epsilon-gamma-box", "epsilon-alpha2-beta1-flat")
TIMING, MEMORY = "tools.bench.explain", "tools.bench.memory"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tools.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["alexnet", "vgg16"], choices=list(MODEL_NAMES))
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 8])
    parser.add_argument("--methods", nargs="+", default=list(DEFAULT_METHODS))
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per measurement (median reported)")
    parser.add_argument("--no-zennit", action="store_true", help="skip the Zennit (torch) comparison")
    parser.add_argument("--threads", type=int, default=0, help="threads for every runtime (default: usable cores)")
    parser.add_argument("--quick", action="store_true", help="smoke run: small net + AlexNet, batch 1, repeats 1 "
                        "(memory for the first method only, region perturbation on 1 image)")
    parser.add_argument("--out", help="also write the Markdown report to this file")
    parser.add_argument("--exporter", default="legacy", choices=["legacy", "dynamo"])
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocesses")
    parser.add_argument("--no-sr", action="store_true", help="skip the SR map timing")
    parser.add_argument("--eval-images", type=int, default=2, help="images for region perturbation (0: skip)")
    parser.add_argument("--eval-steps", type=int, default=100, help="L, regions removed")
    parser.add_argument("--eval-repeats", type=int, default=1, help="region perturbation repeats")
    parser.add_argument("--eval-batch", type=int, default=32, help="scoring batch size")
    args = parser.parse_args(argv)
    if args.quick:
        args.models, args.batches, args.repeats, args.eval_images = ["small", "alexnet"], [1], 1, 1
    args.threads = args.threads or usable_cores()
    return args


def _timings(args: argparse.Namespace, name: str, path: str) -> list[dict]:
    spec = {"model": name, "path": path, "threads": args.threads, "repeats": args.repeats, "batches": args.batches,
            "zennit": not args.no_zennit, "sr": False, "eval_images": 0, "eval_steps": args.eval_steps,
            "eval_repeats": args.eval_repeats, "eval_batch": args.eval_batch,
            "extras_method": args.methods[0] if args.methods else "epsilon-plus-flat"}
    extras = {"sr": not args.no_sr, "eval_images": args.eval_images}
    if args.quick:  # one process for everything: fewer interpreter starts
        return run_worker(TIMING, {**spec, **extras, "methods": args.methods, "time_plain": True, "argmax": True},
                          args.threads)
    records = []  # one process per method: an out-of-memory kill costs one row, and no process holds two Explainers
    for index, method in enumerate(args.methods):
        records += run_worker(TIMING, {**spec, "methods": [method], "time_plain": index == 0, "argmax": index == 0},
                              args.threads)
    if extras["sr"] or extras["eval_images"]:
        records += run_worker(TIMING, {**spec, **extras, "methods": [], "time_plain": not args.methods,
                                       "argmax": False}, args.threads)
    return records


def _memory(args: argparse.Namespace, name: str, path: str, shape: list[int]) -> list[dict]:
    records = []
    for b in args.batches:
        base = {"model": name, "path": path, "threads": args.threads, "batch": b, "shape": shape}
        records += run_worker(MEMORY, {**base, "kind": "plain"}, args.threads)
        for method in args.methods[:1] if args.quick else args.methods:
            records += run_worker(MEMORY, {**base, "kind": "ours", "method": method}, args.threads)
            if not args.no_zennit:
                records += run_worker(MEMORY, {**base, "kind": "zennit", "method": method}, args.threads)
        if args.methods:
            with tempfile.TemporaryDirectory(prefix="explainer-bench-cache-") as folder:
                cached = {**base, "kind": "ours", "method": args.methods[0], "cache_dir": folder}
                run_worker(MEMORY, cached, args.threads)  # fills the cache
                records += run_worker(MEMORY, {**cached, "second": True}, args.threads)
        log(f"  [{name}] memory b{b} done")
    return records


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    header = ["python -m tools.bench " + shlex.join(sys.argv[1:] if argv is None else argv),
              *machine_lines(args.threads, not args.no_zennit)]
    log("\n".join(header))
    from graphs.cache import reference_graph
    from graphs.reference_models import INPUT_SHAPES
    records: list[dict] = []
    for name in args.models:
        path = str(reference_graph(name, args.exporter).resolve())
        log(f"{name}: {path}")
        records += _timings(args, name, path)
        if not args.no_memory:
            records += _memory(args, name, path, list(INPUT_SHAPES[name][1:]))
    text = report(records, header, args.repeats, time.perf_counter() - started)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
        log(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
