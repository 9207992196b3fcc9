"""Ray clusters for the commands that can run on one (`--engine ray`, the optional `ray` extra):
joining or starting a cluster, and keeping Ray's own output off vecpipe's streams.

Without `--address` a run starts a local cluster of its own; with it, vecpipe joins a running one
(`ray start --head` on one machine, `ray start --address=HEAD:6379` on the others). Nothing here
imports Ray until a cluster is asked for.
"""
from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Iterator

from vecpipe.core.errors import UsageError

RAY_LOG = os.path.join(tempfile.gettempdir(), "vecpipe-ray.log")  # Ray's own native log lines, kept off stderr
ADDRESS_TIMEOUT_S = 10


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
