from tortoise import migrations
from tortoise.migrations import operations as ops

# Platform API calls per budget month (DingTalk: 10,000 non-exempt calls a month on a standard
# org). Plain SQL, no model: only storage/usage.py reads and writes it, with hand-written upserts
# that SQLite (>= 3.35, RETURNING) and PostgreSQL both run.


class Migration(migrations.Migration):
    # The lead re-chains this after the other branches' migrations at merge.
    dependencies = [('models', '0012_fallback_uploads')]

    initial = False

    operations = [
        ops.RunSQL(
            "CREATE TABLE IF NOT EXISTS platform_usage ("
            " platform VARCHAR(32) NOT NULL,"
            " month VARCHAR(7) NOT NULL,"
            " calls INT NOT NULL DEFAULT 0,"
            " quota INT NOT NULL DEFAULT 0,"
            " warned BOOLEAN NOT NULL DEFAULT FALSE,"
            " PRIMARY KEY (platform, month))",
            reverse_sql="DROP TABLE IF EXISTS platform_usage",
        ),
    ]
