"""The B3 dataset: N customers, ~10 events each (skewed), 2-3 identities each, some consents.

Rows are written with raw SQL (sqlite3 ``executemany`` / PostgreSQL ``COPY``) into a database that
``omnicanal migrate`` created, so the schema is exactly the application's. Values are spelled the
way SQLAlchemy stores them: on SQLite UUIDs as 32-char lowercase hex and datetimes as naive UTC
``YYYY-MM-DD HH:MM:SS.ffffff``; on PostgreSQL as ``uuid`` and ``timestamptz``.

Events are generated a block of customers at a time and sorted by time inside the block, so one
customer's events are spread over many pages (as when many customers write concurrently), not
stored side by side.

Secondary indexes are dropped before the load and re-created afterwards from their own saved DDL,
so the final schema is unchanged.
"""

from __future__ import annotations

import json
import math
import os
import random
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
DATA = BENCH / "data"
# the ``omnicanal`` command, run with this interpreter
OMNICANAL = [sys.executable, "-c", "from omnicanal.cli import main; main()"]

FIRST = [
    "ana",
    "luis",
    "marta",
    "jorge",
    "lucia",
    "pablo",
    "sofia",
    "diego",
    "carmen",
    "javier",
    "elena",
    "raul",
    "paula",
    "sergio",
    "laura",
    "david",
    "irene",
    "hugo",
    "noelia",
    "ivan",
]
LAST = [
    "garcia",
    "lopez",
    "martin",
    "sanchez",
    "perez",
    "gomez",
    "ruiz",
    "diaz",
    "moreno",
    "alvarez",
    "romero",
    "navarro",
    "torres",
    "dominguez",
    "vazquez",
    "ramos",
    "gil",
    "serrano",
    "blanco",
    "molina",
]
DOMAINS = ["gmail.com", "hotmail.com", "yahoo.es", "outlook.com", "telefonica.net", "icloud.com"]
EVENT_KINDS = [
    ("page.viewed", "web", 40),
    ("product.viewed", "app", 15),
    ("cart.updated", "web", 8),
    ("order.placed", "web", 6),
    ("order.placed", "pos", 5),
    ("message.received", "whatsapp", 8),
    ("message.sent", "email", 8),
    ("call.completed", "call_center", 3),
    ("store.visited", "store", 4),
    ("sms.delivered", "sms", 3),
]
CONSENT_CHANNELS = ["email", "sms", "whatsapp", "push"]
CONSENT_PURPOSES = ["marketing", "transactional", "surveys"]


@dataclass
class Shape:
    customers: int
    events: int
    seed: int = 20261123

    @property
    def tag(self) -> str:
        return f"{self.customers}c-{self.events}e"


def _uuid7_hex(rng: random.Random, when: datetime) -> str:
    millis = int(when.timestamp() * 1000)
    rand = rng.getrandbits(74)
    value = (millis & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76
    value |= ((rand >> 62) & 0xFFF) << 64
    value |= 0b10 << 62
    value |= rand & ((1 << 62) - 1)
    return f"{value:032x}"


def _event_counts(rng: random.Random, shape: Shape) -> list[int]:
    """Most customers ~10 events (Poisson-like), ~1.5 % heavy ones with 60..600; exactly ``events`` in all."""
    counts = []
    for _ in range(shape.customers):
        if rng.random() < 0.015:
            counts.append(rng.randint(60, 600))
        else:
            counts.append(max(1, int(rng.gammavariate(4.0, 1.6)) + 1))
    total = sum(counts)
    # scale to the exact total, keeping the shape
    factor = shape.events / total
    counts = [max(1, int(c * factor)) for c in counts]
    diff = shape.events - sum(counts)
    while diff != 0:
        i = rng.randrange(shape.customers)
        if diff > 0:
            counts[i] += 1
            diff -= 1
        elif counts[i] > 1:
            counts[i] -= 1
            diff += 1
    return counts


class Generator:
    """Yields rows as tuples of strings (or None), in the column order of ``COLUMNS``."""

    COLUMNS: dict[str, tuple[str, ...]] = {  # noqa: RUF012
        "customers": ("id", "traits", "search_name", "created_at", "updated_at"),
        "identities": (
            "id",
            "customer_id",
            "source_customer_id",
            "type",
            "value",
            "source",
            "source_event_id",
            "added_at",
        ),
        "events": (
            "event_id",
            "customer_id",
            "source_customer_id",
            "type",
            "channel",
            "occurred_at",
            "received_at",
            "properties",
        ),
        "consent_changes": (
            "id",
            "customer_id",
            "source_customer_id",
            "channel",
            "purpose",
            "status",
            "source",
            "proof",
            "changed_at",
            "changed_by",
        ),
    }

    def __init__(self, shape: Shape, *, tz_suffix: str) -> None:
        self.shape = shape
        self.tz = tz_suffix
        self.rng = random.Random(shape.seed)
        self.now = datetime(2026, 11, 20, tzinfo=UTC)
        self.start = self.now - timedelta(days=3 * 365)
        self.span = (self.now - self.start).total_seconds()
        self.counts = _event_counts(self.rng, shape)
        self.ids: list[str] = []
        self._hours: dict[int, str] = {}
        kinds: list[tuple[str, str]] = []
        for kind, channel, weight in EVENT_KINDS:
            kinds.extend([(kind, channel)] * weight)
        self.kinds = kinds

    def ts(self, when: datetime) -> str:
        return when.replace(tzinfo=None).isoformat(" ", "microseconds") + self.tz

    def ts_us(self, micros: int) -> str:
        """``ts`` for an epoch in microseconds, fast (the date and hour are cached)."""
        sec, us = divmod(micros, 1_000_000)
        hour, rem = divmod(sec, 3600)
        prefix = self._hours.get(hour)
        if prefix is None:
            prefix = datetime.fromtimestamp(hour * 3600, UTC).strftime("%Y-%m-%d %H:")
            self._hours[hour] = prefix
        minute, second = divmod(rem, 60)
        return f"{prefix}{minute:02d}:{second:02d}.{us:06d}{self.tz}"

    def customers(self, block: int) -> Iterator[tuple[list[tuple[Any, ...]], ...]]:
        """Per block of customers: (customers, identities, events, consents) rows."""
        rng = self.rng
        rand = rng.random
        kinds = self.kinds
        nkinds = len(kinds)
        now_us = int(self.now.timestamp() * 1_000_000)
        n = self.shape.customers
        # customers are created over time: ids (uuid7) grow with created_at
        created = sorted(self.start + timedelta(seconds=rand() * self.span * 0.9) for _ in range(n))
        event_no = 0
        for lo in range(0, n, block):
            cust_rows: list[tuple[Any, ...]] = []
            ident_rows: list[tuple[Any, ...]] = []
            consent_rows: list[tuple[Any, ...]] = []
            pending: list[tuple[int, str, tuple[str, str]]] = []
            for index in range(lo, min(n, lo + block)):
                when = created[index]
                cid = _uuid7_hex(rng, when)
                self.ids.append(cid)
                stamp = self.ts(when)
                first, last = FIRST[int(rand() * len(FIRST))], LAST[int(rand() * len(LAST))]
                if rand() < 0.6:
                    traits = json.dumps({"first_name": first.title(), "last_name": last.title(), "language": "es"})
                    search = f"{first} {last}"
                else:
                    traits, search = "{}", None
                cust_rows.append((cid, traits, search, stamp, stamp))
                idents = [
                    ("email", f"{first}.{last}.{index}@{DOMAINS[index % len(DOMAINS)]}"),
                    ("phone", f"+346{index:08d}"),
                ]
                if rand() < 0.5:
                    idents.append(("loyalty_card", f"LC{index:010d}"))
                for kind, value in idents:
                    ident_rows.append((_uuid7_hex(rng, when), cid, cid, kind, value, "web", None, stamp))
                if rand() < 0.3:
                    for _ in range(rng.randint(1, 3)):
                        at = when + timedelta(seconds=rand() * 86400 * 30)
                        consent_rows.append(
                            (
                                _uuid7_hex(rng, at),
                                cid,
                                cid,
                                rng.choice(CONSENT_CHANNELS),
                                rng.choice(CONSENT_PURPOSES),
                                rng.choice(("granted", "granted", "withdrawn")),
                                "web",
                                "checkbox on the sign-up form v3",
                                self.ts(at),
                                "api_key:bench",
                            )
                        )
                base = int(when.timestamp() * 1_000_000)
                room = now_us - base
                pending.extend(
                    (base + int(rand() * room), cid, kinds[int(rand() * nkinds)]) for _ in range(self.counts[index])
                )
            pending.sort()
            ts_us = self.ts_us
            event_rows: list[tuple[Any, ...]] = []
            append = event_rows.append
            for number, (moment, cid, (kind, channel)) in enumerate(pending, event_no + 1):
                append(
                    (
                        f"evt-{number:010d}",
                        cid,
                        cid,
                        kind,
                        channel,
                        ts_us(moment),
                        ts_us(moment + 40_000 + (number % 900) * 1000),
                        f'{{"url": "/p/{number % 9973}", "session": "s{number % 100003}"}}',
                    )
                )
            event_no += len(pending)
            yield cust_rows, ident_rows, event_rows, consent_rows


def _migrate(url: str) -> None:
    env = dict(os.environ, OMNICANAL_DATABASE_URL=url)
    subprocess.run([*OMNICANAL, "migrate"], env=env, check=True, capture_output=True)


def _write_ids(path: Path, ids: list[str], sample: int, seed: int) -> None:
    rng = random.Random(seed + 1)
    chosen = rng.sample(ids, min(sample, len(ids)))
    with open(path, "w", encoding="ascii") as out:
        for hex_id in chosen:
            out.write(f"{hex_id[:8]}-{hex_id[8:12]}-{hex_id[12:16]}-{hex_id[16:20]}-{hex_id[20:]}\n")


def _progress(label: str, done: int, total: int, started: float) -> None:
    rate = done / max(time.monotonic() - started, 1e-9)
    eta = (total - done) / rate if rate else math.inf
    print(f"  {label}: {done:,}/{total:,} events ({rate:,.0f}/s, ~{eta:,.0f}s left)", file=sys.stderr, flush=True)


# -- SQLite ------------------------------------------------------------------------------------------


def sqlite_dataset(shape: Shape, *, log: Callable[[str], None] = print) -> tuple[Path, Path]:
    """The cached SQLite file and its customer-id sample; built if missing."""
    DATA.mkdir(parents=True, exist_ok=True)
    path = DATA / f"b3-sqlite-{shape.tag}.db"
    ids_path = DATA / f"b3-sqlite-{shape.tag}.ids"
    if path.exists() and ids_path.exists():
        return path, ids_path
    tmp = path.with_suffix(".building")
    for leftover in (tmp, Path(f"{tmp}-wal"), Path(f"{tmp}-shm")):
        leftover.unlink(missing_ok=True)
    log(f"building {path.name} (once; cached afterwards)")
    started = time.monotonic()
    _migrate(f"sqlite:///{tmp}")
    con = sqlite3.connect(tmp, isolation_level=None)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=OFF")
    con.execute("PRAGMA cache_size=-2000000")
    con.execute("PRAGMA temp_store=MEMORY")
    index_sql = [
        (name, sql)
        for name, sql in con.execute(
            "SELECT name, sql FROM sqlite_master WHERE type='index' AND sql IS NOT NULL"
            " AND tbl_name IN ('customers','identities','events','consent_changes')"
        )
    ]
    for name, _ in index_sql:
        con.execute(f'DROP INDEX "{name}"')
    gen = Generator(shape, tz_suffix="")
    cols = Generator.COLUMNS
    statements = {
        table: f"INSERT INTO {table} ({', '.join(c)}) VALUES ({', '.join('?' * len(c))})" for table, c in cols.items()
    }
    done = 0
    for block_no, (cust, ident, events, consents) in enumerate(gen.customers(20_000)):
        con.execute("BEGIN")
        con.executemany(statements["customers"], cust)
        con.executemany(statements["identities"], ident)
        con.executemany(statements["events"], events)
        con.executemany(statements["consent_changes"], consents)
        con.execute("COMMIT")
        done += len(events)
        if block_no % 5 == 0:
            _progress("sqlite load", done, shape.events, started)
    log(f"  rows loaded in {time.monotonic() - started:.0f}s; re-creating {len(index_sql)} indexes")
    for name, sql in index_sql:
        t0 = time.monotonic()
        con.execute(sql)
        log(f"  index {name}: {time.monotonic() - t0:.0f}s")
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    tmp.rename(path)
    _write_ids(ids_path, gen.ids, 100_000, shape.seed)
    log(f"built {path.name} in {time.monotonic() - started:.0f}s ({path.stat().st_size / 2**30:.1f} GiB)")
    return path, ids_path


# -- PostgreSQL --------------------------------------------------------------------------------------


def postgres_from_sqlite(sqlite_path: Path, url: str, conninfo: str, *, log: Callable[[str], None] = print) -> None:
    """Copy the SQLite dataset into the empty PostgreSQL database at ``url`` (migrated first).

    The stored spellings carry over as they are: PostgreSQL reads 32-hex-digit UUIDs, and naive
    timestamps as UTC once the session's time zone is UTC.
    """
    import psycopg

    started = time.monotonic()
    _migrate(url)
    source = sqlite3.connect(sqlite_path)
    with psycopg.connect(conninfo, autocommit=True) as con:
        index_sql = list(
            con.execute(
                "SELECT i.indexname, i.indexdef FROM pg_indexes i WHERE i.schemaname = 'public'"
                " AND i.tablename IN ('customers','identities','events','consent_changes')"
                " AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conname = i.indexname)"
            )
        )
        for name, _ in index_sql:
            con.execute(f'DROP INDEX "{name}"')
        con.execute("SET TIME ZONE 'UTC'")
        con.execute("SET session_replication_role = replica")  # no FK triggers during the bulk load
        for table in ("customers", "identities", "consent_changes", "events"):
            columns = [row[1] for row in source.execute(f"PRAGMA table_info({table})") if row[1] != "seq"]
            order = "seq" if table == "events" else "rowid"
            cursor = source.execute(f"SELECT {', '.join(columns)} FROM {table} ORDER BY {order}")
            copied = 0
            with con.transaction(), con.cursor().copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
                while rows := cursor.fetchmany(50_000):
                    copy.write("".join("\t".join("\\N" if v is None else str(v) for v in row) + "\n" for row in rows))
                    copied += len(rows)
                    if copied % 1_000_000 < 50_000:
                        log(f"  {table}: {copied:,} rows ({time.monotonic() - started:.0f}s)")
        con.execute("SET session_replication_role = origin")
        log(f"  rows copied in {time.monotonic() - started:.0f}s; re-creating {len(index_sql)} indexes")
        con.execute("SET maintenance_work_mem = '1GB'")
        for name, sql in index_sql:
            t0 = time.monotonic()
            con.execute(sql)
            log(f"  index {name}: {time.monotonic() - t0:.0f}s")
        t0 = time.monotonic()
        con.execute("VACUUM (ANALYZE)")
        log(f"  vacuum analyze: {time.monotonic() - t0:.0f}s")
    source.close()
    log(f"loaded the PostgreSQL dataset in {time.monotonic() - started:.0f}s")


if __name__ == "__main__":
    customers = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    events = int(sys.argv[2]) if len(sys.argv) > 2 else 10 * customers
    print(sqlite_dataset(Shape(customers, events)))
