"""What a platform's cards can hold, by platform name: the one place card rendering asks.

The running connectors answer (their `capabilities`); the app factory hands `of_connectors(...)`
to the card renderer. A platform no connector runs for in this process (a card rendered by a test
or a bench without one) gets `shipped`: the emulator's cards hold inputs; any other platform's are
assumed to hold none, so a button that asks for text opens the step's web form, which works
wherever a link does. What a real platform offers is its connector's to say, not this module's.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from chat.connector import Capabilities, Connector

Lookup = Callable[[str], Capabilities]
DEFAULT_PLATFORM = "emulator"  # the platform the bot serves out of the box (config.settings: PLATFORMS)


def shipped(platform: str) -> Capabilities:
    return Capabilities(card_inputs=platform == DEFAULT_PLATFORM)


def of_connectors(connectors: Mapping[str, Connector]) -> Lookup:
    """Answer from the running connectors, falling back to `shipped` for any other platform."""

    def lookup(platform: str) -> Capabilities:
        found = connectors.get(platform)
        return found.capabilities if found is not None else shipped(platform)

    return lookup
