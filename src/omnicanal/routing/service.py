"""Routing: which team a conversation goes to, and which agent in it takes it.

An agent's ``open_count`` is a counter under concurrency: it only changes through
conditional updates (``... WHERE open_count < capacity``), so two conversations racing for an
agent's last free slot cannot both win it.
"""

from __future__ import annotations

import unicodedata
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol, TypeVar
from zoneinfo import ZoneInfo

from sqlalchemy import select, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from omnicanal.conversations.models import Conversation
from omnicanal.db import utcnow
from omnicanal.driver_sql import (
    bulk_update,
    driver_execute,
    driver_rows,
    held_objects,
    is_sqlite,
    json_from_db,
    uuid_from_db,
    uuid_to_db,
)
from omnicanal.routing.models import AgentProfile, RoutingRule, Team, TeamMember


class Routable(Protocol):
    """What routing reads and sets on a new conversation (an ORM object, or the inbound batch's plain values)."""

    language: str | None
    team_id: uuid.UUID | None
    assignee_id: uuid.UUID | None
    first_response_at: datetime | None
    first_response_due_at: datetime | None
    resolution_due_at: datetime | None


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


def is_within_business_hours(team: Team | TeamState, when: datetime) -> bool:
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


def _in_turn(agents: list[_Member], team: Team | TeamState, language: str | None) -> list[_Member]:
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


def apply_sla(conversation: Routable, team: Team | TeamState | None, *, now: datetime) -> None:
    if team is None:
        return
    if team.sla_first_response_minutes and conversation.first_response_at is None:
        conversation.first_response_due_at = now + timedelta(minutes=team.sla_first_response_minutes)
    restart_resolution_clock(conversation, team, now=now)


def restart_resolution_clock(conversation: Routable, team: Team | TeamState | None, *, now: datetime) -> bool:
    """The team's resolution target from ``now`` (a new conversation, or one reopened); False when it has none."""
    if team is None or not team.sla_resolution_minutes:
        return False
    conversation.resolution_due_at = now + timedelta(minutes=team.sla_resolution_minutes)
    return True


def route_new(
    session: Session,
    conversation: Conversation,
    *,
    channel: str,
    text: str,
    tier: str | None,
    now: datetime,
) -> Team | None:
    """One new conversation; the inbound batch routes its new conversations with :class:`BatchRouting`."""
    team = pick_team(session, channel=channel, language=conversation.language, tier=tier, text=text)
    if team is None:
        return None
    assign_within_team(session, conversation, team)
    apply_sla(conversation, team, now=now)
    return team


# BatchRouting's statements run on the driver connection (driver_sql.driver_rows), as the inbound batch's do: no
# ORM objects and no per-statement SQLAlchemy work (bench, C1). BatchRouting keeps its own copy of the counters.
_TEAM_COLUMNS = (
    "t.id, t.strategy, t.business_hours, t.out_of_hours_reply, t.sla_first_response_minutes, "
    "t.sla_resolution_minutes, t.last_assigned_user_id"
)
_RULES_AND_TEAMS = (
    f"SELECT r.conditions, {_TEAM_COLUMNS} FROM routing_rules r JOIN teams t ON t.id = r.team_id "
    "WHERE r.active = TRUE ORDER BY r.position, r.created_at"
)
_TEAM = f"SELECT {_TEAM_COLUMNS} FROM teams t WHERE t.id = ?"
_MEMBERS = (
    "SELECT a.user_id, a.online, a.open_count, a.capacity, a.languages FROM agent_profiles a "
    "JOIN team_members m ON m.user_id = a.user_id WHERE m.team_id = ? AND a.online = TRUE ORDER BY a.user_id"
)
_TAKE_FREE_SLOT = (
    "UPDATE agent_profiles SET open_count = open_count + 1 WHERE user_id = ? AND online = TRUE "
    "AND open_count < capacity"
)


@dataclass(slots=True)
class TeamState:
    """A team as routing reads it, copied once per batch (what :class:`Team` holds for routing)."""

    id: uuid.UUID
    strategy: str
    business_hours: dict[str, Any]
    out_of_hours_reply: str
    sla_first_response_minutes: int | None
    sla_resolution_minutes: int | None
    last_assigned_user_id: uuid.UUID | None

    @classmethod
    def from_db(cls, row: Sequence[Any]) -> TeamState:
        team_id, strategy, business_hours, out_of_hours_reply, first_response, resolution, last_assigned = row
        return cls(
            uuid_from_db(team_id), strategy, json_from_db(business_hours), out_of_hours_reply, first_response,
            resolution, None if last_assigned is None else uuid_from_db(last_assigned),
        )  # fmt: skip


class BatchRouting:
    """Routing many new conversations in one transaction: rules, teams and members read once.

    Same decisions as :func:`route_new` one conversation after the other. Rules and their teams are
    read in one query and the members' rows once per team, with Core (no ORM objects); the conditional
    update of ``take_slot`` stays the authority (it rechecks online and capacity in the database), and a
    slot taken here is counted in the copy, so later conversations of the batch see it. The teams' turn
    (``last_assigned_user_id``) is written by :meth:`finish`. Call with autoflush off: nothing read here
    depends on the batch's pending rows.
    """

    def __init__(self, session: Session) -> None:
        self.session = session
        self._sqlite = is_sqlite(session)
        self._rules: list[tuple[dict[str, Any], TeamState]] | None = None
        self._teams: dict[uuid.UUID, TeamState] = {}
        self._members: dict[uuid.UUID, list[_Agent]] = {}
        self._turns: dict[uuid.UUID, uuid.UUID] = {}  # team -> agent last handed a conversation in this batch

    def team(self, team_id: uuid.UUID) -> TeamState | None:
        team = self._teams.get(team_id)
        if team is None:
            rows = driver_rows(self.session, _TEAM, [uuid_to_db(team_id, sqlite=self._sqlite)])
            if rows:
                team = self._teams[team_id] = TeamState.from_db(rows[0])
        return team

    def _load_rules(self) -> list[tuple[dict[str, Any], TeamState]]:
        rules = []
        for conditions, *team_row in driver_rows(self.session, _RULES_AND_TEAMS, ()):
            team_id = uuid_from_db(team_row[0])
            team = self._teams.get(team_id)
            if team is None:
                team = self._teams[team_id] = TeamState.from_db(team_row)
            rules.append((json_from_db(conditions) or {}, team))
        return rules

    def route(self, conversation: Routable, *, channel: str, text: str, tier: str | None,
              now: datetime) -> TeamState | None:  # fmt: skip
        if self._rules is None:
            self._rules = self._load_rules()
        team = None
        for conditions, candidate in self._rules:
            if rule_matches(conditions, channel=channel, language=conversation.language, tier=tier, text=text):
                team = candidate
                break
        if team is None:
            return None
        conversation.team_id = team.id
        for agent in self._candidates(team, conversation.language):
            if driver_execute(self.session, _TAKE_FREE_SLOT, [uuid_to_db(agent.user_id, sqlite=self._sqlite)]):
                agent.open_count += 1
                conversation.assignee_id = agent.user_id
                team.last_assigned_user_id = self._turns[team.id] = agent.user_id
                break
            agent.online = False  # busy or offline in the database: not offered again in this batch
        apply_sla(conversation, team, now=now)
        return team

    def finish(self) -> None:
        """Store each team's turn (round robin goes on from the agent last handed a conversation)."""
        if not self._turns:
            return
        bulk_update(
            self.session,
            Team,
            "id",
            [{"last_assigned_user_id": user_id, "id": team_id} for team_id, user_id in self._turns.items()],
        )
        for held in held_objects(self.session, Team):
            if held.id in self._turns:
                set_committed_value(held, "last_assigned_user_id", self._turns[held.id])
        self._turns.clear()

    def _candidates(self, team: TeamState, language: str | None) -> list[_Agent]:
        members = self._members.get(team.id)
        if members is None:
            rows = driver_rows(self.session, _MEMBERS, [uuid_to_db(team.id, sqlite=self._sqlite)])
            members = self._members[team.id] = [
                _Agent(uuid_from_db(user_id), bool(online), open_count, capacity, json_from_db(languages) or [])
                for user_id, online, open_count, capacity, languages in rows
            ]
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
