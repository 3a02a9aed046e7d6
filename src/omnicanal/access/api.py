from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import Response
from sqlalchemy import select

from omnicanal.access import service
from omnicanal.access.models import ApiKey, StaffUser
from omnicanal.access.roles import ROLE_PERMISSIONS, Permission, Role
from omnicanal.access.schemas import ApiKeyCreate, ApiKeyCreated, ApiKeyOut, Me, UserCreate, UserOut
from omnicanal.access.service import Principal
from omnicanal.web import ReadSession, WriteSession, bearer_principal, require

router = APIRouter(prefix="/api/v1", tags=["access"])
Admin = Annotated[Principal, Depends(require(Permission.ACCESS_MANAGE))]


@router.get("/me", response_model=Me)
def me(principal: Annotated[Principal, Depends(bearer_principal)]) -> Me:
    permissions = sorted(p.value for p in ROLE_PERMISSIONS.get(Role(principal.role), frozenset()))
    return Me(kind=principal.kind, id=principal.id, name=principal.name, role=principal.role, permissions=permissions)


@router.post("/api-keys", response_model=ApiKeyCreated, status_code=201)
def create_api_key(data: ApiKeyCreate, session: WriteSession, _: Admin) -> ApiKeyCreated:
    key, token = service.create_api_key(session, name=data.name, role=data.role)
    return ApiKeyCreated(**ApiKeyOut.model_validate(key, from_attributes=True).model_dump(), key=token)


@router.get("/api-keys", response_model=list[ApiKeyOut])
def list_api_keys(session: ReadSession, _: Admin) -> list[ApiKeyOut]:
    keys = session.scalars(select(ApiKey).order_by(ApiKey.created_at))
    return [ApiKeyOut.model_validate(k, from_attributes=True) for k in keys]


@router.delete("/api-keys/{key_id}", status_code=204)
def revoke_api_key(key_id: uuid.UUID, session: WriteSession, _: Admin) -> Response:
    service.revoke_api_key(session, key_id=key_id)
    return Response(status_code=204)


@router.post("/users", response_model=UserOut, status_code=201)
def create_user(data: UserCreate, session: WriteSession, _: Admin) -> UserOut:
    user = service.create_user(
        session,
        email=data.email,
        role=data.role,
        password=data.password,
        display_name=data.display_name,
        language=data.language,
    )
    return UserOut.model_validate(user, from_attributes=True)


@router.get("/users", response_model=list[UserOut])
def list_users(session: ReadSession, _: Admin) -> list[UserOut]:
    users = session.scalars(select(StaffUser).order_by(StaffUser.email))
    return [UserOut.model_validate(u, from_attributes=True) for u in users]
