"""Per-request console state: who is logged in, in which language, and how pages are rendered."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from decimal import Decimal
from functools import cache
from typing import Annotated, Any
from zoneinfo import ZoneInfo

import orjson
from babel.dates import format_datetime, format_timedelta
from babel.numbers import UnknownCurrencyFormatError, format_currency, get_currency_precision
from babel.support import Translations
from fastapi import Depends, Request
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from sqlalchemy import func, select
from starlette.responses import HTMLResponse, RedirectResponse, Response

from omnicanal.access.models import StaffUser
from omnicanal.access.roles import Permission, role_allows
from omnicanal.console import security
from omnicanal.console.channels import (
    CONSENT_PURPOSES,
    CONSENT_STATUSES,
    CONVERSATION_STATUSES,
    DELIVERY_STATUSES,
    IDENTITY_LABELS,
    OUTBOX_STATES,
    PRIORITIES,
    ROLE_LABELS,
    channel_style,
)
from omnicanal.console.i18n import LANGUAGE_NAMES, LANGUAGES, pick_language, translations
from omnicanal.customers.models import IdentityConflict
from omnicanal.db import Database, utcnow
from omnicanal.routing.models import AgentProfile
from omnicanal.settings import Settings

SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
    ),
}


class LoginRequired(Exception):
    """The page needs a logged-in staff user; answered with a redirect to the login page."""

    def __init__(self, next_url: str) -> None:
        super().__init__(next_url)
        self.next_url = next_url


class ConsoleError(Exception):
    """A console request that cannot be served (403, 404); answered with an HTML error page."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class StaffView:
    id: uuid.UUID
    email: str
    name: str
    role: str
    language: str

    @property
    def actor(self) -> str:
        """How the services record this user as the author of a change."""
        return f"user:{self.id}"


# Times are stored in UTC and shown in the company's time zone (OMNICANAL_CONSOLE_TIMEZONE).
_display_zone: list[tzinfo] = [UTC]


def set_display_timezone(name: str) -> None:
    _display_zone[0] = ZoneInfo(name)


def display_timezone() -> tzinfo:
    return _display_zone[0]


def _format_datetime(language: str) -> Any:
    def fmt(value: datetime | None) -> str:
        if value is None:
            return ""
        return str(format_datetime(value, "d MMM y, HH:mm zzz", tzinfo=_display_zone[0], locale=language))

    return fmt


def _format_ago(language: str) -> Any:
    def fmt(value: datetime | None) -> str:
        if value is None:
            return ""
        return str(
            format_timedelta(value - utcnow(), add_direction=True, threshold=1.1, format="long", locale=language)
        )

    return fmt


def _format_short(language: str) -> Any:
    def fmt(value: datetime | None) -> str:
        """``14:05`` today, ``3 mar, 14:05`` another day, in the console's time zone."""
        if value is None:
            return ""
        zone = _display_zone[0]
        pattern = "HH:mm" if value.astimezone(zone).date() == utcnow().astimezone(zone).date() else "d MMM, HH:mm"
        return str(format_datetime(value, pattern, tzinfo=zone, locale=language))

    return fmt


def _event_properties(language: str) -> Any:
    def view(properties: dict[str, Any]) -> list[tuple[str, str]]:
        """An event's properties as short ``(name, text)`` pairs; ``*_minor`` amounts as money."""
        currency = properties.get("currency")
        has_money = isinstance(currency, str) and any(key.endswith("_minor") for key in properties)
        items: list[tuple[str, str]] = []
        for key, value in properties.items():
            if key == "currency" and has_money:
                continue
            if has_money and key.endswith("_minor") and isinstance(value, int) and not isinstance(value, bool):
                assert isinstance(currency, str)
                try:
                    amount = Decimal(value).scaleb(-get_currency_precision(currency))
                    text = str(format_currency(amount, currency, locale=language))
                except (ValueError, UnknownCurrencyFormatError):
                    text = f"{value} {currency}"
                key = key.removesuffix("_minor")
            elif value is None:
                text = "—"
            elif isinstance(value, dict | list):
                text = orjson.dumps(value).decode()
            else:
                text = str(value)
            items.append((key, text if len(text) <= 200 else text[:199] + "…"))
        return items[:12]

    return view


@cache
def environment(language: str) -> Environment:
    """One Jinja2 environment per language, with that language's gettext installed."""
    env = Environment(
        loader=PackageLoader("omnicanal.console", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        extensions=["jinja2.ext.i18n"],
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.install_gettext_translations(translations(language), newstyle=True)  # type: ignore[attr-defined]
    env.globals.update(
        channel_style=channel_style,
        identity_labels=IDENTITY_LABELS,
        purpose_labels=CONSENT_PURPOSES,
        status_labels=CONSENT_STATUSES,
        role_labels=ROLE_LABELS,
        conversation_statuses=CONVERSATION_STATUSES,
        delivery_statuses=DELIVERY_STATUSES,
        priorities=PRIORITIES,
        outbox_states=OUTBOX_STATES,
        languages=LANGUAGES,
        language_names=LANGUAGE_NAMES,
        Permission=Permission,
    )
    env.globals["event_properties"] = _event_properties(language)
    env.filters["datetime"] = _format_datetime(language)
    env.filters["ago"] = _format_ago(language)
    env.filters["short"] = _format_short(language)
    return env


@dataclass
class Console:
    """Everything a console route needs about the current request."""

    request: Request
    settings: Settings
    db: Database
    session: security.ConsoleSession
    user: StaffView | None
    language: str
    incoming_flashes: list[tuple[str, str]] = field(default_factory=list)
    outgoing_flashes: list[tuple[str, str]] = field(default_factory=list)
    session_changed: bool = False
    language_cookie: str | None = None

    @property
    def translations(self) -> Translations:
        return translations(self.language)

    def _(self, message: str, **params: Any) -> str:
        """Translate ``message`` to the request language, then fill ``%(name)s`` placeholders."""
        text = self.translations.gettext(message)
        return text % params if params else text

    def can(self, permission: Permission) -> bool:
        return self.user is not None and role_allows(self.user.role, permission)

    def require(self, permission: Permission) -> StaffView:
        user = self.user
        if user is None:
            raise LoginRequired(self.current_url)
        if not role_allows(user.role, permission):
            raise ConsoleError(403, self._("Your role does not allow this action."))
        return user

    @property
    def current_url(self) -> str:
        url = self.request.url.path
        if self.request.url.query:
            url += "?" + self.request.url.query
        return url

    @property
    def is_htmx(self) -> bool:
        return (
            self.request.headers.get("hx-request") == "true"
            and self.request.headers.get("hx-history-restore-request") != "true"
        )

    def flash(self, level: str, text: str) -> None:
        self.outgoing_flashes.append((level, text))

    def log_in(self, user: StaffUser) -> None:
        # A new session (and CSRF token) at every login: a token seen before login is worthless after.
        self.session = security.ConsoleSession(user_id=user.id)
        self.session_changed = True
        self.user = _view(user)
        self.language = pick_language(self.request.cookies.get(security.LANG_COOKIE), user.language)

    def log_out(self) -> None:
        self.session = security.ConsoleSession()
        self.session_changed = True
        self.user = None

    def open_conflicts(self) -> int | None:
        if not self.can(Permission.MERGES_MANAGE):
            return None
        with self.db.read() as session:
            count = session.scalar(
                select(func.count()).select_from(IdentityConflict).where(IdentityConflict.status == "open")
            )
        return int(count or 0)

    def agent_online(self) -> bool | None:
        """Whether this user takes conversations now (``None``: not someone who answers customers)."""
        if self.user is None or not self.can(Permission.CONVERSATIONS_WRITE):
            return None
        with self.db.read() as session:
            online = session.scalar(select(AgentProfile.online).where(AgentProfile.user_id == self.user.id))
        return bool(online)

    def render(self, template: str, *, status: int = 200, partial: bool = False, **context: Any) -> Response:
        flashes: list[tuple[str, str]] = []
        if not partial:
            flashes = self.incoming_flashes + self.outgoing_flashes
            self.incoming_flashes, self.outgoing_flashes = [], []
        values = {
            "console": self,
            "user": self.user,
            "lang": self.language,
            "csrf_token": self.session.csrf,
            "flashes": flashes,
            "current_url": self.current_url,
            "open_conflicts": None if partial else self.open_conflicts(),
            "agent_online": None if partial else self.agent_online(),
            **context,
        }
        html = environment(self.language).get_template(template).render(values)
        response = HTMLResponse(html, status_code=status)
        response.headers["Vary"] = "HX-Request, Cookie"
        return self.finish(response, flashes_shown=not partial)

    def redirect(self, url: str) -> Response:
        response: Response
        if self.is_htmx:
            response = Response(status_code=204, headers={"HX-Redirect": url})
        else:
            response = RedirectResponse(url, status_code=303)
        return self.finish(response)

    def finish(self, response: Response, *, flashes_shown: bool = False) -> Response:
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        if self.session.is_new or self.session_changed:
            security.write_session(response, self.session, self.settings)
            self.session.is_new = False
        pending = self.incoming_flashes + self.outgoing_flashes
        if pending:
            security.write_flashes(response, pending, self.settings)
        elif flashes_shown and self.request.cookies.get(security.FLASH_COOKIE):
            security.clear_flashes(response, self.settings)
        if self.language_cookie:
            security.set_language_cookie(response, self.language_cookie, self.settings)
        return response


def _view(user: StaffUser) -> StaffView:
    return StaffView(
        id=user.id, email=user.email, name=user.display_name or user.email, role=user.role, language=user.language
    )


def get_console(request: Request) -> Console:
    existing: Console | None = getattr(request.state, "console", None)
    if existing is not None:
        return existing
    settings: Settings = request.app.state.settings
    db: Database = request.app.state.database
    session = security.read_session(request.cookies.get(security.SESSION_COOKIE), settings)
    user: StaffView | None = None
    if session.user_id is not None:
        with db.read() as db_session:
            row = db_session.get(StaffUser, session.user_id)
            if row is not None and row.active:
                user = _view(row)
        if user is None:  # deleted or deactivated since: the session ends here
            session = security.ConsoleSession()
    language = pick_language(request.cookies.get(security.LANG_COOKIE), user.language if user else None)
    console = Console(
        request=request,
        settings=settings,
        db=db,
        session=session,
        user=user,
        language=language,
        incoming_flashes=security.read_flashes(request.cookies.get(security.FLASH_COOKIE), settings),
    )
    request.state.console = console
    return console


def staff(console: Annotated[Console, Depends(get_console)]) -> Console:
    """A page for logged-in staff only."""
    if console.user is None:
        raise LoginRequired(console.current_url)
    return console


async def checked_post(request: Request, console: Annotated[Console, Depends(get_console)]) -> Console:
    """A POST that carries this session's CSRF token (form field ``csrf_token`` or ``X-CSRF-Token``)."""
    given = request.headers.get("x-csrf-token")
    if not given:
        form = await request.form()
        value = form.get("csrf_token")
        given = value if isinstance(value, str) else None
    if console.session.is_new or not security.csrf_matches(console.session.csrf, given):
        raise ConsoleError(403, console._("The form has expired. Reload the page and try again."))
    return console


def staff_post(console: Annotated[Console, Depends(checked_post)]) -> Console:
    """A POST by logged-in staff, CSRF-checked."""
    if console.user is None:
        raise LoginRequired("/console/customers")
    return console


AnyConsole = Annotated[Console, Depends(get_console)]
StaffConsole = Annotated[Console, Depends(staff)]
PostConsole = Annotated[Console, Depends(checked_post)]
StaffPostConsole = Annotated[Console, Depends(staff_post)]


def render_error(request: Request, status: int, message: str) -> Response:
    console = get_console(request)
    return console.render("error.html", status=status, code=status, message=message)
