from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from omnicanal.settings import Settings
from tests.conversations.helpers import conversation_settings
from tests.outbox.provider import ProviderDouble


@pytest.fixture
def provider() -> Iterator[ProviderDouble]:
    double = ProviderDouble().start()
    try:
        yield double
    finally:
        double.stop()


@pytest.fixture
def settings(settings: Settings, tmp_path: Path, provider: ProviderDouble) -> Settings:
    return conversation_settings(
        settings, tmp_path, channel_endpoints={"*": provider.url}, channel_rate_limits={"sms": 2}
    )
