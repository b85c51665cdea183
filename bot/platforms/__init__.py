"""Messaging platforms: one package per platform, each implementing `chat.connector.Connector`."""

from __future__ import annotations

import pkgutil
from functools import cache


@cache
def names() -> tuple[str, ...]:
    """Every platform package present, sorted: adding a platform is adding a package."""
    return tuple(sorted(m.name for m in pkgutil.iter_modules(__path__) if m.ispkg))
