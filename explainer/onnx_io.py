"""Reading and writing ONNX files safely (external data stays inside the model's folder)."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import external_data_helper, numpy_helper

from explainer.errors import ModelError

#: protobuf cannot serialise a single message past 2 GiB; above this we store weights as external data
EXTERNAL_DATA_THRESHOLD = 1_800_000_000


def _check_external_locations(model: onnx.ModelProto, base: Path, source: str) -> None:
    base_resolved = base.resolve()
    for tensor in external_data_helper._get_all_tensors(model):
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        info = {entry.key: entry.value for entry in tensor.external_data}
        location = info.get("location", "")
        try:
            target = (base / location).resolve()
        except (ValueError, OSError, RuntimeError) as exc:
            raise ModelError(f"{source}: initializer '{tensor.name}' has an unusable external data location "
                             f"{location!r} ({exc.__class__.__name__})") from None
        if os.path.isabs(location) or base_resolved not in (target, *target.parents):
            raise ModelError(f"{source}: initializer '{tensor.name}' refers to external data '{location}' outside "
                             f"the model's folder {base_resolved}; refusing to read it")
        try:
            exists = target.is_file()
        except (ValueError, OSError):
            exists = False
        if not exists:
            raise ModelError(f"{source}: initializer '{tensor.name}' needs external data file '{location}', "
                             f"which does not exist next to the model")


def load_model(model: str | os.PathLike | onnx.ModelProto | bytes) -> tuple[onnx.ModelProto, str]:
    """Load an ONNX model from a path, bytes or a ModelProto; returns (model, a name for messages)."""
    if isinstance(model, onnx.ModelProto):
        return model, "<ModelProto>"
    if isinstance(model, (bytes, bytearray)):
        try:
            return onnx.load_from_string(bytes(model)), "<bytes>"
        except Exception as exc:
            raise ModelError(f"<bytes>: not a valid ONNX model ({exc.__class__.__name__}: {exc})") from None
    path = Path(model)
    source = str(path)
    if not path.exists():
        raise ModelError(f"{source}: no such file")
    if path.is_dir():
        raise ModelError(f"{source}: is a directory, expected an .onnx file")
    if path.stat().st_size == 0:
        raise ModelError(f"{source}: file is empty")
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as exc:
        raise ModelError(f"{source}: not a valid ONNX model ({exc.__class__.__name__}: {exc})") from None
    if not proto.graph.node:
        raise ModelError(f"{source}: not a valid ONNX model (the graph has no nodes)")
    _check_external_locations(proto, path.parent, source)
    try:
        external_data_helper.load_external_data_for_model(proto, str(path.parent))
    except Exception as exc:
        raise ModelError(f"{source}: cannot read external data ({exc})") from None
    return proto, source


def save_model(model: onnx.ModelProto, path: str | os.PathLike) -> Path:
    """Save; models past protobuf's limit keep their weights in ``<name>.data`` next to the file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if model.ByteSize() > EXTERNAL_DATA_THRESHOLD:
        onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                        location=path.name + ".data", size_threshold=1024)
    else:
        onnx.save_model(model, str(path))
    return path


def serialise(model: onnx.ModelProto) -> bytes:
    """Bytes for an ONNX Runtime session (raises a clear error past protobuf's limit)."""
    if model.ByteSize() > EXTERNAL_DATA_THRESHOLD:
        raise ModelError("model is larger than 2 GB; save it with save_model() and open the file instead")
    return model.SerializeToString()


#: initializers at least this large travel to ONNX Runtime as OrtValues instead of inside the serialised model
EXTERNAL_MIN_BYTES = 1 << 20
_PLACEHOLDER_LOCATION = "explainer-in-memory"


def external_reference(name: str, array: np.ndarray) -> onnx.TensorProto:
    """An initializer that declares ``array``'s type and shape but keeps its data out of the protobuf."""
    tensor = onnx.TensorProto()
    tensor.name = name
    tensor.data_type = onnx.helper.np_dtype_to_tensor_dtype(array.dtype)
    tensor.dims.extend(array.shape)
    tensor.data_location = onnx.TensorProto.EXTERNAL
    for key, value in (("location", _PLACEHOLDER_LOCATION), ("offset", "0"), ("length", str(array.nbytes))):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value
    return tensor


@dataclass
class InMemoryModel:
    """An ONNX model whose large initializers live in NumPy arrays (``external``), not in the protobuf.

    Serialising a 500 MB protobuf and parsing it again in ONNX Runtime costs seconds; handing the arrays over as
    OrtValues costs nothing. ``full()`` gives an ordinary self-contained ModelProto (for saving)."""

    skeleton: onnx.ModelProto
    external: dict[str, np.ndarray] = field(default_factory=dict)

    @classmethod
    def from_arrays(cls, graph: onnx.GraphProto, arrays: dict[str, np.ndarray], opset: int, ir_version: int,
                    min_bytes: int = EXTERNAL_MIN_BYTES) -> InMemoryModel:
        external = {}
        for name, array in arrays.items():
            if array.nbytes >= min_bytes:
                graph.initializer.append(external_reference(name, array))
                external[name] = array
            else:
                graph.initializer.append(numpy_helper.from_array(array, name))
        model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", opset)],
                                       producer_name="explainer")
        model.ir_version = ir_version
        return cls(model, external)

    @classmethod
    def from_model(cls, model: onnx.ModelProto, arrays: dict[str, np.ndarray],
                   min_bytes: int = EXTERNAL_MIN_BYTES) -> InMemoryModel:
        """A copy of a loaded model whose large initializers are replaced by references to ``arrays``. The copy
        shares no message with ``model``: holding any part of it does not keep ``model``'s protobuf alive."""
        skeleton = onnx.ModelProto()
        skeleton.ir_version = model.ir_version
        skeleton.opset_import.extend(model.opset_import)
        skeleton.metadata_props.extend(model.metadata_props)
        skeleton.functions.extend(model.functions)
        graph = skeleton.graph
        graph.name = model.graph.name
        graph.node.extend(model.graph.node)
        graph.input.extend(model.graph.input)
        graph.output.extend(model.graph.output)
        graph.value_info.extend(model.graph.value_info)
        graph.sparse_initializer.extend(model.graph.sparse_initializer)
        external = {}
        for tensor in model.graph.initializer:
            array = arrays.get(tensor.name)
            if array is not None and array.nbytes >= min_bytes:
                graph.initializer.append(external_reference(tensor.name, array))
                external[tensor.name] = array
            else:
                graph.initializer.append(tensor)
        return cls(skeleton, external)

    def full(self) -> onnx.ModelProto:
        model = onnx.ModelProto()
        model.CopyFrom(self.skeleton)
        for i, tensor in enumerate(model.graph.initializer):
            if tensor.name in self.external:
                model.graph.initializer[i].CopyFrom(numpy_helper.from_array(self.external[tensor.name], tensor.name))
        return model
