from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends

from omnicanal.access.roles import Permission
from omnicanal.access.service import Principal
from omnicanal.routing import admin
from omnicanal.routing.schemas import AgentIn, AgentOut, RuleIn, RuleOut, TeamIn, TeamOut
from omnicanal.web import ReadSession, WriteSession, require

router = APIRouter(prefix="/api/v1", tags=["routing"])
Manager = Annotated[Principal, Depends(require(Permission.ROUTING_MANAGE))]
Reader = Annotated[Principal, Depends(require(Permission.CONVERSATIONS_READ))]


@router.get("/teams", response_model=list[TeamOut])
def list_teams(session: ReadSession, _: Reader) -> list[TeamOut]:
    return admin.list_teams(session)


@router.post("/teams", response_model=TeamOut, status_code=201)
def create_team(data: TeamIn, session: WriteSession, _: Manager) -> TeamOut:
    return admin.team_out(session, admin.save_team(session, data))


@router.put("/teams/{team_id}", response_model=TeamOut)
def update_team(team_id: uuid.UUID, data: TeamIn, session: WriteSession, _: Manager) -> TeamOut:
    return admin.team_out(session, admin.save_team(session, data, team_id=team_id))


@router.get("/agents", response_model=list[AgentOut])
def list_agents(session: ReadSession, _: Reader) -> list[AgentOut]:
    """Every agent's load: open conversations against capacity, online status, teams."""
    return admin.list_agents(session)


@router.put("/agents/{user_id}", response_model=AgentOut)
def update_agent(user_id: uuid.UUID, data: AgentIn, session: WriteSession, principal: Manager) -> AgentOut:
    admin.update_agent(session, user_id, data, actor=principal.label)
    return next(a for a in admin.list_agents(session) if a.user_id == user_id)


@router.get("/routing-rules", response_model=list[RuleOut])
def list_rules(session: ReadSession, _: Reader) -> list[RuleOut]:
    return [RuleOut.model_validate(r, from_attributes=True) for r in admin.list_rules(session)]


@router.post("/routing-rules", response_model=RuleOut, status_code=201)
def create_rule(data: RuleIn, session: WriteSession, _: Manager) -> RuleOut:
    return RuleOut.model_validate(admin.save_rule(session, data), from_attributes=True)
