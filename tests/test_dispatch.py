"""Domain events held for a batch reach a handler's ``many`` form once, after the batch's commands."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import pytest

from omnicanal import dispatch
from omnicanal.db import Database


@pytest.fixture
def heard() -> Iterator[list[Any]]:
    calls: list[Any] = []

    def one(_: Any, payload: dict[str, Any]) -> None:
        calls.append(("one", payload["n"]))

    def many(session: Any, payloads: Sequence[dict[str, Any]]) -> None:
        calls.append(("many", [p["n"] for p in payloads]))
        dispatch.publish(session, "test.followed", {"n": len(payloads)})

    def followed(_: Any, payload: dict[str, Any]) -> None:
        calls.append(("followed", payload["n"]))

    dispatch.subscribe("test.happened", one, many=many)
    dispatch.subscribe("test.followed", followed, many=lambda s, ps: calls.append(("followed many", len(ps))))
    try:
        yield calls
    finally:
        dispatch._handlers.pop("test.happened")
        dispatch._handlers.pop("test.followed")
        dispatch._many.pop(one)
        dispatch._many.pop(followed)


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_a_batch_delivers_its_events_together_at_its_end(db: Database, heard: list[Any]) -> None:
    with db.write() as session:
        dispatch.publish(session, "test.happened", {"n": 0})
        with dispatch.batched(session):
            for n in (1, 2):
                with dispatch.batched(session):  # nested: the outer batch delivers
                    dispatch.publish(session, "test.happened", {"n": n})
            assert heard == [("one", 0)]
    # what the held handler published after the batch ended ran at once, in its plain form
    assert heard == [("one", 0), ("many", [1, 2]), ("followed", 2)]


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_a_batch_that_fails_delivers_nothing(db: Database, heard: list[Any]) -> None:
    with pytest.raises(RuntimeError), db.write() as session, dispatch.batched(session):
        dispatch.publish(session, "test.happened", {"n": 1})
        raise RuntimeError("refused")
    with db.write() as session, dispatch.batched(session):
        pass
    assert heard == []
