from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request

from omnicanal.access.roles import Permission
from omnicanal.access.service import Principal
from omnicanal.answers import service
from omnicanal.answers.schemas import (
    AnswerCreate,
    AnswerOut,
    AnswerPage,
    AnswerUpdate,
    RenderedOut,
    RenderRequest,
    SuggestionList,
    SuggestionOut,
)
from omnicanal.errors import ValidationFailed
from omnicanal.idempotency import run_idempotent
from omnicanal.web import ReadSession, WriteSession, require

router = APIRouter(prefix="/api/v1/answers", tags=["answers"])

Reader = Annotated[Principal, Depends(require(Permission.CUSTOMERS_READ))]
Writer = Annotated[Principal, Depends(require(Permission.ANSWERS_WRITE))]


@router.get("", response_model=AnswerPage)
def list_answers(
    session: ReadSession,
    _: Reader,
    q: Annotated[str | None, Query(description="words, matched by prefix, accents and plurals ignored")] = None,
    language: Annotated[str | None, Query(description="'es' includes every 'es-XX'")] = None,
    tag: str | None = None,
    active: bool | None = None,
    limit: int = 20,
    cursor: str | None = None,
) -> AnswerPage:
    rows, next_cursor = service.list_answers(
        session, q=q, language=language, tag=tag, active=active, limit=limit, cursor=cursor
    )
    return AnswerPage(items=[service.answer_out(a) for a in rows], next_cursor=next_cursor)


@router.post("", status_code=201, response_model=AnswerOut)
def create_answer(request: Request, data: AnswerCreate, session: WriteSession, principal: Writer) -> Any:
    def produce() -> tuple[int, Any]:
        answer = service.create_answer(session, data=data, actor=principal.label)
        return 201, service.answer_out(answer).model_dump(mode="json")

    return run_idempotent(request, session, principal, data.model_dump(mode="json"), produce)


@router.get("/suggest", response_model=SuggestionList)
def suggest_answers(
    session: ReadSession,
    _: Reader,
    conversation_id: Annotated[
        uuid.UUID | None, Query(description="use the customer's last message and language in this conversation")
    ] = None,
    text: Annotated[str | None, Query(description="the customer's message (overrides the conversation's)")] = None,
    language: Annotated[str | None, Query(description="the customer's language, e.g. 'es'")] = None,
    limit: int = 5,
) -> SuggestionList:
    if conversation_id is not None:
        found = service.conversation_context(session, conversation_id)
        text = text if text is not None else found.text
        language = language if language is not None else found.language
    if text is None:
        raise ValidationFailed.on_field("text", "give the customer's text and language, or a conversation_id")
    if language is None:
        raise ValidationFailed.on_field("language", "give the customer's language, e.g. 'es'")
    suggestions = service.suggest(session, text=text, language=language, limit=limit)
    return SuggestionList(
        items=[
            SuggestionOut(answer=service.answer_out(s.answer), score=s.score, same_language=s.same_language)
            for s in suggestions
        ],
        text=text,
        language=service.clean_language(language),
    )


@router.get("/{answer_id}", response_model=AnswerOut)
def get_answer(answer_id: uuid.UUID, session: ReadSession, _: Reader) -> AnswerOut:
    return service.answer_out(service.get_answer(session, answer_id))


@router.patch("/{answer_id}", response_model=AnswerOut)
def patch_answer(answer_id: uuid.UUID, changes: AnswerUpdate, session: WriteSession, principal: Writer) -> AnswerOut:
    answer = service.update_answer(session, answer_id=answer_id, changes=changes, actor=principal.label)
    return service.answer_out(answer)


@router.post("/{answer_id}/render", response_model=RenderedOut)
def render_answer(answer_id: uuid.UUID, data: RenderRequest, session: ReadSession, principal: Reader) -> RenderedOut:
    rendered = service.render(
        session,
        answer_id=answer_id,
        channel=data.channel,
        context=data.context,
        customer_id=data.customer_id,
        agent_name=principal.name if principal.kind == "user" else None,
        keep_missing=data.keep_missing,
    )
    return RenderedOut(
        channel=rendered.channel,
        text=rendered.text,
        html=rendered.html,
        length=rendered.length,
        segments=rendered.segments,
        encoding=rendered.encoding,
        missing_variables=rendered.missing_variables,
    )
