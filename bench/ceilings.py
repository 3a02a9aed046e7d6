"""Ceiling servers: what one uvicorn process on this machine can do at all.

``bare``: a Starlette endpoint that answers a small JSON (reads the body of a POST, nothing else).
``sqlite``: the same, plus one raw ``sqlite3`` insert and commit per request
(WAL, ``synchronous=NORMAL``) — the cheapest durable write a Python server can do.

Served by ``python bench/ceilings.py KIND PORT [DB]`` with ``uvicorn.run`` exactly as ``omnicanal
serve`` runs (one process, uvloop + httptools, no access log). Both answer the same routes as the
real API, so the same wrk scripts drive them.
"""

from __future__ import annotations

import sqlite3
import sys
from typing import Any

import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route


def _json(content: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(content), status_code=status, media_type="application/json")


def bare_app() -> Starlette:
    async def post_events(request: Request) -> Response:
        await request.body()
        return _json({"ok": True}, 201)

    async def get_360(request: Request) -> Response:
        return _json({"customer": {"id": request.path_params["customer_id"]}, "events": []})

    async def healthz(request: Request) -> Response:
        return _json({"status": "ok"})

    return Starlette(
        routes=[
            Route("/api/v1/events", post_events, methods=["POST"]),
            Route("/api/v1/customers/{customer_id}/360", get_360),
            Route("/healthz", healthz),
        ]
    )


def sqlite_app(path: str) -> Starlette:
    con = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=NORMAL")
    con.execute(
        "CREATE TABLE IF NOT EXISTS events (seq INTEGER PRIMARY KEY, event_id TEXT NOT NULL UNIQUE, body TEXT NOT NULL)"
    )

    async def post_events(request: Request) -> Response:
        raw = await request.body()
        body = orjson.loads(raw)
        con.execute("INSERT INTO events (event_id, body) VALUES (?, ?)", (body["id"], raw))
        return _json({"event_id": body["id"]}, 201)

    async def healthz(request: Request) -> Response:
        return _json({"status": "ok"})

    return Starlette(routes=[Route("/api/v1/events", post_events, methods=["POST"]), Route("/healthz", healthz)])


def main() -> None:
    kind, port = sys.argv[1], int(sys.argv[2])
    app = bare_app() if kind == "bare" else sqlite_app(sys.argv[3])
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
