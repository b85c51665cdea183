from tortoise import fields, migrations
from tortoise.fields.base import OnDelete
from tortoise.migrations import operations as ops


class Migration(migrations.Migration):
    # After the connector's 0010 (on main when this branch was rebased); re-chained at merge if needed.
    dependencies = [('models', '0010_connector_delivery')]

    initial = False

    operations = [
        # Who has opened a step (per holder), so a reminder reaches only those who have not.
        ops.AddField(
            model_name='CaseStep',
            name='viewed_by',
            field=fields.JSONField(null=True),
        ),
        ops.CreateModel(
            name='FormLink',
            fields=[
                ('nonce', fields.CharField(primary_key=True, unique=True, db_index=True, max_length=64)),
                ('case', fields.ForeignKeyField('models.Case', source_field='case_id', db_constraint=True,
                                                to_field='id', related_name='form_links',
                                                on_delete=OnDelete.RESTRICT)),
                ('step_id', fields.CharField(max_length=64)),
                ('action', fields.CharField(max_length=64)),
                ('holder_id', fields.CharField(max_length=64)),
                ('expires_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('opened_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('used_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('claim_token', fields.CharField(null=True, max_length=32)),
                ('claimed_until', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'form_link', 'app': 'models', 'pk_attr': 'nonce'},
            bases=['Model'],
        ),
    ]
