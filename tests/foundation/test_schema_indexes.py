"""After all migrations, every index the models declare exists in the database.

Tortoise's SQLite AlterField rebuilds a table and can leave its other indexes behind; a missing
index fails no query, it only makes one slow. So compare what the models ask for with what the
migrated database has.
"""

from __future__ import annotations

import pytest
from tortoise import Tortoise, connections

from tests.conftest import PG_URL

pytestmark = pytest.mark.skipif(bool(PG_URL), reason="reads SQLite's catalogue")


def _declared() -> set[tuple[str, tuple[str, ...]]]:
    wanted: set[tuple[str, tuple[str, ...]]] = set()
    for model in Tortoise.apps["models"].values():
        meta = model._meta
        for name in meta.db_fields:
            field = meta.fields_map[name]
            if field.pk:  # the table's own key, not an index of its own (INTEGER PRIMARY KEY)
                continue
            if getattr(field, "index", False) or getattr(field, "db_index", False):
                wanted.add((meta.db_table, (meta.fields_db_projection[name],)))
        for index in meta.indexes:
            names = index.fields if hasattr(index, "fields") else index
            wanted.add((meta.db_table, tuple(meta.fields_db_projection.get(n, n) for n in names)))
    return wanted


async def test_every_declared_index_exists(db) -> None:
    conn = connections.get("default")
    _, tables = await conn.execute_query("SELECT name FROM sqlite_master WHERE type = 'table'")
    have: set[tuple[str, tuple[str, ...]]] = set()
    for (table,) in [tuple(t) for t in tables]:
        _, indexes = await conn.execute_query(f'PRAGMA index_list("{table}")')
        for index in indexes:
            _, cols = await conn.execute_query(f'PRAGMA index_info("{index[1]}")')
            have.add((table, tuple(c[2] for c in cols)))
    declared = _declared()
    assert declared, "no indexes declared at all?"
    assert declared <= have, sorted(declared - have)
