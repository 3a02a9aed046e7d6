"""``omnicanal email receive`` and ``omnicanal email poll``, run as an operator would run them."""

from __future__ import annotations

import os
import smtplib
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from omnicanal.channels.catalog import load_adapters
from omnicanal.channels.service import create_instance
from omnicanal.db import create_database
from omnicanal.migrate import upgrade
from omnicanal.settings import Settings
from tests.channels.email_samples import customer_email
from tests.channels.mail_servers import DOVECOT, DovecotServer, self_signed_certificate
from tests.support.live_server import free_port


@pytest.fixture
def environment(tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ, "OMNICANAL_DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}",
        "OMNICANAL_ATTACHMENTS_DIR": str(tmp_path / "files"), "OMNICANAL_ENVIRONMENT": "test",
    }  # fmt: skip


def _configure(environment: dict[str, str], **config: object) -> None:
    settings = Settings(database_url=environment["OMNICANAL_DATABASE_URL"], environment="test")
    db = create_database(settings)
    upgrade(db.write_engine)
    load_adapters()
    with db.write() as session:
        create_instance(session, type="email", name="Soporte", settings=settings, config={
            "smtp_host": "smtp.shop.example.com", "from_address": "support@shop.example.com", **config,
        })  # fmt: skip
    db.dispose()


def _texts(environment: dict[str, str]) -> list[str]:
    path = environment["OMNICANAL_DATABASE_URL"].removeprefix("sqlite:///")
    with sqlite3.connect(path) as connection:
        return [row[0] for row in connection.execute("SELECT text FROM messages ORDER BY created_at")]


@pytest.fixture
def receiving(environment: dict[str, str]) -> Iterator[int]:
    _configure(environment)
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "omnicanal", "email", "receive", "--port", str(port)],
        env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                assert process.poll() is None, process.stderr.read() if process.stderr else ""
                assert time.monotonic() < deadline, "the receiver did not start"
                time.sleep(0.1)
        yield port
    finally:
        process.terminate()
        assert process.wait(timeout=20) == 0  # a clean stop on SIGTERM


def test_the_receiver_command_takes_mail_for_the_configured_channel(
    receiving: int, environment: dict[str, str]
) -> None:
    with smtplib.SMTP("127.0.0.1", receiving, timeout=10) as client:
        client.sendmail("ana@example.com", ["support@shop.example.com"], customer_email())
        with pytest.raises(smtplib.SMTPRecipientsRefused):
            client.sendmail("ana@example.com", ["someone@other.example.org"], customer_email(message_id="<b@x>"))
    assert _texts(environment) == ["Hello, my order 1234 has not arrived yet."]


@pytest.mark.skipif(not os.path.exists(DOVECOT), reason="dovecot-imapd is not installed (scripts/install-system-deps)")
def test_the_poll_command_reads_every_configured_mailbox_once(environment: dict[str, str], tmp_path: Path) -> None:
    cert, key = self_signed_certificate(tmp_path)
    with DovecotServer(cert, key) as dovecot:
        _configure(environment, imap_host="localhost", imap_port=dovecot.port, imap_security="starttls",
                   username=dovecot.username, password=dovecot.password)  # fmt: skip
        dovecot.deliver(customer_email())
        trusting = environment | {"SSL_CERT_FILE": str(cert)}
        run = subprocess.run(
            [sys.executable, "-m", "omnicanal", "email", "poll", "--once"], env=trusting,
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert run.returncode == 0, run.stderr
        assert "Soporte: 1 messages" in run.stderr
    assert _texts(environment) == ["Hello, my order 1234 has not arrived yet."]
