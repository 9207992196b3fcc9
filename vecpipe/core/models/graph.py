"""Building blocks of the ONNX graphs vecpipe writes: a node builder, shared layers, pooling and the Dense head.

A family module (families/) writes the transformer body with these; convert.py adds the
pooling and the checkpoint's Dense layers after it, the same for every family.
"""
from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from vecpipe.core.models.manifest import GRAPH_FILE, WEIGHTS_FILE

OPSET = 17
MS_DOMAIN = "com.microsoft"


class GraphBuilder:
    """Accumulates ONNX nodes and initializers with unique names."""

    def __init__(self, prefix: str = ""):
        from onnx import helper

        self.helper = helper
        self.nodes = []
        self.initializers = []
        self._count = 0
        self._prefix = prefix  # keeps names apart from those of a graph the nodes are added to

    def name(self, hint: str) -> str:
        self._count += 1
        return f"{self._prefix}{hint}_{self._count}"

    def const(self, hint: str, array: np.ndarray) -> str:
        from onnx import numpy_helper

        name = self.name(hint)
        self.initializers.append(numpy_helper.from_array(np.array(array, order="C"), name))
        return name

    def op(self, op_type: str, inputs: list[str], hint: str | None = None, **attrs) -> str:
        return self.op_n(op_type, inputs, 1, hint, **attrs)[0]

    def op_n(self, op_type: str, inputs: list[str], n_outputs: int, hint: str | None = None, **attrs) -> list[str]:
        """A node with `n_outputs` outputs (contrib ops such as EmbedLayerNormalization have several)."""
        outs = [self.name(hint or op_type.lower()) for _ in range(n_outputs)]
        # Named after its first output, so tools (quantization's node lists) can address it.
        self.nodes.append(self.helper.make_node(op_type, inputs, outs, name=outs[0], **attrs))
        return outs

    def ms(self, op_type: str, inputs: list[str], n_outputs: int = 1, **attrs) -> list[str]:
        """An onnxruntime contrib op (com.microsoft domain)."""
        return self.op_n(op_type, inputs, n_outputs, domain=MS_DOMAIN, **attrs)


class Weights(dict):
    """Tensors by name; one the checkpoint lacks is a ModelError naming it, not a KeyError traceback."""

    def __init__(self, tensors: dict, path: Path):
        super().__init__(tensors)
        self.path = path

    def __missing__(self, name: str):
        from vecpipe.core.errors import ModelError

        raise ModelError(f"model.safetensors has no tensor {name!r}", str(self.path))


def linear(g: GraphBuilder, x: str, w: dict, prefix: str) -> str:
    # torch stores Linear weights as (out, in); MatMul wants (in, out).
    y = g.op("MatMul", [x, g.const(prefix + ".w", w[prefix + ".weight"].T)])
    return g.op("Add", [y, g.const(prefix + ".b", w[prefix + ".bias"])])


def layer_norm(g: GraphBuilder, x: str, w: dict, prefix: str, eps: float) -> str:
    return g.op(
        "LayerNormalization",
        [x, g.const(prefix + ".gamma", w[prefix + ".weight"]), g.const(prefix + ".beta", w[prefix + ".bias"])],
        axis=-1,
        epsilon=eps,
    )


def gelu(g: GraphBuilder, x: str) -> str:
    # Exact (erf) GELU, as BERT's "gelu" activation; onnxruntime fuses this pattern into Gelu.
    scaled = g.op("Div", [x, g.const("sqrt2", np.array(math.sqrt(2.0), np.float32))])
    erf = g.op("Erf", [scaled])
    one_plus = g.op("Add", [erf, g.const("one", np.array(1.0, np.float32))])
    half_x = g.op("Mul", [x, g.const("half", np.array(0.5, np.float32))])
    return g.op("Mul", [half_x, one_plus])


def padding_mask_bias(g: GraphBuilder, mask_f: str) -> str:
    """(1 - mask) * large negative, shaped (B, 1, 1, S) to broadcast over heads and queries."""
    inverted = g.op("Sub", [g.const("one_f", np.array(1.0, np.float32)), mask_f])
    bias = g.op("Mul", [inverted, g.const("neg", np.array(np.finfo(np.float32).min, np.float32))])
    return g.op("Unsqueeze", [bias, g.const("axes_1_2", np.array([1, 2], np.int64))])


def pool(g: GraphBuilder, tokens: str, mask_f: str, pooling: str) -> str:
    """The pooled (B, H) sentence vector of (B, S, H) token embeddings under a (B, S) float mask."""
    if pooling == "cls":
        return g.op("Gather", [tokens, g.const("zero_i", np.array(0, np.int64))], axis=1)
    if pooling == "max":
        keep = g.op("Unsqueeze", [g.op("Cast", [mask_f], to=9), g.const("axis_2", np.array([2], np.int64))])  # 9: BOOL
        masked = g.op("Where", [keep, tokens, g.const("minus_big", np.array(-1e9, np.float32))])
        return g.op("ReduceMax", [masked], axes=[1], keepdims=0)
    if pooling == "last":
        return _last_token(g, tokens, mask_f)
    # Masked mean as one batched MatMul: (B, 1, S) x (B, S, H) -> (B, 1, H).
    weights = g.op("Unsqueeze", [mask_f, g.const("axis_1", np.array([1], np.int64))])
    summed = g.op("Squeeze", [g.op("MatMul", [weights, tokens]), g.const("axis_1", np.array([1], np.int64))])
    counts = g.op("ReduceSum", [mask_f, g.const("axis_1", np.array([1], np.int64))], keepdims=1)
    counts = g.op("Max", [counts, g.const("min_count", np.array(1e-9, np.float32))])
    return g.op("Div", [summed, counts])


def _last_token(g: GraphBuilder, tokens: str, mask_f: str) -> str:
    """The token at the last unmasked position of each row: right or left padding alike."""
    from onnx import TensorProto

    one = g.const("one_i", np.array(1, np.int64))
    seq_len = g.op("Squeeze", [g.op("Shape", [mask_f], start=1, end=2)])
    positions = g.op("Range", [one, g.op("Add", [seq_len, one]), one])  # 1..S
    weighted = g.op("Mul", [mask_f, g.op("Cast", [positions], to=TensorProto.FLOAT)])
    last = g.op("ArgMax", [weighted], axis=1, keepdims=1)  # (B, 1)
    index = g.op("Unsqueeze", [last, g.const("axis_2", np.array([2], np.int64))])  # (B, 1, 1)
    hidden = g.op("Shape", [tokens], start=2, end=3)
    batch = g.op("Shape", [tokens], start=0, end=1)
    one_1d = g.const("one_1d", np.array([1], np.int64))
    index = g.op("Expand", [index, g.op("Concat", [batch, one_1d, hidden], axis=0)])
    picked = g.op("GatherElements", [tokens, index], axis=1)
    return g.op("Squeeze", [picked, g.const("axis_1", np.array([1], np.int64))])


def dense_head(g: GraphBuilder, x: str, layers: list) -> str:
    """sentence-transformers Dense modules in order, each y = activation(x W^T + b)."""
    for i, layer in enumerate(layers):
        x = g.op("MatMul", [x, g.const(f"dense{i}.w", layer.weight.T)])
        if layer.bias is not None:
            x = g.op("Add", [x, g.const(f"dense{i}.b", layer.bias)])
        if layer.activation == "tanh":
            x = g.op("Tanh", [x])
    return x


def save_graph(model, out_dir: Path) -> None:
    """Write model.onnx (the graph, with its small constants) and model.onnx.data (every tensor of 1 KB or more) into `out_dir`.

    Small constants such as Reshape shapes and ReduceSum axes stay inline, where onnxruntime's
    shape inference can read them.
    """
    import onnx
    from onnx.external_data_helper import convert_model_to_external_data

    convert_model_to_external_data(model, all_tensors_to_one_file=True, location=WEIGHTS_FILE)
    onnx.save_model(model, str(out_dir / GRAPH_FILE))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(out_dir / WEIGHTS_FILE, 0o666 & ~umask)  # onnx creates it 0600; honour the umask like every other file
