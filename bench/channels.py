"""Channel benchmarks (issue #4): ``python bench/channels.py [w1] [--quick]``.

W1: signed WhatsApp Cloud API webhooks (``X-Hub-Signature-256`` checked on every request) -> message
stored and threaded into the customer's conversation, one ``omnicanal serve`` process on SQLite,
``wrk -t2 -c32``. 80 % of the messages come from a pool of returning customers (seeded through the
same webhook before the run), 20 % from new ones. Printed beside the bare-framework ceiling (a
Starlette endpoint that only reads the body) measured in the same run, with the server's CPU per
request, its peak RSS (VmHWM) and the load average. Same helpers and rules as ``bench/run.py``.
Figures are written up in docs/benchmarks-channels.md.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import random
import sqlite3
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import run  # noqa: E402  (bench/run.py: servers, wrk, ceilings, formatting)
from conversations import Client  # noqa: E402
from run import RESULTS, Plan, fmt_http, fmt_rss, say, serve, verdict  # noqa: E402

APP_SECRET = "bench-app-secret"
NUMBER_ID = "106540352242922"
TEXTS = [
    "Hola, ¿dónde está mi pedido? Lo compré hace tres días y no sé nada",
    "Quiero hacer una devolución de unas zapatillas, me quedan pequeñas",
    "Buenas tardes, ¿tenéis la talla 42 en la tienda de Gran Vía?",
    "¿A qué hora abrís el sábado?",
    "Gracias!",
]
TARGET = 1500


def webhook(wa_id: str, message_id: str, rng: random.Random) -> bytes:
    message = {"from": wa_id, "id": message_id, "timestamp": str(int(time.time())), "type": "text",
               "text": {"body": rng.choice(TEXTS)}}  # fmt: skip
    value = {"messaging_product": "whatsapp", "metadata": {"display_phone_number": "34600000000",
             "phone_number_id": NUMBER_ID}, "contacts": [{"profile": {"name": "Cliente"}, "wa_id": wa_id}],
             "messages": [message]}  # fmt: skip
    payload = {"object": "whatsapp_business_account",
               "entry": [{"id": "102290129340398", "changes": [{"value": value, "field": "messages"}]}]}  # fmt: skip
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()


def sign(body: bytes) -> str:
    return "sha256=" + hmac.new(APP_SECRET.encode(), body, hashlib.sha256).hexdigest()


def prepare_requests(path: Path, count: int, pool: int, nonce: str) -> None:
    rng = random.Random(nonce)
    with path.open("wb") as out:
        for n in range(count):
            k = rng.randint(1, pool) if rng.random() < 0.8 else rng.randint(pool + 1, 9_999_999)
            body = webhook(f"3461{k:07d}", f"wamid.W1{nonce}{n:08d}", rng)
            out.write(sign(body).encode() + b"\t" + body + b"\n")


def seed(port: int, channel_id: str, pool: int) -> float:
    """One message from each returning customer, through the webhook itself."""
    import http.client

    started = time.monotonic()
    rng = random.Random(7)

    def send(k: int) -> None:
        body = webhook(f"3461{k:07d}", f"wamid.SEED{k:08d}", rng)
        conn = http.client.HTTPConnection(run.HOST, port, timeout=60)
        conn.request("POST", f"/webhooks/whatsapp/{channel_id}", body=body,
                     headers={"Content-Type": "application/json", "X-Hub-Signature-256": sign(body)})  # fmt: skip
        response = conn.getresponse()
        answer = response.read()
        conn.close()
        if response.status != 200:
            raise RuntimeError(f"seeding failed: {response.status} {answer[:300]!r}")

    with ThreadPoolExecutor(16) as pool_threads:
        list(pool_threads.map(send, range(1, pool + 1)))
    return time.monotonic() - started


def counts(db: Path) -> dict[str, int]:
    with sqlite3.connect(db) as con:
        return {
            "messages": con.execute("SELECT count(*) FROM messages WHERE channel = 'whatsapp'").fetchone()[0],
            "conversations": con.execute("SELECT count(*) FROM conversations").fetchone()[0],
            "customers": con.execute("SELECT count(*) FROM customers").fetchone()[0],
        }


def w1(plan: Plan, workdir: Path, *, profile: bool = False) -> dict[str, Any]:
    pool = 1000 if plan.quick else 3000
    say(
        f"W1 signed WhatsApp webhooks -> stored and threaded (SQLite, one process), wrk -t{plan.threads} "
        f"-c{plan.connections} -d{plan.duration}s after {plan.warmup}s warm-up; "
        f"80 % from {pool:,} returning customers"
    )
    out: dict[str, Any] = {"pool": pool, "load_average_before": os.getloadavg()}
    nonce = str(int(time.time()) % 100_000)
    requests_file = workdir / "w1-requests.tsv"
    prepare_requests(requests_file, 120_000 if not plan.quick else 30_000, pool, nonce)
    lua_env = {"BENCH_REQUESTS": str(requests_file), "BENCH_THREADS": str(plan.threads)}

    with serve("bare", *run.ceiling_server("bare")) as server:
        out["ceiling_bare"] = run.wrk(server, "whatsapp.lua", plan, env={**lua_env, "BENCH_PATH": "/api/v1/events"})
        out["ceiling_bare"]["memory_mib"] = server.memory()
    say(fmt_http("ceiling: bare Starlette POST", out["ceiling_bare"]))

    db = workdir / "w1.db"
    url = f"sqlite:///{db}"
    run.omnicanal(["migrate"], url)
    token = run.omnicanal(["apikey", "create", "--role", "admin", "--name", "bench"], url)
    cmd, env, port = run.omnicanal_server(url)
    env["OMNICANAL_CHANNEL_ENDPOINTS"] = '{"*": "log"}'
    with serve("omnicanal", cmd, env, port) as server:
        channel = Client(port, token).ok("POST", "/api/v1/channels", {
            "type": "whatsapp", "name": "bench", "config": {"phone_number_id": NUMBER_ID, "app_secret": APP_SECRET,
                                                            "verify_token": "v", "access_token": "a"}})  # fmt: skip
        out["seed_seconds"] = seed(port, channel["id"], pool)
        say(f"  seeded {pool:,} returning customers through the webhook in {out['seed_seconds']:.1f}s")
        before = counts(db)
        path = f"/webhooks/whatsapp/{channel['id']}"
        spy = None
        if profile:
            collapsed = workdir / "w1.collapsed"
            spy = subprocess.Popen(["py-spy", "record", "-p", str(server.proc.pid), "-d", str(plan.duration),
                                    "-r", "200", "-f", "raw", "-o", str(collapsed), "--nonblocking"],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        result = run.wrk(server, "whatsapp.lua", plan, env={**lua_env, "BENCH_PATH": path}, warmup=spy is None)
        if spy is not None:
            spy.wait(timeout=60)
        out["memory_mib"] = server.memory()
    after = counts(db)
    out["stored"] = {k: after[k] - before[k] for k in after}
    out["omnicanal"] = result
    out["load_average_after"] = os.getloadavg()
    say(fmt_http("omnicanal POST /webhooks/whatsapp", result, "msgs/s"))
    say(f"  stored (warm-up + run): {out['stored']['messages']:,} messages, {out['stored']['conversations']:,} new "
        f"conversations, {out['stored']['customers']:,} new customers")  # fmt: skip
    say(fmt_rss(out["memory_mib"]))
    if profile:
        from conversations import summarize_profile

        summarize_profile(workdir / "w1.collapsed")
    load = out["load_average_after"]
    say(f"  load average before {out['load_average_before'][0]:.2f}, after {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
        f" ({os.cpu_count()} CPUs, shared)")  # fmt: skip
    met = result["requests_per_s"] >= TARGET and not result["failed"]
    say(f"  target >= {TARGET:,} messages/s: {verdict(met)}")
    out["target_met"] = met
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("which", nargs="?", default="w1", choices=["w1"])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--profile", action="store_true", help="py-spy the server during the run (no figures kept)")
    args = parser.parse_args()
    plan = Plan.make(args.quick)
    with tempfile.TemporaryDirectory(prefix="omnicanal-bench-channels-") as tmp:
        results = {"w1": w1(plan, Path(tmp), profile=args.profile), "machine": run.machine(),
                   "when": datetime.now(UTC).isoformat(timespec="seconds")}  # fmt: skip
    RESULTS.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    (RESULTS / f"{stamp}-channels-w1.json").write_text(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
