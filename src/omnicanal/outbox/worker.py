"""The outbox worker: claims due items, hands them to transports, records every outcome.

Runs as a thread inside ``omnicanal serve`` (default) or as ``omnicanal worker`` processes.
An item's outcome is recorded right after its attempt, so a provider is asked again only
when the first attempt's outcome is unknown (the worker died mid-send); the item id is sent
as the idempotency key, so even then the provider can recognise the repeat.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from omnicanal.db import Database, utcnow
from omnicanal.outbox.service import Claimed, Outcome, any_due, claim_due, record_outcomes
from omnicanal.outbox.transports import DeliveryError, Envelope, Sent, TransportRegistry

log = logging.getLogger(__name__)


class TokenBucket:
    """``rate`` sends per second; bursts up to ``max(rate, 1)`` (a rate below 1/s still sends, just rarely)."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.capacity = max(rate, 1.0)
        self.tokens = self.capacity
        self.stamp = time.monotonic()

    def available(self) -> int:
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        return int(self.tokens)

    def take(self, count: int) -> None:
        self.tokens -= count


@dataclass
class _Outcome:
    item: Claimed
    started_at: datetime
    duration_ms: int
    sent: Sent | None
    error: DeliveryError | None

    def as_recorded(self) -> Outcome:
        if self.sent is not None:
            return Outcome(
                item_id=self.item.id, attempt=self.item.attempt, started_at=self.started_at,
                duration_ms=self.duration_ms, sent=True, provider_id=self.sent.provider_id,
                status_code=self.sent.status_code, detail=self.sent.detail,
            )  # fmt: skip
        assert self.error is not None
        return Outcome(
            item_id=self.item.id, attempt=self.item.attempt, started_at=self.started_at,
            duration_ms=self.duration_ms, sent=False, status_code=self.error.status_code, detail=self.error.detail,
            permanent=self.error.permanent,
        )  # fmt: skip


class OutboxWorker:
    def __init__(
        self,
        database: Database,
        registry: TransportRegistry,
        *,
        wakeup: threading.Event | None = None,
        batch_size: int = 200,
        lease_seconds: float | None = None,
        senders: int = 8,
        rate_limits: dict[str, float] | None = None,
        poll_interval: float = 0.5,
        periodic: list[Callable[[Session], Any]] | None = None,
        periodic_interval: float = 5.0,
        background: list[Callable[[Database], Any]] | None = None,
    ) -> None:
        self.database = database
        self.registry = registry
        self.wakeup = wakeup or threading.Event()
        self.batch_size = batch_size
        if lease_seconds is None:
            lease_seconds = float(getattr(database.settings, "outbox_lease_seconds", 60.0))
        self.lease = timedelta(seconds=lease_seconds)
        self.poll_interval = poll_interval
        self._buckets = {channel: TokenBucket(rate) for channel, rate in (rate_limits or {}).items()}
        self._pool = ThreadPoolExecutor(max_workers=senders, thread_name_prefix="omnicanal-send")
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        # small housekeeping jobs (wake snoozed conversations, ...) run between batches
        self.periodic = periodic or []
        # jobs that open their own transactions (a long read must not hold the write lock), same schedule
        self.background = background or []
        self.periodic_interval = periodic_interval
        self._next_periodic = 0.0

    def start(self) -> None:
        if self._thread is None:
            self._stopping.clear()
            self._thread = threading.Thread(target=self.run_forever, name="omnicanal-outbox", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self.wakeup.set()
        if self._thread is not None:
            self._thread.join(timeout=15)
            self._thread = None
        self._pool.shutdown(wait=True, cancel_futures=True)

    def run_periodic(self) -> None:
        if not self.periodic or time.monotonic() < self._next_periodic:
            return
        self._next_periodic = time.monotonic() + self.periodic_interval
        for job in self.periodic:
            try:
                with self.database.write_in_turn() as session:
                    job(session)
            except Exception:
                log.exception("background job %s failed", getattr(job, "__name__", job))
        for own in self.background:
            try:
                own(self.database)
            except Exception:
                log.exception("background job %s failed", getattr(own, "__name__", own))

    def run_forever(self) -> None:
        while not self._stopping.is_set():
            self.run_periodic()
            try:
                done = self.run_once()
            except OperationalError:
                log.warning("outbox: database busy, retrying", exc_info=True)
                done = 0
            except Exception:
                log.exception("outbox: unexpected error")
                done = 0
            if done == 0:
                self.wakeup.wait(self.poll_interval)
                self.wakeup.clear()

    def run_once(self) -> int:
        """Deliver one batch; returns how many items were attempted."""
        budget = {channel: bucket.available() for channel, bucket in self._buckets.items()}
        if self.database.is_sqlite:
            # SQLite has one write lock for the whole file: an idle poll that took it would make the ingest
            # writer wait in SQLite's busy back-off twice a second. A read never blocks a writer.
            with self.database.read() as session:
                if not any_due(session, now=utcnow(), channels=budget):
                    return 0
        with self.database.write_in_turn() as session:
            claimed = claim_due(session, now=utcnow(), limit=self.batch_size, lease=self.lease, channels=budget)
        if not claimed:
            return 0
        for item in claimed:
            bucket = self._buckets.get(item.channel)
            if bucket is not None:
                bucket.take(1)
        # Senders hand each outcome over as soon as it is known; this thread records whatever has arrived
        # in one transaction while the rest are still being sent. A worker that dies mid-batch leaves
        # only the items in flight (or in the last unrecorded handful) to be tried again, with the same key.
        arrived: queue.SimpleQueue[_Outcome | None] = queue.SimpleQueue()
        sends = [self._pool.submit(self._send_into, item, arrived) for item in claimed]
        left = len(claimed)
        while left:
            batch = [arrived.get()]
            while len(batch) < left:
                try:
                    batch.append(arrived.get_nowait())
                except queue.Empty:
                    break
            left -= len(batch)
            outcomes = [outcome for outcome in batch if outcome is not None]
            if outcomes:
                self._record_batch(outcomes)
        for send in sends:
            send.result()
        return len(claimed)

    def _send_into(self, item: Claimed, arrived: queue.SimpleQueue[_Outcome | None]) -> None:
        outcome = None  # nothing to record if the attempt itself blew up: the lease brings the item back
        try:
            outcome = self._attempt(item)
        finally:
            arrived.put(outcome)

    def _record_batch(self, batch: list[_Outcome]) -> None:
        for retry in range(3):
            try:
                self._record(batch)
                return
            except OperationalError:
                log.warning("outbox: database busy recording outcomes (try %d)", retry + 1, exc_info=True)
                time.sleep(0.2 * (retry + 1))
            except Exception:
                if len(batch) > 1:
                    # one outcome that cannot be recorded must not hold back the others
                    for outcome in batch:
                        self._record_batch([outcome])
                    return
                log.exception("outbox: could not record the outcome of %s", batch[0].item.id)
                return
        # Not recorded: the lease runs out and the items go again, with the same idempotency keys.
        for outcome in batch:
            log.error("outbox: could not record the outcome of %s; it is tried again when its lease ends",
                      outcome.item.id)  # fmt: skip

    def _record(self, batch: list[_Outcome]) -> None:
        with self.database.write_in_turn() as session:
            record_outcomes(session, [outcome.as_recorded() for outcome in batch])

    def _attempt(self, item: Claimed) -> _Outcome:
        started_at = utcnow()
        clock = time.perf_counter()
        envelope = Envelope(str(item.id), item.kind, item.channel, item.payload, item.attempt)
        try:
            sent = self.registry.for_channel(item.channel).send(envelope)
            error = None
        except DeliveryError as exc:
            sent, error = None, exc
        except Exception as exc:  # a transport bug must not kill the worker
            log.exception("outbox: transport for %s raised", item.channel)
            sent, error = None, DeliveryError(f"{type(exc).__name__}: {exc}")
        duration_ms = int((time.perf_counter() - clock) * 1000)
        return _Outcome(item, started_at, duration_ms, sent, error)

    def drain(self, *, timeout: float = 10.0) -> None:
        """Deliver until nothing is due (tests, CLI)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.run_once():
            pass
