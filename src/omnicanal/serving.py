"""``omnicanal serve --workers N``: N serving processes, each with a listening socket of its own on the port.

The sockets share the port with ``SO_REUSEPORT``, so the kernel spreads the connections over the processes.
One socket shared by every process (uvicorn's own ``--workers``) leaves them to whichever process wakes
first, and that one takes every connection waiting: of a burst of 32 keep-alive connections, one process
held all 32 in two runs out of four and 23 in a third (bench/commerce.py, K1), so the other process idled
while this one was saturated. With the sockets of its own, the split of 32 was 14/18, 20/12, 16/16 and 13/19.

Each process builds its application from the environment the supervisor was started with; a process that
dies is started again. The supervisor is ``omnicanal serve`` itself, which replaces its interpreter with
``python -m omnicanal.serving`` once the database is ready (12 MiB instead of the CLI's 145).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import socket
import sys
import time
from multiprocessing.process import BaseProcess
from types import FrameType

_RESTART_AFTER = 1.0  # seconds before a process that ended is started again
# a process that ends this many seconds after it started, this many times in a row, stops the whole server
_EARLY = 15.0
_EARLY_DEATHS = 3
_STOP_GRACE = 20.0


def listening_socket(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port`` with ``SO_REUSEPORT``, listening."""
    family, kind, protocol, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, kind, protocol)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
        sock.listen(2048)
    except BaseException:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def port_in_use(host: str, port: int) -> bool:
    """Whether something already accepts connections there (``SO_REUSEPORT`` would otherwise share the port with
    another server started with it)."""
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
        return True
    return False


def _serve_one(host: str, port: int, log_level: str) -> None:
    import uvicorn

    from omnicanal.app import serving_app

    application = serving_app()
    # bound once the application is built: the kernel hands connections to a socket as soon as it listens
    sock = listening_socket(host, port)
    config = uvicorn.Config(application, host=host, port=port, log_level=log_level, access_log=False)
    uvicorn.Server(config).run(sockets=[sock])


class Supervisor:
    """Starts the serving processes, starts again one that dies, and stops them all on SIGINT or SIGTERM."""

    def __init__(self, host: str, port: int, workers: int, log_level: str) -> None:
        self.host, self.port, self.workers, self.log_level = host, port, workers, log_level
        self._context = multiprocessing.get_context("spawn")
        self._processes: list[BaseProcess] = []
        self._stopping = False
        self._started: dict[int, float] = {}

    def run(self) -> None:
        previous = {sig: signal.signal(sig, self._stop) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            self._processes = [self._start() for _ in range(self.workers)]
            early_deaths = 0
            while not self._stopping:
                time.sleep(0.2)
                for index, process in enumerate(self._processes):
                    if process.is_alive() or self._stopping:
                        continue
                    lived = time.monotonic() - self._started[process.pid or 0]
                    early_deaths = early_deaths + 1 if lived < _EARLY else 0
                    if early_deaths >= _EARLY_DEATHS:
                        raise SystemExit(f"the serving processes keep ending at startup (exit code {process.exitcode})")
                    print(f"serving process {process.pid} ended (exit code {process.exitcode}); starting another",
                          file=sys.stderr, flush=True)  # fmt: skip
                    time.sleep(_RESTART_AFTER)
                    self._processes[index] = self._start()
        finally:
            self._stop_all()
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _start(self) -> BaseProcess:
        process = self._context.Process(
            target=_serve_one, args=(self.host, self.port, self.log_level), name="omnicanal-serve"
        )
        process.start()
        self._started[process.pid or 0] = time.monotonic()
        return process

    def _stop(self, _signal: int, _frame: FrameType | None) -> None:
        self._stopping = True

    def _stop_all(self) -> None:
        for process in self._processes:
            if process.is_alive() and process.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    # uvicorn's graceful shutdown: open requests finish, the lifespan stops the writer threads
                    os.kill(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + _STOP_GRACE
        for process in self._processes:
            process.join(max(deadline - time.monotonic(), 0.1))
            if process.is_alive():
                process.kill()
                process.join()


def main(argv: list[str]) -> None:
    """``python -m omnicanal.serving HOST PORT WORKERS LOG_LEVEL``: what ``omnicanal serve --workers`` becomes once
    the database is ready (it replaces its own process with this one, which imports next to nothing: the
    supervisor stays at a tenth of a serving process's memory)."""
    host, port, workers, log_level = argv
    Supervisor(host, int(port), int(workers), log_level).run()


if __name__ == "__main__":
    main(sys.argv[1:])
