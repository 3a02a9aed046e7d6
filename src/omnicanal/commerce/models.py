"""Catalog, locations and stock, promotions, orders, payments, fulfillments and returns.

Amounts are integer minor units with an ISO 4217 currency. Stock and usage counters change only by
conditional updates (``... WHERE on_hand - reserved >= :quantity``), which is what keeps them exact under
concurrent orders on every database.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Boolean, ForeignKey, Index, Integer, String, Text, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from omnicanal.db import Base, JSONType, UTCDateTime, utcnow, uuid7
from omnicanal.owned_rows import moved_rows_index


class Category(Base):
    __tablename__ = "commerce_categories"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid7)
    slug: Mapped[str] = mapped_column(String(100), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    names: Mapped[dict[str, str]] = mapped_column(JSONType, default=dict)  # per language
    parent_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, ForeignKey("commerce_categories.id"), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Product(Base):
    __tablename__ = "commerce_products"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid7)
    name: Mapped[str] = mapped_column(String(300))
    names: Mapped[dict[str, str]] = mapped_column(JSONType, default=dict)
    descriptions: Mapped[dict[str, str]] = mapped_column(JSONType, default=dict)
    category_id: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, ForeignKey("commerce_categories.id"), nullable=True, index=True
    )
    images: Mapped[list[str]] = mapped_column(JSONType, default=list)
    tax_class: Mapped[str] = mapped_column(String(32), default="standard")
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Variant(Base):
    __tablename__ = "commerce_variants"

    sku: Mapped[str] = mapped_column(String(64), primary_key=True)
    product_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("commerce_products.id"), index=True)
    position: Mapped[int] = mapped_column(Integer, default=0)
    attributes: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    images: Mapped[list[str]] = mapped_column(JSONType, default=list)


class Price(Base):
    """One price list per currency; ``channel`` is empty for it, or names the channel of an explicit override."""

    __tablename__ = "commerce_prices"

    sku: Mapped[str] = mapped_column(String(64), ForeignKey("commerce_variants.sku"), primary_key=True)
    currency: Mapped[str] = mapped_column(String(3), primary_key=True)
    channel: Mapped[str] = mapped_column(String(16), primary_key=True, default="")
    amount: Mapped[int] = mapped_column(BigInteger)


class Location(Base):
    """A store (sells, hands over pickups, takes returns) or a warehouse (ships)."""

    __tablename__ = "commerce_locations"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid7)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(16), default="store")  # store / warehouse
    address: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    opening_hours: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    pickup: Mapped[bool] = mapped_column(Boolean, default=True)
    ships: Mapped[bool] = mapped_column(Boolean, default=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Stock(Base):
    """``reserved`` counts units held for orders not yet handed over; available = on_hand - reserved."""

    __tablename__ = "commerce_stock"
    __table_args__ = (Index("ix_commerce_stock_sku", "sku"),)

    location_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("commerce_locations.id"), primary_key=True)
    sku: Mapped[str] = mapped_column(String(64), ForeignKey("commerce_variants.sku"), primary_key=True)
    on_hand: Mapped[int] = mapped_column(Integer, default=0)
    reserved: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Reservation(Base):
    """Units held for an order at one location. States: held -> consumed (handed over) | released."""

    __tablename__ = "commerce_reservations"
    __table_args__ = (Index("ix_commerce_reservations_due", "state", "expires_at"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid7)
    order_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("commerce_orders.id"), index=True)
    location_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("commerce_locations.id"))
    sku: Mapped[str] = mapped_column(String(64))
    quantity: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16), default="held")
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Promotion(Base):
    __tablename__ = "commerce_promotions"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid7)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(20))  # percentage / fixed / buy_x_get_y / bundle / free_shipping
    scope: Mapped[str] = mapped_column(String(16), default="cart")  # product / category / cart
    rules: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    starts_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    ends_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    priority: Mapped[int] = mapped_column(Integer, default=0)
    stackable: Mapped[bool] = mapped_column(Boolean, default=True)
    requires_coupon: Mapped[bool] = mapped_column(Boolean, default=False)
    usage_limit: Mapped[int | None] = mapped_column(Integer, nullable=True)
    usage_limit_per_customer: Mapped[int | None] = mapped_column(Integer, nullable=True)
    used_count: Mapped[int] = mapped_column(Integer, default=0)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Coupon(Base):
    __tablename__ = "commerce_coupons"

    code: Mapped[str] = mapped_column(String(64), primary_key=True)
    promotion_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("commerce_promotions.id"), index=True)
    usage_limit: Mapped[int | None] = mapped_column(Integer, nullable=True)
    used_count: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class PromotionCustomerUsage(Base):
    """A per-customer usage counter, raised only by a conditional update."""

    __tablename__ = "commerce_promotion_usage"

    promotion_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("commerce_promotions.id"), primary_key=True)
    customer_key: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    used_count: Mapped[int] = mapped_column(Integer, default=0)


class CatalogVersion(Base):
    """Raised on every promotion change, so each process knows when its cached promotions are stale."""

    __tablename__ = "commerce_versions"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    version: Mapped[int] = mapped_column(BigInteger, default=0)


class Cart(Base):
    """The last cart a customer priced on a channel, so a store clerk or an agent can pick it up."""

    __tablename__ = "commerce_carts"
    __table_args__ = (
        moved_rows_index("commerce_carts"),
        # finds a customer's open carts without reading the ordered ones each of their orders left behind
        Index("ix_commerce_carts_customer_status", "customer_id", "status"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid7)
    customer_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("customers.id"))
    source_customer_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("customers.id"))
    channel: Mapped[str] = mapped_column(String(16))
    request: Mapped[dict[str, Any]] = mapped_column(JSONType)
    total: Mapped[int] = mapped_column(BigInteger, default=0)
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[str] = mapped_column(String(16), default="open")  # open / ordered
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Order(Base):
    __tablename__ = "commerce_orders"
    __table_args__ = (
        Index("ix_commerce_orders_customer", "customer_id", "created_at"),
        moved_rows_index("commerce_orders"),
        Index("ix_commerce_orders_status", "status", "created_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid7)
    number: Mapped[str] = mapped_column(String(32), unique=True)
    customer_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("customers.id"))
    source_customer_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("customers.id"))
    channel: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(24), default="pending")
    payment_status: Mapped[str] = mapped_column(String(24), default="unpaid")
    currency: Mapped[str] = mapped_column(String(3))
    subtotal: Mapped[int] = mapped_column(BigInteger)
    discount: Mapped[int] = mapped_column(BigInteger)
    tax: Mapped[int] = mapped_column(BigInteger)
    shipping: Mapped[int] = mapped_column(BigInteger)
    total: Mapped[int] = mapped_column(BigInteger)
    paid_amount: Mapped[int] = mapped_column(BigInteger, default=0)
    refunded_amount: Mapped[int] = mapped_column(BigInteger, default=0)
    prices_include_tax: Mapped[bool] = mapped_column(Boolean, default=True)
    fulfillment_type: Mapped[str] = mapped_column(String(16))
    location_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, ForeignKey("commerce_locations.id"), nullable=True)
    address: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    coupon_codes: Mapped[list[str]] = mapped_column(JSONType, default=list)
    promotions: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)
    shipping_discount: Mapped[int] = mapped_column(BigInteger, default=0)
    pickup_code: Mapped[str | None] = mapped_column(String(16), nullable=True)
    pickup_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class OrderLine(Base):
    __tablename__ = "commerce_order_lines"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid7)
    order_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("commerce_orders.id"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    sku: Mapped[str] = mapped_column(String(64))
    product_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    name: Mapped[str] = mapped_column(String(300))
    quantity: Mapped[int] = mapped_column(Integer)
    unit_price: Mapped[int] = mapped_column(BigInteger)
    price_channel: Mapped[str] = mapped_column(String(16), default="")
    subtotal: Mapped[int] = mapped_column(BigInteger)
    discount: Mapped[int] = mapped_column(BigInteger)
    tax: Mapped[int] = mapped_column(BigInteger)
    tax_rate: Mapped[int] = mapped_column(Integer)  # basis points
    total: Mapped[int] = mapped_column(BigInteger)
    discounts: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)
    fulfilled_quantity: Mapped[int] = mapped_column(Integer, default=0)
    returned_quantity: Mapped[int] = mapped_column(Integer, default=0)


class Payment(Base):
    """A payment or a refund (``kind``). ``refund_of`` ties a refund to the payment it gives money back on."""

    __tablename__ = "commerce_payments"
    __table_args__ = (moved_rows_index("commerce_payments"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid7)
    order_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("commerce_orders.id"), index=True)
    customer_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("customers.id"), index=True)
    source_customer_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("customers.id"))
    kind: Mapped[str] = mapped_column(String(8), default="payment")
    method: Mapped[str] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(12), default="captured")  # pending / captured / cancelled
    amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    reference: Mapped[str] = mapped_column(String(200), default="")
    refund_of: Mapped[uuid.UUID | None] = mapped_column(Uuid, nullable=True)
    link_token: Mapped[str | None] = mapped_column(String(64), nullable=True, unique=True)
    created_by: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Fulfillment(Base):
    __tablename__ = "commerce_fulfillments"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid7)
    order_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("commerce_orders.id"), index=True)
    type: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(24))  # shipped / ready_for_pickup / collected / expired
    location_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, nullable=True)
    carrier: Mapped[str] = mapped_column(String(100), default="")
    tracking_number: Mapped[str] = mapped_column(String(100), default="")
    lines: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)
    created_by: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # when the goods reached the customer, where that is not when the fulfillment began: a pickup's handover
    collected_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class Return(Base):
    __tablename__ = "commerce_returns"
    __table_args__ = (Index("ix_commerce_returns_source_customer", "source_customer_id"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid7)
    order_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("commerce_orders.id"), index=True)
    customer_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("customers.id"), index=True)
    source_customer_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("customers.id"))
    channel: Mapped[str] = mapped_column(String(16))
    location_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, ForeignKey("commerce_locations.id"), nullable=True)
    lines: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)
    refund_method: Mapped[str] = mapped_column(String(16))  # original / store_credit
    refund_amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    created_by: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class StoreCredit(Base):
    """Ledger of store credit: a balance is the sum of a customer's entries in one currency."""

    __tablename__ = "commerce_store_credit"
    __table_args__ = (Index("ix_commerce_store_credit_source_customer", "source_customer_id"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid7)
    customer_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("customers.id"), index=True)
    source_customer_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("customers.id"))
    amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    reason: Mapped[str] = mapped_column(Text, default="")
    return_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


__all__ = [
    "Cart",
    "CatalogVersion",
    "Category",
    "Coupon",
    "Fulfillment",
    "Location",
    "Order",
    "OrderLine",
    "Payment",
    "Price",
    "Product",
    "Promotion",
    "PromotionCustomerUsage",
    "Reservation",
    "Return",
    "Stock",
    "StoreCredit",
    "Variant",
]
