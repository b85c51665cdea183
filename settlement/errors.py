"""The single error type for bad settlement input or a bad rate-table file."""

from __future__ import annotations


class SettlementError(ValueError):
    """Bad input. ``field`` names the offending input (dotted path); ``source`` the file, if any.

    ``str()`` is one line so the CLI can print it as is.
    """

    def __init__(self, field: str, message: str, *, source: str | None = None) -> None:
        self.field = field
        self.message = message
        self.source = source
        super().__init__(str(self))

    def __str__(self) -> str:
        text = f"{self.field}: {self.message}"
        if self.source:
            text = f"{self.source}: {text}"
        return " ".join(text.split())
