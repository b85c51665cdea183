"""/fallback (/送达): HR starts the fallback at once with a reason, the same path the 7-day timer takes —
registered mail first, the newspaper only after mail came back — and a replay of the chain (verify) agrees."""

from __future__ import annotations

from handlers.cardview import CardRenderer
from handlers.signing_web import sweep_round
from signing.channel import Channel
from signing.pipeline import keys_for
from signing.verify import all_ok, verify_case
from storage.models import AuditEntry, Case, CaseStep, Document, Employee
from tests.fallback.conftest import EMP, HR, MANAGER, CaseA, real_jpeg
from tests.fallback.test_uploads import _url

START = "/离职 张三 违纪 2030-01-31 严重违反考勤制度 交接人:周八"


async def test_fallback_on_hrs_word_is_recorded_and_replays(case_a: CaseA) -> None:
    h = case_a
    case_id = (await h.send(HR, START)).data["case_id"]
    for text, code in [
        (f"/送达 {case_id}", "usage"),  # a reason is required
        (f"/fallback {case_id}    ", "usage"),
        ("/送达 OB-NOPE22 员工拒签", "unknown_case"),
    ]:
        reply = await h.send(HR, text)
        assert not reply.ok and reply.code == code, (text, reply.text)
    for who in (EMP, MANAGER):  # only HR
        reply = await h.send(who, f"/送达 {case_id} 员工拒签")
        assert not reply.ok
    case = await Case.get(id=case_id)
    assert not case.fallback_started
    assert not await AuditEntry.filter(case_id=case_id, kind="fallback_started").exists()

    reply = await h.send(HR, f"/送达 {case_id} 员工当面拒绝签收，并表示不会再来公司")
    assert reply.ok and reply.changed, reply.text
    assert "EMS" in reply.text and "登报" in reply.text
    entry = await AuditEntry.get(case_id=case_id, kind="fallback_started")
    assert entry.data["trigger"] == "manual" and entry.data["reason"] == "员工当面拒绝签收，并表示不会再来公司"
    assert entry.data["actor_id"] == HR and entry.data["step_id"] == "termination_notice"
    steps = {s.step_id: s.status for s in await CaseStep.filter(case_id=case_id)}
    assert steps["registered_mail"] == "active" and steps["newspaper_notice"] == "locked"
    again = await h.send(HR, f"/fallback {case_id} again")
    assert not again.ok and again.code == "already_done"

    # Before any card renders, the signing sweep issues the letter (the card then links the same one).
    assert not await Document.filter(case_id=case_id, kind="fallback_notice").exists()
    swept = await sweep_round(h.chat.settings, h.chat.inbound.service, channel=Channel())
    letter = await Document.get(case_id=case_id, kind="fallback_notice")
    assert letter.status == "sealed" and swept[letter.id] == "sealed"
    assert await sweep_round(h.chat.settings, h.chat.inbound.service, channel=Channel()) == {}  # once
    await h.chat.deliver(h.now)
    assert await Document.filter(case_id=case_id, kind="fallback_notice").count() == 1
    resp = await h.post(_url(h, case_id), {"intent": "upload"},
                        {"receipt_scan": ("r.jpg", real_jpeg(64, 48), "image/jpeg")})
    assert resp.status == 200
    # The chain replays: the manual start and the upload are engine decisions verify rebuilds.
    keys = keys_for(h.chat.settings)
    checks = await verify_case(case_id, keys=keys, trust_root=keys.root_cert or keys.seal_cert,
                               templates=h.chat.inbound.service.templates)
    lines = [c.line() for c in checks]
    assert all_ok(checks), "\n".join(lines)
    assert any(line.startswith("PASS  step states") for line in lines)
    assert any(line.startswith("PASS  upload ") for line in lines)


async def test_letter_without_an_address_tells_hr_what_to_fix(case_a: CaseA) -> None:
    h = case_a
    emp = await Employee.get(employee_id=EMP)
    emp.address = None
    await emp.save()
    case_id = (await h.send(HR, START)).data["case_id"]
    assert (await h.send(HR, f"/送达 {case_id} 员工拒签")).ok
    await h.chat.deliver(h.now)
    card = await h.chat.card(HR, step="registered_mail")
    assert "通讯地址未登记" in card.card.body and "address" in card.card.body
    assert not await Document.filter(case_id=case_id, kind="fallback_notice").exists()
    emp.address = "上海市浦东新区世纪大道 100 号"
    await emp.save()
    # The next rendering of the card issues it.
    hr = await Employee.get(employee_id=HR)
    again = await CardRenderer(h.chat.settings, h.chat.inbound.service, channel=Channel()).card_of(
        await Case.get(id=case_id), "step", "registered_mail", hr)
    assert again is not None and any(b.label.startswith("下载") for b in again.buttons)
    assert (await Document.get(case_id=case_id, kind="fallback_notice")).status == "sealed"
