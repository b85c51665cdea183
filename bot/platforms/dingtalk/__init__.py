"""The DingTalk connector: `create(env)` builds it from its own `DINGTALK_*` settings (see
README.md in this folder). Pieces: `connector` (the contract), `stream` (inbound on the real
`dingtalk-stream` SDK), `api` (our OpenAPI client), `cardvars` (card template variables),
`identity` (sign-in for our web pages), `directory`, `budget` (monthly API calls)."""

from bot.platforms.dingtalk.connector import USER_ID_COLUMN, DingTalkConnector, create

__all__ = ["USER_ID_COLUMN", "DingTalkConnector", "create"]
