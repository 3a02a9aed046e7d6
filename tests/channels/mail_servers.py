"""Real mail servers for the email tests: an SMTP server (aiosmtpd) with STARTTLS and AUTH, and dovecot IMAP."""

from __future__ import annotations

import datetime
import grp
import ipaddress
import os
import pwd
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.support.live_server import free_port

SMTP_PASSWORD = "s3cret"
IMAP_PASSWORD = "imap-pass"


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and localhost, and its key (PEM files)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage


@dataclass
class SinkHandler:
    messages: list[Received] = field(default_factory=list)
    refuse: set[str] = field(default_factory=set)

    async def handle_RCPT(self, server: SMTP, session: Any, envelope: Any, address: str, options: list[str]) -> str:  # noqa: N802
        if address in self.refuse:
            return "550 5.1.1 no such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Any, envelope: Any) -> str:  # noqa: N802
        message = message_from_bytes(envelope.original_content or envelope.content, policy=policy.default)
        assert isinstance(message, EmailMessage)
        self.messages.append(Received(envelope.mail_from, list(envelope.rcpt_tos), message))
        return "250 2.0.0 queued"


class SmtpServer:
    """An SMTP submission server on 127.0.0.1: STARTTLS required before AUTH, AUTH required to send."""

    def __init__(self, cert: Path, key: Path, *, username: str = "mailer", password: str = SMTP_PASSWORD) -> None:
        self.handler = SinkHandler()
        self.port = free_port()
        self.username, self.password = username, password
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert, key)

        def authenticate(server: SMTP, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
            ok = isinstance(data, LoginPassword) and (data.login, data.password) == (
                username.encode(),
                password.encode(),
            )
            return AuthResult(success=ok, handled=False)

        self.controller = Controller(
            self.handler, hostname="127.0.0.1", port=self.port, tls_context=context, require_starttls=True,
            authenticator=authenticate, auth_required=True, auth_require_tls=True,
        )  # fmt: skip

    def __enter__(self) -> SmtpServer:
        self.controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.controller.stop()

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        while len(self.handler.messages) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return list(self.handler.messages)


DOVECOT = os.environ.get("OMNICANAL_DOVECOT", "/usr/sbin/dovecot")


class DovecotServer:
    """Dovecot IMAP run unprivileged on a free port, one user with a Maildir in a temp directory."""

    def __init__(self, cert: Path, key: Path, *, username: str = "support", password: str = IMAP_PASSWORD) -> None:
        if not shutil.which(DOVECOT) and not os.path.exists(DOVECOT):
            raise RuntimeError(f"dovecot not found at {DOVECOT}: apt-get install dovecot-imapd")
        self.username, self.password = username, password
        self.port = free_port()
        self.base = Path(tempfile.mkdtemp(prefix="omnicanal-dovecot-"))
        self.maildir = self.base / "mail"
        self.maildir.mkdir()
        for sub in ("cur", "new", "tmp"):
            (self.maildir / sub).mkdir()
        if os.getuid() == 0:
            # dovecot refuses to run its login processes or to read mail as root: use its own users
            owner = pwd.getpwnam("dovecot")
            uid, gid = owner.pw_uid, owner.pw_gid
            login_user, internal_user, user = "dovenull", "dovecot", "root"
            for path in (self.base, self.maildir, *(self.maildir / sub for sub in ("cur", "new", "tmp"))):
                os.chown(path, uid, gid)
        else:
            uid, gid = os.getuid(), os.getgid()
            login_user = internal_user = user = pwd.getpwuid(uid).pw_name
        group = grp.getgrgid(gid).gr_name
        (self.base / "passwd").write_text(
            f"{username}:{{PLAIN}}{password}:{uid}:{gid}::{self.base}::userdb_mail=maildir:{self.maildir}\n"
        )
        config = f"""
base_dir = {self.base}/run
state_dir = {self.base}/state
log_path = {self.base}/dovecot.log
info_log_path = {self.base}/dovecot.log
protocols = imap
listen = 127.0.0.1
default_internal_user = {internal_user}
default_internal_group = {group}
default_login_user = {login_user}
ssl = yes
ssl_cert = <{cert}
ssl_key = <{key}
disable_plaintext_auth = no
first_valid_uid = 1
first_valid_gid = 1
auth_mechanisms = plain login
passdb {{
  driver = passwd-file
  args = {self.base}/passwd
}}
userdb {{
  driver = passwd-file
  args = {self.base}/passwd
}}
mail_location = maildir:{self.maildir}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {self.port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service anvil {{
  chroot =
}}
service imap-login {{
  chroot =
}}
service auth {{
  user = {user}
}}
service auth-worker {{
  user = {user}
}}
"""
        self.config_path = self.base / "dovecot.conf"
        self.config_path.write_text(config)
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> DovecotServer:
        self.process = subprocess.Popen(
            [DOVECOT, "-F", "-c", str(self.config_path)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                if self.process.poll() is not None:
                    break
                time.sleep(0.1)
        log = (self.base / "dovecot.log").read_text() if (self.base / "dovecot.log").exists() else ""
        self.__exit__()
        raise RuntimeError(f"dovecot did not start: {log[-2000:]}")

    def __exit__(self, *exc: object) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
            self.process = None
        shutil.rmtree(self.base, ignore_errors=True)

    def deliver(self, raw: bytes) -> None:
        """Put a message in the user's inbox as the local delivery agent would."""
        name = f"{time.time_ns()}.{os.getpid()}.omnicanal"
        (self.maildir / "tmp" / name).write_bytes(raw)
        if os.getuid() == 0:
            owner = pwd.getpwnam("dovecot")
            os.chown(self.maildir / "tmp" / name, owner.pw_uid, owner.pw_gid)
        os.rename(self.maildir / "tmp" / name, self.maildir / "new" / name)
