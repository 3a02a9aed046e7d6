"""Variables, the markdown subset, and SMS segments: pure functions, no database."""

from __future__ import annotations

import pytest

from omnicanal.answers.rendering import (
    GSM7,
    UCS2,
    render_for_channel,
    render_variables,
    safe_url,
    sms_segments,
)
from omnicanal.errors import ValidationFailed

# ---------------------------------------------------------------------------- SMS segments


def test_160_gsm_characters_are_one_segment_and_161_are_two() -> None:
    assert sms_segments("a" * 160) == sms_segments("a" * 160).__class__(GSM7, 160, 1)
    two = sms_segments("a" * 161)
    assert (two.encoding, two.length, two.segments) == (GSM7, 161, 2)
    assert sms_segments("a" * 306).segments == 2
    assert sms_segments("a" * 307).segments == 3


def test_gsm_basic_set_includes_spanish_n_tilde_and_some_accents_but_not_a_acute() -> None:
    # GSM 03.38: ñ Ñ é è ü ¿ ¡ à are in the basic set; á í ó ú are not.
    assert sms_segments("ñÑéèüÜ¿¡àÄÖ£$¥@_ΔΩ").encoding == GSM7
    assert sms_segments("ñ" * 160).segments == 1
    for char in "áíóúÁç`":
        info = sms_segments("Hola " + char)
        assert info.encoding == UCS2, char


def test_one_non_gsm_character_switches_to_ucs2_70_67() -> None:
    assert (sms_segments("a" * 69 + "á").encoding, sms_segments("a" * 69 + "á").segments) == (UCS2, 1)
    info = sms_segments("a" * 70 + "á")
    assert (info.encoding, info.length, info.segments) == (UCS2, 71, 2)
    assert sms_segments("á" * 134).segments == 2
    assert sms_segments("á" * 135).segments == 3


def test_extension_characters_count_twice() -> None:
    info = sms_segments("€[]{}^~|\\")
    assert (info.encoding, info.length, info.segments) == (GSM7, 18, 1)
    assert sms_segments("€" * 80).segments == 1
    assert sms_segments("€" * 81) == sms_segments("€" * 81).__class__(GSM7, 162, 2)
    # A part never separates the escape from its character: 152 + "€" does not fit in 153.
    assert sms_segments("a" * 152 + "€" + "a" * 8).segments == 2
    assert sms_segments("a" * 152 + "€" + "a" * 160).segments == 3


def test_emoji_is_ucs2_and_counts_two_utf16_units() -> None:
    info = sms_segments("Gracias 😀")
    assert (info.encoding, info.length, info.segments) == (UCS2, 10, 1)
    assert sms_segments("😀" * 35).segments == 1
    assert sms_segments("😀" * 36).segments == 2


def test_empty_text_has_no_segments() -> None:
    assert sms_segments("").segments == 0


# ---------------------------------------------------------------------------- variables


def test_variables_fill_from_nested_or_dotted_context() -> None:
    result = render_variables(
        "Hola {{customer.first_name}}, tu pedido {{ order.number }} ({{count}} artículos)",
        {"customer": {"first_name": "Ana"}, "order.number": "A-1042", "count": 3},
    )
    assert result.text == "Hola Ana, tu pedido A-1042 (3 artículos)"
    assert result.missing == []


def test_missing_variables_render_empty_tidily_and_are_reported() -> None:
    result = render_variables("Hola {{customer.first_name}}, soy {{agent.name}} y te ayudo.", {"agent": {}})
    assert result.text == "Hola, soy y te ayudo."
    assert result.missing == ["customer.first_name", "agent.name"]


def test_missing_variables_can_stay_visible_as_markers() -> None:
    result = render_variables("Hola {{customer.first_name}}!", {}, keep_missing=True)
    assert result.text == "Hola {{customer.first_name}}!"
    assert result.missing == ["customer.first_name"]


def test_variables_are_never_evaluated() -> None:
    context = {"customer": {"first_name": "Ana", "__class__": "x"}, "a": {"b": ["list"]}}
    result = render_variables(
        "{{customer.__class__.__name__}} {{ 1+1 }} {{a.b}} {{customer.first_name.upper}}", context
    )
    # "{{ 1+1 }}" is not a variable at all: it stays as written
    assert result.text == "{{ 1+1 }}"
    assert result.missing == ["customer.__class__.__name__", "a.b", "customer.first_name.upper"]


def test_values_are_not_read_as_markdown_when_escaped() -> None:
    filled = render_variables(
        "Hola **{{customer.first_name}}**",
        {"customer": {"first_name": "*Ana* [x](https://e.vil)"}},
        escape_markdown=True,
    )
    rendered = render_for_channel(filled.text, "email")
    assert rendered.html == "<p>Hola <strong>*Ana* [x](https://e.vil)</strong></p>"
    assert rendered.text == "Hola *Ana* [x](https://e.vil)"


# ---------------------------------------------------------------------------- channels

BODY = (
    "Hola **Ana**, tu pedido está *en camino*.\n"
    "Síguelo [aquí](https://shop.example/orders?id=1&x=2).\n\n"
    "- Entrega en 24 h\n"
    "- Devolución gratis"
)


def test_email_and_webchat_get_safe_html_and_a_plain_alternative() -> None:
    for channel in ("email", "webchat"):
        rendered = render_for_channel(BODY, channel)
        assert rendered.html == (
            "<p>Hola <strong>Ana</strong>, tu pedido está <em>en camino</em>.<br>\n"
            'Síguelo <a href="https://shop.example/orders?id=1&amp;x=2" rel="noopener noreferrer">aquí</a>.</p>\n'
            "<ul>\n<li>Entrega en 24 h</li>\n<li>Devolución gratis</li>\n</ul>"
        )
        assert rendered.text == (
            "Hola Ana, tu pedido está en camino.\nSíguelo aquí (https://shop.example/orders?id=1&x=2).\n\n"
            "- Entrega en 24 h\n- Devolución gratis"
        )
        assert (rendered.segments, rendered.encoding) == (None, None)


def test_html_is_escaped_before_any_formatting() -> None:
    body = '<script>alert("x")</script> **<b onclick="x">hi</b>** & [clic](javascript:alert(1)) [ok](https://a.b/"onmouseover=")'
    rendered = render_for_channel(body, "email")
    assert rendered.html is not None
    assert "<script>" not in rendered.html and "<b " not in rendered.html
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in rendered.html
    assert "<strong>&lt;b onclick=&quot;x&quot;&gt;hi&lt;/b&gt;</strong>" in rendered.html
    assert "&amp;" in rendered.html
    assert "href" not in rendered.html  # neither the javascript: link nor the quote-breaking one
    assert "[clic](javascript:alert(1))" in rendered.text


def test_url_safety() -> None:
    assert safe_url("https://omnicanal.demo/a?b=c")
    assert safe_url("mailto:ayuda@omnicanal.demo") and safe_url("tel:+34900123456")
    for bad in ("javascript:alert(1)", "data:text/html,x", "//evil.example", "https:evil", "https://a b", "/rel"):
        assert not safe_url(bad), bad


def test_whatsapp_uses_its_own_bold_and_italic() -> None:
    rendered = render_for_channel(BODY, "whatsapp")
    assert rendered.text.startswith("Hola *Ana*, tu pedido está _en camino_.\nSíguelo aquí (https://")
    assert rendered.html is None


def test_sms_and_telegram_are_plain_text_and_sms_counts_segments() -> None:
    sms = render_for_channel(BODY, "sms")
    telegram = render_for_channel(BODY, "telegram")
    assert sms.text == telegram.text
    assert "*" not in sms.text and "<" not in sms.text
    assert (sms.encoding, sms.segments) == (UCS2, 2)  # "á" and "í" are not GSM-7
    assert sms.length == len(sms.text)
    assert telegram.segments is None
    gsm = render_for_channel("Tu pedido **A-1** ya está listo", "sms")
    assert (gsm.text, gsm.encoding, gsm.length, gsm.segments) == ("Tu pedido A-1 ya está listo", UCS2, 27, 1)
    gsm = render_for_channel("Tu pedido **A-1** llega mañana. Total: 10€", "sms")
    assert (gsm.encoding, gsm.length, gsm.segments) == (GSM7, 39, 1)


def test_markdown_edge_cases_stay_literal() -> None:
    rendered = render_for_channel("2 * 3 * 4 = 24, ** no **, \\*literal\\*, a_b_c", "email")
    assert rendered.html == "<p>2 * 3 * 4 = 24, ** no **, *literal*, a_b_c</p>"
    nested = render_for_channel("*muy **importante** hoy*", "email")
    assert nested.html == "<p><em>muy <strong>importante</strong> hoy</em></p>"


def test_paragraphs_and_lists_mix() -> None:
    rendered = render_for_channel("Opciones:\n- uno\n- dos\nDespués\n\n\n\nFin", "webchat")
    assert rendered.html == "<p>Opciones:</p>\n<ul>\n<li>uno</li>\n<li>dos</li>\n</ul>\n<p>Después</p>\n<p>Fin</p>"


def test_unknown_channel_is_a_validation_error() -> None:
    with pytest.raises(ValidationFailed) as error:
        render_for_channel("hola", "pigeon")
    assert error.value.errors[0].field == "channel"
