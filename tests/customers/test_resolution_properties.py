"""Property tests of identity resolution and merge undo, against the real services on SQLite.

Every example gets a fresh migrated SQLite file (a copy of the session's template), so the
examples do not see each other's customers.
"""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from sqlalchemy import select
from sqlalchemy.orm import Session

from omnicanal import handlers
from omnicanal.customers.identities import normalize
from omnicanal.customers.merging import current_customer_id
from omnicanal.customers.models import Customer, Identity, Merge
from omnicanal.customers.service import merge_manually, undo, update_traits
from omnicanal.db import Database, create_database
from omnicanal.settings import Settings
from omnicanal.timeline.models import Event
from omnicanal.timeline.service import ingest, prepare_event

SYSTEM_EVENT_TYPES = frozenset({"customer.merged", "customer.merge_undone", "profile.updated"})
T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)

PROPERTY_SETTINGS = hsettings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

Key = tuple[str, str]  # (type, normalized value)


@dataclass(frozen=True)
class PoolEntry:
    key: Key
    spellings: tuple[str, ...]


# A small pool, so that events often share identities. Phones come in several spellings
# that normalize to one E.164 number; emails in several cases.
POOL: tuple[PoolEntry, ...] = (
    *(
        PoolEntry(("email", f"p{i}@example.com"), (f"p{i}@example.com", f"P{i}@Example.COM", f" p{i}@EXAMPLE.com "))
        for i in range(4)
    ),
    *(
        PoolEntry(
            ("phone", f"+3461234560{i}"),
            (f"+3461234560{i}", f"61234560{i}", f"0034 612 34 56 0{i}", f"+34 612-345-60{i}"),
        )
        for i in range(4)
    ),
    *(PoolEntry(("device_id", f"dev-{i}"), (f"dev-{i}",)) for i in range(4)),
)


@pytest.fixture(autouse=True, scope="module")
def _platform_handlers() -> None:
    """The reactions create_app wires (merge events on the timeline), as in production."""
    handlers.register()


@contextmanager
def fresh_database(template: Path) -> Iterator[Database]:
    directory = Path(tempfile.mkdtemp(prefix="omnicanal-prop-"))
    path = directory / "omnicanal.db"
    shutil.copy(template, path)
    database = create_database(
        Settings(
            database_url=f"sqlite:///{path}",
            environment="test",
            identity_limits={},
            blocked_identities=[],
            db_pool_size=2,
        )
    )
    try:
        yield database
    finally:
        database.dispose()
        shutil.rmtree(directory, ignore_errors=True)


def raw_event(event_id: str, identities: Sequence[tuple[str, str]], *, minute: int) -> dict[str, Any]:
    return {
        "id": event_id,
        "type": "page.viewed",
        "channel": "web",
        "occurred_at": (T0 + timedelta(minutes=minute)).isoformat(),
        "identities": [{"type": kind, "value": value} for kind, value in identities],
        "properties": {"n": minute},
    }


def ingest_raw(database: Database, raws: Sequence[dict[str, Any]]) -> None:
    settings = database.settings
    now = datetime.now(UTC)
    prepared = [prepare_event(raw, settings=settings, now=now) for raw in raws]
    with database.write() as session:
        results = ingest(session, prepared, settings=settings)
    assert all(r.error is None for r in results), [r.error for r in results]


def partition(database: Database) -> frozenset[frozenset[Key]]:
    """The grouping of identities into live customers, checking that owners are live."""
    with database.read() as session:
        rows = session.execute(select(Identity.type, Identity.value, Identity.customer_id)).all()
        merged_owners = set(
            session.scalars(
                select(Customer.id).where(Customer.id.in_({r[2] for r in rows}), Customer.merged_into_id.is_not(None))
            )
        )
    assert not merged_owners, "identities still point at merged-away customers"
    groups: dict[uuid.UUID, set[Key]] = {}
    for kind, value, owner in rows:
        groups.setdefault(owner, set()).add((kind, value))
    return frozenset(frozenset(group) for group in groups.values())


def connected_components(events: Sequence[Sequence[Key]]) -> frozenset[frozenset[Key]]:
    parent: dict[Key, Key] = {}

    def find(key: Key) -> Key:
        parent.setdefault(key, key)
        while parent[key] != key:
            parent[key] = parent[parent[key]]
            key = parent[key]
        return key

    for keys in events:
        for key in keys:
            find(key)
        for key in keys[1:]:
            parent[find(key)] = find(keys[0])
    groups: dict[Key, set[Key]] = {}
    for key in parent:
        groups.setdefault(find(key), set()).add(key)
    return frozenset(frozenset(group) for group in groups.values())


def events_follow_their_identities(database: Database, events: dict[str, Sequence[Key]]) -> None:
    """Every stored event belongs to the live customer that owns its identities."""
    with database.read() as session:
        owner_of = {
            (k, v): c for k, v, c in session.execute(select(Identity.type, Identity.value, Identity.customer_id))
        }
        stored = {
            e: c
            for e, c in session.execute(
                select(Event.event_id, Event.customer_id).where(Event.type.not_in(SYSTEM_EVENT_TYPES))
            )
        }
    assert set(stored) == set(events)
    for event_id, keys in events.items():
        assert {owner_of[key] for key in keys} == {stored[event_id]}, event_id


# -- (a) order independence ----------------------------------------------------------------

pool_index = st.integers(min_value=0, max_value=len(POOL) - 1)
event_spec = st.lists(st.tuples(pool_index, st.integers(min_value=0, max_value=3)), min_size=1, max_size=3).filter(
    lambda items: len({i for i, _ in items}) == len(items)
)


@PROPERTY_SETTINGS
@given(specs=st.lists(event_spec, min_size=1, max_size=8), data=st.data())
def test_grouping_is_independent_of_order_and_batching(
    sqlite_template: Path, specs: list[list[tuple[int, int]]], data: st.DataObject
) -> None:
    raws = []
    keys_of: dict[str, list[Key]] = {}
    for n, spec in enumerate(specs):
        typed = [(POOL[i].key[0], POOL[i].spellings[s % len(POOL[i].spellings)]) for i, s in spec]
        raws.append(raw_event(f"evt-{n}", typed, minute=n))
        keys_of[f"evt-{n}"] = [POOL[i].key for i, _ in spec]
    order = data.draw(st.permutations(range(len(raws))), label="order")
    expected = connected_components(list(keys_of.values()))

    # one batch, in the order given
    with fresh_database(sqlite_template) as database:
        ingest_raw(database, raws)
        assert partition(database) == expected
        events_follow_their_identities(database, keys_of)

    # one transaction per event, in another order
    with fresh_database(sqlite_template) as database:
        for index in order:
            ingest_raw(database, [raws[index]])
        assert partition(database) == expected
        events_follow_their_identities(database, keys_of)

    # one batch, in that other order
    with fresh_database(sqlite_template) as database:
        ingest_raw(database, [raws[index] for index in order])
        assert partition(database) == expected
        events_follow_their_identities(database, keys_of)


# -- (b) undo restores exactly -------------------------------------------------------------


@dataclass(frozen=True)
class Snapshot:
    identities: frozenset[Key]
    traits: dict[str, Any]
    events: frozenset[str]


def canonical_traits(traits: dict[str, Any]) -> dict[str, Any]:
    # Undo leaves an empty "attributes" object behind on a survivor that had none; that bug is
    # pinned by test_undo_leaves_no_empty_attributes_behind below. Compare everything else exactly.
    return {k: v for k, v in traits.items() if not (k == "attributes" and v == {})}


def snapshot(session: Session, customer_id: uuid.UUID) -> Snapshot:
    customer = session.get(Customer, customer_id)
    assert customer is not None
    identities = frozenset(
        session.execute(select(Identity.type, Identity.value).where(Identity.customer_id == customer_id))
    )
    events = frozenset(
        session.scalars(
            select(Event.event_id).where(Event.customer_id == customer_id, Event.type.not_in(SYSTEM_EVENT_TYPES))
        )
    )
    return Snapshot(identities, canonical_traits(dict(customer.traits or {})), events)


def take(database: Database, customer_id: uuid.UUID) -> Snapshot:
    with database.read() as session:
        return snapshot(session, customer_id)


KINDS = ("email", "phone", "device_id", "external")


def person_identity(person: int, kind: str) -> tuple[str, str]:
    """A typed identity of one person (the people never share identities)."""
    return {
        "email": ("email", f"Person{person}@Example.com"),
        "phone": ("phone", f"6{12 + person}000{person:03d}"),
        "device_id": ("device_id", f"device-{person}"),
        "external": ("external", f"POS:{person}"),
    }[kind]


attribute_values = st.one_of(st.integers(-5, 5), st.sampled_from(["gold", "silver"]), st.booleans())
traits_strategy = st.fixed_dictionaries(
    {},
    optional={
        "first_name": st.sampled_from(["Ana", "Luis", "Marta"]),
        "last_name": st.sampled_from(["Pérez", "Soto"]),
        "language": st.sampled_from(["es", "en", "ca"]),
        "attributes": st.dictionaries(st.sampled_from(["tier", "vip", "store"]), attribute_values, max_size=2),
    },
)


@st.composite
def person_strategy(draw: st.DrawFn) -> dict[str, Any]:
    kinds = draw(st.lists(st.sampled_from(KINDS), min_size=1, max_size=3, unique=True))
    extra_events = draw(
        st.lists(st.lists(st.sampled_from(kinds), min_size=1, max_size=len(kinds), unique=True), max_size=2)
    )
    return {"kinds": kinds, "events": [kinds, *extra_events], "traits": draw(traits_strategy)}


def build_people(database: Database, people: list[dict[str, Any]]) -> list[uuid.UUID]:
    """One customer per person, made through events and a profile update."""
    ids = []
    minute = 0
    for index, person in enumerate(people):
        raws = []
        for n, kinds in enumerate(person["events"]):
            raws.append(raw_event(f"p{index}-e{n}", [person_identity(index, k) for k in kinds], minute=minute))
            minute += 1
        ingest_raw(database, raws)
        first_kind, first_value = raws[0]["identities"][0].values()
        with database.read() as session:
            value = normalize(first_kind, first_value, database.settings.default_region)
            customer_id = session.scalar(
                select(Identity.customer_id).where(Identity.type == first_kind, Identity.value == value)
            )
        assert customer_id is not None
        if person["traits"]:
            with database.write() as session:
                update_traits(session, customer_id=customer_id, changes=person["traits"], actor="test")
        ids.append(customer_id)
    assert len(set(ids)) == len(people)
    return ids


def do_merge(
    database: Database,
    *,
    mode: str,
    keep: uuid.UUID,
    other: uuid.UUID,
    link: tuple[tuple[str, str], tuple[str, str]],
    event_id: str,
) -> tuple[Merge, str | None]:
    """Merge two live customers, by hand (``keep`` survives) or by an event linking them."""
    if mode == "manual":
        with database.write() as session:
            merge = merge_manually(
                session,
                customer_id=keep,
                other_customer_id=other,
                force=False,
                settings=database.settings,
                actor="test",
            )
            session.expunge(merge)
        return merge, None
    ingest_raw(database, [raw_event(event_id, list(link), minute=500)])
    with database.read() as session:
        merge = session.scalars(
            select(Merge).where(Merge.undone_at.is_(None)).order_by(Merge.created_at.desc())
        ).first()
        assert merge is not None
        assert {merge.survivor_id, merge.merged_id} == {keep, other}
        session.expunge(merge)
    return merge, event_id


def undo_merge(database: Database, merge_id: uuid.UUID) -> None:
    with database.write() as session:
        undo(session, merge_id=merge_id, actor="test")


@PROPERTY_SETTINGS
@given(
    people=st.lists(person_strategy(), min_size=2, max_size=2),
    mode=st.sampled_from(["manual", "auto"]),
    keep_first=st.booleans(),
    data=st.data(),
)
def test_undo_restores_both_customers_exactly(
    sqlite_template: Path, people: list[dict[str, Any]], mode: str, keep_first: bool, data: st.DataObject
) -> None:
    with fresh_database(sqlite_template) as database:
        a, b = build_people(database, people)
        keep, other = (a, b) if keep_first else (b, a)
        before = {a: take(database, a), b: take(database, b)}
        link = (
            person_identity(0, data.draw(st.sampled_from(people[0]["kinds"]), label="link0")),
            person_identity(1, data.draw(st.sampled_from(people[1]["kinds"]), label="link1")),
        )
        merge, link_event = do_merge(database, mode=mode, keep=keep, other=other, link=link, event_id="link")
        if mode == "manual":
            assert (merge.survivor_id, merge.merged_id) == (keep, other)

        merged_view = take(database, merge.survivor_id)
        assert merged_view.identities == before[a].identities | before[b].identities
        assert before[a].events | before[b].events <= merged_view.events

        undo_merge(database, merge.id)

        with database.read() as session:
            for customer_id in (a, b):
                customer = session.get(Customer, customer_id)
                assert customer is not None and customer.merged_into_id is None
        after = {a: take(database, a), b: take(database, b)}
        for customer_id in (a, b):
            expected = before[customer_id]
            if link_event is not None and customer_id == merge.survivor_id:
                # the linking event was written to the survivor and stays with it
                expected = Snapshot(expected.identities, expected.traits, expected.events | {link_event})
            assert after[customer_id] == expected


@PROPERTY_SETTINGS
@given(
    people=st.lists(person_strategy(), min_size=3, max_size=3),
    modes=st.tuples(st.sampled_from(["manual", "auto"]), st.sampled_from(["manual", "auto"])),
    data=st.data(),
)
def test_undoing_an_earlier_merge_after_a_later_one(
    sqlite_template: Path, people: list[dict[str, Any]], modes: tuple[str, str], data: st.DataObject
) -> None:
    """A←B then A←C; undo the first: B comes back exactly, C stays merged into A."""
    with fresh_database(sqlite_template) as database:
        a, b, c = build_people(database, people)
        before = {x: take(database, x) for x in (a, b, c)}

        def link(i: int, j: int) -> tuple[tuple[str, str], tuple[str, str]]:
            return (
                person_identity(i, data.draw(st.sampled_from(people[i]["kinds"]))),
                person_identity(j, data.draw(st.sampled_from(people[j]["kinds"]))),
            )

        first, link1 = do_merge(database, mode=modes[0], keep=a, other=b, link=link(0, 1), event_id="link-1")
        survivor1 = first.survivor_id
        second, link2 = do_merge(database, mode=modes[1], keep=survivor1, other=c, link=link(0, 2), event_id="link-2")
        final = second.survivor_id
        links = {e for e in (link1, link2) if e is not None}

        undo_merge(database, first.id)

        returned = first.merged_id
        with database.read() as session:
            assert session.get(Customer, returned).merged_into_id is None  # type: ignore[union-attr]
            assert current_customer_id(session, second.merged_id) == final
        # the customer merged away first is restored exactly ...
        assert take(database, returned) == before[returned]
        # ... and the other two stay together, with everything of theirs and nothing of its
        stayed = [x for x in (a, b, c) if x != returned]
        together = take(database, final)
        assert together.identities == frozenset().union(*(before[x].identities for x in stayed))
        assert together.events - links == frozenset().union(*(before[x].events for x in stayed))

        # undoing the second merge too gives back the three customers of the start
        undo_merge(database, second.id)
        for customer_id in (a, b, c):
            snap = take(database, customer_id)
            assert snap.identities == before[customer_id].identities
            assert snap.traits == before[customer_id].traits
            assert snap.events - links == before[customer_id].events


# -- pinned bugs -----------------------------------------------------------------------------


def _two_customers(database: Database, traits_a: dict[str, Any], traits_b: dict[str, Any]) -> tuple[uuid.UUID, ...]:
    people = [
        {"kinds": ["email"], "events": [["email"]], "traits": traits_a},
        {"kinds": ["email"], "events": [["email"]], "traits": traits_b},
    ]
    return tuple(build_people(database, people))


def test_undo_leaves_no_empty_attributes_behind(sqlite_template: Path) -> None:
    with fresh_database(sqlite_template) as database:
        a, b = _two_customers(database, {"first_name": "Ana"}, {"attributes": {"tier": "gold"}})
        with database.write() as session:
            merge = merge_manually(
                session, customer_id=a, other_customer_id=b, force=False, settings=database.settings, actor="t"
            )
            merge_id = merge.id
        undo_merge(database, merge_id)
        with database.read() as session:
            survivor = session.get(Customer, a)
            assert survivor is not None
            assert survivor.traits == {"first_name": "Ana"}


def test_undo_of_earlier_merge_keeps_the_traits_of_customers_still_merged(sqlite_template: Path) -> None:
    with fresh_database(sqlite_template) as database:
        people = [
            {"kinds": ["email"], "events": [["email"]], "traits": {}},
            {"kinds": ["email"], "events": [["email"]], "traits": {"first_name": "Bea"}},
            {"kinds": ["email"], "events": [["email"]], "traits": {"first_name": "Carla"}},
        ]
        a, b, c = build_people(database, people)
        with database.write() as session:
            first = merge_manually(
                session, customer_id=a, other_customer_id=b, force=False, settings=database.settings, actor="t"
            ).id
            merge_manually(
                session, customer_id=a, other_customer_id=c, force=False, settings=database.settings, actor="t"
            )
        undo_merge(database, first)
        with database.read() as session:
            survivor = session.get(Customer, a)
            assert survivor is not None
            # A holds C's profile now, as if B had never been merged
            assert survivor.traits == {"first_name": "Carla"}
