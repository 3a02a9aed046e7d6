"""In-process benchmarks, run in a child process of ``run.py`` so that its peak RSS is its own.

``python bench/inproc.py b2 --url URL [--batches N] [--batch 1000] [--ceiling PATH]``
    ``omnicanal.timeline.service.ingest`` on batches (each in its own write transaction), and
    optionally the ceiling: raw sqlite3 ``executemany`` of the same rows into an equivalent table.
``python bench/inproc.py seed --url URL``
    create the pool of returning customers of the B1/B2 mix (bench/lua/events.lua) in a database.
``python bench/inproc.py b3 --url URL --ids FILE [--calls N]``
    what ``GET /customers/{id}/360`` runs in its worker thread (``customers.api._read_360``: the read
    and the JSON bytes) for random customers, and on the same customers the model path
    (``customer_360`` + pydantic), which also checks that both give the same document.

Prints one JSON line (prefixed ``RESULT``) with the figures and this process's peak RSS.
"""

from __future__ import annotations

import argparse
import json
import random
import sqlite3
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime
from typing import Any, ClassVar

from omnicanal import handlers
from omnicanal.db import create_database, utcnow
from omnicanal.settings import Settings


def peak_rss_mib(pid: str = "self") -> float:
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]

    return {
        "mean": statistics.fmean(ordered),
        "50": at(50),
        "90": at(90),
        "99": at(99),
        "99.9": at(99.9),
        "max": ordered[-1],
    }


REGULARS = 20_000
NEW_SHARE = 0.2


class EventMaker:
    """The same mix as bench/lua/events.lua: 20 % new customers, 80 % returning ones (the pool that
    :func:`seed_regulars` creates first)."""

    TYPES: ClassVar[list[tuple[str, str]]] = [
        ("page.viewed", "web"),
        ("product.viewed", "app"),
        ("order.placed", "pos"),
        ("message.received", "whatsapp"),
        ("cart.updated", "web"),
        ("store.visited", "store"),
    ]

    def __init__(self, nonce: str, regulars: int = REGULARS, seed: int = 1) -> None:
        self.nonce = nonce
        self.regulars = regulars
        self.rng = random.Random(seed)
        self.counter = 0

    def one(self) -> dict[str, Any]:
        rng = self.rng
        self.counter += 1
        event_id = f"p-{self.nonce}-{self.counter}"
        if rng.random() < NEW_SHARE:
            identities = [{"type": "email", "value": f"{event_id}@example.org"}]
            if rng.random() < 0.3:
                identities.append({"type": "phone", "value": f"+346{rng.randrange(100_000_000):08d}"})
            if rng.random() < 0.3:
                identities.append({"type": "device_id", "value": f"dev-{event_id}"})
        else:
            k = rng.randint(1, self.regulars)
            identities = [{"type": "email", "value": f"Regular.{k}@Example.org"}]
            if rng.random() < 0.5:
                identities.append({"type": "device_id", "value": f"regular-dev-{k}"})
        kind, channel = rng.choice(self.TYPES)
        return {
            "id": event_id,
            "type": kind,
            "channel": channel,
            "occurred_at": f"2026-11-20T10:{rng.randrange(60):02d}:{rng.randrange(60):02d}.{rng.randrange(1000):03d}Z",
            "identities": identities,
            "properties": {"url": f"/p/{rng.randint(1, 5000)}", "campaign": "winter"},
        }


def seed_regulars(url: str, regulars: int = REGULARS) -> float:
    """The returning customers of the benchmarks' mix (email + device each), stored with ``ingest``."""
    from omnicanal.timeline.service import ingest, prepare_event

    settings = Settings(database_url=url)
    db = create_database(settings)
    handlers.register()
    now = utcnow()
    started = time.perf_counter()
    for start in range(1, regulars + 1, 1000):
        batch = [
            prepare_event(
                {
                    "id": f"seed-{k}",
                    "type": "customer.seeded",
                    "channel": "api",
                    "occurred_at": "2026-11-01T10:00:00Z",
                    "identities": [
                        {"type": "email", "value": f"Regular.{k}@Example.org"},
                        {"type": "device_id", "value": f"regular-dev-{k}"},
                    ],
                },
                settings=settings,
                now=now,
            )
            for k in range(start, min(start + 1000, regulars + 1))
        ]
        with db.write() as session:
            ingest(session, batch, settings=settings)
    db.dispose()
    return time.perf_counter() - started


def bench_b2(args: argparse.Namespace) -> dict[str, Any]:
    from omnicanal.timeline.service import ingest, prepare_event

    seed_regulars(args.url)
    settings = Settings(database_url=args.url)
    db = create_database(settings)
    handlers.register()
    maker = EventMaker(args.nonce)
    raw_batches = [[maker.one() for _ in range(args.batch)] for _ in range(args.batches + args.warmup)]
    now = utcnow()
    t0 = time.perf_counter()
    prepared = [[prepare_event(raw, settings=settings, now=now) for raw in batch] for batch in raw_batches]
    prepare_s = time.perf_counter() - t0
    per_batch: list[float] = []
    rows_for_ceiling: list[list[tuple[Any, ...]]] = []
    for number, batch in enumerate(prepared):
        t0 = time.perf_counter()
        with db.write() as session:
            results = ingest(session, batch, settings=settings)
        elapsed = time.perf_counter() - t0
        if number >= args.warmup:
            per_batch.append(elapsed)
        errors = [r for r in results if r.error is not None]
        if errors:
            raise SystemExit(f"ingest refused {len(errors)} events: {errors[0].error}")
        stored_at = datetime.now(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")
        rows_for_ceiling.append(
            [
                (
                    e.event_id + "-c",
                    r.customer_id.hex if r.customer_id else "",
                    r.customer_id.hex if r.customer_id else "",
                    e.type,
                    e.channel,
                    e.occurred_at.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds"),
                    stored_at,
                    json.dumps(e.properties),
                )
                for e, r in zip(batch, results, strict=True)
            ]
        )
    db.dispose()
    measured = len(per_batch) * args.batch
    out: dict[str, Any] = {
        "events": measured,
        "batch": args.batch,
        "ingest_events_per_s": measured / sum(per_batch),
        "batch_ms": {k: v * 1000 for k, v in percentiles(per_batch).items()},
        "prepare_events_per_s": len(raw_batches) * args.batch / prepare_s,
        "prepare_plus_ingest_events_per_s": measured
        / (sum(per_batch) + prepare_s * args.batches / (args.batches + args.warmup)),
    }
    if args.ceiling:
        out["ceiling_executemany_rows_per_s"] = _executemany_ceiling(args.url, args.ceiling, rows_for_ceiling)
    out["peak_rss_mib"] = peak_rss_mib()
    return out


def _executemany_ceiling(url: str, path: str, batches: list[list[tuple[Any, ...]]]) -> float:
    """Raw sqlite3 executemany of the same rows into a table built with the events table's own DDL."""
    source = sqlite3.connect(url.split("///", 1)[1])
    ddl = [
        sql
        for (sql,) in source.execute(
            "SELECT sql FROM sqlite_master WHERE tbl_name = 'events' AND sql IS NOT NULL ORDER BY type DESC"
        )
    ]
    source.close()
    con = sqlite3.connect(path, isolation_level=None)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=NORMAL")
    con.execute("CREATE TABLE customers (id CHAR(32) PRIMARY KEY)")  # the FK target, unused (FKs off)
    for statement in ddl:
        con.execute(statement)
    insert = (
        "INSERT INTO events (event_id, customer_id, source_customer_id, type, channel, occurred_at,"
        " received_at, properties) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
    )
    total = 0.0
    rows = 0
    for batch in batches:
        t0 = time.perf_counter()
        con.execute("BEGIN IMMEDIATE")
        con.executemany(insert, batch)
        con.execute("COMMIT")
        total += time.perf_counter() - t0
        rows += len(batch)
    con.close()
    return rows / total


def bench_b3(args: argparse.Namespace) -> dict[str, Any]:
    """What the endpoint runs (read + JSON bytes) and, over the same customers, the model path
    (``customer_360`` + pydantic serialization) it replaced; both must give the same document."""
    from omnicanal.customer360 import as_json, customer_360
    from omnicanal.customers.api import _read_360

    settings = Settings(database_url=args.url)
    db = create_database(settings)
    with open(args.ids, encoding="ascii") as handle:
        ids = [uuid.UUID(line.strip()) for line in handle if line.strip()]
    rng = random.Random(args.seed)
    samples: list[float] = []
    model_samples: list[float] = []
    events_seen = 0
    for number in range(args.warmup + args.calls):
        customer_id = ids[rng.randrange(len(ids))]
        t0 = time.perf_counter()
        body = _read_360(db, customer_id)
        t1 = time.perf_counter()
        with db.read() as session:
            expected = as_json(customer_360(session, customer_id=customer_id))
        t2 = time.perf_counter()
        if json.loads(body) != expected:
            raise SystemExit(f"the 360 of {customer_id} differs from the model path")
        if number >= args.warmup:
            samples.append(t1 - t0)
            model_samples.append(t2 - t1)
            events_seen += body.count(b'"received_at"')
    db.dispose()
    return {
        "calls": len(samples),
        "calls_per_s_one_thread": len(samples) / sum(samples),
        "latency_ms": {k: v * 1000 for k, v in percentiles(samples).items()},
        "model_path_latency_ms": {k: v * 1000 for k, v in percentiles(model_samples).items()},
        "mean_events_returned": events_seen / len(samples),
        "peak_rss_mib": peak_rss_mib(),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="which", required=True)
    b2 = sub.add_parser("b2")
    b2.add_argument("--url", required=True)
    b2.add_argument("--batches", type=int, default=40)
    b2.add_argument("--warmup", type=int, default=3)
    b2.add_argument("--batch", type=int, default=1000)
    b2.add_argument("--nonce", default=str(int(time.time())))
    b2.add_argument("--ceiling")
    b3 = sub.add_parser("b3")
    b3.add_argument("--url", required=True)
    b3.add_argument("--ids", required=True)
    b3.add_argument("--calls", type=int, default=5000)
    b3.add_argument("--warmup", type=int, default=500)
    b3.add_argument("--seed", type=int, default=7)
    seed = sub.add_parser("seed")
    seed.add_argument("--url", required=True)
    args = parser.parse_args()
    if args.which == "seed":
        result = {"seconds": seed_regulars(args.url)}
    else:
        result = bench_b2(args) if args.which == "b2" else bench_b3(args)
    sys.stdout.write("RESULT " + json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
