"""The application factory: nothing is built at import time."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.responses import JSONResponse

from omnicanal import __version__, handlers
from omnicanal.access.api import router as access_router
from omnicanal.consent.api import router as consent_router
from omnicanal.customers.api import router as customers_router
from omnicanal.db import Database, create_database
from omnicanal.privacy.api import router as privacy_router
from omnicanal.settings import Settings
from omnicanal.timeline.api import router as timeline_router
from omnicanal.timeline.writer import IngestWriter
from omnicanal.web import install_problem_handlers

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None, *, database: Database | None = None) -> FastAPI:
    settings = settings or Settings()
    db = database or create_database(settings)
    writer = IngestWriter(db, max_events=settings.ingest_batch_max)
    handlers.register()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        writer.start()
        try:
            yield
        finally:
            writer.stop()
            if database is None:
                db.dispose()

    app = FastAPI(
        title="omnicanal",
        version=__version__,
        description="One shared, real-time customer record for every channel.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.database = db
    app.state.ingest_writer = writer
    install_problem_handlers(app)

    @app.get("/healthz", tags=["health"])
    def healthz() -> JSONResponse:
        return JSONResponse({"status": "ok", "version": __version__})

    for router in (access_router, customers_router, timeline_router, consent_router, privacy_router):
        app.include_router(router)

    from omnicanal.console import mount_console

    mount_console(app)
    return app
