"""Real-time fan-out of committed changes to connected consoles and API streams.

In-process by default. With ``OMNICANAL_REDIS_URL`` every process publishes to one Redis
channel and delivers what it hears there to its own subscribers, so an agent connected to
one server sees a message taken in by another.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import weakref
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import orjson
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from omnicanal.aftercommit import on_commit

log = logging.getLogger(__name__)
REDIS_CHANNEL = "omnicanal:realtime"
_QUEUE_LIMIT = 1000


@dataclass
class _Subscriber:
    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue[dict[str, Any]]

    def offer(self, item: dict[str, Any]) -> None:
        if self.queue.qsize() >= _QUEUE_LIMIT:
            # a stalled client loses its oldest updates, never the server's memory
            self.queue.get_nowait()
        self.queue.put_nowait(item)

    def offer_all(self, items: list[dict[str, Any]]) -> None:
        for item in items:
            self.offer(item)


class Broadcaster:
    """Local fan-out; :meth:`publish` may be called from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subscribers: list[_Subscriber] = []

    def start(self) -> None:
        return None

    def stop(self) -> None:
        return None

    def publish(self, item: dict[str, Any]) -> None:
        self.deliver_locally(item)

    def publish_all(self, items: list[dict[str, Any]]) -> None:
        """Several items in order, handed to each subscriber's event loop at once (one wake-up for all)."""
        self.deliver_all_locally(items)

    def deliver_locally(self, item: dict[str, Any]) -> None:
        self.deliver_all_locally([item])

    def deliver_all_locally(self, items: list[dict[str, Any]]) -> None:
        with self._lock:
            subscribers = list(self._subscribers)
        for subscriber in subscribers:
            try:
                subscriber.loop.call_soon_threadsafe(subscriber.offer_all, items)
            except RuntimeError:
                self._drop(subscriber)

    def _drop(self, subscriber: _Subscriber) -> None:
        with self._lock:
            if subscriber in self._subscribers:
                self._subscribers.remove(subscriber)

    def open(self, *, heartbeat_seconds: float = 15.0) -> Subscription:
        """Start receiving now (not at the first ``await``); close the subscription when done."""
        subscriber = _Subscriber(asyncio.get_running_loop(), asyncio.Queue())
        with self._lock:
            self._subscribers.append(subscriber)
        return Subscription(self, subscriber, heartbeat_seconds)

    async def subscribe(self, *, heartbeat_seconds: float = 15.0) -> AsyncIterator[dict[str, Any]]:
        """Committed changes as they happen; ``{"type": "ping"}`` when idle, to keep proxies open."""
        subscription = self.open(heartbeat_seconds=heartbeat_seconds)
        try:
            async for item in subscription:
                yield item
        finally:
            subscription.close()

    @property
    def subscriber_count(self) -> int:
        with self._lock:
            return len(self._subscribers)


class Subscription:
    """One listener's updates, registered from the moment :meth:`Broadcaster.open` returns."""

    def __init__(self, broadcaster: Broadcaster, subscriber: _Subscriber, heartbeat_seconds: float) -> None:
        self._broadcaster = broadcaster
        self._subscriber = subscriber
        self._heartbeat = heartbeat_seconds

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> dict[str, Any]:
        try:
            return await asyncio.wait_for(self._subscriber.queue.get(), timeout=self._heartbeat)
        except TimeoutError:
            return {"type": "ping"}

    def close(self) -> None:
        self._broadcaster._drop(self._subscriber)


class RedisBroadcaster(Broadcaster):
    def __init__(self, url: str) -> None:
        super().__init__()
        import redis

        self._redis = redis.Redis.from_url(url)
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._ready = threading.Event()

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._listen, name="omnicanal-redis", daemon=True)
            self._thread.start()
            self._ready.wait(timeout=5)

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        self._redis.close()

    def publish(self, item: dict[str, Any]) -> None:
        try:
            self._redis.publish(REDIS_CHANNEL, orjson.dumps(item))
        except Exception:
            log.exception("could not publish to Redis; delivering locally only")
            self.deliver_locally(item)

    def publish_all(self, items: list[dict[str, Any]]) -> None:
        """Each item as its own Redis message (what every listener expects), sent in one round trip."""
        try:
            pipeline = self._redis.pipeline(transaction=False)
            for item in items:
                pipeline.publish(REDIS_CHANNEL, orjson.dumps(item))
            pipeline.execute()
        except Exception:
            log.exception("could not publish to Redis; delivering locally only")
            self.deliver_all_locally(items)

    def _listen(self) -> None:
        while not self._stopping.is_set():
            try:
                pubsub = self._redis.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]
                pubsub.subscribe(REDIS_CHANNEL)
                self._ready.set()
                while not self._stopping.is_set():
                    message = pubsub.get_message(timeout=0.5)
                    if message and message.get("type") == "message":
                        self.deliver_locally(orjson.loads(message["data"]))
                pubsub.close()
            except Exception:
                log.exception("Redis subscription lost; reconnecting")
                time.sleep(0.5)


@dataclass
class Runtime:
    """What after-commit work needs from the running process, found through the engine."""

    broadcaster: Broadcaster = field(default_factory=Broadcaster)
    outbox_wakeup: threading.Event = field(default_factory=threading.Event)
    settings: Any = None


_runtimes: weakref.WeakKeyDictionary[Engine, Runtime] = weakref.WeakKeyDictionary()


def attach_runtime(engine: Engine, runtime: Runtime) -> None:
    _runtimes[engine] = runtime


def runtime_of(engine: Engine) -> Runtime | None:
    """The runtime of the process that owns this (write) engine, for code that has no session."""
    return _runtimes.get(engine)


def runtime_for(session: Session) -> Runtime | None:
    bind = session.get_bind()
    engine = bind if isinstance(bind, Engine) else bind.engine
    return _runtimes.get(engine)


def publish_after_commit(session: Session, item: dict[str, Any]) -> None:
    runtime = runtime_for(session)
    if runtime is not None:
        on_commit(session, lambda: runtime.broadcaster.publish(item))


def publish_all_after_commit(session: Session, items: list[dict[str, Any]]) -> None:
    """:func:`publish_after_commit` of several items, handed over at once after commit."""
    runtime = runtime_for(session)
    if runtime is not None and items:
        on_commit(session, lambda: runtime.broadcaster.publish_all(items))


def wake_outbox_after_commit(session: Session) -> None:
    runtime = runtime_for(session)
    if runtime is not None:
        on_commit(session, runtime.outbox_wakeup.set, once_key="outbox-wakeup")


def create_broadcaster(redis_url: str | None) -> Broadcaster:
    return RedisBroadcaster(redis_url) if redis_url else Broadcaster()
