"""Inbound email benchmark: ``python bench/channels_email.py [--quick] [--connections N] [--seconds S]``.

E1: emails per second taken in by the built-in receiver (``omnicanal email receive``, its own process, SQLite):
each one parsed, threaded, stored with its customer, conversation, timeline event and files, and committed
before the 250 answer. The mix: 60 % from returning customers, 20 % replies to an earlier message (In-Reply-To),
20 % HTML only, 5 % with a 20 kB PDF, 5 % out-of-office replies.
Ceiling, same run, same client: aiosmtpd answering 250 to every message with a no-op handler, in its own process.
Also printed: the receiver's peak RSS and CPU per email, latency percentiles, and a check that every
acknowledged email is in the database.

Figures are written up in docs/benchmarks-channels-email.md. Internal entry point: ``_ceiling PORT``.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, this file's directory comes first on sys.path, and this file would hide the standard
# library's ``email`` package: drop it before anything imports ``email``.
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    del sys.path[0]

import argparse
import asyncio
import json
import os
import random
import shutil
import socket
import sqlite3
import subprocess
import tempfile
import time
import uuid
from email.message import EmailMessage
from email.utils import formatdate
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DOMAIN = "shop.example.com"
TEXTS = [
    "Hola, ¿dónde está mi pedido? Lo compré hace tres días y no sé nada.",
    "Quiero hacer una devolución de unas zapatillas, me quedan pequeñas.",
    "Buenas tardes, ¿tenéis la talla 42 en la tienda de Gran Vía?",
    "No me ha llegado la factura del último pedido.",
]
QUOTE = "\n\nEl lun, 23 nov 2026 a las 10:00, Tienda <soporte@shop.example.com> escribió:\n> Gracias por escribirnos.\n"
PDF = b"%PDF-1.4\n" + bytes(random.Random(1).getrandbits(8) for _ in range(20_000))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_port(port: int, process: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("the server did not listen in time")


def proc_status(pid: int) -> dict[str, float]:
    fields = {}
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(("VmHWM", "VmRSS")):
                name, value = line.split(":")
                fields[name] = int(value.split()[0]) / 1024
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        parts = stat.read().rpartition(")")[2].split()
    fields["cpu_s"] = (int(parts[11]) + int(parts[12])) / os.sysconf("SC_CLK_TCK")
    return fields


class Mix:
    """Emails built once as templates (building them costs the client more than the no-op server spends);
    each send fills in a fresh Message-ID and, for replies, the id of an earlier message."""

    TEMPLATES = 400

    def __init__(self, seed: int, senders: int = 2000) -> None:
        self.random = random.Random(seed)
        self.nonce = uuid.uuid4().hex[:8]
        self.count = 0
        self.sent_ids: list[bytes] = []
        self.templates = [self._template(senders) for _ in range(self.TEMPLATES)]

    def _template(self, senders: int) -> tuple[str, bytes, bool]:
        roll = self.random.random()
        number = self.random.randrange(1500) if roll < 0.6 else self.random.randrange(senders)  # 60 % returning
        sender = f"cliente{number}@correo.example.com"
        message = EmailMessage()
        message["From"] = f"Cliente {number} <{sender}>"
        message["To"] = f"soporte@{DOMAIN}"
        message["Subject"] = "Mi pedido"
        message["Date"] = formatdate(usegmt=True)
        message["Message-ID"] = "<MESSAGE-ID>"
        text = self.random.choice(TEXTS)
        kind = self.random.random()
        reply = kind < 0.2
        if reply:
            message["In-Reply-To"] = "<IN-REPLY-TO>"
            text += QUOTE
        if kind > 0.95:
            message["Auto-Submitted"] = "auto-replied"
            message.replace_header("Subject", "Fuera de la oficina: Mi pedido")
            text = "Estoy fuera hasta el lunes."
        if 0.2 <= kind < 0.4:
            message.set_content(f"<html><body><p>{text}</p><div class='gmail_quote'>antes</div></body></html>",
                                subtype="html")  # fmt: skip
        else:
            message.set_content(text)
        if 0.4 <= kind < 0.45:
            message.add_attachment(PDF, maintype="application", subtype="pdf", filename="factura.pdf")
        body = message.as_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n").replace(b"\r\n.", b"\r\n..")
        return sender, body, reply

    def one(self) -> tuple[str, bytes]:
        self.count += 1
        sender, body, reply = self.templates[self.count % self.TEMPLATES]
        message_id = f"<{self.nonce}.{self.count}@correo.example.com>".encode()
        body = body.replace(b"<MESSAGE-ID>", message_id, 1)
        if reply:
            earlier = self.random.choice(self.sent_ids[-500:]) if self.sent_ids else b"<none@correo.example.com>"
            body = body.replace(b"<IN-REPLY-TO>", earlier, 1)
        self.sent_ids.append(message_id)
        return sender, body


async def _expect(reader: asyncio.StreamReader, code: str) -> str:
    while True:
        line = (await reader.readline()).decode("ascii", "replace")
        if not line:
            raise ConnectionError("closed")
        if line[3:4] != "-":
            if not line.startswith(code):
                raise RuntimeError(f"expected {code}, got {line.strip()}")
            return line


async def client(port: int, mix: Mix, deadline: float, latencies: list[float], acked: list[str]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    await _expect(reader, "220")
    writer.write(b"EHLO bench.example.com\r\n")
    await _expect(reader, "250")
    while time.monotonic() < deadline:
        sender, body = mix.one()
        started = time.perf_counter()
        writer.write(f"MAIL FROM:<{sender}>\r\nRCPT TO:<soporte@{DOMAIN}>\r\nDATA\r\n".encode())
        await _expect(reader, "250")
        await _expect(reader, "250")
        await _expect(reader, "354")
        writer.write(body + (b"" if body.endswith(b"\r\n") else b"\r\n") + b".\r\n")
        await _expect(reader, "250")
        latencies.append(time.perf_counter() - started)
        acked.append(sender)
    writer.write(b"QUIT\r\n")
    writer.close()


def load(port: int, seconds: float, connections: int, seed: int) -> dict[str, Any]:
    async def run_all() -> tuple[list[float], list[str], float]:
        mix = Mix(seed)
        latencies: list[float] = []
        acked: list[str] = []
        started = time.monotonic()
        deadline = started + seconds
        await asyncio.gather(*(client(port, mix, deadline, latencies, acked) for _ in range(connections)))
        return latencies, acked, time.monotonic() - started

    latencies, acked, elapsed = asyncio.run(run_all())
    ordered = sorted(latencies)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))] * 1000 if ordered else float("nan")

    return {"emails": len(acked), "seconds": elapsed, "per_second": len(acked) / elapsed,
            "p50_ms": at(50), "p99_ms": at(99), "max_ms": ordered[-1] * 1000 if ordered else float("nan")}  # fmt: skip


def ceiling_server(port: int) -> None:
    from aiosmtpd.controller import Controller

    class NoOp:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
            return "250 OK"

    controller = Controller(NoOp(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        while True:
            time.sleep(3600)
    finally:
        controller.stop()


def measure(args: list[str], env: dict[str, str], port: int, seconds: float, warmup: float, connections: int,
            seed: int) -> dict[str, Any]:  # fmt: skip
    process = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_port(port, process)
        load(port, warmup, connections, seed + 1000)
        before = proc_status(process.pid)
        result = load(port, seconds, connections, seed)
        after = proc_status(process.pid)
        result["cpu_ms_per_email"] = (after["cpu_s"] - before["cpu_s"]) * 1000 / max(1, result["emails"])
        result["peak_rss_mib"] = after["VmHWM"]
        return result
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", nargs="?", default="e1")
    parser.add_argument("port", nargs="?", type=int)
    parser.add_argument("--quick", action="store_true", help="5 s instead of 15 s: a smoke test, not figures")
    parser.add_argument("--seconds", type=float)
    parser.add_argument("--connections", type=int, default=8)
    options = parser.parse_args()
    if options.what == "_ceiling":
        ceiling_server(options.port)
        return
    seconds = options.seconds or (5.0 if options.quick else 15.0)
    warmup = 1.0 if options.quick else 3.0
    work = Path(tempfile.mkdtemp(prefix="omnicanal-bench-email-"))
    database = work / "bench.db"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "OMNICANAL_DATABASE_URL": f"sqlite:///{database}", "OMNICANAL_ATTACHMENTS_DIR": str(work / "files"),
           "OMNICANAL_ENVIRONMENT": "test"}  # fmt: skip
    subprocess.run([sys.executable, "-m", "omnicanal", "migrate"], env=env, check=True, capture_output=True)

    ceiling_port = free_port()
    ceiling = measure([sys.executable, __file__, "_ceiling", str(ceiling_port)], env, ceiling_port, seconds, warmup,
                      options.connections, seed=7)  # fmt: skip
    port = free_port()
    receiver = measure(
        [sys.executable, "-m", "omnicanal", "email", "receive", "--port", str(port), "--domain", DOMAIN],
        env, port, seconds, warmup, options.connections, seed=7,
    )  # fmt: skip
    with sqlite3.connect(database) as connection:
        stored = connection.execute("SELECT count(*) FROM messages WHERE channel = 'email'").fetchone()[0]
        auto = connection.execute("SELECT count(*) FROM messages WHERE channel = 'email' AND text LIKE 'Estoy fuera%'")
        customers = connection.execute("SELECT count(*) FROM customers").fetchone()[0]
        conversations = connection.execute("SELECT count(*) FROM conversations").fetchone()[0]
        auto_stored = auto.fetchone()[0]
    report = {
        "when": time.strftime("%Y-%m-%d %H:%M:%S"), "connections": options.connections, "seconds": seconds,
        "load_average": os.getloadavg(), "receiver": receiver, "ceiling_noop_aiosmtpd": ceiling,
        "stored_messages": stored, "customers": customers, "conversations": conversations,
        "auto_replies_stored": auto_stored,
    }  # fmt: skip
    print(json.dumps(report, indent=2))
    total_acked = receiver["emails"] + 0
    print()
    print(f"E1 inbound email through the built-in SMTP receiver (SQLite, {options.connections} connections, "
          f"{seconds:.0f} s):")  # fmt: skip
    print(f"  receiver: {receiver['per_second']:8.1f} emails/s   p50 {receiver['p50_ms']:.1f} ms   "
          f"p99 {receiver['p99_ms']:.1f} ms   CPU {receiver['cpu_ms_per_email']:.2f} ms/email   "
          f"peak RSS {receiver['peak_rss_mib']:.0f} MiB")  # fmt: skip
    print(f"  ceiling (aiosmtpd, no-op handler): {ceiling['per_second']:8.1f} emails/s   "
          f"p50 {ceiling['p50_ms']:.1f} ms   CPU {ceiling['cpu_ms_per_email']:.2f} ms/email")  # fmt: skip
    print(f"  {receiver['per_second'] / ceiling['per_second']:.0%} of the ceiling; target 200/s: "
          f"{'met' if receiver['per_second'] >= 200 else 'NOT met'}")  # fmt: skip
    # what one core would take if the receiver had it to itself (the machine is shared: see the load average)
    print(f"  CPU-bound capacity: {1000 / receiver['cpu_ms_per_email']:.0f} emails/s per core "
          f"(ceiling {1000 / ceiling['cpu_ms_per_email']:.0f}); load average during the run "
          f"{report['load_average'][0]:.1f} on {os.cpu_count()} CPUs")  # fmt: skip
    # warm-up emails are stored too; auto-replies with no conversation to join are not
    print(f"  check: {stored} email messages stored for {total_acked} acknowledged in the measured run "
          f"(+ warm-up), {conversations} conversations, {customers} customers")  # fmt: skip
    shutil.rmtree(work, ignore_errors=True)
    results = ROOT / "bench" / "results"
    results.mkdir(exist_ok=True)
    (results / f"{time.strftime('%Y%m%d-%H%M%S')}-email.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
