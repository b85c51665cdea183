import functools
from json import dumps, loads

from tortoise import fields, migrations
from tortoise.fields.base import OnDelete
from tortoise.indexes import Index
from tortoise.migrations import operations as ops


class Migration(migrations.Migration):
    # The lead re-chains this after the other branches' migrations at merge.
    dependencies = [('models', '0008_encrypt_at_rest')]

    initial = False

    operations = [
        ops.CreateModel(
            name='CaseAccess',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('case', fields.ForeignKeyField('models.Case', source_field='case_id', db_constraint=True,
                                                to_field='id', related_name='accesses',
                                                on_delete=OnDelete.RESTRICT)),
                ('at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('actor', fields.CharField(max_length=128)),
                ('action', fields.CharField(max_length=32)),
                ('detail', fields.JSONField(default=dict, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
            ],
            options={'table': 'case_access', 'app': 'models', 'indexes': [Index(fields=['case_id', 'at'])],
                     'pk_attr': 'id'},
            bases=['Model'],
        ),
    ]
