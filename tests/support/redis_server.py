"""A throwaway Redis server for the test session.

``RedisServer().start()`` runs ``redis-server`` on 127.0.0.1 and a free port, without persistence, in a
temporary directory, and waits until it answers PING. ``stop()`` terminates it and removes the directory.

If ``OMNICANAL_TEST_REDIS_URL`` is set, nothing is started: that server is used instead.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from urllib.parse import urlsplit

EXTERNAL_URL_ENV = "OMNICANAL_TEST_REDIS_URL"
BINARY_ENV = "OMNICANAL_REDIS_SERVER"


class RedisUnavailableError(RuntimeError):
    """redis-server could not be found or started."""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def find_redis_server() -> str:
    """Path of the ``redis-server`` binary (``$OMNICANAL_REDIS_SERVER``, else ``PATH``, else /usr/sbin)."""
    candidates = [os.environ.get(BINARY_ENV), shutil.which("redis-server"), "/usr/sbin/redis-server"]
    for candidate in candidates:
        if candidate and os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    raise RedisUnavailableError(
        "redis-server not found. Install it (Debian: `apt-get install redis-server`, or run "
        f"scripts/install-system-deps), point ${BINARY_ENV} at it, or set ${EXTERNAL_URL_ENV}."
    )


def ping(host: str, port: int, *, timeout: float = 1.0) -> bool:
    """True if a Redis server at ``host:port`` answers PING with PONG (inline protocol, no client library)."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """A Redis server for tests: a private throwaway one, or the one at ``$OMNICANAL_TEST_REDIS_URL``."""

    def __init__(self, *, external_url: str | None = None, startup_timeout: float = 30.0) -> None:
        self.external_url: str | None = external_url or os.environ.get(EXTERNAL_URL_ENV) or None
        self.startup_timeout = startup_timeout
        self.host = "127.0.0.1"
        self.port = 0
        self.tempdir: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None
        if self.external_url:
            parts = urlsplit(self.external_url)
            self.host = parts.hostname or "localhost"
            self.port = parts.port or 6379

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:{port}/0`` (or the external URL)."""
        if self.external_url:
            return self.external_url
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def external(self) -> bool:
        return self.external_url is not None

    def start(self) -> RedisServer:
        if self.external_url or self._process is not None:
            return self
        binary = find_redis_server()
        self.tempdir = Path(tempfile.mkdtemp(prefix="omnicanal-redis-"))
        atexit.register(self.stop)
        try:
            for _attempt in range(5):
                if self._start_once(binary):
                    return self
            raise RedisUnavailableError(f"redis-server could not bind a free port:\n{self._log_tail()}")
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        atexit.unregister(self.stop)
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        if self.tempdir is not None:
            shutil.rmtree(self.tempdir, ignore_errors=True)
            self.tempdir = None

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<RedisServer {self.url} running={self._process is not None}>"

    def _log_tail(self, lines: int = 30) -> str:
        if self.tempdir is None:
            return ""
        with contextlib.suppress(OSError):
            text = (self.tempdir / "redis.log").read_text("utf-8", "replace")
            return "\n".join(text.splitlines()[-lines:])
        return "(no log)"

    def _start_once(self, binary: str) -> bool:
        """Start on a fresh free port; True once it answers PING, False if the port was taken meanwhile."""
        assert self.tempdir is not None
        self.port = _free_port()
        with open(self.tempdir / "redis.log", "wb") as log:
            self._process = subprocess.Popen(
                [
                    binary,
                    "--port",
                    str(self.port),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                    str(self.tempdir),
                    "--daemonize",
                    "no",
                ],
                cwd=self.tempdir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if ping(self.host, self.port, timeout=0.5):
                return True
            code = self._process.poll()
            if code is not None:
                self._process = None
                log_tail = self._log_tail()
                if "Address already in use" in log_tail:
                    return False
                raise RedisUnavailableError(f"redis-server exited with code {code}:\n{log_tail}")
            time.sleep(0.05)
        raise RedisUnavailableError(
            f"redis-server did not answer PING within {self.startup_timeout:.0f}s:\n{self._log_tail()}"
        )
