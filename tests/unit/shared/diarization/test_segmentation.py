"""The segmentation model's rewrite on a small graph of the same build: an `If` around the first
1-D Conv, then 1-D Convs with strides, dilations, padding and a bias. The rewritten graph must
compute what the original computes; the real model is held to its published scores in
tests/integration/test_speaker_models.py."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort  # type: ignore[import-untyped]
import pytest
from onnx import TensorProto, helper, numpy_helper

from shared.diarization.segmentation import convert

RNG = np.random.default_rng(7)


def _weights(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


def _published_like(then_branch_ops: int = 1) -> bytes:
    """input [B, 1, T] -> If(rank == 3: Conv k9 stride 3) -> Abs -> Conv k3 dilation 2 pads 2
    with a bias -> output [B, 4, T']."""
    first = numpy_helper.from_array(_weights(6, 1, 9), "first_kernel")
    second = numpy_helper.from_array(_weights(4, 6, 3), "second_kernel")
    bias = numpy_helper.from_array(_weights(4), "second_bias")
    rank = numpy_helper.from_array(np.array(3, dtype=np.int64), "three")

    def branch(name: str, ops: int) -> onnx.GraphProto:
        nodes = [
            helper.make_node(
                "Conv", ["input", "first_kernel"], ["conv0"], strides=[3], kernel_shape=[9]
            )
        ]
        if ops > 1:
            nodes.append(helper.make_node("Relu", ["conv0"], ["relu0"]))
        out = nodes[-1].output[0]
        return helper.make_graph(
            nodes, name, [], [helper.make_tensor_value_info(out, TensorProto.FLOAT, ["B", 6, "T1"])]
        )

    nodes = [
        helper.make_node("Shape", ["input"], ["shape"]),
        helper.make_node("Size", ["shape"], ["rank"]),
        helper.make_node("Equal", ["rank", "three"], ["is_batched"]),
        helper.make_node(
            "If",
            ["is_batched"],
            ["branched"],
            name="If_1",
            then_branch=branch("then", then_branch_ops),
            else_branch=branch("else", 1),
        ),
        helper.make_node("Abs", ["branched"], ["abs"]),
        helper.make_node(
            "Conv",
            ["abs", "second_kernel", "second_bias"],
            ["output"],
            name="second",
            dilations=[2],
            pads=[2, 2],
            kernel_shape=[3],
        ),
    ]
    graph = helper.make_graph(
        nodes,
        "published_like",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["B", 1, "T"])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["B", 4, "T2"])],
        [first, second, bias, rank],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    serialized: bytes = model.SerializeToString()
    return serialized


def _run(model: bytes, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    (out,) = session.run(["output"], {"input": x})
    return np.asarray(out)


def test_rewritten_graph_computes_what_the_original_computes() -> None:
    published = _published_like()
    rewritten = convert(published)
    x = RNG.standard_normal((3, 1, 301)).astype(np.float32)
    expected = _run(published, x)
    assert expected.shape == (3, 4, 98)  # (301 - 9) // 3 + 1 frames
    np.testing.assert_allclose(_run(rewritten, x), expected, rtol=1e-5, atol=1e-5)


def test_rewrite_leaves_no_branch_and_only_2d_convolutions() -> None:
    model = onnx.load_from_string(convert(_published_like()))
    ops = [node.op_type for node in model.graph.node]
    assert "If" not in ops
    convs = [node for node in model.graph.node if node.op_type == "Conv"]
    assert len(convs) == 2
    for conv in convs:
        attrs = {a.name: helper.get_attribute_value(a) for a in conv.attribute}
        assert len(attrs["kernel_shape"]) == 2 and attrs["kernel_shape"][0] == 1
        assert len(attrs["pads"]) == 4 and attrs["pads"][0] == attrs["pads"][2] == 0


def test_rewrite_is_deterministic_and_refuses_its_own_output() -> None:
    published = _published_like()
    once = convert(published)
    assert convert(published) == once
    with pytest.raises(ValueError, match="already rewritten"):
        convert(once)


def test_an_if_that_is_not_one_conv_is_refused() -> None:
    with pytest.raises(ValueError, match="not one Conv"):
        convert(_published_like(then_branch_ops=2))
