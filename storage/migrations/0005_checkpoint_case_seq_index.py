from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise.indexes import Index

class Migration(migrations.Migration):
    # The lead re-chains this after the other branches' migrations at merge.
    dependencies = [('models', '0004_case_questions')]

    initial = False

    operations = [
        ops.AddIndex(
            model_name='Checkpoint',
            index=Index(fields=['case_id', 'seq']),
        ),
    ]
