"""A case's timeline for the dashboard: every audit entry (as chained, with its sequence number and hash),
merged with the cards the outbox delivered, oldest first.

Entry kinds we know get a label and their salient facts; any other kind (a new feature's entries, e.g.
evidence uploads) is shown generically with its kind and its data, never dropped.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from signing import settlefigures as sf
from storage.models import AuditEntry, OutboxMessage
from workflow.documents import document_title
from workflow.template import FlowTemplate
from workflow.text import Text

MAX_ENTRIES = 2000  # a page; the archive carries all of them

LABELS: dict[str, Text] = {
    "case_opened": Text("发起流程", "case opened"),
    "case_started": Text("流程开始", "case started"),
    "step_viewed": Text("查看步骤", "step viewed"),
    "step_done": Text("完成步骤", "step done"),
    "step_rejected": Text("驳回 / 拒绝", "rejected"),
    "step_reopened": Text("重新打开步骤", "step reopened"),
    "step_prepared": Text("HR 补充步骤内容", "HR added to the step"),
    "reminder_sent": Text("提醒", "reminder"),
    "hr_alerted": Text("逾期告警（HR）", "overdue alert to HR"),
    "fallback_started": Text("启动兜底送达", "fallback delivery started"),
    "question_asked": Text("员工提问", "question asked"),
    "question_answered": Text("HR 回复", "question answered"),
    "question_reminded": Text("提问未回复提醒", "unanswered question reminder"),
    "document_signed": Text("签署文件", "document signed"),
    "signature_evidence": Text("签名存证", "signature evidence"),
    "document_issued": Text("公司出具文件（盖章）", "company document issued (sealed)"),
    "seal_failed": Text("盖章失败", "seal failed"),
    "case_closed": Text("流程完成", "case completed"),
    "case_cancelled": Text("流程取消", "case cancelled"),
    "refused": Text("被拒绝的操作", "refused attempt"),
    "backpay_blocked": Text("补缴金额无法计算", "back pay could not be computed"),
    "backpay_rates_entered": Text("HR 录入费率", "HR entered rates"),
    "evidence_uploaded": Text("上传凭证", "evidence uploaded"),
    "fallback_requested": Text("HR 启动兜底送达", "HR started the fallback"),
    "card_sent": Text("发送卡片", "card sent"),
}
# Kinds shown with the "evidence" mark: what a dispute is decided on.
EVIDENCE = frozenset({"signature_evidence", "document_issued", "document_signed", "evidence_uploaded"})
CARD_PURPOSES: dict[str, Text] = {
    "step": Text("待办卡片", "step card"), "reminder": Text("提醒卡片", "reminder card"),
    "alert": Text("告警卡片", "alert card"), "fallback": Text("兜底送达卡片", "fallback card"),
    "completion": Text("完成卡片", "completion card"), "cancelled": Text("取消通知", "cancellation notice"),
    "rejected": Text("驳回通知", "rejection notice"), "summary": Text("HR 流程概览卡片", "HR summary card"),
    "question": Text("提问卡片", "question card"), "answer": Text("回复卡片", "answer card"),
}
# Data keys worth a line of their own, in this order; the rest stays in the entry's raw data.
_FACTS: tuple[tuple[str, Text], ...] = (
    ("action", Text("操作", "action")), ("outcome", Text("结果", "outcome")),
    ("reason", Text("原因", "reason")), ("question", Text("问题", "question")), ("text", Text("内容", "text")),
    ("trigger", Text("触发", "trigger")), ("reminders_sent", Text("第几次提醒", "reminder no.")),
    ("document", Text("文件", "document")), ("kind", Text("文件", "document")),
    ("code", Text("代码", "code")), ("attempt", Text("尝试的操作", "attempted")),
    ("required_role", Text("需要的角色", "role required")),
    ("override_reason", Text("调整原因", "override reason")),
    ("sha256_signed", Text("盖章文件 SHA-256", "sealed file SHA-256")),
    ("sha256", Text("SHA-256", "SHA-256")), ("filename", Text("文件名", "file name")),
    ("tracking_number", Text("邮寄单号", "tracking number")),
)


@dataclass(frozen=True)
class Item:
    at: datetime
    kind: str
    label: Text
    actor: str  # employee id, "system", or "" (the outbox)
    step: Text | None = None
    seq: int | None = None  # audit sequence number; None: not a chained entry (a delivered card)
    hash: str = ""
    facts: tuple[tuple[Text, str | Text], ...] = ()
    data: Mapping[str, Any] = field(default_factory=dict)
    evidence: bool = False
    link: str | None = None


def _step_title(template: FlowTemplate | None, step_id: object) -> Text | None:
    if not isinstance(step_id, str) or not step_id:
        return None
    if template is not None and step_id in template:
        step = template.step(step_id)
        return Text(f"第 {step.number} 步 {step.title.zh}", f"step {step.number} {step.title.en}")
    return Text(step_id, step_id)


def _short(value: object, limit: int = 300) -> str:
    text = value if isinstance(value, str) else str(value)
    return text if len(text) <= limit else text[:limit] + "…"


def facts_of(kind: str, data: Mapping[str, Any]) -> tuple[tuple[Text, str | Text], ...]:
    out: list[tuple[Text, str | Text]] = []
    if kind == "signature_evidence":
        ev = data.get("evidence") or {}
        signer, doc, client = ev.get("signer") or {}, ev.get("document") or {}, ev.get("client") or {}
        capture, server = ev.get("capture") or {}, ev.get("server") or {}
        kind_name = str(doc.get("kind", ""))
        out += [
            (Text("签署人", "signer"), f"{signer.get('name', '')}（{signer.get('employee_id', '')}）"),
            (Text("文件", "document"), document_title(kind_name) if kind_name else ""),
            (Text("身份确认", "identity"), f"{signer.get('identity_method', '')} {signer.get('platform_identity', '')}"
             .strip()),
            (Text("IP", "IP"), str(client.get("ip", ""))),
            (Text("设备", "device"), _short(client.get("user_agent", ""), 160)),
            (Text("服务器时间", "server time"), str(server.get("received_at", ""))),
            (Text("文件 SHA-256（签署时所见）", "document SHA-256 as shown"), str(doc.get("sha256_presented", ""))),
            (Text("笔迹 SHA-256", "strokes SHA-256"), str(capture.get("strokes_sha256", ""))),
            (Text("签名图像 SHA-256", "image SHA-256"), str(capture.get("image_sha256", ""))),
            (Text("存证记录 SHA-256", "evidence SHA-256"), str(data.get("evidence_sha256", ""))),
        ]
        cosign = ev.get("cosign")
        if isinstance(cosign, Mapping):
            out.append((Text("共同签署", "co-signed"), f"{cosign.get('as', '')} #{cosign.get('order', '')}"))
        return tuple((k, v) for k, v in out if v)
    for key, label in _FACTS:
        value = data.get(key)
        if value in (None, "", [], {}):
            continue
        if key in ("document", "kind") and isinstance(value, str):
            out.append((label, document_title(value)))
            continue
        out.append((label, _short(value)))
    if data.get("case_status") in ("completed", "cancelled") and kind not in ("case_cancelled", "case_closed"):
        # The event that finished the case (the last step done) says so itself; there is no entry of its own.
        out.append((Text("流程", "case"), Text("由此完成", "completed by this") if data["case_status"] == "completed"
                    else Text("已取消", "cancelled")))
    inner = data.get("data")
    if isinstance(inner, Mapping):  # what the person entered on the step's form (HR's overrides among it)
        labels = dict(_FACTS)
        for key, value in inner.items():
            if key == sf.RECORD_KEY and isinstance(value, Mapping):
                out += _settlement_facts(value)
            elif value not in (None, "", [], {}):
                out.append((labels.get(str(key), Text(str(key), str(key))), _short(value)))
    return tuple(out)


def _settlement_facts(rec: Mapping[str, Any]) -> list[tuple[Text, str | Text]]:
    """HR's settlement record (signing.settlefigures) as one line per figure in the page's language; the
    basis lines stay in the raw entry."""
    zh, en = sf.stated(rec, "zh"), sf.stated(rec, "en")
    return [(Text(item.zh, item.en), Text(sf.amount_text(zh[item.key], "zh"), sf.amount_text(en[item.key], "en")))
            for item in sf.ITEMS if item.key in zh]


LinkFor = Callable[[str, Mapping[str, Any]], str | None]  # (entry kind, entry data) -> a page about it


async def timeline(case_id: str, template: FlowTemplate | None, *, link_for: LinkFor | None = None
                   ) -> list[Item]:
    items: list[Item] = []
    for e in await AuditEntry.filter(case_id=case_id).order_by("seq").limit(MAX_ENTRIES):
        data = e.data if isinstance(e.data, dict) else {}
        label = LABELS.get(e.kind) or Text(e.kind, e.kind)
        actor = e.actor or str(data.get("actor_id", ""))
        step_id = data.get("step_id") or (data.get("evidence") or {}).get("step_id")
        items.append(Item(e.at, e.kind, label, actor, _step_title(template, step_id), e.seq, e.hash,
                          facts_of(e.kind, data), data, e.kind in EVIDENCE,
                          link_for(e.kind, data) if link_for else None))
    cards = await OutboxMessage.filter(case_id=case_id, kind="card", sent_at__not_isnull=True).order_by("sent_at")
    for m in cards:
        payload = m.payload if isinstance(m.payload, dict) else {}
        purpose = str(payload.get("purpose", "step"))
        what = CARD_PURPOSES.get(purpose, Text(purpose, purpose))
        items.append(Item(m.sent_at, "card_sent", LABELS["card_sent"], "", _step_title(template, m.step_id),  # type: ignore[arg-type]
                          facts=((Text("卡片", "card"), what), (Text("收件人", "to"), m.recipient),
                                 (Text("平台", "platform"), m.platform))))
    # Stable: entries of one moment keep their chain order, a card after the entry that sent it.
    items.sort(key=lambda i: (i.at, i.seq is None, i.seq or 0))
    return items
