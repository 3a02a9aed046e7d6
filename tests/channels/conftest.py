from __future__ import annotations

from pathlib import Path

import pytest

from omnicanal.settings import Settings
from tests.conversations.helpers import conversation_settings


@pytest.fixture
def settings(settings: Settings, tmp_path: Path) -> Settings:
    return conversation_settings(settings, tmp_path)
