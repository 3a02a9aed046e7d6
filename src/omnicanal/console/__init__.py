"""The staff console: server-rendered pages (Jinja2 + htmx), Spanish and English."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.staticfiles import StaticFiles
from starlette.responses import RedirectResponse, Response

STATIC_DIR = Path(__file__).parent / "static"


def mount_console(app: FastAPI) -> None:
    """Attach the console's routes and static files to the app."""
    from omnicanal.console import i18n
    from omnicanal.console.channel_setup import router as channel_setup_router
    from omnicanal.console.context import ConsoleError, LoginRequired, render_error, set_display_timezone
    from omnicanal.console.conversation import router as conversation_router
    from omnicanal.console.conversation_actions import router as conversation_actions_router
    from omnicanal.console.inbox import router as inbox_router
    from omnicanal.console.loyalty import router as loyalty_router
    from omnicanal.console.review import router as review_router
    from omnicanal.console.routes import router
    from omnicanal.console.shop import router as shop_router
    from omnicanal.console.shop_imports import router as shop_imports_router
    from omnicanal.console.supervision import router as supervision_router

    i18n.load_all()
    set_display_timezone(app.state.settings.console_timezone)

    def login_required(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, LoginRequired)
        target = "/console/login?next=" + quote(exc.next_url, safe="/")
        if request.headers.get("hx-request") == "true":
            return Response(status_code=401, headers={"HX-Redirect": target})
        return RedirectResponse(target, status_code=303)

    def console_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ConsoleError)
        return render_error(request, exc.status, exc.message)

    app.add_exception_handler(LoginRequired, login_required)
    app.add_exception_handler(ConsoleError, console_error)
    app.include_router(router)
    app.include_router(review_router)
    app.include_router(inbox_router)
    app.include_router(conversation_router)
    app.include_router(conversation_actions_router)
    app.include_router(supervision_router)
    app.include_router(channel_setup_router)
    app.include_router(loyalty_router)
    app.include_router(shop_imports_router)
    app.include_router(shop_router)
    app.mount("/console/static", StaticFiles(directory=STATIC_DIR), name="console-static")
