"""Turn a sentence-transformers BERT-family checkpoint into an ONNX model directory, without torch.

The graph is written op by op with the `onnx` package from the safetensors weights. It
has two outputs: `token_embeddings` (the last hidden state) and `sentence_embedding`
(pooled as the checkpoint says, not normalized), so the common path copies only one
vector per text out of onnxruntime, while a `--pooling` override still has the tokens.

Two graph forms are written from the same weights:
- "plain" (the default): standard ONNX ops only, the reference the parity tests check;
- "fused": onnxruntime's CPU contrib ops (com.microsoft domain): EmbedLayerNormalization,
  Attention with one packed QKV weight, SkipLayerNormalization with the dense bias folded
  in, and BiasGelu (erf GELU, the exact BERT activation). ORT's optimizer never fuses the
  attention of a torch export of this model; writing the fused ops directly does.
The fused graph assumes right padding (every mask row is ones then zeros), which is what
vecpipe's batcher feeds: EmbedLayerNormalization turns the mask into per-row lengths.
On this project's AVX2 CPU the fused form measured slower than the plain one as onnxruntime
optimizes it (see DEFAULT_GRAPH); it stays for CPUs and inputs where it may win.
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
GRAPH_FILE = "model.onnx"
# The weights live beside the graph: onnxruntime maps this file instead of parsing 90 MB of
# protobuf, which took a session 150 ms to open rather than 55 ms (every process start pays it).
WEIGHTS_FILE = "model.onnx.data"
MODEL_DIR_FILES = (GRAPH_FILE, WEIGHTS_FILE, "tokenizer.json")
MANIFEST_VERSION = 1
POOLINGS = ("mean", "cls", "max", "last")
# Poolings computed inside the graph; the others are applied to token_embeddings in numpy.
GRAPH_POOLINGS = ("mean", "cls")
GRAPH_FORMS = ("fused", "plain")
# Measured on this project's 2-core AVX2 CPU (bench/RESULTS.md): the plain graph, fused by
# onnxruntime's own optimizer at load, embeds 2-6% faster than the contrib ops written directly.
DEFAULT_GRAPH = "plain"
MS_DOMAIN = "com.microsoft"


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
        return self.op_n(op_type, inputs, 1, hint, **attrs)[0]

    def op_n(self, op_type: str, inputs: list[str], n_outputs: int, hint: str | None = None, **attrs) -> list[str]:
        """A node with `n_outputs` outputs (contrib ops such as EmbedLayerNormalization have several)."""
        outs = [self.name(hint or op_type.lower()) for _ in range(n_outputs)]
        # Named after its first output, so tools (quantization's node lists) can address it.
        self.nodes.append(self.helper.make_node(op_type, inputs, outs, name=outs[0], **attrs))
        return outs


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


# -- fused form: onnxruntime contrib ops ---------------------------------------------


def _ms(g: _GraphBuilder, op_type: str, inputs: list[str], n_outputs: int = 1, **attrs) -> list[str]:
    return g.op_n(op_type, inputs, n_outputs, domain=MS_DOMAIN, **attrs)


def _fused_embeddings(g: _GraphBuilder, w: dict, cfg: dict) -> tuple[str, str]:
    """Embedding sum + LayerNorm in one op; also gives each row's length for Attention."""
    from onnx import TensorProto

    ids, types, mask = (g.op("Cast", [name], to=TensorProto.INT32) for name in ("input_ids", "token_type_ids", "attention_mask"))
    tables = [
        g.const(name, w[f"embeddings.{name}.weight"])
        for name in ("word_embeddings", "position_embeddings", "token_type_embeddings")
    ]
    gamma = g.const("embeddings.gamma", w["embeddings.LayerNorm.weight"])
    beta = g.const("embeddings.beta", w["embeddings.LayerNorm.bias"])
    x, lengths = _ms(g, "EmbedLayerNormalization", [ids, types, *tables, gamma, beta, mask], 2, epsilon=float(cfg.get("layer_norm_eps", 1e-12)))
    return x, lengths


def _skip_layer_norm(g: _GraphBuilder, x: str, skip: str, w: dict, dense: str, norm: str, eps: float) -> str:
    """LayerNorm(x + dense.bias + skip): the dense layer's bias add rides along in the fused op."""
    inputs = [x, skip, g.const(norm + ".gamma", w[norm + ".weight"]), g.const(norm + ".beta", w[norm + ".bias"]), g.const(dense + ".b", w[dense + ".bias"])]
    return _ms(g, "SkipLayerNormalization", inputs, epsilon=eps)[0]


def _fused_encoder_layer(g: _GraphBuilder, x: str, lengths: str, w: dict, i: int, cfg: dict) -> str:
    prefix = f"encoder.layer.{i}"
    eps = float(cfg.get("layer_norm_eps", 1e-12))
    heads = int(cfg["num_attention_heads"])
    names = [f"{prefix}.attention.self.{n}" for n in ("query", "key", "value")]
    # One (hidden, 3*hidden) GEMM for Q, K and V instead of three.
    qkv_w = g.const(prefix + ".qkv.w", np.concatenate([w[n + ".weight"].T for n in names], axis=1))
    qkv_b = g.const(prefix + ".qkv.b", np.concatenate([w[n + ".bias"] for n in names]))
    context = _ms(g, "Attention", [x, qkv_w, qkv_b, lengths], num_heads=heads)[0]
    attn_dense = f"{prefix}.attention.output.dense"
    projected = g.op("MatMul", [context, g.const(attn_dense + ".w", w[attn_dense + ".weight"].T)])
    x = _skip_layer_norm(g, projected, x, w, attn_dense, f"{prefix}.attention.output.LayerNorm", eps)
    inner_dense = f"{prefix}.intermediate.dense"
    inner = g.op("MatMul", [x, g.const(inner_dense + ".w", w[inner_dense + ".weight"].T)])
    inner = _ms(g, "BiasGelu", [inner, g.const(inner_dense + ".b", w[inner_dense + ".bias"])])[0]
    out_dense = f"{prefix}.output.dense"
    out = g.op("MatMul", [inner, g.const(out_dense + ".w", w[out_dense + ".weight"].T)])
    return _skip_layer_norm(g, out, x, w, out_dense, f"{prefix}.output.LayerNorm", eps)


def _plain_encoder(g: _GraphBuilder, w: dict, cfg: dict, mask_f: str, n_layers: int) -> str:
    x = _embeddings(g, w, cfg)
    mask_bias = _mask_bias(g, mask_f)
    for i in range(n_layers):
        x = _encoder_layer(g, x, mask_bias, w, i, cfg)
    return x


def _fused_encoder(g: _GraphBuilder, w: dict, cfg: dict, n_layers: int) -> str:
    x, lengths = _fused_embeddings(g, w, cfg)
    for i in range(n_layers):
        x = _fused_encoder_layer(g, x, lengths, w, i, cfg)
    return x


def build_graph(ckpt: Checkpoint, layers: int | None = None, graph_form: str = DEFAULT_GRAPH):
    """The ONNX ModelProto for `ckpt`, keeping only the first `layers` transformer layers."""
    if graph_form not in GRAPH_FORMS:
        raise ModelError(f"unknown graph form {graph_form!r}; choose one of {', '.join(GRAPH_FORMS)}")
    from onnx import TensorProto, helper

    cfg = ckpt.config
    n_layers = ckpt.num_layers if layers is None else layers
    if not 1 <= n_layers <= ckpt.num_layers:
        raise ModelError(f"--layers must be between 1 and {ckpt.num_layers}, not {n_layers}", str(ckpt.path))
    w = _weights(ckpt.path)
    g = _GraphBuilder()
    mask_f = g.op("Cast", ["attention_mask"], to=TensorProto.FLOAT)
    x = _fused_encoder(g, w, cfg, n_layers) if graph_form == "fused" else _plain_encoder(g, w, cfg, mask_f, n_layers)
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
    opsets = [helper.make_opsetid("", OPSET)]
    if graph_form == "fused":
        opsets.append(helper.make_opsetid(MS_DOMAIN, 1))
    model = helper.make_model(graph, opset_imports=opsets, producer_name=f"vecpipe {__version__}")
    model.ir_version = 8  # widely supported by onnxruntime releases
    return model


def save_graph(model, out_dir: Path) -> None:
    """Write model.onnx (the graph, with its small constants) and model.onnx.data (every tensor of 1 KB or more) into `out_dir`.

    Small constants such as Reshape shapes and ReduceSum axes stay inline, where onnxruntime's
    shape inference can read them.
    """
    import os

    import onnx
    from onnx.external_data_helper import convert_model_to_external_data

    convert_model_to_external_data(model, all_tensors_to_one_file=True, location=WEIGHTS_FILE)
    onnx.save_model(model, str(out_dir / GRAPH_FILE))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(out_dir / WEIGHTS_FILE, 0o666 & ~umask)  # onnx creates it 0600; honour the umask like every other file


def convert(
    ckpt_path: Path, out_dir: Path, name: str, layers: int | None = None, source: dict | None = None, graph_form: str = DEFAULT_GRAPH
) -> dict:
    """Write model.onnx, model.onnx.data, tokenizer.json and the manifest for `ckpt_path` into `out_dir` (which must exist)."""
    ckpt = read_checkpoint(ckpt_path)
    save_graph(build_graph(ckpt, layers, graph_form), out_dir)
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
        "graph": graph_form,
        "converter": f"vecpipe {__version__}",
        "files": {f: sha256_file(out_dir / f) for f in MODEL_DIR_FILES},
    }
    (out_dir / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return manifest
