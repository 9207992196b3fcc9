"""Optimized variants of a converted model: `vecpipe models optimize MODEL --int8`.

A variant is a full model directory (model.onnx, tokenizer.json, vecpipe.json) derived
from a base model directory. Its manifest keeps the base's settings and adds:
- `variant`: the variant's name ("int8");
- `name`: `<base name>:<variant>`, so vector provenance names the variant and `search`
  re-resolves the same variant for its queries;
- `base`: the base's name and manifest sha256, so a stale cached variant is rebuilt when
  its base changes;
- `quantization`: how the weights were quantized, for reproduction.

int8 replaces every MatMul with a constant weight by onnxruntime's DynamicQuantizeMatMul
and, in a fused base graph, Attention by DynamicQuantizeLinear + QAttention: int8 weights with one scale
per output column, uint8 activations with one scale per tensor, found at run time.
Two measured problems shape it:

- Saturation. Without AVX-512 VNNI (this project's 2-core AMD EPYC has AVX2 only), MLAS
  multiplies uint8 x int8 with vpmaddubsw, which adds the two products of each pair of
  rows (2i, 2i+1) into an int16 and saturates above 32767: 255 * (127 + 127) does not
  fit. onnxruntime's quantize_dynamic output lost up to 0.02 of cosine to it. Here every
  column's scale is chosen so that no same-sign pair of quantized weights sums past 128
  (255 * 128 fits), so no input can saturate, on any CPU. (reduce_range, onnxruntime's
  remedy, spends a whole bit of every weight on it instead.)
- Outlier channels. BERT's LayerNorm and GELU outputs carry a few channels 5-15x larger
  than the rest (channel 99 of this model's LayerNorms reaches ~30 where the 99.9th
  percentile is ~6), and one uint8 scale per tensor then spends its 256 levels on them.
  Those channels are divided down to the 95th percentile of the channel maxima seen on a
  few calibration texts, and the matching weight rows multiplied up, which leaves the fp32
  result unchanged. Only ever dividing keeps a channel that was quiet in calibration from
  blowing up the range on real text, which full SmoothQuant (also multiplying quiet
  channels up) did here.

See bench/RESULTS.md ("embed throughput") for speed and the alternatives that were measured.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from vecpipe import __version__
from vecpipe.core.errors import ModelError
from vecpipe.core.models.graph import MS_DOMAIN, save_graph
from vecpipe.core.models.manifest import GRAPH_FILE, file_hashes, manifest_sha256, read_manifest, write_manifest

VARIANTS = ("int8",)
# Bumped when the int8 graph is made differently: a cached variant made by another recipe is made again.
# 2: each MatMul's bias is added inside DynamicQuantizeMatMul, not by an Add after it.
QUANTIZATION_RECIPE = 2
QUANTIZED_OPS = ("MatMul", "Attention")
# Channel maxima above this percentile of all the tensor's channel maxima are divided down to it
# (95 of 75, 80, 90, 95: best minimum cosine, mean within 0.0004 of the best; see bench/RESULTS.md).
SMOOTHING_PERCENTILE = 95


def variant_name(base_name: str, variant: str) -> str:
    return f"{base_name}:{variant}"


def split_variant(name: str) -> tuple[str, str | None]:
    """("all-MiniLM-L6-v2", "int8") for "all-MiniLM-L6-v2:int8"; (name, None) when no known variant ends it."""
    base, sep, suffix = name.rpartition(":")
    if sep and base and suffix in VARIANTS:
        return base, suffix
    return name, None


def make_variant(base_dir: Path, out_dir: Path, variant: str, calibration: list[str] | None = None) -> dict:
    """Write the `variant` of the model in `base_dir` into `out_dir` (which must exist); return its manifest."""
    if variant not in VARIANTS:
        raise ModelError(f"unknown variant {variant!r}; choose one of {', '.join(VARIANTS)}")
    base = read_manifest(base_dir)
    if base.get("variant", "fp32") != "fp32":
        raise ModelError(f"{base['name']} is already an optimized variant; optimize its fp32 base instead", str(base_dir))
    if base.get("architecture") == "static":
        raise ModelError(f"{base['name']} is a static table, no network to quantize; `vecpipe quantize` shrinks its vectors instead", str(base_dir))
    quantization = quantize_int8(base_dir, out_dir, calibration)
    shutil.copyfile(base_dir / "tokenizer.json", out_dir / "tokenizer.json")
    manifest = {
        **base,
        "name": variant_name(base["name"], variant),
        "variant": variant,
        "base": {"name": base["name"], "manifest_sha256": manifest_sha256(base_dir)},
        "quantization": quantization,
        "converter": f"vecpipe {__version__}",
        "files": file_hashes(out_dir),
    }
    write_manifest(out_dir, manifest)
    return manifest


def quantize_int8(base_dir: Path, out_dir: Path, calibration: list[str] | None = None) -> dict:
    """Smooth outlier channels, then write the int8 graph into `out_dir`; return what was done, for the manifest."""
    import onnx

    from vecpipe.core.models.calibration import CALIBRATION_TEXTS
    from vecpipe.core.hashing import sha256_bytes

    texts = list(calibration) if calibration else list(CALIBRATION_TEXTS)
    model = onnx.load(str(base_dir / GRAPH_FILE))
    targets = quantized_inputs(model)
    maxima = activation_maxima(model, list(targets), base_dir / "tokenizer.json", texts, int(read_manifest(base_dir)["max_tokens"]))
    scales = {name: outlier_scales(channel_max) for name, channel_max in maxima.items()}
    smooth_outliers(model, targets, scales)
    quantize_nodes(model)
    save_graph(model, out_dir)
    return {
        "recipe": QUANTIZATION_RECIPE,
        "method": "dynamic int8: weights int8 per output column (pair sums <= 128, no saturation), activations uint8 per tensor",
        "ops": ["MatMul -> DynamicQuantizeMatMul", "Attention -> QAttention"],
        "outlier_smoothing": {"percentile": SMOOTHING_PERCENTILE, "channels": sum(int((s > 1).sum()) for s in scales.values())},
        "calibration_texts": len(texts),
        "calibration_sha256": sha256_bytes("\n".join(texts).encode("utf-8")),
    }


def quantized_inputs(model) -> dict[str, list]:
    """Activation tensor -> the MatMul/Attention nodes that multiply it by a constant weight."""
    constants = {init.name for init in model.graph.initializer}
    consumers: dict[str, list] = {}
    for node in model.graph.node:
        if node.op_type in QUANTIZED_OPS and len(node.input) > 1 and node.input[1] in constants:
            consumers.setdefault(node.input[0], []).append(node)
    return consumers


def activation_maxima(model, tensors: list[str], tokenizer_path: Path, texts: list[str], max_tokens: int) -> dict[str, np.ndarray]:
    """Per-channel max |x| of each tensor over `texts`, run one text at a time (no padding to skew it)."""
    import onnxruntime as ort
    from onnx import TensorProto, helper
    from vecpipe.core.models.checkpoint import load_tokenizer

    probe = type(model)()
    probe.CopyFrom(model)
    probe.graph.output.extend(helper.make_tensor_value_info(t, TensorProto.FLOAT, None) for t in tensors)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(probe.SerializeToString(), options, providers=["CPUExecutionProvider"])
    tokenizer = load_tokenizer(tokenizer_path)
    # The tokenizer.json of sentence-transformers checkpoints pads to 128: calibrating on
    # attended [PAD] tokens would measure the wrong activations.
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_tokens)
    inputs = {i.name for i in session.get_inputs()}
    maxima: dict[str, np.ndarray] = {}
    for text in texts:
        ids = np.array([tokenizer.encode(text).ids], dtype=np.int64)
        feed = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
        feed = {name: value for name, value in feed.items() if name in inputs}  # families without token types
        for name, value in zip(tensors, session.run(tensors, feed)):
            channel_max = np.abs(value.reshape(-1, value.shape[-1])).max(axis=0)
            maxima[name] = np.maximum(maxima[name], channel_max) if name in maxima else channel_max
    return maxima


def outlier_scales(channel_max: np.ndarray) -> np.ndarray:
    """Divisors (>= 1) that bring each channel's max down to the tensor's 95th percentile of channel maxima."""
    ceiling = max(float(np.percentile(channel_max, SMOOTHING_PERCENTILE)), 1e-6)
    return np.maximum(1.0, channel_max / ceiling).astype(np.float32)


def smooth_outliers(model, targets: dict[str, list], scales: dict[str, np.ndarray]) -> None:
    """x @ W == (x / s) @ (s * W): divide each tensor's channels by `s` and multiply its consumers' weight rows.

    The output of a fused Attention is divided for free, through the value columns of its
    packed QKV weight (attention mixes tokens, never channels); any other tensor gets a Mul.
    """
    from onnx import helper, numpy_helper

    constants = {init.name: init for init in model.graph.initializer}
    producers = {node.output[0]: node for node in model.graph.node}
    divided_by_mul: dict[str, np.ndarray] = {}
    for name, nodes in targets.items():
        s = scales[name]
        if not (s > 1).any():
            continue
        producer = producers.get(name)
        if producer is None:
            raise ModelError(f"cannot smooth {name!r}: it is a graph input, not computed by the graph")
        for node in nodes:
            _scale_constant(constants[node.input[1]], s[:, None])
        if producer.op_type == "Attention" and producer.input[1] in constants:
            _divide_attention_values(constants[producer.input[1]], constants[producer.input[2]], s)
        else:
            divided_by_mul[name] = s
    nodes = []
    for node in model.graph.node:
        if node.op_type in QUANTIZED_OPS and node.input[0] in divided_by_mul:
            node.input[0] = node.input[0] + "_smoothed"
        nodes.append(node)
        for out in node.output:
            if out in divided_by_mul:
                model.graph.initializer.append(numpy_helper.from_array(1.0 / divided_by_mul[out], out + "_inverse_scale"))
                nodes.append(helper.make_node("Mul", [out, out + "_inverse_scale"], [out + "_smoothed"], name=out + "_smooth"))
    del model.graph.node[:]
    model.graph.node.extend(nodes)


def _scale_constant(init, factor: np.ndarray) -> None:
    from onnx import numpy_helper

    init.CopyFrom(numpy_helper.from_array((numpy_helper.to_array(init) * factor).astype(np.float32), init.name))


def _divide_attention_values(weight, bias, s: np.ndarray) -> None:
    """Divide the V projection's output channels (the last third of the packed QKV columns) by `s`."""
    hidden = len(s)
    factor = np.ones(3 * hidden, dtype=np.float32)
    factor[2 * hidden :] = 1.0 / s
    _scale_constant(weight, factor[None, :])
    _scale_constant(bias, factor)


def quantize_weight(weight: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric int8 weights, one scale per column, with |q[2i] + q[2i+1]| <= 128 for same-sign pairs.

    vpmaddubsw adds a[2i]*q[2i] + a[2i+1]*q[2i+1] into an int16; with uint8 a <= 255, a pair
    whose same-sign magnitudes sum to at most 128 can never pass 32767.
    """
    rows, cols = weight.shape
    paired = np.zeros((rows + rows % 2, cols), dtype=np.float64)
    paired[:rows] = weight
    positive = np.maximum(paired, 0)
    negative = np.maximum(-paired, 0)
    pair_sum = np.maximum(positive[0::2] + positive[1::2], negative[0::2] + negative[1::2]).max(axis=0)
    scale = np.maximum(np.abs(weight).max(axis=0) / 127.0, pair_sum / 128.0)
    scale[scale == 0] = 1.0
    q = np.clip(np.round(paired / scale), -127, 127)
    _fix_rounded_pairs(q)
    return q[:rows].astype(np.int8), scale.astype(np.float32)


def _fix_rounded_pairs(q: np.ndarray) -> None:
    """Rounding can lift a same-sign pair from 128 to 129 or 130; step the larger one back toward zero."""
    for _ in range(2):
        first, second = q[0::2], q[1::2]
        over = (np.abs(first + second) > 128) & (np.sign(first) == np.sign(second))
        if not over.any():
            return
        first_larger = np.abs(first) >= np.abs(second)
        first -= np.where(over & first_larger, np.sign(first), 0)
        second -= np.where(over & ~first_larger, np.sign(second), 0)


def quantize_nodes(model) -> None:
    """MatMul -> DynamicQuantizeMatMul and Attention -> DynamicQuantizeLinear + QAttention, where the weight is constant."""
    from onnx import numpy_helper

    constants = {init.name: init for init in model.graph.initializer}
    nodes = []
    for node in model.graph.node:
        if node.op_type not in QUANTIZED_OPS or len(node.input) < 2 or node.input[1] not in constants:
            nodes.append(node)
            continue
        init = constants[node.input[1]]
        q, scale = quantize_weight(numpy_helper.to_array(init))
        model.graph.initializer.remove(init)
        model.graph.initializer.extend([numpy_helper.from_array(q, init.name + "_int8"), numpy_helper.from_array(scale, init.name + "_scale")])
        if node.op_type == "MatMul":
            nodes.append(_quantized_matmul(node, init.name))
        else:
            nodes.extend(_quantized_attention(node, init.name))
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    _fold_biases(model)


def _fold_biases(model) -> None:
    """DynamicQuantizeMatMul adds a bias itself: the Add of a constant vector that alone follows it
    is folded in (one pass less over each product; SICK-R 2000 sentences 5-10% faster, SciFact 1-7%)."""
    widths = {init.name: list(init.dims) for init in model.graph.initializer}
    outputs = {out.name for out in model.graph.output}
    consumers: dict[str, list] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    folded = set()
    for node in model.graph.node:
        if node.op_type != "DynamicQuantizeMatMul" or node.output[0] in outputs or len(consumers.get(node.output[0], [])) != 1:
            continue
        add = consumers[node.output[0]][0]
        bias = [name for name in add.input if name != node.output[0]]
        if add.op_type != "Add" or len(bias) != 1 or widths.get(bias[0]) != widths[node.input[2]]:  # one value per column, as the scales
            continue
        node.input.extend([""] * (4 - len(node.input)) + bias)  # A, B, b_scale, b_zero_point (none), bias
        node.output[0] = add.output[0]
        folded.add(id(add))
    kept = [node for node in model.graph.node if id(node) not in folded]
    del model.graph.node[:]
    model.graph.node.extend(kept)


def _quantized_matmul(node, weight: str):
    from onnx import helper

    return helper.make_node(
        "DynamicQuantizeMatMul", [node.input[0], weight + "_int8", weight + "_scale"], list(node.output), name=node.name, domain=MS_DOMAIN
    )


def _quantized_attention(node, weight: str) -> list:
    from onnx import helper

    x = node.input[0]
    quantized = [f"{x}_{part}" for part in ("uint8", "scale", "zero_point")]
    bias, lengths = node.input[2], (node.input[3] if len(node.input) > 3 else "")
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    return [
        helper.make_node("DynamicQuantizeLinear", [x], quantized, name=node.name + "_quantize_input"),
        helper.make_node(
            "QAttention",
            [quantized[0], weight + "_int8", bias, quantized[1], weight + "_scale", lengths, quantized[2]],
            list(node.output),
            name=node.name,
            domain=MS_DOMAIN,
            **attrs,
        ),
    ]
