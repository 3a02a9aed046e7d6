"""Attachment files: checked against the configured limits, stored under a directory."""

from __future__ import annotations

import base64
import binascii
import contextlib
import fnmatch
import hashlib
import re
from pathlib import Path
from typing import Any

from omnicanal.db import uuid7
from omnicanal.errors import PayloadTooLarge, ValidationFailed
from omnicanal.settings import Settings

_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


def type_allowed(content_type: str, patterns: list[str]) -> bool:
    return any(fnmatch.fnmatch(content_type.lower(), pattern.lower()) for pattern in patterns)


def store_attachments(
    raw: list[dict[str, Any]], *, settings: Settings, field: str = "attachments"
) -> list[dict[str, Any]]:
    """Validate every attachment first, then store the ones sent inline; nothing is stored on error."""
    checked: list[tuple[dict[str, Any], bytes | None]] = []
    for index, item in enumerate(raw):
        name = f"{field}[{index}]"
        content_type = str(item.get("content_type", ""))
        if not type_allowed(content_type, settings.attachment_types):
            raise ValidationFailed.on_field(
                f"{name}.content_type",
                f"{content_type!r} is not accepted; allowed: {', '.join(settings.attachment_types)}",
            )
        has_url, has_data = bool(item.get("url")), bool(item.get("data"))
        if has_url == has_data:
            raise ValidationFailed.on_field(name, "give exactly one of url or data")
        data: bytes | None = None
        if has_data:
            try:
                data = base64.b64decode(str(item["data"]), validate=True)
            except (binascii.Error, ValueError):
                raise ValidationFailed.on_field(f"{name}.data", "is not valid base64") from None
            if len(data) > settings.attachment_max_bytes:
                raise PayloadTooLarge(
                    f"{name} has {len(data)} bytes; the limit is {settings.attachment_max_bytes}",
                    errors=[],
                )
        checked.append((item, data))
    stored = []
    root = Path(settings.attachments_dir)
    for item, data in checked:
        record: dict[str, Any] = {"name": item["name"], "content_type": item["content_type"]}
        if data is None:
            record["url"] = item["url"]
        else:
            key = f"{uuid7().hex}/{_SAFE_NAME.sub('_', str(item['name']))[:100]}"
            path = root / key
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            record |= {"size": len(data), "sha256": hashlib.sha256(data).hexdigest(), "key": key}
        stored.append(record)
    return stored


def discard_attachments(stored: list[dict[str, Any]], *, settings: Settings) -> None:
    """Remove the files of attachments stored for a message that was not kept (a duplicate, an error)."""
    root = Path(settings.attachments_dir)
    for record in stored:
        key = record.get("key")
        if not key:
            continue
        path = root / str(key)
        path.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            path.parent.rmdir()
