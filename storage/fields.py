"""Custom Tortoise fields."""

from __future__ import annotations

from typing import Any

from tortoise.fields import TextField

from storage import crypto


class EncryptedTextField(TextField):
    """Text encrypted with AES-GCM before it reaches the database."""

    def to_db_value(self, value: Any, instance: Any) -> str | None:
        if value is None:
            return None
        return crypto.encrypt(str(value))

    def to_python_value(self, value: Any) -> str | None:
        if value is None:
            return None
        if isinstance(value, str) and value.startswith("v1:"):
            return crypto.decrypt(value)
        return value
