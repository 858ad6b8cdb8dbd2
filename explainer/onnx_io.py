"""Reading and writing ONNX files safely: external data is read only from inside the model's folder and only as far as
the tensors declare, tensor data that does not fit its declared shape is a ModelError naming the tensor, and a saved
model appears complete or not at all."""
from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import external_data_helper, helper, numpy_helper

from explainer.errors import InputError, ModelError, OutputError, describe
from explainer.files import FileGroup

#: protobuf cannot serialise a single message past 2 GiB; above this we store weights as external data
EXTERNAL_DATA_THRESHOLD = 1_800_000_000

#: what ``load_model`` accepts as a model
ModelSource = str | os.PathLike | onnx.ModelProto | bytes

#: bits per element of the sub-byte types (packed in raw data); the names differ between onnx versions
_PACKED_BITS = {getattr(onnx.TensorProto, name): bits for name, bits in
                (("INT4", 4), ("UINT4", 4), ("FLOAT4E2M1", 4), ("INT2", 2), ("UINT2", 2), ("FLOAT6E2M3", 6),
                 ("FLOAT6E3M2", 6)) if hasattr(onnx.TensorProto, name)}
_COMPLEX = (onnx.TensorProto.COMPLEX64, onnx.TensorProto.COMPLEX128)


@dataclass
class LoadedModel:
    """A loaded model, a name for it in messages, and the files it was read from (the model file and its external
    data files; none for bytes or a ModelProto without external data)."""

    proto: onnx.ModelProto
    source: str
    files: tuple[Path, ...] = ()


def load_model(model: ModelSource, base_dir: str | os.PathLike | None = None) -> tuple[onnx.ModelProto, str]:
    """Load an ONNX model from a path, bytes or a ModelProto; returns (model, a name for messages). See
    :func:`read_model`."""
    loaded = read_model(model, base_dir)
    return loaded.proto, loaded.source


def read_model(model: ModelSource, base_dir: str | os.PathLike | None = None) -> LoadedModel:
    """Load an ONNX model from a path, bytes or a ModelProto, with its external data.

    A file's external data is read from the file's folder. Bytes and a ModelProto have no folder: their external data
    is an error unless ``base_dir`` names the folder it lives in. Either way every location must lie inside that
    folder, and each external tensor is read only as far as its declared shape reaches. A ModelProto is never
    changed: when it has external data, a copy is loaded."""
    if isinstance(model, onnx.ModelProto):
        return _with_external_data(model, "<ModelProto>", _base_dir(base_dir), copy=True)
    if isinstance(model, (bytes, bytearray, memoryview)):
        try:
            proto = onnx.load_from_string(bytes(model))
        except Exception as exc:
            raise ModelError(f"<bytes>: not a valid ONNX model ({describe(exc)})") from None
        return _with_external_data(proto, "<bytes>", _base_dir(base_dir), copy=False)
    if not isinstance(model, (str, os.PathLike)):
        raise InputError(f"the model must be a file path, bytes or an onnx.ModelProto, got {type(model).__name__}")
    if base_dir is not None:
        raise InputError("base_dir= is for a model given as bytes or a ModelProto; a model file's external data is "
                         "read from the file's own folder")
    path = Path(os.fsdecode(model))
    source = str(path)
    if not os.fsdecode(model):
        raise InputError("the model path is empty")
    try:
        if not path.exists():
            raise ModelError(f"{source}: no such file")
        if path.is_dir():
            raise ModelError(f"{source}: is a directory, expected an .onnx file")
        if not path.is_file():
            raise ModelError(f"{source}: not a regular file")
        if path.stat().st_size == 0:
            raise ModelError(f"{source}: file is empty")
    except (OSError, ValueError) as exc:
        raise ModelError(f"{source}: cannot open the model file ({describe(exc)})") from None
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except OSError as exc:
        raise ModelError(f"{source}: cannot read the model file ({describe(exc)})") from None
    except Exception as exc:
        raise ModelError(f"{source}: not a valid ONNX model ({describe(exc)})") from None
    if not proto.graph.node:
        raise ModelError(f"{source}: not a valid ONNX model (the graph has no nodes)")
    loaded = _with_external_data(proto, source, path.parent, copy=False)
    return LoadedModel(loaded.proto, source, (path.resolve(), *loaded.files))


def _base_dir(base_dir: str | os.PathLike | None) -> Path | None:
    if base_dir is None:
        return None
    if not isinstance(base_dir, (str, os.PathLike)) or not os.fsdecode(base_dir):
        raise InputError(f"base_dir must be the path of a folder, got {base_dir!r}")
    path = Path(os.fsdecode(base_dir))
    try:
        is_dir = path.is_dir()
    except (OSError, ValueError):
        is_dir = False
    if not is_dir:
        raise InputError(f"base_dir {str(path)!r} is not a folder")
    return path


def iter_tensors(model: onnx.ModelProto, *, initializers: bool = True) -> Iterator[tuple[onnx.TensorProto, str]]:
    """Every tensor ``model`` holds, with what it is in words: initializers (the main graph's only with
    ``initializers``), sparse initializers, and the tensors of node attributes (Constant values), in subgraphs and
    model-local functions too."""
    yield from _graph_tensors(model.graph, initializers=initializers)
    for function in model.functions:
        for node in function.node:
            yield from _node_tensors(node, f" in function '{function.domain}.{function.name}'")


def _graph_tensors(graph: onnx.GraphProto, where: str = "", *,
                   initializers: bool = True) -> Iterator[tuple[onnx.TensorProto, str]]:
    for tensor in graph.initializer if initializers else ():
        yield tensor, f"initializer '{tensor.name}'{where}"
    for sparse in graph.sparse_initializer:
        yield from _sparse_tensors(sparse, f"sparse initializer '{sparse.values.name}'{where}")
    for node in graph.node:
        yield from _node_tensors(node, where)


def _node_tensors(node: onnx.NodeProto, where: str) -> Iterator[tuple[onnx.TensorProto, str]]:
    label = node.name or (node.output[0] if node.output else node.op_type)
    for a in node.attribute:
        def what(tensor: onnx.TensorProto, attribute: str = a.name) -> str:
            named = f"tensor '{tensor.name}'" if tensor.name else "the tensor"
            return f"{named} in attribute '{attribute}' of node '{label}'{where}"
        if a.HasField("t"):
            yield a.t, what(a.t)
        for tensor in a.tensors:
            yield tensor, what(tensor)
        if a.HasField("sparse_tensor"):
            yield from _sparse_tensors(a.sparse_tensor, what(a.sparse_tensor.values))
        for sparse in a.sparse_tensors:
            yield from _sparse_tensors(sparse, what(sparse.values))
        if a.HasField("g"):
            yield from _graph_tensors(a.g, f" in a subgraph of node '{label}'{where}")
        for graph in a.graphs:
            yield from _graph_tensors(graph, f" in a subgraph of node '{label}'{where}")


def _sparse_tensors(sparse: onnx.SparseTensorProto, what: str) -> Iterator[tuple[onnx.TensorProto, str]]:
    yield sparse.values, f"{what} (values)"
    yield sparse.indices, f"{what} (indices)"


def _with_external_data(proto: onnx.ModelProto, source: str, base: Path | None, *, copy: bool) -> LoadedModel:
    """``proto`` with its external data read from ``base`` (a copy of it when ``copy`` and there is any)."""
    if not any(external_data_helper.uses_external_data(t) for t, _ in iter_tensors(proto)):
        return LoadedModel(proto, source)
    if copy:
        proto = _copy(proto)
    files = []
    for tensor, what in iter_tensors(proto):
        if external_data_helper.uses_external_data(tensor):
            files.append(_load_external_tensor(tensor, what, base, source))
    return LoadedModel(proto, source, tuple(dict.fromkeys(files)))


def _copy(proto: onnx.ModelProto) -> onnx.ModelProto:
    copied = onnx.ModelProto()
    copied.CopyFrom(proto)
    return copied


def _load_external_tensor(tensor: onnx.TensorProto, what: str, base: Path | None, source: str) -> Path:
    """Read ``tensor``'s external data into it after checking its location (inside ``base``) and its extent (the
    file holds the bytes its declared shape needs); returns the file read."""
    try:
        info = external_data_helper.ExternalDataInfo(tensor)
    except (TypeError, ValueError) as exc:
        raise ModelError(f"{source}: {what} has malformed external data fields ({describe(exc)})") from None
    location = info.location
    if base is None:
        raise ModelError(f"{source}: {what} keeps its data in the external file {location!r}, and a model given as "
                         "bytes or a ModelProto has no folder to read it from; pass base_dir= (the model's folder) or "
                         "load the model from its file")
    target = _external_file(what, location, base, source)
    offset = info.offset or 0
    need = declared_bytes(tensor, what, source)
    if need is None:
        raise ModelError(f"{source}: {what} of type {_type_name(tensor)} cannot keep its data in an external file")
    if info.length is not None and info.length != need:
        raise ModelError(f"{source}: {what} declares shape {list(tensor.dims)} ({need} bytes of "
                         f"{_type_name(tensor)}) but its external data length is {info.length} bytes")
    available = max(target.stat().st_size - offset, 0)
    if available < need:
        raise ModelError(f"{source}: {what} declares shape {list(tensor.dims)} ({need} bytes of "
                         f"{_type_name(tensor)}) but {location!r} holds only {available} bytes from offset {offset}")
    if info.length is None:
        entry = tensor.external_data.add()  # read exactly the declared extent, not the rest of the file
        entry.key, entry.value = "length", str(need)
    try:
        external_data_helper.load_external_data_for_tensor(tensor, str(base))
    except Exception as exc:
        raise ModelError(f"{source}: cannot read the external data of {what} from {location!r} "
                         f"({describe(exc)})") from None
    return target


def _external_file(what: str, location: str, base: Path, source: str) -> Path:
    """The file ``location`` names, which must exist inside ``base`` (symlinks resolved)."""
    base_resolved = base.resolve()
    if not location:
        raise ModelError(f"{source}: {what} is marked as external data but names no file")
    try:
        target = (base / location).resolve()
    except (ValueError, OSError, RuntimeError) as exc:
        raise ModelError(f"{source}: {what} has an unusable external data location {location!r} "
                         f"({exc.__class__.__name__})") from None
    if os.path.isabs(location) or base_resolved not in (target, *target.parents):
        raise ModelError(f"{source}: {what} refers to external data '{location}' outside the model's folder "
                         f"{base_resolved}; refusing to read it")
    try:
        exists = target.is_file()
    except (ValueError, OSError):
        exists = False
    if not exists:
        raise ModelError(f"{source}: {what} needs external data file '{location}', which does not exist next to "
                         "the model")
    return target


def _type_name(tensor: onnx.TensorProto) -> str:
    try:
        return onnx.TensorProto.DataType.Name(tensor.data_type)
    except ValueError:
        return f"type {tensor.data_type}"


def declared_bytes(tensor: onnx.TensorProto, what: str, source: str) -> int | None:
    """The bytes of raw data ``tensor``'s type and shape declare (None for strings); a ModelError for a negative dim
    or an unknown type. Python integers: no overflow, however large the declared shape."""
    dims = [int(d) for d in tensor.dims]
    if any(d < 0 for d in dims):
        raise ModelError(f"{source}: {what} declares a negative dimension: shape {dims}")
    if tensor.data_type == onnx.TensorProto.STRING:
        return None
    count = math.prod(dims)
    bits = _PACKED_BITS.get(tensor.data_type)
    if bits is not None:
        return (count * bits + 7) // 8
    try:
        itemsize = np.dtype(helper.tensor_dtype_to_np_dtype(tensor.data_type)).itemsize
    except (KeyError, ValueError, TypeError):
        raise ModelError(f"{source}: {what} has an unknown element type ({tensor.data_type})") from None
    return count * itemsize


def tensor_array(tensor: onnx.TensorProto, source: str, what: str | None = None) -> np.ndarray:
    """``tensor``'s value as an array; data that does not fit the declared type and shape is a ModelError naming the
    tensor, its declared shape and the data present. Nothing of the declared size is allocated before the data is
    known to fill it (packed and typed data are counted first; raw data is only viewed, then reshaped)."""
    what = what or f"tensor '{tensor.name}'"
    if external_data_helper.uses_external_data(tensor):
        raise ModelError(f"{source}: {what} keeps its data in an external file that was not loaded")
    need = declared_bytes(tensor, what, source)
    if not _fits(tensor, need):
        raise ModelError(_misfit(tensor, what, source, need))
    try:
        return numpy_helper.to_array(tensor)
    except Exception as exc:
        raise ModelError(_misfit(tensor, what, source, need) + f" ({describe(exc)})") from None


def _fits(tensor: onnx.TensorProto, need: int | None) -> bool:
    """Whether the data present matches the declared size, where counting it is free: typed fields (O(1) lengths)
    and packed raw data (sub-byte types, rare and small). Plain raw data is checked by reshaping it."""
    if tensor.HasField("raw_data"):
        return tensor.data_type not in _PACKED_BITS or len(tensor.raw_data) == need
    count = math.prod(int(d) for d in tensor.dims)
    field_name = helper.tensor_dtype_to_field(tensor.data_type)
    if tensor.data_type in _PACKED_BITS:
        count = need
    elif tensor.data_type in _COMPLEX:
        count *= 2
    return len(getattr(tensor, field_name)) == count


def _misfit(tensor: onnx.TensorProto, what: str, source: str, need: int | None) -> str:
    if tensor.HasField("raw_data"):
        present = f"{len(tensor.raw_data)} bytes"
    else:
        present = f"{len(getattr(tensor, helper.tensor_dtype_to_field(tensor.data_type)))} stored values"
    declared = f"{need} bytes" if need is not None else "strings"
    return (f"{source}: {what} declares shape {list(tensor.dims)} of {_type_name(tensor)} ({declared}) but holds "
            f"{present}; the model file is damaged")


def save_model(model: onnx.ModelProto, path: str | os.PathLike) -> Path:
    """Save ``model`` to ``path`` (its folder is made when missing); models past protobuf's limit keep their weights in
    ``<name>.data`` next to the file. The file appears complete or not at all, and an existing symlink at ``path`` is
    replaced, never followed. A failed write is an :class:`OutputError` naming the path; folders this call made are
    removed again."""
    path = Path(path)
    made = _make_folder(path.parent, path)
    try:
        with FileGroup(path.parent) as files:
            written = files.path(path.name)
            if model.ByteSize() > EXTERNAL_DATA_THRESHOLD:
                onnx.save_model(model, str(written), save_as_external_data=True, all_tensors_to_one_file=True,
                                location=path.name + ".data", size_threshold=1024)
            else:
                onnx.save_model(model, str(written))
    except OSError as exc:
        _remove_folders(made)
        raise _output_error(exc, path) from None
    return path


def _make_folder(folder: Path, path: Path) -> list[Path]:
    """Make ``folder`` and its missing parents; returns those made, deepest first."""
    missing = []
    for parent in (folder, *folder.parents):
        if parent.exists() or parent.is_symlink():
            break
        missing.append(parent)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        _remove_folders(missing)
        raise _output_error(exc, path) from None
    return missing


def _remove_folders(folders: list[Path]) -> None:
    for folder in folders:
        with contextlib.suppress(OSError):
            folder.rmdir()


def _output_error(exc: OSError, path: Path) -> OutputError:
    if exc.errno is None:
        return OutputError(f"cannot write {path}: {exc}")
    return OutputError(exc.errno, exc.strerror or str(exc), str(path))


def serialise(model: onnx.ModelProto) -> bytes:
    """Bytes for an ONNX Runtime session (raises a clear error past protobuf's limit)."""
    if model.ByteSize() > EXTERNAL_DATA_THRESHOLD:
        raise ModelError("model is larger than 2 GB; save it with save_model() and open the file instead")
    return model.SerializeToString()


#: initializers at least this large travel to ONNX Runtime as OrtValues instead of inside the serialised model
EXTERNAL_MIN_BYTES = 1 << 20
#: the NumPy dtype kinds an OrtValue can be made from (not ml_dtypes' bfloat16 or float8, kind 'V': those stay in the
#: protobuf)
_ORT_KINDS = "biuf"
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
            if array.nbytes >= min_bytes and array.dtype.kind in _ORT_KINDS:
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
            if array is not None and array.nbytes >= min_bytes and array.dtype.kind in _ORT_KINDS:
                graph.initializer.append(external_reference(tensor.name, array))
                external[tensor.name] = array
            else:
                graph.initializer.append(tensor)
        return cls(skeleton, external)

    @classmethod
    def from_loaded(cls, model: onnx.ModelProto, source: str, min_bytes: int = EXTERNAL_MIN_BYTES) -> InMemoryModel:
        """``model`` with its initializers of at least ``min_bytes`` of a type an OrtValue can hold read into arrays
        (``tensor_array``: data that does not fit its declared shape is a ModelError naming the initializer) and the
        rest kept as they are.

        For memory: a parsed protobuf frees its memory only as a whole (its messages share one arena, which clearing a
        field does not shrink), so the weights are read once, here, and the caller drops ``model``; from then on the
        arrays are the only copy of the weights (not the protobuf and the arrays, then converted weights besides)."""
        arrays = {}
        for tensor in model.graph.initializer:
            what = f"initializer '{tensor.name}'"
            if not external_data_helper.uses_external_data(tensor) \
                    and (declared_bytes(tensor, what, source) or 0) >= min_bytes:
                array = tensor_array(tensor, source, what)
                if array.dtype.kind in _ORT_KINDS:
                    arrays[tensor.name] = array
        return cls.from_model(model, arrays, min_bytes)

    def full(self) -> onnx.ModelProto:
        model = onnx.ModelProto()
        model.CopyFrom(self.skeleton)
        for i, tensor in enumerate(model.graph.initializer):
            if tensor.name in self.external:
                model.graph.initializer[i].CopyFrom(numpy_helper.from_array(self.external[tensor.name], tensor.name))
        return model

