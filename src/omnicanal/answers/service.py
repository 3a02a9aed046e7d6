"""The answers library: write, find, suggest and render canned answers."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import ColumnElement, and_, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from omnicanal.answers import search
from omnicanal.answers.models import Answer
from omnicanal.answers.rendering import (
    Channel,
    RenderedAnswer,
    parse_channel,
    render_for_channel,
    render_variables,
)
from omnicanal.answers.schemas import AnswerCreate, AnswerOut, AnswerUpdate
from omnicanal.customers.service import get_customer, identities_of
from omnicanal.db import utcnow, uuid7
from omnicanal.errors import Conflict, NotFound, ValidationFailed
from omnicanal.pagination import check_limit, decode_cursor, encode_cursor

TITLE_MAX = 200
BODY_MAX = 20_000
TAG_MAX = 50
TAGS_MAX = 20
SHORTCUT_MAX = 64
QUERY_MAX = 500
SUGGEST_MAX = 50
FOREIGN_LANGUAGE_WEIGHT = 0.5

_LANGUAGE = re.compile(r"^[a-z]{2,3}(-[A-Z]{2})?$")
_SHORTCUT = re.compile(r"^[^\W_][\w-]*$")
_TAG = re.compile(r"^[^\W_][\w -]*$")


# --------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------


def clean_language(value: str, field: str = "language") -> str:
    """'ES' -> 'es', 'es-mx' -> 'es-MX'; anything else that is not a BCP 47 language[-REGION] is refused."""
    primary, _, region = value.strip().partition("-")
    normalized = primary.lower() + (f"-{region.upper()}" if region else "")
    if not _LANGUAGE.match(normalized):
        raise ValidationFailed.on_field(field, "must be a language code like 'es', 'en' or 'es-MX'")
    return normalized


def _clean_title(value: str) -> str:
    title = " ".join(value.split())
    if not title:
        raise ValidationFailed.on_field("title", "must not be empty")
    if len(title) > TITLE_MAX:
        raise ValidationFailed.on_field("title", f"must have at most {TITLE_MAX} characters")
    return title


def _clean_body(value: str) -> str:
    body = value.replace("\r\n", "\n").strip()
    if not body:
        raise ValidationFailed.on_field("body", "must not be empty")
    if len(body) > BODY_MAX:
        raise ValidationFailed.on_field("body", f"must have at most {BODY_MAX} characters")
    return body


def clean_tag(value: str, field: str = "tag") -> str:
    tag = " ".join(value.split()).lower()
    if not tag or len(tag) > TAG_MAX or not _TAG.match(tag):
        raise ValidationFailed.on_field(
            field, f"a tag has 1 to {TAG_MAX} letters, digits, spaces, '-' or '_', starting with a letter or digit"
        )
    return tag


def _clean_tags(values: list[str]) -> list[str]:
    if len(values) > TAGS_MAX:
        raise ValidationFailed.on_field("tags", f"at most {TAGS_MAX} tags")
    return list(dict.fromkeys(clean_tag(value, f"tags[{index}]") for index, value in enumerate(values)))


def _clean_shortcut(value: str | None) -> str | None:
    if value is None:
        return None
    shortcut = value.strip().lower()
    if not shortcut:
        return None
    if len(shortcut) > SHORTCUT_MAX or not _SHORTCUT.match(shortcut):
        raise ValidationFailed.on_field(
            "shortcut", f"1 to {SHORTCUT_MAX} letters, digits, '-' or '_' without spaces, like 'horario'"
        )
    return shortcut


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------


def _derive(answer: Answer) -> None:
    answer.search_text = search.search_text(
        title=answer.title, body=answer.body, tags=answer.tags, shortcut=answer.shortcut
    )
    answer.tag_index = "," + "".join(f"{tag}," for tag in answer.tags)


def _check_shortcut_free(session: Session, *, language: str, shortcut: str | None, answer_id: uuid.UUID) -> None:
    if shortcut is None:
        return
    with session.no_autoflush:  # the answer's own pending change must not hit the constraint first
        holder = session.scalar(
            select(Answer.id).where(Answer.language == language, Answer.shortcut == shortcut, Answer.id != answer_id)
        )
    if holder is not None:
        raise Conflict(
            f"the shortcut {shortcut!r} is already used by another {language!r} answer", answer_id=str(holder)
        )


def _flush_unique(session: Session, answer: Answer) -> None:
    """Flush in a savepoint: a concurrent writer that took the same shortcut becomes a 409, not a 500."""
    try:
        with session.begin_nested():
            session.flush()
    except IntegrityError:
        raise Conflict(
            f"the shortcut {answer.shortcut!r} is already used by another {answer.language!r} answer"
        ) from None


def create_answer(session: Session, *, data: AnswerCreate, actor: str) -> Answer:
    now = utcnow()
    answer = Answer(
        id=uuid7(),
        title=_clean_title(data.title),
        body=_clean_body(data.body),
        language=clean_language(data.language),
        tags=_clean_tags(data.tags),
        shortcut=_clean_shortcut(data.shortcut),
        active=data.active,
        created_at=now,
        updated_at=now,
        created_by=actor,
        updated_by=actor,
    )
    _check_shortcut_free(session, language=answer.language, shortcut=answer.shortcut, answer_id=answer.id)
    _derive(answer)
    session.add(answer)
    _flush_unique(session, answer)
    return answer


def get_answer(session: Session, answer_id: uuid.UUID) -> Answer:
    answer = session.get(Answer, answer_id)
    if answer is None:
        raise NotFound(f"answer {answer_id} not found")
    return answer


def update_answer(session: Session, *, answer_id: uuid.UUID, changes: AnswerUpdate, actor: str) -> Answer:
    given = changes.model_fields_set
    for name in ("title", "body", "language", "tags", "active"):
        if name in given and getattr(changes, name) is None:
            raise ValidationFailed.on_field(name, "may not be null")
    answer = get_answer(session, answer_id)
    if changes.title is not None:
        answer.title = _clean_title(changes.title)
    if changes.body is not None:
        answer.body = _clean_body(changes.body)
    if changes.language is not None:
        answer.language = clean_language(changes.language)
    if changes.tags is not None:
        answer.tags = _clean_tags(changes.tags)
    if "shortcut" in given:
        answer.shortcut = _clean_shortcut(changes.shortcut)
    if changes.active is not None:
        answer.active = changes.active
    _check_shortcut_free(session, language=answer.language, shortcut=answer.shortcut, answer_id=answer.id)
    _derive(answer)
    answer.updated_at = utcnow()
    answer.updated_by = actor
    _flush_unique(session, answer)
    return answer


def answer_out(answer: Answer) -> AnswerOut:
    return AnswerOut.model_validate(answer)


# --------------------------------------------------------------------------------------------
# Listing with filters
# --------------------------------------------------------------------------------------------


def _language_filter(language: str) -> ColumnElement[bool]:
    """'es' matches 'es' and every 'es-XX'; 'es-MX' matches only itself."""
    if "-" in language:
        return Answer.language == language
    return or_(Answer.language == language, Answer.language.like(f"{language}-%"))


def _escape_like(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _query_filter(q: str) -> ColumnElement[bool]:
    """Every word of ``q`` (stop words aside) starts a word or stem of the answer, accents ignored."""
    words = search.tokenize(q)
    stops = search.STOP_WORDS["es"] | search.STOP_WORDS["en"]
    words = [word for word in words if word not in stops] or words
    if not words:
        raise ValidationFailed.on_field("q", "must contain a letter or a digit")
    clauses = [
        or_(*(Answer.search_text.like(f"% {variant}%") for variant in sorted(search.filter_variants(word))))
        for word in dict.fromkeys(words)
    ]
    return and_(*clauses)


def list_answers(
    session: Session,
    *,
    q: str | None = None,
    language: str | None = None,
    tag: str | None = None,
    active: bool | None = None,
    limit: int = 20,
    cursor: str | None = None,
) -> tuple[list[Answer], str | None]:
    """Newest first, filtered; ``q`` matches words by prefix in both Spanish and English forms."""
    limit = check_limit(limit)
    after = decode_cursor(cursor, size=1)
    stmt = select(Answer)
    if q is not None:
        if len(q) > QUERY_MAX:
            raise ValidationFailed.on_field("q", f"must have at most {QUERY_MAX} characters")
        stmt = stmt.where(_query_filter(q))
    if language is not None:
        stmt = stmt.where(_language_filter(clean_language(language)))
    if tag is not None:
        stmt = stmt.where(Answer.tag_index.like(f"%,{_escape_like(clean_tag(tag))},%", escape="\\"))
    if active is not None:
        stmt = stmt.where(Answer.active.is_(active))
    if after is not None:
        try:
            stmt = stmt.where(Answer.id < uuid.UUID(str(after[0])))
        except ValueError:
            raise ValidationFailed.on_field("cursor", "is not a cursor this API returned") from None
    rows = list(session.scalars(stmt.order_by(Answer.id.desc()).limit(limit + 1)))
    next_cursor = encode_cursor([str(rows[limit - 1].id)]) if len(rows) > limit else None
    return rows[:limit], next_cursor


# --------------------------------------------------------------------------------------------
# Suggestions
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Suggestion:
    answer: Answer
    score: float
    same_language: bool


def _documents(session: Session, where: ColumnElement[bool]) -> dict[str, list[search.Document]]:
    """Active answers matching ``where`` as analysed documents, grouped by base language."""
    heads = session.execute(
        select(Answer.id, Answer.updated_at, Answer.language).where(Answer.active.is_(True), where)
    ).all()
    found: dict[uuid.UUID, search.Document] = {}
    missing: dict[uuid.UUID, tuple[Any, str]] = {}
    for answer_id, updated_at, language in heads:
        document = search.term_cache.get((answer_id, updated_at, language))
        if document is None:
            missing[answer_id] = (updated_at, language)
        else:
            found[answer_id] = document
    ids = list(missing)
    for start in range(0, len(ids), 500):
        rows = session.execute(
            select(Answer.id, Answer.title, Answer.body, Answer.tags, Answer.shortcut).where(
                Answer.id.in_(ids[start : start + 500])
            )
        ).all()
        for answer_id, title, body, tags, shortcut in rows:
            updated_at, language = missing[answer_id]
            terms = search.answer_terms(title=title, body=body, tags=tags or [], shortcut=shortcut, language=language)
            document = search.Document(answer_id, terms, sum(terms.values()))
            search.term_cache.put((answer_id, updated_at, language), document)
            found[answer_id] = document
    groups: dict[str, list[search.Document]] = {}
    for answer_id, _, language in heads:
        if answer_id in found:
            groups.setdefault(search.base_language(language), []).append(found[answer_id])
    return groups


# The analysed corpus per (database, language filter), valid while the rows it came from are
# unchanged: every write moves ``updated_at`` forward (deactivation too; answers are never deleted),
# so (count, latest updated_at) is a cheap, exact-enough version of the set.
_corpus_cache: dict[tuple[str, str], tuple[tuple[Any, ...], dict[str, search.Corpus]]] = {}
_CORPUS_CACHE_MAX = 64


def _corpora(session: Session, where: ColumnElement[bool], key: str) -> dict[str, search.Corpus]:
    version = tuple(
        session.execute(select(func.count(), func.max(Answer.updated_at)).where(Answer.active.is_(True), where)).one()
    )
    cache_key = (str(session.get_bind().engine.url), key)
    cached = _corpus_cache.get(cache_key)
    if cached is not None and cached[0] == version:
        return cached[1]
    corpora = {language: search.Corpus(docs) for language, docs in _documents(session, where).items()}
    if len(_corpus_cache) >= _CORPUS_CACHE_MAX:
        _corpus_cache.clear()
    _corpus_cache[cache_key] = (version, corpora)
    return corpora


def _rank(text: str, corpora: dict[str, search.Corpus], *, weight: float) -> dict[uuid.UUID, float]:
    scores: dict[uuid.UUID, float] = {}
    for language, corpus in corpora.items():
        for answer_id, score in corpus.score(search.weighted_query(text, language)).items():
            scores[answer_id] = score * weight
    return scores


def suggest(session: Session, *, text: str, language: str, limit: int = 5) -> list[Suggestion]:
    """The answers that best fit a customer's message, best first.

    Answers in the customer's language (any region of it) only; when none matches, answers in
    other languages, scored lower and marked ``same_language=False``.
    """
    if not text.strip():
        raise ValidationFailed.on_field("text", "must not be empty")
    if len(text) > BODY_MAX:
        raise ValidationFailed.on_field("text", f"must have at most {BODY_MAX} characters")
    if not 1 <= limit <= SUGGEST_MAX:
        raise ValidationFailed.on_field("limit", f"must be between 1 and {SUGGEST_MAX}")
    base = search.base_language(clean_language(language))
    own = _language_filter(base)
    scores = _rank(text, _corpora(session, own, f"{base}"), weight=1.0)
    same_language = bool(scores)
    if not scores:
        scores = _rank(text, _corpora(session, ~own, f"not {base}"), weight=FOREIGN_LANGUAGE_WEIGHT)
    best = sorted(scores.items(), key=lambda item: (-item[1], str(item[0])))[:limit]
    answers = {a.id: a for a in session.scalars(select(Answer).where(Answer.id.in_([i for i, _ in best])))}
    return [
        Suggestion(answers[answer_id], round(score, 4), same_language)
        for answer_id, score in best
        if answer_id in answers
    ]


# --------------------------------------------------------------------------------------------
# Conversations (pluggable: the conversations domain registers how to read one)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ConversationContext:
    text: str
    language: str
    context: dict[str, Any]


ConversationContextProvider = Callable[[Session, uuid.UUID], tuple[str, str, dict[str, Any]] | None]
_conversation_provider: ConversationContextProvider | None = None


def set_conversation_context_provider(provider: ConversationContextProvider | None) -> None:
    """Register ``fn(session, conversation_id) -> (last_customer_text, language, context) | None``.

    ``None`` unregisters. The conversations domain calls this once at start-up.
    """
    global _conversation_provider
    _conversation_provider = provider


def has_conversation_context_provider() -> bool:
    return _conversation_provider is not None


def conversation_context(session: Session, conversation_id: uuid.UUID) -> ConversationContext:
    provider = _conversation_provider
    found = provider(session, conversation_id) if provider is not None else None
    if found is None:
        raise NotFound(f"conversation {conversation_id} not found")
    text, language, context = found
    return ConversationContext(text=text, language=language, context=dict(context or {}))


# --------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------


def customer_variables(session: Session, customer_id: uuid.UUID) -> dict[str, Any]:
    """``customer.*`` from the profile: names, language, the first email and phone."""
    customer = get_customer(session, customer_id, follow_merges=True)
    traits = customer.traits or {}
    values: dict[str, Any] = {
        key: traits[key] for key in ("first_name", "last_name", "language") if isinstance(traits.get(key), str)
    }
    full_name = " ".join(part for part in (values.get("first_name"), values.get("last_name")) if part)
    if full_name:
        values["name"] = full_name
    for identity in identities_of(session, customer.id):
        if identity.type in ("email", "phone"):
            values.setdefault(identity.type, identity.value)
    return values


def _merged(defaults: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    result = dict(defaults)
    for key, value in overrides.items():
        if isinstance(value, Mapping) and isinstance(result.get(key), Mapping):
            result[key] = _merged(result[key], value)
        else:
            result[key] = value
    return result


def render(
    session: Session,
    *,
    answer_id: uuid.UUID,
    channel: str,
    context: Mapping[str, Any] | None = None,
    customer_id: uuid.UUID | None = None,
    agent_name: str | None = None,
    keep_missing: bool = False,
) -> RenderedAnswer:
    """One answer for one channel. The explicit ``context`` wins over the customer's profile."""
    checked = parse_channel(channel)
    answer = get_answer(session, answer_id)
    defaults: dict[str, Any] = {}
    if customer_id is not None:
        defaults["customer"] = customer_variables(session, customer_id)
    if agent_name:
        defaults["agent"] = {"name": agent_name}
    values = _merged(defaults, context or {})
    filled = render_variables(answer.body, values, keep_missing=keep_missing, escape_markdown=True)
    return replace(render_for_channel(filled.text, checked), missing_variables=filled.missing)


def render_for_conversation(
    session: Session,
    *,
    answer_id: uuid.UUID | None,
    conversation_id: uuid.UUID,
    channel: str | None,
    context: Mapping[str, Any] | None = None,
) -> str:
    """The text of an answer as a reply in a conversation, for the conversations domain.

    Variables come from the registered conversation provider's context, overridden by ``context``.
    A channel this module does not format (``None``, "web", "facebook", ...) gets plain text.
    """
    if answer_id is None:
        raise ValidationFailed.on_field("answer_id", "is required")
    defaults: dict[str, Any] = {}
    if has_conversation_context_provider():
        defaults = conversation_context(session, conversation_id).context
    answer = get_answer(session, answer_id)
    values = _merged(defaults, context or {})
    filled = render_variables(answer.body, values, escape_markdown=True)
    known = {c.value for c in Channel}
    return render_for_channel(filled.text, channel if channel in known else Channel.TELEGRAM).text
