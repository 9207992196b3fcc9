"""Embed throughput (issues 2 and 6): whole `vecpipe embed` processes against the peers, in one run.

For each corpus (the first --limit SciFact documents, title + text; the first --limit SICK-R
`sentence1`), in this order:
  1. ../shared/bench/peers.py: sentence-transformers, fastembed and the bare onnxruntime loop
     ("ort_floor"), each timed around its embedding loop only (model loaded, warmed up);
  2. `vecpipe embed` fp32 and `-m all-MiniLM-L6-v2:int8`, alternately, --repeat times each,
     timed as whole processes: start-up, model load, JSONL in from a file, JSONL out to a file.
Then the quality the speed is bought with: int8 against fp32 (mean and min cosine over every
text), vecpipe against sentence-transformers (peers.py --ref-out, first 256 texts), and
SciFact nDCG@10 of both through `vecpipe eval retrieval --corpus` (the whole corpus).

The peers need their own venv with torch (see peers.py's docstring): set VECPIPE_PEERS_PYTHON
to its python (default ../.peers/bin/python); without it the peers are skipped, with a note.
Timings are only comparable within one run on a quiet machine: the script waits until the
1-minute load average is below --max-load (other processes' CPU time is this benchmark's
noise) and records the load beside every figure.

    .venv/bin/python bench/embed.py                          # print the report
    .venv/bin/python bench/embed.py --write bench/RESULTS.md # and replace its section there
    .venv/bin/python bench/embed.py --limit 200 --repeat 1 --no-ndcg --max-load 99  # check the script
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from sections import compile_bytecode, publish

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
PEERS_SCRIPT = SHARED / "bench" / "peers.py"
DEFAULT_PEERS_PYTHON = REPO.parent / ".peers" / "bin" / "python"
SECTION = ("<!-- bench/embed.py: begin -->", "<!-- bench/embed.py: end -->")
FP32, INT8 = "all-MiniLM-L6-v2", "all-MiniLM-L6-v2:int8"


@dataclass(frozen=True)
class Corpus:
    name: str
    path: Path
    field: str


CORPORA = (
    Corpus("SciFact abstracts", SHARED / "data" / "scifact" / "corpus.jsonl", "text"),
    Corpus("SICK-R sentences", SHARED / "data" / "sickr" / "test.jsonl", "sentence1"),
)


@dataclass
class CorpusResult:
    corpus: Corpus
    n: int
    peers: dict = field(default_factory=dict)  # peer -> texts/s
    peer_load: float = 0.0
    runs: dict = field(default_factory=lambda: {FP32: [], INT8: []})  # model -> [(seconds, load)]
    int8_cosine: tuple[float, float] = (0.0, 0.0)  # mean, min
    st_cosine: tuple[float, float] | None = None


def load_average() -> float:
    return os.getloadavg()[0]


def wait_for_quiet(max_load: float, wait_s: float) -> float:
    """The 1-minute load once it is below `max_load`; exits when it stays above for `wait_s`."""
    deadline = time.monotonic() + wait_s
    while load_average() >= max_load:
        if time.monotonic() > deadline:
            sys.exit(f"bench/embed.py: load average {load_average():.2f} stayed above --max-load {max_load} for {wait_s:.0f} s")
        time.sleep(5)
    return load_average()


def vecpipe_command() -> list[str]:
    return [sys.executable, "-m", "vecpipe"]


def first_lines(path: Path, limit: int, out: Path) -> Path:
    with open(path, "rb") as src, open(out, "wb") as dst:
        for i, line in enumerate(src):
            if i >= limit:
                break
            dst.write(line)
    return out


def timed_embed(model: str, corpus: Corpus, source: Path, out: Path) -> float:
    """Seconds for one whole `vecpipe embed` process, JSONL file in, JSONL file out."""
    cmd = vecpipe_command() + ["embed", "-m", model, "--field", corpus.field, "-q", str(source)]
    with open(out, "wb") as sink:
        start = time.perf_counter()
        subprocess.run(cmd, stdout=sink, check=True)
        return time.perf_counter() - start


def run_peers(peers_python: Path, corpus: Corpus, source: Path, limit: int, ref_out: Path) -> dict:
    cmd = [str(peers_python), str(PEERS_SCRIPT), str(source), "--field", corpus.field, "--limit", str(limit), "--ref-out", str(ref_out)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    rows = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    return {row["peer"]: row["texts_per_s"] for row in rows}


def read_vectors(path: Path) -> np.ndarray:
    with open(path, "rb") as fh:
        return np.array([json.loads(line)["embedding"] for line in fh], dtype=np.float32)


def cosine_stats(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    return float(cos.mean()), float(cos.min())


def bench_corpus(corpus: Corpus, args, work: Path, peers_python: Path | None) -> CorpusResult:
    source = first_lines(corpus.path, args.limit, work / f"{corpus.field}-{args.limit}.jsonl")
    result = CorpusResult(corpus, args.limit)
    ref = work / f"ref-{corpus.field}.npy"
    if peers_python is not None:
        result.peer_load = wait_for_quiet(args.max_load, args.wait)
        result.peers = run_peers(peers_python, corpus, source, args.limit, ref)
    outputs = {model: work / f"out-{corpus.field}-{model.replace(':', '-')}.jsonl" for model in (FP32, INT8)}
    for _ in range(args.repeat):
        for model in (FP32, INT8):
            load = wait_for_quiet(args.max_load, args.wait)
            result.runs[model].append((timed_embed(model, corpus, source, outputs[model]), load))
    fp32, int8 = read_vectors(outputs[FP32]), read_vectors(outputs[INT8])
    result.int8_cosine = cosine_stats(int8, fp32)
    if ref.exists():
        reference = np.load(ref)
        result.st_cosine = cosine_stats(fp32[: len(reference)], reference)
    return result


def scifact_ndcg(model: str) -> float:
    data = SHARED / "data" / "scifact"
    cmd = vecpipe_command() + ["eval", "retrieval", "--corpus", str(data / "corpus.jsonl"), "--queries", str(data / "queries.jsonl"),
                               "--qrels", str(data / "qrels" / "test.tsv"), "-m", model, "--json", "-q"]
    done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return float(json.loads(done.stdout)["main_score"])


def machine() -> str:
    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    model = next((line.split(":", 1)[1].strip() for line in lscpu.splitlines() if line.startswith("Model name")), "unknown")
    flags = next((line.split(":", 1)[1].split() for line in lscpu.splitlines() if line.startswith("Flags")), [])
    simd = [f for f in ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8") if f in flags]
    import onnxruntime

    return f"{model}, {os.cpu_count()} cores ({', '.join(simd) or 'no AVX2'}), onnxruntime {onnxruntime.__version__}, Python {sys.version.split()[0]}"


def report(results: list[CorpusResult], ndcg: dict, args, peers_note: str) -> str:
    lines = [
        "## Embed throughput (bench/embed.py)",
        "",
        f"Machine: {machine()}. Command: `VECPIPE_PEERS_PYTHON=... .venv/bin/python bench/embed.py --limit {args.limit} --repeat {args.repeat} "
        f"--max-load {args.max_load}{' --no-ndcg' if args.no_ndcg else ''} --write bench/RESULTS.md` "
        f"(first {args.limit} texts of each corpus; vecpipe runs {args.repeat} times each, median shown, alternating fp32 and int8). "
        "texts/s; vecpipe is timed as a whole process (start-up, model load, JSONL file in, JSONL file out), the peers around "
        "their embedding loop only. `load` is the 1-minute load average when each timing started.",
    ]
    if peers_note:
        lines += ["", peers_note]
    lines += ["", "| corpus | sentence-transformers | fastembed | ort_floor | vecpipe fp32 | vecpipe int8 | fp32 / ort_floor | int8 / ort_floor | load |",
              "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        rate = {model: r.n / statistics.median(s for s, _ in runs) for model, runs in r.runs.items()}
        floor = r.peers.get("ort_floor")
        ratio = {model: f"{rate[model] / floor:.2f}x" if floor else "-" for model in rate}
        loads = [r.peer_load] + [load for runs in r.runs.values() for _, load in runs]
        lines.append(
            f"| {r.corpus.name} | {r.peers.get('st', '-')} | {r.peers.get('fastembed', '-')} | {floor or '-'} | {rate[FP32]:.1f} | {rate[INT8]:.1f} "
            f"| {ratio[FP32]} | {ratio[INT8]} | {min(loads):.2f}-{max(loads):.2f} |"
        )
    lines += ["", "Every vecpipe run (seconds):", ""]
    for r in results:
        for model, runs in r.runs.items():
            lines.append(f"- {r.corpus.name}, `-m {model}`: " + ", ".join(f"{s:.2f}" for s, _ in runs))
    lines += ["", "Quality:", "", "| corpus | int8 vs fp32 cosine, mean / min | vecpipe fp32 vs sentence-transformers, min (first 256) |", "|---|---|---|"]
    for r in results:
        st = f"{r.st_cosine[1]:.6f}" if r.st_cosine else "-"
        lines.append(f"| {r.corpus.name} | {r.int8_cosine[0]:.5f} / {r.int8_cosine[1]:.5f} | {st} |")
    if ndcg:
        lines += ["", f"SciFact nDCG@10 (`vecpipe eval retrieval --corpus`, all {5183} documents, 300 queries): "
                  f"fp32 {ndcg[FP32]:.5f}, int8 {ndcg[INT8]:.5f} (difference {ndcg[INT8] - ndcg[FP32]:+.5f}; MTEB publishes 0.64508)."]
    return "\n".join(lines) + "\n"


def peers_python_or_note() -> tuple[Path | None, str]:
    path = Path(os.environ.get("VECPIPE_PEERS_PYTHON", DEFAULT_PEERS_PYTHON))
    if not path.exists() or not PEERS_SCRIPT.exists():
        note = f"Peers skipped: no peers venv at {path} (set VECPIPE_PEERS_PYTHON) or no {PEERS_SCRIPT}."
        print(f"bench/embed.py: {note}", file=sys.stderr)
        return None, note
    return path, ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit", type=int, default=2000, help="Texts per corpus (default 2000).")
    parser.add_argument("--repeat", type=int, default=3, help="Timed runs of each vecpipe model per corpus.")
    parser.add_argument("--max-load", type=float, default=0.5, help="Wait until the 1-minute load average is below this before each timing.")
    parser.add_argument("--wait", type=float, default=900, help="Give up after waiting this many seconds for a quiet machine.")
    parser.add_argument("--no-ndcg", action="store_true", help="Skip SciFact nDCG@10 (embeds the whole corpus twice).")
    parser.add_argument("--write", type=Path, help="Also put the report in this markdown file (its own section).")
    args = parser.parse_args()
    peers_python, peers_note = peers_python_or_note()
    for model in (FP32, INT8):  # first-use conversion and quantization are not what is timed
        subprocess.run(vecpipe_command() + ["models", "path", model], check=True, capture_output=True)
    compile_bytecode()
    with tempfile.TemporaryDirectory(prefix="vecpipe-bench-") as tmp:
        results = [bench_corpus(corpus, args, Path(tmp), peers_python) for corpus in CORPORA]
    ndcg = {} if args.no_ndcg else {model: scifact_ndcg(model) for model in (FP32, INT8)}
    text = report(results, ndcg, args, peers_note)
    publish(text, args.write, SECTION)  # bench/sections.py; a script's own directory is on sys.path


if __name__ == "__main__":
    main()
