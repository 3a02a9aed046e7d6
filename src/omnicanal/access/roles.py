"""Roles and what each may do. One table, read by the API and the console alike."""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    ADMIN = "admin"
    SUPERVISOR = "supervisor"
    AGENT = "agent"
    STORE_CLERK = "store_clerk"
    MARKETER = "marketer"
    ANALYST = "analyst"


class Permission(StrEnum):
    CUSTOMERS_READ = "customers:read"
    CUSTOMERS_WRITE = "customers:write"
    EVENTS_WRITE = "events:write"
    MERGES_MANAGE = "merges:manage"
    CONSENTS_READ = "consents:read"
    CONSENTS_WRITE = "consents:write"
    PRIVACY_EXPORT = "privacy:export"
    PRIVACY_ERASE = "privacy:erase"
    ACCESS_MANAGE = "access:manage"
    ANSWERS_WRITE = "answers:write"
    CONVERSATIONS_READ = "conversations:read"
    CONVERSATIONS_WRITE = "conversations:write"
    CONVERSATIONS_ASSIGN = "conversations:assign"
    MESSAGES_INBOUND = "messages:inbound"
    ROUTING_MANAGE = "routing:manage"
    OUTBOX_MANAGE = "outbox:manage"
    WEBHOOKS_MANAGE = "webhooks:manage"
    CHANNELS_MANAGE = "channels:manage"
    LOYALTY_READ = "loyalty:read"
    LOYALTY_EARN = "loyalty:earn"  # post loyalty events and purchase codes
    LOYALTY_REDEEM = "loyalty:redeem"
    LOYALTY_ADJUST = "loyalty:adjust"  # manual corrections of a wallet
    LOYALTY_MANAGE = "loyalty:manage"  # rules, tiers, rewards, code batches
    CATALOG_READ = "catalog:read"
    CATALOG_MANAGE = "catalog:manage"
    PROMOTIONS_MANAGE = "promotions:manage"
    STOCK_WRITE = "stock:write"
    ORDERS_READ = "orders:read"
    ORDERS_WRITE = "orders:write"


_READ = {
    Permission.CUSTOMERS_READ,
    Permission.CONSENTS_READ,
    Permission.CONVERSATIONS_READ,
    Permission.LOYALTY_READ,
    Permission.CATALOG_READ,
    Permission.ORDERS_READ,
}
_FRONT_LINE = _READ | {
    Permission.CUSTOMERS_WRITE,
    Permission.EVENTS_WRITE,
    Permission.CONSENTS_WRITE,
    Permission.CONVERSATIONS_WRITE,
    Permission.MESSAGES_INBOUND,
    Permission.LOYALTY_EARN,
    Permission.LOYALTY_REDEEM,
    Permission.ORDERS_WRITE,
}
_SUPERVISION = {
    Permission.MERGES_MANAGE,
    Permission.PRIVACY_EXPORT,
    Permission.ANSWERS_WRITE,
    Permission.CONVERSATIONS_ASSIGN,
    Permission.ROUTING_MANAGE,
    Permission.OUTBOX_MANAGE,
    Permission.LOYALTY_ADJUST,
    Permission.CATALOG_MANAGE,
    Permission.PROMOTIONS_MANAGE,
    Permission.STOCK_WRITE,
}

ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.ADMIN: frozenset(Permission),
    Role.SUPERVISOR: frozenset(_FRONT_LINE | _SUPERVISION),
    Role.AGENT: frozenset(_FRONT_LINE),
    Role.STORE_CLERK: frozenset(_FRONT_LINE | {Permission.STOCK_WRITE}),
    Role.MARKETER: frozenset(
        _READ
        | {Permission.EVENTS_WRITE, Permission.ANSWERS_WRITE, Permission.LOYALTY_MANAGE, Permission.PROMOTIONS_MANAGE}
    ),
    Role.ANALYST: frozenset(_READ),
}


_PERMISSIONS_BY_NAME = {role.value: permissions for role, permissions in ROLE_PERMISSIONS.items()}


def role_allows(role: str, permission: Permission) -> bool:
    # by the role's name: building the enum member costs more than the check, on every request
    permissions = _PERMISSIONS_BY_NAME.get(role)
    return permissions is not None and permission in permissions
