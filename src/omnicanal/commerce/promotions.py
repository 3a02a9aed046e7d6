"""Promotions and coupons: saving them, the cached index pricing reads, and usage limits.

Every process keeps the active promotions indexed in memory (:func:`active_index`) and reloads
them only when ``commerce_versions`` says they changed, which costs one primary-key read per quote.
Usage counters are not cached: they are read fresh for a quote and raised at checkout by
conditional updates (``used_count < usage_limit``), so limits hold under concurrent orders.
"""

from __future__ import annotations

import secrets
import threading
import uuid
import weakref
from collections.abc import Iterable
from typing import Any

from sqlalchemy import Engine, func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from omnicanal import longlived
from omnicanal.commerce.catalog import bump_version, category_by_slug
from omnicanal.commerce.models import CatalogVersion, Category, Coupon, Promotion, PromotionCustomerUsage, Variant
from omnicanal.commerce.pricing import PromotionIndex, Rule
from omnicanal.commerce.schemas import CouponBatchIn, PromotionIn, PromotionOut
from omnicanal.db import utcnow
from omnicanal.errors import Conflict, NotFound, ValidationFailed

CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O or 1/I: codes are read aloud and typed


def normalize_code(code: str) -> str:
    return code.strip().upper()


def _rules_of(session: Session, data: PromotionIn) -> dict[str, Any]:
    kind = data.kind
    rules: dict[str, Any] = {
        "skus": data.skus,
        "product_ids": [str(p) for p in data.product_ids],
        "categories": data.categories,
        "min_subtotal": data.min_subtotal,
        "min_quantity": data.min_quantity,
        "segments": data.segments,
        "channels": list(data.channels),
    }
    if data.scope == "product" and not (data.skus or data.product_ids) and kind != "bundle":
        raise ValidationFailed.on_field("skus", "a product promotion needs skus or product_ids")
    if data.scope == "category" and not data.categories:
        raise ValidationFailed.on_field("categories", "a category promotion needs at least one category")
    for slug in data.categories:
        category_by_slug(session, slug, field="categories")
    unknown = set(data.skus) - set(session.scalars(select(Variant.sku).where(Variant.sku.in_(data.skus))))
    if unknown:
        raise ValidationFailed.on_field("skus", f"unknown SKUs: {', '.join(sorted(unknown))}")
    if kind == "percentage":
        if data.percent is None:
            raise ValidationFailed.on_field("percent", "a percentage promotion needs percent")
        rules["percent_bp"] = round(data.percent * 100)
    elif kind == "fixed":
        if data.amount is None or data.currency is None:
            raise ValidationFailed.on_field("amount", "a fixed promotion needs amount and currency")
        rules["amount"] = data.amount
    elif kind == "buy_x_get_y":
        if not data.buy or not data.get:
            raise ValidationFailed.on_field("buy", "buy X get Y needs buy and get")
        rules.update(buy=data.buy, get=data.get, get_percent_bp=round(data.get_percent * 100))
    elif kind == "bundle":
        if len(data.bundle) < 2 or data.bundle_price is None or data.currency is None:
            raise ValidationFailed.on_field("bundle", "a bundle needs at least two items, bundle_price and currency")
        skus = [line.sku for line in data.bundle]
        missing = set(skus) - set(session.scalars(select(Variant.sku).where(Variant.sku.in_(skus))))
        if missing:
            raise ValidationFailed.on_field("bundle", f"unknown SKUs: {', '.join(sorted(missing))}")
        if any(line.quantity <= 0 for line in data.bundle):
            raise ValidationFailed.on_field("bundle", "every quantity must be at least 1")
        rules.update(bundle=[[line.sku, line.quantity] for line in data.bundle], bundle_price=data.bundle_price)
    if data.currency:
        rules["currency"] = data.currency
    if data.starts_at and data.ends_at and data.ends_at <= data.starts_at:
        raise ValidationFailed.on_field("ends_at", "must be after starts_at")
    return rules


def save_promotion(session: Session, data: PromotionIn, *, promotion_id: uuid.UUID | None = None) -> Promotion:
    for field_name in ("starts_at", "ends_at"):
        value = getattr(data, field_name)
        if value is not None and value.tzinfo is None:
            raise ValidationFailed.on_field(field_name, "must carry a timezone, e.g. 2026-12-01T00:00:00Z")
    rules = _rules_of(session, data)
    now = utcnow()
    if promotion_id is None:
        promotion = Promotion(created_at=now, used_count=0)
        session.add(promotion)
    else:
        found = session.get(Promotion, promotion_id)
        if found is None:
            raise NotFound(f"promotion {promotion_id} not found")
        promotion = found
    promotion.name = data.name
    promotion.kind = data.kind
    promotion.scope = "product" if data.kind == "bundle" else data.scope
    promotion.rules = rules
    promotion.starts_at = data.starts_at
    promotion.ends_at = data.ends_at
    promotion.priority = data.priority
    promotion.stackable = data.stackable
    promotion.requires_coupon = data.requires_coupon or bool(data.coupon_codes)
    promotion.usage_limit = data.usage_limit
    promotion.usage_limit_per_customer = data.usage_limit_per_customer
    promotion.active = data.active
    promotion.updated_at = now
    session.flush()
    if data.coupon_codes:
        add_coupons(session, promotion, [normalize_code(code) for code in data.coupon_codes], usage_limit=None)
    bump_version(session)
    return promotion


def add_coupons(session: Session, promotion: Promotion, codes: list[str], *, usage_limit: int | None) -> None:
    for code in codes:
        if not code or len(code) > 64:
            raise ValidationFailed.on_field("coupon_codes", f"{code!r}: a code has 1 to 64 characters")
    taken = set(session.scalars(select(Coupon.code).where(Coupon.code.in_(codes))))
    if taken:
        raise Conflict(f"these coupon codes exist already: {', '.join(sorted(taken))}")
    now = utcnow()
    session.add_all(
        Coupon(code=code, promotion_id=promotion.id, usage_limit=usage_limit, used_count=0, created_at=now)
        for code in dict.fromkeys(codes)
    )
    promotion.requires_coupon = True
    session.flush()


def generate_coupons(session: Session, *, promotion_id: uuid.UUID, data: CouponBatchIn) -> list[str]:
    """``count`` unique random codes (single-use by default) for a promotion."""
    promotion = session.get(Promotion, promotion_id)
    if promotion is None:
        raise NotFound(f"promotion {promotion_id} not found")
    codes: set[str] = set()
    while len(codes) < data.count:
        wanted = data.count - len(codes)
        fresh = {
            data.prefix + "".join(secrets.choice(CODE_ALPHABET) for _ in range(data.length)) for _ in range(wanted)
        }
        taken: set[str] = set()
        chunk = sorted(fresh)
        for start in range(0, len(chunk), 500):
            taken |= set(session.scalars(select(Coupon.code).where(Coupon.code.in_(chunk[start : start + 500]))))
        codes |= fresh - taken
    ordered = sorted(codes)
    now = utcnow()
    session.execute(
        insert(Coupon),
        [
            {
                "code": code,
                "promotion_id": promotion.id,
                "usage_limit": data.usage_limit,
                "used_count": 0,
                "created_at": now,
            }
            for code in ordered
        ],
    )
    if not promotion.requires_coupon:
        promotion.requires_coupon = True
        promotion.updated_at = now
        bump_version(session)
    return ordered


def promotion_out(promotion: Promotion) -> PromotionOut:
    return PromotionOut(
        id=promotion.id,
        name=promotion.name,
        kind=promotion.kind,
        scope=promotion.scope,
        rules=promotion.rules,
        starts_at=promotion.starts_at,
        ends_at=promotion.ends_at,
        priority=promotion.priority,
        stackable=promotion.stackable,
        requires_coupon=promotion.requires_coupon,
        usage_limit=promotion.usage_limit,
        usage_limit_per_customer=promotion.usage_limit_per_customer,
        used_count=promotion.used_count,
        active=promotion.active,
    )


def list_promotions(session: Session, *, active: bool | None = None) -> list[Promotion]:
    stmt = select(Promotion)
    if active is not None:
        stmt = stmt.where(Promotion.active.is_(active))
    return list(session.scalars(stmt.order_by(Promotion.priority.desc(), Promotion.created_at)))


# -- the cached index ------------------------------------------------------------------------------
_cache: weakref.WeakKeyDictionary[Engine, PromotionIndex] = weakref.WeakKeyDictionary()
_cache_lock = threading.Lock()


def _descendants(categories: list[tuple[uuid.UUID, uuid.UUID | None, str]]) -> dict[str, set[str]]:
    """Category slug -> ids of it and every category below it."""
    children: dict[uuid.UUID | None, list[uuid.UUID]] = {}
    for category_id, parent_id, _ in categories:
        children.setdefault(parent_id, []).append(category_id)
    result: dict[str, set[str]] = {}
    for category_id, _, slug in categories:
        found: set[str] = set()
        stack = [category_id]
        while stack:
            current = stack.pop()
            if str(current) in found:
                continue
            found.add(str(current))
            stack.extend(children.get(current, []))
        result[slug] = found
    return result


def rule_of(promotion: Promotion, tree: dict[str, set[str]], order: int) -> Rule:
    rules = promotion.rules or {}
    targets: set[str] = set(rules.get("skus", [])) | set(rules.get("product_ids", []))
    for slug in rules.get("categories", []):
        targets |= tree.get(slug, set())
    return Rule(
        id=str(promotion.id),
        name=promotion.name,
        kind=promotion.kind,
        scope=promotion.scope,
        targets=frozenset(targets),
        percent_bp=int(rules.get("percent_bp", 0)),
        amount=int(rules.get("amount", 0)),
        currency=rules.get("currency"),
        buy=int(rules.get("buy", 0)),
        get=int(rules.get("get", 0)),
        get_percent_bp=int(rules.get("get_percent_bp", 10000)),
        bundle=tuple((str(sku), int(quantity)) for sku, quantity in rules.get("bundle", [])),
        bundle_price=int(rules.get("bundle_price", 0)),
        min_subtotal=int(rules.get("min_subtotal", 0)),
        min_quantity=int(rules.get("min_quantity", 0)),
        starts_at=promotion.starts_at,
        ends_at=promotion.ends_at,
        priority=promotion.priority,
        order=order,
        stackable=promotion.stackable,
        requires_coupon=promotion.requires_coupon,
        limited=promotion.usage_limit is not None or promotion.usage_limit_per_customer is not None,
        segments=frozenset(rules.get("segments", [])),
        channels=frozenset(rules.get("channels", [])),
    )


def active_index(session: Session, *, version: int | None = None) -> PromotionIndex:
    """The active promotions, indexed; rebuilt only after a promotion or category changed."""
    if version is None:
        version = session.scalar(select(CatalogVersion.version).where(CatalogVersion.name == "promotions")) or 0
    engine = session.get_bind().engine
    index = _cache.get(engine)
    if index is not None and index.version == version:
        return index
    now = utcnow()
    promotions = list(
        session.scalars(
            select(Promotion)
            .where(Promotion.active.is_(True))
            .where((Promotion.ends_at.is_(None)) | (Promotion.ends_at > now))
            .order_by(Promotion.created_at, Promotion.id)
        )
    )
    tree = _descendants(list(session.execute(select(Category.id, Category.parent_id, Category.slug))))
    index = PromotionIndex([rule_of(p, tree, n) for n, p in enumerate(promotions)], version=version)
    with _cache_lock:
        _cache[engine] = index
    longlived.rebuilt("promotion_index")
    return index


# -- usage --------------------------------------------------------------------------------------------
def coupons_by_code(session: Session, codes: Iterable[str]) -> dict[str, Coupon]:
    wanted = [normalize_code(code) for code in codes]
    if not wanted:
        return {}
    return {c.code: c for c in session.scalars(select(Coupon).where(Coupon.code.in_(wanted)))}


def exhausted(session: Session, promotion_ids: list[str], *, customer_key: uuid.UUID | None) -> dict[str, str]:
    """Promotions among these that have no use left (in total, or for this customer): id -> why."""
    if not promotion_ids:
        return {}
    ids = [uuid.UUID(p) for p in promotion_ids]
    rows = session.execute(
        select(Promotion.id, Promotion.used_count, Promotion.usage_limit, Promotion.usage_limit_per_customer).where(
            Promotion.id.in_(ids),
            (Promotion.usage_limit.is_not(None)) | (Promotion.usage_limit_per_customer.is_not(None)),
        )
    ).all()
    result: dict[str, str] = {}
    per_customer = [row for row in rows if row[3] is not None]
    used: dict[uuid.UUID, int] = {}
    if per_customer and customer_key is not None:
        used = dict(
            session.execute(
                select(PromotionCustomerUsage.promotion_id, PromotionCustomerUsage.used_count).where(
                    PromotionCustomerUsage.customer_key == customer_key,
                    PromotionCustomerUsage.promotion_id.in_([row[0] for row in per_customer]),
                )
            ).all()
        )
    for promotion_id, used_count, limit, limit_per_customer in rows:
        if limit is not None and used_count >= limit:
            result[str(promotion_id)] = "has been used up"
        elif limit_per_customer is not None and used.get(promotion_id, 0) >= limit_per_customer:
            result[str(promotion_id)] = f"can be used {limit_per_customer} time(s) per customer, and was"
    return result


def claim(
    session: Session, applied: list[dict[str, Any]], *, customer_key: uuid.UUID, limited: set[str] | None = None
) -> None:
    """Count one use of every applied promotion and coupon, or raise if a limit was reached meanwhile.

    ``limited``: the applied promotions known to have a usage limit (None: look them all up).
    """
    ids = sorted({uuid.UUID(e["promotion_id"]) for e in applied if limited is None or e["promotion_id"] in limited})
    limits = (
        {}
        if not ids
        else {
            row[0]: row[1:]
            for row in session.execute(
                select(Promotion.id, Promotion.usage_limit, Promotion.usage_limit_per_customer).where(
                    Promotion.id.in_(ids)
                )
            )
        }
    )
    for promotion_id in ids:
        limit, per_customer = limits.get(promotion_id, (None, None))
        name = next(e["name"] for e in applied if e["promotion_id"] == str(promotion_id))
        if limit is not None:
            result = session.execute(
                update(Promotion)
                .where(Promotion.id == promotion_id, Promotion.used_count < Promotion.usage_limit)
                .values(used_count=Promotion.used_count + 1)
                .execution_options(synchronize_session=False)
            )
            if getattr(result, "rowcount", 0) != 1:
                raise Conflict(
                    f"the promotion {name!r} has just been used up; quote again", promotion_id=str(promotion_id)
                )
        # an unlimited promotion is not counted on its row: that row would serialize every order using it
        if per_customer is not None:
            _upsert_usage(session, promotion_id, customer_key)
            result = session.execute(
                update(PromotionCustomerUsage)
                .where(
                    PromotionCustomerUsage.promotion_id == promotion_id,
                    PromotionCustomerUsage.customer_key == customer_key,
                    PromotionCustomerUsage.used_count < per_customer,
                )
                .values(used_count=PromotionCustomerUsage.used_count + 1)
                .execution_options(synchronize_session=False)
            )
            if getattr(result, "rowcount", 0) != 1:
                raise Conflict(
                    f"the promotion {name!r} can be used {per_customer} time(s) per customer, and was",
                    promotion_id=str(promotion_id),
                )
    _claim_coupons(session, applied)


def _claim_coupons(session: Session, applied: list[dict[str, Any]]) -> None:
    for code in sorted({entry["coupon_code"] for entry in applied if entry.get("coupon_code")}):
        result = session.execute(
            update(Coupon)
            .where(Coupon.code == code, (Coupon.usage_limit.is_(None)) | (Coupon.used_count < Coupon.usage_limit))
            .values(used_count=Coupon.used_count + 1)
            .execution_options(synchronize_session=False)
        )
        if getattr(result, "rowcount", 0) != 1:
            raise Conflict(f"the coupon {code} has just been used up", coupon_code=code)


def release_claims(session: Session, applied: list[dict[str, Any]], *, customer_key: uuid.UUID) -> None:
    """An order cancelled or expired before payment gives its uses back."""
    for entry in applied:
        promotion_id = uuid.UUID(entry["promotion_id"])
        session.execute(
            update(Promotion)
            .where(Promotion.id == promotion_id, Promotion.usage_limit.is_not(None), Promotion.used_count > 0)
            .values(used_count=Promotion.used_count - 1)
            .execution_options(synchronize_session=False)
        )
        session.execute(
            update(PromotionCustomerUsage)
            .where(
                PromotionCustomerUsage.promotion_id == promotion_id,
                PromotionCustomerUsage.customer_key == customer_key,
                PromotionCustomerUsage.used_count > 0,
            )
            .values(used_count=PromotionCustomerUsage.used_count - 1)
            .execution_options(synchronize_session=False)
        )
        if entry.get("coupon_code"):
            session.execute(
                update(Coupon)
                .where(Coupon.code == entry["coupon_code"], Coupon.used_count > 0)
                .values(used_count=Coupon.used_count - 1)
                .execution_options(synchronize_session=False)
            )


def _upsert_usage(session: Session, promotion_id: uuid.UUID, customer_key: uuid.UUID) -> None:
    dialect = session.get_bind().dialect.name
    values = {"promotion_id": promotion_id, "customer_key": customer_key, "used_count": 0}
    statement = (pg_insert if dialect == "postgresql" else sqlite_insert)(PromotionCustomerUsage).values(values)
    session.execute(statement.on_conflict_do_nothing())


def coupon_count(session: Session, promotion_id: uuid.UUID) -> int:
    return session.scalar(select(func.count()).select_from(Coupon).where(Coupon.promotion_id == promotion_id)) or 0
