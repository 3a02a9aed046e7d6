"""What a reply carries besides its text: files, and (on WhatsApp) reply buttons or a list to choose from.

Files are given inline (``data``, base64: kept in the attachment store), by a public ``url``, or, on
WhatsApp, by the ``media_id`` of a file already uploaded to the provider. The limits of interactive
messages are WhatsApp's own (Cloud API): up to 3 buttons of 20 characters; a list of up to 10 rows in up
to 10 sections, row titles of 24 characters and descriptions of 72.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from omnicanal.errors import ValidationFailed

INTERACTIVE_CHANNELS = ("whatsapp",)
LOCATION_CHANNELS = ("whatsapp",)
MEDIA_ID_CHANNELS = ("whatsapp",)
# the channels whose transports deliver a reply's files (SMS, Telegram, ... would drop them silently)
FILE_CHANNELS = ("whatsapp", "email", "web")


class ReplyAttachmentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200, examples=["ticket.pdf"])
    content_type: str = Field(min_length=3, max_length=100, examples=["application/pdf"])
    data: str | None = Field(default=None, description="the file itself, base64")
    url: str | None = Field(default=None, max_length=2000, description="a public address the provider fetches")
    media_id: str | None = Field(
        default=None, max_length=200, description="WhatsApp: the id of a file already uploaded to the Cloud API"
    )

    @model_validator(mode="after")
    def _one_source(self) -> ReplyAttachmentIn:
        if sum(value is not None and value != "" for value in (self.data, self.url, self.media_id)) != 1:
            raise ValueError("give exactly one of data, url or media_id")
        return self


class LocationIn(BaseModel):
    """A place sent as a pin (WhatsApp's location message): a store, a pickup point."""

    model_config = ConfigDict(extra="forbid")

    latitude: float = Field(ge=-90, le=90, examples=[40.4169])
    longitude: float = Field(ge=-180, le=180, examples=[-3.7035])
    name: str | None = Field(default=None, max_length=1000, examples=["Tienda Sol"])
    address: str | None = Field(default=None, max_length=1000, examples=["Puerta del Sol 1, Madrid"])


class ButtonIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, max_length=256, examples=["yes"])
    title: str = Field(min_length=1, max_length=20, examples=["Sí"])


class ListRowIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, max_length=200, examples=["store-sol"])
    title: str = Field(min_length=1, max_length=24, examples=["Tienda Sol"])
    description: str | None = Field(default=None, max_length=72)


class ListSectionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: str | None = Field(default=None, max_length=24)
    rows: list[ListRowIn] = Field(min_length=1, max_length=10)


class InteractiveIn(BaseModel):
    """The reply's ``text`` is the message body; the customer answers by tapping a button or a row."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["button", "list"]
    header: str | None = Field(default=None, max_length=60)
    footer: str | None = Field(default=None, max_length=60)
    buttons: list[ButtonIn] = Field(default_factory=list, max_length=3)
    button: str | None = Field(default=None, max_length=20, description="list: the label that opens the list")
    sections: list[ListSectionIn] = Field(default_factory=list, max_length=10)

    @model_validator(mode="after")
    def _shape(self) -> InteractiveIn:
        if self.type == "button":
            if not self.buttons or self.sections or self.button:
                raise ValueError("reply buttons take 1 to 3 buttons, and no list")
            ids = [b.id for b in self.buttons]
            titles = [b.title for b in self.buttons]
            if len(set(ids)) != len(ids) or len(set(titles)) != len(titles):
                raise ValueError("each button needs its own id and title")
        else:
            if not self.sections or not self.button or self.buttons:
                raise ValueError("a list takes a button label and 1 to 10 sections, and no buttons")
            rows = [row for section in self.sections for row in section.rows]
            if len(rows) > 10:
                raise ValueError("a list has at most 10 rows in all")
            if len({row.id for row in rows}) != len(rows):
                raise ValueError("each row needs its own id")
            if len(self.sections) > 1 and any(not section.title for section in self.sections):
                raise ValueError("with several sections, each needs a title")
        return self


def check_reply_content(
    *, channel: str | None, text: str, attachments: list[dict[str, Any]], interactive: dict[str, Any] | None
) -> None:
    """Refuse what the reply's channel cannot carry. ``channel`` None: a private note."""
    if interactive is not None and interactive.get("type") == "location":
        if channel not in LOCATION_CHANNELS:
            raise ValidationFailed.on_field("location", f"a location is sent on {', '.join(LOCATION_CHANNELS)} only")
        if attachments:
            raise ValidationFailed.on_field("attachments", "a location message carries no files")
        return  # a text, if any, goes first as its own message
    if interactive is not None:
        if channel not in INTERACTIVE_CHANNELS:
            raise ValidationFailed.on_field(
                "interactive", f"buttons and lists are sent on {', '.join(INTERACTIVE_CHANNELS)} only"
            )
        if attachments:
            raise ValidationFailed.on_field("attachments", "an interactive message carries no files")
        if not text.strip():
            raise ValidationFailed.on_field("text", "an interactive message needs a text for its body")
        if len(text) > 1024:
            raise ValidationFailed.on_field("text", "the body of an interactive message has at most 1024 characters")
    if attachments and channel is not None and channel not in FILE_CHANNELS:
        where = ", ".join(FILE_CHANNELS)
        raise ValidationFailed.on_field("attachments", f"files are sent on {where} only, not on {channel}")
    for index, attachment in enumerate(attachments):
        if attachment.get("media_id") and channel not in MEDIA_ID_CHANNELS:
            where = ", ".join(MEDIA_ID_CHANNELS)
            problem = f"a provider's media id works on {where} only"
            raise ValidationFailed.on_field(f"attachments[{index}].media_id", problem)
    if not text.strip() and not attachments:
        raise ValidationFailed.on_field("text", "must not be empty")


def interactive_record(interactive: dict[str, Any]) -> dict[str, Any]:
    """How the message keeps its buttons, list or place: named by the choices, as the console lists attachments."""
    if interactive["type"] == "location":
        place = interactive.get("name") or f"{interactive['latitude']}, {interactive['longitude']}"
        return {"kind": "location", "name": str(place), **interactive}
    if interactive["type"] == "button":
        name = " · ".join(str(button["title"]) for button in interactive["buttons"])
    else:
        name = f"{interactive['button']}: " + " · ".join(
            str(row["title"]) for section in interactive["sections"] for row in section["rows"]
        )
    return {"kind": "interactive", "name": name, **interactive}


def media_kind(content_type: str) -> str:
    """How a messaging provider files a file of this type: image, audio, video or document."""
    major, _, minor = content_type.lower().partition("/")
    if major == "image" and minor in ("jpeg", "png"):
        return "image"
    if major == "image" and minor == "webp":
        return "sticker"
    if major in ("audio", "video"):
        return major
    return "document"


def store_reply_attachments(raw: list[dict[str, Any]], *, settings: Any) -> list[dict[str, Any]]:
    """Check every file against the attachment limits and keep the inline ones; nothing is kept on error."""
    from omnicanal.storage import store_attachments, type_allowed

    by_provider: dict[int, dict[str, Any]] = {}
    for index, item in enumerate(raw):
        if item.get("media_id"):
            if not type_allowed(str(item["content_type"]), settings.attachment_types):
                raise ValidationFailed.on_field(
                    f"attachments[{index}].content_type",
                    f"{item['content_type']!r} is not accepted; allowed: {', '.join(settings.attachment_types)}",
                )
            by_provider[index] = {"name": item["name"], "content_type": item["content_type"],
                                  "media_id": str(item["media_id"])}  # fmt: skip
    files = [
        {key: item[key] for key in ("name", "content_type", "data", "url") if item.get(key)}
        for index, item in enumerate(raw)
        if index not in by_provider
    ]
    stored = iter(store_attachments(files, settings=settings))
    records = [by_provider[index] if index in by_provider else next(stored) for index in range(len(raw))]
    for record in records:
        record["kind"] = media_kind(str(record["content_type"]))
    return records
