"""Loyalty benchmarks (issue #6): ``python bench/loyalty.py [l1|l2|all] [--quick]``.

L1 earning from ``order.paid`` payloads in batches of 1,000, in process on SQLite (each batch one write
transaction through ``loyalty.earning.earn_paid_orders``: idempotency keys, lots, entries, spend, timeline,
notices, tier check); ceiling: raw ``sqlite3`` ``executemany`` of the same number of rows (key + lot + entry
+ spend + timeline event per order) into tables with the same DDL, in the same run.
L2 redemption over HTTP on PostgreSQL: ``omnicanal serve`` on a throwaway cluster, ``wrk -c16`` posting
``/api/v1/customers/{id}/redemptions`` (random customer of 2,000, unique request ids); ceiling: a bare
Starlette endpoint answering the same POST, served the same way, and the same plus one PostgreSQL round trip
(one INSERT through a psycopg pool of 4 connections, same cluster), with its server and PostgreSQL CPU. Peak RSS
of every process is recorded. Figures: docs/benchmarks-loyalty.md. Child entry points: ``_l1 URL BATCHES``,
``_ceiling PORT``, ``_round_trip_ceiling PORT URL``.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import run  # noqa: E402  (bench/run.py: servers, wrk, formatting)
from run import HOST, Plan, fmt_http, fmt_rss, say, serve, verdict  # noqa: E402

ROOT = run.ROOT
BATCH = 1000
CUSTOMERS = 20_000


def _peak_rss_mib() -> float:
    return run.proc_status(os.getpid())["VmHWM"]


def _payloads(customers: list[str], start: int, count: int) -> list[dict[str, Any]]:
    paid_at = datetime.now(UTC).isoformat()
    out = []
    for n in range(start, start + count):
        lines = [
            {
                "line_id": f"{n}-{k}",
                "sku": f"SKU{k}",
                "product_id": f"P{k}",
                "category_ids": [f"C{k % 3}"],
                "quantity": 1 + k % 2,
                "amount": 1999 + 1000 * k,
            }
            for k in range(1 + n % 3)
        ]
        out.append(
            {
                "order_id": f"O{n}",
                "customer_id": customers[n % len(customers)],
                "channel": "web",
                "currency": "EUR",
                "lines": lines,
                "paid_at": paid_at,
            }
        )
    return out


def l1_child(url: str, batches: int) -> None:
    """Runs in its own process (so its peak RSS is its own); prints ``RESULT {json}``."""
    from sqlalchemy import text

    from omnicanal.customers.models import Customer
    from omnicanal.db import create_database, utcnow, uuid7
    from omnicanal.driver_sql import bulk_insert
    from omnicanal.loyalty.earning import earn_paid_orders
    from omnicanal.loyalty.models import LoyaltyRule, LoyaltyTier
    from omnicanal.models import metadata
    from omnicanal.settings import Settings

    db = create_database(Settings(database_url=url, environment="test"))
    metadata.create_all(db.write_engine)
    now = utcnow()
    customers = [uuid7() for _ in range(CUSTOMERS)]
    with db.write() as session:
        bulk_insert(
            session, Customer, [{"id": c, "traits": {}, "created_at": now, "updated_at": now} for c in customers]
        )
        session.add(
            LoyaltyRule(name="1 point per euro", kind="spend", points=1, per_amount=100, category_multipliers={"C1": 2})
        )
        session.add(LoyaltyTier(name="Silver", threshold=500, multiplier=1.25))
    ids = [str(c) for c in customers]
    # warm-up batch (imports, statement caches), not timed
    with db.write() as session:
        earn_paid_orders(session, _payloads(ids, 10_000_000, BATCH))
    # ceiling: raw sqlite3 executemany of the same rows per order into the same tables' DDL
    ceiling_path = url.split("///", 1)[1] + ".ceiling"
    source = sqlite3.connect(url.split("///", 1)[1])
    ddl = [
        row[0]
        for row in source.execute(
            "SELECT sql FROM sqlite_master WHERE sql IS NOT NULL AND tbl_name IN "
            "('loyalty_keys','loyalty_lots','loyalty_entries','loyalty_spend','events')"
        )
    ]
    source.close()
    con = sqlite3.connect(ceiling_path, isolation_level=None)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=NORMAL")
    for statement in ddl:
        con.execute(statement)
    stamp = datetime.now(UTC).replace(tzinfo=None).isoformat(" ")

    def ceiling_batch(b: int) -> None:
        keys, lots_rows, entries, spends, events = [], [], [], [], []
        for n in range(b * BATCH, (b + 1) * BATCH):
            lot_id, cid = uuid.uuid4().hex, uuid.uuid4().hex
            keys.append((f"order:O{n}:rule:x", stamp))
            lots_rows.append(
                (
                    lot_id,
                    cid,
                    cid,
                    40,
                    40,
                    stamp,
                    stamp,
                    stamp,
                    f"order:O{n}",
                    "order",
                    None,
                    f"O{n}",
                    '{"a": {"points": 40, "quantity": 1}}',
                    "{}",
                )
            )
            entries.append(
                (
                    uuid.uuid4().hex,
                    cid,
                    cid,
                    lot_id,
                    40,
                    "order",
                    f"order:O{n}",
                    "",
                    "system",
                    stamp,
                    stamp,
                    None,
                    stamp,
                )
            )
            spends.append((uuid.uuid4().hex, cid, cid, f"O{n}", 4000, "EUR", stamp))
            events.append(
                (f"oc_{uuid.uuid4().hex}", cid, cid, "loyalty.points_earned", "system", stamp, stamp, '{"points": 40}')
            )
        con.execute("BEGIN IMMEDIATE")
        con.executemany("INSERT INTO loyalty_keys (key, created_at) VALUES (?, ?)", keys)
        con.executemany(
            "INSERT INTO loyalty_lots (id, customer_id, source_customer_id, earned, remaining, earned_at, "
            "available_from, expires_at, source, reason, rule_id, order_id, lines, reversed_lines) "
            "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            lots_rows,
        )
        con.executemany(
            "INSERT INTO loyalty_entries (id, customer_id, source_customer_id, lot_id, points, reason, source, note, "
            "actor, available_from, expires_at, redemption_id, created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
            entries,
        )
        con.executemany(
            "INSERT INTO loyalty_spend (id, customer_id, source_customer_id, order_id, amount, currency, "
            "spent_at) VALUES (?,?,?,?,?,?,?)",
            spends,
        )
        con.executemany(
            "INSERT INTO events (event_id, customer_id, source_customer_id, type, channel, occurred_at, "
            "received_at, properties) VALUES (?,?,?,?,?,?,?,?)",
            events,
        )
        con.execute("COMMIT")

    # Earning and its ceiling batch by batch, alternately: the machine is shared, and its load changes
    # within seconds; measured side by side, both see the same load.
    timings: list[float] = []
    elapsed = ceiling = cpu = ceiling_cpu = 0.0
    for b in range(batches):
        payloads = _payloads(ids, b * BATCH, BATCH)
        t0, c0 = time.perf_counter(), time.process_time()
        with db.write() as session:
            earn_paid_orders(session, payloads)
        timings.append(time.perf_counter() - t0)
        elapsed += timings[-1]
        cpu += time.process_time() - c0
        t0, c0 = time.perf_counter(), time.process_time()
        ceiling_batch(b)
        ceiling += time.perf_counter() - t0
        ceiling_cpu += time.process_time() - c0
    # resending every batch earns nothing (and costs what?)
    t0 = time.perf_counter()
    with db.write() as session:
        again = earn_paid_orders(session, _payloads(ids, 0, BATCH))
    resend = time.perf_counter() - t0
    with db.read() as session:
        lots = session.execute(text("SELECT count(*) FROM loyalty_lots")).scalar_one()
    db.dispose()

    con.close()
    timings.sort()
    result = {
        "orders": batches * BATCH,
        "seconds": elapsed,
        "orders_per_s": batches * BATCH / elapsed,
        "batch_ms": {"p50": 1000 * timings[len(timings) // 2], "max": 1000 * timings[-1]},
        "lots": lots,
        "resent_batch_earned": len(again),
        "resent_batch_ms": 1000 * resend,
        "ceiling_orders_per_s": batches * BATCH / ceiling,
        "cpu_ms_per_batch": 1000 * cpu / batches,
        "ceiling_cpu_ms_per_batch": 1000 * ceiling_cpu / batches,
        "peak_rss_mib": _peak_rss_mib(),
    }
    print("RESULT " + json.dumps(result))


def l1(plan: Plan, workdir: Path) -> dict[str, Any]:
    say("L1 earning from order.paid in batches of 1,000, SQLite, in process")
    batches = 10 if plan.quick else 50
    path = workdir / "l1.db"
    done = subprocess.run(
        [sys.executable, __file__, "_l1", f"sqlite:///{path}", str(batches)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
        # BENCH_SRC=/path/to/src measures another checkout of the code (before/after)
        env={**os.environ, "PYTHONPATH": os.environ.get("BENCH_SRC") or str(ROOT / "src")},
    )
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith("RESULT ")), None)
    if done.returncode != 0 or line is None:
        raise RuntimeError(f"l1 failed:\n{done.stdout}\n{done.stderr[-4000:]}")
    result: dict[str, Any] = json.loads(line.removeprefix("RESULT "))
    say(
        f"  {result['orders_per_s']:,.0f} orders/s ({result['orders']:,} orders, batch p50 "
        f"{result['batch_ms']['p50']:.0f} ms, max {result['batch_ms']['max']:.0f} ms)"
    )
    say(f"  ceiling: raw sqlite3 executemany of the same rows {result['ceiling_orders_per_s']:,.0f} orders/s")
    say(
        f"  CPU per batch of 1,000: earning {result['cpu_ms_per_batch']:.0f} ms, "
        f"ceiling {result['ceiling_cpu_ms_per_batch']:.0f} ms"
    )
    say(f"  a resent batch earned {result['resent_batch_earned']} lots in {result['resent_batch_ms']:.0f} ms")
    say(f"  peak RSS {result['peak_rss_mib']:.0f} MiB")
    result["target_met"] = result["orders_per_s"] >= 5000
    say(f"  target >= 5,000/s: {verdict(result['target_met'])}")
    return result


def ceiling_child(port: int) -> None:
    import orjson
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    async def redeem(request: Request) -> Response:
        body = orjson.loads(await request.body())
        answer = {
            "id": str(uuid.uuid4()),
            "customer_id": request.path_params["cid"],
            "code": "LR-XXXXXXXXXX",
            "request_id": body["request_id"],
        }
        return Response(orjson.dumps(answer), status_code=201, media_type="application/json")

    async def healthz(request: Request) -> Response:
        return Response(b'{"status":"ok"}', media_type="application/json")

    app = Starlette(
        routes=[Route("/api/v1/customers/{cid}/redemptions", redeem, methods=["POST"]), Route("/healthz", healthz)]
    )
    uvicorn.run(app, host=HOST, port=port, log_level="warning", access_log=False)


ROUND_TRIP_TABLE = (
    "CREATE TABLE ceiling_redemptions (id uuid PRIMARY KEY, customer_id uuid NOT NULL, request_id text NOT NULL, "
    "created_at timestamptz NOT NULL)"
)


def round_trip_ceiling_child(port: int, url: str) -> None:
    """The bare endpoint plus one PostgreSQL round trip per request: one transaction (autocommit: the INSERT is
    its own transaction, no BEGIN or COMMIT travels) through a psycopg pool of 4 connections, on the event loop."""
    import orjson
    import uvicorn
    from psycopg_pool import AsyncConnectionPool
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    conninfo = url.replace("postgresql+psycopg://", "postgresql://")
    pool = AsyncConnectionPool(conninfo, min_size=4, max_size=4, kwargs={"autocommit": True}, open=False)

    async def redeem(request: Request) -> Response:
        body = orjson.loads(await request.body())
        answer = {
            "id": str(uuid.uuid4()),
            "customer_id": request.path_params["cid"],
            "code": "LR-XXXXXXXXXX",
            "request_id": body["request_id"],
        }
        async with pool.connection() as connection:
            await connection.execute(
                "INSERT INTO ceiling_redemptions (id, customer_id, request_id, created_at) VALUES (%s, %s, %s, now())",
                (answer["id"], answer["customer_id"], answer["request_id"]),
                prepare=True,
            )
        return Response(orjson.dumps(answer), status_code=201, media_type="application/json")

    async def healthz(request: Request) -> Response:
        return Response(b'{"status":"ok"}', media_type="application/json")

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await pool.open(wait=True)
        yield
        await pool.close()

    app = Starlette(
        routes=[Route("/api/v1/customers/{cid}/redemptions", redeem, methods=["POST"]), Route("/healthz", healthz)],
        lifespan=lifespan,
    )
    uvicorn.run(app, host=HOST, port=port, log_level="warning", access_log=False)


def _l2_seed(url: str, customers: int) -> tuple[list[str], str]:
    from omnicanal.customers.models import Customer
    from omnicanal.db import create_database, utcnow, uuid7
    from omnicanal.driver_sql import bulk_insert
    from omnicanal.loyalty import ledger, wallets
    from omnicanal.loyalty.models import LoyaltyReward
    from omnicanal.settings import Settings

    db = create_database(Settings(database_url=url, environment="test"))
    now = utcnow()
    ids = [uuid7() for _ in range(customers)]
    with db.write() as session:
        bulk_insert(session, Customer, [{"id": c, "traits": {}, "created_at": now, "updated_at": now} for c in ids])
        # customers with points have wallets (earning makes them); add_lots alone does not
        wallets.ensure_wallets(session, ids, now=now)
        ledger.add_lots(
            session,
            [
                ledger.NewLot(
                    customer_id=c,
                    points=10_000_000,
                    reason="adjust",
                    source="bench",
                    available_from=now,
                    expires_at=None,
                )
                for c in ids
            ],
            now=now,
        )
        # the columns every version of the code has (the server may be an older checkout: BENCH_SRC)
        reward = uuid7()
        bulk_insert(session, LoyaltyReward, [{"id": reward, "name": "Coffee", "kind": "product", "cost_points": 1,
                    "value": {}, "tiers": [], "active": True, "created_at": now}])  # fmt: skip
        reward_id = str(reward)
    db.dispose()
    return [str(c) for c in ids], reward_id


def _cluster_cpu_seconds(data_dir: Path) -> float:
    """User + system CPU of a PostgreSQL cluster: the postmaster and its live children (the backends serving
    the pool live through the whole run), read from /proc."""
    postmaster = int((data_dir / "postmaster.pid").read_text().split()[0])
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii") as stat:
                fields = stat.read().rpartition(")")[2].split()
        except OSError:
            continue
        if int(entry) == postmaster or int(fields[1]) == postmaster:
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def _wrk_with_database_cpu(server: Any, plan: Plan, env: dict[str, str], data_dir: Path) -> dict[str, Any]:
    before = _cluster_cpu_seconds(data_dir)
    result = run.wrk(server, "redeem.lua", plan, connections=16, env=env)
    result["database_cpu_ms_per_request"] = 1000 * (_cluster_cpu_seconds(data_dir) - before) / result["requests"]
    return result


def _omnicanal(args: list[str], url: str) -> str:
    """``omnicanal ARGS`` run from the code under test (``BENCH_SRC``), like the server."""
    command = run.omnicanal_server(url)[0][: -len(("serve", "--host", HOST, "--port", "0"))]
    done = subprocess.run([*command, *args], env=run.omnicanal_env(url), capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"omnicanal {' '.join(args)} failed:\n{done.stderr}")
    return done.stdout.strip()


def l2_setup(cluster: Any, workdir: Path) -> tuple[str, dict[str, str]]:
    """The L2 database on ``cluster`` (migrated, 2,000 customers with points, one reward, an admin key): its URL
    and the environment of ``lua/redeem.lua``."""
    # the server, the migrations and the key come from this checkout unless BENCH_SRC names another
    os.environ.setdefault("BENCH_SRC", str(ROOT / "src"))
    cluster.create_database("bench_l2")
    url: str = cluster.url("bench_l2")
    _omnicanal(["migrate"], url)
    ids, reward_id = _l2_seed(url, 2000)
    ids_file = workdir / "l2.ids"
    ids_file.write_text("\n".join(ids) + "\n")
    token = _omnicanal(["apikey", "create", "--role", "admin", "--name", "bench"], url)
    return url, {"BENCH_IDS": str(ids_file), "BENCH_TOKEN": token, "BENCH_REWARD": reward_id}


def l2(plan: Plan, workdir: Path) -> dict[str, Any]:
    from tests.support.postgres import PostgresCluster

    say("L2 redemption over HTTP, PostgreSQL, 16 concurrent clients")
    out: dict[str, Any] = {}
    with PostgresCluster() as cluster:
        url, env = l2_setup(cluster, workdir)
        cmd, server_env, port = run.omnicanal_server(url)
        with serve("omnicanal", cmd, server_env, port) as server:
            result = _wrk_with_database_cpu(server, plan, env, cluster.tempdir / "data")
            result["peak_rss_mib"] = server.memory()["VmHWM"]
            say(fmt_http("redemptions", result))
            say(f"  PostgreSQL CPU {result['database_cpu_ms_per_request']:.3f} ms/request")
            say(fmt_rss(server.memory()))
        out["redemption"] = result
        port = run.free_port()
        with serve("ceiling", [sys.executable, __file__, "_ceiling", str(port)], dict(os.environ), port) as server:
            ceiling = run.wrk(server, "redeem.lua", plan, connections=16, env=env)
            say(fmt_http("ceiling (bare Starlette POST)", ceiling))
        out["ceiling"] = ceiling
        cluster.create_database("bench_l2_ceiling")
        ceiling_url = cluster.url("bench_l2_ceiling")
        with run_sql(ceiling_url, ROUND_TRIP_TABLE):
            pass
        port = run.free_port()
        child = [sys.executable, __file__, "_round_trip_ceiling", str(port), ceiling_url]
        with serve("round-trip ceiling", child, dict(os.environ), port) as server:
            round_trip = _wrk_with_database_cpu(server, plan, env, cluster.tempdir / "data")
            say(fmt_http("ceiling (Starlette + 1 PostgreSQL INSERT)", round_trip))
            say(f"  PostgreSQL CPU {round_trip['database_cpu_ms_per_request']:.3f} ms/request")
        out["round_trip_ceiling"] = round_trip
        with run_sql(url) as connection:
            out["redemptions_stored"] = connection
    p99 = out["redemption"]["latency_ms"]["99"]
    out["target_met"] = p99 <= 15 and out["redemption"]["failed"] == 0
    say(f"  p99 {p99:.1f} ms, target <= 15 ms: {verdict(out['target_met'])}")
    return out


class run_sql:  # noqa: N801 - a tiny context manager that answers the count of stored redemptions
    def __init__(self, url: str, statement: str | None = None) -> None:
        self.url = url
        self.statement = statement  # run (and committed) before the count

    def __enter__(self) -> int:
        from sqlalchemy import create_engine, text

        engine = create_engine(self.url)
        try:
            if self.statement is not None:
                with engine.begin() as connection:
                    connection.execute(text(self.statement))
                return 0
            with engine.connect() as connection:
                return int(connection.execute(text("SELECT count(*) FROM loyalty_redemptions")).scalar_one())
        finally:
            engine.dispose()

    def __exit__(self, *exc: object) -> None:
        return None


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_l1":
        l1_child(sys.argv[2], int(sys.argv[3]))
        return
    if len(sys.argv) > 1 and sys.argv[1] == "_ceiling":
        ceiling_child(int(sys.argv[2]))
        return
    if len(sys.argv) > 1 and sys.argv[1] == "_round_trip_ceiling":
        round_trip_ceiling_child(int(sys.argv[2]), sys.argv[3])
        return
    which = sys.argv[1] if len(sys.argv) > 1 and not sys.argv[1].startswith("-") else "all"
    plan = Plan.make("--quick" in sys.argv)
    results: dict[str, Any] = {"load_average_before": os.getloadavg()}
    with tempfile.TemporaryDirectory(prefix="bench-loyalty-") as tmp:
        workdir = Path(tmp)
        if which in ("l1", "all"):
            results["l1"] = l1(plan, workdir)
        if which in ("l2", "all"):
            results["l2"] = l2(plan, workdir)
    out_dir = BENCH / "results"
    out_dir.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    (out_dir / f"{stamp}-loyalty-{which}.json").write_text(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
