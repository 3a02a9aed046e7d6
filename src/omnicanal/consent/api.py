from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends
from pydantic import BaseModel

from omnicanal.access.roles import Permission
from omnicanal.access.service import Principal
from omnicanal.consent import service
from omnicanal.consent.schemas import ConsentIn, ConsentList, ConsentOut
from omnicanal.customers.service import get_customer
from omnicanal.web import ReadSession, WriteSession, require

router = APIRouter(prefix="/api/v1", tags=["consent"])

Reader = Annotated[Principal, Depends(require(Permission.CONSENTS_READ))]
Writer = Annotated[Principal, Depends(require(Permission.CONSENTS_WRITE))]


class ContactAnswer(BaseModel):
    customer_id: uuid.UUID
    channel: str
    purpose: str
    allowed: bool


@router.put("/customers/{customer_id}/consents/{channel}/{purpose}", response_model=ConsentOut)
def put_consent(
    customer_id: uuid.UUID, channel: str, purpose: str, change: ConsentIn, session: WriteSession, principal: Writer
) -> ConsentOut:
    record = service.set_consent(
        session, customer_id=customer_id, channel=channel, purpose=purpose, change=change, actor=principal.label
    )
    return ConsentOut.model_validate(record, from_attributes=True)


@router.get("/customers/{customer_id}/consents", response_model=ConsentList)
def list_consents(customer_id: uuid.UUID, session: ReadSession, _: Reader) -> ConsentList:
    customer = get_customer(session, customer_id)
    return ConsentList(items=service.current_consents(session, customer_id=customer.id))


@router.get("/customers/{customer_id}/contactable/{channel}/{purpose}", response_model=ContactAnswer)
def contactable(customer_id: uuid.UUID, channel: str, purpose: str, session: ReadSession, _: Reader) -> ContactAnswer:
    allowed = service.may_contact(session, customer_id=customer_id, channel=channel, purpose=purpose)
    return ContactAnswer(customer_id=customer_id, channel=channel, purpose=purpose, allowed=allowed)
