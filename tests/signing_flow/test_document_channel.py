"""What documents say about the platform the employee was first notified on: the first platform in
PLATFORMS, as its running connector presents itself (chat/presentation.py hands it down to signing/).
The words are the ones the documents have always printed for DingTalk, WeCom and the emulator."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from bot.app import build_service
from bot.platforms.dingtalk import DingTalkConnector
from bot.platforms.emulator import EmulatorConnector
from bot.platforms.wecom import WeComConnector
from chat.presentation import channel_of
from config.settings import Settings
from signing.pipeline import build_context, freeze_context
from signing.templates import load_template, render_blocks
from storage.models import Case
from tests.signing_flow.conftest import start_probation

# Connector classes carry their presentation: what the running connectors would hand down.
RUNNING: dict[str, Any] = {"dingtalk": DingTalkConnector, "wecom": WeComConnector, "emulator": EmulatorConnector}
HOW_TO = {"zh": "点击{}中的链接在线签署，或携带本人身份证件到本单位人力资源部现场办理",
          "en": "sign online through the link in the {}, or come to the company's HR department with your ID card"}
NOTIFIED = {"zh": "通过{}通知你办理离职手续", "en": "asked you via {} to complete the departure formalities"}


@pytest.mark.parametrize(("platforms", "running", "lang", "words"), [
    (("dingtalk",), ("dingtalk",), "zh", "钉钉工作通知"),
    (("dingtalk",), ("dingtalk",), "en", "DingTalk work notice"),
    (("wecom",), ("wecom",), "zh", "企业微信应用消息"),
    (("wecom",), ("wecom",), "en", "WeCom app message"),
    (("emulator",), ("emulator",), "zh", "离职助手消息"),
    (("emulator",), ("emulator",), "en", "offboarding bot message"),
    # The first in PLATFORMS is the one cards go out on first.
    (("wecom", "dingtalk"), ("dingtalk", "wecom"), "zh", "企业微信应用消息"),
    (("dingtalk", "emulator"), ("emulator", "dingtalk"), "zh", "钉钉工作通知"),
    # A platform no connector runs for names itself no other way: a message from the bot.
    (("dingtalk",), (), "zh", "离职助手消息"),
])
async def test_the_notice_channel_is_the_first_platforms_words(demo_org: Settings, platforms: tuple[str, ...],
                                                               running: tuple[str, ...], lang: str,
                                                               words: str) -> None:
    settings = demo_org.model_copy(update={"platforms": platforms, "language": lang})
    case = await Case.get(id=await start_probation(build_service(settings)))
    channel = channel_of({name: RUNNING[name] for name in running}, platforms)
    ctx = await build_context(case, "fallback_notice", settings, channel=channel, now=datetime.now(UTC))
    assert ctx["first_notice_channel"] == words
    assert ctx["how_to"] == HOW_TO[lang].format(words)
    text = "".join(line for _, line in render_blocks(load_template("fallback_notice"), freeze_context(ctx, lang),
                                                     lang))
    assert NOTIFIED[lang].format(words) in text and HOW_TO[lang].format(words) in text
