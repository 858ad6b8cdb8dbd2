"""Product: the element-wise product a ⊙ b of two activations (an ONNX Mul of two data tensors that is neither swish
nor a sigmoid gate, which ``activation.py`` and ``gated_mul.py`` claim first), and what every product of two
activations shares (``FactorProduct``, also the base of ``matmul.py``'s MatMul/Einsum).

Rules for a product z = f(a, b), bilinear in its two factors (AttnLRP, Achtibat et al. 2024; CP-LRP, Ali et al.
2022), with s = R / stab(z) and ∂z/∂aᵀ s the factor's transposed product:
- ``Uniform``: R_a = ½ a ⊙ ∂z/∂aᵀ s, R_b = ½ b ⊙ ∂z/∂bᵀ s;
- ``ConstantWeights``: where one factor is attention weights (a softmax's output, through reshapes), it is a
  constant: the other factor gets a ⊙ ∂z/∂aᵀ s, the weights none; otherwise as ``Uniform``;
- the gradient: ∂z/∂aᵀ g and ∂z/∂bᵀ g.
The output is never negative where both factors are not; zB bounds stop here."""
from __future__ import annotations

from abc import abstractmethod
from collections.abc import Mapping, Sequence

import numpy as np
import onnx

from explainer.frontend.convert import ConvertContext, Converter, NotSupported, cnode
from explainer.frontend.ir import CNode
from explainer.lrp.composites import LayerKind
from explainer.lrp.rules import ConstantWeights, Rule, Uniform
from explainer.ops.base import Bounds, Op
from explainer.relevance.context import EmitContext, unsupported_rule

#: ops that keep attention weights attention weights (the softmax output seen through them)
_WEIGHT_PRESERVING = ("Reshape", "Transpose", "Dropout", "Identity", "Cast", "Squeeze", "Unsqueeze", "Flatten")


def attention_weights(ctx: ConvertContext, factors: Sequence[str]) -> int | None:
    """The index of the factor that is a softmax's output (through reshapes and transposes), or None."""
    for i, name in enumerate(factors):
        node = ctx.producers.get(name)
        while node is not None and node.op_type in _WEIGHT_PRESERVING:
            node = ctx.producers.get(node.input[0])
        if node is not None and node.op_type == "Softmax":
            return i
    return None


def two_data_factors(ctx: ConvertContext, node: onnx.NodeProto) -> list[str]:
    factors = [name for name in node.input if name]
    if len(factors) != 2 or not all(ctx.is_data(f) for f in factors):
        raise NotSupported("not a product of two non-constant tensors")
    return factors


def convert_product(ctx: ConvertContext, node: onnx.NodeProto) -> list[CNode]:
    factors = two_data_factors(ctx, node)
    return [cnode("Product", node, factors, weights=attention_weights(ctx, factors))]


class FactorProduct(Op):
    """A product bilinear in its two data inputs; subclasses say how to form it and its transposed products."""

    kind = LayerKind.PRODUCT

    @abstractmethod
    def transposed(self, ctx: EmitContext, node: CNode, g: str, i: int) -> str:
        """∂z/∂fᵢᵀ g: the signal ``g`` at the output carried back to factor ``i`` (of factor ``i``'s shape)."""

    def backward(self, ctx: EmitContext, node: CNode, rule: Rule, r: str) -> list[str | None]:
        b = ctx.b
        if rule.is_gradient:
            return [self.transposed(ctx, node, r, i) for i in range(2)]
        if not isinstance(rule, (Uniform, ConstantWeights)):
            raise unsupported_rule(node, rule)
        s = b.div(r, b.stabilise(node.output, rule.stabiliser, f"{node.name}_den"), f"{node.name}_s")
        weights = node.attrs.get("weights")
        if isinstance(rule, ConstantWeights) and weights is not None:
            other = 1 - weights
            rin: list[str | None] = [None, None]
            rin[other] = b.mul(node.inputs[other], self.transposed(ctx, node, s, other), f"{node.name}_rin")
            return rin
        half = b.mul(s, b.const(0.5), f"{node.name}_half")
        return [b.mul(node.inputs[i], self.transposed(ctx, node, half, i), f"{node.name}_rin{i}") for i in range(2)]

    def output_nonnegative(self, node: CNode, inputs_nonnegative: Sequence[bool]) -> bool:
        return all(inputs_nonnegative)

    def propagate_bounds(self, node: CNode, low: np.ndarray, high: np.ndarray) -> Bounds | None:
        return None


class Product(FactorProduct):
    name = "Product"

    def converters(self) -> Mapping[str, Converter]:
        return {"Mul": convert_product}

    def forward(self, ctx: EmitContext, node: CNode) -> None:
        ctx.b.op("Mul", node.inputs, out_names=[node.output])

    def transposed(self, ctx: EmitContext, node: CNode, g: str, i: int) -> str:
        factor, other = node.inputs[i], node.inputs[1 - i]
        return ctx.reduce_to(ctx.b.mul(g, other), ctx.shape(node.output), ctx.shape(factor), f"{node.name}_t{i}")
