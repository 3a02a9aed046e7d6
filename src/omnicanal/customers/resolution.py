"""Identity resolution: which customer does a write with these identities belong to?

The :class:`Resolver` serves a whole batch of writes with one identity lookup, keeps new
customers and identities in memory, and writes them with one multi-row insert each.
Only the rare cases (two customers meet, a limit is hit) take the slower ORM path.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from omnicanal.customers.merging import (
    current_customer_id,
    identity_counts,
    limit_violation,
    merge_customers,
    open_conflict,
)
from omnicanal.customers.models import Customer, Identity
from omnicanal.db import uuid7
from omnicanal.driver_sql import bulk_insert, driver_rows, uuid_from_db
from omnicanal.errors import NotFound
from omnicanal.settings import Settings

IdentityKey = tuple[str, str]
_LOOKUP_CHUNK = 500


class _Counts(dict[str, int]):
    """Identities per type, like ``Counter`` (a missing type counts 0) but cheaper to create."""

    def __missing__(self, key: str) -> int:
        return 0


def implied(identities: Iterable[IdentityKey]) -> list[IdentityKey]:
    """A WhatsApp id is a phone number: it finds (and gives) the customer's phone identity too."""
    keys = list(identities)
    for kind, value in keys:
        if kind == "whatsapp":
            keys.append(("phone", value))
            break
    return keys


@dataclass
class Resolution:
    customer_id: uuid.UUID
    created: bool = False
    merged: list[uuid.UUID] = field(default_factory=list)


class Resolver:
    def __init__(self, session: Session, settings: Settings, *, now: datetime) -> None:
        self.session = session
        self.settings = settings
        self.now = now
        self._owner: dict[IdentityKey, uuid.UUID] = {}
        self._looked_up: set[IdentityKey] = set()
        self._new_customers: list[dict[str, Any]] = []
        self._new_identities: list[dict[str, Any]] = []
        self._created: set[uuid.UUID] = set()
        self._locked: set[uuid.UUID] = set()
        self._counts: dict[uuid.UUID, dict[str, int]] = {}
        self._rank = {kind: index for index, kind in enumerate(settings.identity_priority)}
        self._blocked = settings.blocked_identity_pairs

    # -- lookups -------------------------------------------------------------------------
    def prefetch(self, keys: Iterable[IdentityKey]) -> None:
        """Look up the owners of many writes' identities at once (each WhatsApp id's phone included)."""
        wanted: set[IdentityKey] = set()
        for kind, value in keys:
            wanted.add((kind, value))
            if kind == "whatsapp":
                wanted.add(("phone", value))
        wanted -= self._looked_up
        if not wanted:
            return
        self._looked_up |= wanted
        values = sorted({value for _, value in wanted})
        for start in range(0, len(values), _LOOKUP_CHUNK):
            chunk = values[start : start + _LOOKUP_CHUNK]
            sql = f"SELECT type, value, customer_id FROM identities WHERE value IN ({', '.join('?' * len(chunk))})"
            for kind, value, customer_id in driver_rows(self.session, sql, chunk):
                self._owner[(kind, value)] = uuid_from_db(customer_id)
        self._lock_owners()

    def _lock_owners(self) -> None:
        """On PostgreSQL, hold the owners found so far until commit (``FOR SHARE``).

        Another process merging one of them waits for this transaction, so its re-pointing
        also moves the rows written here; an owner merged before the lock was taken is
        followed to its survivor.
        """
        if self.session.get_bind().dialect.name != "postgresql":
            return
        pending = {owner for owner in self._owner.values() if owner not in self._locked and owner not in self._created}
        while pending:
            rows = self.session.execute(
                select(Customer.id, Customer.merged_into_id)
                .where(Customer.id.in_(sorted(pending)))
                .order_by(Customer.id)
                .with_for_update(read=True)
            ).all()
            self._locked |= pending
            moved = {customer_id: survivor for customer_id, survivor in rows if survivor is not None}
            if not moved:
                return
            for key, owner in list(self._owner.items()):
                while owner in moved:
                    owner = moved[owner]
                self._owner[key] = owner
            pending = set(moved.values()) - self._locked

    def is_blocked(self, key: IdentityKey) -> bool:
        return (key[0], key[1].lower()) in self._blocked

    # -- resolution ----------------------------------------------------------------------
    def resolve(
        self,
        identities: Sequence[IdentityKey],
        *,
        customer_id: uuid.UUID | None = None,
        source: str,
        event_id: str | None = None,
    ) -> Resolution:
        blocked = self._blocked
        keys = [key for key in dict.fromkeys(implied(identities)) if (key[0], key[1].lower()) not in blocked]
        if not self._looked_up.issuperset(keys):  # the batch's prefetch usually found them all
            self.prefetch(keys)
        owners: list[uuid.UUID] = []
        if customer_id is not None:
            current = self._current(customer_id)
            if current is None:
                raise NotFound(f"customer {customer_id} not found")
            owners.append(current)
        for key in keys:
            owner = self._owner.get(key)
            if owner is not None and owner not in owners:
                owners.append(owner)

        resolution: Resolution
        if not owners:
            target = self._new_customer()
            resolution = Resolution(target, created=True)
        elif len(owners) == 1:
            resolution = Resolution(owners[0])
        else:
            resolution = self._meet(owners, keys, event_id=event_id)
        for key in keys:
            if key not in self._owner:
                self._attach(resolution.customer_id, key, source=source, event_id=event_id)
        return resolution

    def flush(self) -> None:
        """Write the customers and identities created so far."""
        if self._new_customers:
            bulk_insert(self.session, Customer, self._new_customers)
            self._new_customers = []
        if self._new_identities:
            bulk_insert(self.session, Identity, self._new_identities)
            self._new_identities = []

    # -- internals -----------------------------------------------------------------------
    def _current(self, customer_id: uuid.UUID) -> uuid.UUID | None:
        if customer_id in self._created:
            return customer_id
        current = current_customer_id(self.session, customer_id)
        if current is not None and current not in self._locked:
            self._owner[("customer_id", str(current))] = current
            self._lock_owners()
            current = self._owner.pop(("customer_id", str(current)))
        return current

    def _new_customer(self) -> uuid.UUID:
        customer_id = uuid7()
        self._new_customers.append({"id": customer_id, "traits": {}, "created_at": self.now, "updated_at": self.now})
        self._created.add(customer_id)
        self._counts[customer_id] = _Counts()
        return customer_id

    def _count(self, customer_id: uuid.UUID) -> dict[str, int]:
        """The customer's identities per type, counted once from the database (after writing
        what this resolver holds) and kept up to date from then on."""
        if customer_id not in self._counts:
            self.flush()
            self._counts[customer_id] = identity_counts(self.session, customer_id)
        return self._counts[customer_id]

    def _attach(self, customer_id: uuid.UUID, key: IdentityKey, *, source: str, event_id: str | None) -> None:
        kind, value = key
        limit = self.settings.identity_limits.get(kind)
        if limit is not None and self._count(customer_id)[kind] >= limit:
            self.flush()
            open_conflict(
                self.session,
                customer_id=customer_id,
                other_customer_id=None,
                identity_type=kind,
                identity_value=value,
                reason=f"the customer already holds {limit} {kind} identity(ies), the most allowed",
                source_event_id=event_id,
            )
            return
        self._new_identities.append(
            {
                "id": uuid7(),
                "customer_id": customer_id,
                "source_customer_id": customer_id,
                "type": kind,
                "value": value,
                "source": source,
                "source_event_id": event_id,
                "added_at": self.now,
            }
        )
        self._owner[key] = customer_id
        # Counts not loaded yet are read from the database when first needed (after a flush),
        # so the common case (no limit on this type) costs no query.
        counts = self._counts.get(customer_id)
        if counts is not None:
            counts[kind] += 1

    def _priority(self, customer_id: uuid.UUID) -> tuple[int, uuid.UUID]:
        kinds = {kind for (kind, _), owner in self._owner.items() if owner == customer_id}
        kinds |= set(self._count(customer_id))
        best = min((self._rank.get(kind, len(self._rank)) for kind in kinds), default=len(self._rank))
        # uuid7 ids grow with time: on equal priority the older customer survives
        return best, customer_id

    def _meet(self, owners: list[uuid.UUID], keys: Sequence[IdentityKey], *, event_id: str | None) -> Resolution:
        """Two or more customers hold identities of one write: merge them where the rules allow."""
        self.flush()
        ranked = sorted(owners, key=self._priority)
        survivor, others = ranked[0], ranked[1:]
        resolution = Resolution(survivor)
        for other in others:
            linking = next((key for key in keys if self._owner.get(key) == other), None)
            kind, value = linking if linking else ("customer_id", str(other))
            violation = limit_violation(self.session, survivor, other, self.settings.identity_limits)
            if violation is not None:
                open_conflict(
                    self.session,
                    customer_id=survivor,
                    other_customer_id=other,
                    identity_type=kind,
                    identity_value=value,
                    reason=f"not merged automatically: {violation}",
                    source_event_id=event_id,
                )
                continue
            merge_customers(
                self.session,
                survivor_id=survivor,
                merged_id=other,
                reason=f"shared identity {kind}",
                trigger=f"event:{event_id}" if event_id else "write",
            )
            for owned_key, owner in list(self._owner.items()):
                if owner == other:
                    self._owner[owned_key] = survivor
            self._counts.pop(survivor, None)
            self._counts.pop(other, None)
            resolution.merged.append(other)
        return resolution
