"""Catalog import jobs: run an uploaded CSV in slices, and pick up a job whose server process died.

The import (:func:`catalog_csv.import_csv`) runs in a thread after the upload is answered, in slices of
products: each slice commits together with the job's progress (``done`` products), so any server process
reads how far it got, and a big file never holds the database's one writer for long.

A job records the process running it (``worker``: host, pid and a token of that process) and when it last
committed (``heartbeat_at``), and keeps the uploaded file until it is done. A job still ``queued`` or
``running`` whose process is gone (on this host: its pid no longer runs, or it is this process's pid under
another token, as after a container restart; anywhere: no commit for ``STALE_AFTER``) is taken over by the
first process that notices (at startup, or when the job is listed or read): a conditional update makes the
take-over happen once, and the slice about to commit checks, under the job's row lock, that its process
still owns the job. The new owner skips the products already committed (the slices are cut the same way
from the same file) and carries on. Products of the slice that was in flight when the process died were
never committed, so they are imported again, never half. A job that lost its process ``MAX_ATTEMPTS``
times, or whose file was not kept, is marked ``failed`` with its reason; ``resume`` starts it again.
"""

from __future__ import annotations

import csv
import io
import logging
import os
import secrets
import socket
import threading
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel
from sqlalchemy import Integer, String, Text, Uuid, select, update
from sqlalchemy.orm import Mapped, Session, deferred, mapped_column
from sqlalchemy.orm.attributes import flag_modified

from omnicanal.commerce.catalog_csv import FIXED, PREFIXES, import_csv
from omnicanal.db import Base, Database, JSONType, UTCDateTime, utcnow, uuid7
from omnicanal.errors import Conflict, NotFound

log = logging.getLogger(__name__)
SLICE = 100  # products per transaction
STALE_AFTER = timedelta(minutes=2)  # no slice committed for this long: the process running it is gone
MAX_ATTEMPTS = 3  # processes lost before the job is given up

# why a job failed, as the API says it (the console translates the code)
FAILURES = {
    "crashed": "the import stopped on an unexpected error; the products imported so far are kept, resume it "
    "to import the rest",
    "worker_lost": "the server process running the import stopped (attempts: {attempts}); the products imported "
    "so far are kept, resume it to import the rest",
    "file_lost": "the server process running the import stopped and the file was not kept; the products "
    "imported so far are kept, upload the file again to import the rest",
}


class CatalogImport(Base):
    __tablename__ = "commerce_catalog_imports"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid7)
    status: Mapped[str] = mapped_column(String(10), default="queued")  # queued / running / done / failed
    filename: Mapped[str] = mapped_column(String(200), default="")
    total: Mapped[int] = mapped_column(Integer, default=0)  # products in the file
    done: Mapped[int] = mapped_column(Integer, default=0)
    products: Mapped[int] = mapped_column(Integer, default=0)
    variants: Mapped[int] = mapped_column(Integer, default=0)
    rejected: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)
    created_by: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # the uploaded file, kept until the import is done so another process can resume it
    source: Mapped[str | None] = deferred(mapped_column(Text, nullable=True))
    worker: Mapped[str] = mapped_column(String(200), default="")
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=1)  # processes that have run it
    failure: Mapped[str] = mapped_column(String(20), default="")


class RejectedRow(BaseModel):
    line: int
    column: str = ""
    reason: str


class CatalogImportOut(BaseModel):
    id: uuid.UUID
    status: str
    filename: str
    total: int
    done: int
    progress: float
    products: int
    variants: int
    rejected: list[RejectedRow]
    created_at: datetime
    finished_at: datetime | None
    attempts: int
    failure: str | None
    error: str | None


def import_out(job: CatalogImport) -> CatalogImportOut:
    return CatalogImportOut(
        id=job.id, status=job.status, filename=job.filename, total=job.total, done=job.done,
        progress=round(job.done / job.total, 4) if job.total else (1.0 if job.status == "done" else 0.0),
        products=job.products, variants=job.variants, rejected=[RejectedRow(**r) for r in job.rejected or []],
        created_at=job.created_at, finished_at=job.finished_at, attempts=job.attempts or 1,
        failure=job.failure or None,
        error=FAILURES[job.failure].format(attempts=job.attempts) if job.failure in FAILURES else None,
    )  # fmt: skip


# -- which process runs what ---------------------------------------------------------------------------------
_identity: tuple[int, str] | None = None
_running: set[uuid.UUID] = set()  # jobs a thread of this process is running
_running_lock = threading.Lock()


def this_worker() -> str:
    """``host:pid:token`` of this process (a new token after a fork)."""
    global _identity
    if _identity is None or _identity[0] != os.getpid():
        _identity = (os.getpid(), f"{socket.gethostname()[:120]}:{os.getpid()}:{secrets.token_hex(6)}")
    return _identity[1]


def _pid_runs(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def worker_gone(job: CatalogImport, *, now: datetime | None = None) -> bool:
    """Whether the process that runs this queued or running job no longer does."""
    if job.status not in ("queued", "running"):
        return False
    if job.worker == this_worker():
        with _running_lock:
            return job.id not in _running
    host, _, rest = job.worker.partition(":")
    pid_text = rest.partition(":")[0]
    if host == socket.gethostname()[:120] and pid_text.isdigit():
        pid = int(pid_text)
        if pid == os.getpid() or not _pid_runs(pid):
            return True
    last = job.heartbeat_at or job.created_at
    return (now or utcnow()) - last > STALE_AFTER


# -- the file, cut into slices ---------------------------------------------------------------------------
Slice = tuple[str, list[int], int]  # CSV text with the header, each row's line in the file, products


def slices(text: str, *, skip: int = 0) -> tuple[list[Slice], list[dict[str, Any]], int]:
    """The file cut into CSV texts of at most SLICE products after the first ``skip`` products, the rows
    refused before any import (a bad header, rows naming no product), and how many products it holds."""
    reader = csv.reader(io.StringIO(text))
    header = next(reader, [])
    unknown = [c for c in header if c not in FIXED and not c.startswith(PREFIXES)]
    if "sku" not in header or unknown:
        why = f"unknown columns: {', '.join(unknown)}" if unknown else "the header needs a sku column"
        return [], [{"line": 1, "column": "", "reason": why}], 0
    product_at = header.index("product") if "product" in header else None
    name_at = header.index("name") if "name" in header else None
    groups: dict[str, list[tuple[int, list[str]]]] = {}
    refused: list[dict[str, Any]] = []
    for line, row in enumerate(reader, start=2):  # numbered as the CLI reports them
        key = ""
        for at in (product_at, name_at):
            if at is not None and at < len(row) and row[at].strip():
                key = row[at].strip()
                break
        if not key:
            refused.append({"line": line, "column": "product", "reason": "the row names no product"})
            continue
        groups.setdefault(key, []).append((line, row))
    grouped = list(groups.values())
    parts: list[Slice] = []
    for start in range(skip, len(grouped), SLICE):
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(header)
        lines: list[int] = []
        for rows in grouped[start : start + SLICE]:
            for line, row in rows:
                writer.writerow(row)
                lines.append(line)
        parts.append((buffer.getvalue(), lines, len(grouped[start : start + SLICE])))
    return parts, refused, len(grouped)


# -- running -----------------------------------------------------------------------------------------------
class Superseded(Exception):
    """Another process has taken the job over: this one stops without committing its slice."""


def create_job(session: Session, *, filename: str, text: str, created_by: str) -> CatalogImport:
    """A queued job owned by this process (start it with :func:`start` after commit)."""
    job = CatalogImport(
        id=uuid7(), status="queued", filename=filename[:200], created_by=created_by[:200], rejected=[],
        source=text, worker=this_worker(), heartbeat_at=utcnow(), attempts=1, failure="",
    )  # fmt: skip
    session.add(job)
    session.flush()
    with _running_lock:
        _running.add(job.id)  # from now on this process answers for it
    return job


def start(database: Database, job_id: uuid.UUID) -> threading.Thread:
    with _running_lock:
        _running.add(job_id)
    thread = threading.Thread(target=run_import, args=(database, job_id), name="catalog-import", daemon=True)
    thread.start()
    return thread


def _owned(session: Session, job_id: uuid.UUID, me: str) -> CatalogImport:
    job = session.get(CatalogImport, job_id, with_for_update=True, populate_existing=True)
    if job is None or job.worker != me or job.status not in ("queued", "running"):
        raise Superseded
    return job


def run_import(database: Database, job_id: uuid.UUID, *, importer: Callable[..., Any] | None = None) -> None:
    """Import the job's file from where it stands, slice by slice, each committed with the job's progress."""
    importer = importer or import_csv
    me = this_worker()
    try:
        with database.write() as session:
            job = _owned(session, job_id, me)
            text = job.source
            if text is None:
                job.status, job.failure, job.finished_at = "failed", "file_lost", utcnow()
                return
            parts, refused, total = slices(text, skip=job.done if job.status == "running" else 0)
            if job.status == "queued":
                job.status, job.total, job.rejected = "running", total, list(refused)
            job.heartbeat_at = utcnow()
        for part, lines, count in parts:
            with database.write() as session:
                job = _owned(session, job_id, me)
                report = importer(session, io.StringIO(part))
                found = [
                    {"line": lines[row.line - 2], "column": row.column, "reason": row.reason} for row in report.rejected
                ]
                job.rejected = sorted([*(job.rejected or []), *found], key=lambda r: int(r["line"]))
                flag_modified(job, "rejected")
                job.products += report.products
                job.variants += report.variants
                job.done += count
                job.heartbeat_at = utcnow()
        with database.write() as session:
            job = _owned(session, job_id, me)
            job.status, job.finished_at, job.source = "done", utcnow(), None
    except Superseded:
        log.info("catalog import %s: taken over by another process", job_id)
    except Exception:
        log.exception("catalog import %s failed", job_id)
        with database.write() as session:
            stopped = session.get(CatalogImport, job_id)
            if stopped is not None and stopped.worker == me:
                stopped.status, stopped.failure, stopped.finished_at = "failed", "crashed", utcnow()
    finally:
        with _running_lock:
            _running.discard(job_id)


def _release(job_ids: list[uuid.UUID]) -> None:
    with _running_lock:
        _running.difference_update(job_ids)


def _take_over(session: Session, job: CatalogImport, *, status: str, attempts: int) -> bool:
    """Make this process the job's owner, once, whoever else tries at the same time (another thread of this
    process sees the job as running here from now on, before the take-over commits)."""
    taken = session.execute(
        update(CatalogImport)
        .where(CatalogImport.id == job.id, CatalogImport.worker == job.worker, CatalogImport.status == job.status,
               CatalogImport.attempts == job.attempts)
        .values(worker=this_worker(), heartbeat_at=utcnow(), attempts=attempts, status=status, failure="",
                finished_at=None)
        .execution_options(synchronize_session=False)
    )  # fmt: skip
    if getattr(taken, "rowcount", 0) != 1:
        return False
    with _running_lock:
        _running.add(job.id)
    return True


def recover(database: Database, job_ids: list[uuid.UUID] | None = None) -> list[uuid.UUID]:
    """Resume (or fail, with the reason) every queued or running job whose process is gone; the ids resumed."""
    with database.read() as session:
        query = select(CatalogImport).where(CatalogImport.status.in_(("queued", "running")))
        if job_ids is not None:
            query = query.where(CatalogImport.id.in_(job_ids))
        if not [job for job in session.scalars(query) if worker_gone(job)]:
            return []
    resumed: list[uuid.UUID] = []
    try:
        with database.write() as session:
            for job in list(session.scalars(query.order_by(CatalogImport.id))):
                if not worker_gone(job):
                    continue
                if job.attempts >= MAX_ATTEMPTS:
                    session.execute(
                        update(CatalogImport)
                        .where(CatalogImport.id == job.id, CatalogImport.worker == job.worker)
                        .values(status="failed", failure="worker_lost", finished_at=utcnow())
                    )
                    log.warning("catalog import %s: its process stopped %d times, given up", job.id, job.attempts)
                elif _take_over(session, job, status=job.status, attempts=job.attempts + 1):
                    log.warning("catalog import %s: its process is gone, resumed after %d products", job.id, job.done)
                    resumed.append(job.id)
    except BaseException:
        _release(resumed)
        raise
    for job_id in resumed:
        start(database, job_id)
    return resumed


def resume(database: Database, job_id: uuid.UUID) -> None:
    """Start a failed job again from where it stopped (its file must have been kept)."""
    claimed: list[uuid.UUID] = []
    try:
        with database.write() as session:
            job = session.get(CatalogImport, job_id)
            if job is None:
                raise NotFound(f"catalog import {job_id} not found")
            if job.status != "failed":
                raise Conflict(
                    f"this import is {job.status}; only a failed import can be resumed", job_status=job.status
                )
            if session.scalar(select(CatalogImport.source.isnot(None)).where(CatalogImport.id == job_id)) is not True:
                raise Conflict("the file of this import was not kept; upload it again")
            if not _take_over(session, job, status="running" if job.total else "queued", attempts=1):
                raise Conflict("this import has just been resumed")
            claimed.append(job_id)
    except BaseException:
        _release(claimed)
        raise
    start(database, job_id)


def recover_at_startup(database: Database) -> None:
    """Pick up the imports a stopped process left behind; never keeps the server from starting."""
    try:
        recover(database)
    except Exception:
        log.exception("could not look for catalog imports to resume")
