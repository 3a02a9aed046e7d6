"""The order path's three requests, quote, create and pay, served by the fast lane (``web.served_by``).

They do what FastAPI did for the documented routes in ``commerce.api``, in the same order (the caller,
then the body's 422s), and hand the work to the application's threads instead of anyio's pool, whose
hand-off cost the event loop six times as much (bench/commerce.py, K1 and K2):

- a quote is read by the batch reader, one read transaction for the quotes waiting together, and a
  changed cart is then saved by the ingest writer;
- on SQLite, creates and payments share the ingest writer's transactions (with each other, with quotes'
  carts and with inbound messages), each request in a savepoint of its own. On the writer a key raced by
  another process is a unique-key error, which it answers by running the batch again. On PostgreSQL each
  stays a transaction of its own: a batch would lock the stock and orders of many requests in the order
  they came, against other processes' batches.

Without the application's lifespan (no threads) every request runs in a transaction of its own.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from fastapi import Request
from fastapi.responses import Response
from pydantic import TypeAdapter
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from omnicanal import dispatch
from omnicanal.access.roles import Permission
from omnicanal.access.service import Principal
from omnicanal.commerce import order_answers, orders, payments
from omnicanal.commerce.checkout import quote_out
from omnicanal.commerce.schemas import CartIn, PaymentIn
from omnicanal.db import Database
from omnicanal.driver_sql import sqlite_savepoint
from omnicanal.errors import DomainError
from omnicanal.idempotency import Fingerprint, fingerprint_of, once_more_if_the_key_raced, run_idempotent
from omnicanal.settings import Settings
from omnicanal.timeline.writer import BatchReader, IngestWriter
from omnicanal.web import authorize, validated_body, validated_id_and_body

_CART_IN = TypeAdapter(CartIn)
_PAYMENT_IN = TypeAdapter(PaymentIn)

_Quote = tuple[bytes, orders.CartSave | None]


# -- quote ------------------------------------------------------------------------------------------------
def _quote_json(session: Session, settings: Settings, data: CartIn) -> _Quote:
    """The quote's JSON, and the cart to remember when it differs from the customer's open cart."""
    save = None
    cart = orders.quote(session, data, settings=settings)
    body = quote_out(cart).model_dump(mode="json")
    if cart.customer_id is not None and data.channel in ("web", "app"):
        save = orders.cart_save(data, customer_id=cart.customer_id, total=cart.quote.total, currency=cart.currency)
        if orders.cart_unchanged(session, save):
            save = None  # the same cart priced again: a read, no write transaction
    return orjson.dumps(body), save


def _quotes(session: Session, asks: Sequence[tuple[Settings, CartIn]]) -> list[_Quote | DomainError]:
    """The quotes of a batch of the batch reader; a refused cart is its answer, not the batch's failure."""
    answers: list[_Quote | DomainError] = []
    for settings, data in asks:
        try:
            answers.append(_quote_json(session, settings, data))
        except DomainError as refused:
            answers.append(refused)
    return answers


def _quote_alone(db: Database, settings: Settings, data: CartIn) -> _Quote:
    with db.read() as session:
        return _quote_json(session, settings, data)


def _save_carts_now(db: Database, saves: list[orders.CartSave]) -> None:
    with db.write_in_turn() as session:
        orders.save_carts(session, saves)


async def serve_quote(request: Request) -> Response:
    await authorize(request, Permission.ORDERS_READ)
    data = await validated_body(request, _CART_IN)
    state = request.app.state
    reader: BatchReader = state.batch_reader
    writer: IngestWriter = state.ingest_writer
    if not (reader.running and writer.running):
        content, save = await run_in_threadpool(_quote_alone, state.database, state.settings, data)
        if save is not None:
            await run_in_threadpool(_save_carts_now, state.database, [save])
        return Response(content, media_type="application/json")
    content, save = await reader.run_one(_quotes, (state.settings, data))
    if save is not None:
        await writer.run(orders.save_carts, [save])
    return Response(content, media_type="application/json")


# -- create and pay ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Ask:
    """A create or payment request handed to the ingest writer."""

    request: Request
    principal: Principal
    settings: Settings
    data: Any
    order_id: uuid.UUID | None = None
    # computed on the event loop, outside the writers' turn; None without an Idempotency-Key (then unused)
    fingerprint: Fingerprint | None = None


_Write = Callable[[Session, _Ask], Response]


def _fingerprint(request: Request, data: CartIn | PaymentIn) -> Fingerprint | None:
    if "idempotency-key" not in request.headers:
        return None
    return fingerprint_of(request, data.model_dump(mode="json"))


def _each_in_savepoint(session: Session, asks: Sequence[_Ask], write: _Write) -> list[Response | DomainError]:
    """Many concurrent requests in one of the ingest writer's transactions, each in a savepoint of its own: a
    request refused with a domain error takes back only its own writes and held events, and the refusal is
    its answer. Loyalty hears the batch's ``order.paid`` events together at the end (``dispatch.batched``)."""
    answers: list[Response | DomainError] = []
    with dispatch.batched(session):
        for ask in asks:
            try:
                with sqlite_savepoint(session), dispatch.isolated(session):
                    answers.append(write(session, ask))
            except DomainError as refused:
                answers.append(refused)
    return answers


def _in_turn(db: Database, request: Request, write: _Write, ask: _Ask) -> Response:
    """``write`` in a transaction of its own (PostgreSQL; an application used without its lifespan)."""

    def transaction() -> Response:
        with db.write_in_turn() as session:
            return write(session, ask)

    return once_more_if_the_key_raced(request, transaction)


async def _write(
    request: Request, ask: _Ask, *, each: _Write, many: Callable[[Session, Sequence[_Ask]], list[Any]]
) -> Response:
    state = request.app.state
    writer: IngestWriter = state.ingest_writer
    if not (writer.running and state.database.is_sqlite):
        return await run_in_threadpool(_in_turn, state.database, request, each, ask)
    response: Response = await writer.run_one(many, ask)
    return response


def _place(session: Session, ask: _Ask) -> Response:
    def produce() -> tuple[int, Any]:
        order, lines = orders.place_order(session, ask.data, settings=ask.settings, actor=ask.principal.label)
        return 201, order_answers.placed_order_json(order, lines)

    return run_idempotent(
        ask.request, session, ask.principal, ask.fingerprint, produce, customer_of=lambda c: c["customer_id"]
    )


def _place_orders(session: Session, asks: Sequence[_Ask]) -> list[Response | DomainError]:
    return _each_in_savepoint(session, asks, _place)


async def serve_create_order(request: Request) -> Response:
    principal = await authorize(request, Permission.ORDERS_WRITE)
    data = await validated_body(request, _CART_IN)
    ask = _Ask(request, principal, request.app.state.settings, data, fingerprint=_fingerprint(request, data))
    return await _write(request, ask, each=_place, many=_place_orders)


def _pay(session: Session, ask: _Ask) -> Response:
    order_id = ask.order_id
    assert order_id is not None

    def produce() -> tuple[int, Any]:
        payment, order = payments.record_payment_on(
            session, order_id=order_id, data=ask.data, settings=ask.settings, actor=ask.principal.label
        )
        out = order_answers.payment_json(payment, ask.settings)
        return 201, out | {
            "order_status": order.status,
            "payment_status": order.payment_status,
            "balance_due": order.total - order.paid_amount,
        }

    return run_idempotent(ask.request, session, ask.principal, ask.fingerprint, produce)


def _take_payments(session: Session, asks: Sequence[_Ask]) -> list[Response | DomainError]:
    """:func:`_place_orders` for payments; their orders are read together first (and held: the session keeps
    them only weakly)."""
    held = orders.load_orders(session, [ask.order_id for ask in asks if ask.order_id is not None])
    answers = _each_in_savepoint(session, asks, _pay)
    del held
    return answers


async def serve_payment(request: Request) -> Response:
    principal = await authorize(request, Permission.ORDERS_WRITE)
    order_id, data = await validated_id_and_body(request, "order_id", _PAYMENT_IN)
    ask = _Ask(request, principal, request.app.state.settings, data, order_id, _fingerprint(request, data))
    return await _write(request, ask, each=_pay, many=_take_payments)
