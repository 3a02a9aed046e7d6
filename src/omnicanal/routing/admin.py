"""Configuring teams, agents and routing rules (the supervisor's side of routing)."""

from __future__ import annotations

import uuid
from collections import defaultdict

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from omnicanal.access.models import StaffUser
from omnicanal.conversations.notify import announce_assigned
from omnicanal.db import utcnow
from omnicanal.errors import Conflict, NotFound, ValidationFailed
from omnicanal.routing.models import AgentProfile, RoutingRule, Team, TeamMember
from omnicanal.routing.schemas import AgentIn, AgentOut, RuleIn, TeamIn, TeamOut
from omnicanal.routing.service import drain_queue


def _members(session: Session, team_ids: list[uuid.UUID]) -> dict[uuid.UUID, list[uuid.UUID]]:
    members: dict[uuid.UUID, list[uuid.UUID]] = defaultdict(list)
    for team_id, user_id in session.execute(
        select(TeamMember.team_id, TeamMember.user_id).where(TeamMember.team_id.in_(team_ids))
    ):
        members[team_id].append(user_id)
    return members


def team_out(session: Session, team: Team) -> TeamOut:
    return TeamOut(
        id=team.id, name=team.name, strategy=team.strategy, business_hours=team.business_hours or {},
        out_of_hours_reply=team.out_of_hours_reply, sla_first_response_minutes=team.sla_first_response_minutes,
        sla_resolution_minutes=team.sla_resolution_minutes, members=sorted(_members(session, [team.id])[team.id]),
        created_at=team.created_at,
    )  # fmt: skip


def _ensure_agent(session: Session, user_id: uuid.UUID, field: str) -> AgentProfile:
    user = session.get(StaffUser, user_id)
    if user is None or not user.active:
        raise ValidationFailed.on_field(field, f"no active staff user {user_id}")
    profile = session.get(AgentProfile, user_id)
    if profile is None:
        profile = AgentProfile(user_id=user_id, skills=[], languages=[], capacity=5, online=False, open_count=0)
        session.add(profile)
        session.flush()
    return profile


def save_team(session: Session, data: TeamIn, *, team_id: uuid.UUID | None = None) -> Team:
    clash = session.scalar(select(Team.id).where(Team.name == data.name))
    if clash is not None and clash != team_id:
        raise Conflict(f"a team named {data.name!r} already exists")
    team = Team() if team_id is None else session.get(Team, team_id)
    if team is None:
        raise NotFound(f"team {team_id} not found")
    team.name = data.name
    team.strategy = data.strategy
    team.business_hours = data.business_hours.model_dump(mode="json") if data.business_hours else {}
    team.out_of_hours_reply = data.out_of_hours_reply
    team.sla_first_response_minutes = data.sla_first_response_minutes
    team.sla_resolution_minutes = data.sla_resolution_minutes
    session.add(team)
    session.flush()
    session.execute(delete(TeamMember).where(TeamMember.team_id == team.id))
    for index, user_id in enumerate(dict.fromkeys(data.members)):
        _ensure_agent(session, user_id, f"members[{index}]")
        session.add(TeamMember(team_id=team.id, user_id=user_id))
    session.flush()
    return team


def list_teams(session: Session) -> list[TeamOut]:
    return [team_out(session, t) for t in session.scalars(select(Team).order_by(Team.name))]


def update_agent(
    session: Session, user_id: uuid.UUID, data: AgentIn, *, actor: str = "routing"
) -> tuple[AgentProfile, list[uuid.UUID]]:
    """Change an agent's routing profile; an agent coming online (or given room) takes queued work."""
    profile = _ensure_agent(session, user_id, "user_id")
    if data.skills is not None:
        profile.skills = sorted({s.strip().lower() for s in data.skills if s.strip()})
    if data.languages is not None:
        profile.languages = sorted({lang.strip().lower() for lang in data.languages if lang.strip()})
    if data.capacity is not None:
        profile.capacity = data.capacity
    if data.online is not None:
        profile.online = data.online
    profile.updated_at = utcnow()
    session.flush()
    assigned = drain_queue(session, user_id) if profile.online else []
    announce_assigned(session, assigned, actor=actor)
    return profile, assigned


def list_agents(session: Session) -> list[AgentOut]:
    rows = session.execute(select(AgentProfile, StaffUser).join(StaffUser, StaffUser.id == AgentProfile.user_id))
    teams: dict[uuid.UUID, list[uuid.UUID]] = defaultdict(list)
    for team_id, user_id in session.execute(select(TeamMember.team_id, TeamMember.user_id)):
        teams[user_id].append(team_id)
    return [
        AgentOut(
            user_id=profile.user_id,
            name=user.display_name,
            email=user.email,
            skills=list(profile.skills or []),
            languages=list(profile.languages or []),
            capacity=profile.capacity,
            online=profile.online,
            open_count=profile.open_count,
            teams=sorted(teams[profile.user_id]),
        )
        for profile, user in sorted(rows, key=lambda row: row[1].display_name)
    ]


def save_rule(session: Session, data: RuleIn) -> RoutingRule:
    if session.get(Team, data.team_id) is None:
        raise ValidationFailed.on_field("team_id", f"no team {data.team_id}")
    rule = RoutingRule(
        name=data.name, position=data.position, team_id=data.team_id, active=data.active,
        conditions={
            "channels": data.channels, "languages": data.languages, "tiers": data.tiers, "keywords": data.keywords,
        },
    )  # fmt: skip
    session.add(rule)
    session.flush()
    return rule


def list_rules(session: Session) -> list[RoutingRule]:
    return list(session.scalars(select(RoutingRule).order_by(RoutingRule.position, RoutingRule.created_at)))
