"""Custom Tortoise fields: columns encrypted at rest (storage/crypto.py).

Each reads rows written before it encrypted them (clear text, clear bytes, a JSON object) as they
are, so a database upgraded without running migration 0005 still works; the migration encrypts
those rows in place.
"""

from __future__ import annotations

from typing import Any

from tortoise.fields import BinaryField, JSONField, TextField

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
        if isinstance(value, str) and crypto.is_encrypted(value):
            return crypto.decrypt(value)
        return value


class EncryptedBinaryField(BinaryField):
    """Bytes (PDFs, PNGs, stroke JSON) encrypted with AES-GCM; the column stays BLOB/BYTEA."""

    def to_db_value(self, value: Any, instance: Any) -> bytes | None:
        if value is None:
            return None
        return crypto.encrypt_bytes(bytes(value))

    def to_python_value(self, value: Any) -> bytes | None:
        if value is None:
            return None
        raw = bytes(value)
        return crypto.decrypt_bytes(raw) if crypto.is_encrypted_bytes(raw) else raw


class EncryptedJSONField(JSONField):  # type: ignore[type-arg]
    """JSON encrypted with AES-GCM, stored as one JSON string (``"v1:…"``).

    Kept a JSON column (JSONB on PostgreSQL) rather than turned into text, so no column changes
    type and old rows holding a clear object still read.
    """

    def to_db_value(self, value: Any, instance: Any) -> str | None:
        plain = super().to_db_value(value, instance)
        if plain is None:
            return None
        return self.encoder(crypto.encrypt(plain))

    def to_python_value(self, value: Any) -> Any:
        if isinstance(value, bytes):
            value = value.decode("utf-8")
        if isinstance(value, str) and crypto.is_encrypted(value):  # a driver that decoded the JSON
            return self.decoder(crypto.decrypt(value))
        data = super().to_python_value(value)
        if isinstance(data, str) and crypto.is_encrypted(data):
            return self.decoder(crypto.decrypt(data))
        return data
