"""How an outbox item leaves: one transport per channel, chosen by configuration.

Channel adapters register their own transports; until then every channel can be pointed at
the ``log`` transport (development) or at an HTTP endpoint (a provider double, a relay).
"""

from __future__ import annotations

import http.client
import json
import logging
import threading
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any, Protocol

import httpx
import orjson

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Envelope:
    """What a transport gets: the item's id doubles as the provider-side idempotency key."""

    id: str
    kind: str
    channel: str
    payload: dict[str, Any]
    attempt: int


@dataclass(frozen=True)
class Sent:
    provider_id: str | None = None
    status_code: int | None = None
    detail: str = ""


class DeliveryError(Exception):
    """A failed attempt. ``permanent`` failures are not retried."""

    def __init__(self, detail: str, *, permanent: bool = False, status_code: int | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.permanent = permanent
        self.status_code = status_code


class Transport(Protocol):
    def send(self, envelope: Envelope) -> Sent: ...


class LogTransport:
    """Delivers by writing a log line (no personal data: ids and sizes only)."""

    def send(self, envelope: Envelope) -> Sent:
        log.info("delivered %s %s on %s (%d bytes)", envelope.kind, envelope.id, envelope.channel,
                 len(str(envelope.payload)))  # fmt: skip
        return Sent(provider_id=f"log-{envelope.id}")


class HttpTransport:
    """POSTs the envelope as JSON; 2xx is sent, 3xx and 4xx (but 408/409/425/429) are permanent, the rest retried."""

    def __init__(self, url: str, *, timeout: float = 10.0, headers: dict[str, str] | None = None) -> None:
        self.url = url
        self._lock = threading.Lock()
        self._timeout = timeout
        self._headers = headers or {}
        self._shared: httpx.Client | None = None
        self._plain = _PlainHttp(url, timeout=timeout, headers=self._headers) if _PlainHttp.usable(url) else None

    def _client(self) -> httpx.Client:
        # One client (thread-safe, with a keep-alive pool) for every sender thread: building one is costly
        # (an SSL context each), and connections are reused across threads.
        client = self._shared
        if client is None:
            with self._lock:
                client = self._shared
                if client is None:
                    client = self._shared = httpx.Client(timeout=self._timeout, headers=self._headers)
        return client

    def send(self, envelope: Envelope) -> Sent:
        body = {"id": envelope.id, "kind": envelope.kind, "channel": envelope.channel, "payload": envelope.payload}
        if self._plain is not None:
            return self._plain.send(orjson.dumps(body), {"Idempotency-Key": envelope.id})
        try:
            response = self._client().post(self.url, json=body, headers={"Idempotency-Key": envelope.id})
        except httpx.HTTPError as exc:
            raise DeliveryError(f"{type(exc).__name__}: {exc}") from None
        return classify_response(response)


class _PlainHttp:
    """POSTs to one ``http://`` endpoint over a keep-alive connection per sender thread (``http.client``).

    The same requests and answers as through httpx, at a fraction of the CPU (bench/conversations.py, C4):
    no redirects followed, the response given to :func:`classify_response` as an ``httpx.Response``.
    Used only where httpx would not add anything: plain http, no proxy configured for it.
    """

    def __init__(self, url: str, *, timeout: float, headers: dict[str, str]) -> None:
        parts = urllib.parse.urlsplit(url)
        self.host, self.port = parts.hostname or "localhost", parts.port or 80
        self.path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self.url = url
        self.timeout = timeout
        self.headers = {"Content-Type": "application/json", "Accept": "*/*", **headers}
        self._local = threading.local()

    @staticmethod
    def usable(url: str) -> bool:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme != "http" or parts.username or parts.password:
            return False
        proxies = urllib.request.getproxies()
        return "http" not in proxies and "all" not in proxies

    def send(self, body: bytes, headers: dict[str, str]) -> Sent:
        """:func:`classify_response` of the answer; a 2xx is classified without building an ``httpx.Response``."""
        status, answer_headers, content = self._exchange(body, headers)
        if 200 <= status < 300 and not any(name.lower() == "content-encoding" for name, _ in answer_headers):
            return Sent(provider_id=_provider_id(content), status_code=status)
        return classify_response(self._as_response(status, answer_headers, content))

    def post(self, body: bytes, headers: dict[str, str]) -> httpx.Response:
        return self._as_response(*self._exchange(body, headers))

    def _as_response(self, status: int, headers: list[tuple[str, str]], content: bytes) -> httpx.Response:
        return httpx.Response(status, headers=headers, content=content, request=httpx.Request("POST", self.url))

    def _exchange(self, body: bytes, headers: dict[str, str]) -> tuple[int, list[tuple[str, str]], bytes]:
        for retry in (False, True):
            connection: http.client.HTTPConnection | None = getattr(self._local, "connection", None)
            reused = connection is not None
            if connection is None:
                connection = self._local.connection = http.client.HTTPConnection(
                    self.host, self.port, timeout=self.timeout
                )
            try:
                connection.request("POST", self.path, body=body, headers={**self.headers, **headers})
                answer = connection.getresponse()
                content = answer.read()
            except (OSError, http.client.HTTPException) as exc:
                connection.close()
                self._local.connection = None
                # A kept-alive connection the server had closed fails before any answer: the same request
                # once more on a new connection (same idempotency key, as a retry after a lease would be).
                stale = isinstance(exc, (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError))
                if reused and stale and not retry:
                    continue
                raise DeliveryError(f"{type(exc).__name__}: {exc}") from None
            if answer.will_close:
                connection.close()
                self._local.connection = None
            return answer.status, answer.getheaders(), content
        raise AssertionError("unreachable")


def _provider_id(content: bytes) -> str | None:
    """The provider's id in a 2xx answer's JSON body, as :func:`classify_response` reads it."""
    try:
        data = json.loads(content)
    except ValueError:
        return None
    if isinstance(data, dict):
        raw = data.get("id") or data.get("sid") or data.get("message_id")
        return str(raw) if raw is not None else None
    return None


def classify_response(response: httpx.Response) -> Sent:
    code = response.status_code
    if 200 <= code < 300:
        return Sent(provider_id=_provider_id(response.content), status_code=code)
    detail = f"HTTP {code}: {response.text[:300]}"
    permanent = (300 <= code < 400) or (400 <= code < 500 and code not in (408, 409, 425, 429))
    raise DeliveryError(detail, permanent=permanent, status_code=code)


class TransportRegistry:
    def __init__(self, default: Transport | None = None) -> None:
        self._by_channel: dict[str, Transport] = {}
        self.default: Transport = default or LogTransport()

    def register(self, channel: str, transport: Transport) -> None:
        self._by_channel[channel] = transport

    def for_channel(self, channel: str) -> Transport:
        return self._by_channel.get(channel, self.default)


def registry_from_settings(endpoints: dict[str, str]) -> TransportRegistry:
    """``OMNICANAL_CHANNEL_ENDPOINTS='{"sms": "http://relay/sms", "*": "log"}'``."""
    registry = TransportRegistry()
    for channel, target in endpoints.items():
        transport: Transport = LogTransport() if target == "log" else HttpTransport(target)
        if channel == "*":
            registry.default = transport
        else:
            registry.register(channel, transport)
    return registry
