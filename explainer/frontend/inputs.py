"""The model's inputs and output: which input receives relevance, its per-sample shape and layout (NCHW or NHWC for
images, NC for feature vectors, NCW for 1-D signals, NCDHW for volumes, "tokens" for token ids read through an
embedding ``Gather``), which inputs are fixed feeds (an attention mask, token types, a second image: fed as given,
never receiving relevance), the opset, and which output is explained."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import onnx

from explainer.errors import InputError, ModelError
from explainer.frontend.heads import skip_heads
from explainer.limits import check_tensor

#: the names of ONNX's default operator domain
DEFAULT_DOMAINS = ("", "ai.onnx")


@dataclass(frozen=True)
class PinnedInput:
    """The input: its name, per-sample shape (every dim static) and layout."""

    name: str
    shape: tuple[int, ...]
    layout: str

    @property
    def batch_shape(self) -> tuple[int, ...]:
        """The full shape at batch size 1, at which the front end folds and infers shapes."""
        return (1, *self.shape)


@dataclass(frozen=True)
class Feed:
    """One input of the model as the emitted graphs take it: name, per-sample shape, ONNX element type."""

    name: str
    shape: tuple[int, ...]
    elem_type: int

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(onnx.helper.tensor_dtype_to_np_dtype(self.elem_type))


@dataclass(frozen=True)
class Inputs:
    """What the model takes and where relevance is taken. ``explained`` is the float tensor that receives relevance:
    the explained input itself, or, for token ids, the output of the embedding ``Gather`` that reads them
    (``token_input`` names the ids, ``embedding`` the table). ``feeds`` are every model input the emitted graphs take,
    the explained one first."""

    explained: PinnedInput
    feeds: tuple[Feed, ...]
    token_input: str | None = None
    embedding: str | None = None
    also: tuple[PinnedInput, ...] = ()
    """further float inputs that receive relevance together with ``explained`` (their feeds follow its)"""

    @property
    def fixed(self) -> tuple[Feed, ...]:
        """The inputs fed as given that receive no relevance."""
        explained = {self.token_input or self.explained.name, *(p.name for p in self.also)}
        return tuple(f for f in self.feeds if f.name not in explained)


_FLOATS = (onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE, onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16)
_INTS = (onnx.TensorProto.INT64, onnx.TensorProto.INT32)


def pin_inputs(model: onnx.ModelProto, source: str, input_shape: tuple[int, ...] | None = None,
               name: str | Sequence[str] | None = None) -> Inputs:
    """The explained input (``name``, or by default the one float input, else the one integer input that feeds an
    embedding ``Gather``: token ids) with its static per-sample shape, and every other input as a fixed feed with
    its own (dynamic dims other than the batch axis taken from the explained input's dim of the same name). Several
    names: the first as above, the others float inputs that receive relevance too (``Inputs.also``)."""
    inputs = model_inputs(model, source)
    names = [name] if name is None or isinstance(name, str) else list(name)
    if name is not None and (not names or not all(isinstance(n, str) for n in names) or len(set(names)) != len(names)):
        raise InputError(f"input must be the name of one of the model's inputs (or a list of distinct names), got "
                         f"{name!r}")
    by_name = {vi.name: vi for vi in inputs}
    for wanted in names:
        if wanted is not None and wanted not in by_name:
            raise InputError(f"{source}: the model has no input '{wanted}'; its inputs are {_listed(inputs)}")
    name, more = names[0], names[1:]
    if len(inputs) == 1 and name is None and inputs[0].type.tensor_type.elem_type not in _INTS:
        pinned = pin_input(model, source, input_shape)
        return Inputs(pinned, (Feed(pinned.name, pinned.shape, onnx.TensorProto.FLOAT),))
    embeddings = embedding_lookups(model)
    if name is None:
        floats = [vi.name for vi in inputs if vi.type.tensor_type.elem_type in _FLOATS]
        tokens = [vi.name for vi in inputs if vi.name in embeddings]
        if len(tokens) > 1:  # token ids beside token types or positions: the lookup with the largest vocabulary
            rows = sorted((embeddings[t][1][0] for t in tokens), reverse=True)
            tokens = [t for t in tokens if embeddings[t][1][0] == rows[0]] if rows[0] > rows[1] else tokens
        candidates = [inputs[0].name] if len(inputs) == 1 else floats or tokens
        if len(candidates) != 1:
            raise InputError(f"{source}: the model has {len(inputs)} inputs ({_listed(inputs)}); name the one that "
                             "receives relevance (input= / --input NAME); the others are fed as given")
        name = candidates[0]
    vi = by_name[name]
    elem = vi.type.tensor_type.elem_type
    if elem in _INTS:
        if name not in embeddings:
            error = InputError if len(inputs) > 1 else ModelError
            raise error(f"{source}: input '{name}' holds integers ({onnx.TensorProto.DataType.Name(elem)}) "
                        "and feeds no embedding lookup (a Gather from a float table); relevance needs a float "
                        "input or token ids")
        node, table = embeddings[name]
        ids_shape = resolve_input_shape(vi, source, input_shape, integer=True)
        rows, dim = table
        shape = (*ids_shape[1:], dim)
        explained = PinnedInput(node.output[0], tuple(int(d) for d in shape), "tokens")
        check_tensor(explained.batch_shape, f"{source}: the embedding of input '{name}' (one sample)")
        first = Feed(name, tuple(int(d) for d in ids_shape[1:]), elem)
        token_input, embedding = name, node.input[0]
    else:
        shape = resolve_input_shape(vi, source, input_shape)
        explained = PinnedInput(vi.name, tuple(int(d) for d in shape[1:]), detect_layout(model, vi, shape))
        check_tensor(explained.batch_shape, f"{source}: the model's input '{vi.name}' (one sample)")
        first = Feed(name, explained.shape, onnx.TensorProto.FLOAT)
        token_input = embedding = None
    named = _dim_names(vi, first.shape)
    also = tuple(_also_explained(model, by_name[other], named, source) for other in more)
    fixed = tuple(_fixed_feed(other, named, source) for other in inputs
                  if other.name != name and other.name not in more)
    return Inputs(explained, (first, *(Feed(p.name, p.shape, onnx.TensorProto.FLOAT) for p in also), *fixed),
                  token_input, embedding, also)


def _also_explained(model: onnx.ModelProto, vi: onnx.ValueInfoProto, named: dict[str, int],
                    source: str) -> PinnedInput:
    """A further input that receives relevance: a float input, pinned like a fixed one."""
    if vi.type.tensor_type.elem_type != onnx.TensorProto.FLOAT:
        raise InputError(f"{source}: input '{vi.name}' cannot receive relevance beside the first one: only the first "
                         "named input may be token ids, the others must be float32")
    feed = _fixed_feed(vi, named, source)
    pinned = PinnedInput(vi.name, feed.shape, detect_layout(model, vi, (None, *feed.shape)))
    check_tensor(pinned.batch_shape, f"{source}: the model's input '{vi.name}' (one sample)")
    return pinned


def is_attention_mask(name: str) -> bool:
    """Whether the companion input ``name`` is an attention mask (1 for a real token, 0 for padding): a name with
    'mask', as exporters name it (attention_mask, input_mask)."""
    return "mask" in name.lower()


def companion_default(name: str) -> str | None:
    """What a text model's companion input is when it is not given, as tokenizers have it: an attention mask (a name
    with 'mask') 'all ones', token types (a name with 'token_type' or 'segment') 'all zeros', position ids
    'positions 0..T-1'; None for any other input (it must be given)."""
    lowered = name.lower()
    if is_attention_mask(name):
        return "all ones"
    if "token_type" in lowered or "segment" in lowered:
        return "all zeros"
    if "position" in lowered:
        return "positions 0..T-1"
    return None


def model_inputs(model: onnx.ModelProto, source: str) -> list[onnx.ValueInfoProto]:
    """The model's inputs that are not initializers (at least one)."""
    inits = {t.name for t in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in inits]
    if not inputs:
        raise ModelError(f"{source}: the model has no inputs")
    return inputs


def embedding_lookups(model: onnx.ModelProto) -> dict[str, tuple[onnx.NodeProto, tuple[int, int]]]:
    """Integer inputs read as the indices of a ``Gather`` (axis 0) from a float initializer [rows, dim]: input name
    -> (that Gather, (rows, dim)). An input read by several such Gathers (tied tables) is left out."""
    tables = {t.name: tuple(t.dims) for t in model.graph.initializer
              if t.data_type in (onnx.TensorProto.FLOAT,) and len(t.dims) == 2}
    found: dict[str, list] = {}
    for node in model.graph.node:
        if node.op_type == "Gather" and node.domain in DEFAULT_DOMAINS and len(node.input) == 2 \
                and node.input[0] in tables and all(a.i == 0 for a in node.attribute if a.name == "axis"):
            found.setdefault(node.input[1], []).append((node, tables[node.input[0]]))
    return {name: hits[0] for name, hits in found.items() if len(hits) == 1}


def _dim_names(vi: onnx.ValueInfoProto, shape: tuple[int, ...]) -> dict[str, int]:
    """Named dynamic dims of ``vi`` (after the batch axis) -> their pinned values."""
    dims = vi.type.tensor_type.shape.dim if vi.type.tensor_type.HasField("shape") else []
    return {d.dim_param: int(v) for d, v in zip(list(dims)[1:], shape) if d.dim_param}


def _fixed_feed(vi: onnx.ValueInfoProto, named: dict[str, int], source: str) -> Feed:
    """A fixed feed's per-sample shape: static dims as declared, named dynamic dims as the explained input's."""
    ttype = vi.type.tensor_type
    if not ttype.HasField("shape") or len(ttype.shape.dim) < 1:
        raise ModelError(f"{source}: input '{vi.name}' has no shape with a batch axis; it cannot be fed beside the "
                         "explained input")
    dims = []
    for i, d in enumerate(list(ttype.shape.dim)[1:], start=1):
        if d.HasField("dim_value") and d.dim_value > 0:
            dims.append(int(d.dim_value))
        elif d.dim_param in named:
            dims.append(named[d.dim_param])
        else:
            raise InputError(f"{source}: fixed input '{vi.name}' has a dynamic dim {i} "
                             f"('{d.dim_param or '?'}') that the explained input does not share; export the model "
                             "with that dim static")
    return Feed(vi.name, tuple(dims), ttype.elem_type)


def _listed(inputs: list[onnx.ValueInfoProto]) -> str:
    return ", ".join(f"'{i.name}'" for i in inputs)


def pin_input(model: onnx.ModelProto, source: str, input_shape: tuple[int, ...] | None = None) -> PinnedInput:
    """The single float input with every non-batch dim static (dynamic ones filled from ``input_shape``). An input
    too large to allocate (see ``explainer.limits``) is refused with the figure before anything is allocated."""
    vi = image_input(model, source)
    shape = resolve_input_shape(vi, source, input_shape)
    pinned = PinnedInput(vi.name, tuple(int(d) for d in shape[1:]), detect_layout(model, vi, shape))
    check_tensor(pinned.batch_shape, f"{source}: the model's input '{vi.name}' (one sample)")
    return pinned


def model_opset(model: onnx.ModelProto) -> int:
    """The model's default-domain opset (1 when it imports none)."""
    for imp in model.opset_import:
        if imp.domain in DEFAULT_DOMAINS:
            return int(imp.version)
    return 1


def image_input(model: onnx.ModelProto, source: str) -> onnx.ValueInfoProto:
    """The model's single non-initializer input, as image commands feed it (error naming what was found otherwise,
    and how a model with several inputs is explained)."""
    inits = {t.name for t in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in inits]
    if not inputs:
        raise ModelError(f"{source}: the model has no inputs")
    if len(inputs) > 1:
        names = ", ".join(f"'{i.name}'" for i in inputs)
        raise ModelError(f"{source}: the model has {len(inputs)} inputs ({names}); images are fed to a model with "
                         "one input: name the one that receives relevance with --input and give its samples as a "
                         ".npy file, the others with --fixed NAME=FILE.npy")
    return inputs[0]


def resolve_input_shape(vi: onnx.ValueInfoProto, source: str,
                        input_shape: tuple[int, ...] | None, *, integer: bool = False) -> tuple[int | None, ...]:
    """The input's shape with the batch axis as None, filling dynamic dims from ``input_shape``. A declared dim of 0 or
    less is invalid (an empty axis; ONNX Runtime refuses every input for it), not dynamic. ``integer``: token ids
    (rank 2 and up, integer elements) rather than a float input."""
    ttype = vi.type.tensor_type
    if not integer and ttype.elem_type != onnx.TensorProto.FLOAT:
        raise ModelError(f"{source}: input '{vi.name}' has element type "
                         f"{onnx.TensorProto.DataType.Name(ttype.elem_type)}; relevance is computed for float32 "
                         "inputs only")
    given = None if input_shape is None else _check_input_shape(input_shape, source)
    if not ttype.HasField("shape"):
        if given is None:
            raise InputError(f"{source}: input '{vi.name}' has no shape; pass input_shape (per sample, e.g. (C, H, W), "
                             "(C, L) or (F,))")
        return (None, *given)
    dims = [d.dim_value if d.HasField("dim_value") else None for d in ttype.shape.dim]
    rank = len(dims)
    if rank < 2:
        raise ModelError(f"{source}: input '{vi.name}' has rank {rank}; expected a batch axis and at least one more "
                         "(features [N, F], signals [N, C, L], images [N, C, H, W])")
    invalid = [(i, d) for i, d in enumerate(dims) if d is not None and d <= 0]
    if invalid:
        listed = ", ".join(f"dim {i} = {d}" for i, d in invalid)
        raise ModelError(f"{source}: input '{vi.name}' declares {listed} (shape {_shown(dims)}); a dim must be at "
                         "least 1 (a dynamic dim has no value, or a name)")
    if given is not None:
        if len(given) == rank:
            given = given[1:]
        if len(given) != rank - 1:
            raise InputError(f"{source}: input_shape {tuple(input_shape)} does not fit input '{vi.name}' of rank "
                             f"{rank}")
        for i, (have, want) in enumerate(zip(dims[1:], given), start=1):
            if have is not None and have != want:
                raise InputError(f"{source}: input_shape {tuple(input_shape)} conflicts with the model's fixed dim "
                                 f"{i} = {have} of input '{vi.name}'")
            dims[i] = want
    missing = [i for i, d in enumerate(dims[1:], start=1) if d is None]
    if missing:
        raise InputError(f"{source}: input '{vi.name}' has dynamic dims {missing} "
                         f"(shape {_shown(dims)}); pass input_shape / --size")
    return (None, *dims[1:])


def _check_input_shape(input_shape: object, source: str) -> tuple[int, ...]:
    """``input_shape`` as a tuple of positive ints (InputError otherwise)."""
    try:
        dims = tuple(input_shape)
    except TypeError:
        dims = None
    if not dims or not all(isinstance(d, (int, np.integer)) and not isinstance(d, bool) and d > 0 for d in dims):
        raise InputError(f"{source}: input_shape must be a sequence of positive integers, got {input_shape!r}")
    return tuple(int(d) for d in dims)


def _shown(dims: list[int | None]) -> list[int | str]:
    return [d if d is not None else "?" for d in dims]


_PASS_THROUGH = {"Cast", "Identity", "Sub", "Div", "Mul", "Add"}


def detect_layout(model: onnx.ModelProto, vi: onnx.ValueInfoProto, shape: tuple[int | None, ...]) -> str:
    """'NCHW' or 'NHWC' for rank-4 inputs (from the first Transpose/Conv that reads the input, else the dims);
    'NC' + spatial letters otherwise."""
    if len(shape) != 4:
        return "NC" if len(shape) == 2 else "NC" + "DHW"[-(len(shape) - 2):]
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    frontier, seen = [vi.name], set()
    while frontier:
        name = frontier.pop(0)
        if name in seen:
            continue
        seen.add(name)
        for node in consumers.get(name, []):
            if node.op_type == "Transpose":
                perm = [a.ints for a in node.attribute if a.name == "perm"]
                if perm and list(perm[0]) == [0, 3, 1, 2]:
                    return "NHWC"
            elif node.op_type in ("Conv", "MaxPool", "AveragePool", "BatchNormalization"):
                return "NCHW"
            elif node.op_type in _PASS_THROUGH:
                frontier.extend(node.output)
    c_first, c_last = shape[1], shape[3]
    if c_last in (1, 3, 4) and c_first not in (1, 3, 4):
        return "NHWC"
    return "NCHW"


def output_names(model: onnx.ModelProto) -> list[str]:
    """The model's outputs, by name, in order."""
    return [o.name for o in model.graph.output]


def select_output(model: onnx.ModelProto, output: str | None, source: str) -> list[str]:
    """Make ``output`` (default: the first) the model's only output, and take the final Sigmoid/Softmax/LogSoftmax
    heads before it out (also behind reshapes, flattens, casts and concatenations: ``heads.skip_heads``), so that a
    multi-label head is explained from its pre-sigmoid logits and a classifier from its pre-softmax ones. Changes
    ``model`` in place (pass a copy the caller owns); returns what it changed, in words. A name the model has no
    output of is an InputError listing the outputs there are."""
    names = output_names(model)
    if output is not None and not isinstance(output, str):
        raise InputError(f"output must be the name of one of the model's outputs, got {output!r}")
    if not names:
        return []  # canonicalise says the model has no outputs
    if output is None:
        output = names[0]
    elif output not in names:
        listed = ", ".join(f"'{n}'" for n in names)
        raise InputError(f"{source}: the model has no output '{output}'; its outputs are {listed}")
    changes = []
    if len(names) > 1:
        kept = next(o for o in model.graph.output if o.name == output)
        chosen = onnx.ValueInfoProto()
        chosen.CopyFrom(kept)
        del model.graph.output[:]
        model.graph.output.append(chosen)
        changes.append(f"explained output '{output}' (of {len(names)}: {', '.join(names)})")
    return changes + skip_heads(model, output)
