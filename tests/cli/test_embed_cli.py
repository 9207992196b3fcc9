"""`vecpipe embed` through the real entry point: stdin, files, options, errors and pipes."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import assert_same_hits, launched
from vecpipe.cli import app

runner = CliRunner()


def run(args, stdin: bytes | str | None = None):
    return runner.invoke(app, args, input=stdin)


def records(output: str) -> list[dict]:
    return [json.loads(line) for line in output.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    return str(tiny_model_dir)


def test_plain_lines_from_stdin(tiny):
    result = run(["embed", "-m", tiny, "-q"], "first line\nsecond line\n")
    assert result.exit_code == 0, result.output
    out = records(result.stdout)
    assert [(r["id"], r["text"]) for r in out] == [(0, "first line"), (1, "second line")]
    assert out[0]["vecpipe"]["model"] == "tiny-bert" and out[0]["vecpipe"]["dim"] == 32
    assert len(out[0]["embedding"]) == 32
    assert abs(np.linalg.norm(out[0]["embedding"]) - 1) < 1e-5


def test_jsonl_file_keeps_every_field_in_order(tiny, tmp_path):
    src = tmp_path / "docs.jsonl"
    src.write_text('{"id": "a", "lang": "en", "text": "hello", "n": 3}\n{"id": "b", "text": "bye", "lang": "fr"}\n')
    out = records(run(["embed", "-m", tiny, str(src), "-q"]).stdout)
    assert list(out[0]) == ["id", "lang", "text", "n", "embedding", "vecpipe"]
    assert out[1]["lang"] == "fr" and out[1]["id"] == "b"


def test_prompt_is_recorded_in_provenance(tiny):
    out = records(run(["embed", "-m", tiny, "--prompt", "query", "-q"], "x\n").stdout)
    assert out[0]["vecpipe"]["prompt"] == "query"


def test_no_normalize_and_pooling_override(tiny):
    out = records(run(["embed", "-m", tiny, "--no-normalize", "--pooling", "cls", "-q"], "some words\n").stdout)
    assert abs(np.linalg.norm(out[0]["embedding"]) - 1) > 1e-3
    assert out[0]["vecpipe"]["pooling"] == "cls" and out[0]["vecpipe"]["normalized"] is False


def test_summary_on_stderr_counts_truncation(tiny):
    result = run(["embed", "-m", tiny], "short\n" + "many words " * 100 + "\n")
    assert result.exit_code == 0
    assert "2 texts" in result.stderr and "1 truncated" in result.stderr
    assert "vecpipe" not in result.stdout.split("\n")[0][:10]


def test_npy_output_writes_matrix_and_sidecar(tiny, tmp_path):
    target = tmp_path / "out.npy"
    result = run(["embed", "-m", tiny, "--format", "npy", "-o", str(target), "-q"], "a\nb\nc\n")
    assert result.exit_code == 0, result.output
    matrix = np.load(target)
    assert matrix.shape == (3, 32) and matrix.dtype == np.float32
    sidecar = [json.loads(line) for line in (tmp_path / "out.meta.jsonl").read_text().splitlines()]
    assert [s["id"] for s in sidecar] == [0, 1, 2] and "embedding" not in sidecar[0]


def test_npy_parts_directory_feeds_index_build_like_jsonl(tiny, tmp_path):
    texts = "".join(f"sentence number {i} about topic {i % 7}\n" for i in range(25))
    parts = tmp_path / "parts"
    result = run(["embed", "-m", tiny, "--format", "npy", "--part-rows", "10", "-o", str(parts), "-q"], texts)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in parts.glob("*.npy")) == ["part-00000.npy", "part-00001.npy", "part-00002.npy"]
    jsonl = run(["embed", "-m", tiny, "-q"], texts).stdout
    for source, name in [(str(parts), "from-parts.idx"), ("-", "from-jsonl.idx")]:
        built = run(["index", "build", "-q", "-o", str(tmp_path / name), source], jsonl if source == "-" else None)
        assert built.exit_code == 0, built.output
    hits = [run(["search", "-m", tiny, "--exact", "-k", "5", str(tmp_path / name), "topic 3"]).stdout for name in ("from-parts.idx", "from-jsonl.idx")]
    assert_same_hits(hits[0], hits[1])
    assert len(records(hits[0])) == 5
    queries = [run(["search", "--exact", "-k", "1", str(tmp_path / "from-jsonl.idx"), "-i", source], jsonl if source == "-" else None).stdout
               for source in (str(parts), "-")]  # the parts as query vectors, as the same records on stdin
    assert_same_hits(queries[0], queries[1])
    assert len(records(queries[0])) == 25


def test_chunk_output_has_parent_ids(tiny):
    text = " ".join(f"w{i}" for i in range(200))
    out = records(run(["embed", "-m", tiny, "--on-long", "chunk", "--overlap", "4", "-q"], text + "\n").stdout)
    assert len(out) > 2 and {r["parent_id"] for r in out} == {0}
    assert [r["chunk"] for r in out] == list(range(len(out)))


@pytest.mark.parametrize(
    "data, message",
    [
        ('{"text": "a"}\n{"text": \n', "docs.jsonl:2: invalid JSON"),
        ('{"text": "a"}\n"just a string"\n', "docs.jsonl:2: expected a JSON object, got str"),
        ('{"text": "a"}\n{"body": "b"}\n', "docs.jsonl:2: missing text field 'text'"),
        ("", "docs.jsonl: no input records (empty input)"),
    ],
)
def test_bad_input_is_one_line_with_file_and_line(tiny, tmp_path, data, message):
    src = tmp_path / "docs.jsonl"
    src.write_text(data)
    result = run(["embed", "-m", tiny, str(src)])
    assert result.exit_code == 3
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"vecpipe embed: {src.parent}/{message}")


def test_invalid_utf8_is_reported(tiny, tmp_path):
    src = tmp_path / "docs.jsonl"
    src.write_bytes(b"fine\nbad \xff here\n")
    result = run(["embed", "-m", tiny, str(src)])
    assert result.exit_code == 3 and f"{src}:2: invalid UTF-8" in result.stderr


def test_skip_bad_reports_count(tiny):
    result = run(["embed", "-m", tiny, "--skip-bad"], '{"text": "a"}\n{bad\n{"text": "b"}\n')
    assert result.exit_code == 0 and len(records(result.stdout)) == 2
    assert "1 bad lines skipped" in result.stderr


def test_failed_run_leaves_existing_output_file_untouched(tiny, tmp_path):
    target = tmp_path / "out.jsonl"
    target.write_text("precious\n")
    result = run(["embed", "-m", tiny, "-o", str(target)], '{"text": "a"}\n{broken\n')
    assert result.exit_code == 3 and target.read_text() == "precious\n"
    assert [p.name for p in tmp_path.iterdir()] == ["out.jsonl"]


def test_unknown_model_is_exit_4(tmp_path):
    result = run(["embed", "-m", "no-such-model"], "x\n")
    assert result.exit_code == 4 and "unknown model 'no-such-model'" in result.stderr


def _vecpipe(*args, **kw):
    return subprocess.run([sys.executable, "-m", "vecpipe", *args], capture_output=True, **kw)


def test_a_finished_local_embed_skips_the_interpreter_teardown_with_its_output_whole(tiny, tmp_path):
    """launch.py leaves with os._exit after a local embed (atexit handlers do not run then), once
    the output is whole: on stdout and in an -o file."""
    texts = "".join(f"sentence number {i}\n" for i in range(300))
    to_stdout = launched("embed", "-q", "-m", tiny, input=texts)
    assert to_stdout.returncode == 0 and to_stdout.stderr == ""
    expected = records(run(["embed", "-q", "-m", tiny], texts).stdout)
    assert records(to_stdout.stdout) == expected
    out = tmp_path / "out.jsonl"
    to_file = launched("embed", "-q", "-m", tiny, "-o", out, input=texts)
    assert to_file.returncode == 0 and to_file.stderr == "" and records(out.read_text()) == expected
    unknown = launched("embed", "-m", "no-such-model", input="x\n")
    assert unknown.returncode == 4 and unknown.stderr.splitlines()[-1] == "torn down"


def test_real_pipeline_through_head_exits_quietly(tiny):
    lines = "\n".join(f"line number {i}" for i in range(5000)).encode()
    proc = subprocess.run(
        f"{sys.executable} -m vecpipe embed -m {tiny} -q | head -1",
        shell=True, input=lines, capture_output=True, executable="/bin/bash",
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.returncode == 0
    assert json.loads(proc.stdout)["id"] == 0
    assert proc.stderr == b""


def test_embed_output_feeds_the_next_command(tiny):
    proc = subprocess.run(
        f"printf 'a\\nb\\n' | {sys.executable} -m vecpipe embed -m {tiny} -q | {sys.executable} -m vecpipe embed -m {tiny} -q --field text",
        shell=True, capture_output=True, executable="/bin/bash",
    )
    assert proc.returncode == 0, proc.stderr
    assert [json.loads(line)["id"] for line in proc.stdout.splitlines()] == [0, 1]


def test_help_lists_exit_codes():
    result = _vecpipe("--help", text=True)
    assert result.returncode == 0 and "Exit codes" in result.stdout and "embed" in result.stdout


def test_sigint_leaves_whole_records_and_exits_130(tiny, tmp_path):
    import signal
    import time

    src = tmp_path / "many.txt"
    src.write_text("".join(f"line {i} with a few more words in it\n" for i in range(200_000)))
    proc = subprocess.Popen([sys.executable, "-m", "vecpipe", "embed", "-m", tiny, "-q", str(src)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    first = proc.stdout.readline()  # wait until records are flowing
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    rest = proc.stdout.read()  # not communicate(): it would skip what readline() buffered
    err = proc.stderr.read()
    assert proc.wait(timeout=60) == 130, err
    lines = (first + rest).decode().splitlines()
    assert 0 < len(lines) < 200_000
    assert [json.loads(line)["id"] for line in lines] == list(range(len(lines)))
    assert err.decode().strip() == "vecpipe embed: interrupted"


def test_ids_continue_across_input_files(tmp_path, tiny_model_dir):
    (tmp_path / "a.txt").write_text("one\ntwo\n")
    (tmp_path / "b.txt").write_text("three\nfour\n")
    result = CliRunner().invoke(app, ["embed", "-q", "-m", str(tiny_model_dir), str(tmp_path / "a.txt"), str(tmp_path / "b.txt")])
    assert result.exit_code == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(r["id"], r["text"]) for r in records] == [(0, "one"), (1, "two"), (2, "three"), (3, "four")]


def test_output_onto_a_fifo_is_written_in_place_and_a_directory_is_refused(tmp_path, tiny_model_dir):
    import os
    import stat
    import subprocess
    import sys
    import threading

    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    received = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_bytes()))
    reader.start()
    done = subprocess.run([sys.executable, "-m", "vecpipe", "embed", "-q", "-m", str(tiny_model_dir), "-o", str(fifo)],
                          input=b"hello\nworld\n", capture_output=True, timeout=120)
    reader.join(timeout=60)
    assert done.returncode == 0, done.stderr
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)  # still the pipe, not a regular file renamed over it
    assert [json.loads(line)["text"] for line in received[0].splitlines()] == ["hello", "world"]
    refused = CliRunner().invoke(app, ["embed", "-q", "-m", str(tiny_model_dir), "-o", str(tmp_path)], input="hello\n")
    assert refused.exit_code == 6 and refused.stderr == f"vecpipe embed: {tmp_path}: is a directory, not a file to write\n"
