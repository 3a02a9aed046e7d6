"""Real HTTP servers for tests.

- ``LiveServer(app)``: serves an ASGI app with uvicorn in a background thread of the test process, on
  127.0.0.1 and a free port (the socket is bound before uvicorn starts, so there is no port race).
- ``ServerProcess(args, port=..., env=...)``: runs a command (e.g. ``omnicanal serve``) as a subprocess and
  waits until ``GET /healthz`` answers 200.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import uvicorn

# Never send requests for 127.0.0.1 through an HTTP proxy configured in the environment.
_NO_PROXY_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (another process could still take it before you bind it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def http_status(url: str, *, timeout: float = 2.0) -> int | None:
    """Status code of ``GET url`` (no proxy), or None if the server could not be reached."""
    try:
        with _NO_PROXY_OPENER.open(url, timeout=timeout) as response:
            status: int = response.status
            return status
    except urllib.error.HTTPError as exc:
        return exc.code
    except (urllib.error.URLError, OSError):
        return None


class LiveServer:
    """An ASGI app served by uvicorn in a daemon thread. ``base_url`` is ``http://127.0.0.1:{port}``."""

    def __init__(self, app: Callable[..., Any], *, host: str = "127.0.0.1", startup_timeout: float = 30.0):
        self.app = app
        self.host = host
        self.port = 0
        self.startup_timeout = startup_timeout
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def url(self, path: str = "/") -> str:
        return self.base_url + (path if path.startswith("/") else "/" + path)

    def start(self) -> LiveServer:
        if self._thread is not None:
            return self
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, 0))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            self.app, host=self.host, port=self.port, log_level="warning", timeout_graceful_shutdown=5
        )
        server = uvicorn.Server(config)
        self._server = server
        self._error = None

        def serve() -> None:
            try:
                server.run(sockets=[sock])
            except BaseException as exc:  # SystemExit on lifespan startup failure included
                self._error = exc
            finally:
                sock.close()

        self._thread = threading.Thread(target=serve, name=f"live-server-{self.port}", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + self.startup_timeout
        while not server.started:
            if not self._thread.is_alive():
                self._thread = None
                raise RuntimeError(f"uvicorn stopped during startup: {self._error!r}") from self._error
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"uvicorn did not start within {self.startup_timeout:.0f}s")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        server, thread = self._server, self._thread
        self._server, self._thread = None, None
        if server is None or thread is None:
            return
        server.should_exit = True
        thread.join(timeout=10)
        if thread.is_alive():
            server.force_exit = True
            thread.join(timeout=5)

    def __enter__(self) -> LiveServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<LiveServer {self.base_url} running={self._thread is not None}>"


class ServerProcess:
    """A server command run as a subprocess (in its own process group) that serves HTTP on ``port``.

    ``env`` entries are added to (override) the current environment. ``start()`` returns once
    ``GET http://127.0.0.1:{port}/healthz`` answers 200; the process's combined stdout/stderr is
    available from ``output()``, also after ``stop()``.
    """

    def __init__(
        self,
        args: Sequence[str],
        *,
        port: int,
        env: Mapping[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
        host: str = "127.0.0.1",
        health_path: str = "/healthz",
        startup_timeout: float = 30.0,
    ) -> None:
        self.args = [str(a) for a in args]
        self.port = port
        self.env = dict(env or {})
        self.cwd = cwd
        self.host = host
        self.health_path = health_path
        self.startup_timeout = startup_timeout
        self.process: subprocess.Popen[bytes] | None = None
        self._log_dir: Path | None = None
        self._final_output = ""

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def url(self, path: str = "/") -> str:
        return self.base_url + (path if path.startswith("/") else "/" + path)

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def output(self) -> str:
        """Everything the process wrote to stdout/stderr so far."""
        if self._log_dir is None:
            return self._final_output
        with contextlib.suppress(OSError):
            return (self._log_dir / "output.log").read_text("utf-8", "replace")
        return ""

    def start(self) -> ServerProcess:
        if self.process is not None:
            return self
        if http_status(self.url(self.health_path), timeout=0.5) is not None:
            raise RuntimeError(f"something is already serving on {self.base_url}; pick a free port")
        self._log_dir = Path(tempfile.mkdtemp(prefix="omnicanal-server-"))
        with open(self._log_dir / "output.log", "wb") as log:
            self.process = subprocess.Popen(
                self.args,
                env={**os.environ, **self.env},
                cwd=self.cwd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + self.startup_timeout
        health_url = self.url(self.health_path)
        last_status: int | None = None
        while True:
            code = self.process.poll()
            if code is not None:
                self.stop()
                raise RuntimeError(f"{' '.join(self.args)} exited with code {code} before serving:\n{self._tail()}")
            last_status = http_status(health_url, timeout=1.0)
            if last_status == 200:
                return self
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(
                    f"{' '.join(self.args)}: GET {health_url} did not answer 200 within "
                    f"{self.startup_timeout:.0f}s (last status: {last_status}):\n{self._tail()}"
                )
            time.sleep(0.1)

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM the process group, SIGKILL it after ``timeout`` s; returns the exit code."""
        process, self.process = self.process, None
        code: int | None = None
        if process is not None:
            if process.poll() is None:
                self._signal_group(process, signal.SIGTERM)
                try:
                    process.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    self._signal_group(process, signal.SIGKILL)
                    process.wait(timeout=10)
            # Reap any helper the server left behind in its group (e.g. uvicorn workers).
            self._signal_group(process, signal.SIGKILL)
            code = process.returncode
        if self._log_dir is not None:
            self._final_output = self.output()
            with contextlib.suppress(OSError):
                (self._log_dir / "output.log").unlink()
                self._log_dir.rmdir()
            self._log_dir = None
        return code

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<ServerProcess {self.base_url} pid={self.pid}>"

    def _tail(self, lines: int = 40) -> str:
        return "\n".join(self.output().splitlines()[-lines:])

    @staticmethod
    def _signal_group(process: subprocess.Popen[bytes], sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, sig)
