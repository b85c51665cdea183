"""The application's shared objects, as typed aiohttp keys: set once by the app factory (`bot.app`),
read by the web handlers and loops below it. Here, under the handlers, so reading them is not an
upward import."""

from __future__ import annotations

from aiohttp import web

from cases.service import CaseService
from chat.connector import Connector
from config.settings import Settings

SETTINGS = web.AppKey("settings", Settings)
SERVICE = web.AppKey("service", CaseService)
# Lines for the person starting the bot, printed once it listens (e.g. the emulator's address).
ANNOUNCE = web.AppKey("announce", list)
# The running platforms by name (built once from PLATFORMS by the app): the web pages ask the signer's
# connector for its sign-in (`Connector.identity`).
CONNECTORS: web.AppKey[dict[str, Connector]] = web.AppKey("connectors", dict)
