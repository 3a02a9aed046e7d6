"""Normalization of identities: one stored spelling per person, whatever the channel typed."""

from __future__ import annotations

import pytest

from omnicanal.customers.identities import (
    IDENTITY_TYPES,
    InvalidIdentity,
    normalize,
    normalize_identity,
    parse_identity_query,
)
from omnicanal.errors import ValidationFailed

REGION = "ES"


@pytest.mark.parametrize(
    "typed",
    ["+34 612 34 56 78", "0034612345678", "612345678", "+34612345678", "(+34) 612-345-678", " 612 345 678 "],
)
def test_spanish_mobile_spellings_share_one_e164(typed: str) -> None:
    assert normalize("phone", typed, REGION) == "+34612345678"


def test_national_number_depends_on_the_default_region() -> None:
    # the same digits are a different person's number in another region
    assert normalize("phone", "612345678", REGION) == "+34612345678"
    with pytest.raises(InvalidIdentity):
        normalize("phone", "612345678", "GB")
    assert normalize("phone", "020 7946 0018", "GB") == "+442079460018"


def test_whatsapp_ids_are_international_numbers_without_plus() -> None:
    assert normalize("whatsapp", "34612345678", REGION) == "+34612345678"
    assert normalize("whatsapp", "+34612345678", REGION) == "+34612345678"


@pytest.mark.parametrize("typed", ["12", "+34 000", "not a phone", "+99 123456789", "6123456789012345678"])
def test_invalid_phones_raise(typed: str) -> None:
    with pytest.raises(InvalidIdentity):
        normalize("phone", typed, REGION)


@pytest.mark.parametrize(
    ("typed", "stored"),
    [
        ("Ana.Garcia@Example.COM", "ana.garcia@example.com"),
        ("  ana.garcia@example.com\t", "ana.garcia@example.com"),
        ("ANA+promo@EXAMPLE.es", "ana+promo@example.es"),
    ],
)
def test_emails_are_trimmed_and_lowercased(typed: str, stored: str) -> None:
    assert normalize("email", typed, REGION) == stored


@pytest.mark.parametrize(
    "typed", ["not-an-email", "a@b", "ana@", "@example.com", "ana garcia@example.com", "ana@@example.com", "   "]
)
def test_invalid_emails_raise(typed: str) -> None:
    with pytest.raises(InvalidIdentity):
        normalize("email", typed, REGION)


@pytest.mark.parametrize(
    ("typed", "stored"),
    [("POS:123", "pos:123"), (" POS : 123 ", "pos:123"), ("Shopify:Cust-ABC", "shopify:Cust-ABC")],
)
def test_external_ids_lowercase_the_system_and_keep_the_id(typed: str, stored: str) -> None:
    assert normalize("external", typed, REGION) == stored


@pytest.mark.parametrize("typed", ["pos", "pos:", ":123", "po s:123", "pos:12 3", "-pos:1"])
def test_malformed_external_ids_raise(typed: str) -> None:
    with pytest.raises(InvalidIdentity):
        normalize("external", typed, REGION)


@pytest.mark.parametrize(
    ("typed", "stored"),
    [("ab-12 34", "AB1234"), ("4000 1234 5678 9010", "4000123456789010"), ("card42", "CARD42")],
)
def test_loyalty_cards_drop_spaces_and_dashes_and_uppercase(typed: str, stored: str) -> None:
    assert normalize("loyalty_card", typed, REGION) == stored


@pytest.mark.parametrize("typed", ["ab!", "12.34", "-", "A" * 65])
def test_invalid_loyalty_cards_raise(typed: str) -> None:
    with pytest.raises(InvalidIdentity):
        normalize("loyalty_card", typed, REGION)


def test_handles_and_device_ids() -> None:
    assert normalize("telegram", "@Ana_G", REGION) == "@ana_g"
    assert normalize("telegram", "123456789", REGION) == "123456789"
    assert normalize("instagram", "@Ana.G", REGION) == "ana.g"
    assert normalize("x", "AnaG", REGION) == "anag"
    assert normalize("device_id", " dev-ABC-123 ", REGION) == "dev-ABC-123"
    with pytest.raises(InvalidIdentity):
        normalize("device_id", "dev ABC", REGION)
    with pytest.raises(InvalidIdentity):
        normalize("device_id", "d" * 201, REGION)


@pytest.mark.parametrize("kind", sorted(IDENTITY_TYPES))
def test_empty_values_raise_for_every_type(kind: str) -> None:
    with pytest.raises(InvalidIdentity):
        normalize(kind, "   ", REGION)


def test_unknown_type_raises_in_normalize() -> None:
    with pytest.raises(InvalidIdentity, match="unknown identity type"):
        normalize("fax", "123", REGION)


def test_unknown_type_is_a_422_naming_the_type_field() -> None:
    with pytest.raises(ValidationFailed) as caught:
        normalize_identity("fax", "123", region=REGION, field="identities[2]")
    problem = caught.value.problem()
    assert problem["status"] == 422
    assert [e["field"] for e in problem["errors"]] == ["identities[2].type"]
    assert "email" in problem["errors"][0]["message"]  # lists the allowed types


def test_invalid_value_is_a_422_naming_the_value_field() -> None:
    with pytest.raises(ValidationFailed) as caught:
        normalize_identity("email", "nope", region=REGION, field="identities[0]")
    assert [e.field for e in caught.value.errors] == ["identities[0].value"]


def test_identity_query_keeps_colons_in_the_value() -> None:
    assert parse_identity_query("external:POS:123", region=REGION) == ("external", "pos:123")
    assert parse_identity_query("phone:0034612345678", region=REGION) == ("phone", "+34612345678")
    with pytest.raises(ValidationFailed) as caught:
        parse_identity_query("ana@example.com", region=REGION)
    assert caught.value.errors[0].field == "identity"


# -- the email fast path: plain ASCII addresses skip email_validator; the answers must not change --

_EMAIL_EDGES = [
    # taken by the fast path
    "Ana.Garcia@Example.COM",
    "o'brien+tag/x=y?z^{a}|b~c`d!e#f$g%h&i*j@example.es",
    "a@b.co",
    "a" * 64 + "@example.com",
    "ana@" + "b" * 63 + ".com",
    "ana@mail.sub.example.org",
    "POSTMASTER@Example.org",
    # left to email_validator (and accepted or refused by it)
    "a" * 65 + "@example.com",
    "ana@" + "b" * 64 + ".com",
    "ana@" + ".".join(["b" * 60] * 4) + ".com",
    ".ana@example.com",
    "ana.@example.com",
    "an..a@example.com",
    "ana@example",
    "ana@example.c0m",
    "ana@example.123",
    "ana@-example.com",
    "ana@example-.com",
    "ana@ex--ample.com",
    "ana@xn--bcher-kva.example",
    "ana@xn--p1ai.xn--p1ai",
    "ana@ab--cd.com",
    "an--a@example.com",
    "ana@example.test",
    "ana@mail.localhost",
    "ana@host.local",
    "ana@x.onion",
    "ana@x.invalid",
    "ana@4.3.2.1.in-addr.arpa",
    "ana@[192.168.0.1]",
    '"ana garcia"@example.com',
    "anaé@example.com",
    "ana@exämple.com",
    "ana@example.com.",
    "ana@@example.com",
    "ana(comment)@example.com",
]


@pytest.mark.parametrize("typed", _EMAIL_EDGES)
def test_email_fast_path_answers_as_email_validator(typed: str) -> None:
    from email_validator import EmailNotValidError, validate_email

    from omnicanal.customers.identities import _plain_email

    try:
        expected: str | None = validate_email(typed, check_deliverability=False).normalized.lower()
    except EmailNotValidError as exc:
        expected = None
        message = f"{typed!r} is not a valid email address: {exc}"
    fast = _plain_email(typed)
    assert fast is None or fast == expected  # the fast path never accepts what email_validator refuses
    if expected is None:
        with pytest.raises(InvalidIdentity) as caught:
            normalize("email", typed, REGION)
        assert str(caught.value) == message
    else:
        assert normalize("email", typed, REGION) == expected


def test_email_fast_path_takes_the_common_case() -> None:
    from omnicanal.customers.identities import _plain_email

    assert _plain_email("Regular.42@Example.org") == "regular.42@example.org"
    assert _plain_email("ana@example.test") is None  # special-use: email_validator refuses it
    assert _plain_email("ana@xn--bcher-kva.example") is None  # Punycode: email_validator decides
