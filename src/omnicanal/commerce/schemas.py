"""Input and output of the commerce API."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

CURRENCY = r"^[A-Z]{3}$"
ORDER_CHANNELS = ("web", "app", "store", "call_center", "chat")
OrderChannel = Literal["web", "app", "store", "call_center", "chat"]
FulfillmentType = Literal["delivery", "pickup", "ship_from_store"]
PaymentMethod = Literal["card", "cash", "bank_transfer", "payment_link", "wallet", "store_credit"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Money(BaseModel):
    amount: int
    currency: str


class PriceIn(Strict):
    amount: int = Field(ge=0, description="minor units")
    currency: str = Field(pattern=CURRENCY)
    channel: str = Field(default="", max_length=16, description="empty: the price list; else an explicit override")


class VariantIn(Strict):
    sku: str = Field(min_length=1, max_length=64)
    price: PriceIn | None = None
    prices: list[PriceIn] = Field(default_factory=list)
    attributes: dict[str, Any] = Field(default_factory=dict)
    images: list[str] = Field(default_factory=list)


class ProductIn(Strict):
    name: str = Field(min_length=1, max_length=300)
    names: dict[str, str] = Field(default_factory=dict, description="name per language")
    descriptions: dict[str, str] = Field(default_factory=dict, description="description per language")
    category: str | None = Field(default=None, description="category slug")
    images: list[str] = Field(default_factory=list)
    tax_class: str = Field(default="standard", max_length=32)
    variants: list[VariantIn] = Field(min_length=1, max_length=500)


class PriceOut(BaseModel):
    amount: int
    currency: str
    channel: str | None = None  # set when this is an explicit channel price


class VariantOut(BaseModel):
    sku: str
    price: PriceOut | None
    prices: list[PriceOut]
    attributes: dict[str, Any]
    images: list[str]


class ProductOut(BaseModel):
    id: uuid.UUID
    name: str
    names: dict[str, str]
    descriptions: dict[str, str]
    category: str | None
    images: list[str]
    tax_class: str
    variants: list[VariantOut]


class ProductPage(BaseModel):
    items: list[ProductOut]
    next_cursor: str | None


class CategoryIn(Strict):
    slug: str = Field(min_length=1, max_length=100, pattern=r"^[a-z0-9][a-z0-9-]*$")
    name: str = Field(min_length=1, max_length=200)
    names: dict[str, str] = Field(default_factory=dict)
    parent: str | None = None


class CategoryOut(BaseModel):
    id: uuid.UUID
    slug: str
    name: str
    names: dict[str, str]
    parent: str | None


class StoreIn(Strict):
    code: str = Field(min_length=1, max_length=32)
    name: str = Field(min_length=1, max_length=200)
    kind: Literal["store", "warehouse"] = "store"
    address: dict[str, Any] = Field(default_factory=dict)
    opening_hours: dict[str, Any] = Field(default_factory=dict, examples=[{"mon": [["10:00", "21:00"]], "sun": []}])
    timezone: str = "Europe/Madrid"
    pickup: bool | None = None
    ships: bool = True


class StoreOut(BaseModel):
    id: uuid.UUID
    code: str
    name: str
    kind: str
    address: dict[str, Any]
    opening_hours: dict[str, Any]
    timezone: str
    pickup: bool
    ships: bool
    available: int | None = None  # units of the asked SKU available here


class StockOut(BaseModel):
    sku: str
    on_hand: int
    reserved: int
    available: int


class StockIn(Strict):
    quantity: int = Field(ge=0)


class LineIn(Strict):
    sku: str = Field(max_length=64)
    quantity: int


class IdentityRef(Strict):
    type: str = Field(max_length=32)
    value: str = Field(max_length=320)


class FulfillmentIn(Strict):
    type: FulfillmentType
    store_id: uuid.UUID | None = None
    address: dict[str, Any] | None = None
    allow_transfer: bool = Field(default=False, description="pickup: reserve at another location and transfer")


class CartIn(Strict):
    customer_id: uuid.UUID | None = None
    identities: list[IdentityRef] = Field(default_factory=list, max_length=20)
    channel: OrderChannel
    currency: str | None = Field(default=None, pattern=CURRENCY)
    lines: list[LineIn] = Field(max_length=200)
    coupon_codes: list[str] = Field(default_factory=list, max_length=10)
    fulfillment: FulfillmentIn
    expected_total: int | None = Field(
        default=None, description="orders: the quoted total; refused (409) if checkout would charge anything else"
    )


class LineOut(BaseModel):
    sku: str
    name: str
    quantity: int
    unit_price: int
    price_channel: str | None
    subtotal: int
    discount: int
    discounts: list[dict[str, Any]]
    tax: int
    tax_rate: int
    total: int


class QuoteOut(BaseModel):
    customer_id: uuid.UUID | None
    channel: str
    currency: str
    lines: list[LineOut]
    subtotal: int
    discount: int
    tax: int
    shipping: int
    shipping_discount: int
    total: int
    prices_include_tax: bool
    promotions: list[dict[str, Any]]


class PaymentOut(BaseModel):
    id: uuid.UUID
    kind: str
    method: str
    status: str
    amount: int
    currency: str
    reference: str
    refund_of: uuid.UUID | None
    link_url: str | None = None
    created_at: datetime


class FulfillmentOut(BaseModel):
    id: uuid.UUID
    type: str
    status: str
    location_id: uuid.UUID | None
    carrier: str
    tracking_number: str
    lines: list[dict[str, Any]]
    created_at: datetime


class OrderOut(QuoteOut):
    id: uuid.UUID
    number: str
    status: str
    payment_status: str
    paid_amount: int
    refunded_amount: int
    balance_due: int
    fulfillment: dict[str, Any]
    coupon_codes: list[str]
    payments: list[PaymentOut]
    fulfillments: list[FulfillmentOut]
    pickup: dict[str, Any] | None
    created_at: datetime
    updated_at: datetime


class OrderPage(BaseModel):
    items: list[OrderOut]
    next_cursor: str | None


class PaymentIn(Strict):
    kind: Literal["payment", "refund"] = "payment"
    method: PaymentMethod | None = None
    amount: int = Field(gt=0)
    reference: str = Field(default="", max_length=200)
    refund_of: uuid.UUID | None = None


class FulfillmentLineIn(Strict):
    sku: str
    quantity: int


class ShipmentIn(Strict):
    lines: list[FulfillmentLineIn] | None = None
    carrier: str = Field(default="", max_length=100)
    tracking_number: str = Field(default="", max_length=100)


class PickupIn(Strict):
    code: str = Field(min_length=1, max_length=64)


class ReturnLineIn(Strict):
    sku: str
    quantity: int
    reason: str = Field(default="", max_length=500)
    condition: Literal["new", "opened", "damaged"] = "new"


class ReturnIn(Strict):
    order_id: uuid.UUID
    channel: OrderChannel | Literal["mail"]
    store_id: uuid.UUID | None = Field(default=None, description="the location receiving the goods")
    lines: list[ReturnLineIn] = Field(min_length=1, max_length=200)
    refund_method: Literal["original", "store_credit"] = "original"


class ReturnOut(BaseModel):
    id: uuid.UUID
    order_id: uuid.UUID
    customer_id: uuid.UUID
    channel: str
    store_id: uuid.UUID | None
    lines: list[dict[str, Any]]
    refund_method: str
    refund_amount: int
    currency: str
    order_status: str
    created_at: datetime


class PromotionIn(Strict):
    name: str = Field(min_length=1, max_length=200)
    kind: Literal["percentage", "fixed", "buy_x_get_y", "bundle", "free_shipping"]
    scope: Literal["product", "category", "cart"] = "cart"
    skus: list[str] = Field(default_factory=list)
    product_ids: list[uuid.UUID] = Field(default_factory=list)
    categories: list[str] = Field(default_factory=list, description="category slugs (their subcategories too)")
    percent: float | None = Field(default=None, gt=0, le=100)
    amount: int | None = Field(default=None, gt=0, description="minor units")
    currency: str | None = Field(default=None, pattern=CURRENCY)
    buy: int | None = Field(default=None, gt=0)
    get: int | None = Field(default=None, gt=0)
    get_percent: float = Field(default=100, gt=0, le=100)
    bundle: list[LineIn] = Field(default_factory=list)
    bundle_price: int | None = Field(default=None, ge=0)
    min_subtotal: int = Field(default=0, ge=0)
    min_quantity: int = Field(default=0, ge=0)
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    segments: list[str] = Field(default_factory=list, description="customer segments or tiers; empty: everyone")
    channels: list[OrderChannel] = Field(default_factory=list, description="empty: every channel")
    priority: int = 0
    stackable: bool = True
    requires_coupon: bool = False
    usage_limit: int | None = Field(default=None, gt=0)
    usage_limit_per_customer: int | None = Field(default=None, gt=0)
    coupon_codes: list[str] = Field(default_factory=list, max_length=1000)
    active: bool = True


class PromotionOut(BaseModel):
    id: uuid.UUID
    name: str
    kind: str
    scope: str
    rules: dict[str, Any]
    starts_at: datetime | None
    ends_at: datetime | None
    priority: int
    stackable: bool
    requires_coupon: bool
    usage_limit: int | None
    usage_limit_per_customer: int | None
    used_count: int
    active: bool


class CouponBatchIn(Strict):
    count: int = Field(gt=0, le=100_000)
    prefix: str = Field(default="", max_length=16, pattern=r"^[A-Z0-9-]*$")
    length: int = Field(default=8, ge=6, le=32)
    usage_limit: int | None = Field(default=1, gt=0)


class CouponBatchOut(BaseModel):
    promotion_id: uuid.UUID
    codes: list[str]
