"""Every card the builders make, for every bundled flow, survives the trip to DingTalk card
variables and back; the shipped template declares exactly the variables the mapping fills."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlparse
from zoneinfo import ZoneInfo

from bot.platforms.dingtalk.cardvars import changed, dingtalk_link, from_vars, template_variables, to_vars
from cards import builders
from cards.model import Button, Card, FormField
from cards.view import CaseView
from workflow import engine
from workflow.model import Role, StepState
from workflow.templates import load_templates

TEMPLATE = Path(__file__).resolve().parents[3] / "bot" / "platforms" / "dingtalk" / "card_template.json"
NOW = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
ALL_ROLES = frozenset(Role)
TEMPLATES = load_templates()


def _view(template_id: str, steps: dict[str, StepState], *, status: str = "open", roles: frozenset[Role] = ALL_ROLES,
          language: str = "zh") -> CaseView:
    tpl = TEMPLATES[template_id]
    state = engine.new_state(tpl, "C-0042", NOW - timedelta(days=2))
    state = state.evolve(steps={**state.steps, **steps}, status=status,
                         closed_at=NOW if status != "open" else None)
    return CaseView(
        case_id="C-0042", template=tpl, state=state, employee_id="emp001", employee_name="李四 <b>*x*</b>",
        last_day=date(2026, 12, 31), reason="试用期考核不合格", names={"mgr001": "王五", "hr001": "张三"},
        tz=ZoneInfo("Asia/Shanghai"), language=language, now=NOW,
        sign_urls={s.id: f"https://bot.example.com/sign/{s.id}?t=abc&x=1" for s in tpl.steps if s.documents},
        cancel_reason="员工撤回离职", recipient_roles=roles,
        backpay=("1,234.56 元（2026-09 至 2026-11）", ("养老 8% × 3 个月", "医疗 2% × 3 个月")),
    )


def every_card() -> list[tuple[str, Card]]:
    """Each builder purpose, each step in each state, both languages, all roles and the employee alone."""
    active = StepState(status="active", activated_at=NOW - timedelta(hours=30), reminders_sent=2)
    done = StepState(status="done", activated_at=NOW - timedelta(days=1), done_at=NOW - timedelta(hours=3),
                     done_by="mgr001", outcome="approve", data={"opinion": "同意"})
    rejected = StepState(status="done", activated_at=NOW - timedelta(days=1), done_at=NOW - timedelta(hours=1),
                         done_by="mgr001", outcome="reject", data={"reason": "材料不全"})
    out: list[tuple[str, Card]] = []
    for tid, tpl in TEMPLATES.items():
        ids = [s.id for s in tpl.steps]
        for language in ("zh", "en"):
            for roles in (ALL_ROLES, frozenset({Role.EMPLOYEE})):
                half = {sid: (done if i < len(ids) // 2 else active) for i, sid in enumerate(ids)}
                open_view = _view(tid, half, roles=roles, language=language)
                out.append((f"{tid}/summary/{language}", builders.build(open_view, "summary", None)))
                for sid in ids:
                    for label, st in (("active", active), ("locked", StepState()), ("done", done),
                                      ("rejected", rejected)):
                        v = _view(tid, {**half, sid: st}, roles=roles, language=language)
                        out.append((f"{tid}/{sid}/{label}/step", builders.build(v, "step", sid)))
                        out.append((f"{tid}/{sid}/{label}/reminder", builders.build(v, "reminder", sid)))
                    v = _view(tid, {**half, sid: rejected}, roles=roles, language=language)
                    for purpose in ("alert", "fallback", "rejected"):
                        out.append((f"{tid}/{sid}/{purpose}", builders.build(v, purpose, sid)))
                closed = {sid: done for sid in ids}
                out.append((f"{tid}/completion", builders.build(_view(tid, closed, status="completed",
                                                                      language=language), "completion", None)))
                out.append((f"{tid}/summary-done", builders.build(_view(tid, closed, status="completed",
                                                                        language=language), "summary", None)))
                out.append((f"{tid}/cancelled", builders.build(_view(tid, half, status="cancelled",
                                                                     language=language), "cancelled", None)))
    return out


CARDS = every_card()


def test_the_card_set_covers_every_kind_of_button_and_purpose() -> None:
    buttons = [b for _, c in CARDS for b in c.buttons]
    assert {c.purpose for _, c in CARDS} == {"summary", "step", "reminder", "alert", "fallback", "rejected",
                                             "completion", "cancelled"}
    assert any(b.url for b in buttons) and any(b.form for b in buttons)
    assert any(not b.enabled and b.reason for b in buttons)
    assert {c.tone for _, c in CARDS} == {"info", "action", "done", "warning", "closed"}


def test_every_card_round_trips_through_string_variables() -> None:
    wrong = []
    for name, card in CARDS:
        v = to_vars(card)
        if not all(isinstance(x, str) for x in v.values()) or from_vars(v) != card:  # cardParamMap: Dict[str, str]
            wrong.append(name)
    assert wrong == []
    assert len(CARDS) > 1000


def test_locked_guarantee_letter_button_keeps_its_reason() -> None:
    locked = [(n, b) for n, c in CARDS for b in c.buttons
              if not b.enabled and b.reason and "保证书" in b.reason]
    assert locked, "some card must lock a button until the guarantee letter is signed"
    name, button = locked[0]
    card = next(c for n, c in CARDS if n == name)
    v = to_vars(card)
    shown = next(b for b in json.loads(v["buttons"]) if b["label"] == button.label)
    assert shown["disabled"] is True and shown["enabled"] is False and shown["reason"] == button.reason
    assert v["lock_reason"]


def test_links_open_inside_dingtalk_and_keep_the_original_url() -> None:
    card = Card(title="t", buttons=(Button("去签署", url="https://bot.example.com/sign/s1?t=a&b=c"),))
    (b,) = json.loads(to_vars(card)["buttons"])
    parsed = urlparse(b["open_url"])
    assert (parsed.scheme, parsed.netloc, parsed.path) == ("dingtalk", "dingtalkclient", "/page/link")
    assert parse_qs(parsed.query) == {"url": ["https://bot.example.com/sign/s1?t=a&b=c"], "pc_slide": ["true"]}
    assert b["kind"] == "link" and b["url"] == "https://bot.example.com/sign/s1?t=a&b=c"
    assert "pc_slide=false" in dingtalk_link("https://x", side_panel=False)


def test_a_text_input_button_can_open_its_web_form_instead() -> None:
    reject = Button("驳回", action="reject", style="danger", form=(FormField("reason", "驳回理由"),))
    approve = Button("批准", action="approve", style="primary")
    card = Card(title="t", buttons=(approve, reject))
    v = to_vars(card, form_url=lambda b: f"https://bot.example.com/form/{b.action}")
    a, r = json.loads(v["buttons"])
    assert (a["kind"], a["params"], a["open_url"]) == ("action", {"action": "approve"}, "")
    assert r["kind"] == "form" and r["form_url"] == "https://bot.example.com/form/reject"
    assert r["open_url"] == dingtalk_link("https://bot.example.com/form/reject")
    assert from_vars(v) == card


def test_changed_sends_only_what_differs() -> None:
    before = to_vars(Card(title="签署", status="等待你操作", tone="action"))
    after = to_vars(Card(title="签署", status="已由 王五 于 10:32 批准", tone="done"))
    assert changed(before, after) == {"status": "已由 王五 于 10:32 批准", "tone": "done", "tone_color": "#00B365"}
    assert changed(after, after) == {}


def test_shipped_template_declares_exactly_the_mapped_variables() -> None:
    template = json.loads(TEMPLATE.read_text(encoding="utf-8"))
    assert template_variables(template) == set(to_vars(CARDS[0][1]))
    text = json.dumps(template["card"], ensure_ascii=False)
    top_level = {name.split(".")[0].split(" ")[0] for name in
                 (part.split("}")[0] for part in text.split("${")[1:])}
    assert top_level - {"item"} <= template_variables(template)
    button_item = set(template["variables"][[v["name"] for v in template["variables"]].index("buttons")]["item"])
    assert button_item == set(json.loads(to_vars(Card(title="t", buttons=(Button("b", action="a"),)))["buttons"])[0])
