"""Issue 18, class 6: Ctrl-C and SIGTERM at random moments, start-up included, as real processes.

Each command is timed once uninterrupted; then seeded signals land uniformly over 1.1x that time,
counted from the moment the process is started (so some land while Python imports, before vecpipe
has installed anything; one that lands while CPython itself starts gets CPython's own message,
which vecpipe cannot answer: the test checks that nothing was written then). After each: the exit status is 0 (the signal came after the work), 130 or
143; stderr has no traceback and one line about the signal; no temp file is left; and the output is absent
or whole (every record)."""
from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time

import pytest

RECORDS = 3000
POINTS = 8
CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}


def vectors() -> bytes:
    rng = random.Random(7)
    return b"".join(json.dumps({"id": i, "embedding": [rng.uniform(-1, 1) for _ in range(16)]}).encode() + b"\n" for i in range(RECORDS))


def texts() -> bytes:
    return b"".join(f"sentence number {i} about the weather\n".encode() for i in range(RECORDS))


def commands(tiny_model_dir):
    return {
        "embed": (["embed", "-q", "-m", str(tiny_model_dir), "-o", "out.jsonl"], texts(), "out.jsonl"),
        "index build": (["index", "build", "-q", "-o", "out.idx"], vectors(), "out.idx"),
        "quantize": (["quantize", "--to", "int8", "-o", "out.jsonl"], vectors(), "out.jsonl"),
    }


def start(args, cwd, source):
    """vecpipe reading `source` as its stdin (a file: nothing blocks the test while it starts)."""
    with open(source, "rb") as stdin:
        return subprocess.Popen([sys.executable, "-m", "vecpipe", *args], stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=cwd)


def whole(path) -> bool:
    if path.is_dir():
        from vecpipe.core.index.vector_index import index_info

        return index_info(path)["count"] == RECORDS
    return len(path.read_bytes().splitlines()) == RECORDS


@pytest.mark.parametrize("name", ["embed", "index build", "quantize"])
def test_a_signal_at_a_random_moment_leaves_one_line_no_temp_files_and_a_whole_output_or_none(tmp_path, tiny_model_dir, name):
    args, stdin, output = commands(tiny_model_dir)[name]
    source = tmp_path / "input"
    source.write_bytes(stdin)
    timing = tmp_path / "timing"
    timing.mkdir()
    started = time.perf_counter()
    first = start(args, timing, source)
    first.communicate(timeout=120)
    duration = time.perf_counter() - started
    assert first.returncode == 0
    rng = random.Random(f"{name}-signals")
    for point in range(POINTS):
        sig = (signal.SIGINT, signal.SIGTERM)[point % 2]
        delay = rng.uniform(0, 1.1 * duration)
        work = tmp_path / f"run{point}"
        work.mkdir()
        process = start(args, work, source)
        time.sleep(delay)
        process.send_signal(sig)
        _, err = process.communicate(timeout=120)
        text = err.decode()
        if text.startswith(("Fatal Python error: init_import_site", "Could not import runpy module")):
            # CPython itself was still starting (its site module, or runpy for `-m`: the first ~10-30 ms,
            # longer on a loaded machine): no line of vecpipe had run, so there is nothing it could
            # answer, and nothing was written.
            assert list(work.iterdir()) == [], delay
            continue
        lines = text.splitlines()
        assert "Traceback" not in text and all(line.startswith("vecpipe") for line in lines), (delay, text)
        # -sig: the signal's default action, before Python ran vecpipe's first line or after the
        # interpreter began to shut down (the output is then whole, or was never started).
        assert process.returncode in (0, CODES[sig], -sig), (delay, process.returncode, text)
        if process.returncode > 0:  # notices the command gave before may precede the one line about the signal
            assert lines[-1].endswith(("interrupted", "terminated")) and sum("interrupted" in x or "terminated" in x for x in lines) == 1, text
        leftovers = [p.name for p in work.iterdir() if p.name.startswith(".") and not p.name.endswith(".lock")]
        assert leftovers == [], (delay, leftovers)
        target = work / output
        if process.returncode == 0:
            assert whole(target), delay
        else:
            assert not target.exists() or whole(target), delay
