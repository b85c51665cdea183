"""What a platform's cards can hold, by platform name: the one place card rendering asks.

The running connectors answer (their `capabilities`; the app factory points `use_registry` at the
registry's connectors). For a platform no connector runs for in this process (a card rendered by
the CLI, a platform whose package has no connector yet) this table states what the platforms
offer: WeCom template cards carry buttons and choices but no free text, and the DingTalk card
template we ship has no input components, so both open a step's web form for a button that asks
for text.
"""

from __future__ import annotations

from collections.abc import Callable

from chat.connector import Capabilities

_SHIPPED: dict[str, Capabilities] = {
    "emulator": Capabilities(card_inputs=True),
    "dingtalk": Capabilities(card_inputs=False),
    "wecom": Capabilities(card_inputs=False),
}
_registry: Callable[[str], Capabilities | None] | None = None


def use_registry(lookup: Callable[[str], Capabilities | None] | None) -> None:
    """Answer from the running connectors (their `capabilities`), falling back to the table."""
    global _registry
    _registry = lookup


def capabilities_of(platform: str) -> Capabilities:
    found = _registry(platform) if _registry is not None else None
    if found is not None:
        return found
    # An unknown platform gets no in-card inputs: a web form works everywhere a link does.
    return _SHIPPED.get(platform, Capabilities(card_inputs=False))
