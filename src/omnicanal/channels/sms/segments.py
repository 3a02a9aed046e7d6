"""How many SMS segments a text takes (what the provider bills and the handset reassembles).

GSM 03.38 text: 160 characters in one segment, 153 per segment when split (the rest is the
concatenation header); characters of the extension table (``^{}\\[~]|€``) take two. Any other
character makes the whole text UCS-2: 70 in one segment, 67 per segment when split.
"""

from __future__ import annotations

GSM_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM_EXTENDED = frozenset("^{}\\[~]|€\f")


def encoding(text: str) -> str:
    return "GSM-7" if all(c in GSM_BASIC or c in GSM_EXTENDED for c in text) else "UCS-2"


def segments(text: str) -> int:
    if not text:
        return 1
    if encoding(text) == "GSM-7":
        units = sum(2 if c in GSM_EXTENDED else 1 for c in text)
        single, split = 160, 153
    else:
        # UTF-16 code units: a character outside the BMP (most emoji) takes two
        units = sum(2 if ord(c) > 0xFFFF else 1 for c in text)
        single, split = 70, 67
    return 1 if units <= single else -(-units // split)
