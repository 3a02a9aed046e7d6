"""Twilio's request signature, shared by the SMS and voice webhooks.

``X-Twilio-Signature`` = base64(HMAC-SHA1(auth token, full public URL + every POST parameter, sorted by
name, as name + value)). Behind a reverse proxy the URL the provider signed is not the one this server
sees, so it is rebuilt from the channel's configured ``public_url`` and the request's path and query.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable

from fastapi import Request


def signature(auth_token: str, url: str, params: Iterable[tuple[str, str]]) -> str:
    data = url + "".join(name + value for name, value in sorted(params))
    digest = hmac.new(auth_token.encode(), data.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def public_url(request: Request, base: str | None) -> str:
    """The URL the provider called, as it saw it."""
    if not base:
        return str(request.url)
    url = base.rstrip("/") + request.url.path
    if request.url.query:
        url += "?" + request.url.query
    return url
