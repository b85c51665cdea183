from typing import Any

from tortoise import fields, migrations
from tortoise.migrations import operations as ops


async def zero_old_rows(apps: Any, schema_editor: Any) -> None:
    # The column is nullable only because SQLite cannot add a NOT NULL column to a table with rows;
    # every row counts from 0, old ones included, so the give-up limit applies to them too.
    await schema_editor.client.execute_query('UPDATE "document" SET "seal_attempts" = 0 WHERE "seal_attempts" IS NULL')


class Migration(migrations.Migration):
    dependencies = [('models', '0006_emulator_messages')]

    initial = False

    operations = [
        ops.AddField(
            model_name='Document',
            name='seal_attempts',
            field=fields.IntField(default=0, null=True),
        ),
        ops.AddField(
            model_name='Document',
            name='seal_error',
            field=fields.TextField(null=True),
        ),
        ops.AddField(
            model_name='SigningLink',
            name='claim_token',
            field=fields.CharField(max_length=32, null=True),
        ),
        ops.AddField(
            model_name='SigningLink',
            name='claimed_until',
            field=fields.DatetimeField(null=True),
        ),
        ops.RunPython(zero_old_rows),
    ]
