from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any
from zoneinfo import available_timezones

from pydantic import BaseModel, ConfigDict, Field, field_validator

Scalar = str | int | float | bool | None
_TIMEZONES = frozenset(available_timezones())


class Address(BaseModel):
    model_config = ConfigDict(extra="forbid")

    line1: str | None = Field(default=None, max_length=200)
    line2: str | None = Field(default=None, max_length=200)
    city: str | None = Field(default=None, max_length=100)
    postal_code: str | None = Field(default=None, max_length=20)
    region: str | None = Field(default=None, max_length=100)
    country: str | None = Field(default=None, pattern=r"^[A-Z]{2}$", description="ISO 3166-1 alpha-2")


class Traits(BaseModel):
    """Profile traits. Unknown keys are refused; free-form data goes in ``attributes``."""

    model_config = ConfigDict(extra="forbid")

    first_name: str | None = Field(default=None, max_length=100)
    last_name: str | None = Field(default=None, max_length=150)
    language: str | None = Field(default=None, pattern=r"^[a-z]{2,3}(-[A-Z]{2})?$", examples=["es", "en-GB"])
    timezone: str | None = Field(default=None, examples=["Europe/Madrid"])
    birthday: date | None = None
    address: Address | None = None
    attributes: dict[str, Scalar | list[Scalar]] | None = None

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str | None) -> str | None:
        if value is not None and value not in _TIMEZONES:
            raise ValueError(f"unknown IANA timezone {value!r}")
        return value


class IdentityIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: str = Field(max_length=32)
    value: str = Field(max_length=320)


class IdentityOut(BaseModel):
    type: str
    value: str
    source: str
    added_at: datetime


class CustomerOut(BaseModel):
    id: uuid.UUID
    traits: dict[str, Any]
    identities: list[IdentityOut]
    created_at: datetime
    updated_at: datetime
    merged_into: uuid.UUID | None = None


class CustomerCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    traits: Traits = Field(default_factory=Traits)
    identities: list[IdentityIn] = Field(default_factory=list, max_length=50)


class IdentityAdd(IdentityIn):
    source: str = Field(default="api", max_length=64)


class CustomerPage(BaseModel):
    items: list[CustomerOut]
    next_cursor: str | None


class MergeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    other_customer_id: uuid.UUID
    force: bool = Field(default=False, description="merge even when identity limits would be exceeded")


class MergeOut(BaseModel):
    merge_id: uuid.UUID
    customer_id: uuid.UUID


class MergeRecord(BaseModel):
    id: uuid.UUID
    survivor_id: uuid.UUID
    merged_id: uuid.UUID
    reason: str
    trigger: str
    created_at: datetime
    undone_at: datetime | None
    undone_by: str | None
    state_before: dict[str, Any]


class ConflictOut(BaseModel):
    id: uuid.UUID
    customer_id: uuid.UUID
    other_customer_id: uuid.UUID | None
    identity_type: str
    identity_value: str
    reason: str
    source_event_id: str | None
    status: str
    created_at: datetime
    customer: CustomerOut | None = None
    other_customer: CustomerOut | None = None


class ConflictPage(BaseModel):
    items: list[ConflictOut]
    next_cursor: str | None


class ConflictDecision(BaseModel):
    model_config = ConfigDict(extra="forbid")

    action: str = Field(pattern=r"^(merge|dismiss)$")
