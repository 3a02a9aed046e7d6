"""Meta webhooks: the ``hub.challenge`` handshake and ``X-Hub-Signature-256``.

The signature is ``sha256=`` + hex HMAC-SHA256 of the raw request body with the app secret;
it is checked, in constant time, before the body is parsed.
"""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import PlainTextResponse

from omnicanal.channels.inbound import hmac_hex, raw_body, rejected, same
from omnicanal.channels.service import ConfiguredChannel


def handshake(request: Request, channel: ConfiguredChannel) -> PlainTextResponse:
    params = request.query_params
    if params.get("hub.mode") != "subscribe" or not same(channel["verify_token"], params.get("hub.verify_token", "")):
        raise rejected(channel, "bad hub.verify_token")
    return PlainTextResponse(params.get("hub.challenge", ""))


async def verified_body(request: Request, channel: ConfiguredChannel) -> bytes:
    given = request.headers.get("x-hub-signature-256")
    if not given:
        raise rejected(channel, "no X-Hub-Signature-256", status=401)
    body = await raw_body(request)
    if not same("sha256=" + hmac_hex(channel["app_secret"], body), given):
        raise rejected(channel, "bad X-Hub-Signature-256")
    return body
