"""How loyalty listens to other domains (wired once from omnicanal.handlers.register).

Commerce publishes ``order.paid`` and ``order.returned`` (payloads in docs/architecture.md, Loyalty); the
consent domain publishes ``consent.changed``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from omnicanal import dispatch
from omnicanal.db import uuid7
from omnicanal.loyalty.earning import LoyaltyEvent, earn_events, earn_paid_orders
from omnicanal.loyalty.models import LoyaltyEntry, LoyaltyRedemption, LoyaltyWallet
from omnicanal.loyalty.returns import reverse_return


def order_paid(session: Session, payload: dict[str, Any]) -> None:
    earn_paid_orders(session, [payload])


def orders_paid(session: Session, payloads: Sequence[dict[str, Any]]) -> None:
    """Many orders paid in one transaction, as if one after another: a customer's second order of the batch
    earns in a later round, after the first may have moved them up a tier or made it their first order."""
    for round_of_payloads in _one_order_per_customer(payloads):
        earn_paid_orders(session, round_of_payloads)


def _one_order_per_customer(payloads: Sequence[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    rounds: list[list[dict[str, Any]]] = []
    seen: dict[Any, int] = {}
    for payload in payloads:
        index = seen.get(payload["customer_id"], 0)
        seen[payload["customer_id"]] = index + 1
        if index == len(rounds):
            rounds.append([])
        rounds[index].append(payload)
    return rounds


def order_returned(session: Session, payload: dict[str, Any]) -> None:
    reverse_return(session, payload)


def consent_changed(session: Session, payload: dict[str, Any]) -> None:
    if payload.get("status") != "granted":
        return
    # The event id is new each time; a rule with once_per ["channel"] is what pays a channel once ever.
    earn_events(
        session,
        [
            LoyaltyEvent(
                f"consent:{uuid7().hex}",
                payload["customer_id"],
                "consent.granted",
                {"channel": payload["channel"], "purpose": payload["purpose"]},
                "system",
            )
        ],
    )


def export_loyalty(session: Session, tree: set[Any]) -> Any:
    def rows(model: Any) -> list[dict[str, Any]]:
        table = model.__table__
        return [dict(r._mapping) for r in session.execute(select(table).where(table.c.source_customer_id.in_(tree)))]

    return {"wallets": rows(LoyaltyWallet), "ledger": rows(LoyaltyEntry), "redemptions": rows(LoyaltyRedemption)}


def erase_loyalty(session: Session, tree: set[Any]) -> None:
    from sqlalchemy import update

    # The ledger stays (it is the books); what staff typed about the customer goes.
    session.execute(update(LoyaltyEntry).where(LoyaltyEntry.source_customer_id.in_(tree)).values(note=""))
    session.execute(update(LoyaltyWallet).where(LoyaltyWallet.source_customer_id.in_(tree)).values(referral_code=None))


def register() -> None:
    from omnicanal.privacy import service as privacy

    dispatch.subscribe("order.paid", order_paid, many=orders_paid)
    dispatch.subscribe("order.returned", order_returned)
    dispatch.subscribe("consent.changed", consent_changed)
    privacy.register("loyalty", exporter=export_loyalty, eraser=erase_loyalty)
