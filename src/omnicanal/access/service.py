"""Staff users and API keys."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
import uuid
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from email_validator import EmailNotValidError, validate_email
from sqlalchemy import select
from sqlalchemy.orm import Session

from omnicanal.access.models import ApiKey, StaffUser
from omnicanal.access.roles import Role
from omnicanal.db import utcnow
from omnicanal.errors import Conflict, Unauthenticated, ValidationFailed

_hasher = PasswordHasher()
_DUMMY_HASH = _hasher.hash("timing-equaliser")
MIN_PASSWORD_LENGTH = 10
KEY_PREFIX = "oc"


@dataclass(frozen=True)
class Principal:
    """Who is calling: a staff user (console) or an API key (integrations)."""

    kind: str
    id: uuid.UUID
    name: str
    role: str

    @property
    def label(self) -> str:
        return f"{self.kind}:{self.id}"


def _check_role(role: str) -> str:
    try:
        return Role(role).value
    except ValueError:
        allowed = ", ".join(r.value for r in Role)
        raise ValidationFailed.on_field("role", f"unknown role {role!r}; one of: {allowed}") from None


def create_user(
    session: Session, *, email: str, role: str, password: str, display_name: str = "", language: str = "es"
) -> StaffUser:
    try:
        normalized = validate_email(email, check_deliverability=False).normalized.lower()
    except EmailNotValidError as exc:
        raise ValidationFailed.on_field("email", str(exc)) from None
    role = _check_role(role)
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValidationFailed.on_field("password", f"must have at least {MIN_PASSWORD_LENGTH} characters")
    if session.scalar(select(StaffUser.id).where(StaffUser.email == normalized)) is not None:
        raise Conflict(f"a staff user with email {normalized} already exists")
    user = StaffUser(
        email=normalized,
        role=role,
        password_hash=_hasher.hash(password),
        display_name=display_name or normalized.split("@")[0],
        language=language,
    )
    session.add(user)
    session.flush()
    return user


def authenticate_user(session: Session, *, email: str, password: str) -> StaffUser:
    user = session.scalar(select(StaffUser).where(StaffUser.email == email.strip().lower()))
    try:
        _hasher.verify(user.password_hash if user else _DUMMY_HASH, password)
    except (VerificationError, InvalidHashError):
        raise Unauthenticated("wrong email or password") from None
    if user is None or not user.active:
        raise Unauthenticated("wrong email or password")
    user.last_login_at = utcnow()
    return user


def _hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create_api_key(session: Session, *, name: str, role: str) -> tuple[ApiKey, str]:
    """Returns the stored key and the only copy of its plaintext token."""
    if not name.strip():
        raise ValidationFailed.on_field("name", "must not be empty")
    role = _check_role(role)
    prefix = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    key = ApiKey(name=name.strip(), role=role, prefix=prefix, secret_hash=_hash_secret(secret))
    session.add(key)
    session.flush()
    return key, f"{KEY_PREFIX}_{prefix}_{secret}"


def revoke_api_key(session: Session, *, key_id: uuid.UUID) -> None:
    key = session.get(ApiKey, key_id)
    if key is not None and key.revoked_at is None:
        key.revoked_at = utcnow()
        _key_cache.clear()


class _KeyCache:
    """Verified tokens for a few seconds, so the ingest hot path skips the key lookup."""

    ttl_seconds = 5.0

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[str, tuple[float, Principal]] = {}

    def get(self, token_hash: str) -> Principal | None:
        entry = self._entries.get(token_hash)
        if entry is None or entry[0] < time.monotonic():
            return None
        return entry[1]

    def put(self, token_hash: str, principal: Principal) -> None:
        with self._lock:
            if len(self._entries) > 10_000:
                self._entries.clear()
            self._entries[token_hash] = (time.monotonic() + self.ttl_seconds, principal)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


_key_cache = _KeyCache()


def _token_parts(token: str) -> list[str]:
    parts = token.split("_", 2)
    if len(parts) != 3 or parts[0] != KEY_PREFIX:
        raise Unauthenticated("the API key is malformed")
    return parts


def cached_principal(token: str) -> Principal | None:
    """The principal of a token verified in the last few seconds, without the database; or None."""
    _token_parts(token)
    return _key_cache.get(_hash_secret(token))


def principal_for_token(session: Session, token: str) -> Principal:
    parts = _token_parts(token)
    cache_key = _hash_secret(token)
    cached = _key_cache.get(cache_key)
    if cached is not None:
        return cached
    _, prefix, secret = parts
    key = session.scalar(select(ApiKey).where(ApiKey.prefix == prefix))
    if key is None or key.revoked_at is not None:
        raise Unauthenticated("the API key is unknown or revoked")
    if not hmac.compare_digest(key.secret_hash, _hash_secret(secret)):
        raise Unauthenticated("the API key is unknown or revoked")
    principal = Principal(kind="api_key", id=key.id, name=key.name, role=key.role)
    _key_cache.put(cache_key, principal)
    return principal


def principal_for_user(user: StaffUser) -> Principal:
    return Principal(kind="user", id=user.id, name=user.display_name, role=user.role)
