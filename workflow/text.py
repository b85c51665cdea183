"""Bilingual UI text and the display names the engine puts into refusal messages."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

Language = Literal["zh", "en"]


@dataclass(frozen=True, slots=True)
class Text:
    zh: str
    en: str

    def get(self, language: str) -> str:
        return self.en if language == "en" else self.zh

    def to_dict(self) -> dict[str, str]:
        return {"zh": self.zh, "en": self.en}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Text:
        return cls(zh=str(data["zh"]), en=str(data["en"]))
