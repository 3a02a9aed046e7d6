"""Console translations: the ``.po`` catalogues are read once, in memory (no compiled ``.mo`` files)."""

from __future__ import annotations

from functools import cache
from io import BytesIO
from pathlib import Path

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import Translations

LANGUAGES = ("es", "en")
DEFAULT_LANGUAGE = "es"
LANGUAGE_NAMES = {"es": "Español", "en": "English"}
LOCALES_DIR = Path(__file__).parent / "locales"
DOMAIN = "messages"


def po_path(language: str) -> Path:
    return LOCALES_DIR / language / "LC_MESSAGES" / f"{DOMAIN}.po"


def pick_language(*candidates: str | None) -> str:
    """The first supported language among ``candidates`` (``es-ES`` counts as ``es``), else Spanish."""
    for candidate in candidates:
        if candidate:
            base = candidate.strip().lower().replace("_", "-").split("-")[0]
            if base in LANGUAGES:
                return base
    return DEFAULT_LANGUAGE


@cache
def translations(language: str) -> Translations:
    """The gettext translations of one console language, built from its ``.po`` file."""
    if language not in LANGUAGES:
        raise ValueError(f"unsupported console language {language!r}")
    with po_path(language).open("rb") as handle:
        catalog = read_po(handle, locale=language, domain=DOMAIN)
    compiled = BytesIO()
    write_mo(compiled, catalog)
    compiled.seek(0)
    return Translations(fp=compiled, domain=DOMAIN)


def load_all() -> dict[str, Translations]:
    """Read every catalogue now (at startup), so a broken ``.po`` file fails early."""
    return {language: translations(language) for language in LANGUAGES}
