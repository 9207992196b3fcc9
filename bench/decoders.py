"""Decoder embedders (issue 14) on the tiny Qwen3 and Gemma3 fixtures: speed against sentence-transformers,
the int8 variant's cosine to fp32, and peak memory on long inputs.

The fixtures (tests/fixtures/families/{qwen3,gemma3}: hidden 32, GQA 4/2 heads, head_dim 16) are
copied with their length limit raised from 48 to --max-tokens (RoPE has no position table, so
the weights are unchanged). Tiny weights make per-token work small, so the speed ratio mostly
measures the framework around the model (tokenizing, batching, padding, attention overhead),
not a real model's matrix products.
- Speed: --short SICK-R sentences and --long SciFact documents; sentence-transformers runs in the
  peers/fixture venv (VECPIPE_PEERS_PYTHON) timed around `encode` (batch size 32, warmed up);
  vecpipe in process around `Model.embed`. Same threads.
- int8: `make_variant(..., "int8")`, cosine to fp32 over the 94 texts of family_texts.jsonl.
- Memory: `vecpipe embed` on --rss-texts texts of 2,048 tokens each, whole process, peak RSS from
  getrusage (ru_maxrss of the child), against the same process on 10 texts.

    VECPIPE_PEERS_PYTHON=/path/to/venv/bin/python .venv/bin/python bench/decoders.py [--write bench/RESULTS.md]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from sections import ST_ENCODE_SCRIPT, compile_bytecode, cpu_line, publish

REPO = Path(__file__).resolve().parent.parent
DATA = REPO.parent / "shared" / "data"
FIXTURES = REPO / "tests" / "fixtures"
SECTION = ("<!-- bench/decoders.py: begin -->", "<!-- bench/decoders.py: end -->")


def widened(name: str, out: Path, max_tokens: int) -> Path:
    """A copy of fixture `name` whose length limit is `max_tokens`."""
    target = shutil.copytree(FIXTURES / "families" / name, out / name)
    config = json.loads((target / "config.json").read_text())
    config["max_position_embeddings"] = max_tokens
    (target / "config.json").write_text(json.dumps(config))
    for file, key in (("sentence_bert_config.json", "max_seq_length"), ("tokenizer_config.json", "model_max_length")):
        settings = json.loads((target / file).read_text())
        settings[key] = max_tokens
        (target / file).write_text(json.dumps(settings))
    return target


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def peak_rss_mb(command: list[str], env: dict) -> float:
    """Peak RSS of one child process, in MB (the children's maximum grows only with a bigger child)."""
    script = "import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True); print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
    out = subprocess.run([sys.executable, "-c", script, *command], check=True, capture_output=True, text=True, env=env).stdout
    return int(out.split()[-1]) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--short", type=int, default=1000)
    parser.add_argument("--long", type=int, default=100)
    parser.add_argument("--max-tokens", type=int, default=512)
    parser.add_argument("--rss-texts", type=int, default=1000)
    parser.add_argument("--write", type=Path, help="Also put the report in this markdown file (its own section).")
    args = parser.parse_args()
    peers = os.environ.get("VECPIPE_PEERS_PYTHON", str(REPO.parent / ".peers" / "bin" / "python"))
    from vecpipe.core.models.convert import convert
    from vecpipe.core.models.model import Model, default_threads
    from vecpipe.core.models.optimize import make_variant

    compile_bytecode()
    threads = default_threads()
    sick = [json.loads(line)["sentence1"] for line in open(DATA / "sickr" / "test.jsonl")][: args.short]
    scifact = [json.loads(line) for line in open(DATA / "scifact" / "corpus.jsonl")][: args.long]
    corpora = {f"SICK-R, {args.short} short": sick, f"SciFact, {args.long} long": [(d["title"] + " " + d["text"]).strip() for d in scifact]}
    family_texts = [json.loads(line)["text"] for line in open(FIXTURES / "family_texts.jsonl", encoding="utf-8")]
    speed = ["| model | texts | sentence-transformers (torch) | vecpipe, in process | ratio |", "|---|---|---|---|---|"]
    int8 = ["| model | min cosine int8 to fp32 | mean | quantized MatMuls | stay fp32 |", "|---|---|---|---|---|"]
    memory = ["| model | texts of 2,048 tokens | peak RSS | vs 10 texts |", "|---|---|---|---|"]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        env = {**os.environ, "VECPIPE_HOME": str(tmp / "home")}
        for name in ("qwen3", "gemma3"):
            checkpoint = widened(name, tmp, max(args.max_tokens, 2048))
            fp32 = tmp / f"{name}-fp32"
            fp32.mkdir()
            convert(checkpoint, fp32, name)
            model = Model(fp32)
            for label, texts in corpora.items():
                source = tmp / "texts.jsonl"
                source.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
                st = float(subprocess.run([peers, "-c", ST_ENCODE_SCRIPT, str(checkpoint), str(source), str(threads)], check=True,
                                          capture_output=True, text=True).stdout.split()[-1])
                model.embed(texts[:8])
                started = time.perf_counter()
                model.embed(texts)
                ours = time.perf_counter() - started
                speed.append(f"| tiny {name} | {label} | {len(texts) / st:.0f} texts/s | {len(texts) / ours:.0f} texts/s | **{st / ours:.2f}x** |")
            variant = tmp / f"{name}-int8"
            variant.mkdir()
            manifest = make_variant(fp32, variant, "int8")
            agreement = cosines(Model(variant).embed(family_texts), model.embed(family_texts))
            import onnx

            ops = [n.op_type for n in onnx.load(str(variant / "model.onnx"), load_external_data=False).graph.node]
            int8.append(f"| tiny {name} | {agreement.min():.4f} | {agreement.mean():.4f} | {ops.count('DynamicQuantizeMatMul')} "
                        f"(q, k, v, o, gate, up, down{', Dense' if manifest.get('dense') else ''}) | "
                        f"embeddings, RMSNorms, RoPE, q.k and probs.v ({ops.count('MatMul')} MatMuls), softmax, pooling |")
            words = " ".join(family_texts[50:64]).split()
            long_text = " ".join(words * 40)  # far past 2,048 tokens: truncated there
            for count in (10, args.rss_texts):
                (tmp / "long.txt").write_text("".join(f"{i} {long_text}\n" for i in range(count)))
                command = [sys.executable, "-m", "vecpipe", "embed", "-q", "-m", str(fp32), "--max-tokens", "2048", str(tmp / "long.txt"),
                           "--format", "npy", "-o", str(tmp / "long.npy")]
                started = time.perf_counter()
                rss = peak_rss_mb(command, env)
                seconds = time.perf_counter() - started
                if count == 10:
                    baseline = rss
                else:
                    memory.append(f"| tiny {name} | {count} ({seconds:.0f} s) | {rss:.0f} MB | {rss / baseline:.2f}x ({baseline:.0f} MB) |")
    lines = ["## Decoder embedders: tiny Qwen3 and Gemma3 (bench/decoders.py)", "",
             f"Command: `VECPIPE_PEERS_PYTHON=... .venv/bin/python bench/decoders.py --write bench/RESULTS.md`. {cpu_line()}; "
             f"{threads} threads for both; 1-minute load {os.getloadavg()[0]:.2f} at the start. Tiny weights (hidden 32): the speed ratio "
             f"measures the framework around the model more than a real model's arithmetic.", "", *speed, "", *int8, "", *memory]
    publish("\n".join(lines) + "\n", args.write, SECTION)


if __name__ == "__main__":
    main()
