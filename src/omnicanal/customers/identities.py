"""Identity types and their normalization: one spelling per person, whatever the channel."""

from __future__ import annotations

import re
from enum import StrEnum
from functools import lru_cache

import phonenumbers
from email_validator import EmailNotValidError, validate_email

from omnicanal.errors import ValidationFailed


class IdentityType(StrEnum):
    EMAIL = "email"
    PHONE = "phone"
    LOYALTY_CARD = "loyalty_card"
    DEVICE_ID = "device_id"
    EXTERNAL = "external"
    WHATSAPP = "whatsapp"
    TELEGRAM = "telegram"
    FACEBOOK = "facebook"
    INSTAGRAM = "instagram"
    X = "x"


IDENTITY_TYPES = frozenset(t.value for t in IdentityType)
_EXTERNAL = re.compile(r"^([a-z0-9][a-z0-9_.-]{0,39}):(\S{1,200})$")
_HANDLE = re.compile(r"^@?([A-Za-z0-9_.]{1,100})$")


class InvalidIdentity(ValueError):
    pass


def _phone(value: str, region: str) -> str:
    try:
        number = phonenumbers.parse(value, region)
    except phonenumbers.NumberParseException as exc:
        raise InvalidIdentity(f"{value!r} is not a phone number ({exc})") from None
    if not phonenumbers.is_valid_number(number):
        raise InvalidIdentity(f"{value!r} is not a valid phone number")
    return str(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164))


@lru_cache(maxsize=200_000)
def normalize(kind: str, raw: str, region: str) -> str:
    """The one stored spelling of an identity, or :class:`InvalidIdentity`."""
    value = raw.strip()
    if not value:
        raise InvalidIdentity("must not be empty")
    if kind == IdentityType.EMAIL:
        try:
            return validate_email(value, check_deliverability=False).normalized.lower()
        except EmailNotValidError as exc:
            raise InvalidIdentity(f"{value!r} is not a valid email address: {exc}") from None
    if kind == IdentityType.PHONE:
        return _phone(value, region)
    if kind == IdentityType.WHATSAPP:
        # WhatsApp ids are the international number without "+"
        digits = value if value.startswith("+") else "+" + value.lstrip("0")
        return _phone(digits, region)
    if kind == IdentityType.LOYALTY_CARD:
        card = re.sub(r"[\s-]", "", value).upper()
        if not card.isalnum() or len(card) > 64:
            raise InvalidIdentity(f"{value!r} is not a loyalty card number (letters and digits)")
        return card
    if kind == IdentityType.EXTERNAL:
        system, sep, ident = value.partition(":")
        candidate = f"{system.strip().lower()}{sep}{ident.strip()}"
        if not _EXTERNAL.match(candidate):
            raise InvalidIdentity(f"{value!r} must look like 'system:id', e.g. 'pos:12345'")
        return candidate
    if kind == IdentityType.TELEGRAM:
        if value.lstrip("-").isdigit():
            return value
        match = _HANDLE.match(value)
        if not match:
            raise InvalidIdentity(f"{value!r} is not a Telegram user id or @username")
        return "@" + match.group(1).lower()
    if kind in (IdentityType.INSTAGRAM, IdentityType.X):
        match = _HANDLE.match(value)
        if not match:
            raise InvalidIdentity(f"{value!r} is not a {kind} handle")
        return match.group(1).lower()
    if kind in (IdentityType.FACEBOOK, IdentityType.DEVICE_ID):
        if len(value) > 200 or any(c.isspace() for c in value):
            raise InvalidIdentity("must be at most 200 characters, without spaces")
        return value
    raise InvalidIdentity(f"unknown identity type {kind!r}")


def normalize_identity(kind: str, raw: str, *, region: str, field: str) -> str:
    """Normalize or raise a 422-style error naming ``field``."""
    if kind not in IDENTITY_TYPES:
        allowed = ", ".join(sorted(IDENTITY_TYPES))
        raise ValidationFailed.on_field(f"{field}.type", f"unknown identity type {kind!r}; one of: {allowed}")
    try:
        return normalize(kind, raw, region)
    except InvalidIdentity as exc:
        raise ValidationFailed.on_field(f"{field}.value", str(exc)) from None


def parse_identity_query(text: str, *, region: str) -> tuple[str, str]:
    """``TYPE:VALUE`` as used in ``?identity=`` (the value may itself contain colons)."""
    kind, sep, raw = text.partition(":")
    if not sep:
        raise ValidationFailed.on_field("identity", "must look like TYPE:VALUE, e.g. email:ana@example.com")
    return kind, normalize_identity(kind, raw, region=region, field="identity")
