"""A throwaway PostgreSQL cluster for the test session.

``PostgresCluster().start()`` runs ``initdb`` + ``pg_ctl start`` in a fresh temporary directory (as the
``postgres`` user when running as root), on 127.0.0.1 and a free port, tuned for speed (no fsync).
``stop()`` kills it and removes the directory.

If ``OMNICANAL_TEST_POSTGRES_URL`` is set (e.g. ``postgresql://user:pw@db:5432/postgres``), nothing is
started: that server is used instead, and its database is the maintenance database used to create and drop
test databases.
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo
from psycopg.rows import TupleRow
from sqlalchemy.engine import make_url

EXTERNAL_URL_ENV = "OMNICANAL_TEST_POSTGRES_URL"
BINDIR_ENV = "OMNICANAL_PG_BINDIR"

_SERVER_SETTINGS = {
    "listen_addresses": "'127.0.0.1'",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "300",
    "shared_buffers": "128MB",
}


class PostgresUnavailableError(RuntimeError):
    """PostgreSQL could not be found or started."""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _version_key(bindir: str) -> tuple[int, ...]:
    version = Path(bindir).parent.name
    try:
        return tuple(int(part) for part in version.split("."))
    except ValueError:
        return (0,)


def find_postgres_bindir() -> Path:
    """Directory holding ``initdb`` and ``pg_ctl``.

    Order: ``$OMNICANAL_PG_BINDIR``; ``pg_config --bindir``; the newest ``/usr/lib/postgresql/*/bin``;
    ``initdb`` on ``PATH``.
    """
    candidates: list[Path] = []
    override = os.environ.get(BINDIR_ENV)
    if override:
        candidates.append(Path(override))
    pg_config = shutil.which("pg_config")
    if pg_config:
        try:
            out = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, timeout=10, check=True
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            out = ""
        if out:
            candidates.append(Path(out))
    candidates.extend(Path(d) for d in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_version_key, reverse=True))
    initdb_on_path = shutil.which("initdb")
    if initdb_on_path:
        candidates.append(Path(os.path.realpath(initdb_on_path)).parent)
    for candidate in candidates:
        if (candidate / "initdb").is_file() and (candidate / "pg_ctl").is_file():
            return candidate
    tried = ", ".join(str(c) for c in candidates) or "nothing"
    raise PostgresUnavailableError(
        "PostgreSQL server binaries (initdb, pg_ctl) not found "
        f"(looked in: {tried}). Install them (Debian: `apt-get install postgresql`, or run "
        f"scripts/install-system-deps), point ${BINDIR_ENV} at their directory, or set "
        f"${EXTERNAL_URL_ENV} to use an existing server."
    )


def _run(cmd: list[str], *, cwd: Path, timeout: float) -> tuple[int, str]:
    """Run ``cmd`` with output captured in a file (never a pipe: a daemonized postmaster could hold it)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["LC_ALL"] = "C"
    with tempfile.TemporaryFile() as out:
        try:
            proc = subprocess.run(
                cmd,
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=timeout,
                check=False,
            )
            returncode = proc.returncode
        except subprocess.TimeoutExpired:
            returncode = -1
        out.seek(0)
        text = out.read().decode("utf-8", "replace")
    if returncode == -1:
        text += f"\n(timed out after {timeout:.0f}s)"
    return returncode, text


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text("utf-8", "replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


class PostgresCluster:
    """A PostgreSQL server for tests: a private throwaway cluster, or the one named by
    ``$OMNICANAL_TEST_POSTGRES_URL``."""

    def __init__(self, *, external_url: str | None = None, startup_timeout: float = 60.0) -> None:
        self.external_url: str | None = external_url or os.environ.get(EXTERNAL_URL_ENV) or None
        self.startup_timeout = startup_timeout
        self.host = "127.0.0.1"
        self.port = 0
        self.tempdir: Path | None = None
        self._bindir: Path | None = None
        self._as_postgres_user = False
        self._started = False
        if self.external_url:
            parsed = make_url(self.external_url)
            self.host = parsed.host or "localhost"
            self.port = parsed.port or 5432

    # -- public API ---------------------------------------------------------------------------

    @property
    def external(self) -> bool:
        return self.external_url is not None

    @property
    def started(self) -> bool:
        return self._started

    def url(self, dbname: str) -> str:
        """SQLAlchemy URL (psycopg 3 driver) of database ``dbname`` on this server."""
        if self.external_url:
            return (
                make_url(self.external_url)
                .set(drivername="postgresql+psycopg", database=dbname)
                .render_as_string(hide_password=False)
            )
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{dbname}"

    def conninfo(self, dbname: str) -> str:
        """libpq connection string (for ``psycopg.connect``) of database ``dbname``."""
        if self.external_url:
            parsed = make_url(self.external_url)
            params: dict[str, str | int | None] = {
                "host": parsed.host,
                "port": parsed.port,
                "user": parsed.username,
                "password": parsed.password,
            }
            for key, value in parsed.query.items():  # sslmode=..., host=/socket/dir, ...
                params[key] = value if isinstance(value, str) else value[-1]
            params["dbname"] = dbname
            return make_conninfo("", **{k: v for k, v in params.items() if v is not None})
        return make_conninfo("", host="127.0.0.1", port=self.port, user="postgres", dbname=dbname)

    @property
    def maintenance_db(self) -> str:
        if self.external_url:
            return make_url(self.external_url).database or "postgres"
        return "postgres"

    def connect(self, dbname: str | None = None) -> psycopg.Connection[TupleRow]:
        """An autocommit psycopg connection (default: the maintenance database). Caller closes it."""
        conninfo = self.conninfo(dbname or self.maintenance_db)
        return psycopg.connect(conninfo, autocommit=True, connect_timeout=10)

    def create_database(self, name: str, *, template: str | None = None) -> None:
        query = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if template:
            query = sql.SQL("{} TEMPLATE {}").format(query, sql.Identifier(template))
        with self.connect() as conn:
            conn.execute(query)

    def drop_database(self, name: str) -> None:
        """Drop ``name`` if it exists, disconnecting any sessions still using it."""
        with self.connect() as conn:
            if conn.info.server_version >= 130000:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
            else:  # pragma: no cover - old servers only
                conn.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE datname = %s AND pid <> pg_backend_pid()",
                    (name,),
                )
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))

    def start(self) -> PostgresCluster:
        if self._started:
            return self
        if self.external_url:
            self._wait_until_ready(time.monotonic() + self.startup_timeout)
            self._started = True
            return self
        self._bindir = find_postgres_bindir()
        self._as_postgres_user = hasattr(os, "geteuid") and os.geteuid() == 0
        self.tempdir = self._make_tempdir()
        atexit.register(self.stop)
        try:
            self._initdb()
            self._pg_ctl_start()
            self._wait_until_ready(time.monotonic() + self.startup_timeout)
        except BaseException:
            self.stop()
            raise
        self._started = True
        return self

    def stop(self) -> None:
        atexit.unregister(self.stop)
        self._started = False
        if self.external_url or self.tempdir is None:
            return
        tempdir, self.tempdir = self.tempdir, None
        data = tempdir / "data"
        if (data / "postmaster.pid").exists() and self._bindir is not None:
            code, _ = self._run_pg(
                [str(self._bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "-t", "30", "stop"],
                cwd=tempdir,
                timeout=40,
            )
            if code != 0:
                self._kill_postmaster(data)
        shutil.rmtree(tempdir, ignore_errors=True)

    def __enter__(self) -> PostgresCluster:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        where = "external" if self.external_url else str(self.tempdir)
        return f"<PostgresCluster {self.host}:{self.port} {where} started={self._started}>"

    # -- internals ----------------------------------------------------------------------------

    def _run_pg(self, cmd: list[str], *, cwd: Path, timeout: float) -> tuple[int, str]:
        if self._as_postgres_user:
            runuser = shutil.which("runuser") or next(
                (p for p in ("/usr/sbin/runuser", "/sbin/runuser") if os.path.exists(p)), None
            )
            if runuser is None:
                raise PostgresUnavailableError(
                    "running as root, PostgreSQL must run as the 'postgres' user, but `runuser` "
                    "(util-linux) was not found"
                )
            cmd = [runuser, "-u", "postgres", "--", *cmd]
        return _run(cmd, cwd=cwd, timeout=timeout)

    def _make_tempdir(self) -> Path:
        if not self._as_postgres_user:
            return Path(tempfile.mkdtemp(prefix="omnicanal-pg-"))
        import pwd  # POSIX only; we are root on a POSIX system here

        try:
            user = pwd.getpwnam("postgres")
        except KeyError:
            raise PostgresUnavailableError(
                "running as root, PostgreSQL must run as an unprivileged 'postgres' user, which does not "
                "exist (Debian's postgresql package creates it; or `useradd --system postgres`), or set "
                f"${EXTERNAL_URL_ENV}"
            ) from None
        for base in dict.fromkeys([tempfile.gettempdir(), "/tmp"]):  # noqa: S108 - private mkdtemp dir
            path = Path(tempfile.mkdtemp(prefix="omnicanal-pg-", dir=base))
            os.chown(path, user.pw_uid, user.pw_gid)
            code, _ = self._run_pg(["test", "-w", str(path), "-a", "-x", str(path)], cwd=path, timeout=30)
            if code == 0:
                return path
            shutil.rmtree(path, ignore_errors=True)
        raise PostgresUnavailableError(
            f"the 'postgres' user cannot write to a directory under {tempfile.gettempdir()} or /tmp"
        )

    def _initdb(self) -> None:
        assert self._bindir is not None and self.tempdir is not None
        data = self.tempdir / "data"
        code, output = self._run_pg(
            [
                str(self._bindir / "initdb"),
                "-D",
                str(data),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ],
            cwd=self.tempdir,
            timeout=120,
        )
        if code != 0:
            raise PostgresUnavailableError(f"initdb failed (exit {code}):\n{output}")
        settings = dict(_SERVER_SETTINGS)
        settings["unix_socket_directories"] = f"'{self.tempdir}'"
        with open(data / "postgresql.conf", "a", encoding="utf-8") as conf:
            conf.write("\n# omnicanal test cluster\n")
            conf.writelines(f"{key} = {value}\n" for key, value in settings.items())

    def _pg_ctl_start(self) -> None:
        assert self._bindir is not None and self.tempdir is not None
        data = self.tempdir / "data"
        log = self.tempdir / "postgres.log"
        output = ""
        for _attempt in range(5):
            self.port = _free_port()
            code, output = self._run_pg(
                [
                    str(self._bindir / "pg_ctl"),
                    "-D",
                    str(data),
                    "-l",
                    str(log),
                    "-w",
                    "-t",
                    str(int(self.startup_timeout)),
                    "-o",
                    f"-p {self.port}",
                    "start",
                ],
                cwd=self.tempdir,
                timeout=self.startup_timeout + 10,
            )
            if code == 0:
                return
            log_tail = _tail(log)
            if "could not bind" in log_tail or "already in use" in log_tail:
                self._kill_postmaster(data)
                continue  # lost a race for the port: try another one
            break
        raise PostgresUnavailableError(
            f"pg_ctl start failed on port {self.port}:\n{output}\n--- {log} ---\n{_tail(log)}"
        )

    def _wait_until_ready(self, deadline: float) -> None:
        last_error: Exception | None = None
        while True:
            try:
                with self.connect() as conn:
                    conn.execute("SELECT 1")
                return
            except psycopg.Error as exc:
                last_error = exc
            if time.monotonic() > deadline:
                log = ""
                if self.tempdir is not None:
                    log = f"\n--- server log ---\n{_tail(self.tempdir / 'postgres.log')}"
                raise PostgresUnavailableError(
                    f"PostgreSQL at {self.host}:{self.port} is not accepting connections: {last_error}{log}"
                )
            time.sleep(0.1)

    @staticmethod
    def _kill_postmaster(data: Path) -> None:
        """Last resort: SIGKILL the postmaster of ``data`` (checked, so a recycled pid is never hit)."""
        with contextlib.suppress(OSError, ValueError, IndexError):
            pid = int((data / "postmaster.pid").read_text().splitlines()[0])
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode("utf-8", "replace")
            if str(data) in cmdline:
                os.kill(pid, signal.SIGKILL)
