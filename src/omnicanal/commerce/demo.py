"""Demo shop: a catalog, a warehouse and two stores, promotions, a web cart, a pickup waiting and an order."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from omnicanal.commerce import catalog, fulfillment, orders, payments, promotions, stores
from omnicanal.commerce.schemas import CartIn, CategoryIn, PaymentIn, ProductIn, PromotionIn, ShipmentIn, StoreIn
from omnicanal.customers.models import Identity
from omnicanal.settings import Settings

PRODUCTS: list[tuple[str, str, str, list[tuple[str, int, dict[str, Any]]]]] = [
    # name (es), category, tax class, [(sku, price, attributes)]
    (
        "Zapatillas Runner",
        "calzado",
        "standard",
        [("RUN-41", 7999, {"talla": "41"}), ("RUN-42", 7999, {"talla": "42"})],
    ),
    ("Camiseta técnica", "ropa", "standard", [("TEE-S", 1999, {"talla": "S"}), ("TEE-M", 1999, {"talla": "M"})]),
    ("Calcetines deporte (pack 3)", "ropa", "standard", [("SOCK-3", 899, {})]),
    ("Botella 750 ml", "accesorios", "standard", [("BOT-750", 1299, {"color": "azul"})]),
    ("Guía de running", "libros", "super_reduced", [("BOOK-RUN", 1800, {})]),
]


def load_demo_shop(session: Session, settings: Settings, people: list[tuple[str, str]]) -> str:
    for slug, name, parent in (
        ("ropa", "Ropa", None),
        ("calzado", "Calzado", "ropa"),
        ("accesorios", "Accesorios", None),
        ("libros", "Libros", None),
    ):
        catalog.create_category(session, CategoryIn(slug=slug, name=name, names={"es": name}, parent=parent))
    warehouse = stores.create_store(
        session,
        StoreIn(code="ALM", name="Almacén central", kind="warehouse", address={"city": "Getafe", "country": "ES"}),
    )
    hours = {day: [["10:00", "21:00"]] for day in ("mon", "tue", "wed", "thu", "fri", "sat")}
    centro = stores.create_store(
        session,
        StoreIn(
            code="MAD-CENTRO",
            name="Madrid Centro",
            opening_hours=hours,
            address={"line1": "Calle Preciados 10", "city": "Madrid"},
        ),
    )
    norte = stores.create_store(
        session,
        StoreIn(
            code="MAD-NORTE",
            name="Madrid Norte",
            opening_hours=hours,
            address={"line1": "Av. de la Ilustración 4", "city": "Madrid"},
        ),
    )
    for name, category, tax_class, variants in PRODUCTS:
        product = ProductIn.model_validate(
            {
                "name": name,
                "names": {"es": name},
                "category": category,
                "tax_class": tax_class,
                "variants": [
                    {
                        "sku": sku,
                        "price": {"amount": price, "currency": "EUR"},
                        "attributes": attributes,
                        "prices": [{"amount": price - 500, "currency": "EUR", "channel": "store"}]
                        if sku == "RUN-42"
                        else [],
                    }
                    for sku, price, attributes in variants
                ],
            }
        )
        catalog.save_product(session, product)
        for sku, _, _ in variants:
            stores.set_stock(session, store_id=warehouse.id, sku=sku, quantity=200)
            stores.set_stock(session, store_id=centro.id, sku=sku, quantity=6)
            stores.set_stock(session, store_id=norte.id, sku=sku, quantity=2 if sku != "RUN-42" else 0)
    promotions.save_promotion(
        session,
        PromotionIn(
            name="10 % en calzado", kind="percentage", scope="category", categories=["calzado"], percent=10, priority=5
        ),
    )
    promotions.save_promotion(
        session, PromotionIn(name="Calcetines 3x2", kind="buy_x_get_y", scope="product", skus=["SOCK-3"], buy=2, get=1)
    )
    promotions.save_promotion(
        session, PromotionIn(name="Envío gratis desde 50 €", kind="free_shipping", min_subtotal=5000)
    )
    promotions.save_promotion(
        session,
        PromotionIn(
            name="Bienvenida: 5 € de descuento",
            kind="fixed",
            amount=500,
            currency="EUR",
            min_subtotal=3000,
            coupon_codes=["BIENVENIDA5"],
            usage_limit_per_customer=1,
        ),
    )

    def customer_of(email: str) -> str:
        owner = session.scalar(select(Identity.customer_id).where(Identity.type == "email", Identity.value == email))
        return str(owner)

    # a cart left on the web, a pickup waiting at Madrid Centro, a delivered order
    first, second = customer_of(people[0][0]), customer_of(people[1][0])
    web_cart = CartIn.model_validate(
        {
            "customer_id": first,
            "channel": "web",
            "fulfillment": {"type": "delivery"},
            "lines": [{"sku": "RUN-42", "quantity": 1}, {"sku": "SOCK-3", "quantity": 3}],
        }
    )
    quoted = orders.quote(session, web_cart, settings=settings)
    orders.save_cart(session, web_cart, settings=settings, total=quoted.quote.total, currency=quoted.currency)
    pickup = orders.create_order(
        session,
        CartIn.model_validate(
            {
                "customer_id": first,
                "channel": "app",
                "lines": [{"sku": "TEE-M", "quantity": 2}],
                "fulfillment": {"type": "pickup", "store_id": str(centro.id)},
            }
        ),
        settings=settings,
        actor="demo",
    )
    payments.record_payment(
        session,
        order_id=pickup.id,
        data=PaymentIn(method="wallet", amount=pickup.total),
        settings=settings,
        actor="demo",
    )
    fulfillment.create_fulfillment(session, order_id=pickup.id, data=ShipmentIn(), settings=settings, actor="demo")
    shipped = orders.create_order(
        session,
        CartIn.model_validate(
            {
                "customer_id": second,
                "channel": "web",
                "lines": [{"sku": "RUN-41", "quantity": 1}, {"sku": "BOT-750", "quantity": 1}],
                "fulfillment": {"type": "delivery", "address": {"line1": "Calle Mayor 5", "city": "Madrid"}},
            }
        ),
        settings=settings,
        actor="demo",
    )
    payments.record_payment(
        session,
        order_id=shipped.id,
        data=PaymentIn(method="card", amount=shipped.total),
        settings=settings,
        actor="demo",
    )
    fulfillment.create_fulfillment(
        session,
        order_id=shipped.id,
        data=ShipmentIn(carrier="Correos Express", tracking_number="CX123456789ES"),
        settings=settings,
        actor="demo",
    )
    return (
        f"Shop: 5 products in a warehouse and 2 stores, 4 promotions (coupon BIENVENIDA5); order {pickup.number} "
        f"waits for pickup at Madrid Centro with code {pickup.pickup_code}; {people[0][0]} left a cart on the web."
    )
