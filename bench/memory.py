"""Memory benchmark (issue 7): peak RSS of whole `vecpipe` processes on large inputs.

- `vecpipe embed` (the default model) over generated short lines, at several sizes: the targets
  are < 600 MB at 1M lines, and a peak that does not grow with the input. Each run also samples
  its RSS as it goes, so a flat curve can be seen within a run as well as across sizes.
- `vecpipe index build` over 200k random unit vectors of dimension 384 (307 MB of float32): the
  target is < 2x the vectors' own size. Fed twice: JSONL on stdin (read in batches), and an
  .npy + sidecar, which is memory-mapped (its pages count in RSS while resident).

Peak RSS is the child's ru_maxrss from os.wait4, so the parent that generates the input is not
counted. Measure on a quiet machine: the script prints the load average and stops when it is
above --max-load (other processes' memory does not count, but they slow the run down).

    .venv/bin/python bench/memory.py                                   # 10k, 50k, 200k lines
    .venv/bin/python bench/memory.py --embed-lines 10000,200000,1000000 --write bench/RESULTS.md
    .venv/bin/python bench/memory.py --embed-lines 2000 --vectors 5000 --max-load 99   # check the script
"""
from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
SECTION = ("<!-- bench/memory.py: begin -->", "<!-- bench/memory.py: end -->")
VECTOR_DIM = 384
EMBED_TARGET_MB = 600
WORDS = (
    "the a of to and in is it you that he was for on are with as his they be at one have this from or had by "
    "word but what some we can out other were all there when up use your how said an each she which do their "
    "time if will way about many then them write would like so these her long make thing see him two has look "
    "more day could go come did number sound no most people my over know water than call first who may down side "
    "been now find any new work part take get place made live where after back little only round man year came show"
).split()


@dataclass
class Measurement:
    label: str
    command: str
    peak_mb: float
    seconds: float
    samples: list[tuple[float, float, float]] = field(default_factory=list)  # (seconds, RSS MB, anonymous MB) while running

    def curve(self) -> str:
        """RSS a quarter, half and three quarters into the run: flat when memory does not grow."""
        if not self.samples:
            return ""
        end = self.samples[-1][0]
        picks = [next(mb for t, mb, _ in self.samples if t >= end * q) for q in (0.25, 0.5, 0.75)]
        return " / ".join(f"{mb:.0f}" for mb in picks)

    def anonymous_peak(self) -> float:
        """The most anonymous memory seen (RSS less mapped file pages, which the kernel can drop)."""
        return max((anon for _, _, anon in self.samples), default=0.0)


def vecpipe_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "vecpipe", *args]


def sample_rss(pid: int, samples: list, started: float, done: threading.Event) -> None:
    while not done.wait(0.25):
        try:
            with open(f"/proc/{pid}/status") as fh:
                fields = {line.split(":")[0]: int(line.split()[1]) for line in fh if line.startswith(("VmRSS:", "RssAnon:"))}
            samples.append((time.monotonic() - started, fields["VmRSS"] / 1024, fields["RssAnon"] / 1024))
        except (OSError, KeyError, IndexError, ValueError):
            return


def measure(label: str, args: list[str], shown: str, stdin_path: Path | None = None, feed=None) -> Measurement:
    """Run `vecpipe ARGS`, stdout to /dev/null; stdin from a file or fed by `feed(pipe)`."""
    stdin = open(stdin_path, "rb") if stdin_path else subprocess.PIPE if feed else subprocess.DEVNULL
    started = time.monotonic()
    child = subprocess.Popen(vecpipe_command(*args), stdin=stdin, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=REPO)
    samples: list = []
    done = threading.Event()
    sampler = threading.Thread(target=sample_rss, args=(child.pid, samples, started, done), daemon=True)
    sampler.start()
    if feed:
        feed(child.stdin)
        child.stdin.close()
    errors = child.stderr.read().decode()
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.monotonic() - started
    done.set()
    if stdin_path:
        stdin.close()
    if child.returncode != 0:
        raise SystemExit(f"{shown} failed ({child.returncode}): {errors}")
    return Measurement(label, shown, usage.ru_maxrss / 1024, seconds, samples)


# --- embed ---------------------------------------------------------------------------------------


def write_lines(path: Path, count: int, seed: int = 7) -> None:
    """Short lines of 4 to 12 common words, like titles, log lines or man page summaries."""
    rng = np.random.default_rng(seed)
    words = np.array(WORDS)
    with open(path, "w", encoding="utf-8") as fh:
        for start in range(0, count, 10_000):
            n = min(10_000, count - start)
            lengths = rng.integers(4, 13, size=n)
            picks = rng.integers(0, len(words), size=int(lengths.sum()))
            ends = np.cumsum(lengths)
            fh.write("".join(f"{start + i} " + " ".join(words[picks[e - k:e]]) + "\n" for i, (k, e) in enumerate(zip(lengths, ends))))


def embed_measurements(work: Path, sizes: list[int]) -> list[Measurement]:
    subprocess.run(vecpipe_command("models", "path"), check=True, capture_output=True)  # convert before measuring
    results = []
    for size in sizes:
        path = work / f"lines-{size}.txt"
        write_lines(path, size)
        shown = f"vecpipe embed -q lines-{size}.txt > /dev/null"
        results.append(measure(f"embed, {size:,} lines", ["embed", "-q", str(path)], shown))
        path.unlink()
    return results


# --- index build ---------------------------------------------------------------------------------


def unit_vector_batches(count: int, batch: int = 4096, seed: int = 11):
    from vecpipe.formats.vectors import VectorBatch

    rng = np.random.default_rng(seed)
    provenance = {"model": "random", "dim": VECTOR_DIM, "normalized": True}
    for start in range(0, count, batch):
        n = min(batch, count - start)
        x = rng.normal(size=(n, VECTOR_DIM)).astype(np.float32)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        yield VectorBatch(list(range(start, start + n)), [{} for _ in range(n)], x, provenance, list(range(start + 1, start + n + 1)))


def index_measurements(work: Path, count: int) -> list[Measurement]:
    from vecpipe.formats.vectors import VectorWriter

    def feed_jsonl(pipe) -> None:
        writer = VectorWriter(pipe)
        for batch in unit_vector_batches(count):
            writer.write(batch)

    jsonl = measure(f"index build, {count:,} vectors as JSONL on stdin", ["index", "build", "-q", "-o", str(work / "a.idx")],
                    f"(random unit vectors as JSONL) | vecpipe index build -q -o a.idx", feed=feed_jsonl)
    with VectorWriter(None, "npy", npy_path=str(work / "vectors.npy")) as writer:
        for batch in unit_vector_batches(count):
            writer.write(batch)
    npy = measure(f"index build, {count:,} vectors as .npy + sidecar", ["index", "build", "-q", "-o", str(work / "b.idx"), str(work / "vectors.npy")],
                  "vecpipe index build -q -o b.idx vectors.npy")
    return [jsonl, npy]


# --- report ----------------------------------------------------------------------------------------


def report(embeds: list[Measurement], indexes: list[Measurement], vectors: int, loads: tuple[float, float]) -> str:
    vector_mb = vectors * VECTOR_DIM * 4 / 2**20
    rows = [f"| {m.label} | {m.peak_mb:.0f} MB | {m.anonymous_peak():.0f} MB | {m.curve()} | {m.seconds:.0f} s | "
            f"`{m.command.replace('|', chr(92) + '|')}` |" for m in embeds + indexes]
    peaks = [m.peak_mb for m in embeds]
    lines = [
        "## Memory (bench/memory.py)",
        "",
        f"Peak RSS (ru_maxrss of the vecpipe process). {os.cpu_count()} cores, {platform.python_implementation()} "
        f"{platform.python_version()}, load average {loads[0]:.2f} at the start and {loads[1]:.2f} at the end.",
        "",
        "| run | peak RSS | of which anonymous (sampled) | RSS at 1/4, 1/2, 3/4 of the run (MB) | wall | command |",
        "|---|---|---|---|---|---|",
        *rows,
        "",
    ]
    if embeds:
        lines.append(f"- embed: peak {min(peaks):.0f} to {max(peaks):.0f} MB from {embeds[0].label.split(', ')[1]} to "
                     f"{embeds[-1].label.split(', ')[1]} (target < {EMBED_TARGET_MB} MB at 1M lines).")
    for m in indexes:
        lines.append(f"- {m.label}: peak {m.peak_mb:.0f} MB = {m.peak_mb / vector_mb:.2f}x the vectors' {vector_mb:.0f} MB (target < 2x).")
    lines += ["", "Reproduce: `.venv/bin/python bench/memory.py --write bench/RESULTS.md` (see its docstring for sizes).", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--embed-lines", default="10000,50000,200000", help="Comma-separated input sizes for embed (0: skip).")
    parser.add_argument("--vectors", type=int, default=200_000, help="Vectors for index build (0: skip).")
    parser.add_argument("--max-load", type=float, default=1.5, help="Refuse to start above this 1-minute load average.")
    parser.add_argument("--write", type=Path, help="Also put the report in this markdown file (its own section).")
    args = parser.parse_args()
    load = os.getloadavg()[0]
    print(f"load average {load:.2f}", file=sys.stderr)
    if load > args.max_load:
        raise SystemExit(f"load average {load:.2f} is above --max-load {args.max_load}: measure on a quieter machine")
    sizes = [int(s) for s in args.embed_lines.split(",") if int(s) > 0]
    with tempfile.TemporaryDirectory(prefix="vecpipe-memory-") as tmp:
        embeds = embed_measurements(Path(tmp), sizes)
        indexes = index_measurements(Path(tmp), args.vectors) if args.vectors else []
    text = report(embeds, indexes, args.vectors, (load, os.getloadavg()[0]))
    print(text)
    if args.write:
        from sections import write_section  # bench/sections.py, beside this script

        write_section(args.write, text, SECTION)


if __name__ == "__main__":
    main()
