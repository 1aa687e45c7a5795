"""Silence in both places: the matcher sets never select another incident's alerts (a property test over random
label sets, and the same obligation checked in SQL over alerts stored by real webhooks), and the Alertmanager
silences follow the incident's silence (fake Alertmanager over real HTTP; the real one is in tests/e2e)."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from receiver.app import create_app
from receiver.config import Config, parse_config
from receiver.keys import STORE
from receiver.silences import ALERTNAME, MAX_FIRING, MAX_OTHERS, MatcherPlan, matcher_sets, matches
from receiver.web.users import hash_password
from tests.helpers import alert, free_port, payload

TOKEN = "silence-test-token"
PASSWORD = "correct horse battery"

# Few names and values, so that label sets collide, share and nest often.
_names = st.sampled_from(["instance", "job", "path", "pod", "zone"])
_values = st.sampled_from(["a", "b", "c", ""])
_labels = st.builds(
    lambda name, rest: {ALERTNAME: name, **rest} if name is not None else rest,
    st.sampled_from(["HighLatency", "ErrorRate", "", None]),
    st.dictionaries(_names, _values, max_size=5),
)


def _same(a: Mapping[str, str], b: Mapping[str, str]) -> bool:
    """Equal as Alertmanager sees label sets: a missing label and an empty one are the same."""
    return all(a.get(k, "") == b.get(k, "") for k in {*a, *b})


def _check(plan: MatcherPlan, firing: list[dict[str, str]], others: list[dict[str, str]]) -> None:
    for s in plan.sets:
        names = [k for k, _ in s]
        assert ALERTNAME in names, s
        assert len(names) == len(set(names)), s  # one value per label: never a contradiction
        assert not any(matches(s, o) for o in others), (s, [o for o in others if matches(s, o)])
        assert any(matches(s, m) for m in firing), s  # no set that silences nothing of ours
    for m in firing:
        indistinct = any(_same(m, o) for o in others)
        covered = any(matches(s, m) for s in plan.sets)
        assert covered != indistinct, (m, indistinct, covered)  # covered exactly when it can be told apart
        assert (m in plan.unsafe) == indistinct
    # implied sets are dropped: no set contains another
    for a in plan.sets:
        assert not any(b != a and set(b) <= set(a) for b in plan.sets)


@settings(max_examples=600, deadline=None)
@given(
    st.lists(_labels, min_size=1, max_size=8, unique_by=lambda d: tuple(sorted(d.items()))),
    st.lists(_labels, max_size=12),
)
def test_no_matcher_set_selects_another_incidents_alert(
    firing: list[dict[str, str]], others: list[dict[str, str]]
) -> None:
    plan = matcher_sets(firing, others)
    _check(plan, firing, others)
    assert len(plan.sets) <= len(firing)
    assert matcher_sets(firing, others) == plan  # deterministic


def test_shared_labels_make_one_silence_when_nothing_else_matches() -> None:
    firing = [{ALERTNAME: "HighLatency", "job": "api", "instance": f"i{n}"} for n in range(3)]
    others = [{ALERTNAME: "HighLatency", "job": "db", "instance": "i0"}, {ALERTNAME: "ErrorRate", "job": "api"}]
    assert matcher_sets(firing, others).sets == ((("alertname", "HighLatency"), ("job", "api")),)


def test_members_are_split_by_a_label_before_one_set_each() -> None:
    # job=api and job=web fire here; job=db, same alertname and instances, belongs to another incident
    firing = [{ALERTNAME: "Down", "job": j, "instance": f"i{n}"} for j in ("api", "web") for n in range(4)]
    others = [{ALERTNAME: "Down", "job": "db", "instance": f"i{n}"} for n in range(4)]
    assert matcher_sets(firing, others).sets == (
        (("alertname", "Down"), ("job", "api")),
        (("alertname", "Down"), ("job", "web")),
    )


def test_a_label_the_members_lack_excludes_a_wider_alert() -> None:
    # the other incident's alert carries every label ours does, and one more: only `pod=""` tells them apart
    firing = [{ALERTNAME: "Down", "job": "api"}]
    others = [{ALERTNAME: "Down", "job": "api", "pod": "p1"}]
    assert matcher_sets(firing, others).sets == ((("alertname", "Down"), ("job", "api"), ("pod", "")),)


def test_the_same_label_set_in_another_incident_is_never_silenced() -> None:
    firing = [{ALERTNAME: "Down", "job": "api"}, {ALERTNAME: "Down", "job": "web"}]
    others = [{ALERTNAME: "Down", "job": "api"}]
    plan = matcher_sets(firing, others)
    assert plan.sets == ((("alertname", "Down"), ("job", "web")),)
    assert plan.unsafe == ({ALERTNAME: "Down", "job": "api"},)


def test_every_alertname_gets_its_own_sets() -> None:
    firing = [{ALERTNAME: "Down", "job": "api"}, {ALERTNAME: "Slow", "job": "api"}]
    assert matcher_sets(firing, []).sets == (
        (("alertname", "Down"), ("job", "api")),
        (("alertname", "Slow"), ("job", "api")),
    )


def test_labels_alertmanager_cannot_match_never_narrow_a_silence() -> None:
    # Alertmanager refuses matchers on names like "team-name" (Grafana allows them): only other labels narrow
    firing = [{ALERTNAME: "Down", "team-name": "a", "job": "api"}, {ALERTNAME: "Down", "team-name": "b"}]
    others = [{ALERTNAME: "Down", "team-name": "c", "job": "api"}, {ALERTNAME: "Down", "team-name": "d"}]
    plan = matcher_sets(firing, others)
    assert all(k != "team-name" for s in plan.sets for k, _ in s)
    assert plan.sets == ()
    assert len(plan.unsafe) == 2


# --- the same obligation over stored alerts, checked in SQL ----------------------------------------------------

# Alerts of four incidents, all named Down: the route is the first of handler, endpoint, service present, so 'b'
# and 'd' carry every label of some of 'a''s alerts plus one, and only the labels 'a' lacks tell them apart.
STORED = {
    "a": [{"service": "shop", "job": "api", "instance": f"i{n}"} for n in range(3)]
    + [{"service": "shop", "job": "web", "instance": "i0"}],
    "b": [{"service": "shop", "handler": "/b", "job": "api", "instance": f"i{n}"} for n in range(2)],
    "c": [{"service": "db", "job": "db", "instance": "i0"}],
    "d": [{"service": "shop", "endpoint": "/d", "job": "web", "instance": "i0"}],
}


def _stored_alert(extra: Mapping[str, str]) -> dict[str, Any]:
    a = alert(labels=extra, alertname="Down")
    for name in ("method", "path"):  # the helper's defaults would make the route
        del a["labels"][name]
    return a


# How many stored alerts of incidents other than $1 (active ones) a matcher set ($2: [[name, value], ...])
# selects, by Alertmanager's rule (a missing label is the empty value).
OTHERS_MATCHED = """
SELECT count(*) FROM incident_alerts AS a JOIN incidents AS i ON i.id = a.incident_id
WHERE i.id <> $1 AND i.status <> 'resolved'
  AND NOT EXISTS (SELECT 1 FROM jsonb_array_elements($2::text::jsonb) AS m
                  WHERE coalesce(a.labels ->> (m ->> 0), '') <> m ->> 1)
"""


async def test_stored_alerts_of_other_incidents_match_no_matcher_set(
    aiohttp_client: Any, database_url: str, db: Any
) -> None:
    client = await aiohttp_client(create_app(parse_config("", env={}), database_url, loops=False))
    alerts = [_stored_alert(extra) for xs in STORED.values() for extra in xs]
    resp = await client.post("/webhook", json=payload(*alerts))
    assert resp.status == 200, await resp.text()
    routes = {"shop": "a", "/b": "b", "db": "c", "/d": "d"}
    incidents = {routes[r["route"]]: r["id"] for r in await db.fetch("SELECT id, route FROM incidents")}
    assert sorted(incidents) == ["a", "b", "c", "d"]
    store = client.app[STORE]
    for kind, incident_id in incidents.items():
        firing, others = await store.silence_label_sets(incident_id, max_firing=MAX_FIRING, max_others=MAX_OTHERS)
        assert len(firing) == len(STORED[kind])
        assert len(others) == len(alerts) - len(STORED[kind])
        plan = matcher_sets(firing, others)
        assert plan.sets, kind
        for matcher_set in plan.sets:
            assert await db.fetchval(OTHERS_MATCHED, incident_id, json.dumps(matcher_set)) == 0, (kind, matcher_set)
        # and every one of the incident's own alerts is covered (none shares a label set with another's)
        assert not plan.unsafe
        assert all(any(matches(s, m) for s in plan.sets) for m in firing)
    firing, others = await store.silence_label_sets(incidents["a"], max_firing=MAX_FIRING, max_others=MAX_OTHERS)
    # 'b' and 'd' match every label 'a''s alerts share: the labels 'a' lacks exclude them
    assert matcher_sets(firing, others).sets == (
        (("alertname", "Down"), ("endpoint", ""), ("handler", ""), ("service", "shop")),
    )


# --- Alertmanager down: the local silence still happens --------------------------------------------------------


def _config(urls: list[str], **top: Any) -> Config:
    doc = {
        "external_url": "https://receiver.example.com",
        "api_tokens": [{"name": "alice", "token_env": "T"}],
        "ui": {"users": [{"name": "alice", "password_hash": hash_password(PASSWORD)}]},
        "alertmanager": {"urls": urls, "receiver": "incidents", "timeout": "2s", "silences": True},
        **top,
    }
    return parse_config(json.dumps(doc), env={"T": TOKEN})


AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.mark.timeout(60)
async def test_with_alertmanager_down_the_local_silence_happens_and_the_timeline_says_why(
    aiohttp_client: Any, database_url: str, db: Any
) -> None:
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens: connections are refused
    client = await aiohttp_client(create_app(_config([dead]), database_url, loops=False))
    resp = await client.post("/webhook", json=payload(alert(instance="i1")))
    incident_id = (await resp.json())["incidents"][0]["id"]
    resp = await client.post(
        f"/api/incidents/{incident_id}/silence", headers=AUTH, json={"reason": "deploy of shop", "duration": "1h"}
    )
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["status"] == "silenced"
    rows = await db.fetch(
        "SELECT type, actor, detail FROM incident_events WHERE incident_id = $1 ORDER BY id", uuid.UUID(incident_id)
    )
    types = [r["type"] for r in rows]
    assert types[-2:] == ["silenced", "alertmanager_silence_failed"], types
    failed = rows[-1]
    assert failed["actor"] == "alice"
    assert failed["detail"]["reason"].startswith(f"{dead}: ClientConnectorError"), failed["detail"]
    assert TOKEN not in json.dumps(failed["detail"])
    assert await db.fetchval("SELECT count(*) FROM alertmanager_silences") == 0
    metrics = await (await client.get("/metrics")).text()
    assert 'receiver_alertmanager_silences_total{outcome="create_failed"} 1.0' in metrics
    # the page says it failed and offers to try again, in a CSRF-protected form
    basic = {"Authorization": "Basic " + __import__("base64").b64encode(f"alice:{PASSWORD}".encode()).decode()}
    html = await (await client.get(f"/incidents/{incident_id}", headers=basic)).text()
    assert "The Alertmanager silence failed" in html
    assert re.search(
        rf'<form method="post" action="/incidents/{incident_id}/alertmanager-silence"[^>]*>'
        r'<input type="hidden" name="csrf" value="[0-9a-f]+">',
        html,
    ), html
    # a retry without the page's token is refused, and does nothing
    resp = await client.post(
        f"/incidents/{incident_id}/alertmanager-silence",
        data={"csrf": "0" * 64},
        headers={**basic, "Origin": f"http://{client.host}:{client.port}"},
        allow_redirects=False,
    )
    assert resp.status == 403
    assert await db.fetchval("SELECT count(*) FROM incident_events WHERE type = 'alertmanager_silence_failed'") == 1
    # unsilencing with nothing to expire in Alertmanager just unsilences
    resp = await client.post(f"/api/incidents/{incident_id}/unsilence", headers=AUTH)
    assert (await resp.json())["status"] == "open"
