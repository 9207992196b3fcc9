"""Bad options and arguments are one line and exit 2, like every other refusal (click's own
usage errors printed the usage, a hint and the error on four lines). Real processes."""
from __future__ import annotations

import pytest

from robustness_support import assert_one_line_refusal, run_process


@pytest.mark.parametrize("args, command, problem", [
    (["search", "--no-such-flag", "x"], "search", "No such option: --no-such-flag"),
    (["search"], "search", "Missing argument 'directory'"),
    (["embed", "--on-long"], "vecpipe", "Option '--on-long' requires an argument"),  # click names no subcommand here
    (["index", "build", "-o"], "vecpipe", "Option '-o' requires an argument"),
    (["quantize", "--to", "int8", "--format", "npy", "--bogus"], "quantize", "No such option: --bogus"),
    (["truncate", "--dim", "many"], "truncate", "'many' is not a valid int range"),
    (["eval", "retrieval", "--top-k", "x"], "eval retrieval", "'x' is not a valid int range"),
    (["models", "frobnicate"], "models", "No such command 'frobnicate'"),
    (["frobnicate"], "vecpipe", "No such command 'frobnicate'"),
])
def test_a_usage_error_is_one_line_and_exit_2(args, command, problem):
    outcome = run_process(args)
    prefix_command = command if command != "vecpipe" else None
    if prefix_command is None:
        assert outcome.stderr.startswith("vecpipe: ") and problem in outcome.stderr and len(outcome.stderr.splitlines()) == 1
        assert outcome.code == 2
    else:
        assert_one_line_refusal(outcome, prefix_command, None, problem, 2)
    assert f"-h`)" in outcome.stderr and outcome.stdout == b""


@pytest.mark.parametrize("args, command, problem", [
    (["embed", "--format", "xml"], "embed", "--format must be jsonl or npy"),
    (["embed", "--format", "npy"], "embed", "--format npy needs -o FILE.npy or -o DIR"),
    (["embed", "--part-rows", "10"], "embed", "--part-rows sizes the parts of --format npy -o DIR"),
    (["embed", "--engine", "spark"], "embed", "--engine must be local or ray"),
    (["index", "build", "--engine", "ray", "-o", "x.idx"], "index build", "--engine ray builds shards: give --shards N"),
])
def test_options_that_contradict_each_other_are_one_line_and_exit_2(args, command, problem):
    outcome = run_process(args)
    assert_one_line_refusal(outcome, command, None, problem, 2)
    assert outcome.stdout == b""
