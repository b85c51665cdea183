from tortoise import fields, migrations
from tortoise.fields.base import OnDelete
from tortoise.indexes import Index
from tortoise.migrations import operations as ops

from storage.fields import EncryptedBinaryField, EncryptedTextField


class Migration(migrations.Migration):
    # The lead re-chains this after the other branches' migrations at merge.
    dependencies = [('models', '0011_forms_step_forms')]

    initial = False

    operations = [
        # Nullable: an address is only needed for the registered-mail fallback, and SQLite cannot add
        # a NOT NULL column to a table with rows.
        ops.AddField(
            model_name='Employee',
            name='address',
            field=EncryptedTextField(null=True),
        ),
        ops.CreateModel(
            name='Upload',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('key', fields.CharField(max_length=32, unique=True)),
                ('case', fields.ForeignKeyField('models.Case', source_field='case_id', db_constraint=True,
                                                to_field='id', related_name='uploads',
                                                on_delete=OnDelete.RESTRICT)),
                ('step_id', fields.CharField(max_length=64)),
                ('field', fields.CharField(max_length=64)),
                ('content_type', fields.CharField(max_length=64)),
                ('size', fields.IntField()),
                ('sha256', fields.CharField(max_length=64)),
                ('filename', fields.CharField(default='', max_length=255)),
                ('data', EncryptedBinaryField()),
                ('uploaded_by', fields.CharField(max_length=64)),
                ('uploaded_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'upload', 'app': 'models', 'indexes': [Index(fields=['case_id', 'step_id'])],
                     'pk_attr': 'id'},
            bases=['Model'],
        ),
    ]
