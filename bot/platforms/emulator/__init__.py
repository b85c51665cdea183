"""The emulator platform: a local web page standing in for DingTalk/WeCom (see `web.py` for who
may use it). A plain connector (`connector.py`), the model the real platforms follow."""

from bot.platforms.emulator.connector import EmulatorConfig, EmulatorConnector, create
from bot.platforms.emulator.store import EmulatorStore, Message
from bot.platforms.emulator.web import check_startup, exposure, page_text

__all__ = ["EmulatorConfig", "EmulatorConnector", "EmulatorStore", "Message", "check_startup", "create", "exposure",
           "page_text"]
