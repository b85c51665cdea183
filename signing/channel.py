"""What documents say about the platform a case went through, as plain values handed down by the
application (signing/ knows no platform: chat/presentation.py builds this from the running
connectors' `Presentation`)."""

from __future__ import annotations

from dataclasses import dataclass

from workflow.text import Text

# A message from the bot, on a platform that names itself no other way (the emulator's own words).
BOT_MESSAGE = Text("离职助手消息", "offboarding bot message")


@dataclass(frozen=True)
class Client:
    """A platform's in-app browser, recognised in a signer's User-Agent for the evidence page."""

    token: str  # the User-Agent product token, matched as "<token>/<version>" in any case: "DingTalk"
    name: str  # as the evidence page prints it: "钉钉 DingTalk"


@dataclass(frozen=True)
class Channel:
    # How the employee was first notified (the documents' "点击{channel}中的链接…" sentence).
    notice: Text = BOT_MESSAGE
    clients: tuple[Client, ...] = ()
