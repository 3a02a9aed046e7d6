"""Keep the console's ``.po`` catalogues in step with the templates and the code.

``python -m omnicanal.console.catalogs`` extracts every message, adds new ones to each catalogue
(keeping existing translations, dropping unused ones) and lists what still needs a Spanish
translation. There is nothing to compile: the console reads the ``.po`` files at startup.
"""

from __future__ import annotations

import sys
from pathlib import Path

from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po, write_po

from omnicanal.console.i18n import DOMAIN, LANGUAGES, po_path

ROOT = Path(__file__).parent
METHOD_MAP = [("**/templates/**.html", "jinja2"), ("**.py", "python")]
OPTIONS = {"**/templates/**.html": {"extensions": "jinja2.ext.i18n", "trim_blocks": "true", "lstrip_blocks": "true"}}
KEYWORDS: dict[str, tuple[int, ...] | None] = {"_": None, "gettext": None, "ngettext": (1, 2), "N_": None}
SOURCE_LANGUAGE = "en"


def extract() -> Catalog:
    """Every message the console can show, with where it is used."""
    template = Catalog(domain=DOMAIN, project="omnicanal console", fuzzy=False)
    for filename, lineno, message, _comments, _context in extract_from_dir(
        ROOT, METHOD_MAP, options_map=OPTIONS, keywords=KEYWORDS
    ):
        flags = ["python-format"] if "%(" in str(message) else []
        template.add(message, locations=[(filename, lineno)], flags=flags)
    return template


def read_catalog(language: str) -> Catalog:
    with po_path(language).open("rb") as handle:
        return read_po(handle, locale=language, domain=DOMAIN)


def untranslated(language: str, template: Catalog | None = None) -> list[str]:
    """Messages the code uses that ``language`` does not translate (English is the source)."""
    template = template or extract()
    if language == SOURCE_LANGUAGE:
        catalog = read_catalog(language)
        return sorted(str(m.id) for m in template if m.id and m.id not in catalog)
    catalog = read_catalog(language)
    missing = []
    for message in template:
        if not message.id:
            continue
        entry = catalog.get(message.id)
        if entry is None or not entry.string or entry.fuzzy:
            missing.append(str(message.id))
    return sorted(missing)


def update() -> dict[str, list[str]]:
    template = extract()
    report = {}
    for language in LANGUAGES:
        catalog = read_catalog(language)
        catalog.update(template, no_fuzzy_matching=True)
        catalog.obsolete.clear()
        with po_path(language).open("wb") as handle:
            write_po(handle, catalog, width=110, sort_output=True, ignore_obsolete=True)
        report[language] = untranslated(language, template)
    return report


def main() -> int:
    report = update()
    todo = {language: missing for language, missing in report.items() if language != SOURCE_LANGUAGE and missing}
    for language, missing in todo.items():
        print(f"{language}: {len(missing)} message(s) to translate:")
        for message in missing:
            print(f"  {message}")
    return 1 if todo else 0


if __name__ == "__main__":
    sys.exit(main())
