from tortoise import migrations
from tortoise.migrations import operations as ops
import functools
from json import dumps, loads
from tortoise import fields

class Migration(migrations.Migration):
    dependencies = [('models', '0005_checkpoint_case_seq_index')]

    initial = False

    operations = [
        ops.CreateModel(
            name='EmulatorMessage',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('recipient', fields.CharField(max_length=64)),
                ('seq', fields.IntField()),
                ('kind', fields.CharField(max_length=8)),
                ('sender', fields.CharField(max_length=64)),
                ('card_id', fields.CharField(null=True, unique=True, max_length=255)),
                ('text', fields.TextField(default='', unique=False)),
                ('card', fields.JSONField(null=True, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('html', fields.TextField(default='', unique=False)),
                ('version', fields.IntField(default=1)),
                ('at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'emulator_message', 'app': 'models', 'unique_together': (('recipient', 'seq'),), 'pk_attr': 'id'},
            bases=['Model'],
        ),
    ]
