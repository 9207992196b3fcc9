"""Ready ONNX exports: a directory with `model.onnx` (or `onnx/model.onnx`), `tokenizer.json` and
sentence-transformers' configs becomes a vecpipe model directory, for models no family converts.

The export's graph is kept as it is. Its token output (`last_hidden_state` or `token_embeddings`)
is renamed `token_embeddings`, and the chain the configs describe (pooling, Dense layers) is added
after it, as for a converted checkpoint, giving `sentence_embedding`; Normalize is the manifest
flag. An export with only a pooled `sentence_embedding` is used as it is. Inputs must be
`input_ids` and `attention_mask`, with `token_type_ids` optional: what vecpipe's batcher feeds.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from vecpipe import __version__
from vecpipe.core.errors import ModelError
from vecpipe.core.hashing import sha256_file
from vecpipe.core.models.checkpoint import check_dense_chain, load_tokenizer, read_json, read_module_chain
from vecpipe.core.models.graph import GraphBuilder, dense_head, pool, save_graph
from vecpipe.core.models.manifest import MANIFEST_VERSION, TOKENIZER_FILE, file_hashes, write_manifest

GRAPH_CANDIDATES = ("model.onnx", "onnx/model.onnx")
TOKEN_OUTPUTS = ("last_hidden_state", "token_embeddings")
REQUIRED_INPUTS = ("input_ids", "attention_mask")
OPTIONAL_INPUTS = ("token_type_ids",)


def export_graph(path: Path) -> Path | None:
    return next((path / c for c in GRAPH_CANDIDATES if (path / c).is_file()), None)


def is_onnx_export(path: Path) -> bool:
    return path.is_dir() and export_graph(path) is not None


def import_export(src: Path, out_dir: Path, name: str, source: dict | None = None) -> dict:
    """Write the vecpipe model directory for the ONNX export in `src` into `out_dir` (which must exist)."""
    import onnx
    from onnx import TensorProto, helper

    graph_path = export_graph(src)
    if graph_path is None:
        raise ModelError(f"no {' or '.join(GRAPH_CANDIDATES)}", str(src))
    if not (src / TOKENIZER_FILE).is_file():
        raise ModelError(f"missing {TOKENIZER_FILE}", str(src))
    try:
        model = onnx.load(str(graph_path))
    except Exception as exc:  # onnx raises protobuf's untyped errors for a cut or garbled file
        raise ModelError(f"not a readable ONNX graph ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})", str(graph_path)) from None
    inputs = _graph_inputs(model)
    if not set(REQUIRED_INPUTS) <= set(inputs) or not set(inputs) <= set(REQUIRED_INPUTS + OPTIONAL_INPUTS):
        raise ModelError(f"graph inputs are {', '.join(inputs) or 'none'}; vecpipe feeds input_ids, attention_mask and optionally token_type_ids",
                         str(graph_path))
    outputs = [o.name for o in model.graph.output]
    token_output = next((o for o in TOKEN_OUTPUTS if o in outputs), None)
    if token_output is None and "sentence_embedding" not in outputs:
        raise ModelError(f"graph outputs are {', '.join(outputs)}; expected last_hidden_state, token_embeddings or sentence_embedding",
                         str(graph_path))
    chain = read_module_chain(src)
    g = GraphBuilder(prefix="vecpipe/")
    if token_output is not None:
        _rename_tensor(model, "sentence_embedding", "export/sentence_embedding")  # vecpipe writes its own
        if token_output != "token_embeddings":
            g.nodes.append(helper.make_node("Identity", [token_output], ["token_embeddings"]))
        mask_f = g.op("Cast", ["attention_mask"], to=TensorProto.FLOAT)
        pooled = dense_head(g, pool(g, "token_embeddings", mask_f, chain.pooling), chain.dense)
        g.nodes.append(helper.make_node("Identity", [pooled], ["sentence_embedding"]))
        new_outputs = [helper.make_tensor_value_info("token_embeddings", TensorProto.FLOAT, None),
                       helper.make_tensor_value_info("sentence_embedding", TensorProto.FLOAT, None)]
    else:
        new_outputs = [helper.make_tensor_value_info("sentence_embedding", TensorProto.FLOAT, None)]
    model.graph.node.extend(g.nodes)
    model.graph.initializer.extend(g.initializers)
    del model.graph.output[:]
    model.graph.output.extend(new_outputs)
    save_graph(model, out_dir)
    shutil.copyfile(src / TOKENIZER_FILE, out_dir / TOKENIZER_FILE)
    hidden = _probe_width(out_dir, inputs)
    if token_output is not None:
        check_dense_chain(chain.dense, hidden, src)
    dim = int(chain.dense[-1].weight.shape[0]) if chain.dense and token_output is not None else hidden
    config = read_json(src / "config.json", required=False) or {}
    max_tokens = chain.declared_max_tokens or int(config.get("max_position_embeddings") or 512)
    manifest = {
        "format_version": MANIFEST_VERSION,
        "name": name,
        "source": source or {"kind": "onnx-export", "path": str(src)},
        "source_sha256": {graph_path.relative_to(src).as_posix(): sha256_file(graph_path), TOKENIZER_FILE: sha256_file(src / TOKENIZER_FILE)},
        "architecture": "onnx-export",
        "dim": dim,
        "pooling": chain.pooling,
        **({"dense": [layer.describe() for layer in chain.dense]} if chain.dense else {}),
        "normalize": chain.normalize,
        "max_tokens": max_tokens,
        "prompts": chain.prompts,
        "default_prompt": chain.default_prompt,
        "matryoshka_dims": None,
        "variant": "fp32",
        "graph": "export",
        "converter": f"vecpipe {__version__}",
        "files": file_hashes(out_dir),
    }
    write_manifest(out_dir, manifest)
    return manifest


def _graph_inputs(model) -> list[str]:
    constants = {init.name for init in model.graph.initializer}
    return [i.name for i in model.graph.input if i.name not in constants]


def _rename_tensor(model, old: str, new: str) -> None:
    for node in model.graph.node:
        node.input[:] = [new if name == old else name for name in node.input]
        node.output[:] = [new if name == old else name for name in node.output]


def _probe_width(out_dir: Path, inputs: list[str]) -> int:
    """The width of the graph's token (or sentence) vectors, found by running it on one short text."""
    import onnxruntime as ort

    from vecpipe.core.models.manifest import GRAPH_FILE

    ids = np.array([load_tokenizer(out_dir / TOKENIZER_FILE).encode("a").ids], dtype=np.int64)
    feed = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
    options = ort.SessionOptions()
    options.log_severity_level = 3
    try:
        session = ort.InferenceSession(str(out_dir / GRAPH_FILE), options, providers=["CPUExecutionProvider"])
        names = [o.name for o in session.get_outputs()]
        output = session.run([names[0]], {k: v for k, v in feed.items() if k in inputs})[0]
    except Exception as exc:  # onnxruntime's own untyped errors
        raise ModelError(f"onnxruntime cannot run the export ({str(exc).splitlines()[0]})", str(out_dir)) from None
    return int(output.shape[-1])
