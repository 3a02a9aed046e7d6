"""Configuring channel instances: validation per type, secrets sealed at rest, and a cached directory."""

from __future__ import annotations

import threading
import time
import uuid
import weakref
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from omnicanal.aftercommit import on_commit
from omnicanal.channels import secrets as sealing
from omnicanal.channels.models import ChannelInstance
from omnicanal.channels.registry import TYPES, ChannelType, ConfigKey
from omnicanal.customers.identities import InvalidIdentity, normalize
from omnicanal.db import Database, utcnow
from omnicanal.errors import FieldError, NotFound, ValidationFailed
from omnicanal.settings import Settings


@dataclass(frozen=True)
class ConfiguredChannel:
    """A channel instance as adapters see it: config and secrets together, read-only."""

    id: uuid.UUID
    type: str
    name: str
    enabled: bool
    values: dict[str, Any]
    updated_at: datetime

    def __getitem__(self, key: str) -> Any:
        return self.values[key]

    def get(self, key: str, default: Any = None) -> Any:
        value = self.values.get(key)
        return default if value is None else value


def channel_type(name: str) -> ChannelType:
    found = TYPES.get(name)
    if found is None:
        raise ValidationFailed.on_field("type", f"unknown channel type {name!r}; one of: {', '.join(sorted(TYPES))}")
    return found


def _coerce(key: ConfigKey, value: Any, settings: Settings) -> Any:
    """The value in its stored form, or a message saying what is wrong with it."""
    if key.kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError("must be an integer")
        return value
    if key.kind == "bool":
        if not isinstance(value, bool):
            raise ValueError("must be true or false")
        return value
    if key.kind == "list":
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ValueError("must be a list of strings")
        return value
    if not isinstance(value, str) or not value.strip():
        raise ValueError("must be a non-empty string")
    value = value.strip()
    if key.kind == "url" and not value.startswith(("http://", "https://")):
        raise ValueError("must be an http:// or https:// URL")
    if key.kind == "url":
        return value.rstrip("/")
    if key.kind == "phone":
        try:
            return normalize("phone", value, settings.default_region)
        except InvalidIdentity as exc:
            raise ValueError(str(exc)) from None
    if key.choices and value not in key.choices:
        raise ValueError(f"must be one of: {', '.join(key.choices)}")
    return value


def validate(
    kind: ChannelType, given: dict[str, Any], *, settings: Settings,
    config: dict[str, Any] | None = None, secrets: dict[str, str] | None = None,
) -> tuple[dict[str, Any], dict[str, str]]:  # fmt: skip
    """``given`` applied over the stored ``config``/``secrets``: a key set to null is cleared."""
    config = dict(config or {})
    secrets = dict(secrets or {})
    errors: list[FieldError] = []
    for name, value in given.items():
        key = kind.key(name)
        if key is None:
            known = ", ".join(k.name for k in kind.keys)
            errors.append(FieldError(f"config.{name}", f"not a {kind.name} setting; known: {known}"))
            continue
        target: dict[str, Any] = secrets if key.secret else config
        if value is None:
            target.pop(name, None)
            continue
        try:
            target[name] = _coerce(key, value, settings)
        except ValueError as exc:
            errors.append(FieldError(f"config.{name}", str(exc)))
    for key in kind.keys:
        present = key.name in (secrets if key.secret else config)
        if not present and key.default is not None:
            config[key.name] = key.default
        elif not present and key.required:
            errors.append(FieldError(f"config.{key.name}", "is required"))
    if not errors and kind.check is not None:
        try:
            kind.check(config | secrets)
        except ValidationFailed as exc:
            errors.extend(exc.errors or [FieldError("config", exc.detail)])
    if errors:
        raise ValidationFailed("; ".join(f"{e.field}: {e.message}" for e in errors), errors=errors)
    return config, secrets


def _configured(row: ChannelInstance, settings: Settings) -> ConfiguredChannel:
    values = dict(row.config or {}) | sealing.unseal(settings.secret_key, row.secrets)
    return ConfiguredChannel(row.id, row.type, row.name, row.enabled, values, row.updated_at)


def _invalidate_after_commit(session: Session, channel_id: uuid.UUID) -> None:
    bind = session.get_bind()
    engine = bind if isinstance(bind, Engine) else bind.engine
    on_commit(session, lambda: _directories.get(engine, _NO_DIRECTORY).invalidate(channel_id))


def get_instance(session: Session, channel_id: uuid.UUID) -> ChannelInstance:
    row = session.get(ChannelInstance, channel_id)
    if row is None:
        raise NotFound(f"channel {channel_id} not found")
    return row


def list_instances(session: Session, *, type: str | None = None) -> list[ChannelInstance]:
    stmt = select(ChannelInstance).order_by(ChannelInstance.created_at, ChannelInstance.id)
    if type:
        stmt = stmt.where(ChannelInstance.type == type)
    return list(session.scalars(stmt))


def create_instance(
    session: Session, *, type: str, name: str, config: dict[str, Any], settings: Settings, enabled: bool = True
) -> ChannelInstance:
    kind = channel_type(type)
    if not name.strip():
        raise ValidationFailed.on_field("name", "must not be empty")
    plain, secret = validate(kind, config, settings=settings)
    now = utcnow()
    row = ChannelInstance(
        type=kind.name, name=name.strip(), config=plain, secrets=sealing.seal(settings.secret_key, secret),
        secret_keys=sorted(secret), enabled=enabled, created_at=now, updated_at=now,
    )  # fmt: skip
    session.add(row)
    session.flush()
    _invalidate_after_commit(session, row.id)  # it may become the default for its channel
    return row


def update_instance(
    session: Session, *, channel_id: uuid.UUID, settings: Settings, name: str | None = None,
    config: dict[str, Any] | None = None, enabled: bool | None = None,
) -> ChannelInstance:  # fmt: skip
    row = get_instance(session, channel_id)
    if name is not None:
        if not name.strip():
            raise ValidationFailed.on_field("name", "must not be empty")
        row.name = name.strip()
    if config is not None:
        try:
            stored = sealing.unseal(settings.secret_key, row.secrets)
        except sealing.SecretsUnreadable:
            stored = {}  # set them again: the ones given now replace what cannot be read
        plain, secret = validate(channel_type(row.type), config, settings=settings, config=row.config, secrets=stored)
        row.config = plain
        row.secrets = sealing.seal(settings.secret_key, secret)
        row.secret_keys = sorted(secret)
    if enabled is not None:
        row.enabled = enabled
    row.updated_at = utcnow()
    session.flush()
    _invalidate_after_commit(session, row.id)
    return row


def delete_instance(session: Session, *, channel_id: uuid.UUID) -> None:
    row = get_instance(session, channel_id)
    session.delete(row)
    session.flush()
    _invalidate_after_commit(session, channel_id)


def instance_out(row: ChannelInstance) -> dict[str, Any]:
    kind = TYPES.get(row.type)
    paths = [p.format(id=row.id) for p in kind.webhook_paths] if kind else []
    return {
        "id": str(row.id),
        "type": row.type,
        "name": row.name,
        "enabled": row.enabled,
        "config": dict(row.config or {}),
        "secrets_set": list(row.secret_keys or []),
        "webhook_paths": paths,
        "created_at": row.created_at.isoformat(),
        "updated_at": row.updated_at.isoformat(),
    }


class ChannelDirectory:
    """Configured channels by id, cached for a few seconds so webhooks cost no extra query.

    Changes made in this process are seen at once (invalidated on commit); other processes see
    them within ``ttl`` seconds.
    """

    def __init__(self, database: Database, *, ttl: float = 5.0) -> None:
        self.database = database
        self.ttl = ttl
        self._lock = threading.Lock()
        self._by_id: dict[uuid.UUID, tuple[float, ConfiguredChannel | None]] = {}
        self._defaults: dict[str, tuple[float, ConfiguredChannel | None]] = {}
        # A read that began before a change committed must not cache what it read after the change
        # invalidated the cache: it stores its answer only if no invalidation happened meanwhile.
        self._generation = 0

    def invalidate(self, channel_id: uuid.UUID | None = None) -> None:
        with self._lock:
            self._generation += 1
            if channel_id is None:
                self._by_id.clear()
            else:
                self._by_id.pop(channel_id, None)
            self._defaults.clear()

    def cached(self, channel_id: uuid.UUID) -> tuple[bool, ConfiguredChannel | None]:
        entry = self._by_id.get(channel_id)
        if entry is not None and entry[0] > time.monotonic():
            return True, entry[1]
        return False, None

    def get(self, channel_id: uuid.UUID) -> ConfiguredChannel | None:
        """The enabled channel with this id, or None."""
        hit, found = self.cached(channel_id)
        if hit:
            return found
        generation = self._generation
        with self.database.read() as session:
            row = session.get(ChannelInstance, channel_id)
            found = _configured(row, self.database.settings) if row is not None and row.enabled else None
        with self._lock:
            if generation == self._generation:
                self._by_id[channel_id] = (time.monotonic() + self.ttl, found)
        return found

    def default_for(self, conversation_channel: str) -> ConfiguredChannel | None:
        """The oldest enabled instance of a type that delivers ``conversation_channel``."""
        entry = self._defaults.get(conversation_channel)
        if entry is not None and entry[0] > time.monotonic():
            return entry[1]
        types = [t.name for t in TYPES.values() if conversation_channel in t.delivers]
        generation = self._generation
        found = None
        if types:
            with self.database.read() as session:
                row = session.scalar(
                    select(ChannelInstance)
                    .where(ChannelInstance.type.in_(types), ChannelInstance.enabled.is_(True))
                    .order_by(ChannelInstance.created_at, ChannelInstance.id)
                    .limit(1)
                )
                found = _configured(row, self.database.settings) if row is not None else None
        with self._lock:
            if generation == self._generation:
                self._defaults[conversation_channel] = (time.monotonic() + self.ttl, found)
        return found


class _NoDirectory:
    def invalidate(self, channel_id: uuid.UUID | None = None) -> None:
        return None


_NO_DIRECTORY = _NoDirectory()
_directories: weakref.WeakKeyDictionary[Engine, ChannelDirectory] = weakref.WeakKeyDictionary()
_directories_lock = threading.Lock()


def directory(database: Database) -> ChannelDirectory:
    """The one directory of this database in this process."""
    with _directories_lock:
        found = _directories.get(database.write_engine)
        if found is None:
            found = _directories[database.write_engine] = ChannelDirectory(database)
        return found
