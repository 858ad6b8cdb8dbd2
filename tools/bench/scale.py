"""Images per second of ``evaluate`` on the local engine and on Ray with 1 and 2 workers, on the digits CNN.

    python -m tools.bench.scale [--images 200] [--steps 16] [--repeats 4] [--rounds 2] [--chunk 8]

Each round runs the three engines one after the other (round-robin, so that load drift on a shared machine hits
them alike) on the same images (the shipped digits, repeated), with a rows journal in a temporary folder as the CLI
writes it; the median time of the rounds is reported with the ratio to the local engine. Ray is started once, before
the rounds (as a cluster the command joins would be), so the times include what every run pays on Ray: building
each actor's explainer and shipping chunks and rows, not Ray's own start-up, which is printed on its own. Every run
must give the local engine's aopc.json, number for number.
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

from explainer.evaluation.compare import ImageStream, evaluate
from explainer.images.preprocess import load_batch, preprocessing
from explainer.images.spec import InputSpec

ROOT = Path(__file__).resolve().parents[2]
DIGITS = ROOT / "graphs" / "digits_cnn.onnx"
SPEC = InputSpec(layout="NCHW", channels=1, height=32, width=32, name="input")
ENGINES = (("local", None), ("ray", 1), ("ray", 2))


def digits_stream(count: int) -> ImageStream:
    """``count`` images read from disk a chunk at a time: the shipped digits, repeated."""
    shipped = sorted((ROOT / "examples").glob("digit_*.png"))
    paths = [shipped[k % len(shipped)] for k in range(count)]
    prep = preprocessing("unit", channels=1)
    return ImageStream(count, lambda start, stop: load_batch(paths[start:stop], SPEC, prep)[0], paths=paths)


def one_run(engine: str, workers: int | None, images: ImageStream, args: argparse.Namespace,
            folder: Path) -> tuple[float, dict]:
    """(seconds, report) of one evaluation."""
    rows = folder / f"{engine}-{workers}-{time.monotonic_ns()}.jsonl"
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report = evaluate(str(DIGITS), images, ["epsilon-plus-flat", "gradient"], low=0.0, high=1.0,
                          steps=args.steps, region=4, repeats=args.repeats, chunk=args.chunk, provider="cpu",
                          progress=False, rows=rows, engine=engine, workers=workers)
    return time.perf_counter() - start, report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.bench.scale", description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--steps", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--chunk", type=int, default=8)
    args = parser.parse_args(argv)
    import ray

    start = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    print(f"ray.init: {time.perf_counter() - start:.1f} s (once; not in the times below)")
    images = digits_stream(args.images)
    times: dict[tuple[str, int | None], list[float]] = {run: [] for run in ENGINES}
    reference = None
    with tempfile.TemporaryDirectory() as folder:
        for _ in range(args.rounds):
            for engine, workers in ENGINES:
                seconds, report = one_run(engine, workers, images, args, Path(folder))
                times[engine, workers].append(seconds)
                text = json.dumps(report, sort_keys=True)
                reference = reference or text
                if text != reference:
                    raise SystemExit(f"{engine} with {workers} worker(s) gave another report than the local engine")
    ray.shutdown()
    local = statistics.median(times["local", None])
    print(f"digits CNN, {args.images} images, 2 methods + random, {args.steps} steps, {args.repeats} repeats, "
          f"chunks of {args.chunk}; median of {args.rounds} round(s); identical aopc.json: yes")
    print("| engine | s | images/s | time vs local |")
    print("|---|---:|---:|---:|")
    for (_, workers), values in times.items():
        seconds = statistics.median(values)
        name = "local" if workers is None else f"ray, {workers} worker{'s' * (workers > 1)}"
        print(f"| {name} | {seconds:.2f} | {args.images / seconds:.1f} | {seconds / local:.2f}x |")
    print(f"(spread over rounds: {', '.join(f'{np.ptp(v):.2f} s' for v in times.values())})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
