from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise import fields

class Migration(migrations.Migration):
    dependencies = [('models', '0003_employee_roles_index')]

    initial = False

    operations = [
        ops.AddField(
            model_name='Case',
            name='questions',
            field=fields.JSONField(null=True),
        ),
    ]
