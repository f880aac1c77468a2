"""The staging loader on both backends: inserted / updated / unchanged, and values that
``COPY``'s text format must escape (backslashes, tabs, line breaks, its ``\\N`` null marker)."""

import json
from datetime import UTC, datetime

import sqlalchemy as sa

from etl_assets.warehouse import StagingLoader, prepare_page

AWKWARD = [
    {"id": "a\\b", "name": "back\\slash"},
    {"id": "tab\tkey", "name": "line\nbreak\r\n"},
    {"id": "\\N", "name": "\\N"},
    {"id": "\\.", "name": "end \\. marker"},
    {"id": "Ünïcødé ✓", "name": "名前 \u2028 \"quoted\""},
    {"id": 12345678901234567890123, "name": None},
]


def load(warehouse, records, run_id=1):
    warehouse.store.ensure_schema()
    loader = StagingLoader(warehouse.engine, "stg_items", warehouse.schema)
    loader.ensure_table()
    page = prepare_page(records, extract="items", primary_key=("id",), skip=0)
    with warehouse.engine.begin() as conn:
        return loader.write(conn, page, run_id=run_id, now=datetime(2026, 12, 4, tzinfo=UTC))


def stored(warehouse):
    with warehouse.engine.connect() as conn:
        rows = conn.execute(sa.text(f"SELECT record_key, record, etl_run_id FROM {warehouse.table('stg_items')}"))
        return {key: (json.loads(rec) if isinstance(rec, str) else rec, run) for key, rec, run in rows}


def test_awkward_keys_and_values_round_trip(warehouse):
    write = load(warehouse, AWKWARD)
    assert (write.inserted, write.updated, write.unchanged) == (6, 0, 0)
    rows = stored(warehouse)
    assert sorted(rows) == sorted(str(r["id"]) for r in AWKWARD)
    for record in AWKWARD:
        assert rows[str(record["id"])] == (record, 1)


def test_unchanged_rows_are_not_rewritten_and_changes_are_counted(warehouse):
    load(warehouse, AWKWARD, run_id=1)
    again = load(warehouse, AWKWARD, run_id=2)
    assert (again.inserted, again.updated, again.unchanged) == (0, 0, 6)
    assert {run for _, run in stored(warehouse).values()} == {1}
    changed = [dict(r) for r in AWKWARD]
    changed[2]["name"] = "now different"
    changed.append({"id": 7, "name": "new"})
    third = load(warehouse, changed, run_id=3)
    assert (third.inserted, third.updated, third.unchanged) == (1, 1, 5)
    rows = stored(warehouse)
    assert rows["\\N"] == ({"id": "\\N", "name": "now different"}, 3)
    assert rows["7"] == ({"id": 7, "name": "new"}, 3)
    assert rows["a\\b"][1] == 1
