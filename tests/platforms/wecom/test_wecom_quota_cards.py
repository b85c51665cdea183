"""The per-member quota (WeCom drops messages above it silently) and the card as a template_card."""

from __future__ import annotations

import re

import pytest

from bot.platforms.wecom.cardjson import plain, render, task_id
from bot.platforms.wecom.quota import MemberQuota, Window, next_allowed
from cards.model import Button, Card, FormField


def test_twenty_five_reminders_in_a_minute_all_go_now() -> None:
    q = MemberQuota()
    for i in range(25):
        assert q.wait("zhangsan", 100.0 + i) == 0.0
        q.record("zhangsan", 100.0 + i)


def test_the_thirty_first_in_a_minute_waits_for_the_first_to_leave_the_window() -> None:
    q = MemberQuota()
    for i in range(30):
        q.record("zhangsan", 100.0 + i)
    assert q.wait("zhangsan", 130.0) == pytest.approx(30.0)  # the first left at 160
    assert q.wait("lisi", 130.0) == 0.0  # per member
    assert q.wait("zhangsan", 160.0) == 0.0


def test_hour_limit() -> None:
    sent = [float(i * 61 // 30) for i in range(1000)]  # 1,000 sends inside the hour, ≤30 in any minute
    assert sent[-1] < 3600
    at = next_allowed(sent, 3000.0)
    assert at == pytest.approx(sent[0] + 3600.0)
    # Both windows: the later of the two answers wins.
    assert next_allowed([0.0, 1.0], 1.5, (Window(10, 2), Window(100, 3))) == 10.0
    assert next_allowed([0.0, 1.0, 20.0], 21.0, (Window(10, 2), Window(100, 3))) == 100.0


def test_a_burst_to_one_person_is_paced_not_dropped() -> None:
    q = MemberQuota()
    now = 0.0
    times: list[float] = []
    for _ in range(100):
        wait = q.wait("zhangsan", now)
        now += wait
        q.record("zhangsan", now)
        times.append(now)
    for t in times:  # never more than 30 in any 60-second window
        assert sum(1 for u in times if t - 60 < u <= t) <= 30
    assert times[-1] < 4 * 60  # and not slower than it has to be


def test_task_ids_fit_wecom_and_are_unique_per_send() -> None:
    ids = {task_id("OB-7KQ2M9:guarantee:E003:step", nonce=f"{i:04x}") for i in range(100)}
    assert len(ids) == 100
    for t in ids:
        assert re.fullmatch(r"[A-Za-z0-9_@-]+", t) and len(t.encode()) <= 128
    long = task_id("x" * 500 + ":y")
    assert len(long.encode()) <= 128
    # Two ids that differ only in characters WeCom does not allow stay apart.
    assert task_id("a:b", nonce="n")[:-2] != task_id("a/b", nonce="n")[:-2]


def _form_url(b: Button) -> str:
    return f"https://bot.example/form/{b.action}"


def test_action_card_with_a_locked_button_and_a_form() -> None:
    card = Card(
        title="离职保证书", summary="张三 · 研发部", status="等待你操作", progress="第 3 步 / 共 7 步",
        fields=tuple((f"项{i}", f"值{i}") for i in range(8)), body="**请注意**\n- 第一项\n  - 子项",
        buttons=(
            Button("提交", action="submit", style="primary"),
            Button("驳回", action="reject", style="danger", form=(FormField("reason", "原因"),)),
            Button("去签字", url="https://bot.example/sign/tok"),
            Button("签署保证书", action="sign", enabled=False, reason="需先完成社保补缴确认"),
        ),
    )
    out = render(card, task="t-1", link="https://bot.example/case/1", form_url=_form_url)
    assert out["card_type"] == "button_interaction" and out["task_id"] == "t-1"
    assert out["main_title"] == {"title": "离职保证书", "desc": "张三 · 研发部"}
    assert out["button_list"] == [
        {"text": "提交", "style": 1, "key": "submit"},
        {"type": 1, "text": "驳回", "style": 2, "url": "https://bot.example/form/reject"},
        {"type": 1, "text": "去签字", "style": 3, "url": "https://bot.example/sign/tok"},
    ]
    assert len(out["horizontal_content_list"]) == 6
    text = out["sub_title_text"]
    assert "🔒 签署保证书：需先完成社保补缴确认" in text and "项7：值7" in text and "第 3 步" in text
    assert "• 第一项" in text and "**" not in text
    assert out["card_action"] == {"type": 1, "url": "https://bot.example/case/1"}


def test_information_card_is_a_text_notice_with_its_links() -> None:
    card = Card(title="离职手续已完成", body="谢谢", buttons=(Button("下载文件", url="https://bot.example/d"),),
                language="en")
    out = render(card, task="t-2", link="https://bot.example/case/2", form_url=_form_url)
    assert out["card_type"] == "text_notice" and "button_list" not in out
    assert out["jump_list"] == [{"type": 1, "title": "下载文件", "url": "https://bot.example/d"}]
    assert out["source"] == {"desc": "Offboarding"} and out["card_action"]["url"].endswith("/case/2")


def test_long_texts_are_clipped_to_wecom_lengths() -> None:
    card = Card(title="长" * 80, summary="描" * 80, body="字" * 1000)
    out = render(card, task="t", link="https://x", form_url=_form_url)
    assert len(out["main_title"]["title"]) == 36 and len(out["main_title"]["desc"]) == 44
    assert len(out["sub_title_text"]) == 300 and out["sub_title_text"].endswith("…")


def test_plain_keeps_script_as_text() -> None:
    assert plain("<script>alert(1)</script>") == "<script>alert(1)</script>"  # WeCom shows card text as text


def test_more_buttons_or_links_than_wecom_draws_are_never_an_error() -> None:
    many = Card(title="结案", status="待处理", step_id="close",
                buttons=tuple(Button(f"操作{i}", action=f"a{i}") for i in range(8)))
    out = render(many, task="t", link=None, form_url=_form_url)
    assert [b["key"] for b in out["button_list"]] == [f"a{i}" for i in range(6)]
    assert out["sub_title_text"].splitlines()[:2] == ["待处理", "更多操作请打开卡片：操作6、操作7"]
    links = Card(title="文件", buttons=tuple(Button(f"下载{i}", url=f"https://bot.example/d{i}") for i in range(4)))
    out = render(links, task="t", link="https://bot.example/case", form_url=_form_url)
    assert out["card_type"] == "button_interaction" and len(out["button_list"]) == 4  # a notice holds three
    three = Card(title="文件", buttons=tuple(Button(f"下载{i}", url=f"https://bot.example/d{i}") for i in range(3)))
    assert len(render(three, task="t", link="https://x", form_url=_form_url)["jump_list"]) == 3
