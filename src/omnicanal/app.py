"""The application factory: nothing is built at import time."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session

from omnicanal import __version__, handlers
from omnicanal.access.api import router as access_router
from omnicanal.answers.api import router as answers_router
from omnicanal.channels.api import router as channels_router
from omnicanal.channels.catalog import load_adapters
from omnicanal.channels.delivery import forget_stale as forget_stale_statuses
from omnicanal.channels.transport import install_transports
from omnicanal.commerce.api import router as commerce_router
from omnicanal.commerce.catalog_import_jobs import recover_at_startup as recover_catalog_imports
from omnicanal.commerce.catalog_imports import router as catalog_imports_router
from omnicanal.commerce.orders import expire_due
from omnicanal.commerce.store_credit import router as store_credit_router
from omnicanal.consent.api import router as consent_router
from omnicanal.conversations.api import router as conversations_router
from omnicanal.conversations.inbound import receive
from omnicanal.conversations.service import wake_snoozed
from omnicanal.customers.api import router as customers_router
from omnicanal.db import Database, create_database
from omnicanal.fastlane import OmnicanalAPI
from omnicanal.loyalty.api import router as loyalty_router
from omnicanal.loyalty.jobs import hourly_birthdays
from omnicanal.loyalty.jobs import periodic as loyalty_jobs
from omnicanal.outbox.api import router as outbox_router
from omnicanal.outbox.transports import registry_from_settings
from omnicanal.outbox.worker import OutboxWorker
from omnicanal.privacy.api import router as privacy_router
from omnicanal.realtime import Runtime, attach_runtime, create_broadcaster
from omnicanal.routing.api import router as routing_router
from omnicanal.settings import Settings
from omnicanal.stream_api import router as stream_router
from omnicanal.timeline.api import router as timeline_router
from omnicanal.timeline.writer import BatchReader, IngestWriter
from omnicanal.web import install_problem_handlers
from omnicanal.webhooks.api import router as webhooks_router
from omnicanal.webhooks.transport import WebhookTransport

log = logging.getLogger(__name__)

# The ingest paths first: routes are matched in order, and these take the most requests.
ROUTERS = (
    timeline_router, conversations_router, customers_router, access_router, consent_router, privacy_router,
    answers_router, routing_router, outbox_router, stream_router, webhooks_router, channels_router,
    loyalty_router, commerce_router, store_credit_router, catalog_imports_router,
)  # fmt: skip


def build_runtime(settings: Settings, db: Database) -> tuple[Runtime, OutboxWorker]:
    """The process's real-time fan-out and outbox worker, shared by ``serve`` and ``worker``."""
    runtime = Runtime(broadcaster=create_broadcaster(settings.redis_url), settings=settings)
    attach_runtime(db.write_engine, runtime)
    registry = registry_from_settings(settings.channel_endpoints)
    registry.register("webhook", WebhookTransport(db))
    load_adapters()
    install_transports(registry, db)  # configured channel instances first, the above as fallback
    worker = OutboxWorker(
        db,
        registry,
        wakeup=runtime.outbox_wakeup,
        senders=settings.outbox_senders,
        rate_limits=settings.channel_rate_limits,
        periodic=[wake_snoozed, loyalty_jobs, expire_due, forget_stale_statuses],
        background=[hourly_birthdays],
    )
    return runtime, worker


def create_app(settings: Settings | None = None, *, database: Database | None = None) -> FastAPI:
    settings = settings or Settings()
    db = database or create_database(settings)
    writer = IngestWriter(db, max_events=settings.ingest_batch_max)
    reader = BatchReader(db, max_events=settings.ingest_batch_max)
    runtime, worker = build_runtime(settings, db)
    handlers.register()

    def receive_messages(session: Session, items: Sequence[Any]) -> list[Any]:
        return receive(session, items, settings=settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime.broadcaster.start()
        writer.start()
        reader.start()
        recover_catalog_imports(db)
        if settings.outbox_in_process:
            worker.start()
        try:
            yield
        finally:
            worker.stop()
            reader.stop()
            writer.stop()
            runtime.broadcaster.stop()
            if database is None:
                db.dispose()

    app = OmnicanalAPI(
        title="omnicanal",
        version=__version__,
        description="One shared, real-time customer record for every channel.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.database = db
    app.state.ingest_writer = writer
    app.state.batch_reader = reader
    app.state.receive_messages = receive_messages
    app.state.broadcaster = runtime.broadcaster
    app.state.outbox_worker = worker
    install_problem_handlers(app)

    @app.get("/healthz", tags=["health"])
    def healthz() -> JSONResponse:
        return JSONResponse({"status": "ok", "version": __version__})

    # provider webhooks are ingest paths too: matched before the rest of the API
    for channel_type in load_adapters().values():
        for router in channel_type.routers:
            app.include_router(router)
    for router in ROUTERS:
        app.include_router(router)
    app.fast_lane.add_routes(
        [router for channel_type in load_adapters().values() for router in channel_type.routers] + list(ROUTERS)
    )

    from omnicanal.console import mount_console

    mount_console(app)
    return app


def serving_app() -> FastAPI:
    """The application of one serving process of ``omnicanal serve --workers N``, configured by the environment."""
    from omnicanal import longlived

    application = create_app(Settings())
    longlived.enable()
    return application
