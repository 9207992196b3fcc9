"""Signals and closed streams as real processes (issue 18, class 6): Ctrl-C while `embed` waits on stdin
exits 130 with one line (it used to abort with "Fatal Python error ... could not acquire lock for
<stdin>"), SIGTERM unwinds like Ctrl-C and removes temp files (exit 143), and a closed stdin is one line."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

VECPIPE = [sys.executable, "-m", "vecpipe"]


def _waiting_embed(tmp_path, *args):
    process = subprocess.Popen(VECPIPE + ["embed", *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path)
    process.stdin.write(b"a first line\nand a second\n")
    process.stdin.flush()
    time.sleep(3)  # imports done, the model loaded, the reader thread blocked on stdin
    return process


@pytest.mark.parametrize("sig, code, word", [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated")])
def test_a_signal_while_embed_waits_on_stdin_is_one_line_and_its_exit_code(tmp_path, tiny_model_dir, sig, code, word):
    process = _waiting_embed(tmp_path, "-m", str(tiny_model_dir))
    process.send_signal(sig)
    _, err = process.communicate(timeout=60)
    assert process.returncode == code
    assert err.decode() == f"vecpipe embed: {word}\n"


def test_sigterm_removes_the_temp_file_of_an_output_being_written(tmp_path, tiny_model_dir):
    process = _waiting_embed(tmp_path, "-m", str(tiny_model_dir), "-o", "out.jsonl")
    process.send_signal(signal.SIGTERM)
    process.communicate(timeout=60)
    assert process.returncode == 143
    assert os.listdir(tmp_path) == []  # neither the output nor its hidden temp file


def test_a_closed_stdin_is_one_line(tmp_path, tiny_model_dir):
    done = subprocess.run(" ".join(VECPIPE) + f" embed -m {tiny_model_dir} <&-", shell=True, capture_output=True, cwd=tmp_path, timeout=60)
    assert done.returncode == 3
    assert done.stderr.decode() == "vecpipe embed: <stdin>: standard input is closed\n"
