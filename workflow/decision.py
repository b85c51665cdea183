"""The engine's two possible answers: a Decision (new state + effects) or a Refusal (nothing changes)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from workflow.effects import Audit, Effect, effect_from_dict
from workflow.model import CaseState
from workflow.text import Text

RefusalCode = Literal[
    "wrong_role",
    "locked",
    "already_done",
    "not_active",
    "missing_documents",
    "missing_data",
    "bad_action",
    "case_closed",
    "reason_required",
    "incomplete",
    "unknown_step",
    "unknown_question",
    "too_long",
    "too_many",
    "not_reopenable",
    "not_needed",
    "not_your_turn",
    "already_signed",
    "no_fallback",
]

@dataclass(frozen=True, slots=True)
class Decision:
    state: CaseState
    effects: tuple[Effect, ...]

    @property
    def changed(self) -> bool:
        return bool(self.effects)

    @property
    def audit(self) -> Audit | None:
        return next((e for e in self.effects if isinstance(e, Audit)), None)

    def to_dict(self) -> dict[str, Any]:
        return {"state": self.state.to_dict(), "effects": [e.to_dict() for e in self.effects]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Decision:
        return cls(CaseState.from_dict(data["state"]), tuple(effect_from_dict(e) for e in data["effects"]))


@dataclass(frozen=True, slots=True)
class Refusal:
    code: RefusalCode
    message_zh: str
    message_en: str
    missing: tuple[str, ...] = ()
    audit: Audit | None = None  # only for wrong_role: the refused attempt is worth recording
    missing_documents: tuple[str, ...] = ()

    def message(self, language: str = "zh") -> str:
        return self.message_en if language == "en" else self.message_zh

    def to_dict(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "message_zh": self.message_zh,
            "message_en": self.message_en,
            "missing": list(self.missing),
            "missing_documents": list(self.missing_documents),
            "audit": None if self.audit is None else self.audit.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Refusal:
        audit = data.get("audit")
        return cls(
            code=data["code"],
            message_zh=data["message_zh"],
            message_en=data["message_en"],
            missing=tuple(data.get("missing") or ()),
            audit=None if audit is None else Audit.from_dict(audit),
            missing_documents=tuple(data.get("missing_documents") or ()),
        )


def refuse(code: RefusalCode, text: Text, missing: tuple[str, ...] = (), **kw: Any) -> Refusal:
    return Refusal(code, text.zh, text.en, missing, **kw)
