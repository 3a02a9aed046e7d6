"""Products, variants, categories and prices: one price list per currency, channel prices only where set."""

from __future__ import annotations

import uuid
import weakref
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Engine, delete, select, update
from sqlalchemy.orm import Session

from omnicanal import longlived
from omnicanal.commerce.models import CatalogVersion, Category, Price, Product, Variant
from omnicanal.commerce.schemas import CategoryIn, CategoryOut, PriceOut, ProductIn, ProductOut, VariantOut
from omnicanal.db import utcnow
from omnicanal.driver_sql import fetch_rows
from omnicanal.errors import Conflict, NotFound, ValidationFailed
from omnicanal.pagination import check_limit, decode_cursor, encode_cursor


def bump_version(session: Session, name: str = "promotions") -> None:
    """Tell every process that its cached promotions (``promotions``) or catalog rows (``catalog``) are stale."""
    session.info.pop(_VERSIONS_SEEN, None)
    updated = session.execute(
        update(CatalogVersion).where(CatalogVersion.name == name).values(version=CatalogVersion.version + 1)
    )
    if getattr(updated, "rowcount", 0) == 0:
        session.add(CatalogVersion(name=name, version=1))
        session.flush()


def category_by_slug(session: Session, slug: str, *, field: str = "category") -> Category:
    category = session.scalar(select(Category).where(Category.slug == slug))
    if category is None:
        raise ValidationFailed.on_field(field, f"unknown category {slug!r}")
    return category


def create_category(session: Session, data: CategoryIn) -> Category:
    if session.scalar(select(Category.id).where(Category.slug == data.slug)) is not None:
        raise Conflict(f"a category with the slug {data.slug!r} exists already")
    parent = category_by_slug(session, data.parent, field="parent") if data.parent else None
    category = Category(slug=data.slug, name=data.name, names=data.names, parent_id=parent.id if parent else None)
    session.add(category)
    session.flush()
    bump_version(session)
    return category


def list_categories(session: Session) -> list[CategoryOut]:
    rows = list(session.scalars(select(Category).order_by(Category.slug)))
    slugs = {row.id: row.slug for row in rows}
    return [
        CategoryOut(
            id=row.id,
            slug=row.slug,
            name=row.name,
            names=row.names or {},
            parent=slugs.get(row.parent_id) if row.parent_id else None,
        )
        for row in rows
    ]


def _check_variants(session: Session, data: ProductIn, product_id: uuid.UUID | None) -> None:
    skus = [variant.sku for variant in data.variants]
    seen: set[str] = set()
    for index, sku in enumerate(skus):
        if sku in seen:
            raise ValidationFailed.on_field(f"variants[{index}].sku", f"{sku!r} appears twice")
        seen.add(sku)
    taken = session.execute(select(Variant.sku, Variant.product_id).where(Variant.sku.in_(skus))).all()
    for sku, owner in taken:
        if owner != product_id:
            raise Conflict(f"the SKU {sku!r} belongs to another product", sku=sku, product_id=str(owner))
    for index, variant in enumerate(data.variants):
        keys = set()
        for price in [*([variant.price] if variant.price else []), *variant.prices]:
            key = (price.currency, price.channel)
            if key in keys:
                raise ValidationFailed.on_field(
                    f"variants[{index}].prices", f"two prices for {price.currency} on channel {price.channel!r}"
                )
            keys.add(key)


def save_product(session: Session, data: ProductIn, *, product_id: uuid.UUID | None = None) -> Product:
    """Create a product (or replace one's fields, variants and prices)."""
    _check_variants(session, data, product_id)
    category = category_by_slug(session, data.category) if data.category else None
    now = utcnow()
    if product_id is None:
        product = Product(created_at=now)
        session.add(product)
    else:
        found = session.get(Product, product_id)
        if found is None:
            raise NotFound(f"product {product_id} not found")
        product = found
    product.name = data.name
    product.names = data.names
    product.descriptions = data.descriptions
    product.category_id = category.id if category else None
    product.images = data.images
    product.tax_class = data.tax_class
    product.updated_at = now
    session.flush()
    bump_version(session, "catalog")
    skus = [variant.sku for variant in data.variants]
    existing = set(session.scalars(select(Variant.sku).where(Variant.product_id == product.id)))
    session.execute(delete(Price).where(Price.sku.in_(existing | set(skus))))
    for position, variant in enumerate(data.variants):
        row = session.get(Variant, variant.sku) if variant.sku in existing else None
        if row is None:
            row = Variant(sku=variant.sku, product_id=product.id)
            session.add(row)
        row.position = position
        row.attributes = variant.attributes
        row.images = variant.images
    session.flush()
    for variant in data.variants:
        for price in [*([variant.price] if variant.price else []), *variant.prices]:
            session.add(Price(sku=variant.sku, currency=price.currency, channel=price.channel, amount=price.amount))
    session.flush()
    return product


def _price_for(prices: Sequence[Price], currency: str, channel: str | None) -> PriceOut | None:
    """The price a customer sees: the channel's explicit price where set (marked so), else the price list."""
    base = None
    for price in prices:
        if price.currency != currency:
            continue
        if channel and price.channel == channel:
            return PriceOut(amount=price.amount, currency=price.currency, channel=price.channel)
        if price.channel == "":
            base = PriceOut(amount=price.amount, currency=price.currency)
    return base


def products_out(
    session: Session, products: Sequence[Product], *, currency: str, channel: str | None = None
) -> list[ProductOut]:
    ids = [product.id for product in products]
    variants: dict[uuid.UUID, list[Variant]] = {}
    for variant in session.scalars(select(Variant).where(Variant.product_id.in_(ids)).order_by(Variant.position)):
        variants.setdefault(variant.product_id, []).append(variant)
    skus = [v.sku for vs in variants.values() for v in vs]
    prices: dict[str, list[Price]] = {}
    for price in session.scalars(select(Price).where(Price.sku.in_(skus))) if skus else []:
        prices.setdefault(price.sku, []).append(price)
    category_ids = {p.category_id for p in products if p.category_id}
    slugs = dict(session.execute(select(Category.id, Category.slug).where(Category.id.in_(category_ids))).all())
    out = []
    for product in products:
        variant_out = [
            VariantOut(
                sku=v.sku,
                price=_price_for(prices.get(v.sku, []), currency, channel),
                prices=[
                    PriceOut(amount=p.amount, currency=p.currency, channel=p.channel or None)
                    for p in sorted(prices.get(v.sku, []), key=lambda p: (p.currency, p.channel))
                ],
                attributes=v.attributes or {},
                images=v.images or [],
            )
            for v in variants.get(product.id, [])
        ]
        out.append(
            ProductOut(
                id=product.id,
                name=product.name,
                names=product.names or {},
                descriptions=product.descriptions or {},
                category=slugs.get(product.category_id) if product.category_id else None,
                images=product.images or [],
                tax_class=product.tax_class,
                variants=variant_out,
            )
        )
    return out


def get_product(session: Session, product_id: uuid.UUID) -> Product:
    product = session.get(Product, product_id)
    if product is None or not product.active:
        raise NotFound(f"product {product_id} not found")
    return product


def list_products(
    session: Session,
    *,
    q: str | None = None,
    category: str | None = None,
    sku: str | None = None,
    limit: int = 50,
    cursor: str | None = None,
) -> tuple[list[Product], str | None]:
    limit = check_limit(limit)
    stmt = select(Product).where(Product.active.is_(True))
    if q:
        stmt = stmt.where(Product.name.ilike(f"%{q.strip()}%"))
    if category:
        stmt = stmt.where(Product.category_id == category_by_slug(session, category).id)
    if sku:
        stmt = stmt.where(Product.id.in_(select(Variant.product_id).where(Variant.sku == sku)))
    after = decode_cursor(cursor, size=1)
    if after is not None:
        try:
            stmt = stmt.where(Product.id > uuid.UUID(str(after[0])))
        except ValueError:
            raise ValidationFailed.on_field("cursor", "is not a cursor this API returned") from None
    rows = list(session.scalars(stmt.order_by(Product.id).limit(limit + 1)))
    next_cursor = encode_cursor([str(rows[limit - 1].id)]) if len(rows) > limit else None
    return rows[:limit], next_cursor


@dataclass(frozen=True)
class CatalogItem:
    sku: str
    product_id: uuid.UUID
    category_id: uuid.UUID | None
    name: str
    names: dict[str, str]
    tax_class: str
    prices: dict[tuple[str, str], int]  # (currency, channel) -> amount


def versions(session: Session) -> dict[str, int]:
    """The change counters of the cached data, in one query (run on every quote and order: a Core statement).

    Read once per transaction: a batch of the ingest writer or of the batch reader prices many carts in one,
    and no other writer can change the counters under it (SQLite's write lock, or the read's snapshot);
    :func:`bump_version` in the same transaction forgets them.
    """
    seen = session.info.get(_VERSIONS_SEEN)
    transaction = session.get_transaction()
    if seen is not None and transaction is not None and seen[0] is transaction and transaction.is_active:
        return dict(seen[1])
    session.flush()
    found = dict(fetch_rows(session, _VERSIONS, {}))
    session.info[_VERSIONS_SEEN] = (session.get_transaction(), found)
    return dict(found)


_VERSIONS_SEEN = "omnicanal.catalog_versions"


_VERSIONS = select(CatalogVersion.__table__.c.name, CatalogVersion.__table__.c.version)


# Every process keeps the catalog rows it has priced (a few hundred bytes a SKU), dropped at the next change.
_items_cache: weakref.WeakKeyDictionary[Engine, tuple[int, dict[str, CatalogItem]]] = weakref.WeakKeyDictionary()
_CACHE_LIMIT = 200_000


def catalog_items(session: Session, skus: Sequence[str], *, version: int | None = None) -> dict[str, CatalogItem]:
    """What pricing needs to know about these SKUs: from this process's cache, else in one query."""
    if not skus:
        return {}
    if version is None:
        version = versions(session).get("catalog", 0)
    engine = session.get_bind().engine
    cached = _items_cache.get(engine)
    if cached is None or cached[0] != version or len(cached[1]) > _CACHE_LIMIT:
        cached = _items_cache[engine] = (version, {})
    known = cached[1]
    missing = [sku for sku in set(skus) if sku not in known]
    if missing:
        known.update(_load_items(session, missing))
        longlived.grew("catalog_items", len(known))
    return {sku: known[sku] for sku in skus if sku in known}


def _load_items(session: Session, skus: Sequence[str]) -> dict[str, CatalogItem]:
    rows = session.execute(
        select(
            Variant.sku,
            Variant.product_id,
            Product.category_id,
            Product.name,
            Product.names,
            Product.tax_class,
            Price.currency,
            Price.channel,
            Price.amount,
        )
        .join(Product, Product.id == Variant.product_id)
        .outerjoin(Price, Price.sku == Variant.sku)
        .where(Variant.sku.in_(set(skus)), Product.active.is_(True))
    ).all()
    items: dict[str, CatalogItem] = {}
    for sku, product_id, category_id, name, names, tax_class, currency, channel, amount in rows:
        item = items.get(sku)
        if item is None:
            item = items[sku] = CatalogItem(sku, product_id, category_id, name, names or {}, tax_class, {})
        if currency is not None:
            item.prices[(currency, channel)] = amount
    return items
