"""Every bundled flow from HR's command to closure, through the emulator's HTTP API and the signing
pages of a real server on 127.0.0.1: each step tapped or signed by the person it belongs to, each
document sealed (pdfsig), `verify --case` passing, and each notice saying what applies to its case
type and nothing that does not (no probation back-pay outside probation)."""

from __future__ import annotations

import asyncio
import io
import os
import re
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from PIL import Image
from tortoise import connections

from bot.app import create_app
from config.settings import Settings
from settlement.basis import money
from settlement.compensation import compensation
from signing.amounts import rmb_upper
from storage.models import Case, CaseStep, Document, Employee, Signature, Timer
from tests.chat.test_chat_emulator import AUTH, TOKEN
from tests.conftest import ROOT, emulator_env
from tests.signing_flow.conftest import signature_strokes
from workflow.model import StepState
from workflow.templates import load_templates

HR, FINANCE, IT, HANDOVER = "E001", "E004", "E005", "E006"
FLOWS = load_templates()
CONSENT_VERSION = "2025-01"
COMPANY = {"company_name": "上海示例科技有限公司", "company_address": "上海市浦东新区示例路 1 号",
           "company_registration_number": "91310115MA1H000000"}
# What the company issues carries its name, address and registration number.
COMPANY_ISSUED = {"termination_notice", "separation_certificate", "rights_notice", "settlement_agreement",
                  "completion_notice"}


@dataclass(frozen=True)
class Scenario:
    flow: str
    employee: str
    manager: str
    command: str
    last_day: date
    fallback: bool = False
    extra_form: dict[str, str] = field(default_factory=dict)
    # Handover items HR adds on the handover step's card (the command may add some too).
    hr_items: str = ""
    items_expected: tuple[str, ...] = ()


SCENARIOS = [
    Scenario("probation", "E003", "E002", "/离职 张三 试用期 2025-07-31 绩效未达标 交接人:周八", date(2025, 7, 31),
             hr_items="客户A合同原件\n门禁卡", items_expected=("客户A合同原件", "门禁卡")),
    Scenario("misconduct", "E003", "E002", "/离职 张三 违纪 2025-07-31 严重违反考勤制度 交接人:周八",
             date(2025, 7, 31)),
    Scenario("misconduct", "E003", "E002", "/离职 张三 违纪 2025-07-31 严重违反考勤制度 交接人:周八",
             date(2025, 7, 31), fallback=True),
    # The mail comes back: only then does the newspaper notice open, and it stands in for the signatures.
    Scenario("misconduct", "E003", "E002", "/离职 张三 违纪 2025-07-31 严重违反考勤制度 交接人:周八",
             date(2025, 7, 31), fallback=True, extra_form={"delivery_result": "returned"}),
    Scenario("resignation", "E007", "E008", "/离职 吴九 辞职 2026-01-30 交接人:周八 交接事项:项目B代码仓库；周报模板",
             date(2026, 1, 30), items_expected=("项目B代码仓库", "周报模板")),
    Scenario("mutual", "E007", "E008", "/离职 吴九 协商 2026-01-30 交接人:周八", date(2026, 1, 30),
             extra_form={"non_compete_months": "6", "non_compete_monthly": "1000"}),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class EmulatorAPI:
    """Every call this test makes to the emulator API goes through here (one place for auth headers)."""

    def __init__(self, http: aiohttp.ClientSession, base: str) -> None:
        self.http, self.base = http, base

    def headers(self) -> dict[str, str]:
        return dict(AUTH)

    async def send(self, user: str, text: str) -> dict[str, Any]:
        async with self.http.post(f"{self.base}/emulator/api/send", json={"user": user, "text": text},
                                  headers=self.headers()) as r:
            body = await r.json()
            assert r.status == 200 and body["ok"], body
            return body

    async def cards(self, user: str) -> list[dict[str, Any]]:
        async with self.http.get(f"{self.base}/emulator/api/cards", params={"user": user},
                                 headers=self.headers()) as r:
            assert r.status == 200
            return (await r.json())["cards"]

    async def click(self, user: str, card_id: str, action: str, form: dict[str, str]) -> dict[str, Any]:
        async with self.http.post(f"{self.base}/emulator/api/click", headers=self.headers(),
                                  json={"user": user, "card_id": card_id, "action": action, "form": form}) as r:
            body = await r.json()
            assert r.status == 200 and body["ok"], body
            return body

    async def wait_card(self, user: str, pred: Callable[[dict[str, Any]], bool], what: str) -> dict[str, Any]:
        for _ in range(300):
            for card in reversed(await self.cards(user)):
                if pred(card):
                    return card
            await asyncio.sleep(0.05)
        held = [(c["step_id"], c["purpose"]) for c in await self.cards(user)]
        raise AssertionError(f"{user} never got {what}: {held}")


async def sign_on_page(http: aiohttp.ClientSession, url: str) -> None:
    """What a phone does: open the personal link, then submit strokes against the hash it was shown."""
    async with http.get(url) as r:
        page = await r.text()
        assert r.status == 200, page
    found = re.search(r'\?h=([0-9a-f]{64})"', page)
    assert found, page
    token = url.rsplit("/", 1)[1]
    async with http.post(f"{url}?h={found.group(1)}", json={
            "token": token, "consent": True, "consent_version": CONSENT_VERSION, "strokes": signature_strokes()}) as r:
        body = await r.json()
        assert r.status == 200 and body.get("ok"), body


@pytest.fixture
async def server(demo_org: Settings) -> AsyncIterator[tuple[str, Settings]]:
    port = _free_port()
    settings = demo_org.model_copy(update={"http_port": port, "outbox_poll_seconds": 0.05, "timer_poll_seconds": 0.05,
                                           "public_base_url": f"http://127.0.0.1:{port}", **COMPANY})
    with emulator_env(token=TOKEN):
        app = create_app(settings, with_db=False)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}", settings
    finally:
        await runner.cleanup()


def _form(sc: Scenario, step_id: str, agreed: Decimal | None) -> dict[str, str]:
    values = {
        "last_working_day": sc.last_day.isoformat(), "reason": "个人原因", "result": "完成率 60%，要求 80%",
        "unpaid_months": "2", "receipt_number": "SB-2025-0001", "payment_reference": f"PAY-{step_id}",
        "tracking_number": "EMS1234567890", "proposed_by": "公司", "delivery_result": "delivered",
        "newspaper": "法治日报", "published_on": "2025-08-20", **sc.extra_form,
    }
    return {f.key: values[f.key] for f in FLOWS[sc.flow].step(step_id).fields if f.key in values}


def _jpeg() -> bytes:
    out = io.BytesIO()
    Image.effect_noise((120, 90), 50).convert("RGB").save(out, "JPEG")
    return out.getvalue()


def _actor(sc: Scenario, role: str) -> str:
    return {"employee": sc.employee, "manager": sc.manager, "hr": HR, "finance": FINANCE, "it": IT,
            "handover": HANDOVER}[role]


async def _drive(api: EmulatorAPI, http: aiohttp.ClientSession, sc: Scenario, case_id: str,
                 agreed: Decimal | None) -> None:
    template = FLOWS[sc.flow]
    added: list[str] = []
    for _ in range(60):
        case = await Case.get(id=case_id)
        if case.status == "completed":
            return
        active = await CaseStep.filter(case_id=case_id, status="active").order_by("position")
        # Optional steps with a document (the misconduct handover) are done too, so that every document a
        # flow names is signed; an optional step without one (a statement) is left for the case to close.
        wanted = [st for st in active if template.step(st.step_id).required or template.step(st.step_id).fallback_only
                  or template.step(st.step_id).documents]
        if sc.fallback:
            # The employee never answers; only HR's steps (the mail, then deregistration) move the case.
            wanted = [st for st in wanted if template.step(st.step_id).role == "hr"]
        assert wanted, f"case {case_id} is stuck: {[st.step_id for st in active]}"
        # Mail first: a newspaper notice is the last resort and is not needed once mail is recorded.
        st = next((s for s in wanted if s.step_id != "newspaper_notice"), wanted[0])
        step = template.step(st.step_id)
        ss = StepState(status="active", documents_signed=frozenset(st.documents_signed or ()))
        if sc.hr_items and step.hr_fields and not ss.documents_signed and not added:
            # HR adds the case's own items on the step's card before anyone signs.
            card = await api.wait_card(HR, lambda c, s=step.id: c["step_id"] == s and any(
                b["action"] == "prepare" and b["enabled"] for b in c["buttons"]), "HR's card to add items")
            await api.click(HR, card["card_id"], "prepare", {"items": sc.hr_items})
            added.append(step.id)
        turn = step.turn(ss)
        if turn is not None:
            # Whoever signs next (a two-party sheet: the employee, then the receiving colleague).
            signer = _actor(sc, turn[1])
            card = await api.wait_card(signer, lambda c, s=step.id: c["step_id"] == s and any(
                b["url"] for b in c["buttons"]), f"a signing link for {step.id} ({turn[1]})")
            url = next(b["url"] for b in card["buttons"] if b["url"])
            await sign_on_page(http, url)
            continue
        if step.kind == "sign":
            await asyncio.sleep(0.05)  # completes by itself once the signature committed
            continue
        actor = _actor(sc, step.role)
        action = {"approve": "approve", "acknowledge": "acknowledge", "confirm": "confirm", "form": "submit",
                  "hr_task": "complete"}[str(step.kind)]
        if step.file_fields:
            # The scans go through the upload page HR's card links to (a real JPEG each); the card then
            # completes the step on them.
            card = await api.wait_card(actor, lambda c, s=step.id: c["step_id"] == s and any(
                "/upload/" in (b["url"] or "") for b in c["buttons"]), f"the upload link on {step.id}")
            url = next(b["url"] for b in card["buttons"] if "/upload/" in (b["url"] or ""))
            form = aiohttp.FormData()
            form.add_field("intent", "upload")
            for f in step.file_fields:
                form.add_field(f.key, _jpeg(), filename=f"{f.key}.jpg", content_type="image/jpeg")
            async with http.post(url, data=form) as resp:
                assert resp.status == 200, await resp.text()
        card = await api.wait_card(actor, lambda c, s=step.id, a=action: c["step_id"] == s and any(
            b["action"] == a and b["enabled"] for b in c["buttons"]), f"an enabled {action} on {step.id}")
        await api.click(actor, card["card_id"], action, _form(sc, step.id, agreed))
    raise AssertionError(f"case {case_id} did not complete")


def _pdftotext(pdf: bytes, tmp: Path, name: str) -> str:
    path = tmp / f"{name}.pdf"
    path.write_bytes(pdf)
    return subprocess.run(["pdftotext", "-layout", str(path), "-"], capture_output=True, text=True,
                          check=True).stdout


def _pdfsig(pdf: bytes, tmp: Path, name: str) -> str:
    path = tmp / f"{name}.sealed.pdf"
    path.write_bytes(pdf)
    return subprocess.run(["pdfsig", str(path)], capture_output=True, text=True, check=False).stdout


def _flat(text: str) -> str:
    return re.sub(r"\s+", "", text)


def _sections_in_order(text: str) -> list[str]:
    return re.findall(r"^\s*([一二三四五六七八九十]+)、", text, re.M)


def _check_common(text: str, kind: str) -> None:
    flat = _flat(text)
    assert "（未提供）" not in flat, kind
    for line in text.splitlines():
        if "://" in line:
            # A source URL only ever stands in a numbered note of its own, never inside a sentence.
            assert re.match(r"^\s*·?\s*注\d+：https?://\S+\s*$", line), (kind, line)
    numerals = _sections_in_order(text)
    assert numerals == list("一二三四五六七八九十")[: len(numerals)], (kind, numerals)


def _check_rights_notice(sc: Scenario, flat: str, agreed: Decimal | None) -> None:
    assert "离职权益告知书" in flat
    assert "一年内向劳动争议仲裁委员会申请仲裁" in flat
    assert "十五日内为你办理档案和社会保险关系转移手续" in flat
    assert "离职证明" in flat
    if sc.flow == "probation":
        assert "社会保险补缴" in flat and "1,438.42" in flat and rmb_upper(Decimal("1438.42")) in flat
        assert "已于" in flat and "完成" in flat and "PAY-backpay" in flat
        assert "第三十九条第一项" in flat and "不支付经济补偿" in flat
    else:
        assert "试用期" not in flat and "补缴" not in flat and "保证书" not in flat
    if sc.flow == "misconduct":
        assert "第三十九条" in flat and "不支付经济补偿" in flat and "经济补偿金额为0元" in flat
        assert "失业保险金" in flat
    if sc.flow == "resignation":
        assert "主动辞职" in flat and "不支付经济补偿" in flat and "失业保险金" not in flat
    if sc.flow in ("resignation", "mutual"):
        assert "PAY-final_pay" in flat  # the final pay date and its reference
    if sc.flow in ("resignation", "mutual", "misconduct"):
        assert "签收电子版" in flat  # the certificate was signed for in this system
    if sc.flow in ("mutual", "misconduct"):
        # The figures HR's check recorded, each with its amount in words and its basis in the annex.
        assert "未休年休假工资报酬：人民币" in flat and "最后一个月工资：人民币" in flat
        assert "附件：未休年休假工资报酬及最后一个月工资计算依据" in flat
    else:
        assert "未休年休假工资报酬：" not in flat
    if sc.flow == "mutual":
        assert agreed is not None
        assert money(agreed) in flat and rmb_upper(agreed) in flat
        assert "竞业限制" in flat and "6个月" in flat
        # 1,000 recorded is below 30 % of 26,000: the notice states the floor, 7,800.00.
        assert money(Decimal("7800")) in flat and rmb_upper(Decimal("7800")) in flat and "额外支付三个月" in flat
    else:
        assert "竞业限制" not in flat


async def _check_handover(sc: Scenario, doc: Document, flat: str) -> None:
    """Both parties signed the one sheet: two signatures, each with its own evidence page, in order."""
    sigs = await Signature.filter(document_id=doc.id).order_by("id")
    assert [s.signer_id for s in sigs] == [sc.employee, HANDOVER]
    employee = await Employee.get(employee_id=sc.employee)
    receiver = await Employee.get(employee_id=HANDOVER)
    assert f"{employee.name}（{sc.employee}）" in flat and f"{receiver.name}（{HANDOVER}）" in flat
    assert "签署人1·Signer1" in flat and "签署人2·Signer2" in flat and "签署顺序Order2/2" in flat
    assert flat.count("电子签署存证页") == 2  # one evidence page per signer
    for item in ("工作文件与资料", "系统账号与权限", *sc.items_expected):
        assert item in flat, item


@pytest.mark.slow
@pytest.mark.parametrize("sc", SCENARIOS, ids=lambda s: s.flow + ("-fallback" if s.fallback else "")
                         + (f"-mail-{s.extra_form['delivery_result']}" if "delivery_result" in s.extra_form else ""))
async def test_every_flow_from_command_to_closure(sc: Scenario, server: tuple[str, Settings],
                                                  tmp_path: Path) -> None:
    base, settings = server
    agreed: Decimal | None = None
    if sc.flow == "mutual":
        emp = await Employee.get(employee_id=sc.employee)
        assert emp.hire_date is not None and emp.monthly_wage is not None
        agreed = compensation(hire_date=emp.hire_date, last_day=sc.last_day, ground="36-employer",
                              average_monthly_wage=Decimal(emp.monthly_wage)).total
    async with aiohttp.ClientSession() as http:
        api = EmulatorAPI(http, base)
        await api.send(HR, sc.command)
        case = await Case.filter(template_id=sc.flow).order_by("-started_at").first()
        assert case is not None
        if sc.fallback:
            first = template_first = FLOWS[sc.flow].steps[0].id
            await api.wait_card(sc.employee, lambda c: c["step_id"] == first, "the termination notice card")
            # Seven days pass without a signature: the fallback timer falls due and the timer runner fires it.
            n = await Timer.filter(case_id=case.id, step_id=template_first, kind="fallback").update(
                due_at=datetime.now(UTC) - timedelta(seconds=1))
            assert n == 1
            await api.wait_card(HR, lambda c: c["step_id"] == "registered_mail" and any(
                b["enabled"] for b in c["buttons"]), "the registered-mail task")
        await _drive(api, http, sc, case.id, agreed)

        completion = await api.wait_card(sc.employee, lambda c: c["purpose"] == "completion", "the completion card")
        check = {"mutual": "terms", "misconduct": "deregistration"}.get(sc.flow)
        if check is not None:
            # HR's check card shows each computed figure and its basis.
            card = await api.wait_card(HR, lambda c: c["step_id"] == check, "HR's settlement check card")
            figures = {f["label"]: f["value"] for f in card["fields"]}
            assert figures["经济补偿"] == (f"{money(agreed)} 元" if agreed is not None else "0.00 元")
            assert figures["最后一个月工资"].endswith(" 元") and "结算金额计算依据" in card["body"]
            if sc.flow == "misconduct":
                assert "第三十九条" in card["body"] and "不支付经济补偿" in card["body"]

    body = _flat(completion["body"])
    assert "离职手续完成确认函" in body and "十五日内" in body and "一年" in body
    assert _flat(COMPANY["company_name"]) in body
    if sc.flow == "probation":
        assert "社会保险补缴" in body and "1,438.42" in body and "保证书" in body
    else:
        assert "试用期" not in body and "补缴" not in body and "保证书" not in body
    assert ("竞业限制" in body) == (sc.flow == "mutual")

    steps = {st.step_id: st for st in await CaseStep.filter(case_id=case.id)}
    assert not [sid for sid, st in steps.items() if st.status in ("active", "locked")]  # nothing left "in progress"
    if sc.fallback:
        returned = sc.extra_form.get("delivery_result") == "returned"
        assert steps["registered_mail"].outcome == ("returned" if returned else "delivered")
        news = steps["newspaper_notice"]
        assert (news.status, news.outcome) == (("done", "completed") if returned else ("not_needed", "branch"))
        replaced_by = "newspaper_notice" if returned else "registered_mail"
        assert steps["termination_notice"].data == {"replaced_by": replaced_by}
    if sc.flow == "misconduct":
        # HR's live summary says why the unused steps were closed, not "进行中".
        async with aiohttp.ClientSession() as http:
            summary = await EmulatorAPI(http, base).wait_card(
                HR, lambda c: c["purpose"] == "summary" and c["status"] == "状态：已完成", "the completed summary")
        assert "进行中" not in summary["body"] and "不再需要" in summary["body"]
        if not sc.fallback:
            assert steps["handover"].status == "done" and steps["handover"].done_by == HANDOVER

    docs = await Document.filter(case_id=case.id).order_by("id")
    # Every completed case ends with the sealed completion notice the company issues.
    named = {k for s in FLOWS[sc.flow].steps if not s.fallback_only for k in s.documents} | {"completion_notice"}
    if sc.fallback:
        # The employee signed nothing; mail stood in for every signature. The company issued the letter (with
        # the two unsigned documents it encloses), the newspaper notice if mail came back, and the completion
        # notice.
        returned = sc.extra_form.get("delivery_result") == "returned"
        assert {d.kind: d.status for d in docs} == {
            "termination_notice": "draft", "separation_certificate": "draft", "fallback_notice": "sealed",
            **({"newspaper_notice": "sealed"} if returned else {}), "completion_notice": "sealed"}
    else:
        assert {d.kind for d in docs} == named
        for doc in docs:
            assert doc.status == "sealed", (doc.kind, doc.status)
            sealed = bytes(doc.pdf_signed)
            assert "Signature is Valid" in _pdfsig(sealed, tmp_path, doc.kind), doc.kind
            text = _pdftotext(sealed, tmp_path, doc.kind)
            _check_common(text, doc.kind)
            if doc.kind in COMPANY_ISSUED:
                assert all(_flat(v) in _flat(text) for v in COMPANY.values()), doc.kind
            if doc.kind == "rights_notice":
                _check_rights_notice(sc, _flat(text), agreed)
            if doc.kind == "settlement_agreement":
                flat = _flat(text)
                assert agreed is not None and money(agreed) in flat and rmb_upper(agreed) in flat
                assert "按《劳动合同法》第四十七条计算" in flat and "附件：经济补偿计算依据" in flat
            if doc.kind == "separation_certificate":
                assert "严重违反考勤制度" not in _flat(text)  # HR's reason stays off the certificate
            if doc.kind == "handover_confirmation":
                await _check_handover(sc, doc, _flat(text))
            if doc.kind == "resignation_letter":
                flat = _flat(text)
                assert "辞职申请书" in flat and "第三十七条" in flat and "2026年1月30日" in flat

    await connections.close_all(discard=False)  # the CLI gets the database to itself
    env = {**os.environ, "DATABASE_URL": settings.database_url, "DATA_DIR": str(settings.data_dir),
           "SECRET_KEY": "test-secret-key-0123456789", "PLATFORMS": "emulator"}
    out = await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "bot", "verify", "--case", case.id],
                                  cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and "RESULT: PASS" in out.stdout, out.stdout + out.stderr
