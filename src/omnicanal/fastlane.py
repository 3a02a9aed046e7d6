"""The fast lane: the hottest routes served without FastAPI's middleware stack and route matching.

FastAPI 0.16x walks every included router for each request, and its middleware stack
(error, telemetry, body-limit, exception and exit-stack layers) runs around every handler.
On the ingest paths that machinery cost more CPU than the handler itself (bench/README.md, B1).
Routes built with :func:`omnicanal.web.served_by` already take the bare request and answer the
response; the application hands their requests straight to them, and turns their errors into
the same problem details the FastAPI handlers give. Everything else goes through FastAPI as before.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute, APIRouter
from starlette.requests import Request
from starlette.routing import compile_path
from starlette.types import Receive, Scope, Send

from omnicanal.web import Handler, problem, problem_for

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _PatternRoute:
    methods: frozenset[str]
    regex: re.Pattern[str]
    convertors: dict[str, Any]
    handler: Handler


class FastLane:
    def __init__(self) -> None:
        self._static: dict[tuple[str, str], Handler] = {}
        self._patterns: list[_PatternRoute] = []

    def add_routes(self, routers: Iterable[APIRouter]) -> None:
        for router in routers:
            for route in router.routes:
                handler = getattr(type(route), "lean_handler", None)
                if not isinstance(route, APIRoute) or handler is None:
                    continue
                methods = frozenset(route.methods or ())
                regex, _, convertors = compile_path(route.path)
                if convertors:
                    self._patterns.append(_PatternRoute(methods, regex, convertors, handler))
                else:
                    for method in methods:
                        self._static[(method, route.path)] = handler

    def match(self, method: str, path: str) -> tuple[Handler, dict[str, Any]] | None:
        handler = self._static.get((method, path))
        if handler is not None:
            return handler, {}
        for route in self._patterns:
            if method in route.methods:
                found = route.regex.match(path)
                if found is not None:
                    params = {name: route.convertors[name].convert(value) for name, value in found.groupdict().items()}
                    return route.handler, params
        return None


class OmnicanalAPI(FastAPI):
    """FastAPI with the fast lane in front."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.fast_lane = FastLane()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not scope.get("root_path"):
            found = self.fast_lane.match(scope["method"], scope["path"])
            if found is not None:
                handler, params = found
                scope["app"] = self
                scope["path_params"] = params
                request = Request(scope, receive)
                try:
                    response = await handler(request)
                except Exception as exc:
                    answer = problem_for(request, exc)
                    if answer is None:
                        log.exception("%s %s failed", scope["method"], scope["path"])
                        answer = problem(500, "internal-error", "Internal server error", "the server failed")
                    response = answer
                await response(scope, receive, send)
                return
        await super().__call__(scope, receive, send)
