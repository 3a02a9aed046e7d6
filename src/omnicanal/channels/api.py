"""``/api/v1/channels``: connect channel instances. Secrets go in, never out."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from omnicanal.access.roles import Permission
from omnicanal.access.service import Principal
from omnicanal.channels import service
from omnicanal.channels.registry import TYPES
from omnicanal.channels.schemas import ChannelIn, ChannelOut, ChannelPatch, ChannelTypeOut, ConfigKeyOut
from omnicanal.idempotency import run_idempotent
from omnicanal.web import AppSettings, ReadSession, WriteSession, require

router = APIRouter(prefix="/api/v1", tags=["channels"])
Manager = Annotated[Principal, Depends(require(Permission.CHANNELS_MANAGE))]


@router.get("/channel-types", response_model=list[ChannelTypeOut])
def channel_types(_: Manager) -> list[ChannelTypeOut]:
    """Every channel type, the settings it takes and the webhook paths it answers."""
    return [
        ChannelTypeOut(
            name=kind.name,
            label=kind.label,
            delivers=list(kind.delivers),
            webhook_paths=list(kind.webhook_paths),
            keys=[
                ConfigKeyOut(
                    name=k.name, required=k.required, secret=k.secret, default=k.default, kind=k.kind, help=k.help
                )
                for k in kind.keys
            ],
        )
        for kind in TYPES.values()
    ]


@router.get("/channels", response_model=list[ChannelOut])
def list_channels(session: ReadSession, _: Manager, type: str | None = None) -> list[dict[str, Any]]:
    return [service.instance_out(row) for row in service.list_instances(session, type=type)]


@router.post("/channels", response_model=ChannelOut, status_code=201)
def create_channel(
    data: ChannelIn, request: Request, session: WriteSession, settings: AppSettings, principal: Manager
) -> Any:
    def produce() -> tuple[int, Any]:
        row = service.create_instance(
            session, type=data.type, name=data.name, config=data.config, settings=settings, enabled=data.enabled
        )
        return 201, service.instance_out(row)

    # the stored request is hashed only: the body (with its secrets) is compared, never kept in clear
    return run_idempotent(request, session, principal, data.model_dump(mode="json"), produce)


@router.get("/channels/{channel_id}", response_model=ChannelOut)
def get_channel(channel_id: uuid.UUID, session: ReadSession, _: Manager) -> dict[str, Any]:
    return service.instance_out(service.get_instance(session, channel_id))


@router.patch("/channels/{channel_id}", response_model=ChannelOut)
def patch_channel(
    channel_id: uuid.UUID, data: ChannelPatch, session: WriteSession, settings: AppSettings, _: Manager
) -> dict[str, Any]:
    row = service.update_instance(
        session, channel_id=channel_id, settings=settings, name=data.name, config=data.config, enabled=data.enabled
    )
    return service.instance_out(row)


@router.delete("/channels/{channel_id}", status_code=204)
def delete_channel(channel_id: uuid.UUID, session: WriteSession, _: Manager) -> Response:
    service.delete_instance(session, channel_id=channel_id)
    return Response(status_code=204)
