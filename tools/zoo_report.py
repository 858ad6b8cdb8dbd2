"""Coverage of "explain any exported model": every graph we can get offline, every method, checked.

For each model: canonicalisation keeps the logits (vs ONNX Runtime on the original graph), the gradient equals an
independent float64 reference (PyTorch autograd on the original graph, ``tools/torch_reference.py``), LRP-0 equals
gradient×input on ReLU/max-pool nets (not with LRN or saturating activations, where LRP passes relevance through
units whose gradient is zero), and every method gives finite relevance.

    python tools/zoo_report.py [--models NAME ...] [--markdown FILE]

prints one row per model (ops, canonicalisation, status per method, times); the README carries its output.
"""
from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx

ROOT = Path(__file__).resolve().parents[1]

from explainer import METHODS, Explainer  # noqa: E402
from explainer.onnx_io import load_model  # noqa: E402

IMAGENET_LOW = [-0.485 / 0.229, -0.456 / 0.224, -0.406 / 0.225]
IMAGENET_HIGH = [(1 - 0.485) / 0.229, (1 - 0.456) / 0.224, (1 - 0.406) / 0.225]
#: ops under which LRP-0 = gradient×input does not hold by design: LRP passes relevance through LRN and through
#: saturating activations (a ReLU6 unit above 6 has zero gradient but passes relevance), and smooth activations
NO_LRP0_IDENTITY = {"LRN", "Clip", "Sigmoid", "Tanh", "Softplus", "Elu", "Selu", "HardSigmoid", "HardSwish", "Softsign"}


@dataclass
class Row:
    """One model's coverage result."""

    name: str
    nodes: int
    ops: str
    changes: int = 0
    logits_diff: float | None = None
    gradient_cosine: float | None = None
    gradient_max_rel: float | None = None
    lrp0_cosine: float | None = None
    methods_ok: list[str] = field(default_factory=list)
    methods_failed: dict[str, str] = field(default_factory=dict)
    build_s: float = 0.0
    explain_s: float = 0.0
    error: str | None = None

    @property
    def green(self) -> bool:
        return (self.error is None and not self.methods_failed and self.logits_diff is not None
                and self.logits_diff <= 1e-4 and (self.gradient_cosine or 0) >= 0.999
                and (self.lrp0_cosine is None or self.lrp0_cosine >= 0.999))


def model_sources() -> dict[str, callable]:
    """name -> function returning (ModelProto or path, bounds) for every model the report covers."""
    from tests.support.zoo import ZOO_NAMES, zoo_model
    sources: dict[str, callable] = {f"zoo/{n}": (lambda n=n: zoo_model(n)) for n in ZOO_NAMES}
    from graphs.cache import reference_graph
    for net in ("small", "alexnet", "vgg16"):
        for exporter in ("legacy", "dynamo"):
            sources[f"torch-{exporter}/{net}"] = (lambda net=net, exporter=exporter: reference_graph(net, exporter))
    sources["tf2onnx/small_nhwc"] = lambda: ROOT / "graphs" / "tf2onnx_small.onnx"
    sources["trained/digits_cnn"] = lambda: ROOT / "graphs" / "digits_cnn.onnx"
    sources["trained/efficientnet_lite0"] = _efficientnet
    return sources


def _efficientnet():
    from graphs.efficientnet import efficientnet_path
    return efficientnet_path()


def _without_final_softmax(model: onnx.ModelProto) -> onnx.ModelProto:
    out = onnx.ModelProto()
    out.CopyFrom(model)
    producers = {o: n for n in out.graph.node for o in n.output}
    last = producers.get(out.graph.output[0].name)
    if last is not None and last.op_type in ("Softmax", "LogSoftmax"):
        out.graph.output[0].name = last.input[0]
        out.graph.node.remove(last)
    return out


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-300))


def check(name: str, source, *, methods=tuple(METHODS), batch: int = 1, seed: int = 0) -> Row:
    """Run every check on one model; failures are recorded in the row, never raised."""
    import onnxruntime as ort

    from tests.support.torch_reference import torch_gradient
    model, _ = load_model(source() if callable(source) else source)
    ops = Counter(n.op_type for n in model.graph.node)
    row = Row(name, len(model.graph.node), ", ".join(f"{op}×{c}" for op, c in ops.most_common(6)))
    try:
        t = time.perf_counter()
        ex = Explainer(model, "gradient", low=IMAGENET_LOW if _channels(model) == 3 else 0.0,
                       high=IMAGENET_HIGH if _channels(model) == 3 else 1.0, source=name)
        row.build_s = time.perf_counter() - t
        row.changes = len(ex.changes)
        rng = np.random.default_rng(seed)
        x = rng.uniform(-1.5, 1.5, (batch, *ex.input_shape)).astype(np.float32)
        t = time.perf_counter()
        grad = ex.explain(x)
        row.explain_s = time.perf_counter() - t
        plain = _without_final_softmax(model)
        sess = ort.InferenceSession(plain.SerializeToString(), providers=["CPUExecutionProvider"])
        ref_logits = np.concatenate([sess.run(None, {sess.get_inputs()[0].name: x[i:i + 1]})[0].reshape(1, -1)
                                     for i in range(batch)])
        row.logits_diff = float(np.abs(ref_logits - grad.logits).max() / max(1.0, np.abs(ref_logits).max()))
        _, ref_grad = torch_gradient(plain, x, grad.target)
        row.gradient_cosine = cosine(grad.relevance, ref_grad)
        row.gradient_max_rel = float(np.abs(grad.relevance - ref_grad).max() / np.abs(ref_grad).max())
        for method in methods:
            try:
                e = grad if method == "gradient" else ex.with_method(method).explain(x, grad.target)
                if not np.all(np.isfinite(e.relevance)) or e.relevance.shape != x.shape:
                    raise ValueError("non-finite relevance or wrong shape")
                row.methods_ok.append(method)
                if method == "lrp-0" and not NO_LRP0_IDENTITY & set(ops):
                    gxi = ex.with_method("gradient-x-input").explain(x, grad.target).relevance
                    row.lrp0_cosine = cosine(e.relevance, gxi)
            except Exception as exc:  # recorded per method, the report goes on
                row.methods_failed[method] = f"{type(exc).__name__}: {str(exc)[:120]}"
    except Exception as exc:
        row.error = f"{type(exc).__name__}: {str(exc)[:200]}"
    return row


def _channels(model: onnx.ModelProto) -> int:
    inits = {t.name for t in model.graph.initializer}
    vi = next(i for i in model.graph.input if i.name not in inits)
    dims = [d.dim_value for d in vi.type.tensor_type.shape.dim]
    return 3 if 3 in dims[1:2] + dims[3:4] else 1


def _fmt(value: float | None, spec: str) -> str:
    return "–" if value is None else format(value, spec)


def markdown(rows: list[Row]) -> str:
    lines = ["| model | nodes | main ops | canon. changes | logits Δ | ∇ cos (max rel) | LRP-0 = ∇×x | methods | "
             "build s | explain s | status |", "|" + "---|" * 11]
    for r in rows:
        methods = f"{len(r.methods_ok)}/{len(r.methods_ok) + len(r.methods_failed)}"
        if r.methods_failed:
            methods += " (fail: " + ", ".join(r.methods_failed) + ")"
        status = "green" if r.green else ("ERROR: " + r.error if r.error else "red")
        lines.append(f"| {r.name} | {r.nodes} | {r.ops} | {r.changes} | {_fmt(r.logits_diff, '.1e')} | "
                     f"{_fmt(r.gradient_cosine, '.6f')} ({_fmt(r.gradient_max_rel, '.1e')}) | "
                     f"{_fmt(r.lrp0_cosine, '.6f') if r.lrp0_cosine is not None else 'n/a (LRN/saturating)'} | "
                     f"{methods} | {r.build_s:.1f} | {r.explain_s:.2f} | {status} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", help="names (or prefixes, e.g. zoo/) to include; default all")
    parser.add_argument("--markdown", help="also write the table to this file")
    args = parser.parse_args(argv)
    sources = model_sources()
    names = [n for n in sources if not args.models or any(n == m or n.startswith(m) for m in args.models)]
    rows = []
    for name in names:
        row = check(name, sources[name])
        rows.append(row)
        print(f"{name}: {'green' if row.green else 'RED'} ({row.build_s:.1f}s build)", file=sys.stderr, flush=True)
    table = markdown(rows)
    print(f"command: python tools/zoo_report.py {' '.join(argv or sys.argv[1:])}".rstrip())
    print(table)
    if args.markdown:
        Path(args.markdown).write_text(table + "\n", encoding="utf-8")
    return 0 if all(r.green for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
