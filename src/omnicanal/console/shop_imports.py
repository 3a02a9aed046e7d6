"""Catalog CSV in the console: upload a file, watch the import advance, read the rejected rows, download
the export.

The import is the API's (:mod:`omnicanal.commerce.catalog_imports`): the upload queues a job that runs in
slices after the answer; the job's page polls a fragment (htmx, every half second) that redraws the
progress bar until the job is done or failed, then shows the report. An import whose server process
stopped is picked up when it is read here, like on the API.
"""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from omnicanal.access.roles import Permission
from omnicanal.commerce import catalog_import_jobs as jobs
from omnicanal.commerce.catalog_import_jobs import CatalogImportOut
from omnicanal.commerce.catalog_imports import export_text, one_import, read_upload, recent_imports
from omnicanal.console.channels import N_
from omnicanal.console.context import Console, ConsoleError, StaffConsole, StaffPostConsole
from omnicanal.console.routes import parse_id, problem_text
from omnicanal.errors import DomainError

router = APIRouter(prefix="/console", include_in_schema=False)

STATUS_LABELS = {
    "queued": N_("Waiting to start"),
    "running": N_("Importing"),
    "done": N_("Finished"),
    "failed": N_("Stopped"),
}
FAILURE_TEXTS = {
    "crashed": N_(
        "The import stopped on an unexpected error. The products imported so far are kept: resume it to import "
        "the rest."
    ),
    "worker_lost": N_(
        "The server running the import stopped (attempts: %(attempts)s). The products imported so far are kept: "
        "resume it to import the rest."
    ),
    "file_lost": N_(
        "The server running the import stopped and the file was not kept. The products imported so far are "
        "kept: upload the file again to import the rest."
    ),
}


def _render(console: Console, template: str, *, partial: bool = False, **context: Any) -> Response:
    def status_label(job: CatalogImportOut) -> str:
        return console._(STATUS_LABELS.get(job.status, job.status))

    def failure_text(job: CatalogImportOut) -> str:
        if job.failure in FAILURE_TEXTS:
            return console._(FAILURE_TEXTS[job.failure], attempts=job.attempts)
        return ""

    return console.render(template, partial=partial, status_label=status_label, failure_text=failure_text,
                          can_manage=console.can(Permission.CATALOG_MANAGE), **context)  # fmt: skip


@router.get("/shop/imports")
def imports_page(console: StaffConsole) -> Response:
    console.require(Permission.CATALOG_READ)
    return _render(console, "shop_imports.html", items=recent_imports(console.db))


@router.post("/shop/imports")
async def upload(console: StaffPostConsole) -> Response:
    user = console.require(Permission.CATALOG_MANAGE)
    try:
        text, name = await read_upload(console.request)
    except DomainError as exc:
        console.flash("error", problem_text(console, exc))
        return console.redirect("/console/shop/imports")

    def queue() -> uuid.UUID:
        with console.db.write() as session:
            return jobs.create_job(session, filename=name, text=text, created_by=user.actor).id

    job_id = await run_in_threadpool(queue)
    jobs.start(console.db, job_id)
    return console.redirect(f"/console/shop/imports/{job_id}")


def _job(console: Console, import_id: str) -> CatalogImportOut:
    console.require(Permission.CATALOG_READ)
    missing = console._("There is no import with this id.")
    job_id = parse_id(console, import_id, missing)
    try:
        return one_import(console.db, job_id)
    except DomainError:
        raise ConsoleError(404, missing) from None


@router.get("/shop/imports/{import_id}")
def import_page(console: StaffConsole, import_id: str) -> Response:
    return _render(console, "shop_import.html", job=_job(console, import_id))


@router.get("/shop/imports/{import_id}/progress")
def import_progress(console: StaffConsole, import_id: str) -> Response:
    """The progress bar (polling itself while the import runs), then the report."""
    return _render(console, "_import_progress.html", partial=True, job=_job(console, import_id))


@router.post("/shop/imports/{import_id}/resume")
def resume(console: StaffPostConsole, import_id: str) -> Response:
    console.require(Permission.CATALOG_MANAGE)
    job_id = parse_id(console, import_id, console._("There is no import with this id."))
    try:
        jobs.resume(console.db, job_id)
    except DomainError as exc:
        console.flash("error", problem_text(console, exc))
    return console.redirect(f"/console/shop/imports/{job_id}")


@router.get("/shop/export.csv")
def export(console: StaffConsole) -> Response:
    console.require(Permission.CATALOG_READ)
    return Response(export_text(console.db), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": 'attachment; filename="catalog.csv"'})  # fmt: skip
