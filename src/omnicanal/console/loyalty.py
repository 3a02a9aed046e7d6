"""Loyalty in the console: the wallet on the customer 360, manual adjustment, redemption at the counter,
and the programme page (rules, rewards, tiers)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Form, Query
from pydantic import ValidationError
from starlette.responses import Response

from omnicanal.access.roles import Permission
from omnicanal.console.context import StaffConsole, StaffPostConsole
from omnicanal.console.routes import parse_id, problem_text
from omnicanal.customers.service import get_customer
from omnicanal.errors import DomainError
from omnicanal.loyalty import balances, rewards, service, tiers
from omnicanal.loyalty.schemas import RewardIn, RuleIn, TierIn

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
        entries, more = balances.ledger_page(session, customer.id, cursor=None, limit=LEDGER_SHOWN)
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


def _names(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


def _errors(console: StaffConsole | StaffPostConsole, exc: ValidationError) -> str:
    fields = ", ".join(".".join(str(p) for p in e["loc"]) for e in exc.errors())
    return console._("Check these fields: %(fields)s", fields=fields)


def _change(console: StaffPostConsole, change: Callable[[], object], done: str) -> Response:
    """Run one change of the programme (build its input, write it); flash ``done`` or why it was refused,
    and go back to the programme page."""
    console.require(Permission.LOYALTY_MANAGE)
    try:
        change()
    except ValidationError as exc:
        console.flash("error", _errors(console, exc))
    except ValueError as exc:  # a number field that is not a number
        console.flash("error", str(exc))
    except DomainError as exc:
        console.flash("error", problem_text(console, exc))
    else:
        console.flash("success", done)
    return console.redirect("/console/loyalty")


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
    def change() -> None:
        data = RuleIn(
            name=name, kind=kind, event_type=event_type or None,
            points=int(points or 0), per_amount=_optional_int(per_amount),
            caps={"day": int(day_cap)} if day_cap.strip() else {},
            once_per=_names(once_per) if once_per.strip() else None, channels=_names(channels),
        )  # fmt: skip
        with console.db.write() as session:
            service.create_rule(session, data)

    return _change(console, change, console._("Rule saved."))


@router.post("/loyalty/rules/{rule_id}/delete")
def delete_rule(console: StaffPostConsole, rule_id: str) -> Response:
    def change() -> None:
        rid = parse_id(console, rule_id, console._("There is no rule with this id."))
        with console.db.write() as session:
            service.delete_rule(session, rid)

    return _change(console, change, console._("Rule deleted."))


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
    def change() -> None:
        value: dict[str, Any] = {}
        if kind == "voucher" and amount.strip():
            value = {"amount": int(amount), "currency": currency.strip().upper()}
        elif kind == "voucher" and percent.strip():
            value = {"percent": float(percent)}
        data = RewardIn(
            name=name, kind=kind, cost_points=int(cost_points or 0), stock=_optional_int(stock),
            value=value, supplier_ref=supplier_ref.strip() or None, tiers=_names(tiers_only),
        )  # fmt: skip
        with console.db.write() as session:
            rewards.create_reward(session, data.model_dump())

    return _change(console, change, console._("Reward saved."))


@router.post("/loyalty/rewards/{reward_id}/delete")
def delete_reward(console: StaffPostConsole, reward_id: str) -> Response:
    def change() -> None:
        rid = parse_id(console, reward_id, console._("There is no reward with this id."))
        with console.db.write() as session:
            rewards.delete_reward(session, rid)

    return _change(console, change, console._("Reward deleted."))


def _tier_in(name: str, threshold: str, basis: str, window_days: str, retention: str, multiplier: str) -> TierIn:
    return TierIn(
        name=name.strip(), threshold=int(threshold or 0), basis=basis, window_days=int(window_days or 365),
        retention_threshold=_optional_int(retention), multiplier=float(multiplier or 1),
    )  # fmt: skip


@router.post("/loyalty/tiers")
def create_tier(
    console: StaffPostConsole,
    name: Annotated[str, Form()] = "",
    threshold: Annotated[str, Form()] = "",
    basis: Annotated[str, Form()] = "points",
    window_days: Annotated[str, Form()] = "365",
    retention_threshold: Annotated[str, Form()] = "",
    multiplier: Annotated[str, Form()] = "1",
) -> Response:
    def change() -> None:
        data = _tier_in(name, threshold, basis, window_days, retention_threshold, multiplier)
        with console.db.write() as session:
            tiers.create_tier(session, data.model_dump())

    return _change(console, change, console._("Tier saved."))


@router.post("/loyalty/tiers/{tier_id}")
def update_tier(
    console: StaffPostConsole,
    tier_id: str,
    name: Annotated[str, Form()] = "",
    threshold: Annotated[str, Form()] = "",
    basis: Annotated[str, Form()] = "points",
    window_days: Annotated[str, Form()] = "365",
    retention_threshold: Annotated[str, Form()] = "",
    multiplier: Annotated[str, Form()] = "1",
) -> Response:
    def change() -> None:
        tid = parse_id(console, tier_id, console._("There is no tier with this id."))
        data = _tier_in(name, threshold, basis, window_days, retention_threshold, multiplier)
        with console.db.write() as session:
            tiers.update_tier(session, tid, data.model_dump())

    return _change(console, change, console._("Tier saved."))


@router.post("/loyalty/tiers/{tier_id}/delete")
def delete_tier(console: StaffPostConsole, tier_id: str) -> Response:
    def change() -> None:
        tid = parse_id(console, tier_id, console._("There is no tier with this id."))
        with console.db.write() as session:
            tiers.delete_tier(session, tid)

    return _change(console, change, console._("Tier deleted."))
