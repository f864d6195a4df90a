"""int8 quantization of an ONNX model's convolutions (static) and LSTMs (dynamic), written out
here so that it is deterministic (onnxruntime's own tool writes other bytes in other versions).
CAM++ gets the first (campplus.py), the segmentation model the second (segmentation.py;
`quantize_lstms` at the end of this module).

Every Conv gets the QDQ pattern onnxruntime fuses into one int8 QLinearConv:

    x -> QuantizeLinear(uint8) -> DequantizeLinear -> Conv [-> Relu] -> QuantizeLinear
      -> DequantizeLinear
    W: int8, one scale per output channel (max |W| / 127, zero point 0)
    b: int32 at scale x_scale * W_scale

Activations are asymmetric uint8 over a range that includes 0, taken from `ranges`: the lowest and
highest value each Conv input and output took on calibration audio (`observed_ranges`; CAM++'s
are in campplus_ranges.py, written by scripts/calibrate_campplus.py). Everything between the
convolutions (ReLU, batch norms before a ReLU, pooling) stays float. One QuantizeLinear per
tensor and one DequantizeLinear per consumer, so each Conv's pattern is its own.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

Range = tuple[float, float]

WEIGHT_LEVELS = 127
"""int8 weights in [-127, 127]: symmetric, so the zero point is 0."""
ACTIVATION_LEVELS = 255
"""uint8 activations in [0, 255]."""


class QuantizationError(ValueError):
    """The model or the ranges can't be quantized as asked."""


def conv_activations(model: onnx.ModelProto) -> list[str]:
    """The tensors that need a range: every Conv's input and output, in graph order; for a Conv
    whose output goes to a ReLU only, the ReLU's output instead (onnxruntime then drops the
    ReLU: a uint8 zero point of 0 clamps as it does, and 0..max gets all 256 levels)."""
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    names: list[str] = []
    for node in model.graph.node:
        if node.op_type == "Conv":
            output = node.output[0]
            after = consumers.get(output, [])
            if len(after) == 1 and after[0].op_type == "Relu":
                output = after[0].output[0]
            for name in (node.input[0], output):
                if name not in names:
                    names.append(name)
    return names


def observed_ranges(
    model: onnx.ModelProto, feeds: Iterable[Mapping[str, np.ndarray]]
) -> dict[str, Range]:
    """(lowest, highest) value of each tensor `conv_activations` names, over `feeds`, by running
    the float model in onnxruntime with those tensors as extra outputs."""
    # Here only: the conversion itself (quantize_convs) is onnx and numpy, nothing that runs it.
    import onnxruntime as ort  # type: ignore[import-untyped]

    names = conv_activations(model)
    exposed = onnx.ModelProto()
    exposed.CopyFrom(model)
    outputs = {output.name for output in exposed.graph.output}
    exposed.graph.output.extend(
        helper.make_tensor_value_info(name, TensorProto.FLOAT, None)
        for name in names
        if name not in outputs
    )
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.log_severity_level = 3
    session = ort.InferenceSession(
        exposed.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    lows = dict.fromkeys(names, np.inf)
    highs = dict.fromkeys(names, -np.inf)
    for feed in feeds:
        for name, value in zip(names, session.run(names, dict(feed)), strict=True):
            lows[name] = min(lows[name], float(np.min(value)))
            highs[name] = max(highs[name], float(np.max(value)))
    if any(np.isinf(lows[name]) for name in names):
        raise QuantizationError("no calibration input: every Conv's range is unknown")
    return {name: (lows[name], highs[name]) for name in names}


def quantize_convs(model: onnx.ModelProto, ranges: Mapping[str, Range]) -> onnx.ModelProto:
    """A copy of `model` with every Conv in the QDQ pattern above (weights and bias as integer
    initializers); raises QuantizationError naming a tensor without a range, or a Conv whose
    weight or bias is not an initializer."""
    names = conv_activations(model)
    missing = [name for name in names if name not in ranges]
    if missing:
        raise QuantizationError(f"no range for {len(missing)} Conv tensors, first {missing[0]!r}")
    writer = _Writer(
        {tensor.name: tensor for tensor in model.graph.initializer},
        {name: _activation_params(*ranges[name]) for name in names},
    )
    made = {output for node in model.graph.node for output in node.output}
    for name in names:  # graph inputs; node outputs are quantized where they are made
        if name not in made:
            writer.quantize(name)
    for node in model.graph.node:
        writer.add(node)
    for output in model.graph.output:
        if output.name in writer.quantized:
            raise QuantizationError(f"graph output {output.name!r} is a Conv's input or output")

    used = {name for node in writer.nodes for name in node.input}
    out = onnx.ModelProto()
    out.CopyFrom(model)
    del out.graph.node[:]
    out.graph.node.extend(writer.nodes)
    del out.graph.initializer[:]
    out.graph.initializer.extend(t for t in model.graph.initializer if t.name in used)
    out.graph.initializer.extend(writer.initializers)
    onnx.checker.check_model(out)
    return out


def _activation_params(low: float, high: float) -> tuple[np.ndarray, np.ndarray]:
    """uint8 (scale, zero point) for a range, widened to include 0 (so that an exact zero, a
    convolution's padding, stays exact)."""
    low, high = min(float(low), 0.0), max(float(high), 0.0)
    scale = (high - low) / ACTIVATION_LEVELS if high > low else 1.0
    zero = np.uint8(np.clip(round(-low / scale), 0, ACTIVATION_LEVELS))
    return np.array(scale, dtype=np.float32), np.array(zero, dtype=np.uint8)


class _Writer:
    """The rewritten graph's nodes and new initializers, in order."""

    def __init__(
        self,
        initializers: Mapping[str, onnx.TensorProto],
        activation: Mapping[str, tuple[np.ndarray, np.ndarray]],
    ):
        self.originals = initializers
        self.activation = activation
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.quantized: dict[str, str] = {}
        """tensor -> its QuantizeLinear's output"""
        self._dequantized = 0

    def const(self, name: str, value: np.ndarray) -> str:
        # (np.ascontiguousarray would make a per-tensor scale [1] instead of a scalar)
        self.initializers.append(numpy_helper.from_array(np.array(value, order="C"), name))
        return name

    def quantize(self, tensor: str) -> None:
        scale, zero = self.activation[tensor]
        q = f"{tensor}_q"
        self.nodes.append(
            helper.make_node(
                "QuantizeLinear",
                [tensor, self.const(f"{q}_scale", scale), self.const(f"{q}_zero", zero)],
                [q],
                name=q,
            )
        )
        self.quantized[tensor] = q

    def dequantize(self, tensor: str) -> str:
        self._dequantized += 1
        q = self.quantized[tensor]
        out = f"{tensor}_dq{self._dequantized}"
        self.nodes.append(
            helper.make_node("DequantizeLinear", [q, f"{q}_scale", f"{q}_zero"], [out], name=out)
        )
        return out

    def add(self, node: onnx.NodeProto) -> None:
        """The node, its quantized inputs read through a DequantizeLinear of their own, its
        Conv constants as integers, its Conv outputs quantized."""
        inputs = [self.dequantize(name) if name in self.quantized else name for name in node.input]
        if node.op_type == "Conv":
            inputs[1:] = self._conv_constants(node)
        rebuilt = onnx.NodeProto()
        rebuilt.CopyFrom(node)
        del rebuilt.input[:]
        rebuilt.input.extend(inputs)
        self.nodes.append(rebuilt)
        for name in node.output:
            if name in self.activation and name not in self.quantized:
                self.quantize(name)

    def _conv_constants(self, node: onnx.NodeProto) -> list[str]:
        """The Conv's weight as int8 with a scale per output channel and its bias as int32,
        each through a DequantizeLinear; returns the Conv's new weight (and bias) inputs."""
        prefix = node.name or node.output[0]
        weight = self._initializer(node, 1, "weight")
        channels = weight.shape[0]
        peak = np.abs(weight.reshape(channels, -1)).max(axis=1)
        w_scale = np.where(peak > 0, peak / WEIGHT_LEVELS, 1.0).astype(np.float32)
        shape = (-1,) + (1,) * (weight.ndim - 1)
        w_int = np.round(weight / w_scale.astype(np.float64).reshape(shape))
        inputs = [
            self._dequantize_constant(
                f"{prefix}_w",
                np.clip(w_int, -WEIGHT_LEVELS, WEIGHT_LEVELS).astype(np.int8),
                w_scale,
            )
        ]
        if len(node.input) > 2 and node.input[2]:
            bias = self._initializer(node, 2, "bias")
            b_scale = (self.activation[node.input[0]][0] * w_scale).astype(np.float32)
            b_int = np.round(bias / b_scale.astype(np.float64)).astype(np.int32)
            inputs.append(self._dequantize_constant(f"{prefix}_b", b_int, b_scale))
        return inputs

    def _initializer(self, node: onnx.NodeProto, index: int, what: str) -> np.ndarray:
        name = node.input[index]
        if name not in self.originals:
            raise QuantizationError(f"Conv {node.name!r}: its {what} is not an initializer")
        return numpy_helper.to_array(self.originals[name]).astype(np.float64)

    def _dequantize_constant(self, prefix: str, values: np.ndarray, scale: np.ndarray) -> str:
        out = f"{prefix}_dq"
        self.nodes.append(
            helper.make_node(
                "DequantizeLinear",
                [
                    self.const(f"{prefix}_int", values),
                    self.const(f"{prefix}_scale", scale),
                    self.const(f"{prefix}_zero", np.zeros(len(scale), dtype=values.dtype)),
                ],
                [out],
                name=out,
                axis=0,
            )
        )
        return out


MS_DOMAIN = "com.microsoft"
"""onnxruntime's contrib operators (DynamicQuantizeLSTM)."""


def quantize_lstms(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of `model` with every LSTM as onnxruntime's DynamicQuantizeLSTM: its input and
    recurrent weights int8 (symmetric, one scale per gate row, zero point 0), transposed to
    [directions, inputs, 4 x hidden] as that operator takes them; the activations are
    quantized at run time, the bias and states stay float. What onnxruntime's dynamic
    quantizer writes for an LSTM, in numpy, so the bytes are the same in every version."""
    originals = {tensor.name: tensor for tensor in model.graph.initializer}
    nodes: list[onnx.NodeProto] = []
    added: list[onnx.TensorProto] = []
    for node in model.graph.node:
        if node.op_type != "LSTM":
            nodes.append(node)
            continue
        prefix = node.name or node.output[0]
        quantized: list[str] = []
        for index, what in ((1, "W"), (2, "R")):
            name = node.input[index]
            if name not in originals:
                raise QuantizationError(f"LSTM {node.name!r}: its {what} is not an initializer")
            weight = numpy_helper.to_array(originals[name]).astype(np.float64)
            peak = np.abs(weight).max(axis=2)  # [directions, 4 x hidden]
            scale = np.where(peak > 0, peak / WEIGHT_LEVELS, 1.0).astype(np.float32)
            ints = np.round(weight / scale.astype(np.float64)[:, :, None])
            ints = np.clip(ints, -WEIGHT_LEVELS, WEIGHT_LEVELS).astype(np.int8)
            for suffix, value in (
                ("int", np.ascontiguousarray(ints.transpose(0, 2, 1))),
                ("scale", scale),
                ("zero", np.zeros(scale.shape, dtype=np.int8)),
            ):
                added.append(numpy_helper.from_array(value, f"{prefix}_{what}_{suffix}"))
            quantized.append(f"{prefix}_{what}")
        inputs = [*node.input[:8], *[""] * (8 - len(node.input))]
        inputs[1:3] = [f"{q}_int" for q in quantized]
        for q in quantized:
            inputs += [f"{q}_scale", f"{q}_zero"]
        attributes = {
            a.name: helper.get_attribute_value(a) for a in node.attribute if a.name != "layout"
        }
        nodes.append(
            helper.make_node(
                "DynamicQuantizeLSTM",
                inputs,
                list(node.output),
                name=f"{prefix}_int8",
                domain=MS_DOMAIN,
                **attributes,
            )
        )
    used = {name for node in nodes for name in node.input}
    out = onnx.ModelProto()
    out.CopyFrom(model)
    del out.graph.node[:]
    out.graph.node.extend(nodes)
    del out.graph.initializer[:]
    out.graph.initializer.extend(t for t in model.graph.initializer if t.name in used)
    out.graph.initializer.extend(added)
    if not any(o.domain == MS_DOMAIN for o in out.opset_import):
        out.opset_import.append(helper.make_opsetid(MS_DOMAIN, 1))
    return out
