"""The console's signed session cookie, its CSRF token, and safe redirect targets."""

from __future__ import annotations

import hmac
import secrets
import uuid
from dataclasses import dataclass, field
from typing import Any

from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.responses import Response

from omnicanal.settings import Settings

SESSION_COOKIE = "omnicanal_console"
FLASH_COOKIE = "omnicanal_flash"
LANG_COOKIE = "lang"
COOKIE_PATH = "/console"
SESSION_SALT = "omnicanal.console.session"
FLASH_SALT = "omnicanal.console.flash"
FLASH_MAX_AGE = 300
LANG_MAX_AGE = 365 * 24 * 3600


def new_csrf_token() -> str:
    return secrets.token_urlsafe(32)


@dataclass
class ConsoleSession:
    """What the session cookie holds: who is logged in (if anyone) and the CSRF token."""

    user_id: uuid.UUID | None = None
    csrf: str = field(default_factory=new_csrf_token)
    is_new: bool = True


def _serializer(settings: Settings, salt: str) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(settings.secret_key, salt=salt)


def read_session(raw: str | None, settings: Settings) -> ConsoleSession:
    """The session in the cookie, or a fresh anonymous one if it is missing, forged or expired."""
    if raw:
        try:
            data: Any = _serializer(settings, SESSION_SALT).loads(raw, max_age=settings.session_max_age_seconds)
            csrf = data["csrf"]
            user = data.get("uid")
            if isinstance(csrf, str) and len(csrf) >= 16:
                return ConsoleSession(user_id=uuid.UUID(user) if user else None, csrf=csrf, is_new=False)
        except (BadSignature, KeyError, TypeError, ValueError):
            pass
    return ConsoleSession()


def write_session(response: Response, session: ConsoleSession, settings: Settings) -> None:
    value = _serializer(settings, SESSION_SALT).dumps(
        {"uid": str(session.user_id) if session.user_id else None, "csrf": session.csrf}
    )
    response.set_cookie(
        SESSION_COOKIE,
        value,
        max_age=settings.session_max_age_seconds,
        path=COOKIE_PATH,
        httponly=True,
        samesite="lax",
        secure=settings.cookie_secure,
    )


def clear_session(response: Response, settings: Settings) -> None:
    response.delete_cookie(
        SESSION_COOKIE, path=COOKIE_PATH, httponly=True, samesite="lax", secure=settings.cookie_secure
    )


def csrf_matches(expected: str, given: str | None) -> bool:
    if not given:
        return False
    return hmac.compare_digest(expected.encode(), given.encode())


def read_flashes(raw: str | None, settings: Settings) -> list[tuple[str, str]]:
    if not raw:
        return []
    try:
        data: Any = _serializer(settings, FLASH_SALT).loads(raw, max_age=FLASH_MAX_AGE)
        return [(str(level), str(text)) for level, text in data][:10]
    except (BadSignature, TypeError, ValueError):
        return []


def write_flashes(response: Response, flashes: list[tuple[str, str]], settings: Settings) -> None:
    value = _serializer(settings, FLASH_SALT).dumps([list(item) for item in flashes])
    response.set_cookie(
        FLASH_COOKIE,
        value,
        max_age=FLASH_MAX_AGE,
        path=COOKIE_PATH,
        httponly=True,
        samesite="lax",
        secure=settings.cookie_secure,
    )


def clear_flashes(response: Response, settings: Settings) -> None:
    response.delete_cookie(FLASH_COOKIE, path=COOKIE_PATH, httponly=True, samesite="lax", secure=settings.cookie_secure)


def set_language_cookie(response: Response, language: str, settings: Settings) -> None:
    response.set_cookie(
        LANG_COOKIE,
        language,
        max_age=LANG_MAX_AGE,
        path=COOKIE_PATH,
        httponly=True,
        samesite="lax",
        secure=settings.cookie_secure,
    )


def safe_next(target: str | None, default: str = "/console/customers") -> str:
    """Only redirect to console pages of this site (never ``//evil.example`` or ``https://...``)."""
    if not target or not target.startswith("/console") or target.startswith("//") or "\\" in target:
        return default
    if any(ch in target for ch in "\r\n"):
        return default
    return target


class LoginThrottle:
    """Failed logins per email: after ``limit`` failures within ``window`` seconds the email is
    locked for ``lockout`` seconds, so passwords cannot be guessed at speed. In memory, per process."""

    def __init__(self, *, limit: int = 5, window: float = 900.0, lockout: float = 300.0) -> None:
        import threading

        self.limit, self.window, self.lockout = limit, window, lockout
        self._lock = threading.Lock()
        self._failures: dict[str, list[float]] = {}
        self._locked_until: dict[str, float] = {}

    def seconds_locked(self, email: str, now: float) -> float:
        with self._lock:
            return max(0.0, self._locked_until.get(email.strip().lower(), 0.0) - now)

    def failed(self, email: str, now: float) -> None:
        key = email.strip().lower()
        with self._lock:
            recent = [t for t in self._failures.get(key, []) if now - t < self.window] + [now]
            self._failures[key] = recent
            if len(recent) >= self.limit:
                self._locked_until[key] = now + self.lockout
                self._failures[key] = []
            if len(self._failures) > 100_000:
                self._failures.clear()

    def succeeded(self, email: str) -> None:
        with self._lock:
            self._failures.pop(email.strip().lower(), None)


login_throttle = LoginThrottle()
