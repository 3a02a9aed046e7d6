"""Earning rules: validation and the arithmetic of points (pure functions, no database)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_DOWN, ROUND_HALF_UP, ROUND_UP, Decimal
from functools import lru_cache
from typing import Any

from omnicanal.errors import FieldError, ValidationFailed

ROUNDINGS = {"down": ROUND_DOWN, "half_up": ROUND_HALF_UP, "up": ROUND_UP}
CAP_PERIODS = ("day", "week", "month", "lifetime")


@dataclass(frozen=True)
class RuleSpec:
    """What the earning engine needs of a rule (decoupled from the ORM row, so it can be cached)."""

    id: Any
    name: str
    kind: str
    event_type: str | None
    points: int
    per_amount: int | None
    currency: str | None
    rounding: str
    multiplier: float
    product_multipliers: Mapping[str, float]
    category_multipliers: Mapping[str, float]
    caps: Mapping[str, int]
    channels: Sequence[str]
    tiers: Sequence[str]
    segments: Mapping[str, Any]
    conditions: Mapping[str, Any]
    once_per: Sequence[str] | None
    expiry_days: int | None
    starts_at: datetime | None
    ends_at: datetime | None
    active: bool

    @classmethod
    def of(cls, row: Any) -> RuleSpec:
        return cls(**{name: getattr(row, name) for name in cls.__dataclass_fields__})


def validate_rule(data: Mapping[str, Any]) -> None:
    """Refuse contradictory settings with field errors; the caller stores nothing."""
    errors: list[FieldError] = []
    kind = data.get("kind")
    if kind == "spend":
        if not data.get("per_amount"):
            errors.append(FieldError("per_amount", "a spend rule needs the amount (minor units) that earns `points`"))
        if data.get("event_type"):
            errors.append(FieldError("event_type", "a spend rule earns from paid orders, not from an event type"))
        if data.get("once_per") is not None:
            errors.append(FieldError("once_per", "a spend rule earns once per order already"))
    elif kind == "event":
        if not data.get("event_type"):
            errors.append(FieldError("event_type", "an event rule needs the event type it answers"))
        if data.get("per_amount"):
            errors.append(FieldError("per_amount", "only spend rules earn per amount"))
    if (data.get("points") or 0) <= 0:
        errors.append(FieldError("points", "must be positive"))
    if data.get("rounding", "down") not in ROUNDINGS:
        errors.append(FieldError("rounding", f"one of {', '.join(ROUNDINGS)}"))
    starts, ends = data.get("starts_at"), data.get("ends_at")
    if starts is not None and ends is not None and ends <= starts:
        errors.append(FieldError("ends_at", "must be after starts_at"))
    caps = data.get("caps") or {}
    for period, cap in caps.items():
        if period not in CAP_PERIODS:
            errors.append(FieldError(f"caps.{period}", f"unknown period; one of {', '.join(CAP_PERIODS)}"))
        elif not isinstance(cap, int) or cap <= 0:
            errors.append(FieldError(f"caps.{period}", "must be a positive whole number of points"))
    ordered = [caps[p] for p in CAP_PERIODS if p in caps and isinstance(caps[p], int)]
    if ordered != sorted(ordered):
        errors.append(FieldError("caps", "a longer period cannot have a smaller cap than a shorter one"))
    if data.get("multiplier", 1) is None or data.get("multiplier", 1) <= 0:
        errors.append(FieldError("multiplier", "must be positive"))
    for field in ("product_multipliers", "category_multipliers"):
        for key, value in (data.get(field) or {}).items():
            if not isinstance(value, int | float) or value < 0:
                errors.append(FieldError(f"{field}.{key}", "must be a number not below zero"))
    if data.get("expiry_days") is not None and data["expiry_days"] <= 0:
        errors.append(FieldError("expiry_days", "must be positive"))
    if errors:
        raise ValidationFailed("; ".join(f"{e.field}: {e.message}" for e in errors), errors=errors)


def applies(rule: RuleSpec, *, at: datetime, channel: str | None, tier: str | None, traits: Mapping[str, Any]) -> bool:
    if not rule.active:
        return False
    if rule.starts_at is not None and at < rule.starts_at:
        return False
    if rule.ends_at is not None and at >= rule.ends_at:
        return False
    if rule.channels and channel not in rule.channels:
        return False
    if rule.tiers and tier not in rule.tiers:
        return False
    return not rule.segments or all(traits.get(key) == value for key, value in rule.segments.items())


def matches_event(rule: RuleSpec, event_type: str, properties: Mapping[str, Any]) -> bool:
    if rule.kind != "event" or rule.event_type != event_type:
        return False
    return all(properties.get(key) == value for key, value in rule.conditions.items())


@lru_cache(maxsize=256)
def _decimal(value: float) -> Decimal:
    """A multiplier as the decimal it reads as (1.1 is 1.1, not its binary approximation)."""
    return Decimal(str(value))


@lru_cache(maxsize=256)
def _factor(points: int, per_amount: int, multiplier: float, extra_multiplier: float) -> Decimal:
    return Decimal(points) / Decimal(per_amount) * _decimal(multiplier) * _decimal(extra_multiplier)


_ONE = Decimal(1)


def line_multiplier(rule: RuleSpec, line: Mapping[str, Any]) -> Decimal:
    """The largest of the product's and its categories' multipliers (1 when none is set)."""
    if not rule.product_multipliers and not rule.category_multipliers:
        return _ONE
    found = (
        [rule.product_multipliers[str(line["product_id"])]]
        if str(line.get("product_id")) in rule.product_multipliers
        else []
    )
    found += [
        rule.category_multipliers[str(c)] for c in line.get("category_ids") or () if str(c) in rule.category_multipliers
    ]
    return _decimal(max(found)) if found else _ONE


def spend_points(
    rule: RuleSpec, lines: Sequence[Mapping[str, Any]], *, currency: str, extra_multiplier: float = 1.0
) -> dict[str, int]:
    """Points per order line: ``amount / per_amount * points``, times the multipliers, rounded per line.

    ``amount`` is the line's paid amount in minor units after discounts and without shipping.
    """
    if rule.currency and rule.currency != currency:
        return {}
    assert rule.per_amount
    rounding = ROUNDINGS[rule.rounding]
    factor = _factor(rule.points, rule.per_amount, rule.multiplier, extra_multiplier)
    result: dict[str, int] = {}
    for line in lines:
        amount = int(line["amount"])
        if amount <= 0:
            continue
        points = int((amount * factor * line_multiplier(rule, line)).quantize(_ONE, rounding=rounding))
        if points > 0:  # lines sharing an id (one SKU on two lines) add up
            line_id = str(line["line_id"])
            result[line_id] = result.get(line_id, 0) + points
    return result


def period_start(period: str, at: datetime) -> datetime | None:
    """Calendar periods in UTC: the day, the ISO week (from Monday), the month; None for lifetime."""
    day = at.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "day":
        return day
    if period == "week":
        return day - timedelta(days=day.weekday())
    if period == "month":
        return day.replace(day=1)
    return None


def capped(points: int, rule: RuleSpec, earned_in: Mapping[str, int]) -> int:
    """``points`` cut to what every cap of the rule still allows, given what was earned in each period."""
    allowed = points
    for period, cap in rule.caps.items():
        allowed = min(allowed, max(cap - earned_in.get(period, 0), 0))
    return allowed


def scale_lines(lines: Mapping[str, int], total: int) -> dict[str, int]:
    """Cut per-line points down to ``total`` (a cap), keeping each line's share and the exact sum."""
    full = sum(lines.values())
    if total >= full:
        return dict(lines)
    scaled = {key: math.floor(value * total / full) for key, value in lines.items()}
    short = total - sum(scaled.values())
    for key in sorted(lines, key=lambda k: -lines[k]):
        if short <= 0:
            break
        scaled[key] += 1
        short -= 1
    return {key: value for key, value in scaled.items() if value > 0}
