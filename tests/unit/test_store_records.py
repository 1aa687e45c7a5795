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
        2: [*record_keys(records.changes), "last_at"],  # set only in a record that folds duplicates
        3: [*record_keys(records.members), "last_at", "receives"],
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
    lists = [store._plan_lists(p, NOW + timedelta(seconds=i), frozenset()) for i, p in enumerate(plans)]
    keys = [{"k1"}, {"k2"}, {"k3"}, {"k4"}, {"k1"}]
    statements = store._apply_statements(plans, lists, keys)
    # [a, b] | [b (same incident as before), a] | [a (same incident)]
    assert [len(json.loads(s[3])) for s in statements] == [2, 2, 1]
    assert [e["at"] for s in statements for e in json.loads(s[3])] == [
        (NOW + timedelta(seconds=i)).isoformat() for i in range(5)
    ]
    # a shared key splits too, even when the incidents differ
    split_by_key = store._apply_statements(plans[:2], lists[:2], [{"k1"}, {"k1"}])
    assert [len(json.loads(s[3])) for s in split_by_key] == [1, 1]
    assert all(s[0] == "[]" and json.loads(s[2]) == [] for s in statements)


def test_duplicates_fold_into_the_records_of_the_rows_they_refresh() -> None:
    """A later plan that only refreshes rows the statement already writes (an HA peer's duplicate) is taken
    into their records, in the query's columns: later values, the first time, the last time, the receives."""
    inc, other = uuid.uuid4(), uuid.uuid4()

    def duplicate(incident_id: uuid.UUID, fingerprint: str, summary: str) -> correlation.Plan:
        a = Alert(0, fingerprint, "firing", {"alertname": "A"}, {"summary": summary}, NOW, None, "")
        change = correlation.IncidentChange(incident_id, "warning", "open", {"alerts_received": summary}, 0)
        return correlation.Plan(
            changes={incident_id: change}, members=[correlation.MemberWrite(incident_id, a, "firing", None)]
        )

    plans = [duplicate(inc, "f1", "1"), duplicate(inc, "f1", "2"), duplicate(inc, "f2", "3"), duplicate(inc, "f1", "4")]
    sources = ["am/a", "am/b", None, None]
    lists = [
        store._plan_lists(p, NOW + timedelta(seconds=i), frozenset(), src)
        for i, (p, src) in enumerate(zip(plans, sources, strict=True))
    ]
    [statement] = store._apply_statements(plans, lists, [{"k"}] * 4)
    at = [(NOW + timedelta(seconds=i)).isoformat() for i in range(4)]
    members = json.loads(statement[2])
    assert [
        (m["fingerprint"], m["annotations"], m["at"], m.get("last_at"), m.get("receives"), m["source"]) for m in members
    ] == [
        ("f1", {"summary": "4"}, at[0], at[3], 3, "am/b"),  # the last source that named one
        ("f2", {"summary": "3"}, at[2], None, None, None),
    ]
    assert sorted(members[0]) == sorted(recordset_columns("apply_ingest")[3])
    [change] = json.loads(statement[1])
    assert (change["metadata"], change["at"], change["last_at"]) == ({"alerts_received": "4"}, at[0], at[3])
    assert sorted(change) == sorted(recordset_columns("apply_ingest")[2])

    # what changes more than values is never folded: an event, a flag, a row this statement inserts
    fired = duplicate(inc, "f1", "5")
    fired.events.append(correlation.Event(inc, "alert_fired", {}))
    rearmed = duplicate(inc, "f1", "6")
    rearmed.changes[inc].rearm = True
    opened = correlation.Plan(
        new_incidents=[correlation.NewIncident(other, "k2", "r", "latency", "warning", {}, "default", {})]
    )
    into_new = duplicate(other, "f9", "7")
    for later, first in ((fired, plans[0]), (rearmed, plans[0]), (into_new, opened)):
        pair = [first, later]
        pair_lists = [store._plan_lists(p, NOW, frozenset()) for p in pair]
        assert len(store._apply_statements(pair, pair_lists, [{"k", "k2"}] * 2)) == 2


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
