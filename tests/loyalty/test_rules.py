"""Unit tests of the earning arithmetic and rule validation."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from omnicanal.errors import ValidationFailed
from omnicanal.loyalty.rules import RuleSpec, applies, capped, period_start, scale_lines, spend_points, validate_rule


def rule(**overrides: Any) -> RuleSpec:
    values: dict[str, Any] = {
        "id": "r", "name": "r", "kind": "spend", "event_type": None, "points": 1, "per_amount": 100,
        "currency": None, "rounding": "down", "multiplier": 1.0, "product_multipliers": {},
        "category_multipliers": {}, "caps": {}, "channels": [], "tiers": [], "segments": {}, "conditions": {},
        "once_per": None, "expiry_days": None, "starts_at": None, "ends_at": None, "active": True,
    }  # fmt: skip
    values.update(overrides)
    return RuleSpec(**values)


def line(line_id: str, amount: int, product: str = "p", categories: tuple[str, ...] = ()) -> dict[str, Any]:
    return {
        "line_id": line_id,
        "amount": amount,
        "product_id": product,
        "category_ids": list(categories),
        "quantity": 1,
    }


def test_points_per_currency_unit_per_line_with_rounding() -> None:
    lines = [line("a", 2599), line("b", 50)]
    assert spend_points(rule(), lines, currency="EUR") == {"a": 25}
    assert spend_points(rule(rounding="half_up"), lines, currency="EUR") == {"a": 26, "b": 1}
    assert spend_points(rule(rounding="up"), lines, currency="EUR") == {"a": 26, "b": 1}
    assert spend_points(rule(currency="USD"), lines, currency="EUR") == {}


def test_product_and_category_multipliers_take_the_largest() -> None:
    spec = rule(product_multipliers={"shoe": 2}, category_multipliers={"summer": 3, "sale": 0.5})
    lines = [line("a", 1000, "shoe"), line("b", 1000, "shoe", ("summer",)), line("c", 1000, "hat", ("sale",))]
    assert spend_points(spec, lines, currency="EUR", extra_multiplier=1.5) == {"a": 30, "b": 45, "c": 7}


def test_caps_and_scaling_keep_the_exact_total() -> None:
    spec = rule(caps={"day": 10, "month": 25})
    assert capped(8, spec, {"day": 5, "month": 0}) == 5
    assert capped(8, spec, {"day": 0, "month": 20}) == 5
    assert capped(8, spec, {"day": 10}) == 0
    assert sum(scale_lines({"a": 7, "b": 3, "c": 1}, 5).values()) == 5


def test_dates_channels_tiers_and_segments() -> None:
    at = datetime(2026, 3, 10, tzinfo=UTC)
    spec = rule(starts_at=datetime(2026, 3, 1, tzinfo=UTC), ends_at=datetime(2026, 4, 1, tzinfo=UTC),
                channels=["pos"], tiers=["Gold"], segments={"language": "es"})  # fmt: skip
    assert applies(spec, at=at, channel="pos", tier="Gold", traits={"language": "es"})
    assert not applies(spec, at=at, channel="web", tier="Gold", traits={"language": "es"})
    assert not applies(spec, at=at, channel="pos", tier=None, traits={"language": "es"})
    assert not applies(spec, at=at, channel="pos", tier="Gold", traits={"language": "en"})
    assert not applies(spec, at=datetime(2026, 4, 1, tzinfo=UTC), channel="pos", tier="Gold", traits={"language": "es"})


def test_periods_are_calendar_periods_in_utc() -> None:
    at = datetime(2026, 11, 26, 15, 30, tzinfo=UTC)  # a Thursday
    assert period_start("day", at) == datetime(2026, 11, 26, tzinfo=UTC)
    assert period_start("week", at) == datetime(2026, 11, 23, tzinfo=UTC)
    assert period_start("month", at) == datetime(2026, 11, 1, tzinfo=UTC)
    assert period_start("lifetime", at) is None


@pytest.mark.parametrize(
    "body",
    [
        {"kind": "spend", "points": 1},
        {"kind": "spend", "points": 1, "per_amount": 100, "once_per": []},
        {"kind": "event", "points": 0, "event_type": "x"},
        {"kind": "event", "points": 1, "event_type": "x", "caps": {"year": 3}},
        {"kind": "event", "points": 1, "event_type": "x", "multiplier": 0},
        {"kind": "event", "points": 1, "event_type": "x", "expiry_days": -1},
    ],
)
def test_contradictory_rules_are_refused(body: dict[str, Any]) -> None:
    with pytest.raises(ValidationFailed):
        validate_rule(body)
