"""WeCom (企业微信) self-built app as a connector of `chat.connector`: `create(env)`.

- `settings`: its own `WECOM_*` settings; incomplete ones stop start-up with one line.
- `connector`: the contract (callback route, cards sent and updated in place, texts, lifecycle).
- `xmlsafe`: hardened XML parsing (no DTD, no entities) into flat dicts with forced lists.
- `callback`: the encrypted callback: signature, replay window, decryption (wechatpy's
  `WeChatCrypto`), typed events, and an aiohttp handler that answers only after `dispatch` returned.
- `api`: our own aiohttp client for the REST API (token cache, retries, error classes).
- `quota`: the per-member message quota WeCom enforces by dropping messages silently.
- `cardjson`: the platform-neutral card as a `template_card`.
- `identity`: web sign-in (OAuth snsapi_base); `directory`: the address book.

Protocol details and their sources: `../shared/research/wecom.md`.
"""

from __future__ import annotations

from bot.platforms.wecom import settings
from bot.platforms.wecom.connector import USER_ID_COLUMN, WeComConnector
from chat.connector import ConnectorEnv

__all__ = ["USER_ID_COLUMN", "WeComConnector", "create"]  # USER_ID_COLUMN: the employee column of WeCom userids


def create(env: ConnectorEnv) -> WeComConnector:
    """The connector, from its own `WECOM_*` settings (environment, then `.env`); `ConfigError`
    naming what is missing when they are incomplete."""
    return WeComConnector(settings.load(env_file=env.env_file), env)
