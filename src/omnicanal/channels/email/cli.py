"""``omnicanal email receive`` (the SMTP/LMTP receiver) and ``omnicanal email poll`` (IMAP mailboxes)."""

from __future__ import annotations

import signal
import threading
from typing import Annotated

import typer
from rich.console import Console

email_app = typer.Typer(help="The email channel: receive mail over SMTP/LMTP, poll IMAP mailboxes.",
                        no_args_is_help=True)  # fmt: skip
err = Console(stderr=True)


def _stop_on_signal() -> threading.Event:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    return stop


@email_app.command("receive")
def receive(
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to listen on")] = 2525,
    lmtp: Annotated[bool, typer.Option("--lmtp", help="speak LMTP (behind a mail server) instead of SMTP")] = False,
    domain: Annotated[list[str] | None, typer.Option(help="also accept mail for this domain (repeatable)")] = None,
) -> None:
    """Receive email for the configured email channels' domains, until interrupted."""
    from omnicanal.app import build_runtime
    from omnicanal.channels.email.receiver import Mailboxes, ReceiverController, ReceiverHandler
    from omnicanal.cli import _database, _settings
    from omnicanal.db import Database
    from omnicanal.handlers import register
    from omnicanal.timeline.writer import IngestWriter

    settings = _settings()
    db = _database(settings, migrate_if_empty=True)
    assert isinstance(db, Database)
    register()
    runtime, _ = build_runtime(settings, db)  # messages taken in reach the consoles (through Redis if set)
    mailboxes = Mailboxes(db, extra_domains=domain or [])
    writer = IngestWriter(db, max_events=settings.ingest_batch_max)
    handler = ReceiverHandler(writer, settings, accepts=mailboxes.accepts_async, instance_for=mailboxes.instance_for,
                              lmtp=lmtp)  # fmt: skip
    controller = ReceiverController(handler, hostname=host, port=port)
    stop = _stop_on_signal()
    runtime.broadcaster.start()
    writer.start()
    controller.start()
    err.print(f"omnicanal receiving email over {'LMTP' if lmtp else 'SMTP'} on {host}:{port} (Ctrl-C to stop)")
    stop.wait()
    controller.stop()
    writer.stop()
    runtime.broadcaster.stop()
    db.dispose()


@email_app.command("poll")
def poll(
    once: Annotated[bool, typer.Option("--once", help="poll every mailbox once and exit")] = False,
    interval: Annotated[float, typer.Option(help="seconds between polls")] = 60.0,
) -> None:
    """Take in the unseen mail of every email channel that has an ``imap_host``."""
    from omnicanal.app import build_runtime
    from omnicanal.channels.email.adapter import email_channels
    from omnicanal.channels.email.imap import poll_once
    from omnicanal.cli import _database, _settings
    from omnicanal.db import Database
    from omnicanal.handlers import register

    settings = _settings()
    db = _database(settings, migrate_if_empty=True)
    assert isinstance(db, Database)
    register()
    runtime, _ = build_runtime(settings, db)
    runtime.broadcaster.start()
    stop = _stop_on_signal()
    failures = 0
    while True:
        for channel in email_channels(db):
            if not channel.get("imap_host"):
                continue
            try:
                report = poll_once(channel, db, settings, channel_instance_id=channel.id)
                err.print(f"{channel.name}: {report.seen} messages {report.outcomes or ''}")
            except Exception as exc:  # one unreachable mailbox must not stop the others
                failures += 1
                err.print(f"[red]{channel.name}: {type(exc).__name__}: {exc}[/red]")
        if once or stop.wait(interval):
            break
    runtime.broadcaster.stop()
    db.dispose()
    if once and failures:
        raise typer.Exit(1)
