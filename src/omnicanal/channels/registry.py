"""What each channel type declares: its config keys, its webhook routers and its outbound transport.

An adapter module builds a :class:`ChannelType` and calls :func:`register` at import time;
``catalog.load_adapters`` imports every adapter module once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter

from omnicanal.outbox.transports import Transport

if TYPE_CHECKING:
    from omnicanal.channels.service import ConfiguredChannel
    from omnicanal.db import Database


@dataclass(frozen=True)
class ConfigKey:
    name: str
    required: bool = False
    secret: bool = False
    default: Any = None
    kind: str = "str"  # str / url / int / bool / phone / list
    help: str = ""
    choices: tuple[str, ...] = ()


TransportFactory = Callable[["ConfiguredChannel", "Database"], Transport]
ConfigCheck = Callable[[dict[str, Any]], None]  # raises ValidationFailed for rules across keys


@dataclass(frozen=True)
class ChannelType:
    name: str
    label: str
    keys: tuple[ConfigKey, ...]
    # the conversation channels (conversations/channels.py) this type delivers replies for
    delivers: tuple[str, ...] = ()
    routers: tuple[APIRouter, ...] = ()
    transport: TransportFactory | None = None
    check: ConfigCheck | None = None
    webhook_paths: tuple[str, ...] = field(default_factory=tuple)  # shown in the console, {id} filled in

    def key(self, name: str) -> ConfigKey | None:
        return next((k for k in self.keys if k.name == name), None)

    @property
    def secret_names(self) -> frozenset[str]:
        return frozenset(k.name for k in self.keys if k.secret)


TYPES: dict[str, ChannelType] = {}


def register(channel_type: ChannelType) -> ChannelType:
    TYPES[channel_type.name] = channel_type
    return channel_type


def delivering(conversation_channel: str) -> list[ChannelType]:
    return [t for t in TYPES.values() if conversation_channel in t.delivers and t.transport is not None]
