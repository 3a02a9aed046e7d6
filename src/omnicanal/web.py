"""What every HTTP router shares: the database, the caller, and problem-detail errors."""

from __future__ import annotations

import email.message
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from typing import Annotated, Any

import orjson
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.routing import APIRoute
from pydantic import TypeAdapter, ValidationError
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from omnicanal.access.roles import Permission, role_allows
from omnicanal.access.service import Principal, cached_principal, principal_for_token
from omnicanal.db import Database
from omnicanal.errors import PROBLEM_BASE, DomainError, Forbidden, Moved, Unauthenticated
from omnicanal.settings import Settings

PROBLEM_JSON = "application/problem+json"


class ProblemResponse(JSONResponse):
    media_type = PROBLEM_JSON


class FastJSONResponse(JSONResponse):
    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


# The small dependencies are ``async def``: FastAPI runs a plain ``def`` dependency in the thread
# pool, and a thread hop costs more than all they do (measured: bench/README.md, B1).
async def database(request: Request) -> Database:
    db: Database = request.app.state.database
    return db


async def settings(request: Request) -> Settings:
    value: Settings = request.app.state.settings
    return value


def write_session(db: Annotated[Database, Depends(database)]) -> Iterator[Session]:
    with db.write() as session:
        yield session


async def read_session(db: Annotated[Database, Depends(database)]) -> AsyncIterator[Session]:
    # Opening a session does no I/O (it connects on its first query), so it happens here. Ending a
    # SQLite read transaction only releases a lock in shared memory, so it happens here too; on
    # PostgreSQL it is a round trip and goes to the thread pool. Every thread hop saved counts:
    # on the 360 read (bench/README.md, B3) each one cost more than the queries.
    async with db.read_gate():
        reading = db.read()
        session = reading.__enter__()
        try:
            yield session
        except BaseException as exc:
            if db.is_sqlite:
                if not reading.__exit__(type(exc), exc, exc.__traceback__):
                    raise
            elif not await run_in_threadpool(reading.__exit__, type(exc), exc, exc.__traceback__):
                raise
        else:
            if db.is_sqlite:
                reading.__exit__(None, None, None)
            else:
                await run_in_threadpool(reading.__exit__, None, None, None)


WriteSession = Annotated[Session, Depends(write_session)]
ReadSession = Annotated[Session, Depends(read_session)]
AppSettings = Annotated[Settings, Depends(settings)]


def _principal_from_database(db: Database, token: str) -> Principal:
    with db.read() as session:
        return principal_for_token(session, token)


def _authorization_header(request: Request) -> str:
    # Straight from the ASGI scope: building Starlette's Headers for one lookup cost more than the lookup.
    for name, value in request.scope["headers"]:
        if name == b"authorization":
            return str(value.decode("latin-1"))
    return ""


async def authorize(request: Request, permission: Permission | None = None) -> Principal:
    """The caller of ``request`` (``Authorization: Bearer <key>``), allowed ``permission``; or a 401/403.

    What the ``bearer_principal`` and ``require(...)`` dependencies do, callable without FastAPI's
    dependency machinery (the ingest route, bench/README.md B1, does its own request handling).
    """
    header = _authorization_header(request)
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("send an API key as 'Authorization: Bearer <key>'")
    token = token.strip()
    # A key verified a moment ago needs no database (nor a thread to wait for it in).
    principal = cached_principal(token)
    if principal is None:
        db: Database = request.app.state.database
        principal = await run_in_threadpool(_principal_from_database, db, token)
    if permission is not None and not role_allows(principal.role, permission):
        raise Forbidden(f"the role {principal.role!r} may not {permission.value}")
    return principal


async def bearer_principal(request: Request) -> Principal:
    return await authorize(request)


def require(permission: Permission) -> Callable[..., Awaitable[Principal]]:
    async def check(principal: Annotated[Principal, Depends(bearer_principal)]) -> Principal:
        if not role_allows(principal.role, permission):
            raise Forbidden(f"the role {principal.role!r} may not {permission.value}")
        return principal

    return check


Handler = Callable[[Request], Coroutine[Any, Any, Response]]


def served_by(handler: Handler) -> type[APIRoute]:
    """A route class: documented in OpenAPI from its endpoint like any route, served by ``handler``.

    ``handler`` takes the request and answers the response itself; FastAPI's request handling
    (dependency solving, parameter and response processing) is skipped, which on the hot paths
    (bench/README.md: B1 ingest, B3 customer 360) cost more than the endpoint. Errors still reach
    the problem handlers. The handler must check what the documented signature promises, in the
    same order (authentication before parameters) and with the same errors. The application's
    fast lane (:mod:`omnicanal.fastlane`) also serves these routes ahead of FastAPI's middleware
    and route matching.
    """

    class RequestOnlyRoute(APIRoute):
        lean_handler = staticmethod(handler)

        def get_route_handler(self) -> Handler:
            return handler

    return RequestOnlyRoute


def problem(status: int, slug: str, title: str, detail: str, **extra: Any) -> ProblemResponse:
    body = {"type": PROBLEM_BASE + slug, "title": title, "status": status, "detail": detail, **extra}
    return ProblemResponse(body, status_code=status)


def _field_name(loc: tuple[Any, ...] | list[Any]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or "body"


def problem_for(request: Request, exc: Exception) -> Response | None:
    """The answer to an error raised while serving ``request``; None for an unexpected error."""
    if isinstance(exc, DomainError):
        if isinstance(exc, Moved):
            location = request.url.path.replace(exc.old_id, exc.new_id)
            if request.url.query:
                location += "?" + request.url.query
            return RedirectResponse(location, status_code=308)
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return ProblemResponse(exc.problem(), status_code=exc.status, headers=headers)
    if isinstance(exc, RequestValidationError):
        errors = [{"field": _field_name(err["loc"]), "message": err["msg"]} for err in exc.errors()]
        json_error = any(err.get("type") == "json_invalid" for err in exc.errors())
        detail = (
            "the body is not valid JSON" if json_error else "; ".join(f"{e['field']}: {e['message']}" for e in errors)
        )
        return problem(422, "validation-error", "The request is not valid", detail, errors=errors)
    if isinstance(exc, StarletteHTTPException):
        slug = {404: "not-found", 405: "method-not-allowed"}.get(exc.status_code, "http-error")
        return problem(exc.status_code, slug, str(exc.detail), str(exc.detail))
    return None


def install_problem_handlers(app: FastAPI) -> None:
    async def handle(request: Request, exc: Exception) -> Response:
        response = problem_for(request, exc)
        assert response is not None
        return response

    app.add_exception_handler(DomainError, handle)
    app.add_exception_handler(RequestValidationError, handle)
    app.add_exception_handler(StarletteHTTPException, handle)


async def json_body(request: Request, *, max_bytes: int = 8 * 1024 * 1024) -> Any:
    """The parsed body, or a problem naming what is wrong with it."""
    from omnicanal.errors import ValidationFailed

    raw = await read_body(request, max_bytes=max_bytes)
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ValidationFailed.on_field("body", f"is not valid JSON ({exc})") from None


async def read_body(request: Request, *, max_bytes: int = 8 * 1024 * 1024) -> bytes:
    """The whole body, refused past ``max_bytes`` as it arrives (not after buffering all of it).

    Reads the ASGI messages directly: Starlette's ``Request.body`` goes through an async
    generator per request, which on the ingest paths showed in the profile.
    """
    from omnicanal.errors import PayloadTooLarge

    cached: bytes | None = getattr(request, "_body", None)
    if cached is None:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await request.receive()
            if message["type"] == "http.disconnect":
                raise ClientDisconnect()
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > max_bytes:
                raise PayloadTooLarge(f"the body is larger than {max_bytes} bytes")
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        cached = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        request._body = cached
    if len(cached) > max_bytes:
        raise PayloadTooLarge(f"the body is larger than {max_bytes} bytes")
    return cached


async def body_as_fastapi_reads_it(request: Request) -> Any:
    """The body a JSON body parameter is validated from: parsed JSON for a JSON content type, else the bytes."""
    raw = await request.body()
    if not raw:
        raise RequestValidationError([{"type": "missing", "loc": ("body",), "msg": "Field required", "input": None}])
    content_type = request.headers.get("content-type", "")
    if content_type != "application/json":  # what nearly every client sends skips the header parsing
        message = email.message.Message()
        message["content-type"] = content_type
        subtype = message.get_content_subtype()
        if message.get_content_maintype() != "application" or not (subtype == "json" or subtype.endswith("+json")):
            return raw
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        error = {"type": "json_invalid", "loc": ("body", exc.pos), "msg": "JSON decode error", "input": {},
                 "ctx": {"error": exc.msg}}  # fmt: skip
        raise RequestValidationError([error]) from None


async def validated_body(request: Request, adapter: TypeAdapter[Any], errors: list[Any] | None = None) -> Any:
    """The body validated as FastAPI validates a JSON body parameter: the same 422s, beside ``errors`` found before."""
    errors = list(errors or ())
    data = None
    try:
        body = await body_as_fastapi_reads_it(request)
    except RequestValidationError as exc:
        errors += list(exc.errors())
    else:
        try:
            data = adapter.validate_python(body)
        except ValidationError as exc:
            errors += [{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_url=False)]
    if errors or data is None:
        raise RequestValidationError(errors)
    return data


_UUID = TypeAdapter(uuid.UUID)


async def validated_id_and_body(request: Request, param: str, adapter: TypeAdapter[Any]) -> tuple[uuid.UUID, Any]:
    """A UUID path parameter and the body, validated as FastAPI validates them: one 422 naming every error of both."""
    errors: list[Any] = []
    found: uuid.UUID | None = None
    try:
        found = _UUID.validate_python(request.path_params[param])
    except ValidationError as exc:
        errors += [{**e, "loc": ("path", param, *e["loc"])} for e in exc.errors(include_url=False)]
    data = await validated_body(request, adapter, errors)
    if found is None:
        raise RequestValidationError(errors)
    return found, data
