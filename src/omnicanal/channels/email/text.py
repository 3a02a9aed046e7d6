"""Turning an email body into what the customer actually wrote: HTML to text, quotes and signatures cut."""

from __future__ import annotations

import re
from html import unescape
from html.parser import HTMLParser

_BLOCK_TAGS = frozenset(
    [
        "p",
        "div",
        "section",
        "article",
        "header",
        "footer",
        "aside",
        "nav",
        "main",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "ul",
        "ol",
        "table",
        "tr",
        "pre",
        "blockquote",
        "address",
        "figure",
        "hr",
        "dl",
        "dt",
        "dd",
        "form",
        "fieldset",
    ]
)
_SKIP_TAGS = frozenset(("script", "style", "head", "title", "template", "noscript"))
# Containers mail programs put the quoted previous message in (Gmail, Apple Mail, Thunderbird, Outlook).
_QUOTE_MARKERS = ("gmail_quote", "moz-cite-prefix", "yahoo_quoted", "divrplyfwdmsg", "appendonsend", "gmail_extra")


class _TextExtractor(HTMLParser):
    def __init__(self, *, drop_quotes: bool) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip_depth = 0
        self._drop_quotes = drop_quotes
        self._quote_stack: list[str] = []  # tags opened inside a dropped quote
        self._links: list[str | None] = []
        self._list_depth = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self._quote_stack:
            if tag not in _VOID_TAGS:
                self._quote_stack.append(tag)
            return
        attributes = {k: v or "" for k, v in attrs}
        if self._drop_quotes and (
            tag == "blockquote"
            or any(marker in (attributes.get("class", "") + " " + attributes.get("id", "")).lower()
                   for marker in _QUOTE_MARKERS)
        ):  # fmt: skip
            if tag not in _VOID_TAGS:
                self._quote_stack.append(tag)
            return
        if tag in _SKIP_TAGS:
            self._skip_depth += 1
        elif tag == "br":
            self.parts.append("\n")
        elif tag == "li":
            self.parts.append("\n- ")
        elif tag in _BLOCK_TAGS:
            self.parts.append("\n\n" if tag == "p" else "\n")
        elif tag == "a":
            self._links.append(attributes.get("href"))
        elif tag == "img" and attributes.get("alt"):
            self.parts.append(attributes["alt"])

    def handle_endtag(self, tag: str) -> None:
        if self._quote_stack:
            # tolerate sloppy HTML: close up to the matching tag
            if tag in self._quote_stack:
                while self._quote_stack and self._quote_stack.pop() != tag:
                    pass
            return
        if tag in _SKIP_TAGS:
            self._skip_depth = max(0, self._skip_depth - 1)
        elif tag in _BLOCK_TAGS:
            self.parts.append("\n\n" if tag == "p" else "\n")
        elif tag == "a" and self._links:
            href = self._links.pop()
            if href and href.startswith(("http://", "https://")):
                text_so_far = self.parts[-1].strip() if self.parts else ""
                if href.rstrip("/") != text_so_far.rstrip("/"):
                    self.parts.append(f" ({href})")

    def handle_data(self, data: str) -> None:
        if self._skip_depth or self._quote_stack:
            return
        self.parts.append(re.sub(r"\s+", " ", data))


_VOID_TAGS = frozenset(
    ["br", "img", "hr", "meta", "link", "input", "area", "base", "col", "embed", "source", "track", "wbr"]
)


def html_to_text(html: str, *, drop_quotes: bool = False) -> str:
    """Readable plain text: paragraphs and line breaks kept, links shown, scripts and styles dropped."""
    parser = _TextExtractor(drop_quotes=drop_quotes)
    parser.feed(html)
    parser.close()
    text = unescape("".join(parser.parts))
    lines = [line.strip() for line in text.replace("\xa0", " ").splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


# "On Mon, 3 Nov 2026 at 10:00, Ana <ana@example.com> wrote:" (may wrap onto a second line), and the
# Spanish, French, German, Portuguese and Italian forms mail programs write.
_ATTRIBUTION = re.compile(
    r"^(on|el|le|am|em|il)\b.{0,200}?\b(wrote|escribió|a écrit|schrieb|escreveu|ha scritto)\s*:\s*$",
    re.IGNORECASE,
)
_ORIGINAL_MESSAGE = re.compile(
    r"^-{2,}\s*(original message|mensaje original|message d'origine|ursprüngliche nachricht|"
    r"forwarded message|mensaje reenviado)\s*-{2,}\s*$",
    re.IGNORECASE,
)
_OUTLOOK_HEADER = re.compile(r"^\*?(from|de|von|da)\s*:\*?\s+\S", re.IGNORECASE)
_OUTLOOK_NEXT = re.compile(r"^\*?(sent|enviado|date|fecha|to|para|subject|asunto)\s*:", re.IGNORECASE)
_MOBILE_SIGNATURE = re.compile(
    r"^(sent from my \w+|enviado desde mi \w+|get outlook for \w+|obtener outlook para \w+|"
    r"sent from (mail|outlook) for \w+|enviado desde (correo|outlook) para \w+)",
    re.IGNORECASE,
)


def strip_reply(text: str) -> str:
    """The new part of a reply: quoted earlier messages and the signature removed.

    Cuts at an attribution line ("On ... wrote:"), an "Original message" separator, an Outlook-style
    header block, or the signature delimiter ("-- "), and drops ">"-quoted lines. If that would leave
    nothing, the whole text is kept: better an untrimmed message than a lost one.
    """
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    kept: list[str] = []
    for index, line in enumerate(lines):
        stripped = line.strip()
        if line.rstrip(" ") == "--" or line == "-- ":
            break
        if _ORIGINAL_MESSAGE.match(stripped) or _MOBILE_SIGNATURE.match(stripped):
            break
        if _ATTRIBUTION.match(stripped):
            break
        following = lines[index + 1].strip() if index + 1 < len(lines) else ""
        if _ATTRIBUTION.match(f"{stripped} {following}") and stripped.lower().startswith(("on ", "el ", "le ")):
            break
        if _OUTLOOK_HEADER.match(stripped) and _OUTLOOK_NEXT.match(following):
            break
        if stripped.startswith(">"):
            continue
        kept.append(line.rstrip())
    result = "\n".join(kept).strip()
    result = re.sub(r"\n{3,}", "\n\n", result)
    return result or text.strip()
