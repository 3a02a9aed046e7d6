from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from omnicanal.routing.service import WEEKDAYS

_CLOCK = r"^([01]\d|2[0-3]):[0-5]\d$"


class BusinessHours(BaseModel):
    model_config = ConfigDict(extra="forbid")

    timezone: str = "Europe/Madrid"
    weekly: dict[str, list[tuple[str, str]]] = Field(default_factory=dict)

    @field_validator("weekly")
    @classmethod
    def _days_and_times(cls, value: dict[str, list[tuple[str, str]]]) -> dict[str, list[tuple[str, str]]]:
        import re

        for day, spans in value.items():
            if day not in WEEKDAYS:
                raise ValueError(f"unknown day {day!r}; use {', '.join(WEEKDAYS)}")
            for start, end in spans:
                if not (re.match(_CLOCK, start) and re.match(_CLOCK, end)) or start >= end:
                    raise ValueError(f"{day}: {start}-{end} is not a span like 09:00-18:00")
        return value

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        from zoneinfo import available_timezones

        if value not in available_timezones():
            raise ValueError(f"unknown IANA timezone {value!r}")
        return value


class TeamIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=120)
    strategy: str = Field(default="least_loaded", pattern=r"^(least_loaded|round_robin)$")
    business_hours: BusinessHours | None = None
    out_of_hours_reply: str = Field(default="", max_length=2000)
    sla_first_response_minutes: int | None = Field(default=None, ge=1, le=100_000)
    sla_resolution_minutes: int | None = Field(default=None, ge=1, le=1_000_000)
    members: list[uuid.UUID] = Field(default_factory=list)


class TeamOut(BaseModel):
    id: uuid.UUID
    name: str
    strategy: str
    business_hours: dict[str, Any]
    out_of_hours_reply: str
    sla_first_response_minutes: int | None
    sla_resolution_minutes: int | None
    members: list[uuid.UUID]
    created_at: datetime


class AgentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    skills: list[str] | None = None
    languages: list[str] | None = None
    capacity: int | None = Field(default=None, ge=0, le=1000)
    online: bool | None = None


class AgentOut(BaseModel):
    user_id: uuid.UUID
    name: str
    email: str
    skills: list[str]
    languages: list[str]
    capacity: int
    online: bool
    open_count: int
    teams: list[uuid.UUID]


class RuleIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=120)
    position: int = 100
    team_id: uuid.UUID
    channels: list[str] = Field(default_factory=list)
    languages: list[str] = Field(default_factory=list)
    tiers: list[str] = Field(default_factory=list)
    keywords: list[str] = Field(default_factory=list)
    active: bool = True


class RuleOut(BaseModel):
    id: uuid.UUID
    name: str
    position: int
    team_id: uuid.UUID
    conditions: dict[str, Any]
    active: bool
