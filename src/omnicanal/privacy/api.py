from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from fastapi.responses import Response

from omnicanal.access.roles import Permission
from omnicanal.access.service import Principal
from omnicanal.privacy import service
from omnicanal.web import FastJSONResponse, ReadSession, WriteSession, require

router = APIRouter(prefix="/api/v1", tags=["privacy"])


@router.get("/customers/{customer_id}/export")
def export_customer(
    customer_id: uuid.UUID,
    session: ReadSession,
    _: Annotated[Principal, Depends(require(Permission.PRIVACY_EXPORT))],
) -> Response:
    """Everything held about the customer (and the customers merged into it), as JSON."""
    document = service.export_customer(session, customer_id=customer_id)
    return FastJSONResponse(
        document,
        headers={"Content-Disposition": f'attachment; filename="customer-{customer_id}.json"'},
    )


@router.delete("/customers/{customer_id}")
def erase_customer(
    customer_id: uuid.UUID,
    session: WriteSession,
    principal: Annotated[Principal, Depends(require(Permission.PRIVACY_ERASE))],
) -> dict[str, Any]:
    """Erase personal data; anonymous counts (event types, channels, times) remain."""
    result = service.erase_customer(session, customer_id=customer_id, actor=principal.label)
    return {**result, "customer_id": str(result["customer_id"]), "erased_at": result["erased_at"].isoformat()}
