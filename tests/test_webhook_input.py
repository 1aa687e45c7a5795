"""POST /webhook on a real PostgreSQL: bad input answers 4xx with a JSON reason and writes nothing;
authentication; partial payloads; hostile label values; a 1,000-alert group."""

from __future__ import annotations

import base64
import json
import random
from typing import Any

import pytest

from receiver.config import parse_config
from tests.helpers import alert, alert_with, alert_without, payload

TABLES = ("incidents", "incident_alerts", "incident_events")


async def counts(db: Any) -> dict[str, int]:
    return {t: await db.fetchval(f"SELECT count(*) FROM {t}") for t in TABLES}


async def assert_nothing_written(db: Any) -> None:
    assert await counts(db) == dict.fromkeys(TABLES, 0)


async def post_raw(client: Any, body: bytes, **headers: str) -> Any:
    return await client.post("/webhook", data=body, headers={"Content-Type": "application/json", **headers})


async def error_of(resp: Any) -> str:
    assert resp.content_type == "application/json"
    data = await resp.json()
    assert isinstance(data.get("error"), str) and data["error"]
    return data["error"]


BAD_BODIES = [
    pytest.param(b'{"version": "4", "alerts": [', "not valid JSON", id="truncated-json"),
    pytest.param(b"", "not valid JSON", id="empty-body"),
    pytest.param(b"alerts=1", "not valid JSON", id="form-body"),
    pytest.param(b'{"version": "4", "alerts": [], "receiver": "\xff"}', "UTF-8", id="invalid-utf8"),
    pytest.param(b"[" * 100_000, "nested too deeply", id="deeply-nested"),
    pytest.param(b"[]", "expected a JSON object", id="not-an-object"),
    pytest.param(json.dumps(payload(alert(), version="3")).encode(), "unsupported", id="wrong-version"),
    pytest.param(json.dumps(payload(alert(), version=4)).encode(), "unsupported", id="numeric-version"),
    pytest.param(
        json.dumps({k: v for k, v in payload(alert()).items() if k != "version"}).encode(),
        'missing "version"',
        id="missing-version",
    ),
    pytest.param(
        json.dumps({**payload(), "alerts": {"a": alert()}}).encode(), '"alerts" must be a list', id="alerts-object"
    ),
    pytest.param(json.dumps({**payload(), "alerts": "x"}).encode(), '"alerts" must be a list', id="alerts-string"),
    pytest.param(json.dumps(payload(alert(), truncatedAlerts="0")).encode(), "truncatedAlerts", id="wrong-type"),
    pytest.param(json.dumps(payload(alert(), commonLabels={"a": 1})).encode(), "commonLabels", id="label-type"),
    pytest.param(
        json.dumps(payload(alert_without("labels"), status="firing")).encode(),
        '"labels" is required',
        id="missing-labels",
    ),
    pytest.param(
        json.dumps(payload(alert_without("startsAt"), status="firing")).encode(), "startsAt", id="missing-startsAt"
    ),
    pytest.param(
        json.dumps(payload(alert_without("status"), status="firing")).encode(), '"status" must be', id="missing-status"
    ),
    pytest.param(
        json.dumps(payload(alert_with("labels", {"alertname": 1}))).encode(),
        '"labels" must be an object',
        id="label-value-not-string",
    ),
    pytest.param(
        json.dumps(payload(alert_with("startsAt", "2026-13-45T00:00:00Z"))).encode(), "startsAt", id="bad-startsAt"
    ),
]


@pytest.mark.parametrize(("body", "reason"), BAD_BODIES)
async def test_bad_input_is_400_with_a_reason_and_writes_nothing(
    client: Any, db: Any, body: bytes, reason: str
) -> None:
    resp = await post_raw(client, body)
    assert resp.status == 400
    assert reason in await error_of(resp)
    await assert_nothing_written(db)


async def test_the_only_alert_invalid_names_it(client: Any, db: Any) -> None:
    resp = await client.post("/webhook", json=payload(alert_without("labels"), status="firing"))
    assert resp.status == 400
    error = await error_of(resp)
    assert error.startswith("no valid alert in the payload")
    assert "alerts[0]" in error
    await assert_nothing_written(db)


async def test_a_body_over_the_limit_is_413(make_client: Any, db: Any) -> None:
    client = await make_client(parse_config("webhook:\n  max_body_bytes: 1000\n", env={}))
    big = payload(*[alert(path=f"/p/{i}") for i in range(10)])
    body = json.dumps(big).encode()
    assert len(body) > 1000
    resp = await post_raw(client, body)
    assert resp.status == 413
    assert await error_of(resp)
    await assert_nothing_written(db)
    # under the limit is fine
    small = json.dumps(payload(alert(annotations={}))).encode()
    assert len(small) <= 1000
    ok = await post_raw(client, small)
    assert ok.status == 200
    assert (await counts(db))["incidents"] == 1


# --- authentication ---------------------------------------------------------------------------------

TOKEN_CONFIG = "webhook:\n  token_env: T\n"


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({}, id="no-header"),
        pytest.param({"Authorization": "Bearer wrong"}, id="wrong-token"),
        pytest.param({"Authorization": "Bearer tok2"}, id="longer-token"),
        pytest.param({"Authorization": "Bearer to"}, id="prefix-token"),
        pytest.param({"Authorization": "Bearer "}, id="empty-token"),
        pytest.param({"Authorization": "tok"}, id="no-scheme"),
        pytest.param({"Authorization": "Token tok"}, id="other-scheme"),
        pytest.param({"Authorization": "Basic " + base64.b64encode(b"x:tok").decode()}, id="basic-not-configured"),
    ],
)
async def test_a_token_is_required(make_client: Any, db: Any, headers: dict[str, str]) -> None:
    client = await make_client(parse_config(TOKEN_CONFIG, env={"T": "tok"}))
    resp = await client.post("/webhook", json=payload(alert()), headers=headers)
    assert resp.status == 401
    assert await error_of(resp)
    assert resp.headers.get("WWW-Authenticate", "").startswith("Bearer")
    await assert_nothing_written(db)


async def test_the_right_bearer_token_is_accepted(make_client: Any, db: Any) -> None:
    client = await make_client(parse_config(TOKEN_CONFIG, env={"T": "tok"}))
    resp = await client.post("/webhook", json=payload(alert()), headers={"Authorization": "Bearer tok"})
    assert resp.status == 200, await resp.text()
    assert (await counts(db))["incidents"] == 1


async def test_receiver_webhook_token_env_requires_a_token(make_client: Any, db: Any) -> None:
    client = await make_client(parse_config("", env={"RECEIVER_WEBHOOK_TOKEN": "envtok"}))
    assert (await client.post("/webhook", json=payload(alert()))).status == 401
    resp = await client.post("/webhook", json=payload(alert()), headers={"Authorization": "Bearer envtok"})
    assert resp.status == 200


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


BASIC_CONFIG = "webhook:\n  basic_auth:\n    username: am\n    password_env: P\n"


async def test_basic_credentials_are_accepted(make_client: Any, db: Any) -> None:
    client = await make_client(parse_config(BASIC_CONFIG, env={"P": "s3cret:with colon"}))
    resp = await client.post("/webhook", json=payload(alert()), headers=basic("am", "s3cret:with colon"))
    assert resp.status == 200, await resp.text()
    assert (await counts(db))["incidents"] == 1


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({}, id="no-header"),
        pytest.param(basic("am", "wrong"), id="wrong-password"),
        pytest.param(basic("root", "pw"), id="wrong-user"),
        pytest.param(basic("am", ""), id="empty-password"),
        pytest.param({"Authorization": "Basic !!notbase64!!"}, id="not-base64"),
        pytest.param({"Authorization": "Basic " + base64.b64encode(b"ampw").decode()}, id="no-colon"),
        pytest.param({"Authorization": "Bearer pw"}, id="bearer-not-configured"),
    ],
)
async def test_wrong_basic_credentials_are_401(make_client: Any, db: Any, headers: dict[str, str]) -> None:
    client = await make_client(parse_config(BASIC_CONFIG, env={"P": "pw"}))
    resp = await client.post("/webhook", json=payload(alert()), headers=headers)
    assert resp.status == 401
    await assert_nothing_written(db)


async def test_token_and_basic_together_accept_either(make_client: Any, db: Any) -> None:
    config = parse_config(
        TOKEN_CONFIG + "  basic_auth:\n    username: am\n    password_env: P\n", env={"T": "tok", "P": "pw"}
    )
    client = await make_client(config)
    assert (await client.post("/webhook", json=payload(alert()), headers={"Authorization": "Bearer tok"})).status == 200
    assert (await client.post("/webhook", json=payload(alert()), headers=basic("am", "pw"))).status == 200
    assert (await client.post("/webhook", json=payload(alert()), headers=basic("am", "tok"))).status == 401


# --- partial payloads ---------------------------------------------------------------------------------


async def test_valid_alerts_are_stored_and_invalid_ones_named(client: Any, db: Any) -> None:
    bad = alert_without("startsAt")
    bad["fingerprint"] = "bad-fp"
    resp = await client.post("/webhook", json=payload(alert(), bad))
    assert resp.status == 200, await resp.text()
    data = await resp.json()
    assert data["invalid"] == [{"index": 1, "fingerprint": "bad-fp", "reason": data["invalid"][0]["reason"]}]
    assert "startsAt" in data["invalid"][0]["reason"]
    assert data["alerts"]["invalid"] == 1
    assert data["alerts"]["received"] == 2
    assert [i["action"] for i in data["incidents"]] == ["opened"]
    rows = await db.fetch("SELECT fingerprint, labels FROM incident_alerts")
    assert [r["fingerprint"] for r in rows] == [alert()["fingerprint"]]
    assert await db.fetchval("SELECT incident_key FROM incidents") == "GET /notifications/recent::latency"


# --- hostile label values ------------------------------------------------------------------------------


async def stored_labels(db: Any) -> list[dict[str, str]]:
    return [r["labels"] for r in await db.fetch("SELECT labels FROM incident_alerts ORDER BY fingerprint")]


async def test_nul_bytes_are_stored_replaced(client: Any, db: Any) -> None:
    a = alert(annotations={"summary": "nul\x00inside", "k\x00": "v"}, note="a\x00b", fingerprint="fp-nul")
    a["labels"]["key\x00"] = "v"
    resp = await client.post("/webhook", json=payload(a))
    assert resp.status == 200, await resp.text()
    [labels] = await stored_labels(db)
    assert labels["note"] == "a\ufffdb"
    assert labels["key\ufffd"] == "v"
    annotations = await db.fetchval("SELECT annotations FROM incident_alerts")
    assert annotations["summary"] == "nul\ufffdinside"
    assert await db.fetchval("SELECT count(*) FROM incident_events") >= 1


async def test_nul_bytes_in_route_and_kind(client: Any, db: Any) -> None:
    resp = await client.post("/webhook", json=payload(alert(path="/a\x00b", kind="k\x00")))
    assert resp.status == 200, await resp.text()
    assert await db.fetchval("SELECT incident_key FROM incidents") == "GET /a\ufffdb::k\ufffd"


async def test_lone_surrogates_are_stored_replaced(client: Any, db: Any) -> None:
    raw = json.dumps(payload(alert(path="/x\ud800", note="\udfff"))).encode("ascii")
    resp = await post_raw(client, raw)
    assert resp.status == 200, await resp.text()
    [labels] = await stored_labels(db)
    assert labels["path"].startswith("/x") and "\ud800" not in labels["path"]


async def test_huge_values_are_stored(client: Any, db: Any) -> None:
    huge = "v" * 5000
    a = alert(path="/" + "p" * 5000, kind="k" * 5000, note=huge, annotations={"description": "d" * 5000})
    resp = await client.post("/webhook", json=payload(a))
    assert resp.status == 200, await resp.text()
    [labels] = await stored_labels(db)
    assert labels["note"] == huge  # the alert keeps the full value
    assert labels["path"] == "/" + "p" * 5000
    key = await db.fetchval("SELECT incident_key FROM incidents")
    assert len(key) <= 802
    assert key.startswith("GET /ppp")


async def test_distinct_huge_values_stay_distinct_incidents(client: Any, db: Any) -> None:
    base = "/" + "p" * 5000
    resp = await client.post("/webhook", json=payload(alert(path=base + "1"), alert(path=base + "2")))
    assert resp.status == 200, await resp.text()
    assert await db.fetchval("SELECT count(DISTINCT incident_key) FROM incidents") == 2


async def test_huge_incompressible_multibyte_values_are_stored(client: Any, db: Any) -> None:
    # Random 4-byte characters do not compress: a key cut at 400 *characters* would be ~3 kB and overflow
    # PostgreSQL's btree entry limit (a 503, retried forever by Alertmanager).
    rnd = random.Random(7)
    path = "".join(chr(rnd.randrange(0x20000, 0x2A6DF)) for _ in range(5000))
    kind = "".join(chr(rnd.randrange(0x20000, 0x2A6DF)) for _ in range(5000))
    resp = await client.post("/webhook", json=payload(alert(path=path, kind=kind)))
    assert resp.status == 200, await resp.text()
    [labels] = await stored_labels(db)
    assert labels["path"] == path
    key = await db.fetchval("SELECT incident_key FROM incidents")
    assert len(key.encode()) <= 802


async def test_right_to_left_and_odd_unicode_is_stored(client: Any, db: Any) -> None:
    rtl = "\u202eמסלול/الطريق\u202c"
    odd = "e\u0301 \u200b\ufeff 😀 \U0010ffff \u2028"
    resp = await client.post("/webhook", json=payload(alert(path=rtl, service=odd, annotations={"summary": odd})))
    assert resp.status == 200, await resp.text()
    [labels] = await stored_labels(db)
    assert labels["path"] == rtl
    assert labels["service"] == odd
    assert await db.fetchval("SELECT route FROM incidents") == f"GET {rtl}"


async def test_two_thousand_labels_are_stored(client: Any, db: Any) -> None:
    a = alert()
    a["labels"].update({f"label_{i:04d}": f"value {i}" for i in range(2000)})
    resp = await client.post("/webhook", json=payload(a))
    assert resp.status == 200, await resp.text()
    [labels] = await stored_labels(db)
    assert len(labels) == 2003
    assert labels["label_1999"] == "value 1999"


# --- the default limit fits a large group -----------------------------------------------------------------


async def test_a_thousand_alert_group_is_accepted(client: Any, db: Any) -> None:
    alerts = [
        alert(
            path=f"/api/items/{i % 50}",
            instance=f"10.0.{i // 250}.{i % 250}:8080",
            job="api",
            namespace="production",
            pod=f"api-{i:04d}-7f9c6b5d4-x2x9z",
            severity="critical" if i % 7 == 0 else "warning",
            annotations={
                "summary": f"p99 latency is high on {i}",
                "description": "d" * 400,
                "runbook_url": "https://runbooks.example/latency",
            },
        )
        for i in range(1000)
    ]
    body = json.dumps(payload(*alerts)).encode()
    assert len(body) > 900_000  # a realistic group, not a toy
    resp = await post_raw(client, body)
    assert resp.status == 200, await resp.text()
    data = await resp.json()
    assert data["alerts"]["received"] == 1000 and data["invalid"] == []
    assert await db.fetchval("SELECT count(*) FROM incident_alerts") == 1000
    assert await db.fetchval("SELECT count(*) FROM incidents") == 50
