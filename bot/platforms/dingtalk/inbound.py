"""What arrives over DingTalk Stream, as plain values: a robot message or a card click.

Parsed with the SDK's own frame classes (`ChatbotMessage`, `CardCallbackMessage`) so a field
the SDK learns to read is ours too; what they drop (`spaceType`, `spaceId`) is read from the raw
callback data.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal

from dingtalk_stream import CallbackMessage, CardCallbackMessage, ChatbotMessage


@dataclass(frozen=True)
class TextMessage:
    message_id: str  # the Stream frame's headers.messageId
    msg_id: str  # DingTalk's own message id (msgId), the same on a redelivered frame
    sender_user_id: str  # senderStaffId = the org userid ("" until the robot is published)
    sender_id: str  # the per-robot encrypted sender id
    sender_nick: str
    conversation: Literal["single", "group"]  # group messages reach the bot only when they @ it
    conversation_id: str
    text: str
    at_user_ids: tuple[str, ...] = ()
    robot_code: str = ""
    session_webhook: str = ""
    session_webhook_expires_ms: int = 0
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def dedup_keys(self) -> tuple[str, ...]:
        return (self.message_id, f"msg:{self.msg_id}") if self.msg_id else (self.message_id,)


@dataclass(frozen=True)
class CardCallback:
    message_id: str
    out_track_id: str  # the card instance = our outbox card id
    user_id: str  # who clicked (userid)
    corp_id: str
    action: str | None  # params["action"] as our template sets it, else the first actionId
    action_ids: tuple[str, ...]
    params: dict[str, Any]  # the button's params, form inputs included
    space_type: str = ""
    space_id: str = ""
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def dedup_keys(self) -> tuple[str, ...]:
        return (self.message_id,)


Inbound = TextMessage | CardCallback


class BadFrame(ValueError):
    """A frame whose payload cannot be read; ACKed with 400 so it is not redelivered forever."""


def parse_text(callback: CallbackMessage) -> TextMessage:
    data = callback.data
    if not isinstance(data, dict):
        raise BadFrame("bot message data is not an object")
    try:
        msg = ChatbotMessage.from_dict(data)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise BadFrame(f"bot message unreadable: {exc}") from None
    text = ""
    if msg.message_type == "text" and msg.text is not None:
        text = msg.text.content or ""
    elif msg.message_type == "richText" and msg.rich_text_content is not None:
        text = "".join(str(part.get("text", "")) for part in msg.rich_text_content.rich_text_list or ()
                       if isinstance(part, dict))
    at_users = tuple(u.staff_id or u.dingtalk_id or "" for u in msg.at_users or ())
    return TextMessage(
        message_id=str(callback.headers.message_id or ""),
        msg_id=str(msg.message_id or ""),
        sender_user_id=str(msg.sender_staff_id or ""),
        sender_id=str(msg.sender_id or ""),
        sender_nick=str(msg.sender_nick or ""),
        conversation="group" if str(msg.conversation_type) == "2" else "single",
        conversation_id=str(msg.conversation_id or ""),
        text=text.strip(),
        at_user_ids=tuple(u for u in at_users if u),
        robot_code=str(msg.robot_code or ""),
        session_webhook=str(msg.session_webhook or ""),
        session_webhook_expires_ms=int(msg.session_webhook_expired_time or 0),
        raw=data,
    )


def parse_card_callback(callback: CallbackMessage) -> CardCallback:
    data = callback.data
    if not isinstance(data, dict):
        raise BadFrame("card callback data is not an object")
    try:
        msg = CardCallbackMessage.from_dict(data)
    except (TypeError, ValueError) as exc:  # content/extension are JSON strings
        raise BadFrame(f"card callback unreadable: {exc}") from None
    content = msg.content if isinstance(msg.content, dict) else {}
    private = content.get("cardPrivateData") or {}
    params = private.get("params") or {}
    if isinstance(params, str):
        try:
            params = json.loads(params)
        except ValueError:
            params = {}
    action_ids = tuple(str(a) for a in private.get("actionIds") or ())
    action = params.get("action") if isinstance(params, dict) else None
    if not msg.card_instance_id or not msg.user_id:
        raise BadFrame("card callback without outTrackId or userId")
    return CardCallback(
        message_id=str(callback.headers.message_id or ""),
        out_track_id=str(msg.card_instance_id),
        user_id=str(msg.user_id),
        corp_id=str(msg.corp_id or ""),
        action=str(action) if action else (action_ids[0] if action_ids else None),
        action_ids=action_ids,
        params=dict(params) if isinstance(params, dict) else {},
        space_type=str(data.get("spaceType", "")),
        space_id=str(data.get("spaceId", "")),
        raw=data,
    )
