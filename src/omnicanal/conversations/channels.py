"""What each messaging channel allows: who can be reached on it, when, and in what form."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True)
class ChannelRule:
    name: str
    reach: tuple[str, ...]  # identity types that give an address on this channel, best first
    format: str = "plain"  # plain / html / markdown / whatsapp
    service_window_hours: int | None = None  # free-form replies only this long after the customer wrote
    text_replies: bool = True

    def window_open(self, last_inbound_on_channel: datetime | None, now: datetime) -> bool:
        if self.service_window_hours is None:
            return True
        if last_inbound_on_channel is None:
            return False
        return now - last_inbound_on_channel <= timedelta(hours=self.service_window_hours)


CHANNEL_RULES: dict[str, ChannelRule] = {
    rule.name: rule
    for rule in (
        ChannelRule("web", ("device_id",), format="markdown"),
        ChannelRule("app", ("device_id",), format="markdown"),
        ChannelRule("email", ("email",), format="html"),
        ChannelRule("sms", ("phone",)),
        ChannelRule("whatsapp", ("whatsapp", "phone"), format="whatsapp", service_window_hours=24),
        ChannelRule("telegram", ("telegram",), format="markdown"),
        ChannelRule("facebook", ("facebook",), service_window_hours=24),
        ChannelRule("instagram", ("instagram",), service_window_hours=24),
        ChannelRule("x", ("x",)),
        ChannelRule("phone", ("phone",), text_replies=False),
        ChannelRule("store", (), text_replies=False),
    )
}
MESSAGE_CHANNELS = frozenset(CHANNEL_RULES)


@dataclass(frozen=True)
class ReplyOption:
    channel: str
    available: bool
    reason: str
    address: str | None = None
    template_only: bool = False


def reply_options(
    *,
    identities: dict[str, list[str]],
    last_inbound: dict[str, datetime],
    now: datetime,
) -> list[ReplyOption]:
    """Every channel, whether an agent can reply on it now, and why not when not."""
    options = []
    for rule in CHANNEL_RULES.values():
        if not rule.text_replies:
            options.append(ReplyOption(rule.name, False, "this channel carries no text replies"))
            continue
        address = next((identities[kind][0] for kind in rule.reach if identities.get(kind)), None)
        if address is None:
            wanted = " or ".join(rule.reach)
            options.append(ReplyOption(rule.name, False, f"the customer has no {wanted} identity"))
            continue
        if not rule.window_open(last_inbound.get(rule.name), now):
            options.append(
                ReplyOption(
                    rule.name,
                    False,
                    f"more than {rule.service_window_hours} h since the customer last wrote on {rule.name}: "
                    "only approved templates may be sent",
                    address,
                    template_only=True,
                )
            )
            continue
        options.append(ReplyOption(rule.name, True, "available", address))
    return options
