"""Coverage of "explain any exported model": every graph we can get offline, checked against references.

For each model: canonicalisation keeps the logits (vs ONNX Runtime on the original graph), the gradient equals an
independent float64 reference (PyTorch autograd on the original graph, :mod:`tests.support.torch_reference`),
LRP-0 equals gradient×input on ReLU/max-pool nets (not with LRN or saturating activations, where LRP passes
relevance through units whose gradient is zero, nor with LayerNorm, softmax, GELU and other smooth non-linearities of
transformers, which are not piecewise linear), and every method asked for gives finite relevance of the input's
shape. ``tests/test_zoo.py`` asserts every row; ``python -m tools.zoo_report`` prints them as a table.
"""
from __future__ import annotations

import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx

from explainer import METHODS, Explainer, Explanation
from explainer.images.preprocess import input_bounds, preprocessing
from explainer.onnx_io import load_model

ROOT = Path(__file__).resolve().parents[2]
#: ops under which LRP-0 = gradient×input does not hold by design: LRP passes relevance through LRN and through
#: saturating activations (a ReLU6 unit above 6 has zero gradient but passes relevance), and through smooth
#: non-linearities (activations, LayerNorm's normalisation, softmax, attention), whose gradient is not their
#: output over their input; a softmax at the output is left out before this is decided
NO_LRP0_IDENTITY = {"LRN", "Clip", "Sigmoid", "Tanh", "Softplus", "Elu", "Selu", "HardSigmoid", "HardSwish", "Softsign",
                    "Mish", "Erf", "Gelu", "Pow", "Sqrt", "Exp", "Log", "Reciprocal", "LayerNormalization", "Softmax",
                    "LogSoftmax", "Attention"}
#: networks of :mod:`tests.support.transformer_models` in the report, per exporter: ViTs (exact and tanh GELU,
#: written-out and ``scaled_dot_product_attention`` attention, a DeiT distillation token), MobileNetV3 and ConvNeXt
#: (both ways of writing a LayerNorm over channels)
TRANSFORMERS = {"legacy": ("vit", "vit-tanh", "deit", "mobilenetv3", "convnext-conv"),
                "dynamo": ("vit", "vit-sdpa", "mobilenetv3", "convnext")}
#: what a source gives: an ONNX file or a model
Model = str | Path | onnx.ModelProto


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
    lrp0_na: str = ""
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


def model_sources() -> dict[str, Callable[[], Model]]:
    """name -> function returning the ONNX file or model, for every model the report covers."""
    from graphs.cache import reference_graph
    from graphs.efficientnet import efficientnet_path
    from tests.support.zoo import ZOO_NAMES, zoo_model
    sources: dict[str, Callable[[], Model]] = {f"zoo/{n}": (lambda n=n: zoo_model(n)) for n in ZOO_NAMES}
    for net in ("small", "alexnet", "vgg16"):
        for exporter in ("legacy", "dynamo"):
            sources[f"torch-{exporter}/{net}"] = (lambda net=net, exporter=exporter: reference_graph(net, exporter))
    sources["tf2onnx/small_nhwc"] = lambda: ROOT / "graphs" / "tf2onnx_small.onnx"
    sources["trained/digits_cnn"] = lambda: ROOT / "graphs" / "digits_cnn.onnx"
    sources["trained/efficientnet_lite0"] = efficientnet_path
    sources["trained/digits_vit"] = lambda: ROOT / "graphs" / "digits_vit.onnx"
    for exporter, names in TRANSFORMERS.items():
        for net in names:
            sources[f"torch-{exporter}/{net}"] = (lambda net=net, exporter=exporter: transformer_export(net, exporter))
    return sources


def transformer_export(name: str, exporter: str) -> onnx.ModelProto:
    """Network ``name`` of :mod:`tests.support.transformer_models` exported afresh by ``exporter`` (a second or two;
    ``graphs.export`` checks it against torch) into a temporary folder, loaded with its weights."""
    from tests.support.transformer_models import Exports
    with tempfile.TemporaryDirectory(prefix="explainer-zoo-") as tmp:
        return onnx.load(str(Exports(tmp)(name, exporter)))


def input_range(ex: Explainer) -> tuple[np.ndarray | float, np.ndarray | float]:
    """(low, high) of the model's input: ImageNet-normalised pixels for colour models, [0, 1] for grey ones."""
    channels = ex.input_shape[-1] if ex.layout == "NHWC" else ex.input_shape[0]
    return input_bounds(preprocessing("imagenet"), 3) if channels == 3 else (0.0, 1.0)


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


def check(name: str, source: Model | Callable[[], Model], *, methods: Sequence[str] = tuple(METHODS), batch: int = 1,
          seed: int = 0, explainer: Explainer | None = None) -> Row:
    """Run every check on one model; failures are recorded in the row, never raised.

    ``methods``: those that must give finite relevance (LRP-0 is compared with gradient×input when listed).
    ``explainer``: a gradient explainer of the same model built by the caller (tests share one per full-size graph);
    the row's build time is then 0."""
    import onnxruntime as ort

    from tests.support.torch_reference import torch_gradient
    model, _ = load_model(source() if callable(source) else source)
    ops = Counter(n.op_type for n in model.graph.node)
    row = Row(name, len(model.graph.node), ", ".join(f"{op}×{c}" for op, c in ops.most_common(6)))
    try:
        t = time.perf_counter()
        ex = explainer if explainer is not None else Explainer(model, "gradient", source=name)
        if ex.method != "gradient":
            raise ValueError(f"check needs a gradient explainer, got '{ex.method}'")
        row.build_s = time.perf_counter() - t
        row.changes = len(ex.changes)
        low, high = input_range(ex)
        rng = np.random.default_rng(seed)
        x = rng.uniform(-1.5, 1.5, (batch, *ex.input_shape)).astype(np.float32)
        t = time.perf_counter()
        grad = ex.explain(x)
        row.explain_s = time.perf_counter() - t
        plain = _without_final_softmax(model)
        row.lrp0_na = ", ".join(sorted(NO_LRP0_IDENTITY & {n.op_type for n in plain.graph.node}))
        sess = ort.InferenceSession(plain.SerializeToString(), providers=["CPUExecutionProvider"])
        ref_logits = np.concatenate([sess.run(None, {sess.get_inputs()[0].name: x[i:i + 1]})[0].reshape(1, -1)
                                     for i in range(batch)])
        del sess
        row.logits_diff = float(np.abs(ref_logits - grad.logits).max() / max(1.0, np.abs(ref_logits).max()))
        _, ref_grad = torch_gradient(plain, x, grad.target)
        row.gradient_cosine = cosine(grad.relevance, ref_grad)
        row.gradient_max_rel = float(np.abs(grad.relevance - ref_grad).max() / np.abs(ref_grad).max())
        results: dict[str, Explanation] = {"gradient": grad}

        def explained(method: str) -> Explanation:
            if method not in results:  # each method's session once, also when the LRP-0 check needs it
                results[method] = ex.with_method(method, low=low, high=high).explain(x, grad.target)
            return results[method]

        for method in methods:
            try:
                e = explained(method)
                if not np.all(np.isfinite(e.relevance)) or e.relevance.shape != x.shape:
                    raise ValueError("non-finite relevance or wrong shape")
                row.methods_ok.append(method)
                if method == "lrp-0" and not row.lrp0_na:
                    row.lrp0_cosine = cosine(e.relevance, explained("gradient-x-input").relevance)
            except Exception as exc:  # recorded per method, the report goes on
                row.methods_failed[method] = f"{type(exc).__name__}: {str(exc)[:120]}"
    except Exception as exc:
        row.error = f"{type(exc).__name__}: {str(exc)[:200]}"
    return row


def _fmt(value: float | None, spec: str) -> str:
    return "–" if value is None else format(value, spec)


def _not_checked(row: Row) -> str:
    """Why a row has no LRP-0 = gradient×input cosine: the ops under which it does not hold (up to three)."""
    if not row.lrp0_na:
        return "–"
    ops = row.lrp0_na.split(", ")
    return f"n/a ({', '.join(ops[:3])}{', …' if len(ops) > 3 else ''})"


def markdown(rows: list[Row]) -> str:
    """The rows as the README's Markdown table."""
    lines = ["| model | nodes | main ops | canon. changes | logits Δ | ∇ cos (max rel) | LRP-0 = ∇×x | methods | "
             "build s | explain s | status |", "|" + "---|" * 11]
    for r in rows:
        methods = f"{len(r.methods_ok)}/{len(r.methods_ok) + len(r.methods_failed)}"
        if r.methods_failed:
            methods += " (fail: " + ", ".join(r.methods_failed) + ")"
        status = "green" if r.green else ("ERROR: " + r.error if r.error else "red")
        lines.append(f"| {r.name} | {r.nodes} | {r.ops} | {r.changes} | {_fmt(r.logits_diff, '.1e')} | "
                     f"{_fmt(r.gradient_cosine, '.6f')} ({_fmt(r.gradient_max_rel, '.1e')}) | "
                     f"{_fmt(r.lrp0_cosine, '.6f') if r.lrp0_cosine is not None else _not_checked(r)} | "
                     f"{methods} | {r.build_s:.1f} | {r.explain_s:.2f} | {status} |")
    return "\n".join(lines)
