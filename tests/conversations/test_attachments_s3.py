"""Attachments in an S3-compatible store (a real local S3 server), and erased from it."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from fastapi.testclient import TestClient
from moto.server import ThreadedMotoServer

from omnicanal.settings import Settings
from tests.support.live_server import free_port

API = "/api/v1"


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture
def settings(settings: Settings, tmp_path: Path, s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Settings:
    for name, value in (("AWS_ACCESS_KEY_ID", "test"), ("AWS_SECRET_ACCESS_KEY", "test"),
                        ("AWS_DEFAULT_REGION", "eu-south-2")):  # fmt: skip
        monkeypatch.setenv(name, value)
    bucket = f"attachments-{tmp_path.name.lower().replace('_', '-')[-40:]}"
    boto3.client("s3", endpoint_url=s3_endpoint).create_bucket(
        Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "eu-south-2"}
    )
    return settings.model_copy(update={"attachments_dir": f"s3://{bucket}/inbound", "s3_endpoint_url": s3_endpoint})


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_inline_attachment_goes_to_the_bucket_and_erasure_removes_it(client: TestClient, settings: Settings) -> None:
    bucket = settings.attachments_dir.removeprefix("s3://").split("/")[0]
    s3 = boto3.client("s3", endpoint_url=settings.s3_endpoint_url)
    photo = b"\x89PNG\r\n\x1a\n a photo of a broken zip"
    response = client.post(
        f"{API}/messages/inbound",
        json={
            "channel": "whatsapp",
            "identities": [{"type": "whatsapp", "value": "34611223344"}],
            "text": "Mira cómo llegó",
            "external_id": "wamid.s3-1",
            "attachments": [
                {"name": "roto.png", "content_type": "image/png", "data": base64.b64encode(photo).decode()}
            ],
        },
    )
    assert response.status_code == 201, response.text
    keys = [item["Key"] for item in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
    assert len(keys) == 1 and keys[0].startswith("inbound/") and keys[0].endswith("roto.png")
    assert s3.get_object(Bucket=bucket, Key=keys[0])["Body"].read() == photo
    message = client.get(f"{API}/conversations/{response.json()['conversation_id']}/messages").json()["items"][0]
    assert message["attachments"][0]["size"] == len(photo)

    assert client.delete(f"{API}/customers/{response.json()['customer_id']}").status_code == 200
    assert s3.list_objects_v2(Bucket=bucket).get("KeyCount", 0) == 0
