from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise import fields
from tortoise.indexes import Index

class Migration(migrations.Migration):
    dependencies = [('models', '0001_initial')]

    initial = False

    operations = [
        ops.AlterField(
            model_name='OutboxMessage',
            name='next_attempt_at',
            field=fields.DatetimeField(auto_now=False, auto_now_add=False),
        ),
        ops.AlterField(
            model_name='OutboxMessage',
            name='status',
            field=fields.CharField(default='pending', max_length=16),
        ),
        ops.AddIndex(
            model_name='OutboxMessage',
            index=Index(fields=['case_id', 'step_id']),
        ),
        ops.AddIndex(
            model_name='OutboxMessage',
            index=Index(fields=['status', 'next_attempt_at']),
        ),
        ops.AlterField(
            model_name='Timer',
            name='due_at',
            field=fields.DatetimeField(auto_now=False, auto_now_add=False),
        ),
        ops.AlterField(
            model_name='Timer',
            name='status',
            field=fields.CharField(default='pending', max_length=16),
        ),
        ops.AddIndex(
            model_name='Timer',
            index=Index(fields=['case_id', 'step_id']),
        ),
        ops.AddIndex(
            model_name='Timer',
            index=Index(fields=['status', 'due_at']),
        ),
    ]
