"""Reading emails: the new text without quotes or signature, HTML, files, threads, bounces, auto-replies."""

from __future__ import annotations

import uuid

from hypothesis import given
from hypothesis import strategies as st

from omnicanal.channels.email.parsing import parse_email
from omnicanal.channels.email.reply_address import conversation_of, reply_address
from omnicanal.channels.email.text import html_to_text, strip_reply
from tests.channels.email_samples import customer_email, delivery_failure


def test_a_plain_reply_keeps_only_what_the_customer_wrote_now() -> None:
    body = (
        "It arrived today, thank you!\n\n"
        "Ana\n"
        "-- \n"
        "Ana García · Calle Mayor 1 · Madrid\n\n"
        "On Mon, 23 Nov 2026 at 10:00, Support <support@shop.example.com> wrote:\n"
        "> Your order is on its way.\n"
        "> Kind regards\n"
    )
    parsed = parse_email(customer_email(text=body, subject="Re: My order"))
    assert parsed.text == "It arrived today, thank you!\n\nAna"
    assert "Calle Mayor" in parsed.full_text
    assert parsed.sender == "ana@example.com"
    assert parsed.sender_name == "Ana García"
    assert parsed.subject == "Re: My order"
    assert not parsed.auto_reply and parsed.bounce is None


def test_quotes_in_spanish_in_outlook_style_and_mobile_signatures_are_cut() -> None:
    assert strip_reply("Perfecto, gracias.\n\nEl lun, 23 nov 2026 a las 10:00, Soporte escribió:\n> Hola") == (
        "Perfecto, gracias."
    )
    # the attribution wrapped over two lines
    wrapped = "Thanks!\n\nOn Mon, 23 Nov 2026 at 10:00, Support\n<s@x.example.com> wrote:\n> hi"
    assert strip_reply(wrapped) == "Thanks!"
    outlook = (
        "See attached.\r\n\r\nFrom: Support <s@shop.example.com>\r\nSent: Monday\r\nTo: Ana\r\nSubject: x\r\n\r\nold"
    )
    assert strip_reply(outlook) == "See attached."
    assert strip_reply("Ok\n\nEnviado desde mi iPhone") == "Ok"
    assert strip_reply("Yes.\n-----Original Message-----\nFrom: x") == "Yes."
    # a message that is only a quote keeps its text rather than becoming empty
    assert strip_reply("> only a quote") == "> only a quote"


def test_an_html_only_email_becomes_readable_text_without_the_quoted_thread() -> None:
    html = (
        "<html><head><style>p{color:red}</style></head><body>"
        "<div>Hello,<br>the <b>blue</b> one&nbsp;please. See <a href='https://shop.example.com/p/1'>this</a>.</div>"
        "<ul><li>size M</li><li>two units</li></ul>"
        "<div class='gmail_quote'><div>On Mon wrote:</div><blockquote>Which colour?</blockquote></div>"
        "<script>alert(1)</script></body></html>"
    )
    parsed = parse_email(customer_email(text=None, html=html))
    assert parsed.text == (
        "Hello,\nthe blue one please. See this (https://shop.example.com/p/1).\n\n- size M\n- two units"
    )
    assert "Which colour?" in parsed.full_text
    assert "alert" not in parsed.full_text and "color:red" not in parsed.full_text
    assert html_to_text("<p>a</p><p>b</p>") == "a\n\nb"


def test_attachments_are_extracted_with_their_names_and_types() -> None:
    raw = customer_email(attachments=[("ticket.pdf", "application/pdf", b"%PDF-1.4 ticket"),
                                      ("photo.jpg", "image/jpeg", b"\xff\xd8\xff\xe0 jpeg")])  # fmt: skip
    parsed = parse_email(raw)
    assert parsed.text == "Hello, my order 1234 has not arrived yet."
    assert [(a["name"], a["content_type"], a["data"]) for a in parsed.attachments] == [
        ("ticket.pdf", "application/pdf", b"%PDF-1.4 ticket"),
        ("photo.jpg", "image/jpeg", b"\xff\xd8\xff\xe0 jpeg"),
    ]


def test_thread_headers_are_read_most_specific_first() -> None:
    parsed = parse_email(
        customer_email(in_reply_to="<b@shop.example.com>", references="<a@shop.example.com> <b@shop.example.com>")
    )
    assert parsed.message_id == "m1@mail.example.com"
    assert parsed.in_reply_to == ["b@shop.example.com"]
    assert parsed.references == ["a@shop.example.com", "b@shop.example.com"]
    assert parsed.thread_ids == ["b@shop.example.com", "a@shop.example.com"]


def test_a_message_without_message_id_gets_a_stable_one() -> None:
    raw = customer_email(message_id="")
    assert parse_email(raw).message_id == parse_email(raw).message_id
    assert parse_email(raw).message_id != parse_email(customer_email(message_id="", text="other")).message_id


def test_a_delivery_status_notification_names_the_message_that_failed() -> None:
    parsed = parse_email(delivery_failure(original_message_id="abc@shop.example.com"))
    assert parsed.bounce is not None
    assert parsed.bounce.failed
    assert parsed.bounce.original_message_id == "abc@shop.example.com"
    assert parsed.bounce.recipients == ("nobody@example.com",)
    assert parsed.bounce.status == "5.1.1"
    assert "User unknown" in parsed.bounce.reason()
    delayed = parse_email(
        delivery_failure(original_message_id="abc@shop.example.com", action="delayed", status="4.4.1")
    )
    assert delayed.bounce is not None and not delayed.bounce.failed


def test_automatic_replies_are_recognized() -> None:
    def auto(**kwargs: object) -> bool:
        return parse_email(customer_email(**kwargs)).auto_reply  # type: ignore[arg-type]

    assert auto(headers={"Auto-Submitted": "auto-replied"})
    assert auto(headers={"X-Autoreply": "yes"})
    assert auto(headers={"Precedence": "auto_reply"})
    assert auto(headers={"X-Auto-Response-Suppress": "All"})
    assert auto(subject="Out of Office: My order")
    assert auto(subject="Respuesta automática: Mi pedido")
    assert auto(subject="Automatic reply: My order")
    assert auto(sender="MAILER-DAEMON@mx.example.com")
    assert not auto(headers={"Auto-Submitted": "no"})
    assert not auto(subject="Re: about my office chair")


def test_a_reply_address_routes_to_its_conversation_and_cannot_be_forged() -> None:
    conversation = uuid.uuid4()
    address = reply_address("secret", conversation, "shop.example.com")
    assert address.endswith("@shop.example.com") and len(address.split("@")[0]) <= 64
    assert conversation_of("secret", address) == conversation
    assert conversation_of("secret", address.upper()) == conversation
    assert conversation_of("another secret", address) is None
    other = reply_address("secret", uuid.uuid4(), "shop.example.com")
    forged = address.split(".")[0] + "." + other.split(".")[1]
    assert conversation_of("secret", forged) is None
    assert conversation_of("secret", "support@shop.example.com") is None


@given(st.text(max_size=300))
def test_reading_any_text_body_never_fails_nor_loses_a_non_empty_message(text: str) -> None:
    stripped = strip_reply(text)
    if text.strip():
        assert stripped.strip()


@given(st.binary(max_size=2000))
def test_any_bytes_parse_without_error(raw: bytes) -> None:
    parsed = parse_email(raw)
    assert parsed.message_id


def test_encoded_headers_names_and_bodies_are_decoded() -> None:
    raw = customer_email(
        sender="José Ñúñez <Jose@Example.com>",
        subject="¿Dónde está mi pedido? 📦",
        text="Sigo esperando el envío — gracias.",
        attachments=[("factura año.pdf", "application/pdf", b"%PDF")],
    )
    assert b"=?utf-8?" in raw  # the mail program encoded them
    parsed = parse_email(raw)
    assert parsed.sender == "jose@example.com" and parsed.sender_name == "José Ñúñez"
    assert parsed.subject == "¿Dónde está mi pedido? 📦"
    assert parsed.text == "Sigo esperando el envío — gracias."
    assert parsed.attachments[0]["name"] == "factura año.pdf"
