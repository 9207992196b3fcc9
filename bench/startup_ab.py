"""Start-up, side by side with an earlier commit: `vecpipe --help` and a one-off
`vecpipe search IDX "text"` as whole processes, each run alternating between the earlier
commit's `vecpipe/` (extracted with `git archive`, put first on PYTHONPATH) and this tree's.

Both read the same index (300 SICK-R sentences, built by this tree) and the same converted model,
so what differs is the code alone. Medians and minimums of --repeat runs each.

    .venv/bin/python bench/startup_ab.py --base aab1ccb [--repeat 21] [--write bench/RESULTS.md]
"""
from __future__ import annotations

import argparse
import io
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

from sections import compile_bytecode, cpu_line, publish

REPO = Path(__file__).resolve().parent.parent
SICKR = REPO.parent / "shared" / "data" / "sickr" / "test.jsonl"
SECTION = ("<!-- bench/startup_ab.py: begin -->", "<!-- bench/startup_ab.py: end -->")


def extract(revision: str, into: Path) -> Path:
    """The `vecpipe/` package of `revision`, written under `into`."""
    archive = subprocess.run(["git", "-C", str(REPO), "archive", revision, "vecpipe"], check=True, capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(into / "vecpipe")], check=True)  # as compile_bytecode does for this tree
    return into


def timed(cmd: list[str], tree: Path) -> float:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    start = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, env=env)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, help="The earlier commit to compare with.")
    parser.add_argument("--repeat", type=int, default=21)
    parser.add_argument("--write", type=Path, help="Also put the report in this markdown file (its own section).")
    args = parser.parse_args()
    vecpipe = [sys.executable, "-m", "vecpipe"]
    with tempfile.TemporaryDirectory() as tmp:
        base = extract(args.base, Path(tmp) / "base")
        head = REPO
        compile_bytecode()
        texts = "".join(line for _, line in zip(range(300), open(SICKR, encoding="utf-8")))
        index = Path(tmp) / "sick.idx"
        embedded = subprocess.run(vecpipe + ["embed", "-q", "--field", "sentence1"], input=texts.encode(), check=True, capture_output=True).stdout
        subprocess.run(vecpipe + ["index", "build", "-q", "-o", str(index)], input=embedded, check=True)
        commands = {
            "`vecpipe --help`": vecpipe + ["--help"],
            'one-off `vecpipe search IDX "a man is playing a guitar" -k 5` (300-sentence index)': vecpipe + ["search", str(index), "a man is playing a guitar", "-k", "5"],
        }
        rows = []
        for name, cmd in commands.items():
            timed(cmd, base), timed(cmd, head)  # warm the page cache for both
            times: dict[str, list[float]] = {"base": [], "head": []}
            for _ in range(args.repeat):
                times["base"].append(timed(cmd, base))
                times["head"].append(timed(cmd, head))
            b, h = statistics.median(times["base"]), statistics.median(times["head"])
            rows.append(f"| {name} | {b:.3f} s (min {min(times['base']):.3f}) | {h:.3f} s (min {min(times['head']):.3f}) | {h / b:.2f} |")
    head_rev = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], check=True, capture_output=True, text=True).stdout.strip()
    lines = [
        "## Start-up side by side with an earlier commit (bench/startup_ab.py)",
        "",
        f"Command: `.venv/bin/python bench/startup_ab.py --base {args.base} --repeat {args.repeat}`; runs alternate base/head, "
        f"{args.repeat} each; head is {head_rev} (with any uncommitted changes of the tree).",
        f"{cpu_line()}.",
        "",
        f"| command | base {args.base} median | head median | head / base |",
        "|---|---|---|---|",
        *rows,
    ]
    publish("\n".join(lines) + "\n", args.write, SECTION)


if __name__ == "__main__":
    main()
