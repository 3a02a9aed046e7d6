"""The staff console: server-rendered pages (Jinja2 + htmx), Spanish and English."""

from __future__ import annotations

from fastapi import FastAPI


def mount_console(app: FastAPI) -> None:
    """Attach the console's routes and static files to the app."""
    from omnicanal.console.routes import router

    app.include_router(router)
