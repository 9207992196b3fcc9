"""Turn a sentence-transformers checkpoint into an ONNX model directory, without torch.

The graph is written op by op with the `onnx` package from the safetensors weights: the
family module (families/) writes the transformer body, then the chain sentence-transformers
lists in modules.json follows: pooling and any Dense layers in the graph, L2 normalization
(a manifest flag) after it. The graph has two outputs: `token_embeddings` (the last hidden
state) and `sentence_embedding` (pooled and through the Dense layers, not normalized), so
the common path copies one vector per text out of onnxruntime, while a `--pooling`
override still has the tokens.
"""
from __future__ import annotations

import shutil
from pathlib import Path

from vecpipe import __version__
from vecpipe.core.errors import ModelError
from vecpipe.core.hashing import sha256_file
from vecpipe.core.models.checkpoint import Checkpoint, load_safetensors, read_checkpoint
from vecpipe.core.models.families import family_for
from vecpipe.core.models.graph import MS_DOMAIN, OPSET, GraphBuilder, Weights, dense_head, pool, save_graph
from vecpipe.core.models.manifest import MANIFEST_VERSION, TOKENIZER_FILE, file_hashes, write_manifest
from vecpipe.core.models.static import convert_static, is_static_checkpoint, static_layout

# The checkpoint files whose sha256 the manifest records, in the order they are written.
SOURCE_FILES = ("model.safetensors", "tokenizer.json", "config.json")
GRAPH_FORMS = ("fused", "plain")
# Measured on this project's 2-core AVX2 CPU (bench/RESULTS.md): the plain graph, fused by
# onnxruntime's own optimizer at load, embeds 2-6% faster than the contrib ops written directly.
DEFAULT_GRAPH = "plain"


def build_graph(ckpt: Checkpoint, layers: int | None = None, graph_form: str = DEFAULT_GRAPH):
    """The ONNX ModelProto for `ckpt`, keeping only the first `layers` transformer layers."""
    family = family_for(ckpt.config, ckpt.path)
    if graph_form not in family.GRAPH_FORMS:
        raise ModelError(f"unknown graph form {graph_form!r}; choose one of {', '.join(family.GRAPH_FORMS)}")
    from onnx import TensorProto, helper

    n_layers = ckpt.num_layers if layers is None else layers
    if not 1 <= n_layers <= ckpt.num_layers:
        raise ModelError(f"--layers must be between 1 and {ckpt.num_layers}, not {n_layers}", str(ckpt.path))
    weights = Weights(family.tensor_names(load_safetensors(ckpt.path / "model.safetensors")), ckpt.path)
    g = GraphBuilder()
    mask_f = g.op("Cast", ["attention_mask"], to=TensorProto.FLOAT)
    x = family.body(g, weights, ckpt.config, mask_f, n_layers, graph_form)
    g.nodes.append(helper.make_node("Identity", [x], ["token_embeddings"]))
    pooled = dense_head(g, pool(g, "token_embeddings", mask_f, ckpt.pooling), ckpt.dense)
    g.nodes.append(helper.make_node("Identity", [pooled], ["sentence_embedding"]))
    outputs = [
        helper.make_tensor_value_info("token_embeddings", TensorProto.FLOAT, ["batch", "sequence", ckpt.hidden_size]),
        helper.make_tensor_value_info("sentence_embedding", TensorProto.FLOAT, ["batch", ckpt.dim]),
    ]
    inputs = [helper.make_tensor_value_info(name, TensorProto.INT64, ["batch", "sequence"]) for name in family.INPUTS]
    graph = helper.make_graph(g.nodes, f"vecpipe_{family.MODEL_TYPES[0]}", inputs, outputs, g.initializers)
    opsets = [helper.make_opsetid("", OPSET)]
    if graph_form == "fused":
        opsets.append(helper.make_opsetid(MS_DOMAIN, 1))
    model = helper.make_model(graph, opset_imports=opsets, producer_name=f"vecpipe {__version__}")
    model.ir_version = 8  # widely supported by onnxruntime releases
    return model


def source_weights(ckpt_path: Path) -> Path:
    """The weights file whose hash tells whether a cached conversion of `ckpt_path` is current."""
    layout = static_layout(ckpt_path)
    return layout.weights if layout is not None else ckpt_path / "model.safetensors"


def convert(
    ckpt_path: Path, out_dir: Path, name: str, layers: int | None = None, source: dict | None = None, graph_form: str = DEFAULT_GRAPH
) -> dict:
    """Write model.onnx, model.onnx.data, tokenizer.json and the manifest for `ckpt_path` into `out_dir` (which must exist);
    a static checkpoint's table instead of a graph (static.py)."""
    if is_static_checkpoint(ckpt_path):
        return convert_static(ckpt_path, out_dir, name, layers, source)
    ckpt = read_checkpoint(ckpt_path)
    save_graph(build_graph(ckpt, layers, graph_form), out_dir)
    shutil.copyfile(ckpt_path / TOKENIZER_FILE, out_dir / TOKENIZER_FILE)
    manifest = {
        "format_version": MANIFEST_VERSION,
        "name": name,
        "source": source or {"kind": "sentence-transformers", "path": str(ckpt_path)},
        "source_sha256": {f: sha256_file(ckpt_path / f) for f in SOURCE_FILES},
        "architecture": family_for(ckpt.config, ckpt.path).MODEL_TYPES[0],
        "dim": ckpt.dim,
        "pooling": ckpt.pooling,
        **({"dense": [layer.describe() for layer in ckpt.dense]} if ckpt.dense else {}),
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
        "files": file_hashes(out_dir),
    }
    write_manifest(out_dir, manifest)
    return manifest
