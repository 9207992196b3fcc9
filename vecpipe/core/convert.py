"""Turn a sentence-transformers BERT-family checkpoint into an ONNX model directory, without torch.

The graph is written op by op with the `onnx` package from the safetensors weights. It
has two outputs: `token_embeddings` (the last hidden state) and `sentence_embedding`
(pooled as the checkpoint says, not normalized), so the common path copies only one
vector per text out of onnxruntime, while a `--pooling` override still has the tokens.
"""
from __future__ import annotations

import json
import math
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vecpipe import __version__
from vecpipe.core.errors import ModelError
from vecpipe.core.hashing import sha256_file

OPSET = 17
MANIFEST = "vecpipe.json"
MANIFEST_VERSION = 1
POOLINGS = ("mean", "cls", "max", "last")
# Poolings computed inside the graph; the others are applied to token_embeddings in numpy.
GRAPH_POOLINGS = ("mean", "cls")


@dataclass
class Checkpoint:
    """What the converter needs to know about a sentence-transformers checkpoint."""

    path: Path
    config: dict
    pooling: str
    normalize: bool
    max_tokens: int
    prompts: dict = field(default_factory=dict)
    default_prompt: str | None = None

    @property
    def num_layers(self) -> int:
        return int(self.config["num_hidden_layers"])


def _read_json(path: Path, required: bool = True) -> dict | list | None:
    if not path.exists():
        if required:
            raise ModelError("missing file", str(path))
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ModelError(f"not valid JSON ({exc})", str(path)) from None


def is_checkpoint_dir(path: Path) -> bool:
    return (path / "config.json").exists() and (path / "model.safetensors").exists()


def read_checkpoint(path: Path) -> Checkpoint:
    """Read the sentence-transformers json configs that decide pooling, length and prompts."""
    config = _read_json(path / "config.json")
    if config.get("model_type") not in ("bert", None) and "BertModel" not in config.get("architectures", []):
        raise ModelError(f"only BERT-family checkpoints can be converted, not {config.get('model_type')!r}", str(path))
    for f in ("model.safetensors", "tokenizer.json"):
        if not (path / f).exists():
            raise ModelError(f"missing {f}", str(path))
    modules = _read_json(path / "modules.json", required=False) or []
    pooling, normalize = "mean", False
    for module in modules:
        kind = module.get("type", "")
        if kind.endswith("Pooling"):
            pooling = _pooling_mode(_read_json(path / module.get("path", "") / "config.json"), path)
        elif kind.endswith("Normalize"):
            normalize = True
    st_config = _read_json(path / "sentence_bert_config.json", required=False) or {}
    max_tokens = int(st_config.get("max_seq_length") or config.get("max_position_embeddings", 512))
    prompts_config = _read_json(path / "config_sentence_transformers.json", required=False) or {}
    return Checkpoint(
        path=path,
        config=config,
        pooling=pooling,
        normalize=normalize,
        max_tokens=min(max_tokens, int(config.get("max_position_embeddings", max_tokens))),
        prompts=dict(prompts_config.get("prompts") or {}),
        default_prompt=prompts_config.get("default_prompt_name"),
    )


def _pooling_mode(pool_config: dict, path: Path) -> str:
    modes = {
        "mean": pool_config.get("pooling_mode_mean_tokens"),
        "cls": pool_config.get("pooling_mode_cls_token"),
        "max": pool_config.get("pooling_mode_max_tokens"),
        "last": pool_config.get("pooling_mode_lasttoken"),
    }
    chosen = [name for name, on in modes.items() if on]
    if len(chosen) != 1:
        raise ModelError(f"unsupported pooling configuration {pool_config}", str(path / "1_Pooling"))
    return chosen[0]


class _GraphBuilder:
    """Accumulates ONNX nodes and initializers with unique names."""

    def __init__(self):
        from onnx import helper

        self.helper = helper
        self.nodes = []
        self.initializers = []
        self._count = 0

    def name(self, hint: str) -> str:
        self._count += 1
        return f"{hint}_{self._count}"

    def const(self, hint: str, array: np.ndarray) -> str:
        from onnx import numpy_helper

        name = self.name(hint)
        self.initializers.append(numpy_helper.from_array(np.array(array, order="C"), name))
        return name

    def op(self, op_type: str, inputs: list[str], hint: str | None = None, **attrs) -> str:
        out = self.name(hint or op_type.lower())
        self.nodes.append(self.helper.make_node(op_type, inputs, [out], **attrs))
        return out


def _weights(path: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    try:
        raw = load_file(str(path / "model.safetensors"))
    except Exception as exc:  # safetensors raises its own untyped errors for cut or garbled files
        raise ModelError(f"model.safetensors is unreadable ({str(exc).splitlines()[0]})", str(path)) from None
    # Some checkpoints prefix every name with "bert."; others do not.
    return _Weights({k.removeprefix("bert."): v.astype(np.float32) if v.dtype != np.int64 else v for k, v in raw.items()}, path)


class _Weights(dict):
    """Tensors by name; one the checkpoint lacks is a ModelError naming it, not a KeyError traceback."""

    def __init__(self, tensors: dict, path: Path):
        super().__init__(tensors)
        self.path = path

    def __missing__(self, name: str):
        raise ModelError(f"model.safetensors has no tensor {name!r}", str(self.path))


def _linear(g: _GraphBuilder, x: str, w: dict, prefix: str) -> str:
    # torch stores Linear weights as (out, in); MatMul wants (in, out).
    y = g.op("MatMul", [x, g.const(prefix + ".w", w[prefix + ".weight"].T)])
    return g.op("Add", [y, g.const(prefix + ".b", w[prefix + ".bias"])])


def _layer_norm(g: _GraphBuilder, x: str, w: dict, prefix: str, eps: float) -> str:
    return g.op(
        "LayerNormalization",
        [x, g.const(prefix + ".gamma", w[prefix + ".weight"]), g.const(prefix + ".beta", w[prefix + ".bias"])],
        axis=-1,
        epsilon=eps,
    )


def _gelu(g: _GraphBuilder, x: str) -> str:
    # Exact (erf) GELU, as BERT's "gelu" activation; onnxruntime fuses this pattern into Gelu.
    scaled = g.op("Div", [x, g.const("sqrt2", np.array(math.sqrt(2.0), np.float32))])
    erf = g.op("Erf", [scaled])
    one_plus = g.op("Add", [erf, g.const("one", np.array(1.0, np.float32))])
    half_x = g.op("Mul", [x, g.const("half", np.array(0.5, np.float32))])
    return g.op("Mul", [half_x, one_plus])


def _attention(g: _GraphBuilder, x: str, mask_bias: str, w: dict, prefix: str, heads: int, hidden: int) -> str:
    head_dim = hidden // heads
    split = g.const("split_shape", np.array([0, 0, heads, head_dim], np.int64))

    def project(name: str, perm: list[int]) -> str:
        y = _linear(g, x, w, f"{prefix}.self.{name}")
        return g.op("Transpose", [g.op("Reshape", [y, split])], perm=perm)

    q = project("query", [0, 2, 1, 3])  # (B, heads, S, d)
    k = project("key", [0, 2, 3, 1])  # (B, heads, d, S)
    v = project("value", [0, 2, 1, 3])
    scores = g.op("MatMul", [q, k])
    scores = g.op("Div", [scores, g.const("sqrt_d", np.array(math.sqrt(head_dim), np.float32))])
    probs = g.op("Softmax", [g.op("Add", [scores, mask_bias])], axis=-1)
    context = g.op("Transpose", [g.op("MatMul", [probs, v])], perm=[0, 2, 1, 3])
    merged = g.op("Reshape", [context, g.const("merge_shape", np.array([0, 0, hidden], np.int64))])
    return _linear(g, merged, w, f"{prefix}.output.dense")


def _encoder_layer(g: _GraphBuilder, x: str, mask_bias: str, w: dict, i: int, cfg: dict) -> str:
    prefix = f"encoder.layer.{i}"
    eps = float(cfg.get("layer_norm_eps", 1e-12))
    attn = _attention(g, x, mask_bias, w, f"{prefix}.attention", int(cfg["num_attention_heads"]), int(cfg["hidden_size"]))
    x = _layer_norm(g, g.op("Add", [attn, x]), w, f"{prefix}.attention.output.LayerNorm", eps)
    inner = _gelu(g, _linear(g, x, w, f"{prefix}.intermediate.dense"))
    out = _linear(g, inner, w, f"{prefix}.output.dense")
    return _layer_norm(g, g.op("Add", [out, x]), w, f"{prefix}.output.LayerNorm", eps)


def _embeddings(g: _GraphBuilder, w: dict, cfg: dict) -> str:
    words = g.op("Gather", [g.const("word_embeddings", w["embeddings.word_embeddings.weight"]), "input_ids"])
    # Positions 0..S-1 are the first S rows of the position table.
    seq_len = g.op("Shape", ["input_ids"], start=1, end=2)
    zero = g.const("zero_1d", np.array([0], np.int64))
    pos = g.op("Slice", [g.const("position_embeddings", w["embeddings.position_embeddings.weight"]), zero, seq_len, zero])
    types = g.op("Gather", [g.const("token_type_embeddings", w["embeddings.token_type_embeddings.weight"]), "token_type_ids"])
    summed = g.op("Add", [g.op("Add", [words, pos]), types])
    return _layer_norm(g, summed, w, "embeddings.LayerNorm", float(cfg.get("layer_norm_eps", 1e-12)))


def _mask_bias(g: _GraphBuilder, mask_f: str) -> str:
    # (1 - mask) * large negative, shaped (B, 1, 1, S) to broadcast over heads and queries.
    inverted = g.op("Sub", [g.const("one_f", np.array(1.0, np.float32)), mask_f])
    bias = g.op("Mul", [inverted, g.const("neg", np.array(np.finfo(np.float32).min, np.float32))])
    return g.op("Unsqueeze", [bias, g.const("axes_1_2", np.array([1, 2], np.int64))])


def _pool(g: _GraphBuilder, tokens: str, mask_f: str, pooling: str) -> str:
    if pooling == "cls":
        return g.op("Gather", [tokens, g.const("zero_i", np.array(0, np.int64))], axis=1)
    # Masked mean as one batched MatMul: (B, 1, S) x (B, S, H) -> (B, 1, H).
    weights = g.op("Unsqueeze", [mask_f, g.const("axis_1", np.array([1], np.int64))])
    summed = g.op("Squeeze", [g.op("MatMul", [weights, tokens]), g.const("axis_1", np.array([1], np.int64))])
    counts = g.op("ReduceSum", [mask_f, g.const("axis_1", np.array([1], np.int64))], keepdims=1)
    counts = g.op("Max", [counts, g.const("min_count", np.array(1e-9, np.float32))])
    return g.op("Div", [summed, counts])


def build_graph(ckpt: Checkpoint, layers: int | None = None):
    """The ONNX ModelProto for `ckpt`, keeping only the first `layers` transformer layers."""
    from onnx import TensorProto, helper

    cfg = ckpt.config
    n_layers = ckpt.num_layers if layers is None else layers
    if not 1 <= n_layers <= ckpt.num_layers:
        raise ModelError(f"--layers must be between 1 and {ckpt.num_layers}, not {n_layers}", str(ckpt.path))
    w = _weights(ckpt.path)
    g = _GraphBuilder()
    mask_f = g.op("Cast", ["attention_mask"], to=TensorProto.FLOAT)
    mask_bias = _mask_bias(g, mask_f)
    x = _embeddings(g, w, cfg)
    for i in range(n_layers):
        x = _encoder_layer(g, x, mask_bias, w, i, cfg)
    g.nodes.append(helper.make_node("Identity", [x], ["token_embeddings"]))
    hidden = int(cfg["hidden_size"])
    outputs = [helper.make_tensor_value_info("token_embeddings", TensorProto.FLOAT, ["batch", "sequence", hidden])]
    if ckpt.pooling in GRAPH_POOLINGS:
        pooled = _pool(g, "token_embeddings", mask_f, ckpt.pooling)
        g.nodes.append(helper.make_node("Identity", [pooled], ["sentence_embedding"]))
        outputs.append(helper.make_tensor_value_info("sentence_embedding", TensorProto.FLOAT, ["batch", hidden]))
    inputs = [
        helper.make_tensor_value_info(name, TensorProto.INT64, ["batch", "sequence"])
        for name in ("input_ids", "attention_mask", "token_type_ids")
    ]
    graph = helper.make_graph(g.nodes, "vecpipe_bert", inputs, outputs, g.initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name=f"vecpipe {__version__}")
    model.ir_version = 8  # widely supported by onnxruntime releases
    return model


def convert(ckpt_path: Path, out_dir: Path, name: str, layers: int | None = None, source: dict | None = None) -> dict:
    """Write model.onnx, tokenizer.json and the manifest for `ckpt_path` into `out_dir` (which must exist)."""
    import onnx

    ckpt = read_checkpoint(ckpt_path)
    model = build_graph(ckpt, layers)
    onnx.save_model(model, str(out_dir / "model.onnx"))
    shutil.copyfile(ckpt_path / "tokenizer.json", out_dir / "tokenizer.json")
    manifest = {
        "format_version": MANIFEST_VERSION,
        "name": name,
        "source": source or {"kind": "sentence-transformers", "path": str(ckpt_path)},
        "source_sha256": {
            f: sha256_file(ckpt_path / f)
            for f in ("model.safetensors", "tokenizer.json", "config.json")
        },
        "architecture": "bert",
        "dim": int(ckpt.config["hidden_size"]),
        "pooling": ckpt.pooling,
        "normalize": ckpt.normalize,
        "max_tokens": ckpt.max_tokens,
        "prompts": ckpt.prompts,
        "default_prompt": ckpt.default_prompt,
        "matryoshka_dims": None,
        "num_layers": ckpt.num_layers,
        "max_position_embeddings": int(ckpt.config.get("max_position_embeddings", ckpt.max_tokens)),
        "layers": layers or ckpt.num_layers,
        "variant": "fp32",
        "converter": f"vecpipe {__version__}",
        "files": {f: sha256_file(out_dir / f) for f in ("model.onnx", "tokenizer.json")},
    }
    (out_dir / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return manifest
