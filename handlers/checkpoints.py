"""The background loop that signs open cases' moved audit heads (see signing/checkpoints.py)."""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from chat.appkeys import SETTINGS
from chat.background import background
from config.settings import Settings
from signing.checkpoints import checkpoint_open_cases
from signing.pipeline import keys_for

log = logging.getLogger("checkpoints")


async def checkpoint_loop(app: web.Application) -> None:
    settings: Settings = app[SETTINGS]
    while True:
        await asyncio.sleep(settings.checkpoint_seconds)
        try:
            n = await checkpoint_open_cases(keys_for(settings))
            if n:
                log.debug("signed %d open case heads", n)
        except Exception:  # keep the loop alive: the next round signs what this one missed
            log.exception("checkpoint sweep failed")


def setup(app: web.Application) -> None:
    app.cleanup_ctx.append(background("checkpoints", checkpoint_loop))
