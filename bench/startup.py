"""Start-up (issue 6): `vecpipe --help` and a one-off `vecpipe search IDX "text"`, as whole processes.

Each command runs --repeat times (median and min reported). The search index holds 300 SICK-R
sentences (and, when bench/index.py has cached its vectors, one of 40,954); what is timed is the
query: start-up, imports, loading and verifying the model, opening the onnxruntime session,
scanning the vectors (a one-off query loads no graph), embedding one text and searching. On the
big index the same query's work is also timed as a bare script (ONE_OFF_FLOOR), alternately, to
show what the CLI, its checks and its framework add. A breakdown follows: the
cumulative import time of the heavy modules (`python -X importtime`) and the in-process cost
of resolving/verifying the model and of creating its session.

    .venv/bin/python bench/startup.py [--write bench/RESULTS.md]
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sections import compile_bytecode, cpu_line, publish

REPO = Path(__file__).resolve().parent.parent
SICKR = REPO.parent / "shared" / "data" / "sickr" / "test.jsonl"
INDEX_CACHE = Path.home() / ".cache" / "vecpipe-bench" / "index" / "all"  # bench/index.py's vectors
SECTION = ("<!-- bench/startup.py: begin -->", "<!-- bench/startup.py: end -->")
VECPIPE = [sys.executable, "-m", "vecpipe"]
HEAVY_MODULES = ("typer", "numpy", "onnxruntime", "tokenizers", "hnswlib", "orjson", "rich", "pydantic", "vecpipe.core.index.vector_index")


def wall(cmd: list[str], repeat: int, env: dict | None = None) -> list[float]:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True, env=env)
        times.append(time.perf_counter() - start)
    return times


def build_index(work: Path) -> Path:
    lines = SICKR.read_bytes().splitlines(keepends=True)[:300]
    source = work / "sick.jsonl"
    source.write_bytes(b"".join(lines))
    vectors = subprocess.run(VECPIPE + ["embed", "--field", "sentence1", "-q", str(source)], check=True, capture_output=True).stdout
    subprocess.run(VECPIPE + ["index", "build", "-o", str(work / "idx")], input=vectors, check=True, capture_output=True)
    return work / "idx"


def build_big_index(work: Path) -> Path | None:
    """The 40,954 MiniLM vectors of bench/index.py's cache as an index, with the provenance a
    fresh `vecpipe embed` writes (the cache's vectors must be the same model's); None without it."""
    import json

    import numpy as np
    import orjson

    if not (INDEX_CACHE / "corpus.npy").exists():
        return None
    probe = subprocess.run(VECPIPE + ["embed", "-q"], input=b"probe\n", check=True, capture_output=True).stdout
    provenance = orjson.loads(probe)["vecpipe"]
    if provenance["model_sha256"] != json.loads((INDEX_CACHE / "provenance.json").read_text())["model_sha256"]:
        return None
    texts = json.loads((INDEX_CACHE / "corpus.json").read_text())
    records = work / "big.jsonl"
    with open(records, "wb") as f:
        for i, (text, vector) in enumerate(zip(texts, np.load(INDEX_CACHE / "corpus.npy").astype(np.float32))):
            f.write(orjson.dumps({"id": i, "text": text, "embedding": vector, "vecpipe": provenance}, option=orjson.OPT_SERIALIZE_NUMPY) + b"\n")
    subprocess.run(VECPIPE + ["index", "build", "-q", "-o", str(work / "big.idx"), str(records)], check=True)
    return work / "big.idx"


# The one-off search's own work with no CLI and no checks, for scale: the imports it needs, the
# tokenizer, an onnxruntime session (no prepacking, as vecpipe opens it for one query), one
# embedding, one scan of the graph file's vectors in place, the hits' records from SQLite, JSONL out.
ONE_OFF_FLOOR = r"""
import sqlite3, struct, sys
import numpy as np, onnxruntime as ort, orjson
from tokenizers import Tokenizer
model, generation, text = sys.argv[1:4]
tokenizer = Tokenizer.from_file(model + "/tokenizer.json")
tokenizer.no_padding()
options = ort.SessionOptions()
options.add_session_config_entry("session.disable_prepacking", "1")
session = ort.InferenceSession(model + "/model.onnx", options, providers=["CPUExecutionProvider"])
ids = np.array([tokenizer.encode(text).ids])
query = session.run(["sentence_embedding"], {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)})[0][0]
query /= np.linalg.norm(query)
head = struct.unpack("=6QiI3QdQ", open(generation + "/graph.bin", "rb").read(96))
slots, record, label_at, data_at = head[2:6]
records = np.memmap(generation + "/graph.bin", dtype=np.uint8, mode="r", offset=96, shape=(slots, record))
scores = (query[None] @ records[:, data_at:label_at].view(np.float32).T)[0]
best = np.argsort(-scores)[:5]
labels = records[best, label_at:].view(np.uint64).ravel().tolist()
db = sqlite3.connect(f"file:{generation}/meta.sqlite?mode=ro", uri=True)
found = {label: (key, fields) for label, key, fields in db.execute(f"SELECT label, id, fields FROM items WHERE label IN ({','.join('?' * len(labels))})", labels)}
out = b"".join(orjson.dumps({"query_id": 0, "rank": rank, "id": orjson.loads(found[label][0]), "score": float(scores[slot]), **orjson.loads(found[label][1])}) + b"\n"
               for rank, (slot, label) in enumerate(zip(best.tolist(), labels), start=1))
sys.stdout.buffer.write(out)
"""


def alternating(commands: list[list[str]], repeat: int) -> list[list[float]]:
    """Wall seconds of each command, the commands run in turn `repeat` times (a slow spell of this
    shared VM then falls on all of them)."""
    times: list[list[float]] = [[] for _ in commands]
    for _ in range(repeat):
        for cmd, found in zip(commands, times):
            found.extend(wall(cmd, 1))
    return times


def import_times(cmd: list[str]) -> dict[str, float]:
    """Cumulative import ms of the heavy top-level modules that `cmd` imports."""
    done = subprocess.run([sys.executable, "-X", "importtime"] + cmd[1:], capture_output=True, text=True)
    found = {}
    for line in done.stderr.splitlines():
        parts = [p.strip() for p in line.removeprefix("import time:").split("|")]
        if len(parts) == 3 and parts[2] in HEAVY_MODULES and parts[2] not in found:
            found[parts[2]] = int(parts[1]) / 1000
    return found


def model_load_costs(repeat: int) -> dict[str, float]:
    """Median in-process ms of resolve+verify and of session creation for the default model."""
    code = (
        "import time, json; t0 = time.perf_counter(); from vecpipe.core.models.kinds import load_model; t1 = time.perf_counter(); "
        "m = load_model(); t2 = time.perf_counter(); m.session; t3 = time.perf_counter(); "
        "print(json.dumps({'import vecpipe.core.models.model': t1 - t0, 'resolve + verify': t2 - t1, 'onnxruntime session': t3 - t2}))"
    )
    import json

    runs = [json.loads(subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout) for _ in range(repeat)]
    return {key: 1000 * statistics.median(run[key] for run in runs) for key in runs[0]}


def completion_answer(repeat: int) -> list[float]:
    """One Tab press: the shell asks `vecpipe` which model names complete `-m a`."""
    env = {**os.environ, "_VECPIPE_COMPLETE": "complete_bash", "COMP_WORDS": "vecpipe embed -m a", "COMP_CWORD": "3"}
    return wall(VECPIPE, repeat, env)


def report(args, help_times, tab_times, search_times, big_times, floor_times, imports_help, imports_search, load_costs) -> str:
    def summary(times):
        return f"median {statistics.median(times):.3f} s, min {min(times):.3f} s"

    lines = [
        "## Start-up (bench/startup.py)",
        "",
        f"Command: `.venv/bin/python bench/startup.py --repeat {args.repeat} --write bench/RESULTS.md`; {args.repeat} runs each, 1-minute load {os.getloadavg()[0]:.2f} at the end.",
        cpu_line() + ".",
        "",
        f"- `vecpipe --help`: {summary(help_times)}",
        f"- a shell completion answer (model names for `vecpipe embed -m a<Tab>`): {summary(tab_times)}",
        f"- one-off `vecpipe search IDX \"a man is playing a guitar\" -k 5` (300-sentence index, stdout piped): {summary(search_times)}",
        f"- the same on a 40,954-vector index (bench/index.py's MiniLM vectors; issue 17's target: p50 <= 0.3 s on 50k): "
        + (summary(big_times) if big_times else "not run (no bench/index.py cache)"),
        *([f"- the same query's work in a bare script, no CLI and no checks (ONE_OFF_FLOOR above; run alternately with the line before): "
           f"{summary(floor_times)}"] if floor_times else []),
        "",
        "| cumulative import ms | " + " | ".join(HEAVY_MODULES) + " |",
        "|---|" + "---|" * len(HEAVY_MODULES),
        "| `--help` | " + " | ".join(f"{imports_help[m]:.0f}" if m in imports_help else "-" for m in HEAVY_MODULES) + " |",
        "| `search` | " + " | ".join(f"{imports_search[m]:.0f}" if m in imports_search else "-" for m in HEAVY_MODULES) + " |",
        "",
        "Loading the default model in process (median ms): " + ", ".join(f"{k} {v:.0f}" for k, v in load_costs.items()) + ".",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--write", type=Path, help="Also put the report in this markdown file (its own section).")
    args = parser.parse_args()
    subprocess.run(VECPIPE + ["models", "path"], check=True, capture_output=True)  # convert once, outside the timings
    compile_bytecode()
    with tempfile.TemporaryDirectory(prefix="vecpipe-startup-") as tmp:
        index = build_index(Path(tmp))
        search = VECPIPE + ["search", str(index), "a man is playing a guitar", "-k", "5"]
        help_times, search_times = wall(VECPIPE + ["--help"], args.repeat), wall(search, args.repeat)
        big = build_big_index(Path(tmp))
        big_times, floor_times = [], []
        if big:
            query = "how do I copy files to another machine"
            model = subprocess.run(VECPIPE + ["models", "path"], check=True, capture_output=True, text=True).stdout.strip()
            floor = [sys.executable, "-c", ONE_OFF_FLOOR, model, str(next(big.glob("g0*"))), query]
            big_times, floor_times = alternating([VECPIPE + ["search", str(big), query, "-k", "5"], floor], args.repeat)
        tab_times = completion_answer(args.repeat)
        imports_help, imports_search = import_times(VECPIPE + ["--help"]), import_times(search)
    text = report(args, help_times, tab_times, search_times, big_times, floor_times, imports_help, imports_search, model_load_costs(args.repeat))
    publish(text, args.write, SECTION)  # bench/sections.py; a script's own directory is on sys.path


if __name__ == "__main__":
    main()
