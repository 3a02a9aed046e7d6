"""Launch the system Chromium through Playwright (``playwright install`` is never needed nor used)."""

from __future__ import annotations

import os

from playwright.sync_api import Browser, Playwright

CHROMIUM_ENV = "OMNICANAL_CHROMIUM"
DEFAULT_CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
]


class ChromiumUnavailableError(RuntimeError):
    """The Chromium executable is missing."""


def chromium_executable() -> str:
    """``$OMNICANAL_CHROMIUM`` or /usr/bin/chromium; raises with a clear message if it is not there."""
    path = os.environ.get(CHROMIUM_ENV, DEFAULT_CHROMIUM)
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        raise ChromiumUnavailableError(
            f"Chromium not found at {path}. Install it (Debian: `apt-get install chromium`, or run "
            f"scripts/install-system-deps) or point ${CHROMIUM_ENV} at a Chromium/Chrome executable."
        )
    return path


def launch_chromium(playwright: Playwright) -> Browser:
    """A headless Chromium ``Browser``; the caller closes it."""
    return playwright.chromium.launch(
        executable_path=chromium_executable(),
        headless=True,
        args=CHROMIUM_ARGS,
    )
