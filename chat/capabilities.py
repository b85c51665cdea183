"""What a platform's cards can hold, by platform name: the one place card rendering asks.

The running connectors answer (their `capabilities`); the app factory hands `of_connectors(...)`
to the card renderer. For a platform no connector runs for in this process (a card rendered by
the CLI, a platform whose package has no connector yet) `shipped` states what the platforms
offer: WeCom template cards carry buttons and choices but no free text, and the DingTalk card
template we ship has no input components, so both open a step's web form for a button that asks
for text; on both an update is not free (DingTalk counts every call against a monthly budget,
WeCom can only update a card its holder just clicked and otherwise sends a fresh one).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from chat.connector import Capabilities, Connector

Lookup = Callable[[str], Capabilities]

_SHIPPED: Mapping[str, Capabilities] = {
    "emulator": Capabilities(card_inputs=True),
    "dingtalk": Capabilities(card_inputs=False, metered_updates=True),
    "wecom": Capabilities(card_inputs=False, metered_updates=True),
}


def shipped(platform: str) -> Capabilities:
    # An unknown platform gets no in-card inputs: a web form works everywhere a link does.
    return _SHIPPED.get(platform, Capabilities(card_inputs=False))


def of_connectors(connectors: Mapping[str, Connector]) -> Lookup:
    """Answer from the running connectors, falling back to `shipped` for any other platform."""

    def lookup(platform: str) -> Capabilities:
        found = connectors.get(platform)
        return found.capabilities if found is not None else shipped(platform)

    return lookup
