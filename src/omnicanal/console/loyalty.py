"""Loyalty in the console: the wallet on the customer 360, manual adjustment, redemption at the counter,
and the programme page (rules, rewards, tiers)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Form, Query
from pydantic import ValidationError
from starlette.responses import Response

from omnicanal.access.roles import Permission
from omnicanal.console.context import StaffConsole, StaffPostConsole
from omnicanal.console.routes import parse_id, problem_text
from omnicanal.customers.service import get_customer
from omnicanal.errors import DomainError
from omnicanal.loyalty import ledger, rewards, service, tiers
from omnicanal.loyalty.schemas import RewardIn, RuleIn

router = APIRouter(prefix="/console", include_in_schema=False)
LEDGER_SHOWN = 20


@router.get("/customers/{customer_id}/loyalty")
def wallet_panel(
    console: StaffConsole, customer_id: str, back: Annotated[str, Query()] = "", store: Annotated[str, Query()] = ""
) -> Response:
    console.require(Permission.LOYALTY_READ)
    cid = parse_id(console, customer_id, console._("There is no customer with this id."))
    with console.db.read() as session:
        customer = get_customer(session, cid, follow_merges=True)
        wallet = service.wallet_out(session, customer.id)
        entries, more = ledger.ledger_page(session, customer.id, cursor=None, limit=LEDGER_SHOWN)
        catalogue = [r for r in rewards.list_rewards(session) if r.active]
    return console.render(
        "_loyalty_wallet.html", partial=True, customer_id=customer.id, wallet=wallet, entries=entries,
        more=more is not None, rewards=catalogue, request_id=uuid.uuid4().hex,
        can_adjust=console.can(Permission.LOYALTY_ADJUST), can_redeem=console.can(Permission.LOYALTY_REDEEM),
        back=f"/console/counter?customer={customer.id}&store={_uuid_or_empty(store)}" if back == "counter" else "",
    )  # fmt: skip


def _uuid_or_empty(value: str) -> str:
    try:
        return str(uuid.UUID(value))
    except ValueError:
        return ""


@router.post("/customers/{customer_id}/loyalty/adjust")
def adjust(
    console: StaffPostConsole,
    customer_id: str,
    points: Annotated[str, Form()] = "",
    reason: Annotated[str, Form()] = "",
    request_id: Annotated[str, Form()] = "",
) -> Response:
    user = console.require(Permission.LOYALTY_ADJUST)
    cid = parse_id(console, customer_id, console._("There is no customer with this id."))
    target = f"/console/customers/{cid}"
    try:
        amount = int(points)
    except ValueError:
        console.flash("error", console._("Points must be a whole number, positive to add or negative to take."))
        return console.redirect(target)
    if not reason.strip():
        console.flash("error", console._("A manual adjustment needs a reason."))
        return console.redirect(target)
    try:
        with console.db.write() as session:
            service.adjust(session, customer_id=cid, points=amount, reason=reason.strip(),
                           request_id=request_id or uuid.uuid4().hex, actor=user.actor)  # fmt: skip
    except DomainError as exc:
        console.flash("error", problem_text(console, exc))
        return console.redirect(target)
    console.flash("success", console._("Points adjusted: %(points)s.", points=amount))
    return console.redirect(target)


@router.post("/customers/{customer_id}/loyalty/redeem")
def redeem(
    console: StaffPostConsole,
    customer_id: str,
    reward_id: Annotated[str, Form()] = "",
    request_id: Annotated[str, Form()] = "",
    back: Annotated[str, Form()] = "",
) -> Response:
    user = console.require(Permission.LOYALTY_REDEEM)
    cid = parse_id(console, customer_id, console._("There is no customer with this id."))
    rid = parse_id(console, reward_id, console._("There is no reward with this id."))
    # redeemed at the store counter: back to the counter (only there, never to an address from outside)
    target = back if back.startswith("/console/counter?") else f"/console/customers/{cid}"
    try:
        with console.db.write() as session:
            redemption, _ = rewards.redeem(session, customer_id=cid, reward_id=rid,
                                           request_id=request_id or uuid.uuid4().hex, channel="store",
                                           actor=user.actor)  # fmt: skip
            code = redemption.code
    except DomainError as exc:
        console.flash("error", problem_text(console, exc))
        return console.redirect(target)
    console.flash("success", console._("Reward redeemed. Code for the customer: %(code)s", code=code))
    return console.redirect(target)


# -- the programme: rules, rewards, tiers ---------------------------------------------------------


@router.get("/loyalty")
def programme(console: StaffConsole) -> Response:
    console.require(Permission.LOYALTY_READ)
    with console.db.read() as session:
        context: dict[str, Any] = {
            "rules": service.list_rules(session),
            "rewards": rewards.list_rewards(session),
            "tiers": tiers.list_tiers(session),
            "can_manage": console.can(Permission.LOYALTY_MANAGE),
        }
    return console.render("loyalty.html", **context)


def _optional_int(value: str) -> int | None:
    return int(value) if value.strip() else None


def _errors(console: StaffConsole | StaffPostConsole, exc: ValidationError) -> str:
    fields = ", ".join(".".join(str(p) for p in e["loc"]) for e in exc.errors())
    return console._("Check these fields: %(fields)s", fields=fields)


@router.post("/loyalty/rules")
def create_rule(
    console: StaffPostConsole,
    name: Annotated[str, Form()] = "",
    kind: Annotated[str, Form()] = "event",
    event_type: Annotated[str, Form()] = "",
    points: Annotated[str, Form()] = "",
    per_amount: Annotated[str, Form()] = "",
    day_cap: Annotated[str, Form()] = "",
    once_per: Annotated[str, Form()] = "",
    channels: Annotated[str, Form()] = "",
) -> Response:
    console.require(Permission.LOYALTY_MANAGE)
    try:
        data = RuleIn(
            name=name, kind=kind, event_type=event_type or None,
            points=int(points or 0), per_amount=_optional_int(per_amount),
            caps={"day": int(day_cap)} if day_cap.strip() else {},
            once_per=[p.strip() for p in once_per.split(",") if p.strip()] if once_per.strip() else None,
            channels=[c.strip() for c in channels.split(",") if c.strip()],
        )  # fmt: skip
        with console.db.write() as session:
            service.create_rule(session, data)
    except ValueError as exc:
        text = _errors(console, exc) if isinstance(exc, ValidationError) else str(exc)
        console.flash("error", text)
        return console.redirect("/console/loyalty")
    except DomainError as exc:
        console.flash("error", problem_text(console, exc))
        return console.redirect("/console/loyalty")
    console.flash("success", console._("Rule saved."))
    return console.redirect("/console/loyalty")


@router.post("/loyalty/rewards")
def create_reward(
    console: StaffPostConsole,
    name: Annotated[str, Form()] = "",
    kind: Annotated[str, Form()] = "product",
    cost_points: Annotated[str, Form()] = "",
    stock: Annotated[str, Form()] = "",
    amount: Annotated[str, Form()] = "",
    currency: Annotated[str, Form()] = "EUR",
    percent: Annotated[str, Form()] = "",
    supplier_ref: Annotated[str, Form()] = "",
    tiers_only: Annotated[str, Form()] = "",
) -> Response:
    console.require(Permission.LOYALTY_MANAGE)
    value: dict[str, Any] = {}
    try:
        if kind == "voucher" and amount.strip():
            value = {"amount": int(amount), "currency": currency.strip().upper()}
        elif kind == "voucher" and percent.strip():
            value = {"percent": float(percent)}
        data = RewardIn(
            name=name, kind=kind, cost_points=int(cost_points or 0), stock=_optional_int(stock),
            value=value, supplier_ref=supplier_ref.strip() or None,
            tiers=[t.strip() for t in tiers_only.split(",") if t.strip()],
        )  # fmt: skip
        with console.db.write() as session:
            rewards.create_reward(session, data.model_dump())
    except ValueError as exc:
        text = _errors(console, exc) if isinstance(exc, ValidationError) else str(exc)
        console.flash("error", text)
        return console.redirect("/console/loyalty")
    except DomainError as exc:
        console.flash("error", problem_text(console, exc))
        return console.redirect("/console/loyalty")
    console.flash("success", console._("Reward saved."))
    return console.redirect("/console/loyalty")
