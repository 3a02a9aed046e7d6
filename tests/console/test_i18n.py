"""Every message the console shows is in both catalogues, and Spanish translates all of them."""

from __future__ import annotations

from omnicanal.console.catalogs import extract, untranslated
from omnicanal.console.i18n import pick_language, translations


def test_spanish_translates_every_message() -> None:
    template = extract()
    assert len(template) > 50
    assert untranslated("es", template) == []
    assert untranslated("en", template) == []


def test_translations_are_read_from_the_po_files() -> None:
    assert translations("es").gettext("Customers") == "Clientes"
    assert translations("en").gettext("Customers") == "Customers"


def test_pick_language() -> None:
    assert pick_language(None, None) == "es"
    assert pick_language("fr", "en-GB") == "en"
    assert pick_language("EN", "es") == "en"
