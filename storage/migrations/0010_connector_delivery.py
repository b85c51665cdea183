from tortoise import fields, migrations
from tortoise.migrations import operations as ops


class Migration(migrations.Migration):
    # The lead re-chains this after the other branches' migrations at merge.
    dependencies = [('models', '0009_case_access')]

    initial = False

    operations = [
        # Nullable: rows delivered before keep NULL and are recognised as such (storage.cardids).
        ops.AddField(model_name='OutboxMessage', name='delivery', field=fields.JSONField(null=True)),
    ]
