"""One settings object, read from ``OMNICANAL_*`` environment variables."""

from __future__ import annotations

from functools import cached_property
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_SECRET = "omnicanal-development-secret-change-me"  # noqa: S105 - the value production refuses

DEFAULT_IDENTITY_PRIORITY = [
    "loyalty_card",
    "external",
    "email",
    "phone",
    "whatsapp",
    "telegram",
    "facebook",
    "instagram",
    "x",
    "device_id",
]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="OMNICANAL_", extra="ignore")

    environment: Literal["development", "production", "test"] = "development"
    database_url: str = "sqlite:///./omnicanal.db"
    secret_key: str = DEFAULT_SECRET
    redis_url: str | None = None

    # Identity rules
    default_region: str = "ES"
    identity_priority: list[str] = Field(default_factory=lambda: list(DEFAULT_IDENTITY_PRIORITY))
    identity_limits: dict[str, int] = Field(default_factory=lambda: {"loyalty_card": 1})
    blocked_identities: list[str] = Field(
        default_factory=lambda: [
            "email:test@test.com",
            "email:example@example.com",
            "email:noemail@noemail.com",
            "phone:0000000000",
            "phone:1234567890",
            "phone:+0000000000",
        ]
    )

    # Ingest rules
    future_tolerance_seconds: int = 300
    max_batch_events: int = 1000
    ingest_batch_max: int = 500

    # Conversations
    reopen_window_seconds: int = 3 * 24 * 3600
    attachments_dir: str = "./var/attachments"  # or s3://bucket/prefix
    s3_endpoint_url: str | None = None
    attachment_max_bytes: int = 10 * 1024 * 1024
    attachment_types: list[str] = Field(
        default_factory=lambda: ["image/*", "audio/*", "video/mp4", "application/pdf", "text/plain"]
    )

    # Outbox: where each channel delivers ("log" or an HTTP URL; "*" for every other channel)
    channel_endpoints: dict[str, str] = Field(default_factory=lambda: {"*": "log"})
    channel_rate_limits: dict[str, float] = Field(default_factory=dict)
    outbox_in_process: bool = True
    outbox_senders: int = 8
    # webhook targets on private/loopback addresses: None = allowed except in production
    webhooks_allow_private_targets: bool | None = None
    outbox_lease_seconds: float = 60.0  # a sender silent this long is presumed dead; its items go again

    # Commerce
    commerce_currency: str = "EUR"  # the price list used when a cart names no currency
    commerce_prices_include_tax: bool = True
    commerce_tax_rates: dict[str, int] = Field(  # basis points per tax class
        default_factory=lambda: {"standard": 2100, "reduced": 1000, "super_reduced": 400, "zero": 0}
    )
    # shipping per fulfillment type, in minor units of the cart's currency...
    commerce_shipping: dict[str, int] = Field(
        default_factory=lambda: {"delivery": 499, "ship_from_store": 499, "pickup": 0}
    )
    # ...unless its currency has its own, e.g. {"JPY": {"delivery": 800, "ship_from_store": 800, "pickup": 0}}
    commerce_shipping_by_currency: dict[str, dict[str, int]] = Field(default_factory=dict)
    commerce_reservation_minutes: int = 30  # unpaid orders release their stock after this
    commerce_pickup_days: int = 7  # uncollected pickups expire after this
    commerce_return_days: int = 30
    commerce_return_exclusions: list[str] = Field(default_factory=list)  # SKUs or category slugs
    commerce_public_url: str = "http://localhost:8000"  # where payment links point

    # Database tuning
    db_pool_size: int = 20
    sqlite_busy_timeout_ms: int = 30000

    # Console
    session_max_age_seconds: int = 12 * 3600
    cookie_secure: bool = False
    console_timezone: str = "Europe/Madrid"

    # Loyalty
    loyalty_return_window_days: int = 30  # points from an order are pending this long
    loyalty_expiry_days: int = 365  # lots expire this long after they are earned (0: never)
    loyalty_expiring_notice_days: int = 30
    loyalty_return_policy: Literal["negative", "clawback"] = "negative"  # returned points already spent
    loyalty_code_failures_max: int = 5  # wrong purchase codes per customer before the lockout
    loyalty_code_lockout_minutes: int = 15

    @model_validator(mode="after")
    def _known_console_timezone(self) -> Settings:
        from zoneinfo import available_timezones

        if self.console_timezone not in available_timezones():
            raise ValueError(f"OMNICANAL_CONSOLE_TIMEZONE: unknown IANA time zone {self.console_timezone!r}")
        return self

    @model_validator(mode="after")
    def _refuse_default_secret_in_production(self) -> Settings:
        if self.environment == "production" and self.secret_key == DEFAULT_SECRET:
            raise ValueError(
                "OMNICANAL_SECRET_KEY must be set to a private random value in production "
                "(for example: python -c 'import secrets; print(secrets.token_urlsafe(48))')"
            )
        return self

    @cached_property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @cached_property
    def blocked_identity_pairs(self) -> frozenset[tuple[str, str]]:
        pairs = set()
        for item in self.blocked_identities:
            kind, _, value = item.partition(":")
            pairs.add((kind.strip(), value.strip().lower()))
        return frozenset(pairs)
