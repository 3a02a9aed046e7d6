"""A messaging provider double, reached over real HTTP like the real ones.

Records every request; answers a repeated ``Idempotency-Key`` with the first answer without
delivering again; can be told to fail the next requests or to be slow.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Request:
    key: str
    body: dict[str, Any]
    received_at: float
    answered_at: float | None = None
    status: int | None = None


class ProviderDouble:
    def __init__(self, *, delay: float = 0.0) -> None:
        self.delay = delay
        self.requests: list[Request] = []
        self.delivered: dict[str, str] = {}  # idempotency key -> provider message id
        self._failures: list[int] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    # -- control ------------------------------------------------------------------------------
    def fail_next(self, *statuses: int) -> None:
        with self._lock:
            self._failures.extend(statuses)

    def keys(self) -> Counter[str]:
        with self._lock:
            return Counter(r.key for r in self.requests)

    def answered_before(self, moment: float) -> set[str]:
        with self._lock:
            return {r.key for r in self.requests if r.answered_at is not None and r.answered_at < moment}

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}/send"

    def start(self) -> ProviderDouble:
        double = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                return None

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length) or b"{}")
                status, answer = double.handle(self.headers.get("Idempotency-Key", ""), body)
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: Any, client_address: Any) -> None:
                return None  # a sender killed mid-request: the answer has nobody to go to

        self._server = Server(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, name="provider-double", daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    # -- the provider ------------------------------------------------------------------------
    def handle(self, key: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        request = Request(key, body, time.monotonic())
        with self._lock:
            self.requests.append(request)
            failure = self._failures.pop(0) if self._failures else None
        if failure is not None:
            status, answer = failure, {"error": f"told to fail with {failure}"}
        elif not key:
            status, answer = 400, {"error": "Idempotency-Key header required"}
        else:
            with self._lock:
                known = self.delivered.get(key)
            if known is not None:
                status, answer = 200, {"id": known, "duplicate": True}
            else:
                time.sleep(self.delay)
                with self._lock:
                    provider_id = self.delivered.setdefault(key, f"prov-{len(self.delivered) + 1}")
                status, answer = 200, {"id": provider_id}
        request.answered_at, request.status = time.monotonic(), status
        return status, answer
