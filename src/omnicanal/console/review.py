"""The identity review queue: merges and identities the rules refused, waiting for a person."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Query
from starlette.responses import Response

from omnicanal.access.roles import Permission
from omnicanal.console.context import StaffConsole, StaffPostConsole
from omnicanal.console.routes import parse_id, problem_text
from omnicanal.customers.schemas import ConflictOut
from omnicanal.customers.service import decide_conflict, list_conflicts
from omnicanal.errors import DomainError

router = APIRouter(prefix="/console", include_in_schema=False)

REVIEW_PAGE_SIZE = 20


@router.get("/review")
def review_queue(console: StaffConsole, cursor: Annotated[str | None, Query()] = None) -> Response:
    console.require(Permission.MERGES_MANAGE)
    items: list[ConflictOut] = []
    next_cursor: str | None = None
    message: str | None = None
    try:
        with console.db.read() as session:
            items, next_cursor = list_conflicts(session, status="open", limit=REVIEW_PAGE_SIZE, cursor=cursor)
    except DomainError as exc:
        message = problem_text(console, exc)
    return console.render("review.html", items=items, next_cursor=next_cursor, message=message)


@router.post("/review/{conflict_id}")
def decide(console: StaffPostConsole, conflict_id: str, action: Annotated[str, Form()] = "") -> Response:
    user = console.require(Permission.MERGES_MANAGE)
    cid = parse_id(console, conflict_id, console._("There is no review item with this id."))
    try:
        with console.db.write() as session:
            decide_conflict(session, conflict_id=cid, action=action, settings=console.settings, actor=user.actor)
    except DomainError as exc:
        console.flash("error", problem_text(console, exc))
        return console.redirect("/console/review")
    if action == "merge":
        console.flash("success", console._("The two customers were merged."))
    else:
        console.flash("success", console._("Dismissed: the customers stay separate."))
    return console.redirect("/console/review")
