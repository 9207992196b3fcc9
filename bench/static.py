"""Static embeddings (issue 13): whole `vecpipe embed` processes on a potion-sized model2vec table, against model2vec.

The model is made here: the default model's WordPiece tokenizer (30,522 tokens) with a random
30,522 x 256 float32 table in model2vec's layout (normalize on), the size of minishlab/potion-base-8M.
Texts: --texts SICK-R sentences (both sides, repeated), one per line. vecpipe is timed as whole
processes (start-up, table load, reading, tokenizing, averaging, writing JSONL or .npy to a file),
best of --rounds; model2vec (VECPIPE_PEERS_PYTHON, default ../.peers/bin/python) is timed the same
way (a `python -c` process that imports model2vec, loads the table, encodes and np.save's), and
around `encode` alone.

    VECPIPE_PEERS_PYTHON=/path/to/venv/bin/python .venv/bin/python bench/static.py [--write bench/RESULTS.md]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from sections import best_process_seconds, compile_bytecode, cpu_line, publish

REPO = Path(__file__).resolve().parent.parent
DATA = REPO.parent / "shared" / "data"
SECTION = ("<!-- bench/static.py: begin -->", "<!-- bench/static.py: end -->")
MODEL2VEC_SCRIPT = """
import sys, time
started = time.perf_counter()
import numpy as np
from model2vec import StaticModel
model = StaticModel.from_pretrained(sys.argv[1])
texts = open(sys.argv[2], encoding="utf-8").read().splitlines()
encode_started = time.perf_counter()
vectors = model.encode(texts)
encoded = time.perf_counter() - encode_started
np.save(sys.argv[3], vectors)
print(encoded, time.perf_counter() - started)
"""


def make_model(out: Path) -> Path:
    from safetensors.numpy import save_file

    from vecpipe.core.models.registry import BUILTINS, DEFAULT_MODEL, find_installed_checkpoint

    checkpoint = find_installed_checkpoint(BUILTINS[DEFAULT_MODEL])
    if checkpoint is None:
        raise SystemExit("bench/static.py: the default model's package is not installed (make setup)")
    tokenizer = json.loads((checkpoint / "tokenizer.json").read_text())
    tokenizer["padding"] = tokenizer["truncation"] = None
    out.mkdir()
    (out / "tokenizer.json").write_text(json.dumps(tokenizer))
    table = np.random.default_rng(0).normal(size=(30522, 256)).astype(np.float32)
    save_file({"embeddings": table}, str(out / "model.safetensors"))
    (out / "config.json").write_text(json.dumps({"model_type": "model2vec", "architectures": ["StaticModel"], "normalize": True}))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--texts", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--write", type=Path, help="Also put the report in this markdown file (its own section).")
    args = parser.parse_args()
    peers = os.environ.get("VECPIPE_PEERS_PYTHON", str(REPO.parent / ".peers" / "bin" / "python"))
    compile_bytecode()
    pairs = [json.loads(line) for line in open(DATA / "sickr" / "test.jsonl")]
    sentences = [p["sentence1"] for p in pairs] + [p["sentence2"] for p in pairs]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = make_model(tmp / "potion-sized")
        source = tmp / "texts.txt"
        source.write_text("".join(sentences[i % len(sentences)] + "\n" for i in range(args.texts)), encoding="utf-8")
        env = {**os.environ, "VECPIPE_HOME": str(tmp / "home")}
        vecpipe = [sys.executable, "-m", "vecpipe", "embed", "-q", "-m", str(model), str(source)]
        subprocess.run(vecpipe[:-1], input=b"warm up\n", check=True, env=env, stdout=subprocess.DEVNULL)  # converts once
        jsonl = best_process_seconds(vecpipe + ["-o", str(tmp / "out.jsonl")], args.rounds, env)
        npy = best_process_seconds(vecpipe + ["--format", "npy", "-o", str(tmp / "out.npy")], args.rounds, env)
        peer = [subprocess.run([peers, "-c", MODEL2VEC_SCRIPT, str(model), str(source), str(tmp / "m2v.npy")], check=True,
                               capture_output=True, text=True).stdout.split() for _ in range(args.rounds)]
        m2v_encode, m2v_whole = min(float(p[0]) for p in peer), min(float(p[1]) for p in peer)
        same = np.load(tmp / "m2v.npy")
        ours = np.load(tmp / "out.npy")
        agreement = float(((same * ours).sum(1) / np.maximum(np.linalg.norm(same, axis=1) * np.linalg.norm(ours, axis=1), 1e-30)).min())
    rate = lambda seconds: f"{args.texts / seconds:,.0f} texts/s"  # noqa: E731
    lines = ["## Static embeddings: a potion-sized model2vec table (bench/static.py)", "",
             f"Command: `VECPIPE_PEERS_PYTHON=... .venv/bin/python bench/static.py --write bench/RESULTS.md`. {cpu_line()}; "
             f"1-minute load {os.getloadavg()[0]:.2f} at the start. {args.texts:,} short SICK-R texts, best of {args.rounds}; "
             f"lowest cosine between vecpipe's and model2vec's vectors: {agreement:.7f}.", "",
             "| run | time | texts/s | vs model2vec whole process |", "|---|---|---|---|",
             f"| model2vec `encode` alone (in process) | {m2v_encode:.2f} s | {rate(m2v_encode)} | |",
             f"| model2vec, whole process (import, load, encode, np.save) | {m2v_whole:.2f} s | {rate(m2v_whole)} | 1.00x |",
             f"| `vecpipe embed -o out.jsonl`, whole process | {jsonl:.2f} s | {rate(jsonl)} | **{m2v_whole / jsonl:.2f}x** |",
             f"| `vecpipe embed --format npy -o out.npy`, whole process | {npy:.2f} s | {rate(npy)} | **{m2v_whole / npy:.2f}x** |"]
    publish("\n".join(lines) + "\n", args.write, SECTION)


if __name__ == "__main__":
    main()
