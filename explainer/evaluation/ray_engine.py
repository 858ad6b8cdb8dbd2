"""The Ray engine of :func:`explainer.evaluation.compare.evaluate`: chunks of images spread over a pool of actors.

A Ray Data pipeline: the chunks still to do (first and last image, the rows each image lacks) → ``map_batches`` on an
actor pool, each actor holding one :class:`~explainer.evaluation.compare.ChunkEvaluator` (its explainers built once,
one relevance session per method) that reads its chunk's images itself and returns their rows → the driver, which
appends each chunk's rows to the journal as it arrives (rows already there are dropped, so a chunk done twice is
counted once) and reduces the report from the journal like the local engine. Per-image seeds make the numbers those
of the local engine whatever actor takes a chunk. An actor that dies is restarted and its chunk retried (Ray Data's
actor pools default to unlimited restarts and task retries).

Ray is optional (``pip install explainer[ray]``) and imported only here. Without ``address`` a local Ray instance is
started for the run (and shut down after it); with one the run joins that cluster (``auto``, ``ray://head:10001``).
An already initialised Ray (a test's, a notebook's) is used as it is.
"""
from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator
from typing import Any

from explainer.errors import InputError
from explainer.evaluation.compare import ChunkEvaluator, EvaluationSpec, ImageStream, chunk_rows, image_chunks

INSTALL = "pip install explainer[ray]"


def require_ray() -> None:
    """InputError naming the install command when Ray (with Ray Data) cannot be imported."""
    try:
        import ray.data  # noqa: F401
    except ImportError:
        raise InputError(f"--engine ray needs Ray: {INSTALL}") from None


class _RowWorker:
    """A Ray Data actor: evaluates whole chunks (every row they lack), one JSON text of rows per chunk."""

    def __init__(self, spec: EvaluationSpec, images: ImageStream) -> None:
        self.evaluator = ChunkEvaluator(spec, keep_sessions=True)
        self.images = images

    def __call__(self, batch: dict[str, Any]) -> dict[str, list[str]]:
        out = []
        for first, stop, todo in zip(batch["first"], batch["stop"], batch["todo"]):
            wanted = {int(index): runs for index, runs in json.loads(todo).items()}
            rows = chunk_rows(self.evaluator, self.images, int(first), int(stop), wanted, fail_fast=False)
            out.append(json.dumps(rows, allow_nan=False))
        return {"rows": out}


def run_ray(spec: EvaluationSpec, images: ImageStream, journal: Any, *, chunk: int, workers: int | None,
            address: str | None, fail_fast: bool, bar: Any) -> None:
    """Evaluate every image ``journal`` lacks on Ray with ``workers`` actors (default: one per CPU Ray has) and append
    the rows to ``journal`` as chunks finish; ``bar`` counts curves as in the local engine. The actors report images
    they cannot read as error rows; with ``fail_fast`` the first one that arrives ends the run (InputError)."""
    import ray
    import ray.data

    with _ray_session(ray, address):
        items = []
        for first, stop in image_chunks(images.count, chunk):
            todo = {i: [name for name in spec.runs if not journal.done(i, name)] for i in range(first, stop)}
            todo = {i: runs for i, runs in todo.items() if runs}
            bar.update(sum(spec.curves(name) for name in spec.runs) * (stop - first - len(todo)))
            if todo:
                items.append({"first": first, "stop": stop, "todo": json.dumps(todo)})
        if not items:
            return
        pool = min(workers or max(1, int(ray.available_resources().get("CPU", 1))), len(items))
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False
        context.print_on_execution_start = False
        logging.getLogger("ray.data").setLevel(logging.WARNING)
        resources = {"num_gpus": 1} if spec.provider == "cuda" else {"num_cpus": 1}
        dataset = ray.data.from_items(items, override_num_blocks=len(items)).map_batches(
            _RowWorker, fn_constructor_kwargs={"spec": spec, "images": images},
            batch_size=1, compute=ray.data.ActorPoolStrategy(size=pool), **resources)
        for result in dataset.iter_rows():
            rows = [row for row in json.loads(result["rows"])
                    if "error" in row or not journal.done(row["image"], row["method"])]
            failed = [row for row in rows if "error" in row]
            if failed and fail_fast:
                raise InputError(failed[0]["error"])
            journal.append(rows)
            bar.scored(sum(spec.curves(row["method"]) for row in rows if "error" not in row))
            bar.update(len(failed) * sum(spec.curves(name) for name in spec.runs))


@contextlib.contextmanager
def _ray_session(ray: Any, address: str | None) -> Iterator[None]:
    """Ray initialised for the run: joined at ``address``, or a local instance; one started here is shut down."""
    if ray.is_initialized():
        yield
        return
    try:
        ray.init(address=address, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
    except ConnectionError as exc:
        raise InputError(f"--address {address}: cannot join the Ray cluster ({exc})") from None
    try:
        yield
    finally:
        ray.shutdown()
