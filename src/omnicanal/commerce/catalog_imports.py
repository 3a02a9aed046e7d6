"""Catalog CSV import over the API: upload, follow the progress, read the report of rejected rows.

The same import as ``omnicanal catalog import`` (:func:`catalog_csv.import_csv`), run after the upload is
answered (202), in slices of products: each slice commits with the job's progress, so any server process
answers ``GET /api/v1/catalog/imports/{id}`` with how far it got, and a big file never holds the database's
one writer for long. Line numbers in the report are those of the uploaded file.
"""

from __future__ import annotations

import csv
import io
import logging
import threading
import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import Integer, String, Uuid
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.orm.attributes import flag_modified
from starlette.concurrency import run_in_threadpool

from omnicanal.access.roles import Permission
from omnicanal.access.service import Principal
from omnicanal.commerce.catalog_csv import FIXED, PREFIXES, import_csv
from omnicanal.db import Base, Database, JSONType, UTCDateTime, utcnow, uuid7
from omnicanal.errors import NotFound, PayloadTooLarge, ValidationFailed
from omnicanal.web import ReadSession, require

log = logging.getLogger(__name__)
SLICE = 100  # products per transaction
MAX_BYTES = 50 * 1024 * 1024


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


class RejectedRow(BaseModel):
    line: int
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


def import_out(job: CatalogImport) -> CatalogImportOut:
    return CatalogImportOut(
        id=job.id, status=job.status, filename=job.filename, total=job.total, done=job.done,
        progress=round(job.done / job.total, 4) if job.total else (1.0 if job.status == "done" else 0.0),
        products=job.products, variants=job.variants, rejected=[RejectedRow(**r) for r in job.rejected or []],
        created_at=job.created_at, finished_at=job.finished_at,
    )  # fmt: skip


def slices(text: str) -> tuple[list[str], list[tuple[str, list[int], int]], list[dict[str, Any]]]:
    """The header, the file cut into CSV texts of at most SLICE products (with each row's line in the
    file, and how many products), and the rows refused before any import (a bad header, rows naming no
    product)."""
    reader = csv.reader(io.StringIO(text))
    header = next(reader, [])
    unknown = [c for c in header if c not in FIXED and not c.startswith(PREFIXES)]
    if "sku" not in header or unknown:
        why = f"unknown columns: {', '.join(unknown)}" if unknown else "the header needs a sku column"
        return header, [], [{"line": 1, "reason": why}]
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
            refused.append({"line": line, "reason": "the row names no product"})
            continue
        groups.setdefault(key, []).append((line, row))
    parts: list[tuple[str, list[int], int]] = []
    grouped = list(groups.values())
    for start in range(0, len(grouped), SLICE):
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(header)
        lines: list[int] = []
        for rows in grouped[start : start + SLICE]:
            for line, row in rows:
                writer.writerow(row)
                lines.append(line)
        parts.append((buffer.getvalue(), lines, len(grouped[start : start + SLICE])))
    return header, parts, refused


def run_import(database: Database, job_id: uuid.UUID, text: str) -> None:
    """Import the file slice by slice, each slice committed with the job's progress."""
    try:
        _, parts, refused = slices(text)
        with database.write() as session:
            job = session.get(CatalogImport, job_id)
            assert job is not None
            job.status, job.total, job.rejected = "running", sum(count for _, _, count in parts), list(refused)
        for part, lines, count in parts:
            with database.write() as session:
                report = import_csv(session, io.StringIO(part))
                job = session.get(CatalogImport, job_id)
                assert job is not None
                found = [{"line": lines[line - 2], "reason": why} for line, why in report.rejected]
                job.rejected = sorted([*(job.rejected or []), *found], key=lambda r: int(r["line"]))
                flag_modified(job, "rejected")
                job.products += report.products
                job.variants += report.variants
                job.done += count
        with database.write() as session:
            job = session.get(CatalogImport, job_id)
            assert job is not None
            job.status, job.finished_at = "done", utcnow()
    except Exception:
        log.exception("catalog import %s failed", job_id)
        with database.write() as session:
            job = session.get(CatalogImport, job_id)
            if job is not None:
                job.status, job.finished_at = "failed", utcnow()


router = APIRouter(prefix="/api/v1", tags=["commerce"])
Manager = Annotated[Principal, Depends(require(Permission.CATALOG_MANAGE))]
Reader = Annotated[Principal, Depends(require(Permission.CATALOG_READ))]


async def _upload(request: Request) -> tuple[str, str]:
    """The CSV of the request: a multipart ``file`` field, or the body itself (``text/csv``)."""
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        form = await request.form()
        upload = form.get("file")
        if upload is None or isinstance(upload, str):
            raise ValidationFailed.on_field("file", "send the CSV as the multipart field 'file'")
        data = await upload.read(MAX_BYTES + 1)
        name = upload.filename or "catalog.csv"
    else:
        data = await request.body()
        name = request.headers.get("x-filename", "catalog.csv")
    if len(data) > MAX_BYTES:
        raise PayloadTooLarge(f"the file is larger than {MAX_BYTES} bytes")
    if not data.strip():
        raise ValidationFailed.on_field("file", "the file is empty")
    try:
        return data.decode("utf-8-sig"), name[:200]
    except UnicodeDecodeError:
        raise ValidationFailed.on_field("file", "the file is not UTF-8 text") from None


@router.post(
    "/catalog/imports",
    status_code=202,
    response_model=CatalogImportOut,
    openapi_extra={"requestBody": {"content": {"text/csv": {"schema": {"type": "string"}},
                                               "multipart/form-data": {"schema": {"type": "object", "properties": {
                                                   "file": {"type": "string", "format": "binary"}}}}}}},
)  # fmt: skip
async def start_import(request: Request, principal: Manager) -> JSONResponse:
    """Upload a catalog CSV (the format of ``omnicanal catalog export``); the import runs after the answer.
    Follow it at the ``Location`` given: progress, products imported, rejected rows and why."""
    text, name = await _upload(request)
    database: Database = request.app.state.database

    def queue() -> dict[str, Any]:
        with database.write() as session:
            job = CatalogImport(id=uuid7(), status="queued", filename=name, created_by=principal.label, rejected=[])
            session.add(job)
            session.flush()
            return import_out(job).model_dump(mode="json")

    body = await run_in_threadpool(queue)
    job_id = uuid.UUID(body["id"])
    threading.Thread(target=run_import, args=(database, job_id, text), name="catalog-import", daemon=True).start()
    return JSONResponse(body, status_code=202, headers={"Location": f"/api/v1/catalog/imports/{job_id}"})


@router.get("/catalog/imports/{import_id}", response_model=CatalogImportOut)
def get_import(import_id: uuid.UUID, session: ReadSession, _: Reader) -> CatalogImportOut:
    job = session.get(CatalogImport, import_id)
    if job is None:
        raise NotFound(f"catalog import {import_id} not found")
    return import_out(job)
