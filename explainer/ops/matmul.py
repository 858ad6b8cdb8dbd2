"""MatMul: the product of two activations as attention computes it (QKᵀ, weights·V), from an ONNX MatMul of two data
tensors (of the same rank, at least 3: the batch axis and a matrix) and from a two-operand Einsum of data tensors
(``attrs['equation']``, kept as written; every index of an operand must reach the output or the other operand, so
that the transposed products are Einsums too). A MatMul with a constant weight is ``dense.py``'s.

Rules as for every product of two activations (``product.py``): uniform split, constant attention weights, gradient.
It also registers the converter of ONNX's ``Attention`` (``attention.py``), which attention's MatMuls dominate."""
from __future__ import annotations

from collections.abc import Mapping

import onnx

from explainer.frontend.convert import ConvertContext, Converter, NotSupported, attr, cnode
from explainer.frontend.ir import CNode
from explainer.ops import attention
from explainer.ops.product import FactorProduct, attention_weights, two_data_factors
from explainer.relevance.context import EmitContext


def convert_matmul(ctx: ConvertContext, node: onnx.NodeProto) -> list[CNode]:
    factors = two_data_factors(ctx, node)
    ranks = [len(ctx.shape(f)) for f in factors]
    if ranks[0] != ranks[1] or ranks[0] < 3:
        raise NotSupported(f"MatMul of a rank-{ranks[0]} and a rank-{ranks[1]} tensor; a product of two activations "
                           "needs the same rank, at least 3 (batch and matrix axes)")
    return [cnode("MatMul", node, factors, weights=attention_weights(ctx, factors))]


def _operands(equation: str) -> tuple[list[str], str]:
    """The operands' and the output's subscripts of an explicit two-operand equation, or NotSupported."""
    equation = equation.replace(" ", "")
    if "->" not in equation or "." in equation:
        raise NotSupported(f"Einsum '{equation}': only explicit equations ('ij,jk->ik') without '...' are supported")
    inputs, output = equation.split("->")
    operands = inputs.split(",")
    for subs in [*operands, output]:
        if len(set(subs)) != len(subs):
            raise NotSupported(f"Einsum '{equation}' repeats an index within one operand (a diagonal)")
    return operands, output


def convert_einsum(ctx: ConvertContext, node: onnx.NodeProto) -> list[CNode]:
    factors = two_data_factors(ctx, node)
    equation = str(attr(node, "equation"))
    operands, output = _operands(equation)
    if len(operands) != 2:
        raise NotSupported(f"Einsum '{equation}' of {len(operands)} operands; only two are supported")
    if not (operands[0][:1] == operands[1][:1] == output[:1]):
        raise NotSupported(f"Einsum '{equation}' does not keep the batch axis first in every operand")
    for i, subs in enumerate(operands):
        lonely = set(subs) - set(output) - set(operands[1 - i])
        if lonely:
            raise NotSupported(f"Einsum '{equation}' sums index '{''.join(sorted(lonely))}' of one operand alone")
    return [cnode("MatMul", node, factors, equation=equation.replace(" ", ""),
                  weights=attention_weights(ctx, factors))]


class MatMul(FactorProduct):
    name = "MatMul"
    also_emits = attention.EMITS

    def converters(self) -> Mapping[str, Converter]:
        return {"MatMul": convert_matmul, "Einsum": convert_einsum, "Attention": attention.convert_attention}

    def forward(self, ctx: EmitContext, node: CNode) -> None:
        equation = node.attrs.get("equation")
        if equation is None:
            ctx.b.op("MatMul", node.inputs, out_names=[node.output])
        else:
            ctx.b.op("Einsum", node.inputs, out_names=[node.output], equation=equation)

    def transposed(self, ctx: EmitContext, node: CNode, g: str, i: int) -> str:
        b = ctx.b
        factor, other = node.inputs[i], node.inputs[1 - i]
        equation = node.attrs.get("equation")
        if equation is not None:
            operands, output = _operands(equation)
            back = f"{output},{operands[1 - i]}->{operands[i]}"
            return b.op("Einsum", [g, other], f"{node.name}_t{i}", equation=back)
        rank = len(ctx.shape(other))
        swap = list(range(rank - 2)) + [rank - 1, rank - 2]
        other_t = b.op("Transpose", [other], f"{node.name}_T{1 - i}", perm=swap)
        product = b.op("MatMul", [g, other_t] if i == 0 else [other_t, g], f"{node.name}_t{i}")
        out_shape = ctx.shape(node.output)
        full = tuple(out_shape[:-2]) + tuple(ctx.shape(factor)[-2:])
        return ctx.reduce_to(product, full, ctx.shape(factor), f"{node.name}_t{i}")
