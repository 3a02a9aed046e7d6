"""The WhatsApp Cloud API double: ``/messages`` payloads checked against the documented shapes, media upload.

Shapes as documented for the Cloud API's messages endpoint: text; image/audio/video/document/sticker by
``link`` or ``id`` (caption on image, video and document only; filename on document only); interactive
reply buttons (1-3, titles up to 20 characters, distinct) and lists (a button label up to 20, 1-10
sections, 10 rows in all, row titles up to 24, descriptions up to 72, section titles when several);
templates. Anything else is answered as Meta does: 400 with error code 100.
"""

from __future__ import annotations

import itertools
import re
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any

from tests.channels.doubles import Call, HttpDouble

TOKEN = "wa-access-token"
MEDIA_TYPES = ("image", "audio", "video", "document", "sticker")
TYPES = ("text", *MEDIA_TYPES, "interactive", "template", "location", "reaction", "contacts")


def invalid(details: str) -> tuple[int, Any]:
    return 400, {"error": {"message": "(#100) Invalid parameter", "type": "OAuthException", "code": 100,
                           "error_data": {"messaging_product": "whatsapp", "details": details}}}  # fmt: skip


def payload_problem(body: dict[str, Any]) -> str | None:
    """Why the Cloud API would refuse this ``/messages`` body; None when it is well formed."""
    if body.get("messaging_product") != "whatsapp":
        return "messaging_product must be whatsapp"
    if not re.fullmatch(r"\d{6,15}", str(body.get("to", ""))):
        return "to must be a phone number in international format, without +"
    kind = body.get("type", "text")
    if kind not in TYPES:
        return f"unknown type {kind}"
    extra = set(body) - {"messaging_product", "recipient_type", "to", "type", "context", "biz_opaque_callback_data",
                         kind}  # fmt: skip
    if extra:
        return f"unexpected parameters {sorted(extra)}"
    content = body.get(kind)
    if not isinstance(content, dict):
        return f"{kind} object is required"
    if kind == "text":
        return None if content.get("body") else "text.body is required"
    if kind in MEDIA_TYPES:
        if ("link" in content) == ("id" in content):
            return f"{kind} needs exactly one of link or id"
        allowed = {"link", "id"} | ({"caption"} if kind in ("image", "video", "document") else set())
        allowed |= {"filename"} if kind == "document" else set()
        if set(content) - allowed:
            return f"{kind} does not take {sorted(set(content) - allowed)}"
        if len(str(content.get("caption", ""))) > 1024:
            return "caption too long"
        return None
    if kind == "interactive":
        return _interactive_problem(content)
    if kind == "location":
        if set(content) - {"latitude", "longitude", "name", "address"}:
            return f"location does not take {sorted(set(content) - {'latitude', 'longitude', 'name', 'address'})}"
        coordinates = (content.get("latitude"), content.get("longitude"))
        if not all(isinstance(value, int | float) for value in coordinates):
            return "location.latitude and location.longitude are required numbers"
        return None
    return None


def _interactive_problem(content: dict[str, Any]) -> str | None:
    body = content.get("body") or {}
    if not body.get("text") or len(body["text"]) > 1024:
        return "interactive.body.text is required (1024 characters at most)"
    action = content.get("action") or {}
    if content.get("type") == "button":
        buttons = action.get("buttons") or []
        if not 1 <= len(buttons) <= 3:
            return "1 to 3 buttons"
        titles, ids = [], []
        for button in buttons:
            reply = button.get("reply") or {}
            if button.get("type") != "reply" or not reply.get("id") or not reply.get("title"):
                return "each button is {type: reply, reply: {id, title}}"
            if len(reply["title"]) > 20 or len(reply["id"]) > 256:
                return "button title at most 20 characters, id at most 256"
            titles.append(reply["title"])
            ids.append(reply["id"])
        if len(set(titles)) != len(titles) or len(set(ids)) != len(ids):
            return "button titles and ids must be unique"
        return None
    if content.get("type") == "list":
        if not action.get("button") or len(action["button"]) > 20:
            return "action.button is required (20 characters at most)"
        sections = action.get("sections") or []
        if not 1 <= len(sections) <= 10:
            return "1 to 10 sections"
        rows = [row for section in sections for row in section.get("rows") or []]
        if not 1 <= len(rows) <= 10:
            return "1 to 10 rows in all"
        if len(sections) > 1 and not all(section.get("title") for section in sections):
            return "section titles are required with several sections"
        for row in rows:
            if not row.get("id") or not row.get("title") or len(row["title"]) > 24:
                return "a row needs an id and a title of 24 characters at most"
            if len(row.get("description", "")) > 72:
                return "row description at most 72 characters"
        return None
    return "interactive.type must be button or list (or another documented type)"


def multipart_fields(call: Call) -> dict[str, tuple[str | None, str, bytes]]:
    """A multipart/form-data body: field -> (filename, content type, data)."""
    head = f"Content-Type: {call.headers['content-type']}\r\n\r\n".encode()
    parsed = BytesParser(policy=HTTP).parsebytes(head + call.body)
    fields: dict[str, tuple[str | None, str, bytes]] = {}
    for part in parsed.iter_parts():
        name = part.get_param("name", header="content-disposition")
        data = part.get_payload(decode=True) or b""
        fields[str(name)] = (part.get_filename(), part.get_content_type(), data)
    return fields


class CloudApi(HttpDouble):
    def __init__(self) -> None:
        super().__init__()
        self.uploads: dict[str, tuple[str | None, str, bytes]] = {}
        self.fail_sends: set[int] = set()  # the numbers (1, 2, ...) of the /messages calls to answer with 503
        self.send_calls = 0
        ids = itertools.count(1)
        media_ids = itertools.count(1)

        def authorized(call: Call) -> bool:
            return call.headers.get("authorization") == f"Bearer {TOKEN}"

        def send(call: Call, match: Any) -> tuple[int, Any]:
            if not authorized(call):
                return 401, {"error": {"message": "Invalid OAuth access token", "code": 190}}
            self.send_calls += 1
            if self.send_calls in self.fail_sends:
                return 503, {"error": {"message": "Service temporarily unavailable", "code": 2}}
            body = call.json()
            problem = payload_problem(body)
            if problem:
                return invalid(problem)
            return 200, {"messaging_product": "whatsapp", "contacts": [{"input": body["to"], "wa_id": body["to"]}],
                         "messages": [{"id": f"wamid.OUT{next(ids):06d}"}]}  # fmt: skip

        def upload(call: Call, match: Any) -> tuple[int, Any]:
            if not authorized(call):
                return 401, {"error": {"message": "Invalid OAuth access token", "code": 190}}
            if not call.headers.get("content-type", "").startswith("multipart/form-data"):
                return invalid("the upload is multipart/form-data")
            fields = multipart_fields(call)
            if fields.get("messaging_product", (None, "", b""))[2] != b"whatsapp" or "file" not in fields:
                return invalid("messaging_product=whatsapp and a file are required")
            media_id = f"media-{next(media_ids)}"
            self.uploads[media_id] = fields["file"]
            return 200, {"id": media_id}

        def media_info(call: Call, match: Any) -> tuple[int, Any]:
            if not authorized(call):
                return 401, {"error": {"message": "Invalid OAuth access token", "code": 190}}
            return 200, {"messaging_product": "whatsapp", "url": f"{self.url}/files/{match.group(1)}",
                         "mime_type": "image/jpeg", "sha256": "x", "file_size": 9, "id": match.group(1)}  # fmt: skip

        self.route("POST", r"/v21\.0/(\d+)/messages", send)
        self.route("POST", r"/v21\.0/(\d+)/media", upload)
        self.route("GET", r"/v21\.0/([\w-]+)", media_info)
        self.route("GET", r"/files/([\w-]+)", lambda call, match: (200, b"JPEG-DATA"))

    def sent(self) -> list[dict[str, Any]]:
        return [call.json() for call in self.calls if call.method == "POST" and call.path.endswith("/messages")]
