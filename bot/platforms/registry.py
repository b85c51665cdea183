"""Connectors built from PLATFORMS: `bot.platforms.<name>.create(env)` for each name.

The known platforms are the packages present in `bot/platforms/` (adding a platform is adding a
package; nothing here lists them). A package that does not offer `create` yet is known but cannot
be served yet: it is skipped with a warning and its messages wait in the outbox (nothing is lost)
until a connector for it runs. A connector whose own settings are incomplete stops start-up (its
`ConfigError`: one line naming the setting).
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Sequence

from bot.platforms import names
from chat.connector import ConfigError, Connector, ConnectorEnv
from config.settings import Settings
from storage.addresses import AddressBook
from storage.models import Employee

log = logging.getLogger("bot.platforms")


class PlatformError(Exception):
    """One line: which platform cannot be served and why."""


def env_for(settings: Settings) -> ConnectorEnv:
    """The few core settings a connector needs; it reads its own `<NAME>_*` from the environment itself."""
    return ConnectorEnv(public_base_url=settings.public_base_url, language=settings.language, env_file=".env",
                        http_host=settings.http_host, http_port=settings.http_port,
                        trusted_proxies=tuple(settings.trusted_proxies), platforms=tuple(settings.platforms))


def build(settings: Settings, platforms: Sequence[str] | None = None) -> dict[str, Connector]:
    out: dict[str, Connector] = {}
    for name in platforms if platforms is not None else settings.platforms:
        if name not in names():
            raise PlatformError(f"PLATFORMS: unknown platform {name!r}; choose from {', '.join(names())}")
        module = importlib.import_module(f"bot.platforms.{name}")
        create = getattr(module, "create", None)
        if create is None:
            log.warning("no connector yet for platform %s (bot/platforms/%s offers no create): its messages "
                        "stay queued in the outbox", name, name)
            continue
        try:
            connector = create(env_for(settings))
        except ConfigError as exc:
            raise PlatformError(str(exc)) from None  # the connector's line names its setting
        if not isinstance(connector, Connector) or connector.name != name:
            raise PlatformError(f"{name}: create() did not return a connector named {name!r}")
        out[name] = connector
    return out


def user_id_column(name: str) -> str:
    """The `employee` column holding `name`'s user ids: the package's USER_ID_COLUMN, else
    `<name>_userid` when the directory has that column, else our own employee id."""
    declared = getattr(importlib.import_module(f"bot.platforms.{name}"), "USER_ID_COLUMN", None)
    if declared:
        return str(declared)
    conventional = f"{name}_userid"
    return conventional if conventional in Employee._meta.fields_map else "employee_id"


def address_book(platforms: Sequence[str]) -> AddressBook:
    """Where each configured platform finds a person, in PLATFORMS order."""
    return AddressBook.of(platforms, {name: user_id_column(name) for name in platforms if name in names()})
