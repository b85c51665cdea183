"""Encrypt at rest what was stored in clear: document PDFs and context, stroke data, signature images.

The column types stay (BLOB/BYTEA, JSON/JSONB); AlterField only records the new field classes (on
SQLite it rebuilds the two tables). `encrypt_existing_rows` then rewrites rows written before this
migration, plus any clear phone or ID number, with the key from SECRET_KEY: `python -m bot migrate`
configures it first. Rows already encrypted are left alone, so running it twice changes nothing.
"""

from tortoise import migrations
from tortoise.migrations import operations as ops
import functools
from json import dumps, loads
from typing import Any

from storage import crypto
from storage.fields import EncryptedBinaryField, EncryptedJSONField

_PAGE = 50  # rows per read: PDFs are large, so a big table is never held in memory at once
# (table, column, kind): bytes, json or text.
_COLUMNS = (
    ("document", "pdf_unsigned", "bytes"), ("document", "pdf_signed", "bytes"), ("document", "context", "json"),
    ("signature", "strokes", "bytes"), ("signature", "image_png", "bytes"),
    ("employee", "phone", "text"), ("employee", "id_number", "text"),
)


def _encrypted(value: Any, kind: str) -> Any:
    """The stored form of a clear value, or None when the value is already encrypted (or NULL)."""
    if value is None:
        return None
    if kind == "bytes":
        raw = bytes(value)
        return None if crypto.is_encrypted_bytes(raw) else crypto.encrypt_bytes(raw)
    if kind == "text":
        return None if crypto.is_encrypted(value) else crypto.encrypt(value)
    text = value.decode("utf-8") if isinstance(value, bytes) else value
    if not isinstance(text, str):  # a driver that decoded the JSON object for us
        return dumps(crypto.encrypt(dumps(text, separators=(",", ":"))))
    if crypto.is_encrypted(text):  # a driver that decoded the JSON string for us
        return None
    data = loads(text)
    if isinstance(data, str) and crypto.is_encrypted(data):
        return None
    return dumps(crypto.encrypt(text))


async def encrypt_existing_rows(apps: Any, schema_editor: Any) -> None:
    client = schema_editor.client
    pg = client.capabilities.dialect == "postgres"
    mark = (lambda n: f"${n}") if pg else (lambda n: "?")
    for table, column, kind in _COLUMNS:
        last = -1
        while True:
            _, rows = await client.execute_query(
                f'SELECT "id", "{column}" FROM "{table}" WHERE "id" > {mark(1)} ORDER BY "id" LIMIT {_PAGE}',
                [last])
            if not rows:
                break
            for row in rows:
                last = row[0]
                new = _encrypted(row[1], kind)
                if new is not None:
                    await client.execute_query(
                        f'UPDATE "{table}" SET "{column}" = {mark(1)} WHERE "id" = {mark(2)}', [new, row[0]])



class Migration(migrations.Migration):
    dependencies = [('models', '0007_seal_attempts')]

    initial = False

    operations = [
        ops.AlterField(
            model_name='Document',
            name='context',
            field=EncryptedJSONField(default=dict, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads),
        ),
        ops.AlterField(
            model_name='Document',
            name='pdf_signed',
            field=EncryptedBinaryField(null=True),
        ),
        ops.AlterField(
            model_name='Document',
            name='pdf_unsigned',
            field=EncryptedBinaryField(),
        ),
        ops.AlterField(
            model_name='Signature',
            name='image_png',
            field=EncryptedBinaryField(),
        ),
        ops.AlterField(
            model_name='Signature',
            name='strokes',
            field=EncryptedBinaryField(),
        ),
        ops.RunPython(encrypt_existing_rows),
    ]
