"""One answer, every channel: variables, a tiny markdown subset, and SMS segment counting.

Pure functions, no database. An answer body is written once in a small markdown subset
(``**bold**``, ``*italic*``, ``[text](https://url)``, line breaks, blank-line paragraphs and
``- `` bullet lists) and rendered per channel:

- ``email`` and ``webchat``: safe HTML (every character of the source is escaped, then only
  the subset becomes tags) plus a plain-text alternative;
- ``whatsapp``: WhatsApp's own ``*bold*`` and ``_italic_``;
- ``sms`` and ``telegram``: plain text; SMS also reports its encoding, length and segments.

Variables (``{{customer.first_name}}``) are looked up in a context mapping, never evaluated.
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

from omnicanal.errors import ValidationFailed


class Channel(StrEnum):
    SMS = "sms"
    EMAIL = "email"
    WHATSAPP = "whatsapp"
    TELEGRAM = "telegram"
    WEBCHAT = "webchat"


def parse_channel(value: str) -> Channel:
    try:
        return Channel(value)
    except ValueError:
        allowed = ", ".join(c.value for c in Channel)
        raise ValidationFailed.on_field("channel", f"unknown channel {value!r}; one of: {allowed}") from None


# --------------------------------------------------------------------------------------------
# Variables
# --------------------------------------------------------------------------------------------

VARIABLE = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)\s*\}\}")
_GONE = "\x00"  # where a missing variable was, until the text around it is tidied
_MARKDOWN_SPECIAL = re.compile(r"([\\*_\[\]()\-])")


@dataclass(frozen=True)
class RenderedVariables:
    text: str
    missing: list[str] = field(default_factory=list)


def variables_in(template: str) -> list[str]:
    """The variable names a template uses, in order of first appearance."""
    return list(dict.fromkeys(match.group(1) for match in VARIABLE.finditer(template)))


def _lookup(context: Mapping[str, Any], name: str) -> str | None:
    """``context["customer.first_name"]`` or ``context["customer"]["first_name"]``; scalars only."""
    if name in context:
        value: Any = context[name]
    else:
        value = context
        for part in name.split("."):
            if not isinstance(value, Mapping) or part not in value:
                return None
            value = value[part]
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value.replace(_GONE, "")
    if isinstance(value, int | float):
        return str(value)
    return None  # None, lists and objects have no single text form


def render_variables(
    template: str,
    context: Mapping[str, Any],
    *,
    keep_missing: bool = False,
    escape_markdown: bool = False,
) -> RenderedVariables:
    """Fill ``{{name.path}}`` from ``context``; report the names it could not fill.

    A missing variable renders empty (the space before a following punctuation mark goes with it:
    "Hola {{customer.first_name}}," becomes "Hola,"), or is left as ``{{name}}`` with
    ``keep_missing`` — a visible marker for a preview. ``escape_markdown`` backslash-escapes the
    values, so a customer's name is never read as formatting by :func:`render_for_channel`.
    """
    missing: list[str] = []
    template = template.replace(_GONE, "")

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        value = _lookup(context, name)
        if value is None or value == "":
            if name not in missing:
                missing.append(name)
            return match.group(0) if keep_missing else _GONE
        return _MARKDOWN_SPECIAL.sub(r"\\\1", value) if escape_markdown else value

    text = VARIABLE.sub(replace, template)
    if _GONE in text:
        text = re.sub(rf"{_GONE}(?:[ \t]*{_GONE})+", _GONE, text)
        text = re.sub(rf"[ \t]*{_GONE}(?=[,.;:!?)]|$)", "", text, flags=re.MULTILINE)
        text = re.sub(rf"(?:^|(?<=[ \t])){_GONE}[ \t]+", "", text, flags=re.MULTILINE)
        text = text.replace(_GONE, "")
    return RenderedVariables(text=text, missing=missing)


# --------------------------------------------------------------------------------------------
# The markdown subset
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Text:
    value: str


@dataclass(frozen=True)
class Strong:
    children: tuple[Inline, ...]


@dataclass(frozen=True)
class Emphasis:
    children: tuple[Inline, ...]


@dataclass(frozen=True)
class Link:
    children: tuple[Inline, ...]
    url: str


Inline = Text | Strong | Emphasis | Link


@dataclass(frozen=True)
class Paragraph:
    lines: tuple[tuple[Inline, ...], ...]


@dataclass(frozen=True)
class BulletList:
    items: tuple[tuple[Inline, ...], ...]


Block = Paragraph | BulletList

ESCAPABLE = frozenset("\\*_[]()-#`~>!")
_BULLET = re.compile(r"^[ \t]*[-*][ \t]+(?=\S)")
_BLANK_LINES = re.compile(r"\n[ \t]*\n+")
_SAFE_SCHEMES = frozenset({"https", "http", "mailto", "tel"})


def safe_url(url: str) -> bool:
    """Only web, mail and phone links; never ``javascript:``, ``data:`` or relative tricks."""
    if not url or any(c.isspace() or c in "<>\"'`" for c in url):
        return False
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    if parts.scheme.lower() not in _SAFE_SCHEMES:
        return False
    if parts.scheme.lower() in {"http", "https"}:
        return bool(parts.netloc) and url.lower().startswith(parts.scheme.lower() + "://")
    return bool(parts.path)


def _closing(source: str, start: int, delimiter: str) -> int | None:
    """Where ``delimiter`` closes a span opened just before ``start``, or None.

    Like CommonMark: the content may neither start nor end with whitespace.
    """
    if start >= len(source) or source[start].isspace():
        return None
    index = start
    while index < len(source):
        if source[index] == "\\":
            index += 2
            continue
        if source.startswith("**", index):
            if delimiter == "**" and index > start and not source[index - 1].isspace():
                return index
            if delimiter == "*":
                # a nested bold span: jump over it whole
                inner = _closing(source, index + 2, "**")
                index = inner + 2 if inner is not None else index + 2
                continue
        elif source[index] == "*" and delimiter == "*" and index > start and not source[index - 1].isspace():
            return index
        index += 1
    return None


def _link_at(source: str, start: int) -> tuple[str, str, int] | None:
    """``[text](url)`` starting at ``start``: (text, url, end) or None."""
    index = start + 1
    while index < len(source) and source[index] != "]":
        if source[index] == "[":
            return None
        index += 2 if source[index] == "\\" else 1
    if index >= len(source) or not source.startswith("(", index + 1):
        return None
    close = source.find(")", index + 2)
    if close == -1:
        return None
    text, url = source[start + 1 : index], source[index + 2 : close].strip()
    if not text.strip():
        return None
    return text, url, close + 1


def parse_inline(source: str, *, links: bool = True) -> tuple[Inline, ...]:
    nodes: list[Inline] = []
    buffer: list[str] = []

    def flush() -> None:
        if buffer:
            nodes.append(Text("".join(buffer)))
            buffer.clear()

    index = 0
    while index < len(source):
        char = source[index]
        if char == "\\" and index + 1 < len(source) and source[index + 1] in ESCAPABLE:
            buffer.append(source[index + 1])
            index += 2
            continue
        if source.startswith("**", index):
            end = _closing(source, index + 2, "**")
            if end is not None:
                flush()
                nodes.append(Strong(parse_inline(source[index + 2 : end], links=links)))
                index = end + 2
                continue
            buffer.append("**")
            index += 2
            continue
        if char == "*":
            end = _closing(source, index + 1, "*")
            if end is not None:
                flush()
                nodes.append(Emphasis(parse_inline(source[index + 1 : end], links=links)))
                index = end + 1
                continue
        if char == "[" and links:
            found = _link_at(source, index)
            if found is not None and safe_url(found[1]):
                text, url, end = found
                flush()
                nodes.append(Link(parse_inline(text, links=False), url))
                index = end
                continue
        buffer.append(char)
        index += 1
    flush()
    return tuple(nodes)


def parse_markdown(source: str) -> list[Block]:
    """Paragraphs (blank-line separated; single newlines are line breaks) and ``- `` lists."""
    source = source.replace("\r\n", "\n").replace("\r", "\n").strip("\n")
    blocks: list[Block] = []
    for chunk in _BLANK_LINES.split(source):
        lines: list[tuple[Inline, ...]] = []
        items: list[tuple[Inline, ...]] = []
        for raw in chunk.split("\n"):
            bullet = _BULLET.match(raw)
            if bullet is not None:
                if lines:
                    blocks.append(Paragraph(tuple(lines)))
                    lines = []
                items.append(parse_inline(raw[bullet.end() :].strip()))
                continue
            if items:
                blocks.append(BulletList(tuple(items)))
                items = []
            if raw.strip():
                lines.append(parse_inline(raw.strip()))
        if lines:
            blocks.append(Paragraph(tuple(lines)))
        if items:
            blocks.append(BulletList(tuple(items)))
    return blocks


def _inline_html(nodes: tuple[Inline, ...]) -> str:
    out: list[str] = []
    for node in nodes:
        if isinstance(node, Text):
            out.append(html.escape(node.value, quote=True))
        elif isinstance(node, Strong):
            out.append(f"<strong>{_inline_html(node.children)}</strong>")
        elif isinstance(node, Emphasis):
            out.append(f"<em>{_inline_html(node.children)}</em>")
        else:
            href = html.escape(node.url, quote=True)
            out.append(f'<a href="{href}" rel="noopener noreferrer">{_inline_html(node.children)}</a>')
    return "".join(out)


def to_html(blocks: list[Block]) -> str:
    parts: list[str] = []
    for block in blocks:
        if isinstance(block, Paragraph):
            parts.append("<p>" + "<br>\n".join(_inline_html(line) for line in block.lines) + "</p>")
        else:
            items = "".join(f"<li>{_inline_html(item)}</li>\n" for item in block.items)
            parts.append(f"<ul>\n{items}</ul>")
    return "\n".join(parts)


def _plain_link(node: Link, text: str) -> str:
    bare = node.url.split(":", 1)[1].lstrip("/") if ":" in node.url else node.url
    web = node.url.lower().startswith(("http:", "https:"))
    if text in (node.url, bare):
        return node.url if web else text
    return f"{text} ({node.url if web else bare})"


def _inline_text(nodes: tuple[Inline, ...], *, whatsapp: bool) -> str:
    out: list[str] = []
    for node in nodes:
        if isinstance(node, Text):
            out.append(node.value)
        elif isinstance(node, Strong):
            inner = _inline_text(node.children, whatsapp=whatsapp)
            out.append(f"*{inner}*" if whatsapp else inner)
        elif isinstance(node, Emphasis):
            inner = _inline_text(node.children, whatsapp=whatsapp)
            out.append(f"_{inner}_" if whatsapp else inner)
        else:
            out.append(_plain_link(node, _inline_text(node.children, whatsapp=whatsapp)))
    return "".join(out)


def to_text(blocks: list[Block], *, whatsapp: bool = False) -> str:
    """Plain text (markdown stripped; links as "text (url)"), or WhatsApp's own formatting."""
    parts: list[str] = []
    for block in blocks:
        if isinstance(block, Paragraph):
            parts.append("\n".join(_inline_text(line, whatsapp=whatsapp) for line in block.lines))
        else:
            parts.append("\n".join("- " + _inline_text(item, whatsapp=whatsapp) for item in block.items))
    return "\n\n".join(parts)


# --------------------------------------------------------------------------------------------
# SMS: GSM 03.38 / UCS-2 segments
# --------------------------------------------------------------------------------------------

# The GSM 03.38 default alphabet (basic character set; 0x1B, the escape, is not a character).
GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
# The basic extension table: each costs an escape plus the character, two septets.
GSM7_EXTENSION = frozenset("\f^{}\\[~]|€")

GSM7 = "GSM-7"
UCS2 = "UCS-2"


@dataclass(frozen=True)
class SmsSegments:
    encoding: str
    length: int  # septets for GSM-7, UTF-16 code units for UCS-2
    segments: int


def sms_segments(text: str) -> SmsSegments:
    """How a text travels as SMS: GSM-7 160 (153 per part when split) or UCS-2 70 (67 per part).

    A part never splits an extension character from its escape, nor a UTF-16 surrogate pair.
    """
    if all(char in GSM7_BASIC or char in GSM7_EXTENSION for char in text):
        encoding, single, per_part = GSM7, 160, 153
        units = [2 if char in GSM7_EXTENSION else 1 for char in text]
    else:
        encoding, single, per_part = UCS2, 70, 67
        units = [2 if ord(char) > 0xFFFF else 1 for char in text]
    length = sum(units)
    if length == 0:
        return SmsSegments(encoding, 0, 0)
    if length <= single:
        return SmsSegments(encoding, length, 1)
    segments, used = 1, 0
    for unit in units:
        if used + unit > per_part:
            segments += 1
            used = 0
        used += unit
    return SmsSegments(encoding, length, segments)


# --------------------------------------------------------------------------------------------
# One answer, one channel
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RenderedAnswer:
    channel: str
    text: str
    html: str | None
    length: int  # SMS: encoded units (septets / UTF-16); elsewhere: characters of ``text``
    segments: int | None
    encoding: str | None
    missing_variables: list[str] = field(default_factory=list)


def render_for_channel(text: str, channel: str | Channel) -> RenderedAnswer:
    """Render markdown-subset ``text`` (variables already filled) for one channel."""
    checked = channel if isinstance(channel, Channel) else parse_channel(channel)
    blocks = parse_markdown(text)
    if checked in (Channel.EMAIL, Channel.WEBCHAT):
        plain = to_text(blocks)
        return RenderedAnswer(checked.value, plain, to_html(blocks), len(plain), None, None)
    if checked is Channel.WHATSAPP:
        formatted = to_text(blocks, whatsapp=True)
        return RenderedAnswer(checked.value, formatted, None, len(formatted), None, None)
    plain = to_text(blocks)
    if checked is Channel.SMS:
        info = sms_segments(plain)
        return RenderedAnswer(checked.value, plain, None, info.length, info.segments, info.encoding)
    return RenderedAnswer(checked.value, plain, None, len(plain), None, None)
