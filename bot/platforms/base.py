"""What the rest of the bot needs from a messaging platform, and the errors an adapter may raise.

An adapter turns platform input into `chat.router.Incoming` (its own web routes or stream client)
and delivers outgoing cards and texts through this protocol. Cards arrive platform-neutral
(`cards.model.Card`); each adapter renders them itself.

Idempotency contract: `send_card` is called with `card_id` = the outbox row's unique key and must
pass it to the platform as the card's own identifier (DingTalk `outTrackId`, WeCom `task_id`,
the emulator's card id). A second `send_card` with the same `card_id` must not create a second
card: it returns the id of the one already delivered. That is what lets the outbox relay resend
after a crash between "platform accepted" and "row marked sent" without a duplicate.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from cards.model import Card


class DeliveryError(Exception):
    """The platform did not take the message."""

    def __init__(self, message: str, *, transient: bool = True, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.transient = transient
        self.retry_after = retry_after


class PermanentDeliveryError(DeliveryError):
    """Retrying cannot help (unknown recipient, card rejected as malformed)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, transient=False)


@runtime_checkable
class PlatformAdapter(Protocol):
    name: str
    # Sustained sends per second and burst the platform allows this app; the relay never exceeds them.
    rate_per_second: float
    burst: int

    async def send_card(self, recipient: str, card: Card, card_id: str) -> str:
        """Deliver `card` to the employee `recipient`; return the platform's message id."""
        ...

    async def update_card(self, recipient: str, message_id: str, card: Card, card_id: str) -> None:
        """Replace the content of a card delivered earlier, in place."""
        ...

    async def send_text(self, recipient: str, text: str, message_key: str) -> str:
        """Send plain text; `message_key` is the idempotency key. Return the platform's message id."""
        ...
