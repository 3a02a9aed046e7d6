"""Catalog CSV import and export over the API: upload, follow the progress, read the report of rejected rows.

The same import as ``omnicanal catalog import`` (:func:`catalog_csv.import_csv`), run after the upload is
answered (202) by :mod:`catalog_import_jobs` (slices committed with the job's progress; a job whose process
died is resumed or failed with its reason when it is listed or read, and at startup). Line numbers in the
report are those of the uploaded file.
"""

from __future__ import annotations

import io
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from omnicanal.access.roles import Permission
from omnicanal.access.service import Principal
from omnicanal.commerce import catalog_import_jobs as jobs
from omnicanal.commerce.catalog_csv import export_csv
from omnicanal.commerce.catalog_import_jobs import CatalogImport, CatalogImportOut, import_out
from omnicanal.db import Database
from omnicanal.errors import NotFound, PayloadTooLarge, ValidationFailed
from omnicanal.web import require

MAX_BYTES = 50 * 1024 * 1024


router = APIRouter(prefix="/api/v1", tags=["commerce"])
Manager = Annotated[Principal, Depends(require(Permission.CATALOG_MANAGE))]
Reader = Annotated[Principal, Depends(require(Permission.CATALOG_READ))]


async def read_upload(request: Request) -> tuple[str, str]:
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
    text, name = await read_upload(request)
    database: Database = request.app.state.database

    def queue() -> dict[str, Any]:
        with database.write() as session:
            job = jobs.create_job(session, filename=name, text=text, created_by=principal.label)
            return import_out(job).model_dump(mode="json")

    body = await run_in_threadpool(queue)
    job_id = uuid.UUID(body["id"])
    jobs.start(database, job_id)
    return JSONResponse(body, status_code=202, headers={"Location": f"/api/v1/catalog/imports/{job_id}"})


class CatalogImportList(BaseModel):
    items: list[CatalogImportOut]


def recent_imports(database: Database, *, limit: int = 20) -> list[CatalogImportOut]:
    """The latest imports, after resuming any whose process is gone."""
    jobs.recover(database)
    with database.read() as session:
        rows = session.scalars(select(CatalogImport).order_by(CatalogImport.id.desc()).limit(limit))
        return [import_out(job) for job in rows]


def one_import(database: Database, import_id: uuid.UUID) -> CatalogImportOut:
    """The import as it stands, resumed first if its process is gone."""
    for attempt in range(2):
        with database.read() as session:
            job = session.get(CatalogImport, import_id)
            if job is None:
                raise NotFound(f"catalog import {import_id} not found")
            if attempt or not jobs.worker_gone(job):
                return import_out(job)
        jobs.recover(database, [import_id])
    raise AssertionError("unreachable")


@router.get("/catalog/imports", response_model=CatalogImportList)
def list_imports(request: Request, _: Reader, limit: Annotated[int, Query(ge=1, le=100)] = 20) -> CatalogImportList:
    """The latest imports, newest first. An import whose server process stopped is resumed from where it
    stopped, or marked ``failed`` with the reason (``error``) so it can be resumed or uploaded again."""
    return CatalogImportList(items=recent_imports(request.app.state.database, limit=limit))


@router.get("/catalog/imports/{import_id}", response_model=CatalogImportOut)
def get_import(import_id: uuid.UUID, request: Request, _: Reader) -> CatalogImportOut:
    return one_import(request.app.state.database, import_id)


@router.post("/catalog/imports/{import_id}/resume", status_code=202, response_model=CatalogImportOut)
def resume_import(import_id: uuid.UUID, request: Request, _: Manager) -> CatalogImportOut:
    """Start a failed import again from the first product it had not committed."""
    database: Database = request.app.state.database
    jobs.resume(database, import_id)
    return one_import(database, import_id)


def export_text(database: Database) -> str:
    buffer = io.StringIO()
    with database.read() as session:
        export_csv(session, buffer)
    return buffer.getvalue()


@router.get("/catalog/export", response_class=Response,
            responses={200: {"content": {"text/csv": {"schema": {"type": "string"}}}}})  # fmt: skip
def export_catalog(request: Request, _: Reader) -> Response:
    """Every active product as CSV, in the format the import reads (``omnicanal catalog export``)."""
    return Response(export_text(request.app.state.database), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": 'attachment; filename="catalog.csv"'})  # fmt: skip


__all__ = ["CatalogImport", "router"]
