from __future__ import annotations

from collections.abc import Iterator

import pytest

from omnicanal.settings import Settings
from tests.webhooks.receiver import Receiver


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """No background worker: tests deliver deterministically with ``app.state.outbox_worker.drain()``."""
    return settings.model_copy(update={"outbox_in_process": False})


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as running:
        yield running
