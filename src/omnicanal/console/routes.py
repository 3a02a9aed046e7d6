"""Console pages: login, customer search, the customer 360 view and undoing merges."""

from __future__ import annotations

import time
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Form, Query
from starlette.responses import Response

from omnicanal.access.roles import Permission
from omnicanal.access.service import authenticate_user
from omnicanal.console.context import (
    AnyConsole,
    Console,
    ConsoleError,
    PostConsole,
    StaffConsole,
    StaffPostConsole,
)
from omnicanal.console.i18n import LANGUAGES
from omnicanal.console.security import login_throttle, safe_next
from omnicanal.customer360 import customer_360
from omnicanal.customers.identities import IDENTITY_TYPES
from omnicanal.customers.models import Customer
from omnicanal.customers.schemas import CustomerOut
from omnicanal.customers.service import (
    customer_out,
    find_by_identity,
    get_customer,
    search_customers,
    undo,
)
from omnicanal.errors import DomainError, Moved, NotFound, Unauthenticated
from omnicanal.privacy.service import erase_customer
from omnicanal.timeline.service import event_out, timeline

router = APIRouter(prefix="/console", include_in_schema=False)

SEARCH_PAGE_SIZE = 20
TIMELINE_PAGE_SIZE = 25


def problem_text(console: Console, exc: DomainError) -> str:
    """A domain error as a sentence for a flash message, in the user's language where we can."""
    if isinstance(exc, NotFound):
        return console._("Not found: %(detail)s", detail=exc.detail)
    return console._("That could not be done: %(detail)s", detail=exc.detail)


def parse_id(console: Console, raw: str, not_found: str) -> uuid.UUID:
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise ConsoleError(404, not_found) from None


# -- session ---------------------------------------------------------------------------


def landing(console: Console) -> str:
    """Where a user starts: agents and supervisors in their inbox, everyone else in customer search."""
    return "/console/inbox" if console.can(Permission.CONVERSATIONS_WRITE) else "/console/customers"


@router.get("")
def home(console: StaffConsole) -> Response:
    return console.redirect(landing(console))


@router.get("/login")
def login_form(console: AnyConsole, next: str | None = None) -> Response:
    if console.user is not None:
        return console.redirect(safe_next(next, landing(console)))
    return console.render("login.html", email="", error=None, next=safe_next(next, "/console"))


@router.post("/login")
def login(
    console: PostConsole,
    email: Annotated[str, Form()] = "",
    password: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = "",
) -> Response:
    now = time.monotonic()
    wait = login_throttle.seconds_locked(email, now)
    if wait > 0:
        return console.render(
            "login.html",
            status=429,
            email=email,
            error=console._("Too many failed attempts. Try again in %(minutes)s minutes.")
            % {"minutes": max(1, round(wait / 60))},
            next=safe_next(next, "/console"),
        )
    try:
        with console.db.write() as session:
            user = authenticate_user(session, email=email, password=password)
            console.log_in(user)
        login_throttle.succeeded(email)
    except Unauthenticated:
        login_throttle.failed(email, now)
        return console.render(
            "login.html",
            status=401,
            email=email,
            error=console._("Wrong email or password."),
            next=safe_next(next, "/console"),
        )
    return console.redirect(safe_next(next, landing(console)))


@router.post("/logout")
def logout(console: PostConsole) -> Response:
    console.log_out()
    console.flash("info", console._("You have logged out."))
    return console.redirect("/console/login")


@router.post("/language")
def switch_language(
    console: PostConsole,
    lang: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = "",
) -> Response:
    if lang in LANGUAGES:
        console.language = lang
        console.language_cookie = lang
    return console.redirect(safe_next(next, "/console/login" if console.user is None else landing(console)))


# -- customers -------------------------------------------------------------------------


def _looks_like_identity(q: str) -> bool:
    kind, sep, _ = q.partition(":")
    return bool(sep) and kind in IDENTITY_TYPES


@router.get("/customers")
def customers(
    console: StaffConsole,
    q: Annotated[str, Query()] = "",
    cursor: Annotated[str | None, Query()] = None,
) -> Response:
    q = q.strip()[:320]
    results: list[CustomerOut] = []
    next_cursor: str | None = None
    message: str | None = None
    try:
        with console.db.read() as session:
            found: list[Customer]
            if _looks_like_identity(q):
                owner = find_by_identity(session, identity=q, settings=console.settings)
                found = [get_customer(session, owner.id, follow_merges=True)] if owner else []
            elif len(q) == 1:
                found = []
                message = console._("Type at least 2 characters.")
            else:
                found, next_cursor = search_customers(
                    session, q=q or None, limit=SEARCH_PAGE_SIZE, cursor=cursor, settings=console.settings
                )
            results = [customer_out(session, customer) for customer in found]
    except DomainError as exc:
        message = problem_text(console, exc)
    if q and not results and message is None:
        message = console._("No customer matches “%(q)s”.", q=q)
    context: dict[str, Any] = {
        "q": q,
        "results": results,
        "next_cursor": next_cursor,
        "message": message,
        "more": bool(cursor),
    }
    if console.is_htmx:
        return console.render("_customer_results.html", partial=True, **context)
    return console.render("customers.html", **context)


@router.get("/customers/{customer_id}")
def customer_page(console: StaffConsole, customer_id: str) -> Response:
    cid = parse_id(console, customer_id, console._("There is no customer with this id."))
    try:
        with console.db.read() as session:
            view = customer_360(session, customer_id=cid, events=TIMELINE_PAGE_SIZE)
    except Moved as exc:
        console.flash("info", console._("This customer was merged; showing the customer it was merged into."))
        return console.redirect(f"/console/customers/{exc.new_id}")
    except NotFound:
        raise ConsoleError(404, console._("There is no customer with this id.")) from None
    return console.render("customer.html", view=view, customer=view.customer)


@router.get("/customers/{customer_id}/timeline")
def customer_timeline(
    console: StaffConsole, customer_id: str, cursor: Annotated[str | None, Query()] = None
) -> Response:
    cid = parse_id(console, customer_id, console._("There is no customer with this id."))
    try:
        with console.db.read() as session:
            customer = get_customer(session, cid, follow_merges=True)
            rows, next_cursor = timeline(session, customer_id=customer.id, limit=TIMELINE_PAGE_SIZE, cursor=cursor)
            events = [event_out(row) for row in rows]
    except DomainError as exc:
        return console.render("_message.html", partial=True, message=problem_text(console, exc))
    return console.render(
        "_timeline_items.html", partial=True, events=events, next_cursor=next_cursor, customer_id=customer.id
    )


@router.post("/merges/{merge_id}/undo")
def undo_merge(console: StaffPostConsole, merge_id: str, next: Annotated[str, Form()] = "") -> Response:
    user = console.require(Permission.MERGES_MANAGE)
    mid = parse_id(console, merge_id, console._("There is no merge with this id."))
    try:
        with console.db.write() as session:
            record = undo(session, merge_id=mid, actor=user.actor)
            survivor = record.survivor_id
    except DomainError as exc:
        console.flash("error", problem_text(console, exc))
        return console.redirect(safe_next(next))
    console.flash("success", console._("Merge undone: both customers are separate again."))
    return console.redirect(safe_next(next, f"/console/customers/{survivor}"))


@router.post("/customers/{customer_id}/erase")
def erase(console: StaffPostConsole, customer_id: str, confirm: Annotated[str, Form()] = "") -> Response:
    user = console.require(Permission.PRIVACY_ERASE)
    cid = parse_id(console, customer_id, console._("There is no customer with this id."))
    if confirm != "yes":
        console.flash("error", console._("Tick the confirmation box to erase this customer."))
        return console.redirect(f"/console/customers/{cid}")
    try:
        with console.db.write() as session:
            erase_customer(session, customer_id=cid, actor=user.actor)
    except DomainError as exc:
        console.flash("error", problem_text(console, exc))
        return console.redirect(f"/console/customers/{cid}")
    console.flash("success", console._("The customer's personal data was erased."))
    return console.redirect("/console/customers")
