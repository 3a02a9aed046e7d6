"""Conversation benchmarks (issue #3): ``python bench/conversations.py [c1|c2|c3|c4|all] [--quick]``.

C1 inbound messages over HTTP (its ceilings measured before the run and again after it; the figure is checked
against its target scaled by each pair and by their mean), C2 inbox listing with 100,000 open conversations,
C3 message accepted -> event on a connected SSE client, C4 outbox deliveries to a local provider double (and a
kill -9 run).
Same rules as ``bench/run.py`` (whose helpers this imports): every server on a free port of 127.0.0.1,
every figure beside a ceiling measured in the same run, CPU time per request and peak RSS recorded,
results as JSON in ``bench/results/``. Figures are written up in docs/benchmarks-conversations.md.

Also: ``python bench/conversations.py profile-c1|profile-c2 [SECONDS]`` (py-spy of the server under the C1
load, or answering the busiest agent's inbox).
Also: ``c1inproc [--batch N]`` (``conversations.inbound.receive`` alone, in process, on batches of N, default 32, with
C1's mix: the ingest writer's CPU per message without HTTP; the writer gets batches of ~15 at ``-c32``).
Internal child entry points (run by the script itself): ``_c1inproc``, ``_c2inproc``, ``_sse``, ``_provider``.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import http.client
import itertools
import json
import os
import random
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import run  # noqa: E402  (bench/run.py: servers, wrk, ceilings, formatting)
from dataset import OMNICANAL  # noqa: E402
from run import HOST, RSS_LIMIT_MIB, Plan, fmt_http, fmt_rss, say, serve, verdict  # noqa: E402

ROOT = run.ROOT
CHANNELS = (("whatsapp", 0.5), ("sms", 0.2), ("email", 0.3))
TEXTS = [
    "Hola, ¿dónde está mi pedido? Lo compré hace tres días y no sé nada",
    "Quiero hacer una devolución de unas zapatillas, me quedan pequeñas",
    "Buenas tardes, ¿tenéis la talla 42 en la tienda de Gran Vía?",
    "No me ha llegado la factura del último pedido",
    "Gracias!",
    "¿A qué hora abrís el sábado?",
]
PASSWORD = "a long bench password 123"


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]


def percentiles(values: list[float]) -> dict[str, float]:
    out = {str(q): pct(values, q) for q in (50, 90, 99, 99.9)}
    out["max"] = max(values) if values else float("nan")
    out["mean"] = sum(values) / len(values) if values else float("nan")
    out["n"] = len(values)
    return out


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        fields = stat.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_for_quiet(limit: float, max_wait: float) -> tuple[float, float, float]:
    """Prefer a quiet machine: wait (at most ``max_wait`` s) for the 1-minute load average to drop below ``limit``."""
    deadline = time.monotonic() + max_wait
    while os.getloadavg()[0] > limit and time.monotonic() < deadline:
        time.sleep(5)
    load = os.getloadavg()
    say(f"  load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    return load


# -- a tiny keep-alive HTTP client (one per thread) -------------------------------------------------


class Client:
    def __init__(self, port: int, token: str) -> None:
        self.port = port
        self.headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        self.conn = http.client.HTTPConnection(HOST, port, timeout=30)

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else None
        for attempt in range(2):
            try:
                self.conn.request(method, path, body=data, headers=self.headers)
                response = self.conn.getresponse()
                raw = response.read()
                return response.status, (json.loads(raw) if raw else None)
            except (http.client.HTTPException, ConnectionError):
                self.conn.close()
                self.conn = http.client.HTTPConnection(HOST, self.port, timeout=30)
                if attempt:
                    raise
        raise AssertionError

    def ok(self, method: str, path: str, body: Any = None) -> Any:
        status, answer = self.call(method, path, body)
        if status >= 300:
            raise RuntimeError(f"{method} {path} -> {status}: {answer}")
        return answer


# -- C1 / C3 setup: agents, teams, rules through the API; a pool of returning customers -------------


def setup_routing(port: int, token: str, *, agents: int = 4) -> dict[str, Any]:
    """Two teams, a keyword rule and a catch-all rule, ``agents`` online agents — all through the API."""
    client = Client(port, token)
    ids = []
    for n in range(agents):
        user = client.ok(
            "POST",
            "/api/v1/users",
            {
                "email": f"agente{n}@tienda.example.com",
                "role": "agent",
                "password": PASSWORD,
                "display_name": f"Agente {n}",
            },
        )
        client.ok("PUT", f"/api/v1/agents/{user['id']}", {"online": True, "capacity": 1000, "languages": ["es"]})
        ids.append(user["id"])
    half = max(1, agents // 2)
    after_sales = client.ok(
        "POST", "/api/v1/teams", {"name": "Posventa", "members": ids[:half], "sla_first_response_minutes": 60}
    )
    general = client.ok(
        "POST", "/api/v1/teams", {"name": "Atención", "members": ids[half:] or ids, "sla_first_response_minutes": 240}
    )
    client.ok(
        "POST",
        "/api/v1/routing-rules",
        {
            "name": "pedidos",
            "position": 10,
            "team_id": after_sales["id"],
            "keywords": ["pedido", "devolución", "factura"],
        },
    )
    client.ok(
        "POST",
        "/api/v1/routing-rules",
        {"name": "resto", "position": 100, "team_id": general["id"], "channels": ["whatsapp", "sms", "email"]},
    )
    return {"agents": ids, "teams": [after_sales["id"], general["id"]]}


def pool_message(k: int, ext: str, *, all_identities: bool, rng: random.Random) -> dict[str, Any]:
    """A message of returning customer ``k`` (as in lua/inbound.lua)."""
    channel = rng.choices([c for c, _ in CHANNELS], [w for _, w in CHANNELS])[0]
    by_channel = {
        "whatsapp": {"type": "whatsapp", "value": f"3461{k:07d}"},
        "sms": {"type": "phone", "value": f"+3461{k:07d}"},
        "email": {"type": "email", "value": f"Cliente.{k}@Example.com"},
    }
    identities = list(by_channel.values()) if all_identities else [by_channel[channel]]
    return {
        "channel": channel,
        "identities": identities,
        "text": rng.choice(TEXTS),
        "external_id": ext,
        "occurred_at": datetime.now(UTC).isoformat(),
    }


def seed_pool(port: int, token: str, size: int, *, threads: int = 8) -> float:
    """Each pool customer writes once, known by whatsapp, phone and email (so later messages on any
    channel find them). Through the API; returns seconds."""
    started = time.monotonic()
    todo = iter(range(1, size + 1))
    lock = threading.Lock()
    errors: list[str] = []

    def work(tid: int) -> None:
        client, rng = Client(port, token), random.Random(tid)
        while True:
            with lock:
                k = next(todo, None)
            if k is None:
                return
            status, answer = client.call(
                "POST", "/api/v1/messages/inbound", pool_message(k, f"seed-{k}", all_identities=True, rng=rng)
            )
            if status >= 300:
                errors.append(f"{status} {answer}")

    workers = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    if errors:
        raise RuntimeError(f"{len(errors)} seed messages failed, e.g. {errors[0]}")
    return time.monotonic() - started


def table_counts(url: str, queries: dict[str, str]) -> dict[str, int]:
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return {name: int(connection.execute(text(sql)).scalar_one()) for name, sql in queries.items()}
    finally:
        engine.dispose()


C1_COUNTS = {
    "messages": "SELECT count(*) FROM messages WHERE direction = 'inbound'",
    "conversations": "SELECT count(*) FROM conversations",
    "assigned": "SELECT count(*) FROM conversations WHERE assignee_id IS NOT NULL",
    "customers": "SELECT count(*) FROM customers",
    "events": "SELECT count(*) FROM events WHERE type = 'message.received'",
}


# -- C1 ---------------------------------------------------------------------------------------------


def c1_server_env(url: str) -> tuple[list[str], dict[str, str], int]:
    cmd, env, port = run.omnicanal_server(url)
    env["OMNICANAL_ATTACHMENTS_DIR"] = str(Path(tempfile.gettempdir()) / "omnicanal-bench-attachments")
    return cmd, env, port


def c1_prepare(url: str, token: str, pool: int) -> tuple[dict[str, Any], float]:
    with serve("omnicanal-setup", *c1_server_env(url)) as server:
        routing = setup_routing(server.port, token)
        seconds = seed_pool(server.port, token, pool)
    return routing, seconds


def c1(
    plan: Plan,
    workdir: Path,
    *,
    backend: str = "sqlite",
    url: str | None = None,
    token: str | None = None,
    ceilings: bool = True,
) -> dict[str, Any]:
    pool = 1000 if plan.quick else 3000
    say(
        f"C1 inbound messages over HTTP ({backend}), wrk -t{plan.threads} -c{plan.connections} -d{plan.duration}s "
        f"after {plan.warmup}s warm-up; 80 % from {pool:,} returning customers"
    )
    out: dict[str, Any] = {"backend": backend, "pool": pool, "load_average_before": os.getloadavg()}
    lua_env = {"BENCH_POOL": str(pool), "BENCH_RETURNING": "0.8"}

    def measure_ceilings(when: str) -> None:
        """The ceilings, measured before the figure and again after it: the machine's speed drifts over minutes,
        and the figure is scaled by the mean of the two measurements that bracket it."""
        suffix = "" if when == "before" else "_after"
        with serve("bare", *run.ceiling_server("bare")) as server:
            out[f"ceiling_bare{suffix}"] = run.wrk(server, "inbound.lua", plan, env={**lua_env, "BENCH_CEILING": "1"})
            out[f"ceiling_bare{suffix}"]["memory_mib"] = server.memory()
        say(fmt_http(f"ceiling ({when}): bare Starlette POST", out[f"ceiling_bare{suffix}"]))
        if backend == "sqlite":
            with serve("sqlite", *run.ceiling_server("sqlite", workdir / f"ceiling-c1{suffix}.db")) as server:
                out[f"ceiling_sqlite_insert{suffix}"] = run.wrk(
                    server, "inbound.lua", plan, env={**lua_env, "BENCH_CEILING": "1"}
                )
                out[f"ceiling_sqlite_insert{suffix}"]["memory_mib"] = server.memory()
            say(fmt_http(f"ceiling ({when}): Starlette + 1 sqlite3 insert", out[f"ceiling_sqlite_insert{suffix}"]))

    if ceilings:
        measure_ceilings("before")
    if url is None:
        url, token = run.fresh_db(workdir, "c1.db")
    assert token is not None
    out["routing"], out["seed_seconds"] = c1_prepare(url, token, pool)
    say(
        f"  set up 2 teams, 2 rules, 4 online agents; seeded {pool:,} returning customers in {out['seed_seconds']:.1f}s"
    )
    before = table_counts(url, C1_COUNTS)
    with serve("omnicanal", *c1_server_env(url)) as server:
        result = run.wrk(server, "inbound.lua", plan, env={**lua_env, "BENCH_TOKEN": token})
        memory = server.memory()
    after = table_counts(url, C1_COUNTS)
    out["stored"] = {k: after[k] - before[k] for k in after}
    out["omnicanal"] = result
    out["memory_mib"] = memory
    say(fmt_http("omnicanal POST /messages/inbound", result, "msgs/s"))
    say(
        f"  stored (warm-up + run): {out['stored']['messages']:,} messages, {out['stored']['conversations']:,} new "
        f"conversations ({out['stored']['assigned']:,} routed to an agent), "
        f"{out['stored']['customers']:,} new customers"
    )
    say(fmt_rss(memory))
    if backend == "sqlite":
        met = result["requests_per_s"] >= 2000 and result["latency_ms"]["99"] <= 40 and not result["failed"]
        say(f"  target >= 2,000 messages/s and p99 <= 40 ms: {verdict(met)}")
        out["target_met"] = met
    if ceilings:
        measure_ceilings("after")
        if backend == "sqlite":
            out["scaled"] = {}
            measured = {
                when: [out[f"ceiling_{kind}{suffix}"]["requests_per_s"] for kind in ("bare", "sqlite_insert")]
                for when, suffix in (("before", ""), ("after", "_after"))
            }
            measured["mean"] = [(b + a) / 2 for b, a in zip(measured["before"], measured["after"], strict=True)]
            for basis, (bare, insert) in measured.items():
                scaled = run.scaled_targets(2000, 40, bare_rps=bare, insert_rps=insert)
                scaled["met"] = run.meets_scaled(result, scaled)
                out["scaled"][basis] = scaled
                say(
                    f"  scaled by the ceilings {basis:<6} (bare {bare:,.0f}; insert {insert:,.0f} req/s): "
                    f"rate >= {scaled['rate_bare']:,.0f}; {scaled['rate_insert']:,.0f} msgs/s, "
                    f"p99 <= {scaled['p99_bare']:.1f}; {scaled['p99_insert']:.1f} ms: {verdict(bool(scaled['met']))}"
                )
    return out


C1_BATCH = 32  # c1inproc's batch size (--batch)


def c1_inproc(plan: Plan, workdir: Path) -> dict[str, Any]:
    """``conversations.inbound.receive`` alone, in process, on batches of ``--batch`` (32 by default; the ingest writer
    gets ~15 at ``-c32``), with C1's mix and set-up: the writer's CPU per message without HTTP and without the machine's
    other load skewing a wrk run. Each batch in its own write transaction, as the writer runs it."""
    pool, batches = (1000, 200) if plan.quick else (3000, 600)
    say(f"C1 in process: receive() on {batches} batches of {C1_BATCH} after 20 warm-up batches; C1's mix and set-up")
    url, token = run.fresh_db(workdir, "c1-inproc.db")
    c1_prepare(url, token, pool)
    done = subprocess.run(
        [sys.executable, __file__, "_c1inproc", url, str(pool), str(batches), str(C1_BATCH)],
        capture_output=True, text=True, check=True, cwd=ROOT,
    )  # fmt: skip
    out: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    say(
        f"  receive(): {out['cpu_ms_per_message']:.3f} ms CPU per message, {out['wall_ms_per_message']:.3f} ms wall "
        f"({out['messages']:,} messages, {out['new_conversations']:,} new conversations); peak RSS "
        f"{out['memory_mib']:.0f} MiB"
    )
    return out


def c1_inproc_child(url: str, pool: int, batches: int, size: int = 32) -> None:
    os.environ["OMNICANAL_DATABASE_URL"] = url
    from omnicanal.app import create_app
    from omnicanal.conversations.api import prepare_inbound
    from omnicanal.conversations.inbound import receive
    from omnicanal.conversations.schemas import InboundMessageIn
    from omnicanal.db import create_database
    from omnicanal.settings import Settings

    settings = Settings()
    database = create_database(settings)
    create_app(settings, database=database)  # handlers, the real-time runtime: what the server has
    rng = random.Random(7)
    counter = itertools.count()

    def message() -> Any:
        n = next(counter)
        channel = rng.choices([c for c, _ in CHANNELS], [w for _, w in CHANNELS])[0]
        if rng.random() < 0.8:
            body = pool_message(rng.randint(1, pool), f"c1i-{n}", all_identities=False, rng=rng)
        else:
            k = rng.randint(0, 9_999_999)
            identity = {"whatsapp": {"type": "whatsapp", "value": f"3471{k:07d}"},
                        "sms": {"type": "phone", "value": f"+3471{k:07d}"},
                        "email": {"type": "email", "value": f"nuevo.{k}@example.com"}}[channel]  # fmt: skip
            body = {"channel": channel, "identities": [identity], "text": rng.choice(TEXTS), "external_id": f"c1i-{n}",
                    "occurred_at": datetime.now(UTC).isoformat()}  # fmt: skip
        return prepare_inbound(InboundMessageIn.model_validate(body), settings)

    work = [[message() for _ in range(size)] for _ in range(batches + 20)]
    new_conversations = 0

    def store(chunk: list[list[Any]]) -> int:
        opened = 0
        for items in chunk:
            with database.write() as session:
                opened += sum(r.new_conversation for r in receive(session, items, settings=settings))
        return opened

    store(work[:20])
    cpu, wall = time.process_time(), time.perf_counter()
    new_conversations = store(work[20:])
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    messages = size * batches
    print(json.dumps({
        "messages": messages, "batch": size, "new_conversations": new_conversations,
        "cpu_ms_per_message": 1000 * cpu / messages, "wall_ms_per_message": 1000 * wall / messages,
        "memory_mib": run.proc_status(os.getpid()).get("VmHWM", float("nan")),
    }))  # fmt: skip


def c1_postgres(plan: Plan, workdir: Path) -> dict[str, Any]:
    from tests.support.postgres import PostgresCluster

    with PostgresCluster() as cluster:
        cluster.create_database("bench_c1")
        url = cluster.url("bench_c1")
        run.omnicanal(["migrate"], url)
        token = run.omnicanal(["apikey", "create", "--role", "admin", "--name", "bench"], url)
        return c1(plan, workdir, backend="postgresql", url=url, token=token, ceilings=False)


def profile_c1(seconds: int) -> None:
    """py-spy of the server under the C1 load (not a measurement: py-spy slows it)."""
    plan = Plan.make(quick=True)
    plan.duration, plan.warmup = seconds + 2, 0
    workdir = Path(tempfile.mkdtemp(prefix="profile-c1-", dir=run.DATA))
    try:
        url, token = run.fresh_db(workdir, "c1.db")
        c1_prepare(url, token, 1000)
        stamp = time.strftime("%Y%m%dT%H%M%S")
        collapsed = run.RESULTS / f"profile-c1-{stamp}.txt"
        run.RESULTS.mkdir(exist_ok=True)
        with serve("omnicanal", *c1_server_env(url)) as server:
            spy = subprocess.Popen(
                [
                    "py-spy",
                    "record",
                    "--pid",
                    str(server.proc.pid),
                    "--duration",
                    str(seconds),
                    "--rate",
                    "200",
                    "--threads",
                    "--nonblocking",
                    "--format",
                    "raw",
                    "--output",
                    str(collapsed),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            result = run.wrk(
                server, "inbound.lua", plan, env={"BENCH_TOKEN": token, "BENCH_POOL": "1000"}, warmup=False
            )
            spy.wait()
        say(fmt_http("under py-spy", result, "msgs/s"))
        summarize_profile(collapsed)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def profile_c2(seconds: int) -> None:
    """py-spy of the server answering the busiest agent's inbox (C2 dataset), -c32."""
    from urllib.parse import urlencode

    plan = Plan.make(quick=True)
    plan.duration, plan.warmup = seconds + 2, 0
    workdir = Path(tempfile.mkdtemp(prefix="profile-c2-", dir=run.DATA))
    try:
        data = c2_cached_dataset(workdir)
        path = "/api/v1/conversations?" + urlencode(c2_views(data)["agent"])
        collapsed = run.RESULTS / f"profile-c2-{time.strftime('%Y%m%dT%H%M%S')}.txt"
        run.RESULTS.mkdir(exist_ok=True)
        with serve("omnicanal", *run.omnicanal_server(data["url"])) as server:
            spy = subprocess.Popen(
                [
                    "py-spy",
                    "record",
                    "--pid",
                    str(server.proc.pid),
                    "--duration",
                    str(seconds),
                    "--rate",
                    "200",
                    "--threads",
                    "--nonblocking",
                    "--format",
                    "raw",
                    "--output",
                    str(collapsed),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            result = run.wrk(
                server, "inbox.lua", plan, env={"BENCH_TOKEN": data["token"], "BENCH_PATH": path}, warmup=False
            )
            spy.wait()
        say(fmt_http("under py-spy", result))
        summarize_profile(collapsed)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


IDLE = (
    "Condition.wait",
    "Queue.get",
    "Event.wait",
    "Lock.acquire",
    "select (selectors",
    "_run_once",
    "run (asyncio",
    "_worker (concurrent",
)


def summarize_profile(collapsed: Path, top: int = 40) -> None:
    own: collections.Counter[str] = collections.Counter()
    total: collections.Counter[str] = collections.Counter()
    busy = samples = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        n = int(count)
        samples += n
        frames = stack.split(";")
        if any(frames[-1].startswith(idle) for idle in IDLE):
            continue
        busy += n
        own[frames[-1]] += n
        for frame in set(frames):
            total[frame] += n
    say(f"{samples} samples, {busy} not idle -> {collapsed}  (shares below: of the non-idle samples)")
    say("-- own time")
    for frame, n in own.most_common(25):
        say(f"{100 * n / busy:5.1f}%  {frame}")
    say("-- total time")
    for frame, n in total.most_common(top):
        say(f"{100 * n / busy:5.1f}%  {frame}")


# -- C2 ---------------------------------------------------------------------------------------------

C2_STATUSES = {"open": 100_000, "pending": 12_000, "snoozed": 4_000, "resolved": 44_000}


def _uuid7_hex(rng: random.Random, when: datetime) -> str:
    millis = int(when.timestamp() * 1000)
    value = (millis & ((1 << 48) - 1)) << 80 | 0x7 << 76 | rng.getrandbits(12) << 64 | 0b10 << 62
    return f"{value | rng.getrandbits(62):032x}"


def _ts(when: datetime | None) -> str | None:
    return None if when is None else when.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


def _insert(con: sqlite3.Connection, table: str, rows: list[dict[str, Any]]) -> None:
    """Insert with the table's own columns; every NOT NULL column must be given (no silent defaults)."""
    info = con.execute(f"PRAGMA table_info({table})").fetchall()
    columns = [r[1] for r in info]
    required = {r[1] for r in info if r[3] and r[4] is None}
    missing = required - rows[0].keys()
    unknown = rows[0].keys() - set(columns)
    if missing or unknown:
        raise RuntimeError(f"{table}: missing {sorted(missing)}, unknown {sorted(unknown)}")
    names = list(rows[0])
    con.executemany(
        f"INSERT INTO {table} ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})",
        [tuple(r[n] for n in names) for r in rows],
    )


C2_CACHE = run.DATA / "c2-sqlite-160000conv.db"


def c2_cached_dataset(workdir: Path) -> dict[str, Any]:
    """The C2 dataset, built once into bench/data/ (gitignored) and copied into the run's directory."""
    meta = C2_CACHE.with_suffix(".json")
    if not meta.exists():
        built = c2_dataset(workdir)
        shutil.copy(Path(built["url"].split("///", 1)[1]), C2_CACHE)
        meta.write_text(json.dumps(built))
    data: dict[str, Any] = json.loads(meta.read_text())
    path = workdir / "c2-run.db"
    shutil.copy(C2_CACHE, path)
    data["url"] = f"sqlite:///{path}"
    run.omnicanal(["migrate"], data["url"])  # a cache built before a schema change gets it, as production would
    return data


def c2_dataset(workdir: Path, *, agents: int = 24, teams: int = 4) -> dict[str, Any]:
    """160,000 conversations (100,000 open) of 130,000 customers, 24 agents in 4 teams.

    Staff, teams and agent profiles through the real service functions; customers and conversations
    with raw ``executemany`` into the schema ``omnicanal migrate`` made, in SQLAlchemy's SQLite spellings.
    Open conversations: 25 % queued in a team (no assignee), 75 % assigned, skewed over the agents (the
    busiest holds ~10 %); last activity spread over 30 days."""
    from omnicanal.access.service import create_user
    from omnicanal.db import create_database
    from omnicanal.routing import admin
    from omnicanal.routing.schemas import AgentIn, TeamIn
    from omnicanal.settings import Settings

    started = time.monotonic()
    path = workdir / "c2.db"
    url, token = run.fresh_db(workdir, "c2.db")
    db = create_database(Settings(database_url=url))
    agent_ids: list[uuid.UUID] = []
    team_ids: list[uuid.UUID] = []
    with db.write() as session:
        for n in range(agents):
            agent_ids.append(
                create_user(
                    session,
                    email=f"agente{n}@tienda.example.com",
                    role="agent",
                    password=PASSWORD,
                    display_name=f"Agente {n}",
                ).id
            )
        for t in range(teams):
            members = agent_ids[t::teams]
            team_ids.append(
                admin.save_team(session, TeamIn(name=f"Equipo {t}", members=members, sla_first_response_minutes=60)).id
            )
        for agent in agent_ids:
            admin.update_agent(session, agent, AgentIn(online=True, capacity=1000))
    db.dispose()
    staff_seconds = time.monotonic() - started

    rng = random.Random(3)
    now = datetime.now(UTC)
    customers = 130_000
    con = sqlite3.connect(path, isolation_level=None)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=NORMAL")
    con.execute("BEGIN")
    customer_ids: list[str] = []
    rows: list[dict[str, Any]] = []
    first = ["Ana", "Luis", "Marta", "Jorge", "Lucía", "Pablo", "Sofía", "Diego", "Carmen", "Javier"]
    last = ["García", "López", "Martín", "Sánchez", "Pérez", "Gómez", "Ruiz", "Díaz", "Moreno", "Álvarez"]
    for _ in range(customers):
        created = now - timedelta(days=rng.uniform(30, 900))
        cid = _uuid7_hex(rng, created)
        customer_ids.append(cid)
        fn, ln = rng.choice(first), rng.choice(last)
        rows.append(
            {
                "id": cid,
                "traits": json.dumps({"first_name": fn, "last_name": ln, "language": "es"}),
                "search_name": f"{fn} {ln}".lower(),
                "created_at": _ts(created),
                "updated_at": _ts(created),
                "merged_into_id": None,
                "merged_at": None,
                "erased_at": None,
            }
        )
    _insert(con, "customers", rows)
    weights = [1 / (i + 1) ** 0.6 for i in range(agents)]
    agent_hex = [a.hex for a in agent_ids]
    team_of = {a.hex: team_ids[i % teams].hex for i, a in enumerate(agent_ids)}
    rows = []
    order = iter(rng.sample(range(customers), customers))  # open ones: one per customer
    for status, count in C2_STATUSES.items():
        for _ in range(count):
            last_at = now - timedelta(seconds=rng.uniform(0, 30 * 86400))
            created = last_at - timedelta(seconds=rng.uniform(0, 5 * 86400))
            customer = customer_ids[next(order)] if status == "open" else rng.choice(customer_ids)
            if status == "open" and rng.random() < 0.25:
                assignee, team = None, team_ids[rng.randrange(teams)].hex
            else:
                assignee = rng.choices(agent_hex, weights)[0]
                team = team_of[assignee]
            resolved = last_at + timedelta(minutes=rng.uniform(1, 600)) if status == "resolved" else None
            rows.append(
                {
                    "id": _uuid7_hex(rng, created),
                    "customer_id": customer,
                    "source_customer_id": customer,
                    "status": status,
                    "snooze_until": _ts(now + timedelta(hours=rng.uniform(1, 72))) if status == "snoozed" else None,
                    "assignee_id": assignee,
                    "team_id": team,
                    "priority": "high" if rng.random() < 0.1 else "normal",
                    "labels": json.dumps(["vip"] if rng.random() < 0.05 else []),
                    "language": "es",
                    "last_channel": rng.choices([c for c, _ in CHANNELS], [w for _, w in CHANNELS])[0],
                    "last_message_at": _ts(last_at),
                    "last_inbound_at": _ts(last_at),
                    "first_response_at": _ts(created + timedelta(minutes=rng.uniform(1, 120)))
                    if status != "open" or assignee
                    else None,
                    "first_response_due_at": _ts(created + timedelta(minutes=60)),
                    "resolution_due_at": None,
                    "resolved_at": _ts(resolved),
                    "reopened_count": 0,
                    "created_at": _ts(created),
                    "updated_at": _ts(last_at),
                }
            )
    rng.shuffle(rows)  # written in no particular order, as many agents work at once
    _insert(con, "conversations", rows)
    # the agents' counters, as routing would have left them
    open_per_agent = collections.Counter(
        r["assignee_id"] for r in rows if r["status"] in ("open", "pending") and r["assignee_id"]
    )
    con.executemany(
        "UPDATE agent_profiles SET open_count = ? WHERE user_id = ?", [(n, a) for a, n in open_per_agent.items()]
    )
    con.execute("COMMIT")
    busiest_hex = max(agent_hex, key=lambda a: sum(1 for r in rows if r["assignee_id"] == a and r["status"] == "open"))
    counts = {
        "busiest_agent_open": sum(1 for r in rows if r["assignee_id"] == busiest_hex and r["status"] == "open"),
        "unassigned_open": sum(1 for r in rows if r["assignee_id"] is None and r["status"] == "open"),
        "team0_open": sum(1 for r in rows if r["team_id"] == team_ids[0].hex and r["status"] == "open"),
    }
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    busiest = str(uuid.UUID(busiest_hex))
    return {
        "url": url,
        "token": token,
        "seconds": time.monotonic() - started,
        "staff_seconds": staff_seconds,
        "conversations": sum(C2_STATUSES.values()),
        "by_status": C2_STATUSES,
        "customers": customers,
        "agents": agents,
        "teams": teams,
        "busiest_agent": busiest,
        "team": str(team_ids[0]),
        **counts,
        "file_mib": path.stat().st_size / 2**20,
    }


def c2_views(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        "agent": {"status": "open", "assignee": data["busiest_agent"]},
        "unassigned": {"status": "open", "assignee": "none"},
        "team": {"status": "open", "team": data["team"]},
    }


def c2_inproc_child(url: str, calls: int, views_json: str) -> None:
    """Child process: time ``conversations.inbox.list_conversations`` with a read session per call."""
    import resource

    from omnicanal.conversations.inbox import list_conversations
    from omnicanal.db import create_database
    from omnicanal.settings import Settings

    db = create_database(Settings(database_url=url))
    views = json.loads(views_json)
    out: dict[str, Any] = {}
    for name, params in views.items():
        kwargs: dict[str, Any] = {"status": params.get("status"), "assignee": params.get("assignee")}
        if "team" in params:
            kwargs["team_id"] = uuid.UUID(params["team"])
        times: list[float] = []
        rows = 0
        page2: list[float] = []
        for n in range(calls + calls // 10):
            t0 = time.perf_counter()
            with db.read() as session:
                items, cursor = list_conversations(session, **kwargs, limit=25)
            elapsed = (time.perf_counter() - t0) * 1000
            if n >= calls // 10:
                times.append(elapsed)
            rows = len(items)
            if n % 10 == 0 and cursor:  # the next page, as an agent scrolling
                t0 = time.perf_counter()
                with db.read() as session:
                    list_conversations(session, **kwargs, limit=25, cursor=cursor)
                page2.append((time.perf_counter() - t0) * 1000)
        cpu = time.process_time()
        out[name] = {
            "latency_ms": percentiles(times),
            "rows": rows,
            "next_page_ms": percentiles(page2),
            "calls_per_s_one_thread": len(times) / (sum(times) / 1000),
        }
        out[name]["process_cpu_s_so_far"] = cpu
    out["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    db.dispose()
    print("RESULT " + json.dumps(out), flush=True)


def c2_plan(url: str, view: dict[str, Any]) -> list[str]:
    """SQLite's plan for the listing query (the statement the service sends, compiled by SQLAlchemy)."""
    from sqlalchemy import create_engine, select

    from omnicanal.conversations.models import Conversation

    stmt = select(Conversation).where(Conversation.status == view["status"])
    if view.get("assignee") == "none":
        stmt = stmt.where(Conversation.assignee_id.is_(None))
    elif view.get("assignee"):
        stmt = stmt.where(Conversation.assignee_id == uuid.UUID(view["assignee"]))
    if view.get("team"):
        stmt = stmt.where(Conversation.team_id == uuid.UUID(view["team"]))
    stmt = stmt.order_by(Conversation.last_message_at.desc(), Conversation.id.desc()).limit(26)
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            compiled = stmt.compile(connection, compile_kwargs={"literal_binds": False})
            params = compiled.construct_params()
            raw = connection.connection.dbapi_connection
            positions = compiled.positiontup
            assert raw is not None and positions is not None
            processed = [compiled.binds[name].type.bind_processor(connection.dialect) for name in positions]
            values = [p(params[n]) if p else params[n] for p, n in zip(processed, positions, strict=True)]
            return [row[3] for row in raw.execute("EXPLAIN QUERY PLAN " + str(compiled), values).fetchall()]
    finally:
        engine.dispose()


def c2(plan: Plan, workdir: Path) -> dict[str, Any]:
    say("C2 inbox listing with 100,000 open conversations (SQLite)")
    out: dict[str, Any] = {"load_average_before": os.getloadavg()}
    data = c2_cached_dataset(workdir)
    out["dataset"] = {k: v for k, v in data.items() if k not in ("url", "token")}
    say(
        f"  dataset: {data['conversations']:,} conversations ({data['by_status']['open']:,} open) of "
        f"{data['customers']:,} customers, {data['agents']} agents in {data['teams']} teams; built in "
        f"{data['seconds']:.1f}s ({data['staff_seconds']:.1f}s of it the staff through the service); "
        f"{data['file_mib']:.0f} MiB"
    )
    say(
        f"  views: busiest agent {data['busiest_agent_open']:,} open; unassigned {data['unassigned_open']:,} open; "
        f"team 0 {data['team0_open']:,} open"
    )
    views = c2_views(data)
    out["query_plans"] = {name: c2_plan(data["url"], view) for name, view in views.items()}
    for name, steps in out["query_plans"].items():
        say(f"  plan {name}: {' / '.join(steps)}")
    calls = 500 if plan.quick else 2000
    done = subprocess.run(
        [sys.executable, __file__, "_c2inproc", data["url"], str(calls), json.dumps(views)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith("RESULT ")), None)
    if done.returncode != 0 or line is None:
        raise RuntimeError(f"C2 in process failed:\n{done.stdout}\n{done.stderr[-4000:]}")
    service = json.loads(line.removeprefix("RESULT "))
    out["in_process"] = service
    for name in views:
        lat, nxt = service[name]["latency_ms"], service[name]["next_page_ms"]
        say(
            f"  in process {name:<11} p50 {lat['50']:.2f} ms  p99 {lat['99']:.2f} ms  max {lat['max']:.1f} ms  "
            f"({service[name]['calls_per_s_one_thread']:,.0f} calls/s one thread; next page p99 {nxt['99']:.2f} ms)"
        )
    say(f"  in-process peak RSS {service['peak_rss_mib']:.0f} MiB")
    from urllib.parse import urlencode

    out["http"] = {}
    with serve("bare", *run.ceiling_server("bare")) as server:
        out["ceiling_bare"] = run.wrk(server, "inbox.lua", plan, env={"BENCH_PATH": "/api/v1/customers/x/360"})
    say(fmt_http("ceiling: bare Starlette GET", out["ceiling_bare"]))
    with serve("omnicanal", *run.omnicanal_server(data["url"])) as server:
        for name, view in views.items():
            path = "/api/v1/conversations?" + urlencode(view)
            env = {"BENCH_TOKEN": data["token"], "BENCH_PATH": path}
            out["http"][name] = run.wrk(server, "inbox.lua", plan, env=env)
            say(fmt_http(f"GET {name} (-c{plan.connections})", out["http"][name]))
        one = Plan.make(plan.quick)
        one.threads, one.warmup = 1, 1
        path = "/api/v1/conversations?" + urlencode(views["agent"])
        out["http"]["agent_c1"] = run.wrk(
            server, "inbox.lua", one, connections=1, env={"BENCH_TOKEN": data["token"], "BENCH_PATH": path}
        )
        say(fmt_http("GET agent (1 connection)", out["http"]["agent_c1"]))
        memory = server.memory()
    out["memory_mib"] = memory
    say(fmt_rss(memory))
    met_service = all(service[n]["latency_ms"]["99"] <= 20 for n in views)
    met_http = all(out["http"][n]["latency_ms"]["99"] <= 20 and not out["http"][n]["failed"] for n in views)
    met_http_c1 = out["http"]["agent_c1"]["latency_ms"]["99"] <= 20
    say(
        f"  target p99 <= 20 ms: in process {verdict(met_service)}; HTTP -c{plan.connections} {verdict(met_http)}; "
        f"HTTP one connection {verdict(met_http_c1)}"
    )
    out["target_met"] = {"in_process": met_service, "http_c32": met_http, "http_c1": met_http_c1}
    return out


# -- C3 ---------------------------------------------------------------------------------------------

_TAG = re.compile(rb'"text":"c3-(\d+) ')


def sse_child(port: int, token: str, seconds: float, out_path: str) -> None:
    """Child process: read ``GET /api/v1/stream`` on a raw socket and note when each ``message.received``
    of ours arrives (the tag ``c3-<i>`` at the start of the text)."""
    import select
    import socket

    sock = socket.create_connection((HOST, port))
    sock.sendall(
        f"GET /api/v1/stream?types=message.received HTTP/1.1\r\nHost: {HOST}\r\n"
        f"Authorization: Bearer {token}\r\nAccept: text/event-stream\r\n\r\n".encode()
    )
    arrivals: dict[int, float] = {}
    buffer = b""
    ready = False
    stopping: list[int] = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(1))  # the sender is done (and 2 s have passed)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not stopping:
        if not select.select([sock], [], [], 0.5)[0]:
            continue
        chunk = sock.recv(1 << 16)
        now = time.monotonic()
        if not chunk:
            break
        buffer += chunk
        if not ready and b": connected" in buffer:
            if not buffer.startswith(b"HTTP/1.1 200"):
                raise SystemExit(buffer[:200])
            ready = True
            print("READY", flush=True)
        for match in _TAG.finditer(buffer):
            arrivals.setdefault(int(match.group(1)), now)
        buffer = buffer[-2048:]  # a tag split over two reads is found with the next one
    sock.close()
    Path(out_path).write_text(json.dumps(arrivals))


def paced_sender(
    port: int, token: str, rate: float, seconds: float, pool: int, *, threads: int = 16
) -> list[dict[str, Any]]:
    """Open-loop sender: message i leaves at t0 + i / rate (up to ``threads`` in flight)."""
    total = int(rate * seconds)
    counter = itertools.count()
    lock = threading.Lock()
    records: list[dict[str, Any]] = []
    t0 = time.monotonic() + 0.2

    def work(tid: int) -> None:
        client, rng = Client(port, token), random.Random(1000 + tid)
        while True:
            with lock:
                i = next(counter)
            if i >= total:
                return
            due = t0 + i / rate
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            body = (
                pool_message(rng.randint(1, pool), f"c3-{i}-{t0:.3f}", all_identities=False, rng=rng)
                if rng.random() < 0.8
                else {
                    "channel": "email",
                    "identities": [{"type": "email", "value": f"nuevo.c3.{i}.{t0:.0f}@example.org"}],
                    "text": "",
                    "external_id": f"c3-{i}-{t0:.3f}",
                    "occurred_at": datetime.now(UTC).isoformat(),
                }
            )
            body["text"] = f"c3-{i} {rng.choice(TEXTS)}"
            sent = time.monotonic()
            status, _ = client.call("POST", "/api/v1/messages/inbound", body)
            accepted = time.monotonic()
            with lock:
                records.append({"i": i, "due": due, "sent": sent, "accepted": accepted, "status": status})

    workers = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return records


def c3_once(
    label: str,
    post_port: int,
    listen_port: int,
    token: str,
    rate: float,
    seconds: float,
    pool: int,
    workdir: Path,
    servers: list[run.Server],
) -> dict[str, Any]:
    arrivals_file = workdir / f"arrivals-{label.split(',')[0].replace(' ', '-')}.json"
    listener = subprocess.Popen(
        [sys.executable, __file__, "_sse", str(listen_port), token, str(seconds * 5 + 30), str(arrivals_file)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    assert listener.stdout is not None
    if listener.stdout.readline().strip() != "READY":
        listener.kill()
        raise RuntimeError("the SSE listener did not connect")
    cpu_before = [s.cpu_seconds() for s in servers]
    records = paced_sender(post_port, token, rate, seconds, pool)
    cpu = [s.cpu_seconds() - b for s, b in zip(servers, cpu_before, strict=True)]
    time.sleep(2)
    listener.send_signal(signal.SIGTERM)
    listener.wait(timeout=30)
    arrivals = {int(k): v for k, v in json.loads(arrivals_file.read_text()).items()}
    ok = [r for r in records if r["status"] == 201]
    from_accepted = [(arrivals[r["i"]] - r["accepted"]) * 1000 for r in ok if r["i"] in arrivals]
    from_sent = [(arrivals[r["i"]] - r["sent"]) * 1000 for r in ok if r["i"] in arrivals]
    post_ms = [(r["accepted"] - r["sent"]) * 1000 for r in ok]
    lag = [(r["sent"] - r["due"]) * 1000 for r in records]
    span = max(r["accepted"] for r in records) - min(r["sent"] for r in records)
    result = {
        "sent": len(records),
        "accepted": len(ok),
        "failed": len(records) - len(ok),
        "received": sum(1 for r in ok if r["i"] in arrivals),
        "missing": sum(1 for r in ok if r["i"] not in arrivals),
        "achieved_rate": len(records) / span,
        "sender_lag_ms": percentiles(lag),
        "accepted_to_event_ms": percentiles(from_accepted),
        "sent_to_event_ms": percentiles(from_sent),
        "post_ms": percentiles(post_ms),
        "event_before_201": sum(1 for v in from_accepted if v < 0),
        "server_cpu_ms_per_message": [1000 * c / max(len(records), 1) for c in cpu],
        "memory_mib": [s.memory() for s in servers],
        "load_average_after": os.getloadavg(),
    }
    a, s, p = result["accepted_to_event_ms"], result["sent_to_event_ms"], result["post_ms"]
    say(
        f"  {label:<30} {result['achieved_rate']:.0f} msg/s sent, {result['received']:,}/{result['accepted']:,} "
        f"events received ({result['missing']} missing, {result['failed']} failed POSTs)"
    )
    say(
        f"    201 -> event     p50 {a['50']:6.1f}  p90 {a['90']:6.1f}  p99 {a['99']:6.1f}  max {a['max']:6.1f} ms"
        f"  ({result['event_before_201']:,} events arrived before the 201)"
    )
    say(f"    POST sent -> event p50 {s['50']:6.1f}  p90 {s['90']:6.1f}  p99 {s['99']:6.1f}  max {s['max']:6.1f} ms")
    say(
        f"    POST round trip  p50 {p['50']:6.1f}  p99 {p['99']:6.1f} ms; server CPU "
        + ", ".join(f"{c:.2f}" for c in result["server_cpu_ms_per_message"])
        + " ms/msg; peak RSS "
        + ", ".join(f"{m['VmHWM']:.0f}" for m in result["memory_mib"])
        + " MiB"
    )
    return result


def c3(plan: Plan, workdir: Path) -> dict[str, Any]:
    from tests.support.redis_server import RedisServer

    rate, seconds, pool = 200.0, (8.0 if plan.quick else 20.0), 1000
    say(f"C3 message accepted -> event on an SSE client, {rate:.0f} msg/s for {seconds:.0f}s (SQLite)")
    out: dict[str, Any] = {"rate": rate, "seconds": seconds, "load_average_before": os.getloadavg()}
    url, token = run.fresh_db(workdir, "c3.db")
    c1_prepare(url, token, pool)
    with serve("omnicanal", *c1_server_env(url)) as server:
        out["one_server"] = c3_once(
            "one server, in-process fan-out", server.port, server.port, token, rate, seconds, pool, workdir, [server]
        )
    with RedisServer() as redis:
        servers = []
        try:
            for _ in range(2):
                cmd, env, port = c1_server_env(url)
                env["OMNICANAL_REDIS_URL"] = redis.url
                servers.append(run.Server("omnicanal", cmd, env, port))
            out["redis_two_servers"] = c3_once(
                "Redis, post to A, listen on B",
                servers[0].port,
                servers[1].port,
                token,
                rate,
                seconds,
                pool,
                workdir,
                servers,
            )
        finally:
            for s in servers:
                s.stop()
    peak = max(m["VmHWM"] for r in (out["one_server"], out["redis_two_servers"]) for m in r["memory_mib"])
    say(f"  peak RSS of every server {peak:.0f} MiB [{'ok' if peak < RSS_LIMIT_MIB else 'OVER'}]")
    one = out["one_server"]
    met_latency = one["accepted_to_event_ms"]["99"] <= 100 and not one["missing"]
    met_rate = one["achieved_rate"] >= rate * 0.95
    say(
        f"  target p99 <= 100 ms (one server): {verdict(met_latency)}; at 200 msg/s: {verdict(met_rate)} "
        f"({one['achieved_rate']:.0f} msg/s sustained)"
    )
    out["target_met"] = {"latency": met_latency, "rate": met_rate}
    return out


# -- C4 ---------------------------------------------------------------------------------------------


def provider_child(port: int) -> None:
    """Child process: a fast provider double. Dedupes by Idempotency-Key, counts every request per key."""
    import orjson
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    counts: collections.Counter[str] = collections.Counter()
    delivered: dict[str, str] = {}

    async def send(request: Request) -> Response:
        key = request.headers.get("idempotency-key", "")
        await request.body()
        if not key:
            return Response(b'{"error": "Idempotency-Key required"}', 400, media_type="application/json")
        counts[key] += 1
        known = delivered.get(key)
        if known is None:
            known = delivered[key] = f"prov-{len(delivered) + 1}"
            return Response(orjson.dumps({"id": known}), 200, media_type="application/json")
        return Response(orjson.dumps({"id": known, "duplicate": True}), 200, media_type="application/json")

    async def stats(request: Request) -> Response:
        return Response(
            orjson.dumps({"requests": sum(counts.values()), "counts": counts}), media_type="application/json"
        )

    async def healthz(request: Request) -> Response:
        return Response(b'{"status": "ok"}', media_type="application/json")

    app = Starlette(routes=[Route("/send", send, methods=["POST"]), Route("/stats", stats), Route("/healthz", healthz)])
    uvicorn.run(app, host=HOST, port=port, log_level="warning", access_log=False)


class Worker:
    """One ``omnicanal worker`` process, in its own process group (so kill -9 reaches it and only it)."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        with open(log, "ab") as out:
            self.proc = subprocess.Popen(
                [*OMNICANAL, "worker"],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=ROOT,
                start_new_session=True,
            )
        self.memory: dict[str, float] = {}
        self.cpu = 0.0

    def sample(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(FileNotFoundError, ProcessLookupError):
                self.memory, self.cpu = run.proc_status(self.proc.pid), cpu_seconds(self.proc.pid)

    def kill9(self) -> None:
        self.sample()
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        self.sample()
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def c4_seed(workdir: Path, n: int, *, per_transaction: int = 5000) -> tuple[Path, dict[str, Any]]:
    """N agent replies' worth of outbox items on 500 conversations (customers who wrote on whatsapp, with
    phone and email known): each reply is an outbound ``Message`` row (as ``service.reply`` writes it) and
    its item through the real ``outbox.service.enqueue``, ``per_transaction`` per write transaction.
    (``service.reply`` itself costs ~8 ms per call here, dominated by ORM autoflush and per-call lookups,
    which would make seeding take minutes.)"""
    from omnicanal.conversations.channels import CHANNEL_RULES
    from omnicanal.conversations.inbound import InboundInput, receive
    from omnicanal.conversations.models import Message
    from omnicanal.db import create_database, utcnow, uuid7
    from omnicanal.handlers import register
    from omnicanal.outbox.service import enqueue
    from omnicanal.settings import Settings

    register()
    url, _ = run.fresh_db(workdir, "c4-template.db")
    path = Path(url.split("///", 1)[1])
    settings = Settings(database_url=url, attachments_dir=str(workdir / "attachments"))
    db = create_database(settings)
    started = time.monotonic()
    now = datetime.now(UTC)
    items = [
        InboundInput(
            channel="whatsapp",
            identities=[
                ("whatsapp", f"+3461{k:07d}"),
                ("phone", f"+3461{k:07d}"),
                ("email", f"cliente.{k}@example.com"),
            ],
            customer_id=None,
            text="Hola, ¿dónde está mi pedido?",
            attachments=[],
            external_id=f"c4-{k}",
            occurred_at=now,
        )
        for k in range(1, 501)
    ]
    with db.write() as session:
        results = receive(session, items, settings=settings)
    threads = [(k, r.conversation_id, r.customer_id) for k, r in zip(range(1, 501), results, strict=True)]
    address = {"whatsapp": "+3461{:07d}", "sms": "+3461{:07d}", "email": "cliente.{}@example.com"}
    rng = random.Random(4)
    made = 0
    while made < n:
        with db.write() as session:
            for _ in range(min(per_transaction, n - made)):
                k, conversation_id, customer_id = rng.choice(threads)
                channel, text, at = rng.choice(["whatsapp", "sms", "email"]), rng.choice(TEXTS), utcnow()
                message = Message(
                    id=uuid7(),
                    conversation_id=conversation_id,
                    customer_id=customer_id,
                    source_customer_id=customer_id,
                    channel=channel,
                    direction="outbound",
                    sender_type="agent",
                    sender_id="bench",
                    text=text,
                    status="queued",
                    occurred_at=at,
                    created_at=at,
                    updated_at=at,
                )
                session.add(message)
                enqueue(
                    session,
                    kind="message",
                    channel=channel,
                    message_id=message.id,
                    customer_id=customer_id,
                    payload={
                        "message_id": str(message.id),
                        "conversation_id": str(conversation_id),
                        "to": address[channel].format(k),
                        "text": text,
                        "format": CHANNEL_RULES[channel].format,
                    },
                )
                made += 1
    seconds = time.monotonic() - started
    db.dispose()
    con = sqlite3.connect(path)
    pending = con.execute("SELECT count(*) FROM outbox WHERE state = 'pending'").fetchone()[0]
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    assert pending == n, (pending, n)
    return path, {"items": n, "seconds": seconds, "replies_per_s": n / seconds, "per_transaction": per_transaction}


def _states(path: Path) -> dict[str, int]:
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    try:
        return dict(con.execute("SELECT state, count(*) FROM outbox GROUP BY state").fetchall())
    finally:
        con.close()


def _get_json(port: int, path: str) -> Any:
    conn = http.client.HTTPConnection(HOST, port, timeout=30)
    conn.request("GET", path)
    return json.loads(conn.getresponse().read())


def c4_run(
    label: str,
    template: Path,
    workdir: Path,
    n: int,
    workers: int,
    *,
    crash: bool = False,
    lease: float = 60.0,
    extra_env: dict[str, str] | None = None,
) -> dict[str, Any]:
    path = workdir / f"c4-{label}.db"
    shutil.copy(template, path)
    url = f"sqlite:///{path}"
    port = run.free_port()
    provider = run.Server("provider", [sys.executable, __file__, "_provider", str(port)], dict(os.environ), port)
    env = run.omnicanal_env(url)
    env.update(
        {
            "OMNICANAL_CHANNEL_ENDPOINTS": json.dumps({"*": f"http://{HOST}:{port}/send"}),
            "OMNICANAL_OUTBOX_LEASE_SECONDS": str(lease),
            **(extra_env or {}),
        }
    )
    log = workdir / f"worker-{label}.log"
    procs: list[Worker] = []
    out: dict[str, Any] = {"workers": workers, "items": n, "lease_seconds": lease}
    provider_cpu0 = provider.cpu_seconds()
    try:
        started = time.monotonic()
        procs = [Worker(env, log) for _ in range(workers)]
        marks: dict[str, float] = {}
        sent = 0
        killed_at_state: dict[str, int] | None = None
        sending_at_kill: set[str] = set()
        deadline = started + 420
        while time.monotonic() < deadline:
            states = _states(path)
            sent = states.get("sent", 0)
            now = time.monotonic()
            for frac in (0.01, 0.1, 0.5, 0.9):
                if sent >= n * frac and str(frac) not in marks:
                    marks[str(frac)] = now
            for p in procs:
                p.sample()
            if crash and killed_at_state is None and sent >= n * 0.3 and states.get("sending", 0) > 0:  # mid-batch
                procs[0].kill9()
                killed_at_state = _states(path)
                con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
                sending_at_kill = {
                    str(uuid.UUID(r[0])) for r in con.execute("SELECT id FROM outbox WHERE state = 'sending'")
                }
                con.close()
                out["killed_at"] = {"seconds": now - started, "states": killed_at_state}
                say(f"  kill -9 worker at {now - started:.1f}s: {killed_at_state}")
                procs.append(Worker(env, log))
                out["restarted_at_s"] = time.monotonic() - started
            if sent >= n:
                marks["1.0"] = now
                break
            time.sleep(0.1)
        elapsed = time.monotonic() - started
        for p in procs:
            p.sample()
        stats = _get_json(port, "/stats")
        provider_cpu = provider.cpu_seconds() - provider_cpu0
        out["provider_memory_mib"] = provider.memory()
    finally:
        for p in procs:
            p.stop()
        provider.stop()
    counts: dict[str, int] = stats["counts"]
    final = _states(path)
    con = sqlite3.connect(path)
    ids = {str(uuid.UUID(r[0])) for r in con.execute("SELECT id FROM outbox")}
    queued_msgs = con.execute(
        "SELECT status, count(*) FROM messages WHERE direction = 'outbound' GROUP BY status"
    ).fetchall()
    retried = con.execute("SELECT count(*) FROM outbox WHERE attempts > 1").fetchone()[0]
    con.close()
    resent = {k for k, c in counts.items() if c > 1}
    out.update(
        {
            "elapsed_s": elapsed,
            "finished": sent >= n,
            "final_states": final,
            "deliveries_per_s_overall": n / (marks.get("1.0", time.monotonic()) - started),
            "deliveries_per_s_steady": (0.8 * n) / (marks["0.9"] - marks["0.1"]) if "0.9" in marks else None,
            "startup_s": marks.get("0.01", float("nan")) - started,
            "provider_requests": stats["requests"],
            "distinct_keys": len(counts),
            "keys_match_items": set(counts) == ids,
            "resent_same_key": len(resent),
            "resent_subset_of_unknown": resent <= sending_at_kill if crash else not resent,
            "unknown_at_kill": len(sending_at_kill),
            "items_with_more_than_one_attempt": retried,
            "message_statuses": dict(queued_msgs),
            "worker_memory_mib": [p.memory for p in procs],
            "worker_cpu_s": [p.cpu for p in procs],
            "worker_cpu_ms_per_delivery": 1000 * sum(p.cpu for p in procs) / n,
            "provider_cpu_ms_per_request": 1000 * provider_cpu / max(stats["requests"], 1),
            "load_average_after": os.getloadavg(),
        }
    )
    ok = (
        out["finished"]
        and final == {"sent": n}
        and out["keys_match_items"]
        and out["resent_subset_of_unknown"]
        and dict(queued_msgs) == {"sent": n}
    )
    out["exactly_once_ok"] = ok
    steady = out["deliveries_per_s_steady"]
    rss = ", ".join(f"{m.get('VmHWM', 0):.0f}" for m in out["worker_memory_mib"])
    say(
        f"  {label:<22} {n:,} items in {elapsed:.1f}s: steady {steady or 0:,.0f}/s (10->90 %), overall "
        f"{out['deliveries_per_s_overall']:,.0f}/s incl. {out['startup_s']:.1f}s start-up; worker CPU "
        f"{out['worker_cpu_ms_per_delivery']:.2f} ms/delivery, "
        f"provider {out['provider_cpu_ms_per_request']:.2f} ms/req; "
        f"worker peak RSS {rss} MiB, provider {out['provider_memory_mib']['VmHWM']:.0f} MiB"
    )
    say(
        f"    provider: {stats['requests']:,} requests, {len(counts):,} distinct keys (== items: "
        f"{out['keys_match_items']}), {len(resent)} re-sent with the same key (deduped); DB {final}; "
        f"messages {dict(queued_msgs)}; {'OK' if ok else 'NOT OK'}"
    )
    if crash:
        say(
            f"    {len(sending_at_kill)} items 'sending' (outcome unknown) at the kill; re-sent keys all among them: "
            f"{out['resent_subset_of_unknown']}; {retried} items needed more than one attempt"
        )
    return out


def c4_crash(plan: Plan, workdir: Path) -> dict[str, Any]:
    """Only the kill -9 run of C4."""
    n = 5000 if plan.quick else 20_000
    say(f"C4 crash run only: {n:,} items, kill -9 the worker mid-batch, start another")
    template, seed = c4_seed(workdir, n)
    out = {"seed": seed, "crash": c4_run("kill -9 + restart", template, workdir, n, 1, crash=True, lease=5.0)}
    out["target_met"] = {"exactly_once": out["crash"]["exactly_once_ok"]}
    return out


def c4(plan: Plan, workdir: Path) -> dict[str, Any]:
    n = 5000 if plan.quick else 20_000
    say(f"C4 outbox deliveries to a local provider double, {n:,} items (SQLite)")
    out: dict[str, Any] = {"load_average_before": os.getloadavg()}
    template, out["seed"] = c4_seed(workdir, n)
    say(
        f"  seeded {n:,} outbound messages + outbox.enqueue in {out['seed']['seconds']:.1f}s "
        f"({out['seed']['replies_per_s']:,.0f}/s, {out['seed']['per_transaction']:,} per transaction)"
    )
    out["one_worker"] = c4_run("1 worker", template, workdir, n, 1)
    out["two_workers"] = c4_run("2 workers", template, workdir, n, 2)
    out["crash"] = c4_run("kill -9 + restart", template, workdir, n, 1, crash=True, lease=5.0)
    best = max(out["one_worker"]["deliveries_per_s_steady"] or 0, out["two_workers"]["deliveries_per_s_steady"] or 0)
    rss = max(m.get("VmHWM", 0) for k in ("one_worker", "two_workers", "crash") for m in out[k]["worker_memory_mib"])
    say(f"  peak RSS of every worker {rss:.0f} MiB [{'ok' if rss < RSS_LIMIT_MIB else 'OVER'}]")
    out["target_met"] = {"rate": best >= 1000, "exactly_once": out["crash"]["exactly_once_ok"]}
    say(
        f"  target >= 1,000 deliveries/s: {verdict(best >= 1000)}; exactly once after kill -9: "
        f"{verdict(out['crash']['exactly_once_ok'])}"
    )
    return out


# -- main -------------------------------------------------------------------------------------------


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1].startswith("_"):
        child, child_args = sys.argv[1], sys.argv[2:]
        if child == "_c1inproc":
            c1_inproc_child(child_args[0], int(child_args[1]), int(child_args[2]), int(child_args[3]))
        elif child == "_c2inproc":
            c2_inproc_child(child_args[0], int(child_args[1]), child_args[2])
        elif child == "_sse":
            sse_child(int(child_args[0]), child_args[1], float(child_args[2]), child_args[3])
        elif child == "_provider":
            provider_child(int(child_args[0]))
        return
    if len(sys.argv) > 1 and sys.argv[1] in ("profile-c1", "profile-c2"):
        (profile_c1 if sys.argv[1] == "profile-c1" else profile_c2)(int(sys.argv[2]) if len(sys.argv) > 2 else 10)
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "which",
        nargs="?",
        default="all",
        choices=["c1", "c1inproc", "c1pg", "c2", "c3", "c4", "c4crash", "all"],
    )
    parser.add_argument("--quick", action="store_true", help="short runs, smaller C4 (smoke test)")
    parser.add_argument("--batch", type=int, default=32, help="c1inproc: messages per receive() batch")
    parser.add_argument("--quiet-load", type=float, default=2.0, help="wait for a 1-min load average below this")
    parser.add_argument("--max-wait", type=float, default=60.0, help="... but at most this many seconds")
    args = parser.parse_args()
    global C1_BATCH
    C1_BATCH = args.batch
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (Debian: apt-get install wrk)")
    plan = Plan.make(args.quick)
    started = datetime.now(UTC)
    report: dict[str, Any] = {
        "date": started.isoformat(timespec="seconds"),
        "quick": plan.quick,
        "machine": run.machine(),
        "plan": {
            "duration_s": plan.duration,
            "warmup_s": plan.warmup,
            "connections": plan.connections,
            "threads": plan.threads,
        },
    }
    say(
        f"omnicanal conversation benchmarks {report['date']}  ({report['machine']['cores']} cores, "
        f"{report['machine']['cpu']}){'  QUICK' if plan.quick else ''}"
    )
    run.DATA.mkdir(exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="conv-", dir=run.DATA))
    steps = ["c1", "c1pg", "c2", "c3", "c4"] if args.which == "all" else [args.which]
    functions = {
        "c1": c1,
        "c1inproc": c1_inproc,
        "c1pg": c1_postgres,
        "c2": c2,
        "c3": c3,
        "c4": c4,
        "c4crash": c4_crash,
    }
    try:
        for step in steps:
            say()
            report[step + "_load"] = wait_for_quiet(args.quiet_load, args.max_wait)
            try:
                report[step] = functions[step](plan, workdir)
            except Exception as exc:  # one failed benchmark must not lose the others' figures
                import traceback

                traceback.print_exc()
                report[step] = {"error": f"{type(exc).__name__}: {exc}"}
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        run.RESULTS.mkdir(exist_ok=True)
        name = f"{started.strftime('%Y%m%dT%H%M%SZ')}-conversations-{args.which}{'-quick' if plan.quick else ''}.json"
        (run.RESULTS / name).write_text(json.dumps(report, indent=2, default=str))
        say(f"\nresults: {run.RESULTS / name}")


if __name__ == "__main__":
    main()
