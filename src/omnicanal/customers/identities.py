"""Identity types and their normalization: one spelling per person, whatever the channel."""

from __future__ import annotations

import re
from enum import StrEnum
from functools import lru_cache

import phonenumbers
from email_validator import SPECIAL_USE_DOMAIN_NAMES, EmailNotValidError, validate_email

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


# The common email spelling, checked without email_validator (which costs ~60 us per new address,
# the largest line of batch ingest; bench/README.md, B2). A plain ASCII dot-atom local part of at
# most 64 characters, and a domain of LDH labels (no "--" anywhere, so no Punycode and no IDNA
# question) ending in an all-letter top-level label: every such address is accepted by
# email_validator, which only lowercases its domain. Anything else (quoted or non-ASCII parts,
# IDNA, numeric or special-use top-level names, lengths near the limits) takes email_validator,
# so accepting and refusing, and every error message, are exactly email_validator's.
_ATEXT = r"[A-Za-z0-9_!#$%&'*+/=?^`{|}~-]"
_PLAIN_EMAIL = re.compile(
    rf"{_ATEXT}{{1,64}}(?:\.{_ATEXT}{{1,64}})*"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}"
)
_SPECIAL_USE_TLDS = frozenset(name for name in SPECIAL_USE_DOMAIN_NAMES if "." not in name)
assert len(_SPECIAL_USE_TLDS) == len(SPECIAL_USE_DOMAIN_NAMES), "a special-use name with a dot needs a check here"


def _plain_email(value: str) -> str | None:
    """``value`` lowercased if it is a plain address email_validator surely accepts, else None."""
    if len(value) > 200 or "--" in value or not _PLAIN_EMAIL.fullmatch(value):
        return None
    local, _, domain = value.rpartition("@")
    if len(local) > 64 or domain.rpartition(".")[2].lower() in _SPECIAL_USE_TLDS:
        return None
    return value.lower()


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
        plain = _plain_email(value)
        if plain is not None:
            return plain
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
