"""The chat core: what every messaging platform and every handler agree on.

Below the handlers, above storage/cards. `chat.connector` is the contract a platform implements;
the router and its `Incoming`/`Reply`/`Context` move here too (issue 10), so nothing below the
application imports `bot/`.
"""
