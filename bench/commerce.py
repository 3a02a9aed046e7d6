"""Commerce benchmarks (issue #5): ``python bench/commerce.py [k1|k2|k1-postgres|k1-inproc|all] [--quick]``.

K1  order placement over HTTP on SQLite: quote + create (with an Idempotency-Key) + pay, 3 lines, one active
    promotion, ``wrk`` with ``lua/orders.lua``; orders/s = payments accepted per second. Ceilings in the same
    run: a bare Starlette POST and the same plus one raw sqlite3 insert per request (``ceilings.py``), with the
    B1 wrk command; an order takes three requests, so the bare ceiling in orders/s is a third of its req/s.
    ``BENCH_K1_CONNECTIONS`` runs the order steps with another number of connections than the project's 32.
K2  quote with 10,000 products and 200 active promotions: in process (``orders.quote``, what the endpoint
    runs) on 5,000 random carts, and over HTTP (``POST /api/v1/carts/quote``, wrk -c4).
K1-postgres  K1 on a throwaway PostgreSQL cluster (recorded, no target).
K1-inproc  K1's requests driven into the ASGI application in process, one order at a time (no sockets, no wrk):
    SQL statements and CPU time per request of each kind (quote, create, pay). Where the CPU of an order goes.
K1-batched  the same with 32 orders in flight (``BENCH_IN_FLIGHT`` for another number), so that the ingest writer
    batches them as under wrk: CPU of the process per order (the server's side of K1 without sockets and HTTP
    parsing; steadier than wrk for A/B).

Same rules as ``bench/run.py`` (whose helpers this imports): servers on free ports of 127.0.0.1, every figure
beside a ceiling measured in the same run, server CPU per request and peak RSS recorded, results as JSON in
``bench/results/``. Figures are written up in docs/benchmarks-commerce.md.
Internal child entry point: ``_seed URL PRODUCTS PROMOTIONS`` (fills a migrated database through the services).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
# bench/email.py would shadow the standard library's email package (which urllib needs): import it first
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != BENCH]
import email.message  # noqa: E402, F401
import urllib.request  # noqa: E402, F401

sys.path.insert(0, str(BENCH))

import run  # noqa: E402  (bench/run.py: servers, wrk, ceilings, formatting)
from run import Plan, fmt_http, fmt_rss, say, serve, verdict  # noqa: E402

ROOT = run.ROOT


def seed(url: str, products: int, promotions: int) -> dict[str, Any]:
    """A catalog, a warehouse with plenty of stock, customers and promotions, through the services."""
    sys.path.insert(0, str(ROOT / "src"))
    from omnicanal.access.service import create_api_key
    from omnicanal.commerce import catalog, stores
    from omnicanal.commerce import promotions as promo
    from omnicanal.commerce.schemas import CategoryIn, ProductIn, PromotionIn, StoreIn
    from omnicanal.customers.schemas import CustomerCreate, IdentityIn
    from omnicanal.customers.service import create_customer
    from omnicanal.db import create_database
    from omnicanal.settings import Settings

    rng = random.Random(5)
    settings = Settings(database_url=url)
    db = create_database(settings)
    skus: list[str] = []
    started = time.perf_counter()
    with db.write() as session:
        _, token = create_api_key(session, name="bench", role="admin")
        slugs = [f"cat-{n}" for n in range(50)]
        for slug in slugs:
            catalog.create_category(session, CategoryIn(slug=slug, name=slug.title()))
        warehouse = stores.create_store(session, StoreIn(code="WH", name="Warehouse", kind="warehouse"))
        for n in range(products):
            sku = f"SKU-{n:05d}"
            skus.append(sku)
            price = rng.randrange(500, 20000, 5)
            product = ProductIn.model_validate({
                "name": f"Product {n}", "category": slugs[n % len(slugs)],
                "tax_class": "reduced" if n % 10 == 0 else "standard",
                "variants": [{"sku": sku, "price": {"amount": price, "currency": "EUR"}, "attributes": {"n": n}}],
            })  # fmt: skip
            catalog.save_product(session, product)
            session.add(stores.Stock(location_id=warehouse.id, sku=sku, on_hand=10**8, reserved=0))
            if n % 500 == 499:
                session.flush()
        customers = []
        for n in range(200):
            data = CustomerCreate(identities=[IdentityIn(type="email", value=f"bench{n}@shop.example")])
            customers.append(str(create_customer(session, data=data, settings=settings, source="bench").id))
        kinds = ["product"] * 120 + ["category"] * 50 + ["cart"] * 20 + ["bxgy"] * 5 + ["bundle"] * 4 + ["ship"]
        for n, kind in enumerate(kinds[:promotions]):
            body: dict[str, Any] = {"name": f"Promo {n}", "priority": rng.randrange(10)}
            if kind == "product":
                body |= {"kind": "percentage", "scope": "product", "percent": rng.choice([5, 10, 15]),
                         "skus": rng.sample(skus, 20)}  # fmt: skip
            elif kind == "category":
                body |= {"kind": "fixed", "scope": "category", "amount": 100, "currency": "EUR",
                         "categories": [rng.choice(slugs)], "stackable": n % 3 != 0}  # fmt: skip
            elif kind == "cart":
                body |= {"kind": "percentage", "scope": "cart", "percent": 5, "min_subtotal": 10000 + 1000 * n,
                         "segments": ["gold"] if n % 2 else []}  # fmt: skip
            elif kind == "bxgy":
                body |= {"kind": "buy_x_get_y", "scope": "product", "buy": 2, "get": 1, "skus": rng.sample(skus, 30)}
            elif kind == "bundle":
                pair = rng.sample(skus, 2)
                body |= {"kind": "bundle", "bundle": [{"sku": s, "quantity": 1} for s in pair], "bundle_price": 999,
                         "currency": "EUR"}  # fmt: skip
            else:
                body |= {"kind": "free_shipping", "scope": "cart", "min_subtotal": 5000}
            promo.save_promotion(session, PromotionIn.model_validate(body))
    db.dispose()
    return {"token": token, "skus": skus, "customers": customers, "seconds": time.perf_counter() - started}


def quote_inproc(url: str, skus: list[str], customers: list[str], calls: int) -> dict[str, Any]:
    """``orders.quote`` exactly as the endpoint runs it (read session, JSON-ready output), one at a time."""
    sys.path.insert(0, str(ROOT / "src"))
    from omnicanal.commerce import orders
    from omnicanal.commerce.catalog import catalog_items
    from omnicanal.commerce.checkout import quote_out
    from omnicanal.commerce.schemas import CartIn
    from omnicanal.db import create_database
    from omnicanal.settings import Settings

    rng = random.Random(11)
    settings = Settings(database_url=url)
    db = create_database(settings)
    with db.read() as session:  # a running server soon holds every SKU it sells in its catalog cache
        for start in range(0, len(skus), 500):
            catalog_items(session, skus[start : start + 500])
    timings = []
    cpu = []
    discounted = 0
    for n in range(calls + 500):
        body = CartIn.model_validate({
            "customer_id": rng.choice(customers), "channel": rng.choice(["web", "app", "store"]),
            "lines": [{"sku": sku, "quantity": rng.randint(1, 3)} for sku in rng.sample(skus, rng.randint(3, 5))],
            "fulfillment": {"type": "delivery"},
        })  # fmt: skip
        started, started_cpu = time.perf_counter(), time.process_time()
        with db.read() as session:
            out = quote_out(orders.quote(session, body, settings=settings)).model_dump(mode="json")
        elapsed = (time.perf_counter() - started) * 1000
        if n >= 500:  # warm-up
            timings.append(elapsed)
            cpu.append((time.process_time() - started_cpu) * 1000)
            discounted += bool(out["discount"] or out["shipping_discount"])
    db.dispose()
    timings.sort()
    cpu.sort()
    return {
        "cpu_p50_ms": cpu[len(cpu) // 2], "cpu_p99_ms": cpu[int(len(cpu) * 0.99) - 1],
        "calls": calls, "p50_ms": timings[len(timings) // 2], "p99_ms": timings[int(len(timings) * 0.99) - 1],
        "max_ms": timings[-1], "mean_ms": statistics.fmean(timings), "with_discount": discounted,
    }  # fmt: skip


def seeded(workdir: Path, name: str, products: int, promotions: int, url: str | None = None) -> dict[str, Any]:
    url = url or f"sqlite:///{workdir / name}"
    run.omnicanal(["migrate"], url)
    done = subprocess.run(
        [sys.executable, __file__, "_seed", url, str(products), str(promotions)],
        capture_output=True, text=True, cwd=ROOT, check=False,
    )  # fmt: skip
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith("RESULT ")), None)
    if done.returncode != 0 or line is None:
        raise RuntimeError(f"seeding failed:\n{done.stdout}\n{done.stderr[-4000:]}")
    data: dict[str, Any] = json.loads(line.removeprefix("RESULT "))
    data["url"] = url
    return data


def k1(plan: Plan, workdir: Path, *, url: str | None = None, backend: str = "sqlite") -> dict[str, Any]:
    connections = int(os.environ.get("BENCH_K1_CONNECTIONS", plan.connections))
    # BENCH_WITHOUT_CEILINGS=1 for quick comparisons of two versions; recorded figures keep their ceilings
    ceilings = backend == "sqlite" and not os.environ.get("BENCH_WITHOUT_CEILINGS")
    say(f"K1 order placement over HTTP ({backend}): quote + create + pay, 3 lines, one promotion; "
        f"wrk -t{plan.threads} -c{connections} -d{plan.duration}s"
        + (f" (ceilings -c{plan.connections})" if ceilings else ""))  # fmt: skip
    out: dict[str, Any] = {"backend": backend, "connections": connections}
    if ceilings:
        with serve("bare", *_ceiling_server("bare")) as server:
            out["ceiling_bare"] = run.wrk(server, "ingest.lua", plan)
        say(fmt_http("ceiling: bare Starlette POST", out["ceiling_bare"]))
        say(f"    = {out['ceiling_bare']['requests_per_s'] / 3:,.0f} orders/s at three requests an order")
        with serve("sqlite", *_ceiling_server("sqlite", workdir / "ceiling-k1.db")) as server:
            out["ceiling_sqlite_insert"] = run.wrk(server, "ingest.lua", plan)
        say(fmt_http("ceiling: Starlette + 1 sqlite3 insert", out["ceiling_sqlite_insert"]))
    # SQLite: one serving process, then ``serve --workers 2`` (whose writers take turns on one lock file), each on
    # a database of its own; PostgreSQL: one process (BENCH_WORKERS=2 for two)
    default = "1,2" if backend == "sqlite" else "1"
    for workers in [int(n) for n in os.environ.get("BENCH_WORKERS", default).split(",")]:
        data = seeded(workdir, f"k1-{workers}.db", 30, 0, url=url)
        _one_promotion(data["url"])
        env = {"BENCH_TOKEN": data["token"], "BENCH_SKUS": ",".join(data["skus"]),
               "BENCH_CUSTOMERS": ",".join(data["customers"])}  # fmt: skip
        with serve("omnicanal", *run.omnicanal_server(data["url"], workers=workers)) as server:
            result = run.wrk(server, "orders.lua", plan, env=env, connections=connections)
            memory = server.memory()
        orders = _orders_line(result)
        seconds = result["seconds"]
        rate = orders["paid"] / seconds
        label = "one process" if workers == 1 else f"{workers} processes"
        out[f"workers_{workers}"] = {"omnicanal": result, "memory_mib": memory, "orders": orders, "orders_per_s": rate}
        out["orders_per_s"] = max(out.get("orders_per_s", 0.0), rate)
        say(fmt_http(f"omnicanal quote/create/pay, {label}", result))
        say(f"  orders placed and paid: {orders['paid']:,} in {seconds:.1f} s = {rate:,.0f} orders/s "
            f"(quotes {orders['quoted']:,}, creates {orders['created']:,}, refused {orders['refused']})")  # fmt: skip
        say(fmt_rss(memory))
    if backend == "sqlite" and connections == plan.connections:
        out["target_met"] = out["orders_per_s"] >= 500
        say(f"  target >= 500 orders/s: {verdict(out['target_met'])}")
    elif backend == "sqlite":
        say(f"  target >= 500 orders/s: not judged at -c{connections} (its load is -c{plan.connections})")
    return out


def _ceiling_server(kind: str, db: Path | None = None) -> tuple[list[str], dict[str, str], int]:
    """``run.ceiling_server`` run with ``-P``: bench/ on the path would shadow the standard library's email."""
    cmd, env, port = run.ceiling_server(kind, db)
    return [cmd[0], "-P", *cmd[1:]], env, port


def _orders_line(result: dict[str, Any]) -> dict[str, int]:
    counts = result.get("orders_counts")
    return counts if counts else {"quoted": 0, "created": 0, "paid": 0, "refused": 0}


def _one_promotion(url: str) -> None:
    sys.path.insert(0, str(ROOT / "src"))
    from omnicanal.commerce import promotions as promo
    from omnicanal.commerce.schemas import PromotionIn
    from omnicanal.db import create_database
    from omnicanal.settings import Settings

    db = create_database(Settings(database_url=url))
    with db.write() as session:
        promo.save_promotion(session, PromotionIn(name="10 % off everything", kind="percentage", percent=10))
    db.dispose()


def k1_inproc(plan: Plan, workdir: Path, *, concurrency: int = 1) -> dict[str, Any]:
    """K1's three requests straight into the ASGI app: statements and CPU per request (what wrk cannot see).

    ``concurrency`` > 1: that many orders in flight at once, so the ingest writer batches them as it does under
    wrk; then only the CPU of the whole process per order is told (the requests overlap).
    """
    import asyncio
    import uuid

    sys.path.insert(0, os.environ.get("BENCH_SRC") or str(ROOT / "src"))  # BENCH_SRC: another checkout's src
    from sqlalchemy import event

    from omnicanal.app import create_app
    from omnicanal.settings import Settings

    orders = 200 if plan.quick else 1_000 if concurrency == 1 else 3_000
    how = "one at a time" if concurrency == 1 else f"{concurrency} at a time"
    say(f"K1 in process: {orders:,} orders (quote + create + pay) {how} after 100 warm-up orders")
    data = seeded(workdir, "k1-inproc.db", 30, 0)
    _one_promotion(data["url"])
    app = create_app(Settings(database_url=data["url"], outbox_in_process=False))
    if concurrency > 1:
        from omnicanal import longlived

        longlived.enable()  # as ``omnicanal serve`` does: else full collector passes walk every module and mapper
    database = app.state.database
    statements = [0]

    def count(*_: Any) -> None:
        statements[0] += 1

    for engine in {database.write_engine, database.read_engine}:
        event.listen(engine, "before_cursor_execute", count)
    auth = f"Bearer {data['token']}".encode()
    rng = random.Random(1)

    async def call(path: str, body: dict[str, Any], *headers: tuple[bytes, bytes]) -> dict[str, Any]:
        raw = json.dumps(body).encode()
        scope = {"type": "http", "http_version": "1.1", "method": "POST", "path": path, "raw_path": path.encode(),
                 "query_string": b"", "root_path": "", "scheme": "http", "server": ("127.0.0.1", 80),
                 "client": ("127.0.0.1", 1), "headers": [(b"content-type", b"application/json"),
                 (b"authorization", auth), (b"content-length", str(len(raw)).encode()), *headers]}  # fmt: skip
        answer: dict[str, Any] = {"status": 0, "body": b""}

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": raw, "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                answer["status"] = message["status"]
            else:
                answer["body"] += message.get("body", b"")

        await app(scope, receive, send)
        if answer["status"] >= 300:
            raise RuntimeError(f"{path}: {answer['status']} {answer['body'][:300]!r}")
        parsed: dict[str, Any] = json.loads(answer["body"])
        return parsed

    async def one_order(tally: dict[str, list[float]]) -> None:
        cart = {"customer_id": rng.choice(data["customers"]), "channel": "web",
                "lines": [{"sku": s, "quantity": rng.randint(1, 2)} for s in rng.sample(data["skus"], 3)],
                "fulfillment": {"type": "delivery", "address": {"line1": "Gran Via 1", "city": "Madrid"}}}  # fmt: skip
        steps = [("quote", "/api/v1/carts/quote", cart, ()),
                 ("create", "/api/v1/orders", cart, ((b"idempotency-key", uuid.uuid4().hex.encode()),))]  # fmt: skip
        order: dict[str, Any] = {}
        for kind, path, body, headers in steps:
            before, started = statements[0], time.process_time()
            order = await call(path, body, *headers)
            tally[kind] += [time.process_time() - started, statements[0] - before]
        before, started = statements[0], time.process_time()
        await call(f"/api/v1/orders/{order['id']}/payments", {"method": "card", "amount": order["balance_due"]})
        tally["pay"] += [time.process_time() - started, statements[0] - before]

    rounds = 5  # on a shared machine other work only adds CPU time: the best round is the steadiest figure

    async def many_at_once() -> dict[str, Any]:
        tally: dict[str, list[float]] = {"quote": [], "create": [], "pay": []}
        in_flight = asyncio.Semaphore(concurrency)  # as wrk's connections: each has one order going at a time

        async def one_order_in_turn() -> None:
            async with in_flight:
                await one_order(tally)

        async with app.router.lifespan_context(app):
            await asyncio.gather(*(one_order_in_turn() for _ in range(100)))
            per_round, cpu_ms = orders // rounds, []
            for _ in range(rounds):
                started, clock = time.process_time(), time.perf_counter()
                await asyncio.gather(*(one_order_in_turn() for _ in range(per_round)))
                cpu_ms.append((1000 * (time.process_time() - started) / per_round, time.perf_counter() - clock))
        best = min(cpu_ms)
        say(f"  order  CPU {sum(c for c, _ in cpu_ms) / rounds:6.2f} ms (best of {rounds} rounds {best[0]:6.2f}, "
            f"{per_round / best[1]:,.0f} orders/s in it)")  # fmt: skip
        return {"orders": orders, "concurrency": concurrency, "cpu_ms_per_order": sum(c for c, _ in cpu_ms) / rounds,
                "best_round_cpu_ms": best[0]}  # fmt: skip

    if concurrency > 1:
        return asyncio.run(many_at_once())

    async def main() -> dict[str, Any]:
        tally: dict[str, list[float]] = {"quote": [], "create": [], "pay": []}
        async with app.router.lifespan_context(app):
            for _ in range(100):
                await one_order(tally)
            tally = {kind: [] for kind in tally}
            for _ in range(orders):
                await one_order(tally)
        per_round = orders // rounds
        result = {}
        for kind, values in tally.items():
            cpu = values[0::2]
            best = min(sum(cpu[n * per_round : (n + 1) * per_round]) for n in range(rounds))
            result[kind] = {"cpu_ms": 1000 * sum(cpu) / orders, "best_round_cpu_ms": 1000 * best / per_round,
                            "statements": sum(values[1::2]) / orders}  # fmt: skip
        return result

    result = asyncio.run(main())
    total_cpu = sum(r["cpu_ms"] for r in result.values())
    total_best = sum(r["best_round_cpu_ms"] for r in result.values())
    total_statements = sum(r["statements"] for r in result.values())
    for kind, r in result.items():
        say(f"  {kind:6} CPU {r['cpu_ms']:6.2f} ms (best of {rounds} rounds {r['best_round_cpu_ms']:6.2f})  "
            f"{r['statements']:5.1f} SQL statements through SQLAlchemy")  # fmt: skip
    say(f"  order  CPU {total_cpu:6.2f} ms (best rounds {total_best:6.2f})  {total_statements:5.1f} SQL statements "
        f"(at most {1000 / total_cpu:,.0f} orders/s per core)")  # fmt: skip
    return {"orders": orders, "per_request": result, "cpu_ms_per_order": total_cpu, "best_rounds_cpu_ms": total_best,
            "statements": total_statements}  # fmt: skip


def k2(plan: Plan, workdir: Path) -> dict[str, Any]:
    products, calls = (2_000, 1_000) if plan.quick else (10_000, 5_000)
    say(f"K2 quote with {products:,} products and 200 active promotions")
    data = seeded(workdir, "k2.db", products, 200)
    say(f"  seeded in {data['seconds']:.0f} s")
    inproc = quote_inproc(data["url"], data["skus"], data["customers"], calls)
    say(
        f"  in process ({calls:,} carts of 3-5 lines, one at a time): p50 {inproc['p50_ms']:.2f} ms  "
        f"p99 {inproc['p99_ms']:.2f} ms  max {inproc['max_ms']:.1f} ms  ({inproc['with_discount']:,} discounted); "
        f"CPU p50 {inproc['cpu_p50_ms']:.2f} ms p99 {inproc['cpu_p99_ms']:.2f} ms"
    )
    out: dict[str, Any] = {"products": products, "promotions": 200, "inproc": inproc}
    body_file = workdir / "quote.json"
    rng = random.Random(3)
    carts = [
        {"customer_id": rng.choice(data["customers"]), "channel": "web", "fulfillment": {"type": "delivery"},
         "lines": [{"sku": s, "quantity": 1} for s in rng.sample(data["skus"], 4)]}
        for _ in range(200)
    ]  # fmt: skip
    body_file.write_text("\n".join(json.dumps(c) for c in carts))
    with serve("bare", *_ceiling_server("bare")) as server:
        out["ceiling_bare"] = run.wrk(server, "ingest.lua", plan, connections=4)
    say(fmt_http("ceiling: bare Starlette POST (-c4)", out["ceiling_bare"]))
    env = {"BENCH_TOKEN": data["token"], "BENCH_QUOTES": str(body_file)}
    with serve("omnicanal", *run.omnicanal_server(data["url"])) as server:
        out["http"] = run.wrk(server, "quote.lua", plan, connections=4, env=env)
        out["memory_mib"] = server.memory()
    say(fmt_http("omnicanal POST /carts/quote (-c4)", out["http"]))
    say(fmt_rss(out["memory_mib"]))
    out["target_met"] = inproc["p99_ms"] <= 15 and out["http"]["latency_ms"]["99"] <= 15
    say(f"  target p99 <= 15 ms: {verdict(out['target_met'])}")
    return out


def k1_postgres(plan: Plan, workdir: Path) -> dict[str, Any]:
    from tests.support.postgres import PostgresCluster

    cluster = PostgresCluster()
    cluster.start()
    try:
        cluster.create_database("bench_commerce")
        return k1(plan, workdir, url=cluster.url("bench_commerce"), backend="postgresql")
    finally:
        cluster.stop()


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_seed":
        result = seed(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
        print("RESULT " + json.dumps(result))
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    which = ["k1", "k2", "k1-postgres", "k1-inproc", "k1-batched", "all"]
    parser.add_argument("which", nargs="?", default="all", choices=which)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    plan = Plan.make(args.quick)
    results: dict[str, Any] = {"machine": run.machine(), "started": datetime.now(UTC).isoformat()}
    with tempfile.TemporaryDirectory(prefix="bench-commerce-") as tmp:
        workdir = Path(tmp)
        if args.which in ("k1", "all"):
            results["k1"] = k1(plan, workdir)
        if args.which in ("k2", "all"):
            results["k2"] = k2(plan, workdir)
        if args.which in ("k1-inproc", "all"):
            results["k1_inproc"] = k1_inproc(plan, workdir)
        if args.which in ("k1-batched", "all"):
            results["k1_batched"] = k1_inproc(plan, workdir, concurrency=int(os.environ.get("BENCH_IN_FLIGHT", 32)))
        if args.which in ("k1-postgres", "all"):
            results["k1_postgres"] = k1_postgres(plan, workdir)
    run.RESULTS.mkdir(exist_ok=True)
    name = f"{datetime.now(UTC):%Y%m%d-%H%M%S}-commerce-{args.which}{'-quick' if args.quick else ''}.json"
    (run.RESULTS / name).write_text(json.dumps(results, indent=2, default=str))
    say(f"results: bench/results/{name}")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
