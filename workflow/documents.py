"""The document kinds a step may require; signing/ renders one PDF per kind."""

from __future__ import annotations

from types import MappingProxyType

from workflow.text import Text

DOCUMENT_TITLES: MappingProxyType[str, Text] = MappingProxyType(
    {
        "guarantee_letter": Text("离职保证书", "guarantee letter"),
        "separation_certificate": Text("离职证明", "separation certificate"),
        "termination_notice": Text("解除劳动合同通知书", "termination notice"),
        "handover_confirmation": Text("工作交接确认单", "handover confirmation"),
        "rights_notice": Text("离职权益告知书", "notice of rights"),
        "completion_notice": Text("离职手续完成确认函", "confirmation that the departure is complete"),
        "resignation_letter": Text("辞职申请书", "resignation letter"),
        "settlement_agreement": Text("协商解除劳动合同协议书", "mutual termination agreement"),
        "fallback_notice": Text("解除劳动合同送达通知（邮寄/登报）", "delivery notice (mail / newspaper)"),
        "newspaper_notice": Text("登报公告", "newspaper notice"),
    }
)

DOCUMENT_KINDS: tuple[str, ...] = tuple(DOCUMENT_TITLES)


def document_title(kind: str) -> Text:
    return DOCUMENT_TITLES.get(kind) or Text(kind, kind)
