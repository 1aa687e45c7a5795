"""The store's writes name every column twice, in SQL and in Python: these tests hold the two lists together.

`jsonb_to_recordset` reads a record's fields by name and gives NULL for a name it does not find, so a field
spelt differently on the two sides would be written as NULL without an error. For every JSON record set a
write sends, the fields the store builds must be exactly the columns the query's definition list names.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import fields
from datetime import UTC, datetime, timedelta
from typing import Any

from receiver import correlation, store
from receiver.model import Alert, Escalation, Lifecycle, Target

NOW = datetime(2026, 11, 27, 11, 0, tzinfo=UTC)
# jsonb_to_record[set]($N::text::jsonb) AS alias(column type, ...), or ROWS FROM (... AS (column type, ...))
_RECORDSET = re.compile(r"jsonb_to_record(?:set)?\(\$(\d+)::text::jsonb\)\s+AS\s+\w*\s*\(([^)]*)\)")


def recordset_columns(query: str) -> dict[int, list[str]]:
    """Parameter number -> the column names its JSON record set defines in the named query."""
    found = {int(n): [c.split()[0] for c in cols.split(",")] for n, cols in _RECORDSET.findall(store.QUERIES[query])}
    assert found, f"{query} reads no JSON record set"
    return found


def record_keys(encoded: str) -> list[str]:
    records = json.loads(encoded)
    assert records, "an empty record set checks nothing"
    keys = [list(r) for r in records]
    assert all(k == keys[0] for k in keys)
    return keys[0]


def test_apply_ingest_records_are_the_querys_columns() -> None:
    incident_id = uuid.uuid4()
    alert = Alert(
        index=0,
        fingerprint="f1",
        status="resolved",
        labels={"a": "b"},
        annotations={},
        starts_at=NOW - timedelta(minutes=5),
        ends_at=NOW,
        generator_url="",
    )
    plan = correlation.Plan(
        new_incidents=[
            correlation.NewIncident(
                incident_id,
                "GET /x::latency",
                "GET /x",
                "latency",
                "warning",
                {"name": "default", "targets": []},
                "default",
                {},
            )
        ],
        changes={incident_id: correlation.IncidentChange(incident_id, "critical", "resolved", {}, 1, resolved=True)},
        members=[correlation.MemberWrite(incident_id, alert, "resolved", NOW)],
        events=[correlation.Event(incident_id, "resolved", {"reason": "all alerts resolved"})],
    )
    records = store._plan_records(plan, NOW, frozenset({"critical"}))
    columns = recordset_columns("apply_ingest")
    assert columns == {
        1: record_keys(records.new_incidents),
        2: record_keys(records.changes),
        3: record_keys(records.members),
        4: record_keys(records.events),
        5: record_keys(records.resolve_notices),
    }
    assert json.loads(records.resolve_notices) == [{"id": str(incident_id), "at": NOW.isoformat()}]
    assert "$6" not in store.QUERIES["apply_ingest"]


def test_plans_share_a_statement_only_when_they_write_disjoint_rows() -> None:
    """Consecutive plans go in one statement unless one shares an incident key or an incident with a plan
    before it in that statement (the statement's CTEs would not see each other's rows)."""
    a, b = uuid.uuid4(), uuid.uuid4()

    def plan(incident_id: uuid.UUID) -> correlation.Plan:
        return correlation.Plan(events=[correlation.Event(incident_id, "alert_fired", {})])

    plans = [plan(a), plan(b), plan(b), plan(a), plan(a)]
    records = [store._plan_records(p, NOW + timedelta(seconds=i), frozenset()) for i, p in enumerate(plans)]
    keys = [{"k1"}, {"k2"}, {"k3"}, {"k4"}, {"k1"}]
    statements = store._apply_statements(plans, records, keys)
    # [a, b] | [b (same incident as before), a] | [a (same incident)]
    assert [len(json.loads(s[3])) for s in statements] == [2, 2, 1]
    assert [e["at"] for s in statements for e in json.loads(s[3])] == [
        (NOW + timedelta(seconds=i)).isoformat() for i in range(5)
    ]
    # a shared key splits too, even when the incidents differ
    split_by_key = store._apply_statements(plans[:2], records[:2], [{"k1"}, {"k1"}])
    assert [len(json.loads(s[3])) for s in split_by_key] == [1, 1]
    assert all(s[0] == "[]" and json.loads(s[2]) == [] for s in statements)


def test_apply_escalations_records_are_the_querys_columns() -> None:
    target = Target("default/slack", "slack", "https://hooks.example/secret")
    plans = [
        Escalation(
            incident_id=uuid.uuid4(), from_level=0, level=2, next_at=NOW, notification_key="c1:l2", targets=(target,)
        )
    ]
    levels, outbox, events = store._escalation_records(plans)
    assert recordset_columns("apply_escalations") == {
        2: record_keys(levels),
        3: record_keys(outbox),
        4: record_keys(events),
    }
    assert json.loads(events)[0]["detail"] == {
        "from_level": 0,
        "to_level": 2,
        "targets": ["default/slack"],
        "skipped_levels": 1,
    }
    assert "secret" not in repr(target)  # a target's URL never shows in a repr (logs)


def test_update_lifecycle_record_is_the_querys_columns() -> None:
    values: dict[str, Any] = {f.name: None for f in fields(Lifecycle)}
    state = Lifecycle(**values | {"status": "acknowledged", "acknowledged_at": NOW})
    record = store._json_record(state)
    assert recordset_columns("update_lifecycle") == {2: list(record)}
    assert record["acknowledged_at"] == NOW.isoformat()  # times go as ISO 8601, which PostgreSQL parses exactly


def test_the_check_can_fail() -> None:
    """A field spelt differently on one side is caught: the parser sees the query's own names."""
    renamed = store.QUERIES["apply_escalations"].replace("notification_key text", "notification text")
    names = {int(n): [c.split()[0] for c in cols.split(",")] for n, cols in _RECORDSET.findall(renamed)}
    _, outbox, _ = store._escalation_records(
        [Escalation(uuid.uuid4(), 0, 0, None, "c1:l0", (Target("t", "slack", "u"),))]
    )
    assert names[3] != record_keys(outbox)
