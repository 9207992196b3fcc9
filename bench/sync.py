"""Incremental re-embedding (issue 16): `vecpipe index sync` over a corpus with 1% of texts changed,
against re-embedding the whole corpus.

The corpus is SciFact's 5,183 abstracts (title + text) with the default model. "Full" is a sync
into a new index (every record embedded and indexed, as a re-run without hashes would); "1%"
re-syncs that index with the same records but 1% of them edited (a word appended), so 52 are
embedded and the rest only hashed and compared. Whole processes, timed side by side.

    .venv/bin/python bench/sync.py [--rounds N] [--write bench/RESULTS.md]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sections import compile_bytecode, cpu_line, publish

REPO = Path(__file__).resolve().parent.parent
CORPUS = REPO.parent / "shared" / "data" / "scifact" / "corpus.jsonl"
SECTION = ("<!-- bench/sync.py: begin -->", "<!-- bench/sync.py: end -->")
CHANGED_SHARE = 0.01


def write_corpus(path: Path, changed: set[int]) -> int:
    with open(CORPUS, encoding="utf-8") as src, open(path, "w", encoding="utf-8") as out:
        for n, line in enumerate(src):
            doc = json.loads(line)
            text = f"{doc['title']} {doc['text']}".strip() + (" (revised)" if n in changed else "")
            out.write(json.dumps({"id": doc["_id"], "text": text}) + "\n")
    return n + 1


def sync_seconds(index: Path, corpus: Path) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "vecpipe", "index", "sync", str(index), str(corpus)], capture_output=True, text=True, check=True)
    return time.perf_counter() - started, done.stderr.strip().splitlines()[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=1, help="Full syncs take minutes on 2 cores; one round by default.")
    parser.add_argument("--write", type=Path, help="Also put the report in this markdown file (its own section).")
    args = parser.parse_args()
    compile_bytecode()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        count = write_corpus(tmp / "v1.jsonl", set())
        step = round(1 / CHANGED_SHARE)
        write_corpus(tmp / "v2.jsonl", set(range(0, count, step)))
        full, partial = [], []
        for _ in range(args.rounds):
            shutil.rmtree(tmp / "idx", ignore_errors=True)
            seconds, full_summary = sync_seconds(tmp / "idx", tmp / "v1.jsonl")
            full.append(seconds)
            shutil.copytree(tmp / "idx", tmp / "base")  # each 1% sync starts from the same synced index
            seconds, partial_summary = sync_seconds(tmp / "idx", tmp / "v2.jsonl")
            partial.append(seconds)
            shutil.rmtree(tmp / "idx")
            shutil.move(tmp / "base", tmp / "idx")
    best_full, best_partial = min(full), min(partial)
    lines = ["## Incremental re-embedding (bench/sync.py)", "",
             f"Command: `.venv/bin/python bench/sync.py --write bench/RESULTS.md`. {cpu_line()}; 1-minute load {os.getloadavg()[0]:.2f} "
             f"at the end. SciFact corpus, {count:,} records, default model; whole processes, best of {args.rounds} (each round: a full sync, then a 1% sync).", "",
             "| run | seconds | vecpipe's summary |", "|---|---|---|",
             f"| full: sync into a new index | {best_full:.2f} | {full_summary} |",
             f"| 1% changed: sync the same index | {best_partial:.2f} | {partial_summary} |", "",
             f"1% sync / full re-embed: **{best_partial / best_full:.3f}x** (issue 16's target: <= 0.05x)."]
    publish("\n".join(lines) + "\n", args.write, SECTION)


if __name__ == "__main__":
    main()
