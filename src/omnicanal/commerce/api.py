"""The commerce HTTP API: catalog, stores and stock, promotions, quotes, orders, payments, fulfillment, returns."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from omnicanal.access.roles import Permission
from omnicanal.access.service import Principal
from omnicanal.commerce import catalog, fulfillment, order_answers, orders, payments, promotions, returns, stores
from omnicanal.commerce.models import Promotion
from omnicanal.commerce.order_path import serve_create_order, serve_payment, serve_quote
from omnicanal.commerce.schemas import (
    CartIn,
    CategoryIn,
    CategoryOut,
    CouponBatchIn,
    CouponBatchOut,
    FulfillmentOut,
    OrderOut,
    OrderPage,
    PaymentIn,
    PaymentOut,
    PickupIn,
    ProductIn,
    ProductOut,
    ProductPage,
    PromotionIn,
    PromotionOut,
    QuoteOut,
    ReturnIn,
    ReturnOut,
    ShipmentIn,
    StockIn,
    StockOut,
    StoreIn,
    StoreOut,
)
from omnicanal.db import Database
from omnicanal.errors import NotFound
from omnicanal.idempotency import run_idempotent
from omnicanal.web import (
    AppSettings,
    ReadSession,
    WriteSession,
    database,
    require,
    served_by,
)

router = APIRouter(prefix="/api/v1", tags=["commerce"])

CatalogReader = Annotated[Principal, Depends(require(Permission.CATALOG_READ))]
CatalogManager = Annotated[Principal, Depends(require(Permission.CATALOG_MANAGE))]
PromotionManager = Annotated[Principal, Depends(require(Permission.PROMOTIONS_MANAGE))]
StockWriter = Annotated[Principal, Depends(require(Permission.STOCK_WRITE))]
OrderReader = Annotated[Principal, Depends(require(Permission.ORDERS_READ))]
OrderWriter = Annotated[Principal, Depends(require(Permission.ORDERS_WRITE))]
DB = Annotated[Database, Depends(database)]


# -- catalog -------------------------------------------------------------------------------------------
@router.get("/products", response_model=ProductPage)
def list_products(
    session: ReadSession,
    settings: AppSettings,
    _: CatalogReader,
    q: str | None = None,
    category: str | None = None,
    sku: str | None = None,
    currency: str | None = None,
    channel: str | None = None,
    limit: int = 50,
    cursor: str | None = None,
) -> ProductPage:
    """Products with the price a customer sees: the channel's explicit price (marked with ``channel``) or the list."""
    rows, next_cursor = catalog.list_products(session, q=q, category=category, sku=sku, limit=limit, cursor=cursor)
    items = catalog.products_out(session, rows, currency=currency or settings.commerce_currency, channel=channel)
    return ProductPage(items=items, next_cursor=next_cursor)


@router.post("/products", response_model=ProductOut, status_code=201)
def create_product(
    data: ProductIn, request: Request, session: WriteSession, settings: AppSettings, principal: CatalogManager
) -> Any:
    def produce() -> tuple[int, Any]:
        product = catalog.save_product(session, data)
        out = catalog.products_out(session, [product], currency=_currency_of(data, settings))[0]
        return 201, out.model_dump(mode="json")

    return run_idempotent(request, session, principal, data.model_dump(mode="json"), produce)


def _currency_of(data: ProductIn, settings: Any) -> str:
    for variant in data.variants:
        if variant.price is not None:
            return variant.price.currency
    return str(settings.commerce_currency)


@router.get("/products/{product_id}", response_model=ProductOut)
def get_product(
    product_id: uuid.UUID,
    session: ReadSession,
    settings: AppSettings,
    _: CatalogReader,
    currency: str | None = None,
    channel: str | None = None,
) -> ProductOut:
    product = catalog.get_product(session, product_id)
    return catalog.products_out(session, [product], currency=currency or settings.commerce_currency, channel=channel)[0]


@router.put("/products/{product_id}", response_model=ProductOut)
def update_product(
    product_id: uuid.UUID, data: ProductIn, session: WriteSession, settings: AppSettings, _: CatalogManager
) -> ProductOut:
    product = catalog.save_product(session, data, product_id=product_id)
    return catalog.products_out(session, [product], currency=_currency_of(data, settings))[0]


@router.get("/categories", response_model=list[CategoryOut])
def list_categories(session: ReadSession, _: CatalogReader) -> list[CategoryOut]:
    return catalog.list_categories(session)


@router.post("/categories", response_model=CategoryOut, status_code=201)
def create_category(data: CategoryIn, session: WriteSession, _: CatalogManager) -> CategoryOut:
    category = catalog.create_category(session, data)
    return CategoryOut(id=category.id, slug=category.slug, name=category.name, names=category.names, parent=data.parent)


# -- stores and stock ------------------------------------------------------------------------------------
@router.get("/stores", response_model=list[StoreOut])
def list_stores(session: ReadSession, _: CatalogReader, sku: str | None = None, kind: str | None = None) -> Any:
    """Every store and warehouse; with ``sku``, the units available at each ("available at store X")."""
    return stores.list_stores(session, sku=sku, kind=kind)


@router.post("/stores", response_model=StoreOut, status_code=201)
def create_store(data: StoreIn, session: WriteSession, _: CatalogManager) -> StoreOut:
    return stores.store_out(stores.create_store(session, data))


@router.get("/stores/{store_id}", response_model=StoreOut)
def get_store(store_id: uuid.UUID, session: ReadSession, _: CatalogReader) -> StoreOut:
    return stores.store_out(stores.get_store(session, store_id))


@router.get("/stores/{store_id}/stock", response_model=StockOut)
def get_stock(store_id: uuid.UUID, sku: str, session: ReadSession, _: CatalogReader) -> StockOut:
    return stores.stock_level(session, store_id=store_id, sku=sku)


@router.put("/stores/{store_id}/stock/{sku}", response_model=StockOut)
def put_stock(store_id: uuid.UUID, sku: str, data: StockIn, session: WriteSession, _: StockWriter) -> StockOut:
    return stores.set_stock(session, store_id=store_id, sku=sku, quantity=data.quantity)


# -- promotions --------------------------------------------------------------------------------------------
@router.get("/promotions", response_model=list[PromotionOut])
def list_promotions(session: ReadSession, _: CatalogReader, active: bool | None = None) -> list[PromotionOut]:
    return [promotions.promotion_out(p) for p in promotions.list_promotions(session, active=active)]


@router.post("/promotions", response_model=PromotionOut, status_code=201)
def create_promotion(data: PromotionIn, request: Request, session: WriteSession, principal: PromotionManager) -> Any:
    def produce() -> tuple[int, Any]:
        return 201, promotions.promotion_out(promotions.save_promotion(session, data)).model_dump(mode="json")

    return run_idempotent(request, session, principal, data.model_dump(mode="json"), produce)


@router.get("/promotions/{promotion_id}", response_model=PromotionOut)
def get_promotion(promotion_id: uuid.UUID, session: ReadSession, _: CatalogReader) -> PromotionOut:
    promotion = session.get(Promotion, promotion_id)
    if promotion is None:
        raise NotFound(f"promotion {promotion_id} not found")
    return promotions.promotion_out(promotion)


@router.put("/promotions/{promotion_id}", response_model=PromotionOut)
def update_promotion(
    promotion_id: uuid.UUID, data: PromotionIn, session: WriteSession, _: PromotionManager
) -> PromotionOut:
    return promotions.promotion_out(promotions.save_promotion(session, data, promotion_id=promotion_id))


@router.post("/promotions/{promotion_id}/coupons", response_model=CouponBatchOut, status_code=201)
def generate_coupons(
    promotion_id: uuid.UUID, data: CouponBatchIn, session: WriteSession, _: PromotionManager
) -> CouponBatchOut:
    """Bulk-generate unique codes (single-use unless ``usage_limit`` says otherwise)."""
    codes = promotions.generate_coupons(session, promotion_id=promotion_id, data=data)
    return CouponBatchOut(promotion_id=promotion_id, codes=codes)


# -- quote and orders -------------------------------------------------------------------------------------
def quote_cart(data: CartIn, _: OrderReader) -> QuoteOut:
    """Prices a cart exactly as ``POST /orders`` will charge it (the same function prices both)."""
    raise NotImplementedError  # the documented signature (OpenAPI); served by order_path.serve_quote


router.add_api_route(
    "/carts/quote",
    quote_cart,
    methods=["POST"],
    response_model=QuoteOut,
    route_class_override=served_by(serve_quote),
)


def create_order(data: CartIn, _: OrderWriter) -> OrderOut:
    """Place an order from any channel. Retrying with the same ``Idempotency-Key`` places it once."""
    raise NotImplementedError  # the documented signature (OpenAPI); served by order_path.serve_create_order


router.add_api_route(
    "/orders",
    create_order,
    methods=["POST"],
    status_code=201,
    response_model=OrderOut,
    route_class_override=served_by(serve_create_order),
)


@router.get("/orders", response_model=OrderPage)
def list_orders(
    session: ReadSession,
    settings: AppSettings,
    _: OrderReader,
    customer_id: uuid.UUID | None = None,
    status: str | None = None,
    store_id: uuid.UUID | None = None,
    limit: int = 25,
    cursor: str | None = None,
) -> OrderPage:
    rows, next_cursor = orders.list_orders(
        session, customer_id=customer_id, status=status, store_id=store_id, limit=limit, cursor=cursor
    )
    return OrderPage(
        items=[order_answers.order_out(session, o, settings=settings) for o in rows], next_cursor=next_cursor
    )


@router.get("/orders/{order_id}", response_model=OrderOut)
def get_order(order_id: uuid.UUID, session: ReadSession, settings: AppSettings, _: OrderReader) -> OrderOut:
    return order_answers.order_out(session, orders.get_order(session, order_id), settings=settings)


@router.post("/orders/{order_id}/cancel", response_model=OrderOut)
def cancel_order(order_id: uuid.UUID, session: WriteSession, settings: AppSettings, principal: OrderWriter) -> OrderOut:
    order = orders.cancel_order(session, order_id, actor=principal.label)
    return order_answers.order_out(session, order, settings=settings)


def add_payment(order_id: uuid.UUID, data: PaymentIn, _: OrderWriter) -> PaymentOut:
    """A payment (card, cash, bank transfer, payment link, wallet; partial amounts welcome) or a refund."""
    raise NotImplementedError  # the documented signature (OpenAPI); served by order_path.serve_payment


router.add_api_route(
    "/orders/{order_id}/payments",
    add_payment,
    methods=["POST"],
    status_code=201,
    response_model=PaymentOut,
    route_class_override=served_by(serve_payment),
)


@router.post("/payments/{payment_id}/capture", response_model=PaymentOut)
def capture_payment(
    payment_id: uuid.UUID, session: WriteSession, settings: AppSettings, principal: OrderWriter
) -> PaymentOut:
    """The payment provider confirmed a payment-link payment."""
    return order_answers.payment_out(
        payments.capture_link(session, payment_id=payment_id, settings=settings, actor=principal.label), settings
    )


@router.post("/orders/{order_id}/fulfillments", response_model=FulfillmentOut, status_code=201)
def create_fulfillment(
    order_id: uuid.UUID,
    session: WriteSession,
    settings: AppSettings,
    principal: OrderWriter,
    data: ShipmentIn | None = None,
) -> FulfillmentOut:
    """Ship (all or some lines, with carrier and tracking), or for click & collect: ready for pickup."""
    made = fulfillment.create_fulfillment(
        session, order_id=order_id, data=data or ShipmentIn(), settings=settings, actor=principal.label
    )
    return FulfillmentOut(
        id=made.id,
        type=made.type,
        status=made.status,
        location_id=made.location_id,
        carrier=made.carrier,
        tracking_number=made.tracking_number,
        lines=made.lines,
        created_at=made.created_at,
    )


@router.post("/orders/{order_id}/pickup", response_model=OrderOut)
def pickup(
    order_id: uuid.UUID, data: PickupIn, session: WriteSession, settings: AppSettings, principal: OrderWriter
) -> OrderOut:
    """Hand a click & collect order over: the code typed, or the content of its scanned QR code."""
    order = fulfillment.hand_over(session, order_id=order_id, code=data.code, actor=principal.label)
    return order_answers.order_out(session, order, settings=settings)


@router.get("/customers/{customer_id}/carts")
def customer_carts(customer_id: uuid.UUID, session: ReadSession, _: OrderReader) -> list[dict[str, Any]]:
    """The carts a customer left open on the web or in the app (what a clerk or an agent picks up)."""
    return [
        {
            "id": str(c.id),
            "channel": c.channel,
            "lines": c.request.get("lines", []),
            "coupon_codes": c.request.get("coupon_codes", []),
            "total": c.total,
            "currency": c.currency,
            "updated_at": c.updated_at.isoformat(),
        }
        for c in orders.open_carts(session, customer_id)
    ]


@router.get("/payments/{payment_id}/qr.svg", response_class=Response)
def payment_link_qr(payment_id: uuid.UUID, session: ReadSession, settings: AppSettings, _: OrderReader) -> Response:
    """The payment link as a QR code, for a screen at the counter or a message."""
    import io

    import segno

    from omnicanal.commerce.models import Payment

    payment = session.get(Payment, payment_id)
    if payment is None or payment.link_token is None:
        raise NotFound(f"payment link {payment_id} not found")
    link = order_answers.payment_out(payment, settings).link_url or ""
    buffer = io.BytesIO()
    segno.make(link, error="m").save(buffer, kind="svg", scale=6, border=2)
    return Response(buffer.getvalue(), media_type="image/svg+xml")


@router.get("/orders/{order_id}/pickup/qr.svg", response_class=Response)
def pickup_qr(order_id: uuid.UUID, session: ReadSession, _: OrderReader) -> Response:
    order = orders.get_order(session, order_id)
    return Response(fulfillment.pickup_qr_svg(order), media_type="image/svg+xml")


@router.post("/returns", response_model=ReturnOut, status_code=201)
def create_return(
    data: ReturnIn, request: Request, session: WriteSession, settings: AppSettings, principal: OrderWriter
) -> Any:
    """A return on any channel, under the one return policy; refund to the original payment or store credit."""

    def produce() -> tuple[int, Any]:
        record = returns.create_return(session, data, settings=settings, actor=principal.label)
        return 201, returns.return_out(record, orders.get_order(session, record.order_id)).model_dump(mode="json")

    return run_idempotent(
        request, session, principal, data.model_dump(mode="json"), produce, customer_of=lambda c: c["customer_id"]
    )
