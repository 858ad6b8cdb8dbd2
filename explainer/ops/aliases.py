"""ONNX ops that only ever vanish for explanation (their output is their data input): Identity, Dropout (inference),
a Cast to float, and a final Softmax/LogSoftmax (relevance starts from the pre-softmax logits). They have no
canonical op, so nothing to emit or analyse."""
from __future__ import annotations

import onnx

from explainer.frontend.convert import Alias, ConvertContext, Converter, NotSupported, attr, single_data


def convert_passthrough(ctx: ConvertContext, node: onnx.NodeProto) -> Alias:
    return Alias(single_data(ctx, node))


def convert_cast(ctx: ConvertContext, node: onnx.NodeProto) -> Alias:
    if attr(node, "to") != onnx.TensorProto.FLOAT:
        raise NotSupported(f"Cast to {onnx.TensorProto.DataType.Name(attr(node, 'to'))} inside the data path")
    return Alias(node.input[0])


def convert_softmax(ctx: ConvertContext, node: onnx.NodeProto) -> Alias:
    if node.output[0] not in ctx.output_chain:
        raise NotSupported(f"{node.op_type} inside the network (only a final one is removed)")
    return Alias(node.input[0], reason=f"removed final {node.op_type} '{node.name or node.output[0]}' "
                                       "(relevance starts from the pre-softmax logits)")


#: ONNX op type -> converter returning an Alias (or NotSupported)
ALIASES: dict[str, Converter] = {
    "Identity": convert_passthrough,
    "Dropout": convert_passthrough,
    "Cast": convert_cast,
    "Softmax": convert_softmax,
    "LogSoftmax": convert_softmax,
}
