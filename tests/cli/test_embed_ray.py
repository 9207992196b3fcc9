"""`vecpipe embed --engine ray` on a local Ray cluster that each run starts and stops (ray.init with
--workers CPUs): the same records, order and provenance as a local run, vectors equal to cos >=
0.99999, every record exactly once when an actor dies mid-run, and no Ray import without --engine.
Refusals are one line with the documented exit code, before any cluster starts where they can be."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import SHARED_DATA
from vecpipe.formats.vectors import read_vectors

pytest.importorskip("ray")
pytestmark = pytest.mark.slow  # each run starts a Ray cluster (~10-30 s on 2 cores)


@pytest.fixture(scope="module")
def sick(tmp_path_factory, default_model_dir):
    texts = [json.loads(line)["sentence1"] for line in open(SHARED_DATA / "sickr" / "test.jsonl")][:2000]
    path = tmp_path_factory.mktemp("sick") / "sick.txt"
    path.write_text("".join(t + "\n" for t in texts), encoding="utf-8")
    return path


def vecpipe(*args, env=None):
    return subprocess.run([sys.executable, "-m", "vecpipe", *map(str, args)], capture_output=True, timeout=600, env={**os.environ, **(env or {})})


def rows(stdout: bytes) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines()]


@pytest.fixture(scope="module")
def local(sick):
    done = vecpipe("embed", "-q", sick)
    assert done.returncode == 0, done.stderr
    return rows(done.stdout)


def assert_same_as_local(records: list[dict], local: list[dict]) -> None:
    assert [r["id"] for r in records] == [r["id"] for r in local] == list(range(2000))  # every record once, in order
    assert [r["text"] for r in records] == [r["text"] for r in local]
    assert all(r["vecpipe"] == local[0]["vecpipe"] for r in records)
    a, b = np.array([r["embedding"] for r in records]), np.array([r["embedding"] for r in local])
    assert ((a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)).min() >= 0.99999


def test_ray_gives_the_local_run_on_2000_sick_sentences(sick, local):
    done = vecpipe("embed", "-q", "--engine", "ray", "--workers", "2", sick)
    assert done.returncode == 0, done.stderr
    assert done.stderr == b""  # Ray's own log lines go to its log file, not to stderr
    assert_same_as_local(rows(done.stdout), local)


def test_an_actor_that_dies_is_retried_and_every_record_comes_out_once(sick, local, tmp_path):
    marker = tmp_path / "crash-once"
    marker.write_text("the first actor call that finds this file deletes it and exits")
    done = vecpipe("embed", "-q", "--engine", "ray", "--workers", "2", sick, env={"VECPIPE_RAY_CRASH_ONCE": str(marker)})
    assert done.returncode == 0, done.stderr
    assert not marker.exists()  # an actor really died
    assert_same_as_local(rows(done.stdout), local)


def test_npy_parts_output_holds_the_local_run(sick, local, tmp_path):
    """`-o DIR --format npy`: .npy parts plus a manifest, read back by any vecpipe command as one stream."""
    out = tmp_path / "parts"
    done = vecpipe("embed", "-q", "--engine", "ray", "--workers", "2", "--format", "npy", "--part-rows", "700", "-o", out, sick)
    assert done.returncode == 0, done.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert [p["rows"] for p in manifest["parts"]] == [700, 700, 600] and manifest["provenance"] == local[0]["vecpipe"]
    assert np.load(out / "part-00001.npy").shape == (700, 384)
    back = [
        {"id": i, **fields, "embedding": vector, "vecpipe": batch.provenance}
        for batch in read_vectors(str(out))
        for i, fields, vector in zip(batch.ids, batch.fields, batch.matrix)
    ]
    assert_same_as_local(back, local)


@pytest.mark.parametrize("aggregate", [[], ["--aggregate", "mean"]], ids=["chunk rows", "mean of chunks"])
def test_long_texts_chunk_on_ray_as_they_do_locally(aggregate, tmp_path):
    """300 SciFact abstracts in 64-token chunks: the same rows (ids `<id>#<n>`, spans, fields) and vectors."""
    corpus = tmp_path / "scifact300.jsonl"
    corpus.write_bytes(b"".join((SHARED_DATA / "scifact" / "corpus.jsonl").read_bytes().splitlines(keepends=True)[:300]))
    options = ["-q", "--on-long", "chunk", "--max-tokens", "64", *aggregate]
    local, on_ray = vecpipe("embed", *options, corpus), vecpipe("embed", "--engine", "ray", "--workers", "2", *options, corpus)
    assert on_ray.returncode == local.returncode == 0, on_ray.stderr
    a, b = rows(local.stdout), rows(on_ray.stdout)
    assert [{k: v for k, v in r.items() if k != "embedding"} for r in b] == [{k: v for k, v in r.items() if k != "embedding"} for r in a]
    assert len(a) > 600 if not aggregate else len(a) == 300  # every abstract, in chunks or averaged
    x, y = np.array([r["embedding"] for r in a]), np.array([r["embedding"] for r in b])
    assert ((x * y).sum(1) / np.linalg.norm(x, axis=1) / np.linalg.norm(y, axis=1)).min() >= 0.99999


def test_input_streams_to_the_cluster_in_segments(sick, local, tmp_path):
    """Segments of 700 texts, each its own Ray Data run: the output is still the local run's, and a
    malformed line in the third segment stops the run after the first two are out, named as locally."""
    segments = {"VECPIPE_RAY_SEGMENT_RECORDS": "700"}
    done = vecpipe("embed", "-q", "--engine", "ray", "--workers", "2", sick, env=segments)
    assert done.returncode == 0, done.stderr
    assert_same_as_local(rows(done.stdout), local)
    broken = tmp_path / "broken.jsonl"
    lines = [json.dumps({"text": r["text"]}) for r in local]
    lines[1500] = '{"text": "cut short'
    broken.write_text("\n".join(lines) + "\n")
    on_ray, alone = vecpipe("embed", "-q", "--engine", "ray", broken, env=segments), vecpipe("embed", "-q", broken)
    assert on_ray.returncode == alone.returncode == 3
    assert on_ray.stderr.splitlines()[-1] == alone.stderr.splitlines()[-1] and f"{broken}:1501: invalid JSON".encode() in on_ray.stderr
    assert [r["text"] for r in rows(on_ray.stdout)] == [r["text"] for r in local[:1400]]


def test_without_engine_nothing_imports_ray(tmp_path):
    code = ("import sys; from typer.testing import CliRunner; from vecpipe.cli import app; "
            "r = CliRunner().invoke(app, ['embed', '-q'], 'hello\\n'); assert r.exit_code == 0, r.output; "
            "print('ray' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == b"False"


@pytest.fixture
def running_cluster():
    """A cluster started as users start one (`ray start --head`, token authentication on by default),
    on a free port of this machine; stopped at the end."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ray = [os.path.join(os.path.dirname(sys.executable), "ray")]
    subprocess.run([*ray, "start", "--head", "--num-cpus", "2", "--port", str(port), "--include-dashboard", "false",
                    "--disable-usage-stats"], check=True, capture_output=True, timeout=120)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        subprocess.run([*ray, "stop", "--force"], capture_output=True, timeout=120)


def test_joining_a_running_cluster_gives_the_local_run(sick, local, running_cluster):
    env = {k: v for k, v in os.environ.items() if k != "RAY_AUTH_MODE"}  # as a user's shell has it
    done = subprocess.run([sys.executable, "-m", "vecpipe", "embed", "-q", "--engine", "ray", "--address", running_cluster, str(sick)],
                          capture_output=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr
    assert_same_as_local(rows(done.stdout), local)
    own = vecpipe("embed", "-q", "--engine", "ray", "--workers", "1", sick)  # without --address: a cluster of its own, not this one
    assert own.returncode == 0, own.stderr
    assert_same_as_local(rows(own.stdout), local)


def test_an_unreachable_address_is_one_line_and_exit_2_within_seconds(sick):
    started = time.monotonic()
    done = vecpipe("embed", "--engine", "ray", "--address", "127.0.0.1:9", sick)  # the discard port: nothing listens
    assert time.monotonic() - started < 30
    assert done.returncode == 2 and done.stdout == b""
    assert done.stderr.decode().splitlines() == ["vecpipe embed: cannot reach the Ray cluster at 127.0.0.1:9 (Connection refused); "
                                                 "is `ray start --head` running there?"]


def test_without_the_extra_the_error_names_it(sick):
    code = ("import sys; sys.modules['ray'] = None; sys.argv = ['vecpipe', 'embed', '--engine', 'ray', sys.argv[1]]; "
            "from vecpipe.launch import main; main()")
    done = subprocess.run([sys.executable, "-c", code, str(sick)], capture_output=True, timeout=120)
    assert done.returncode == 2 and done.stdout == b""
    assert done.stderr.decode().splitlines() == ["vecpipe embed: --engine ray needs the ray extra: pip install 'vecpipe[ray]'"]


def test_a_malformed_line_is_reported_as_a_local_run_reports_it(tmp_path):
    path = tmp_path / "docs.jsonl"
    path.write_text('{"text": "fine"}\n{"text": "cut short"\n{"text": "never read"}\n')
    local, on_ray = vecpipe("embed", path), vecpipe("embed", "--engine", "ray", path)
    assert on_ray.returncode == local.returncode == 3
    assert on_ray.stderr.splitlines()[-1] == local.stderr.splitlines()[-1] and f"{path}:2: invalid JSON".encode() in on_ray.stderr
    assert on_ray.stdout == b""  # the first segment is read before the cluster starts: nothing is embedded


def test_a_text_refused_inside_an_actor_names_its_input_line_and_the_summary_counts_tokens(tmp_path):
    path = tmp_path / "docs.txt"
    path.write_text("short\nalso short\n" + "word " * 40 + "\nafter\n")
    local = vecpipe("embed", "--max-tokens", "16", "--on-long", "error", path)  # first: it says so when it converts the model
    on_ray = vecpipe("embed", "--engine", "ray", "--workers", "1", "--max-tokens", "16", "--on-long", "error", path)
    assert on_ray.returncode == local.returncode == 3
    assert on_ray.stderr == local.stderr.splitlines(keepends=True)[-1] and f"{path}:3: text has 42 tokens, more than --max-tokens 16".encode() in on_ray.stderr
    truncating = [vecpipe("embed", *engine, "--max-tokens", "16", path).stderr.decode() for engine in (("--engine", "ray"), ())]
    # [CLS] short [SEP], [CLS] also short [SEP], 16 of the long text's 42, [CLS] after [SEP]
    assert [summary.split(", ")[:3] for summary in truncating] == [["vecpipe embed: 4 texts", "26 tokens", "1 truncated"]] * 2
