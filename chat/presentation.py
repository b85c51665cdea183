"""Platform names for the core's texts, from the running connectors' `presentation`: the one place the
core asks what a platform is called (pages, refusals, the dashboard's sign-in buttons) and what the
documents say about it (`channel_of`, handed down to signing/ as plain values).

A platform no connector runs for in this process is named by its package name, and documents then
say "离职助手消息" (a message from the bot), as they do for the emulator.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from aiohttp import web

from chat.appkeys import CONNECTORS, SETTINGS
from chat.connector import Connector, Presentation
from signing.channel import BOT_MESSAGE, Channel, Client
from workflow.text import Text


def neutral(platform: str) -> Presentation:
    return Presentation(name=Text(platform, platform), notice=BOT_MESSAGE, sign_in=Text(platform, platform))


def of(connectors: Mapping[str, Connector], platform: str) -> Presentation:
    found = connectors.get(platform)
    return found.presentation if found is not None else neutral(platform)


def channel_of(connectors: Mapping[str, Connector], platforms: Sequence[str]) -> Channel:
    """What documents say: the first platform's notice (the one cards go out on first, as PLATFORMS
    orders them) and every running platform's in-app browser."""
    first = of(connectors, platforms[0]) if platforms else None
    clients = tuple(Client(c.presentation.client, c.presentation.client_name)
                    for c in connectors.values() if c.presentation.client)
    return Channel(notice=first.notice if first is not None else BOT_MESSAGE, clients=clients)


def of_app(app: web.Application, platform: str) -> Presentation:
    return of(app.get(CONNECTORS, {}), platform)


def app_channel(app: web.Application) -> Channel:
    """`channel_of` for this app's running connectors and PLATFORMS."""
    return channel_of(app.get(CONNECTORS, {}), app[SETTINGS].platforms)
