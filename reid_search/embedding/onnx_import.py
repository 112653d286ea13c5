"""Rebuild a small ONNX image network as a trainable Keras model (NCHW weights -> NHWC layers).

This is how a re-ID-pretrained start reaches the project's trainer: OSNet-x0.25's MSMT17
weights (torchreid, MIT) come as an ONNX file, and :func:`keras_from_onnx` turns its graph
into standard Keras layers (Conv2D / DepthwiseConv2D with explicit padding, pooling,
activations, gates, Dense, BatchNormalization) carrying the same weights, so the result
saves as an ordinary ``.keras`` file and fine-tunes like any tower. Batch norms that the
exporter folded into convolutions stay folded (convolutions with biases).

Only the operators of plain CNN re-ID exports are known; any other is a clear
:class:`OnnxImportError` naming it. Needs the ``onnx`` package (extra ``[onnx]``).

Usage::

    from reid_search.embedding.onnx_import import keras_from_onnx
    model = keras_from_onnx("../shared/peers/osnet_x0_25_msmt17.onnx")
    model.input_shape, model.output_shape
    # ((None, 256, 128, 3), (None, 512))
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError, require_extra


class OnnxImportError(InputError):
    """An ONNX graph that cannot be rebuilt in Keras (unknown operator, unsupported attribute,
    an input size its windows do not fit)."""


def require_onnx():
    """The ``onnx`` module, or a clear error naming the extra that provides it."""
    return require_extra("onnx", "onnx", "reading ONNX files")


class _Graph:
    """Values of the graph as Keras tensors, weights as numpy arrays, keyed by ONNX name."""

    def __init__(self, graph):
        from onnx import numpy_helper

        self.weights = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
        self.tensors: dict[str, Any] = {}
        self.constants: dict[str, np.ndarray] = {}
        self.used: set[str] = set()

    def layer_name(self, node) -> str:
        base = re.sub(r"[^A-Za-z0-9_.-]+", "_", node.output[0].strip("/")).strip("_") or node.op_type
        name, i = base, 1
        while name in self.used:
            i += 1
            name = f"{base}_{i}"
        self.used.add(name)
        return name


def _attrs(node) -> dict[str, Any]:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _check_window_fits(x, window: tuple[int, int], node) -> None:
    """Refuse a window larger than the feature map it slides over (the input size is too small)."""
    height, width = x.shape[1], x.shape[2]
    if height is not None and width is not None and (height < window[0] or width < window[1]):
        raise OnnxImportError(
            f"{node.op_type} {node.name}: its {window[0]}x{window[1]} window does not fit the "
            f"{height}x{width} feature map this input size leaves; give a larger --input-size"
        )


def _padding(layers, x, pads: list[int], name: str):
    """ONNX pads [top, left, bottom, right] as an explicit zero padding (Keras 'same' differs)."""
    if not any(pads):
        return x
    top, left, bottom, right = pads
    return layers.ZeroPadding2D(((top, bottom), (left, right)), name=f"{name}_pad")(x)


def _conv(g: _Graph, node, layers):
    a = _attrs(node)
    name = g.layer_name(node)
    if a.get("dilations", [1, 1]) != [1, 1]:
        raise OnnxImportError(f"Conv {node.name}: dilation is not supported")
    w = g.weights[node.input[1]]  # (out, in/groups, kh, kw)
    b = g.weights[node.input[2]] if len(node.input) > 2 else None
    x = _padding(layers, g.tensors[node.input[0]], a.get("pads", [0, 0, 0, 0]), name)
    out_ch, in_per_group, kh, kw = w.shape
    groups = a.get("group", 1)
    strides = tuple(a.get("strides", [1, 1]))
    _check_window_fits(x, (kh, kw), node)
    if groups > 1 and in_per_group == 1 and groups == out_ch:
        layer = layers.DepthwiseConv2D((kh, kw), strides, use_bias=b is not None, name=name)
        kernel = w.transpose(2, 3, 0, 1)  # (kh, kw, in, 1)
    else:
        layer = layers.Conv2D(out_ch, (kh, kw), strides, groups=groups, use_bias=b is not None, name=name)
        kernel = w.transpose(2, 3, 1, 0)  # (kh, kw, in/groups, out)
    y = layer(x)
    layer.set_weights([kernel] + ([b] if b is not None else []))
    return y


def _pool(kind: str):
    def build(g: _Graph, node, layers):
        a = _attrs(node)
        name = g.layer_name(node)
        if a.get("ceil_mode", 0):
            raise OnnxImportError(f"{node.op_type} {node.name}: ceil_mode is not supported")
        pads = a.get("pads", [0, 0, 0, 0])
        if kind == "avg" and any(pads):
            raise OnnxImportError(f"AveragePool {node.name}: padding is not supported")
        # zero padding equals -inf padding for max pooling of non-negative (post-ReLU) inputs
        x = _padding(layers, g.tensors[node.input[0]], pads, name)
        _check_window_fits(x, tuple(a["kernel_shape"]), node)
        cls = layers.MaxPooling2D if kind == "max" else layers.AveragePooling2D
        return cls(tuple(a["kernel_shape"]), tuple(a.get("strides", a["kernel_shape"])), name=name)(x)

    return build


def _activation(fn: str):
    def build(g: _Graph, node, layers):
        return layers.Activation(fn, name=g.layer_name(node))(g.tensors[node.input[0]])

    return build


def _merge(cls_name: str):
    def build(g: _Graph, node, layers):
        inputs = [g.tensors[i] for i in node.input]
        return getattr(layers, cls_name)(name=g.layer_name(node))(inputs)

    return build


def _global_avg(g: _Graph, node, layers):
    return layers.GlobalAveragePooling2D(keepdims=True, name=g.layer_name(node))(g.tensors[node.input[0]])


def _reshape(g: _Graph, node, layers):
    x = g.tensors[node.input[0]]
    if len(x.shape) == 4 and x.shape[1] == 1 and x.shape[2] == 1:
        return layers.Flatten(name=g.layer_name(node))(x)
    raise OnnxImportError(f"Reshape {node.name}: only flattening a pooled (N, C, 1, 1) tensor is supported")


def _gemm(g: _Graph, node, layers):
    a = _attrs(node)
    if a.get("transA", 0) or a.get("alpha", 1.0) != 1.0 or a.get("beta", 1.0) != 1.0:
        raise OnnxImportError(f"Gemm {node.name}: only x @ W^T + b is supported")
    w = g.weights[node.input[1]]
    kernel = w.T if a.get("transB", 0) else w
    b = g.weights[node.input[2]] if len(node.input) > 2 else None
    layer = layers.Dense(kernel.shape[1], use_bias=b is not None, name=g.layer_name(node))
    y = layer(g.tensors[node.input[0]])
    layer.set_weights([kernel] + ([b] if b is not None else []))
    return y


def _batch_norm(g: _Graph, node, layers):
    a = _attrs(node)
    gamma, beta, mean, var = (g.weights[i] for i in node.input[1:5])
    layer = layers.BatchNormalization(epsilon=a.get("epsilon", 1e-5), name=g.layer_name(node))
    y = layer(g.tensors[node.input[0]])
    layer.set_weights([gamma, beta, mean, var])
    return y


_SHAPE_OPS = {"Shape", "Gather", "Unsqueeze", "Concat", "Constant"}  # only feed Reshape's target shape

OPERATORS: dict[str, Callable] = {
    "Conv": _conv,
    "Relu": _activation("relu"),
    "Sigmoid": _activation("sigmoid"),
    "Add": _merge("Add"),
    "Mul": _merge("Multiply"),
    "GlobalAveragePool": _global_avg,
    "MaxPool": _pool("max"),
    "AveragePool": _pool("avg"),
    "Reshape": _reshape,
    "Flatten": _reshape,
    "Gemm": _gemm,
    "BatchNormalization": _batch_norm,
}


def onnx_input_size(path: str | Path) -> tuple[int, int]:
    """(height, width) of an NCHW ONNX image model's input."""
    onnx = require_onnx()
    dims = onnx.load(str(path), load_external_data=False).graph.input[0].type.tensor_type.shape.dim
    return int(dims[2].dim_value), int(dims[3].dim_value)


def keras_from_onnx(path: str | Path):
    """Rebuild the ONNX image network at ``path`` as a Keras model taking NHWC input."""
    import keras

    height, width = onnx_input_size(path)
    x = keras.Input((height, width, 3), name="nhwc")
    return keras.Model(x, onnx_graph_on(path, x), name=Path(path).stem.replace(".", "_"))


def onnx_graph_on(path: str | Path, x):
    """Apply the ONNX network at ``path`` to the NHWC Keras tensor ``x``; returns its output tensor.

    Lets the imported layers sit inside a larger functional model (a tower with its own
    normalisation and head) rather than as a nested model.
    """
    import keras

    onnx = require_onnx()
    try:
        model = onnx.load(str(path))
    except Exception as exc:  # protobuf raises several types for a bad file
        raise OnnxImportError(f"{path}: not a readable ONNX file ({type(exc).__name__})") from None
    graph = model.graph
    inputs = [i for i in graph.input if i.name not in {w.name for w in graph.initializer}]
    if len(inputs) != 1 or len(graph.output) != 1:
        raise OnnxImportError(f"{path}: expected one image input and one output")
    g = _Graph(graph)
    g.tensors[inputs[0].name] = x
    for node in graph.node:
        if node.op_type in _SHAPE_OPS:
            continue
        build = OPERATORS.get(node.op_type)
        if build is None:
            raise OnnxImportError(f"{path}: operator {node.op_type} ({node.name}) is not supported")
        g.tensors[node.output[0]] = build(g, node, keras.layers)
    return g.tensors[graph.output[0].name]
