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
    monkeypatch.setattr(longlived.gc, "callbacks", [])  # enable() must not leave a real callback behind
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


def test_what_survives_a_full_pass_is_frozen_when_it_is_many_and_doubled(
    freezes: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(longlived, "_last_survivors", [0])
    monkeypatch.setattr(longlived.gc, "callbacks", [])
    longlived.enable()
    assert longlived.gc.callbacks == [longlived._after_full_pass]
    survivors: list[object] = []
    monkeypatch.setattr(longlived.gc, "get_objects", lambda generation=None: survivors)
    for count, generation in ((5_000, 2), (30_000, 1), (30_000, 2), (50_000, 2), (70_000, 2)):
        survivors[:] = [None] * count
        longlived._after_full_pass("stop", {"generation": generation})
    assert len(freezes) == 1 + 2  # at start, then 30,000 survivors, then 70,000 (not 50,000: not doubled)
