"""ONNX's opset-23 Attention node is explained as the attention it stands for: for 3-D and 4-D inputs, with a causal
or a constant mask, every method gives the relevance (and the gradient) of the same network written out with
MatMul, scale, Softmax and MatMul; what it cannot be (a key/value cache, grouped-query heads) is refused by name."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper

from explainer import Explainer, UnsupportedOpError
from tests.support.emitted import with_opset
from tests.support.onnx_graphs import G

TOKENS, DIM, HEADS = 4, 8, 2
MASK = np.array([[1, 1, 0, 1], [1, 1, 1, 0], [0, 1, 1, 1], [1, 1, 1, 1]], bool)


def _model(fused: bool, rank: int, causal: bool = False, mask: bool = False, kv_heads: int = HEADS,
           where: bool = False):
    """Image [N, 2, 4, 4] → 2×2 patches (Conv) → 4 tokens of 8 → q/k/v → attention → mean of tokens → 5 scores."""
    g = G(seed=7)
    tokens = g.node("Transpose", [g.node("Reshape", [g.conv(g.node("Relu", ["x"]), 2, DIM, k=2, strides=[2, 2]),
                                                     g.w((3,), value=[0, DIM, -1], dtype=np.int64)])], perm=[0, 2, 1])
    d = DIM // HEADS
    q, k, v = (g.node("MatMul", [tokens, g.w((DIM, width))]) for width in (DIM, d * kv_heads, d * kv_heads))
    # written out, masked scores get a large negative number: ONNX has no -inf weights in the data path
    bias = (np.where(MASK, 0.0, -1e9) if mask else np.zeros(MASK.shape)) + \
        (np.triu(np.full(MASK.shape, -1e9), 1) if causal else 0.0)

    def heads(t: str) -> str:
        split = g.node("Reshape", [t, g.w((4,), value=[0, TOKENS, HEADS, d], dtype=np.int64)])
        return g.node("Transpose", [split], perm=[0, 2, 1, 3])

    if fused:
        inputs = [q, k, v] if rank == 3 else [heads(q), heads(k), heads(v)]
        if mask:
            inputs.append(g.w(MASK.shape, value=MASK, dtype=np.bool_))
        attrs = {"q_num_heads": HEADS, "kv_num_heads": kv_heads} if rank == 3 else {}
        out = g.node("Attention", inputs, is_causal=int(causal), **attrs)
        if rank == 4:
            out = g.node("Reshape", [g.node("Transpose", [out], perm=[0, 2, 1, 3]),
                                     g.w((3,), value=[0, TOKENS, DIM], dtype=np.int64)])
    else:
        scores = g.node("MatMul", [heads(q), g.node("Transpose", [heads(k)], perm=[0, 1, 3, 2])])
        scaled = g.node("Mul", [scores, g.w((), value=1 / np.sqrt(d))])
        if where:  # as PyTorch's masked_fill exports: Where(keep, scores, -inf)
            keep = g.w(bias.shape, value=bias == 0, dtype=np.bool_)
            scaled = g.node("Where", [keep, scaled, g.w((), value=-np.inf)])
        elif mask or causal:
            scaled = g.node("Add", [scaled, g.w(bias.shape, value=bias)])
        mixed = g.node("MatMul", [g.node("Softmax", [scaled], axis=-1), heads(v)])
        out = g.node("Reshape", [g.node("Transpose", [mixed], perm=[0, 2, 1, 3]),
                                 g.w((3,), value=[0, TOKENS, DIM], dtype=np.int64)])
    pooled = g.node("ReduceMean", [out, g.w((1,), value=[1], dtype=np.int64)], keepdims=0)
    scores = g.node("Gemm", [pooled, g.w((DIM, 5)), g.w((5,), 0.1)])
    model = with_opset(g.model(["N", 2, 4, 4], scores), 23)
    model.ir_version = 10  # the newest ONNX Runtime reads
    model.graph.output[0].CopyFrom(helper.make_tensor_value_info(scores, TensorProto.FLOAT, ["N", 5]))
    return model


@pytest.mark.parametrize("rank, causal, mask, where", [(3, False, False, False), (4, False, False, False),
                                                       (3, True, False, False), (4, False, True, False),
                                                       (3, True, True, False), (3, True, True, True)])
def test_attention_op_is_explained_as_its_decomposition(rank, causal, mask, where):
    """The last case writes the mask out as masked_fill does (Where with a constant mask and -inf): a masked
    Affine, never reported as relevance kept by a constant."""
    x = np.random.default_rng(1).standard_normal((3, 2, 4, 4)).astype(np.float32)
    fused = Explainer(_model(True, rank, causal, mask), "gradient", provider="cpu")
    written = Explainer(_model(False, rank, causal, mask, where=where), "gradient", provider="cpu")
    assert "Attention" in fused.graph.source_ops and "Attention" not in written.graph.source_ops
    for method in ("gradient", "attn-lrp", "cp-lrp", "epsilon-plus-flat"):
        a = fused.with_method(method).explain(x, [0, 2, 4])
        b = written.with_method(method).explain(x, [0, 2, 4])
        np.testing.assert_allclose(a.logits, b.logits, rtol=1e-5, atol=1e-6)
        scale = np.abs(b.relevance).max()
        np.testing.assert_allclose(a.relevance, b.relevance, rtol=1e-4, atol=1e-5 * scale, err_msg=method)
        assert a.absorbed == {} and (b.absorbed == {} or not where)


def test_grouped_query_attention_is_refused_with_the_reason():
    with pytest.raises(UnsupportedOpError, match="Attention") as info:
        Explainer(_model(True, 3, kv_heads=1), "gradient", provider="cpu")
    assert "q_num_heads equal to kv_num_heads" in " ".join(info.value.reasons.values())
