"""`vecpipe embed --engine ray`: the same embedding on a Ray cluster (the optional `ray` extra).

Ray Data's standard pattern for batch inference: a dataset of the texts, `map_batches` over a pool
of stateful actors, each of which loads the model once (one onnxruntime thread per actor, one
actor per CPU asked for) and embeds its batches with the same token-budget, length-sorted batching
as a local run (batching.embed_texts). `preserve_order` keeps the output in input order, so the
records, ids and provenance are a local run's; only batch boundaries differ, which moves vectors
by float rounding. An actor that dies is restarted and its batch retried by Ray, so every record
still comes out exactly once.

Without `--address` a local cluster is started for the run; with it, vecpipe joins a running one
(`ray start --head` on one machine, `ray start --address=HEAD:6379` on the others). Every node
must see the model directory at the same path (a shared cache, or the same $VECPIPE_HOME made by
`vecpipe models path NAME` on each node). Nothing here is imported unless --engine ray is given.
"""
from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import orjson

from vecpipe.core.errors import DataError, IndexStoreError, ModelError, StorageError, UsageError, VecpipeError
from vecpipe.core.models.batching import WINDOW_RECORDS, EmbeddedWindow, EmbedOptions, EmbedStats, check_options
from vecpipe.formats.text import TextRecord

RETRIES = 3
ADDRESS_TIMEOUT_S = 10
RAY_LOG = os.path.join(tempfile.gettempdir(), "vecpipe-ray.log")  # Ray's own native log lines, kept off stderr
# Tests set this to a file path: the first actor call that finds the file deletes it and dies,
# as a killed worker would (Ray must restart the actor and retry its batch).
CRASH_ONCE_ENV = "VECPIPE_RAY_CRASH_ONCE"


@contextlib.contextmanager
def ray_output_aside() -> Iterator[None]:
    """Keep Ray's own output off vecpipe's streams for the whole run (enter it before any output opens).

    Ray's C++ workers write log lines straight to file descriptors 2 and 1, and its driver prints
    the raylet's messages (a worker that died, a task retried) to sys.stdout, where they would land
    among the records. While this is open, descriptors 1 and 2 point at a log file (RAY_LOG);
    sys.stdout's text (print) goes there too, while its `.buffer`, through which vecpipe writes
    its records, and sys.stderr, where vecpipe speaks to humans, are duplicates of the real ones.
    """
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    saved = {fd: os.dup(fd) for fd in (1, 2)}
    log = os.open(RAY_LOG, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    for fd in saved:
        os.dup2(log, fd)
    os.close(log)
    previous = sys.stdout, sys.stderr
    sys.stdout = _RecordsOnly(os.fdopen(os.dup(1), "w", buffering=1), os.fdopen(os.dup(saved[1]), "wb"))
    sys.stderr = os.fdopen(os.dup(saved[2]), "w", buffering=1)
    try:
        yield
    finally:
        ray = sys.modules.get("ray")
        if ray is not None and ray.is_initialized():
            ray.shutdown()  # its last messages (a worker that died) are printed here, still into the log
        for stream in (sys.stdout, sys.stdout.buffer, sys.stderr):
            try:
                stream.flush()
                stream.close()
            except (OSError, ValueError):  # a reader that left (| head) already had its quiet exit
                pass
        sys.stdout, sys.stderr = previous
        for fd, copy in saved.items():
            os.dup2(copy, fd)
            os.close(copy)


class _RecordsOnly:
    """sys.stdout during a Ray run: text printed to it (Ray's messages) goes to the log, bytes written
    to its buffer (vecpipe's records) to the real standard output."""

    def __init__(self, log, records):
        self._log, self.buffer = log, records

    def write(self, text: str) -> int:
        return self._log.write(text)

    def flush(self) -> None:
        self._log.flush()
        self.buffer.flush()

    def close(self) -> None:
        self._log.close()

    def fileno(self) -> int:
        return self.buffer.fileno()

    def isatty(self) -> bool:
        return self.buffer.isatty()


def start_ray(address: str | None, workers: int):
    """Join the cluster at `address`, or start a local one with `workers` CPUs."""
    if address:
        _check_reachable(address)
        _send_cluster_token()  # before Ray is imported: it reads its auth mode once, at import
    try:
        import ray
    except ImportError:
        raise UsageError("--engine ray needs the ray extra: pip install 'vecpipe[ray]'") from None
    import ray.data

    for name in ("ray", "ray.data"):  # Ray's progress and INFO lines are not vecpipe's output
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module=r"ray(\.|$)")  # Ray's advice to its own users is not vecpipe's output
    warnings.filterwarnings("ignore", message=".*ray_remote_args.*")  # max_restarts has no named parameter yet
    if not ray.is_initialized():
        # "local": a cluster of this run's own, even where `ray start` left one that ray.init would join
        options = {"address": address} if address else {"address": "local", "num_cpus": workers}
        try:
            ray.init(include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR, **options)
        except (ConnectionError, RuntimeError, ValueError) as exc:  # Ray's ways of saying it found no cluster there
            raise UsageError(f"cannot join the Ray cluster at {address or 'this machine'} ({str(exc).splitlines()[0][:200]})") from None
    context = ray.data.DataContext.get_current()
    context.execution_options.preserve_order = True
    context.enable_progress_bars = False
    return ray


def _check_reachable(address: str) -> None:
    """Refuse an address nothing listens on within seconds: ray.init would retry it for minutes."""
    import socket

    host, _, port = address.rpartition("://")[2].rpartition(":")
    if address == "auto" or not host:
        return  # "auto" (the cluster `ray start` left on this machine) is Ray's to find
    if not port.isdigit():
        raise UsageError(f"--address {address!r} is not HOST:PORT")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=ADDRESS_TIMEOUT_S).close()
    except OSError as exc:
        raise UsageError(f"cannot reach the Ray cluster at {address} ({exc.strerror or exc}); is `ray start --head` running there?") from None


def _send_cluster_token() -> None:
    """A cluster from `ray start` (Ray 2.5x and later) requires the token that command saved in
    ~/.ray/auth_token, and ray.init sends it only under RAY_AUTH_MODE=token: without it a join
    fails after 20 s of retries. Turned on when a token is at hand (a cluster without auth ignores it)."""
    has_token = os.environ.get("RAY_AUTH_TOKEN") or os.environ.get("RAY_AUTH_TOKEN_PATH") or (Path.home() / ".ray" / "auth_token").is_file()
    if "RAY_AUTH_MODE" not in os.environ and has_token:
        os.environ["RAY_AUTH_MODE"] = "token"


def _embedder(model, options: EmbedOptions, source: str) -> type:
    """The actor class, its settings bound in (constructor arguments would go through Ray's object
    store, which it warns cannot survive an actor restart). Plain values only: the class travels
    to every actor, and the driver's loaded model must not go with it."""
    settings = (str(model.dir), model.pooling, model.dim, options, source)

    class Embedder(_Embedder):
        def __init__(self):
            super().__init__(*settings)

    return Embedder


class _Embedder:
    """One Ray actor: the model loaded once, then batches of texts embedded as a local run does.

    Each text keeps its input line, so a refusal here (a text over --max-tokens under --on-long
    error) names the file and line a local run would. Refusals travel back as data, in an `error`
    column, because Ray re-raises an actor's exception wrapped, with its cause lost; the model is
    opened at the first batch for the same reason (a node without the model says so, exit 4).
    The batch's token and truncation counts ride in the first row of two count columns."""

    def __init__(self, model_dir: str, pooling: str, dim: int, options: EmbedOptions, source: str):
        self.model_dir, self.pooling, self.dim, self.options, self.source = model_dir, pooling, dim, options, source
        self.model = None

    def __call__(self, batch: dict) -> dict:
        marker = os.environ.get(CRASH_ONCE_ENV)
        if marker and os.path.exists(marker):
            os.remove(marker)
            os._exit(1)
        rows = len(batch["text"])
        tokens, truncated, errors = np.zeros(rows, np.int64), np.zeros(rows, np.int64), np.full(rows, "", dtype=object)
        try:
            vectors, stats = self._embed(batch)
        except VecpipeError as exc:
            errors[0] = orjson.dumps({"kind": type(exc).__name__, "message": exc.message, "source": exc.source, "line": exc.line}).decode()
            return {"embedding": np.zeros((rows, self.dim), np.float32), "tokens": tokens, "truncated": truncated, "error": errors}
        tokens[0], truncated[0] = stats.tokens, stats.truncated
        return {"embedding": vectors, "tokens": tokens, "truncated": truncated, "error": errors}

    def _embed(self, batch: dict) -> tuple[np.ndarray, EmbedStats]:
        from vecpipe.core.models.batching import embed_records
        from vecpipe.core.models.model import open_model

        if self.model is None:
            self.model = open_model(Path(self.model_dir), threads=1, pooling=self.pooling)
        records = [TextRecord(i, str(text), {}, int(line)) for i, (text, line) in enumerate(zip(batch["text"], batch["line"]))]
        stats = EmbedStats()
        windows = embed_records(self.model, records, self.options, self.source, stats)
        return np.concatenate([w.vectors for w in windows]), stats


def _refusal(error: str) -> VecpipeError:
    """The VecpipeError an actor sent back in its `error` column."""
    fields = orjson.loads(error)
    kinds = {kind.__name__: kind for kind in (UsageError, DataError, ModelError, IndexStoreError, StorageError)}
    return kinds.get(fields["kind"], VecpipeError)(fields["message"], fields["source"], fields["line"])


def embed_records_on_ray(model, records: Iterable[TextRecord], options: EmbedOptions, source: str, stats: EmbedStats,
                         workers: int, address: str | None = None) -> Iterator[EmbeddedWindow]:
    """embed_records' windows, computed by `workers` Ray actors; the texts are read whole first.
    Run it inside ray_output_aside() when stdout carries data."""
    check_options(model, options)
    if options.on_long == "chunk":
        raise UsageError("--engine ray does not chunk yet; use --on-long truncate or error")
    records = list(records)  # read (and checked, line by line) before any cluster starts
    if not records:
        return
    ray = start_ray(address, workers)
    blocks = max(1, min(len(records) // 256, workers * 8))
    dataset = ray.data.from_items([{"text": r.text, "line": r.line} for r in records], override_num_blocks=blocks)
    embedded = dataset.map_batches(
        _embedder(model, options, source),
        batch_size=min(WINDOW_RECORDS, 512),
        compute=ray.data.ActorPoolStrategy(size=min(workers, blocks)),  # no actor without a block to embed
        num_cpus=1,
        max_restarts=RETRIES,
        max_task_retries=RETRIES,
    )
    start = 0
    batches = embedded.iter_batches(batch_size=None, batch_format="numpy")
    try:
        for batch in batches:
            if batch["error"][0]:
                raise _refusal(batch["error"][0])
            vectors = batch["embedding"]
            window = records[start : start + len(vectors)]
            start += len(vectors)
            stats.texts += len(window)
            stats.tokens += int(batch["tokens"].sum())
            stats.truncated += int(batch["truncated"].sum())
            yield EmbeddedWindow(window, vectors, None)
    finally:
        # Stops Ray Data's executor threads now: after ray.shutdown() they would make Ray's C++ core
        # end the process (exit 1), as when a reader leaves early (| head).
        close = getattr(batches, "close", None)
        if close is not None:
            close()
    if start != len(records):
        raise VecpipeError(f"the Ray run returned {start} vectors for {len(records)} records", source)

