"""Teams, agents and the rules that route conversations to them."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, ForeignKey, Integer, String, Text, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from omnicanal.db import Base, JSONType, UTCDateTime, utcnow, uuid7


class Team(Base):
    __tablename__ = "teams"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid7)
    name: Mapped[str] = mapped_column(String(120), unique=True)
    strategy: Mapped[str] = mapped_column(String(20), default="least_loaded")
    # {"timezone": "Europe/Madrid", "weekly": {"mon": [["09:00", "18:00"]], ...}}; empty = always open
    business_hours: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    out_of_hours_reply: Mapped[str] = mapped_column(Text, default="")
    sla_first_response_minutes: Mapped[int | None] = mapped_column(Integer, nullable=True)
    sla_resolution_minutes: Mapped[int | None] = mapped_column(Integer, nullable=True)
    last_assigned_user_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class TeamMember(Base):
    __tablename__ = "team_members"

    team_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("teams.id"), primary_key=True)
    user_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("staff_users.id"), primary_key=True, index=True)


class AgentProfile(Base):
    """An agent's routing state. ``open_count`` changes only by conditional updates."""

    __tablename__ = "agent_profiles"

    user_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("staff_users.id"), primary_key=True)
    skills: Mapped[list[str]] = mapped_column(JSONType, default=list)
    languages: Mapped[list[str]] = mapped_column(JSONType, default=list)
    capacity: Mapped[int] = mapped_column(Integer, default=5)
    online: Mapped[bool] = mapped_column(Boolean, default=False)
    open_count: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class RoutingRule(Base):
    """First matching rule (lowest ``position``) picks the team.

    ``conditions``: {"channels": [...], "languages": [...], "tiers": [...], "keywords": [...]};
    an absent or empty list matches anything.
    """

    __tablename__ = "routing_rules"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid7)
    name: Mapped[str] = mapped_column(String(120))
    position: Mapped[int] = mapped_column(Integer, default=100)
    team_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("teams.id"))
    conditions: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
