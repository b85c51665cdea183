"""The one place that knows which platform reaches an employee and under which user id.

Built by the app from the platform packages present (each may name the `employee` column that
holds its user id; default: our own employee id, as the emulator uses) and the PLATFORMS order,
then passed down; nothing below the app names a platform.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class AddressBook:
    platforms: tuple[str, ...]  # in PLATFORMS order: the first that reaches a person is theirs
    columns: Mapping[str, str] = field(default_factory=dict)  # platform -> employee column of its user id

    @classmethod
    def of(cls, platforms: Sequence[str], columns: Mapping[str, str] | None = None) -> AddressBook:
        return cls(tuple(platforms), dict(columns or {}))

    def column(self, platform: str) -> str:
        return self.columns.get(platform, "employee_id")

    @property
    def user_id_columns(self) -> tuple[str, ...]:
        """The employee columns holding the configured platforms' user ids (what a Recipient carries)."""
        return tuple(dict.fromkeys(self.column(p) for p in self.platforms))

    def user_id(self, emp: Any, platform: str) -> str | None:
        """`emp`'s user id on `platform` (an Employee, or a hot-path Recipient read with
        `user_id_columns`), None when unknown."""
        column = self.column(platform)
        read = getattr(emp, "user_ids", None)  # a Recipient: the columns it was read with
        value = read.get(column) if read is not None and column in read else getattr(emp, column, None)
        return str(value) if value else None

    def platform_for(self, emp: Any) -> str:
        """The platform that reaches `emp`: the first configured one holding their user id."""
        for p in self.platforms:
            if self.user_id(emp, p):
                return p
        if not self.platforms:
            raise LookupError("no platform configured")
        # Nobody reachable anywhere: the first platform, where the delivery fails with a clear hint.
        return self.platforms[0]
