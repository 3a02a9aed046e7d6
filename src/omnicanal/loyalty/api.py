from __future__ import annotations

import uuid
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from pydantic import TypeAdapter
from starlette.concurrency import run_in_threadpool

from omnicanal.access.roles import Permission
from omnicanal.access.service import Principal
from omnicanal.customers.service import get_customer
from omnicanal.db import Database
from omnicanal.idempotency import run_idempotent
from omnicanal.loyalty import balances, codes, quick_redeem, rewards, service, tiers
from omnicanal.loyalty.schemas import (
    AdjustmentIn,
    CodeBatchIn,
    CodeBatchOut,
    CodeIn,
    CodeResult,
    EarnedOut,
    EntryOut,
    EventIn,
    EventResult,
    LedgerPage,
    RedemptionIn,
    RedemptionOut,
    RewardIn,
    RewardOut,
    RuleIn,
    RuleOut,
    TierIn,
    TierOut,
    WalletOut,
)
from omnicanal.web import (
    AppSettings,
    ReadSession,
    WriteSession,
    authorize,
    database,
    require,
    served_by,
    validated_id_and_body,
)

router = APIRouter(prefix="/api/v1", tags=["loyalty"])
Reader = Annotated[Principal, Depends(require(Permission.LOYALTY_READ))]
Earner = Annotated[Principal, Depends(require(Permission.LOYALTY_EARN))]
Redeemer = Annotated[Principal, Depends(require(Permission.LOYALTY_REDEEM))]
Adjuster = Annotated[Principal, Depends(require(Permission.LOYALTY_ADJUST))]
Manager = Annotated[Principal, Depends(require(Permission.LOYALTY_MANAGE))]
DB = Annotated[Database, Depends(database)]
_DELETED: dict[int | str, dict[str, Any]] = {404: {"description": "no such id"}}


@router.get("/customers/{customer_id}/loyalty", response_model=WalletOut)
def get_wallet(customer_id: uuid.UUID, session: ReadSession, _: Reader) -> WalletOut:
    """Balance (available points), pending points (orders still in their return window), tier, points expiring soon."""
    return service.wallet_out(session, customer_id)


@router.get("/customers/{customer_id}/loyalty/ledger", response_model=LedgerPage)
def get_ledger(
    customer_id: uuid.UUID, session: ReadSession, _: Reader, cursor: str | None = None, limit: int = 50
) -> LedgerPage:
    customer = get_customer(session, customer_id)
    rows, next_cursor = balances.ledger_page(session, customer.id, cursor=cursor, limit=limit)
    return LedgerPage(items=[EntryOut.model_validate(r, from_attributes=True) for r in rows], next_cursor=next_cursor)


@router.post("/customers/{customer_id}/loyalty/referral-code")
def referral_code(customer_id: uuid.UUID, session: WriteSession, _: Earner) -> dict[str, str]:
    """The customer's referral code (made on first use, the same ever after)."""
    from omnicanal.loyalty.referrals import referral_code as code_of

    customer = get_customer(session, customer_id)
    return {"customer_id": str(customer.id), "referral_code": code_of(session, customer.id)}


@router.post("/loyalty/events", response_model=EventResult)
def post_event(data: EventIn, session: WriteSession, settings: AppSettings, _: Earner) -> EventResult:
    """A loyalty event (social share or follow, survey, visit, custom; ``referral.signup`` with a ``code``).

    Idempotent on ``id``: the same event posted again earns nothing more.
    """
    customer_id, earned = service.post_event(session, data, settings=settings)
    return EventResult(
        id=data.id,
        customer_id=customer_id,
        points=sum(e.points for e in earned),
        earned=[
            EarnedOut(customer_id=e.customer_id, points=e.points, reason=e.reason, source=e.source) for e in earned
        ],
    )


@router.post("/loyalty/codes/redeem", response_model=CodeResult, status_code=201)
def redeem_code(data: CodeIn, db: DB, _: Earner) -> CodeResult:
    """A purchase code printed on a product. Wrong codes count towards a lockout (429)."""
    with db.write() as session:
        customer = get_customer(session, data.customer_id, follow_merges=True)
        outcome = codes.redeem_code(session, customer_id=customer.id, code=data.code)
        balance = balances.summary(session, customer.id).balance
    if outcome.refusal is not None:
        raise outcome.refusal
    points = outcome.earned.points if outcome.earned else 0
    return CodeResult(customer_id=customer.id, points=points, balance=balance)


@router.post("/loyalty/codes", response_model=CodeBatchOut, status_code=201)
def generate_codes(data: CodeBatchIn, session: WriteSession, _: Manager) -> CodeBatchOut:
    """Generate a batch of single-use purchase codes; they are shown only in this answer."""
    return CodeBatchOut(
        batch=data.batch,
        points=data.points,
        codes=codes.generate(session, batch=data.batch, count=data.count, points=data.points),
    )


_REDEMPTION_IN = TypeAdapter(RedemptionIn)


def _redemption_json(
    db: Database, customer_id: uuid.UUID, data: RedemptionIn, actor: str, *, function: bool = True
) -> tuple[bytes, int]:
    if function and not db.is_sqlite:
        quick = quick_redeem.redeem(
            db,
            customer_id=customer_id,
            reward_id=data.reward_id,
            request_id=data.request_id,
            channel=data.channel,
            actor=actor,
        )
        if quick is not None:
            return orjson.dumps(quick, option=orjson.OPT_UTC_Z), 201
    with db.write() as session:
        redemption, new = rewards.redeem(
            session,
            customer_id=customer_id,
            reward_id=data.reward_id,
            request_id=data.request_id,
            channel=data.channel,
            actor=actor,
        )
        answer = {name: getattr(redemption, name) for name in RedemptionOut.model_fields}
    # serialized as RedemptionOut would be (UUIDs as text, datetimes in UTC with "Z")
    return orjson.dumps(answer, option=orjson.OPT_UTC_Z), 201 if new else 200


async def _serve_redeem(request: Request) -> Response:
    # What FastAPI did for redeem below, in the same order: the caller (401/403), then the path and the
    # body (the same 422s, together), then the common case in one call from the event loop, or one thread hop
    # for the whole transaction (bench: L2).
    principal = await authorize(request, Permission.LOYALTY_REDEEM)
    customer_id, data = await validated_id_and_body(request, "customer_id", _REDEMPTION_IN)
    db: Database = request.app.state.database
    if not db.is_sqlite:
        # the common case in one call from the event loop; the general path (and a busy moment) in a thread
        quick = await quick_redeem.redeem_on_loop(
            db,
            customer_id=customer_id,
            reward_id=data.reward_id,
            request_id=data.request_id,
            channel=data.channel,
            actor=principal.label,
        )
        if isinstance(quick, dict):
            content, status = orjson.dumps(quick, option=orjson.OPT_UTC_Z), 201
        else:
            retry = quick is quick_redeem.NO_CONNECTION
            content, status = await run_in_threadpool(
                _redemption_json, db, customer_id, data, principal.label, function=retry
            )
        return Response(content, status_code=status, media_type="application/json")
    content, status = await run_in_threadpool(_redemption_json, db, customer_id, data, principal.label)
    return Response(content, status_code=status, media_type="application/json")


async def redeem(customer_id: uuid.UUID, data: RedemptionIn, _: Redeemer) -> RedemptionOut:
    """Exchange points for a reward; idempotent on ``request_id`` (a repeat answers 200 with the same code)."""
    raise NotImplementedError  # the documented signature (OpenAPI); requests are served by _serve_redeem


router.add_api_route(
    "/customers/{customer_id}/redemptions",
    redeem,
    methods=["POST"],
    status_code=201,
    response_model=RedemptionOut,
    responses={200: {"model": RedemptionOut, "description": "the request_id was used before: the same answer"}},
    route_class_override=served_by(_serve_redeem),
)


@router.post("/customers/{customer_id}/loyalty/adjustments", status_code=201)
def adjust(customer_id: uuid.UUID, data: AdjustmentIn, session: WriteSession, principal: Adjuster) -> WalletOut:
    """Add (positive) or take (negative) points by hand; the reason goes on the ledger."""
    service.adjust(
        session,
        customer_id=customer_id,
        points=data.points,
        reason=data.reason,
        request_id=data.request_id,
        actor=principal.label,
    )
    return service.wallet_out(session, customer_id)


@router.get("/loyalty/rules", response_model=list[RuleOut])
def list_rules(session: ReadSession, _: Reader) -> list[RuleOut]:
    return [RuleOut.model_validate(r, from_attributes=True) for r in service.list_rules(session)]


@router.post("/loyalty/rules", response_model=RuleOut, status_code=201)
def create_rule(data: RuleIn, request: Request, session: WriteSession, principal: Manager) -> Any:
    def produce() -> tuple[int, Any]:
        rule = RuleOut.model_validate(service.create_rule(session, data), from_attributes=True)
        return 201, rule.model_dump(mode="json")

    return run_idempotent(request, session, principal, data.model_dump(mode="json"), produce)


@router.get("/loyalty/rules/{rule_id}", response_model=RuleOut)
def get_rule(rule_id: uuid.UUID, session: ReadSession, _: Reader) -> RuleOut:
    """A rule, also one deleted while points earned under it remain (``archived_at`` set)."""
    return RuleOut.model_validate(service.get_rule(session, rule_id), from_attributes=True)


@router.put("/loyalty/rules/{rule_id}", response_model=RuleOut)
def update_rule(rule_id: uuid.UUID, data: RuleIn, session: WriteSession, _: Manager) -> RuleOut:
    """Replace a rule's settings (the same checks as creating one); points already earned are unchanged."""
    return RuleOut.model_validate(service.update_rule(session, rule_id, data), from_attributes=True)


@router.delete("/loyalty/rules/{rule_id}", status_code=204, responses=_DELETED)
def delete_rule(rule_id: uuid.UUID, session: WriteSession, _: Manager) -> Response:
    """Delete a rule; one that points were earned under is archived: it earns no more and leaves the list,
    and ``GET /loyalty/rules/{id}`` still shows it."""
    service.delete_rule(session, rule_id)
    return Response(status_code=204)


@router.get("/loyalty/tiers", response_model=list[TierOut])
def list_tiers(session: ReadSession, _: Reader) -> list[TierOut]:
    return [TierOut.model_validate(t, from_attributes=True) for t in tiers.list_tiers(session)]


@router.post("/loyalty/tiers", response_model=TierOut, status_code=201)
def create_tier(data: TierIn, request: Request, session: WriteSession, principal: Manager) -> Any:
    def produce() -> tuple[int, Any]:
        tier = TierOut.model_validate(tiers.create_tier(session, data.model_dump()), from_attributes=True)
        return 201, tier.model_dump(mode="json")

    return run_idempotent(request, session, principal, data.model_dump(mode="json"), produce)


@router.get("/loyalty/tiers/{tier_id}", response_model=TierOut)
def get_tier(tier_id: uuid.UUID, session: ReadSession, _: Reader) -> TierOut:
    return TierOut.model_validate(tiers.get_tier(session, tier_id), from_attributes=True)


@router.put("/loyalty/tiers/{tier_id}", response_model=TierOut)
def update_tier(tier_id: uuid.UUID, data: TierIn, session: WriteSession, _: Manager) -> TierOut:
    """Replace a tier's settings; a new name is carried to the rules and rewards restricted to the tier."""
    return TierOut.model_validate(tiers.update_tier(session, tier_id, data.model_dump()), from_attributes=True)


@router.delete(
    "/loyalty/tiers/{tier_id}",
    status_code=204,
    responses={409: {"description": "customers hold the tier, or rules or rewards are restricted to it"}, **_DELETED},
)
def delete_tier(tier_id: uuid.UUID, session: WriteSession, _: Manager) -> Response:
    """Delete a tier nobody holds and no rule or reward is restricted to (409 ``tier-in-use`` otherwise)."""
    tiers.delete_tier(session, tier_id)
    return Response(status_code=204)


@router.get("/rewards", response_model=list[RewardOut])
def list_rewards(session: ReadSession, _: Reader) -> list[RewardOut]:
    return [RewardOut.model_validate(r, from_attributes=True) for r in rewards.list_rewards(session)]


@router.post("/rewards", response_model=RewardOut, status_code=201)
def create_reward(data: RewardIn, request: Request, session: WriteSession, principal: Manager) -> Any:
    def produce() -> tuple[int, Any]:
        reward = RewardOut.model_validate(rewards.create_reward(session, data.model_dump()), from_attributes=True)
        return 201, reward.model_dump(mode="json")

    return run_idempotent(request, session, principal, data.model_dump(mode="json"), produce)


@router.get("/rewards/{reward_id}", response_model=RewardOut)
def get_reward(reward_id: uuid.UUID, session: ReadSession, _: Reader) -> RewardOut:
    """A reward, also one deleted after it was redeemed (``archived_at`` set)."""
    return RewardOut.model_validate(rewards.get_reward(session, reward_id), from_attributes=True)


@router.put("/rewards/{reward_id}", response_model=RewardOut)
def update_reward(reward_id: uuid.UUID, data: RewardIn, session: WriteSession, _: Manager) -> RewardOut:
    """Replace a reward's settings (the same checks as creating one); codes already issued are unchanged."""
    reward = rewards.update_reward(session, reward_id, data.model_dump())
    return RewardOut.model_validate(reward, from_attributes=True)


@router.delete("/rewards/{reward_id}", status_code=204, responses=_DELETED)
def delete_reward(reward_id: uuid.UUID, session: WriteSession, _: Manager) -> Response:
    """Delete a reward; one already redeemed is archived: no longer offered, kept for its redemptions."""
    rewards.delete_reward(session, reward_id)
    return Response(status_code=204)
