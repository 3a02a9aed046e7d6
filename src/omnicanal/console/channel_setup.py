"""Connecting channels from the console: list, add, change, enable/disable, remove."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from omnicanal.access.roles import Permission
from omnicanal.channels import service
from omnicanal.channels.registry import TYPES, ChannelType
from omnicanal.console.context import ConsoleError, StaffConsole, StaffPostConsole
from omnicanal.console.routes import parse_id, problem_text
from omnicanal.errors import DomainError

router = APIRouter(prefix="/console", include_in_schema=False)


def _form_config(kind: ChannelType, form: Any, *, editing: bool) -> dict[str, Any]:
    """The form's fields as a config: an empty secret field keeps the stored secret when editing."""
    config: dict[str, Any] = {}
    for key in kind.keys:
        raw = str(form.get(f"cfg_{key.name}", "")).strip()
        if key.kind == "bool":
            config[key.name] = form.get(f"cfg_{key.name}") == "on"
            continue
        if not raw:
            if editing and not key.secret:
                config[key.name] = None
            continue
        if key.kind == "int":
            config[key.name] = int(raw) if raw.lstrip("-").isdigit() else raw
        elif key.kind == "list":
            config[key.name] = [part.strip() for part in raw.split(",") if part.strip()]
        else:
            config[key.name] = raw
    return config


@router.get("/channels")
def channels_page(console: StaffConsole) -> Response:
    console.require(Permission.CHANNELS_MANAGE)
    with console.db.read() as session:
        rows = [service.instance_out(row) for row in service.list_instances(session)]
    return console.render("channels.html", channels=rows, types=list(TYPES.values()))


@router.post("/channels")
async def add_channel(console: StaffPostConsole, request: Request) -> Response:
    console.require(Permission.CHANNELS_MANAGE)
    form = await request.form()
    kind = TYPES.get(str(form.get("type", "")))
    if kind is None:
        console.flash("error", console._("Pick a channel type."))
        return console.redirect("/console/channels")
    try:
        with console.db.write() as session:
            row = service.create_instance(
                session, type=kind.name, name=str(form.get("name", "")),
                config=_form_config(kind, form, editing=False), settings=console.db.settings,
            )  # fmt: skip
            new_id = row.id
    except DomainError as exc:
        console.flash("error", problem_text(console, exc))
        return console.redirect("/console/channels")
    console.flash("success", console._("Channel connected."))
    return console.redirect(f"/console/channels/{new_id}")


@router.get("/channels/{channel_id}")
def channel_page(console: StaffConsole, channel_id: str) -> Response:
    console.require(Permission.CHANNELS_MANAGE)
    cid = parse_id(console, channel_id, console._("There is no channel with this id."))
    try:
        with console.db.read() as session:
            row = service.instance_out(service.get_instance(session, cid))
    except DomainError as exc:
        raise ConsoleError(404, problem_text(console, exc)) from None
    base = str(console.request.base_url).rstrip("/")
    return console.render("channel.html", channel=row, kind=TYPES.get(row["type"]), base_url=base)


@router.post("/channels/{channel_id}")
async def change_channel(console: StaffPostConsole, channel_id: str, request: Request) -> Response:
    console.require(Permission.CHANNELS_MANAGE)
    cid = parse_id(console, channel_id, console._("There is no channel with this id."))
    form = await request.form()
    action = str(form.get("action", "save"))
    try:
        with console.db.write() as session:
            if action == "delete":
                service.delete_instance(session, channel_id=cid)
            else:
                row = service.get_instance(session, cid)
                kind = TYPES[row.type]
                service.update_instance(
                    session, channel_id=cid, settings=console.db.settings, name=str(form.get("name", row.name)),
                    config=_form_config(kind, form, editing=True), enabled=form.get("enabled") == "on",
                )  # fmt: skip
    except DomainError as exc:
        console.flash("error", problem_text(console, exc))
        return console.redirect(f"/console/channels/{cid}")
    if action == "delete":
        console.flash("success", console._("Channel removed."))
        return console.redirect("/console/channels")
    console.flash("success", console._("Channel saved."))
    return console.redirect(f"/console/channels/{cid}")
