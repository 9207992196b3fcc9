"""Model families (issue 13): the real all-mpnet-base-v2 in vecpipe against sentence-transformers, side by side.

Texts: the first --short SICK-R `sentence1` and the first --long SciFact documents (title + text,
most of them past MPNet's 384-token limit). sentence-transformers runs in the peers/fixture venv
(VECPIPE_PEERS_PYTHON, default ../.peers/bin/python; torch is never a vecpipe dependency) with
torch on the machine's cores, timed around `encode` only (model loaded, warmed up), batch size 32.
vecpipe is timed two ways: in process around `Model.embed` (the same scope), and as a whole
`vecpipe embed` process (start-up, model load, JSONL in and out). Both fp32. Needs `make models`.

    VECPIPE_PEERS_PYTHON=/path/to/venv/bin/python .venv/bin/python bench/families.py [--write bench/RESULTS.md]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sections import ST_ENCODE_SCRIPT, compile_bytecode, cpu_line, publish

REPO = Path(__file__).resolve().parent.parent
DATA = REPO.parent / "shared" / "data"
SECTION = ("<!-- bench/families.py: begin -->", "<!-- bench/families.py: end -->")
MODEL = "all-mpnet-base-v2"


def corpora(short: int, long: int) -> dict[str, list[str]]:
    sick = [json.loads(line)["sentence1"] for line in open(DATA / "sickr" / "test.jsonl")][:short]
    scifact = [json.loads(line) for line in open(DATA / "scifact" / "corpus.jsonl")][:long]
    return {f"SICK-R, {short} short": sick, f"SciFact, {long} long": [(d["title"] + " " + d["text"]).strip() for d in scifact]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--short", type=int, default=1000)
    parser.add_argument("--long", type=int, default=100)
    parser.add_argument("--write", type=Path, help="Also put the report in this markdown file (its own section).")
    args = parser.parse_args()
    peers = os.environ.get("VECPIPE_PEERS_PYTHON", str(REPO.parent / ".peers" / "bin" / "python"))
    from vecpipe.core.models.base import default_threads
    from vecpipe.core.models.kinds import load_model
    from vecpipe.core.paths import vecpipe_home

    checkpoint = vecpipe_home() / "checkpoints" / MODEL
    if not checkpoint.exists():
        raise SystemExit("bench/families.py: run `make models` first")
    compile_bytecode()
    model = load_model(MODEL)
    threads = default_threads()
    lines = ["## Model families: all-mpnet-base-v2 against sentence-transformers (bench/families.py)", "",
             f"Command: `VECPIPE_PEERS_PYTHON=... .venv/bin/python bench/families.py --write bench/RESULTS.md`. {cpu_line()}; "
             f"{threads} threads for both; 1-minute load {os.getloadavg()[0]:.2f} at the start.", "",
             "| texts | sentence-transformers (torch) | vecpipe, in process | vecpipe embed, whole process | ratio in process | ratio whole process |",
             "|---|---|---|---|---|---|"]
    with tempfile.TemporaryDirectory() as tmp:
        for label, texts in corpora(args.short, args.long).items():
            source = Path(tmp) / "texts.jsonl"
            source.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
            st = float(subprocess.run([peers, "-c", ST_ENCODE_SCRIPT, str(checkpoint), str(source), str(threads)],
                                      check=True, capture_output=True, text=True).stdout.split()[-1])
            model.embed(texts[:8])
            started = time.perf_counter()
            model.embed(texts)
            ours = time.perf_counter() - started
            started = time.perf_counter()
            subprocess.run([sys.executable, "-m", "vecpipe", "embed", "-q", "-m", MODEL, str(source), "-o", str(Path(tmp) / "out.jsonl")], check=True)
            whole = time.perf_counter() - started
            rate = lambda seconds: f"{len(texts) / seconds:.1f} texts/s"  # noqa: E731
            lines.append(f"| {label} | {rate(st)} | {rate(ours)} | {rate(whole)} | **{st / ours:.2f}x** | {st / whole:.2f}x |")
    publish("\n".join(lines) + "\n", args.write, SECTION)


if __name__ == "__main__":
    main()
