"""A serving process freezes its long-lived objects once built, then whenever a cache has doubled."""

from __future__ import annotations

import pytest

from omnicanal import longlived


@pytest.fixture
def freezes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    monkeypatch.setattr(longlived.gc, "freeze", lambda: calls.append(1))
    monkeypatch.setattr(longlived.gc, "collect", lambda: 0)
    monkeypatch.setattr(longlived, "_enabled", [False])
    monkeypatch.setattr(longlived, "_frozen_at", {})
    return calls


def test_nothing_is_frozen_unless_the_server_enabled_it(freezes: list[int]) -> None:
    longlived.grew("catalog_items", 50_000)
    longlived.rebuilt("promotion_index")
    assert freezes == []


def test_a_cache_freezes_each_time_it_doubles(freezes: list[int]) -> None:
    longlived.enable()
    assert len(freezes) == 1
    for size in (10, 999, 1_000, 1_500, 1_999, 2_000, 3_000, 4_100, 5_000):
        longlived.grew("catalog_items", size)
    assert len(freezes) == 1 + 3  # at 1,000, 2,000 and 4,100
    longlived.rebuilt("promotion_index")
    assert len(freezes) == 5
