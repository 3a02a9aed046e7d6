"""Attachment files: checked against the configured limits, stored in a directory or an S3 bucket.

``OMNICANAL_ATTACHMENTS_DIR`` is a directory, or ``s3://bucket/prefix`` for any S3-compatible
store (``OMNICANAL_S3_ENDPOINT_URL`` for one that is not AWS; credentials the usual AWS way).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import fnmatch
import hashlib
import re
import threading
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote

from omnicanal.db import uuid7
from omnicanal.errors import PayloadTooLarge, ValidationFailed
from omnicanal.settings import Settings

_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


class BlobStore(Protocol):
    def put(self, key: str, data: bytes, content_type: str) -> None: ...

    def get(self, key: str) -> bytes: ...

    def delete(self, key: str) -> None: ...


class DirectoryStore:
    def __init__(self, root: str) -> None:
        self.root = Path(root)

    def put(self, key: str, data: bytes, content_type: str) -> None:
        path = self.root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)

    def get(self, key: str) -> bytes:
        return (self.root / key).read_bytes()

    def delete(self, key: str) -> None:
        path = self.root / key
        path.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            path.parent.rmdir()


class S3Store:
    def __init__(self, url: str, *, endpoint_url: str | None) -> None:
        try:
            import boto3
        except ImportError:  # pragma: no cover - depends on the installation
            raise RuntimeError("s3:// attachments need boto3: pip install 'omnicanal[s3]'") from None
        bucket, _, prefix = url.removeprefix("s3://").partition("/")
        self.bucket, self.prefix = bucket, prefix.strip("/")
        self._client = boto3.client("s3", endpoint_url=endpoint_url)

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def put(self, key: str, data: bytes, content_type: str) -> None:
        self._client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data, ContentType=content_type)

    def get(self, key: str) -> bytes:
        body = self._client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"]
        return bytes(body.read())

    def delete(self, key: str) -> None:
        self._client.delete_object(Bucket=self.bucket, Key=self._key(key))


_stores: dict[tuple[str, str | None], BlobStore] = {}
_stores_lock = threading.Lock()


def blob_store(settings: Settings) -> BlobStore:
    where = (settings.attachments_dir, settings.s3_endpoint_url)
    with _stores_lock:
        store = _stores.get(where)
        if store is None:
            if settings.attachments_dir.startswith("s3://"):
                store = S3Store(settings.attachments_dir, endpoint_url=settings.s3_endpoint_url)
            else:
                store = DirectoryStore(settings.attachments_dir)
            _stores[where] = store
        return store


def stored_file(settings: Settings, attachment: dict[str, Any]) -> bytes | None:
    """An attachment's bytes as the store keeps them; None when it was never stored or is gone (erased)."""
    key = attachment.get("key")
    if not key:
        return None
    try:
        return blob_store(settings).get(str(key))
    except (OSError, KeyError):
        return None


def file_headers(name: str, *, disposition: str) -> dict[str, str]:
    """The headers of a stored file served to a browser (``disposition``: inline or attachment)."""
    return {
        "Content-Disposition": f"{disposition}; filename*=UTF-8''{quote(name)}",
        "X-Content-Type-Options": "nosniff",
        "Cache-Control": "private, max-age=3600",
    }


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
    store = blob_store(settings)
    for item, data in checked:
        record: dict[str, Any] = {"name": item["name"], "content_type": item["content_type"]}
        if data is None:
            record["url"] = item["url"]
        else:
            key = f"{uuid7().hex}/{_SAFE_NAME.sub('_', str(item['name']))[:100]}"
            store.put(key, data, str(item["content_type"]))
            record |= {"size": len(data), "sha256": hashlib.sha256(data).hexdigest(), "key": key}
        stored.append(record)
    return stored


def discard_attachments(stored: list[dict[str, Any]], *, settings: Settings) -> None:
    """Remove the files of attachments stored for a message that was not kept (a duplicate, an error)."""
    store = blob_store(settings)
    for record in stored:
        key = record.get("key")
        if key:
            store.delete(str(key))
