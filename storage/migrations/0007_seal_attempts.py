from tortoise import fields, migrations
from tortoise.migrations import operations as ops


class Migration(migrations.Migration):
    # The lead re-chains this after the other 0004-0006 migrations at merge time.
    dependencies = [('models', '0006_emulator_messages')]

    initial = False

    operations = [
        ops.AddField(
            model_name='Document',
            name='seal_attempts',
            field=fields.IntField(default=0),
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
    ]
