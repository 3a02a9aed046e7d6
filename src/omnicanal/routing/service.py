"""Routing: which team a conversation goes to, and which agent in it takes it.

An agent's ``open_count`` is a counter under concurrency: it only changes through
conditional updates (``... WHERE open_count < capacity``), so two conversations racing for an
agent's last free slot cannot both win it.
"""

from __future__ import annotations

import unicodedata
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar, cast
from zoneinfo import ZoneInfo

from sqlalchemy import Table, bindparam, select, update
from sqlalchemy.orm import Session

from omnicanal.conversations.models import Conversation
from omnicanal.db import utcnow
from omnicanal.routing.models import AgentProfile, RoutingRule, Team, TeamMember

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_QUEUED = ("open", "pending")


def _fold(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text.lower())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def rule_matches(conditions: dict[str, Any], *, channel: str, language: str | None, tier: str | None,
                 text: str) -> bool:  # fmt: skip
    channels = conditions.get("channels") or []
    if channels and channel not in channels:
        return False
    languages = conditions.get("languages") or []
    if languages and (language or "") not in languages:
        return False
    tiers = conditions.get("tiers") or []
    if tiers and (tier or "") not in tiers:
        return False
    keywords = conditions.get("keywords") or []
    if keywords:
        folded = _fold(text)
        if not any(_fold(word) in folded for word in keywords):
            return False
    return True


def _active_rules(session: Session) -> list[RoutingRule]:
    return list(
        session.scalars(
            select(RoutingRule)
            .where(RoutingRule.active.is_(True))
            .order_by(RoutingRule.position, RoutingRule.created_at)
        )
    )


def pick_team(session: Session, *, channel: str, language: str | None, tier: str | None, text: str) -> Team | None:
    for rule in _active_rules(session):
        if rule_matches(rule.conditions or {}, channel=channel, language=language, tier=tier, text=text):
            return session.get(Team, rule.team_id)
    return None


def is_within_business_hours(team: Team, when: datetime) -> bool:
    hours = team.business_hours or {}
    weekly = hours.get("weekly")
    if not weekly:
        return True
    local = when.astimezone(ZoneInfo(hours.get("timezone", "UTC")))
    clock = local.strftime("%H:%M")
    return any(start <= clock < end for start, end in weekly.get(WEEKDAYS[local.weekday()], []))


def take_slot(session: Session, user_id: uuid.UUID, *, force: bool = False) -> bool:
    stmt = update(AgentProfile).where(AgentProfile.user_id == user_id)
    if not force:
        stmt = stmt.where(AgentProfile.online.is_(True), AgentProfile.open_count < AgentProfile.capacity)
    result = session.execute(stmt.values(open_count=AgentProfile.open_count + 1))
    return bool(result.rowcount)  # type: ignore[attr-defined]


def _free_slot(session: Session, user_id: uuid.UUID) -> None:
    session.execute(
        update(AgentProfile)
        .where(AgentProfile.user_id == user_id, AgentProfile.open_count > 0)
        .values(open_count=AgentProfile.open_count - 1)
    )


@dataclass
class _Agent:
    user_id: uuid.UUID
    online: bool
    open_count: int
    capacity: int
    languages: list[str]


_Member = TypeVar("_Member", AgentProfile, _Agent)


def _candidates(session: Session, team: Team, language: str | None) -> list[AgentProfile]:
    agents = list(
        session.scalars(
            select(AgentProfile)
            .join(TeamMember, TeamMember.user_id == AgentProfile.user_id)
            .where(
                TeamMember.team_id == team.id,
                AgentProfile.online.is_(True),
                AgentProfile.open_count < AgentProfile.capacity,
            )
            .order_by(AgentProfile.user_id)
        )
    )
    return _in_turn(agents, team, language)


def _in_turn(agents: list[_Member], team: Team, language: str | None) -> list[_Member]:
    """Free agents (in user id order) in the order the team's strategy offers them the conversation."""
    if language:
        speakers = [a for a in agents if not a.languages or language in a.languages]
        agents = speakers or agents
    if team.strategy == "round_robin":
        last = team.last_assigned_user_id
        after = [a for a in agents if last is None or a.user_id > last]
        before = [a for a in agents if last is not None and a.user_id <= last]
        return after + before
    return sorted(agents, key=lambda a: (a.open_count / max(a.capacity, 1), a.open_count, a.user_id))


def assign_within_team(session: Session, conversation: Conversation, team: Team) -> uuid.UUID | None:
    """Give the conversation to the team's best free agent; it stays queued if nobody is free."""
    conversation.team_id = team.id
    for agent in _candidates(session, team, conversation.language):
        if take_slot(session, agent.user_id):
            conversation.assignee_id = agent.user_id
            team.last_assigned_user_id = agent.user_id
            return agent.user_id
    return None


def apply_sla(conversation: Conversation, team: Team | None, *, now: datetime) -> None:
    if team is None:
        return
    if team.sla_first_response_minutes and conversation.first_response_at is None:
        conversation.first_response_due_at = now + timedelta(minutes=team.sla_first_response_minutes)
    if team.sla_resolution_minutes:
        conversation.resolution_due_at = now + timedelta(minutes=team.sla_resolution_minutes)


def route_new(
    session: Session,
    conversation: Conversation,
    *,
    channel: str,
    text: str,
    tier: str | None,
    now: datetime,
    batch: BatchRouting | None = None,
) -> Team | None:
    """``batch``: routing many new conversations in one transaction (see :class:`BatchRouting`)."""
    if batch is not None:
        return batch.route(conversation, channel=channel, text=text, tier=tier, now=now)
    team = pick_team(session, channel=channel, language=conversation.language, tier=tier, text=text)
    if team is None:
        return None
    assign_within_team(session, conversation, team)
    apply_sla(conversation, team, now=now)
    return team


_agent_profiles = cast(Table, AgentProfile.__table__)
# Core statements (no ORM synchronization): BatchRouting keeps its own copy of the counters.
_TAKE_FREE_SLOT = (
    update(_agent_profiles)
    .where(
        _agent_profiles.c.user_id == bindparam("agent_id"),
        _agent_profiles.c.online.is_(True),
        _agent_profiles.c.open_count < _agent_profiles.c.capacity,
    )
    .values(open_count=_agent_profiles.c.open_count + 1)
)


class BatchRouting:
    """Routing many new conversations in one transaction: rules, teams and members read once.

    Same decisions as :func:`route_new` one conversation after the other. The members' rows are read
    once per team; the conditional update of ``take_slot`` stays the authority (it rechecks online and
    capacity in the database), and a slot taken here is counted in the copy, so later conversations of
    the batch see it. Call with autoflush off: nothing read here depends on the batch's pending rows.
    """

    def __init__(self, session: Session) -> None:
        self.session = session
        self._rules: list[RoutingRule] | None = None
        self._teams: dict[uuid.UUID, Team] = {}  # strong references: the identity map alone may drop them
        self._members: dict[uuid.UUID, list[_Agent]] = {}

    def team(self, team_id: uuid.UUID) -> Team | None:
        team = self._teams.get(team_id)
        if team is None:
            team = self.session.get(Team, team_id)
            if team is not None:
                self._teams[team_id] = team
        return team

    def route(self, conversation: Conversation, *, channel: str, text: str, tier: str | None,
              now: datetime) -> Team | None:  # fmt: skip
        if self._rules is None:
            self._rules = _active_rules(self.session)
        team = None
        for rule in self._rules:
            if rule_matches(rule.conditions or {}, channel=channel, language=conversation.language, tier=tier,
                            text=text):  # fmt: skip
                team = self.team(rule.team_id)
                break
        if team is None:
            return None
        conversation.team_id = team.id
        for agent in self._candidates(team, conversation.language):
            if self.session.execute(_TAKE_FREE_SLOT, {"agent_id": agent.user_id}).rowcount:  # type: ignore[attr-defined]
                agent.open_count += 1
                conversation.assignee_id = agent.user_id
                team.last_assigned_user_id = agent.user_id
                break
            agent.online = False  # busy or offline in the database: not offered again in this batch
        apply_sla(conversation, team, now=now)
        return team

    def _candidates(self, team: Team, language: str | None) -> list[_Agent]:
        members = self._members.get(team.id)
        if members is None:
            rows = self.session.execute(
                select(
                    AgentProfile.user_id, AgentProfile.online, AgentProfile.open_count, AgentProfile.capacity,
                    AgentProfile.languages,
                )
                .join(TeamMember, TeamMember.user_id == AgentProfile.user_id)
                .where(TeamMember.team_id == team.id, AgentProfile.online.is_(True))
                .order_by(AgentProfile.user_id)
            )  # fmt: skip
            members = self._members[team.id] = [_Agent(*row) for row in rows]
            for agent in members:
                agent.languages = agent.languages or []
        free = [a for a in members if a.online and a.open_count < a.capacity]
        return _in_turn(free, team, language)


def release(session: Session, conversation: Conversation) -> None:
    """The conversation stops counting against its agent (resolved, or handed to someone else)."""
    if conversation.assignee_id is not None:
        _free_slot(session, conversation.assignee_id)


def reassign_to_agent(session: Session, conversation: Conversation, agent_id: uuid.UUID) -> None:
    """A supervisor's decision: it may exceed the agent's capacity."""
    if conversation.assignee_id == agent_id:
        return
    if conversation.status != "resolved":
        # agent rows in id order, so that two opposite moves at once cannot deadlock
        previous = conversation.assignee_id
        if previous is not None and previous < agent_id:
            release(session, conversation)
            take_slot(session, agent_id, force=True)
        else:
            take_slot(session, agent_id, force=True)
            release(session, conversation)
    conversation.assignee_id = agent_id


def requeue_to_team(session: Session, conversation: Conversation, team: Team) -> uuid.UUID | None:
    if conversation.status != "resolved":
        release(session, conversation)
    conversation.assignee_id = None
    if conversation.status == "resolved":
        conversation.team_id = team.id
        return None
    return assign_within_team(session, conversation, team)


def drain_queue(session: Session, user_id: uuid.UUID, *, limit: int = 50) -> list[uuid.UUID]:
    """Hand queued (unassigned) conversations of the agent's teams to the agent while it has room.

    Another process may drain the same queue for another agent at the same moment: a conversation
    is claimed only if it is still unassigned (conditional update), so it never counts for two
    agents. The conversation row is taken before the agent's, the order every other path follows.
    """
    teams = list(session.scalars(select(TeamMember.team_id).where(TeamMember.user_id == user_id)))
    if not teams:
        return []
    queued = list(
        session.scalars(
            select(Conversation.id)
            .where(
                Conversation.team_id.in_(teams),
                Conversation.assignee_id.is_(None),
                Conversation.status.in_(_QUEUED),
            )
            .order_by(Conversation.created_at, Conversation.id)  # one total order: no deadlock between drains
            .limit(limit)
        )
    )
    assigned: list[uuid.UUID] = []
    now = utcnow()
    for conversation_id in queued:
        claimed = session.execute(
            update(Conversation)
            .where(
                Conversation.id == conversation_id,
                Conversation.assignee_id.is_(None),
                Conversation.status.in_(_QUEUED),
            )
            .values(assignee_id=user_id, updated_at=now)
        )
        if not claimed.rowcount:  # type: ignore[attr-defined]
            continue  # somebody else took it meanwhile
        if not take_slot(session, user_id):
            session.execute(update(Conversation).where(Conversation.id == conversation_id).values(assignee_id=None))
            break
        assigned.append(conversation_id)
    return assigned
