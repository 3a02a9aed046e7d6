"""Catalog CSV import and export: one row per variant, rows of a product grouped by ``product``.

Columns (a header row is required; unknown columns are refused):
``product`` (groups the variants of one product; defaults to ``name``), ``name``, ``category`` (slug),
``tax_class``, ``sku``, ``currency``, ``price`` (minor units), ``price_<channel>`` (an explicit channel
price, e.g. ``price_store``), ``attributes`` (``size=M;color=red``), ``images`` (``|``-separated),
``name_<lang>`` and ``description_<lang>`` (e.g. ``description_es``).

A product whose rows are wrong is rejected as a whole (its rows and why are reported); the others are
imported. A product whose SKUs exist already is updated in place.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, NamedTuple, TextIO

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from omnicanal.commerce.catalog import save_product
from omnicanal.commerce.models import Category, Price, Product, Variant
from omnicanal.commerce.schemas import ProductIn
from omnicanal.errors import DomainError

FIXED = ("product", "name", "category", "tax_class", "sku", "currency", "price", "attributes", "images")
PREFIXES = ("price_", "name_", "description_")


class Rejected(NamedTuple):
    line: int  # in the file, the header being line 1
    column: str  # the CSV column at fault, "" when the row as a whole is
    reason: str


@dataclass
class ImportReport:
    products: int = 0
    variants: int = 0
    rejected: list[Rejected] = field(default_factory=list)


class CellError(ValueError):
    """A cell that cannot be read (a price that is not a number, attributes that are not name=value)."""

    def __init__(self, column: str, message: str) -> None:
        super().__init__(message)
        self.column = column


# where a field of ProductIn comes from in the file
_COLUMNS = {"names": "name_", "descriptions": "description_", "prices": "price", "price": "price"}


def column_of(location: tuple[Any, ...] | list[Any]) -> str:
    """The CSV column a validation error's location points at (``variants.0.prices.1.amount`` -> ``price``)."""
    parts = [str(p) for p in location if not isinstance(p, int) and not str(p).isdigit()]
    if parts and parts[0] == "variants":
        parts = parts[1:] or ["sku"]
    if not parts:
        return ""
    head = parts[0]
    if head in ("names", "descriptions") and len(parts) > 1:
        return f"{_COLUMNS[head]}{parts[1]}"
    return _COLUMNS.get(head, head)


def _error_column(exc: DomainError) -> str:
    if exc.errors:
        return column_of(exc.errors[0].field.replace("[", ".").replace("]", "").split("."))
    return "sku" if "sku" in exc.extra else ""


def _attributes(text: str) -> dict[str, str]:
    out = {}
    for part in text.split(";"):
        if part.strip():
            key, sep, value = part.partition("=")
            if not sep:
                raise CellError("attributes", f"{part.strip()!r} is not name=value")
            out[key.strip()] = value.strip()
    return out


def _product_body(rows: list[tuple[int, dict[str, str]]]) -> dict[str, Any]:
    first = rows[0][1]
    body: dict[str, Any] = {
        "name": first.get("name", "").strip(), "category": first.get("category", "").strip() or None,
        "tax_class": first.get("tax_class", "").strip() or "standard", "names": {}, "descriptions": {},
        "variants": [],
    }  # fmt: skip
    for key, value in first.items():
        if key.startswith("name_") and value.strip():
            body["names"][key.removeprefix("name_")] = value.strip()
        if key.startswith("description_") and value.strip():
            body["descriptions"][key.removeprefix("description_")] = value.strip()
    variants: dict[str, dict[str, Any]] = {}
    for _, row in rows:
        sku = row.get("sku", "").strip()
        currency = row.get("currency", "").strip().upper() or "EUR"
        variant = variants.setdefault(sku, {
            "sku": sku, "prices": [], "attributes": _attributes(row.get("attributes", "")),
            "images": [i for i in row.get("images", "").split("|") if i.strip()],
        })  # fmt: skip
        for key, value in row.items():
            if (key == "price" or key.startswith("price_")) and value.strip():
                price: dict[str, Any] = {"amount": _minor_units(key, value), "currency": currency}
                if key != "price":
                    price["channel"] = key.removeprefix("price_")
                variant["prices"].append(price)
    body["variants"] = list(variants.values())
    return body


def _minor_units(column: str, value: str) -> int:
    try:
        return int(value.strip())
    except ValueError:
        raise CellError(column, f"{value.strip()!r} is not a whole number of minor units (cents)") from None


def import_csv(session: Session, source: TextIO, *, progress: Callable[[int, int], None] | None = None) -> ImportReport:
    reader = csv.DictReader(source)
    header = reader.fieldnames or []
    unknown = [c for c in header if c not in FIXED and not c.startswith(PREFIXES)]
    report = ImportReport()
    if "sku" not in header or unknown:
        why = f"unknown columns: {', '.join(unknown)}" if unknown else "the header needs a sku column"
        report.rejected.append(Rejected(1, "", why))
        return report
    groups: dict[str, list[tuple[int, dict[str, str]]]] = {}
    for line, row in enumerate(reader, start=2):
        key = (row.get("product") or row.get("name") or "").strip()
        if not key:
            report.rejected.append(Rejected(line, "product", "the row names no product"))
            continue
        groups.setdefault(key, []).append((line, {k: v or "" for k, v in row.items() if k is not None}))
    total = len(groups)
    for done, rows in enumerate(groups.values(), start=1):
        lines = [line for line, _ in rows]
        try:
            data = ProductIn.model_validate(_product_body(rows))
            skus = [v.sku for v in data.variants]
            existing = session.scalar(select(Variant.product_id).where(Variant.sku.in_(skus)).limit(1))
            with session.begin_nested():
                save_product(session, data, product_id=existing)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            for line in lines:
                report.rejected.append(Rejected(line, column_of(first["loc"]), f"{where}: {first['msg']}"))
        except CellError as exc:
            for line in lines:
                report.rejected.append(Rejected(line, exc.column, f"{exc.column}: {exc}"))
        except DomainError as exc:
            for line in lines:
                report.rejected.append(Rejected(line, _error_column(exc), exc.detail))
        else:
            report.products += 1
            report.variants += len(rows)
        if progress is not None:
            progress(done, total)
    return report


def export_csv(session: Session, target: TextIO) -> int:
    """Every active product's variants as rows; returns how many."""
    products = list(session.scalars(select(Product).where(Product.active.is_(True)).order_by(Product.name)))
    slugs = dict(session.execute(select(Category.id, Category.slug)).all())
    variants = list(session.scalars(select(Variant).order_by(Variant.product_id, Variant.position)))
    prices: dict[str, list[Price]] = {}
    for price in session.scalars(select(Price)):
        prices.setdefault(price.sku, []).append(price)
    channels = sorted({p.channel for ps in prices.values() for p in ps if p.channel})
    languages = sorted({lang for p in products for lang in [*(p.names or {}), *(p.descriptions or {})]})
    header = [*FIXED, *(f"price_{c}" for c in channels), *(f"name_{lang}" for lang in languages),
              *(f"description_{lang}" for lang in languages)]  # fmt: skip
    writer = csv.DictWriter(target, fieldnames=header)
    writer.writeheader()
    by_product: dict[Any, list[Variant]] = {}
    for variant in variants:
        by_product.setdefault(variant.product_id, []).append(variant)
    count = 0
    for product in products:
        for variant in by_product.get(product.id, []):
            own = prices.get(variant.sku, [])
            currencies = sorted({p.currency for p in own}) or [""]
            for currency in currencies:
                row: dict[str, Any] = {
                    "product": str(product.id), "name": product.name,
                    "category": slugs.get(product.category_id, "") if product.category_id else "",
                    "tax_class": product.tax_class, "sku": variant.sku, "currency": currency,
                    "attributes": ";".join(f"{k}={v}" for k, v in (variant.attributes or {}).items()),
                    "images": "|".join(variant.images or []),
                }  # fmt: skip
                for price in own:
                    if price.currency == currency:
                        row["price" if not price.channel else f"price_{price.channel}"] = price.amount
                for lang in languages:
                    row[f"name_{lang}"] = (product.names or {}).get(lang, "")
                    row[f"description_{lang}"] = (product.descriptions or {}).get(lang, "")
                writer.writerow(row)
                count += 1
    return count


def rows_text(rows: Iterable[Iterable[str]]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer).writerows(rows)
    return buffer.getvalue()
