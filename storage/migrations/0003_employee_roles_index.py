from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise.indexes import Index

class Migration(migrations.Migration):
    dependencies = [('models', '0002_queue_indexes')]

    initial = False

    operations = [
        ops.AddIndex(
            model_name='Employee',
            index=Index(fields=['roles']),
        ),
    ]
