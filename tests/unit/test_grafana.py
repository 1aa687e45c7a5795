"""The Grafana webhook parser (receiver.ingest.grafana) on the recorded payloads and on hostile input: pure, no I/O."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from receiver.ingest import SENDER_PATHS, SENDERS, PayloadError, sender_for_path
from receiver.ingest import alertmanager as am
from receiver.ingest.grafana import GRAFANA, MAX_LINK, MAX_VALUE_TEXT, parse_body
from receiver.model import Notification
from tests.conftest import DATA

LINKS = DATA / "grafana-11-firing-links.json"


def recorded(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((DATA / name).read_text())
    return data


def parse(data: Any) -> Notification:
    return parse_body(json.dumps(data).encode())


def with_alert(**fields: Any) -> dict[str, Any]:
    """The recorded payload with links, its one alert's fields replaced (None removes a field)."""
    data = recorded(LINKS.name)
    for name, value in fields.items():
        if value is None:
            data["alerts"][0].pop(name, None)
        else:
            data["alerts"][0][name] = value
    return data


# --- the recorded payloads ------------------------------------------------------------------------------


def test_every_recorded_payload_parses_without_an_invalid_alert() -> None:
    files = sorted(DATA.glob("grafana-*.json"))
    assert len(files) >= 4
    for path in files:
        n = parse_body(path.read_bytes())
        assert n.sender == "grafana", path.name
        assert n.alerts and not n.invalid, path.name
        assert n.external_url == "", path.name  # Grafana's root URL never builds Alertmanager links
        assert n.details["external_url"].startswith("https://grafana.example/"), path.name


def test_links_values_and_details_of_a_grafana_11_alert() -> None:
    n = parse_body(LINKS.read_bytes())
    (a,) = n.alerts
    assert a.status == "firing" and a.index == 0
    assert a.fingerprint == "e6349a25f5ef0e9e"
    assert a.labels == {
        "alertname": "HighLatency",
        "grafana_folder": "api",
        "method": "GET",
        "path": "/api/items/{id}",
        "severity": "critical",
    }
    assert a.starts_at == datetime(2026, 11, 27, 21, 48, tzinfo=UTC) and a.ends_at is None
    assert a.generator_url == (
        "https://grafana.example/alerting/grafana/dd2f0260-3cfc-4c65-a4c4-f3f632c551f4/view?orgId=1"
    )
    dashboard = "https://grafana.example/d/ece9fb32-7f71-4be9-bd94-2f23608ae5b9?from=1795812480000&orgId=1"
    assert a.annotations == {
        "summary": "p99 latency of GET /api/items/{id} is above 500ms",
        "dashboard_url": dashboard + "&to=1795816200000",  # Go's \u0026 escapes decoded
        "panel_url": dashboard + "&to=1795816200000&viewPanel=2",
        "silence_url": "https://grafana.example/alerting/silence/new?alertmanager=grafana&matcher=alertname%3D"
        "HighLatency&matcher=grafana_folder%3Dapi&matcher=method%3DGET&matcher=path%3D%2Fapi%2F"
        "items%2F%7Bid%7D&matcher=severity%3Dcritical&orgId=1",
        "image_url": "https://grafana.example/public/img/attachments/9BOpEsbcQmfXcVOtPWni.png",
        "value": "A=0.7315, B=0.7315, C=1",
    }
    assert n.details["org_id"] == 1 and n.details["state"] == "alerting"
    assert n.details["title"] == "[FIRING:1] HighLatency api (GET /api/items/{id} critical)"
    assert n.details["group_key"] == '{}/{severity="critical"}:{alertname="HighLatency", grafana_folder="api"}'
    assert n.details["receiver"] == "receiver webhook" and n.truncated == 0


def test_the_documented_example_parses_values_and_keeps_empty_links_out() -> None:
    n = parse_body((DATA / "grafana-11-docs-firing.json").read_bytes())
    first, second = n.alerts
    assert first.starts_at == datetime(2026, 11, 27, 7, 51, 3, 157076, tzinfo=UTC)  # +02:00 in the payload
    assert first.annotations["value"] == "B=92.2394, C=1"
    assert second.annotations["value"] == "B=95.5, C=1"
    for a in n.alerts:  # "dashboardURL": "" and "panelURL": "" are no links
        assert "dashboard_url" not in a.annotations and "panel_url" not in a.annotations
        assert a.annotations["silence_url"].startswith("https://grafana.example/alerting/silence/new?")


def test_grafana_9_firing_with_resolved_keeps_each_alerts_status_and_value_string() -> None:
    n = parse_body((DATA / "grafana-9-firing-with-resolved.json").read_bytes())
    assert [a.status for a in n.alerts] == ["resolved", "resolved", "firing"]
    assert n.details["status"] == "firing"  # the group's status decides nothing
    resolved = n.alerts[0]
    assert resolved.ends_at == datetime(2026, 6, 17, 1, 8, 28, 652747, tzinfo=UTC)
    assert resolved.annotations["value"].startswith("[ var='B' labels={__name__=rabbitmq_queue_messages_ready")
    # text the page and Slack must escape is kept as it came
    assert n.alerts[2].annotations["summary"] == "Consumer errors on <@here> worker"


def test_resolved_payload_state_ok() -> None:
    n = parse_body((DATA / "grafana-9-resolved.json").read_bytes())
    assert n.details["state"] == "ok"
    (a,) = n.alerts
    assert a.status == "resolved" and a.ends_at == datetime(2026, 6, 17, 0, 51, 24, 67337, tzinfo=UTC)


def test_the_same_alert_parses_the_same_through_both_senders_but_for_grafanas_fields() -> None:
    """Grafana's body is Alertmanager's plus fields: the shared ones follow Alertmanager's parser."""
    data = recorded(LINKS.name)
    as_am = copy.deepcopy(data)
    as_am["version"] = "4"
    a_g = parse(data).alerts[0]
    a_am = am.parse_notification(as_am).alerts[0]
    assert (a_g.fingerprint, a_g.status, a_g.labels, a_g.starts_at, a_g.ends_at, a_g.generator_url) == (
        a_am.fingerprint,
        a_am.status,
        a_am.labels,
        a_am.starts_at,
        a_am.ends_at,
        a_am.generator_url,
    )
    assert a_am.annotations == {"summary": data["alerts"][0]["annotations"]["summary"]}


# --- the registry ----------------------------------------------------------------------------------------


def test_the_registry_serves_both_senders_on_their_routes() -> None:
    assert [(s.name, s.path) for s in SENDERS] == [("alertmanager", "/webhook"), ("grafana", "/webhook/grafana")]
    assert set(SENDER_PATHS) == {"/webhook", "/webhook/grafana"}
    assert sender_for_path("/webhook/grafana") is GRAFANA
    assert sender_for_path("/webhook/other") is None
    assert GRAFANA.parse is parse_body


# --- the version -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("version", "reason"),
    [
        ("4", 'unsupported "version" \'4\'; expected "1"'),
        (1, 'unsupported "version" \'1\'; expected "1"'),  # a number is not Grafana's string
        ("2", 'expected "1"'),
    ],
)
def test_a_version_other_than_1_is_refused(version: Any, reason: str) -> None:
    data = recorded(LINKS.name)
    data["version"] = version
    with pytest.raises(PayloadError, match=reason.replace("[", r"\[")):
        parse(data)


def test_a_missing_version_names_the_accepted_one() -> None:
    data = recorded(LINKS.name)
    del data["version"]
    with pytest.raises(PayloadError, match='missing "version"; this receiver accepts Grafana webhook version "1"'):
        parse(data)


def test_an_alertmanager_payload_posted_to_the_grafana_route_is_refused() -> None:
    with pytest.raises(PayloadError, match='expected "1"'):
        parse_body((DATA / "alertmanager-0.25-firing.json").read_bytes())


def test_a_grafana_payload_posted_to_the_alertmanager_route_is_refused() -> None:
    with pytest.raises(PayloadError, match='expected "4"'):
        am.parse_body(LINKS.read_bytes())


# --- hostile and invalid input ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"", "not valid JSON"),
        (b'{"version": "1", "alerts": [', "not valid JSON"),
        (b'{"version": "1", "alerts": [], "receiver": "\xff"}', "UTF-8"),
        (b"[" * 100_000, "nested too deeply"),
        (b'["version", "1"]', "expected a JSON object"),
        (b'{"version": "1", "alerts": {}}', '"alerts" must be a list'),
        (b'{"version": "1", "alerts": [], "orgId": "1"}', '"orgId" must be an integer'),
        (b'{"version": "1", "alerts": [], "orgId": true}', '"orgId" must be an integer'),
        (b'{"version": "1", "alerts": [], "state": 3}', '"state" must be a string'),
        (b'{"version": "1", "alerts": [], "title": ["x"]}', '"title" must be a string'),
        (b'{"version": "1", "alerts": [], "message": {}}', '"message" must be a string'),
        (b'{"version": "1", "alerts": [], "truncatedAlerts": -1}', '"truncatedAlerts" must be a non-negative integer'),
        (b'{"version": "1", "alerts": [], "commonLabels": {"a": 1}}', "commonLabels"),
    ],
)
def test_bodies_that_can_never_be_valid_raise_a_clear_reason(body: bytes, reason: str) -> None:
    with pytest.raises(PayloadError, match=reason):
        parse_body(body)


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"dashboardURL": 5}, '"dashboardURL" must be a string'),
        ({"panelURL": ["https://x"]}, '"panelURL" must be a string'),
        ({"silenceURL": {}}, '"silenceURL" must be a string'),
        ({"imageURL": False}, '"imageURL" must be a string'),
        ({"values": [1, 2]}, '"values" must be an object of numbers'),
        ({"values": {"A": "1"}}, "\"values\" must be an object of numbers \\('A' is not\\)"),
        ({"values": {"A": True}}, "\"values\" must be an object of numbers \\('A' is not\\)"),
        ({"valueString": 1}, '"valueString" must be a string'),
        ({"status": "pending"}, '"status" must be "firing" or "resolved"'),
        ({"labels": {}}, '"labels" must not be empty'),
        ({"startsAt": "yesterday"}, '"startsAt"'),
    ],
)
def test_an_alert_that_can_never_be_valid_is_reported_and_the_others_kept(fields: dict[str, Any], reason: str) -> None:
    data = with_alert(**fields)
    good = copy.deepcopy(data["alerts"][0] | {"fingerprint": "0000000000000001"})
    for name in fields:
        good.pop(name, None)
    good["status"] = "firing"
    good["labels"] = {"alertname": "HighLatency", "path": "/ok"}
    good["startsAt"] = "2026-11-27T21:48:00Z"
    data["alerts"].append(good)
    n = parse(data)
    assert [a.fingerprint for a in n.alerts] == ["0000000000000001"]
    (bad,) = n.invalid
    assert bad.index == 0 and bad.fingerprint == "e6349a25f5ef0e9e"
    assert bad.reason.startswith(reason.split(" \\(")[0].replace("\\", "")), bad.reason
    # the only alert invalid: the whole body is refused, naming why
    with pytest.raises(PayloadError, match="no valid alert in the payload: alerts\\[0\\]"):
        parse(with_alert(**fields))


@pytest.mark.parametrize(
    "url",
    [
        "javascript:alert('x')",
        "JaVaScRiPt:alert(1)",
        "data:text/html,<script>alert(1)</script>",
        "/d/relative",
        "ftp://grafana.example/d/x",
        "  ",
        "https://grafana.example/" + "a" * MAX_LINK,
    ],
)
def test_a_link_that_is_not_a_short_http_url_is_dropped_and_the_alert_kept(url: str) -> None:
    data = with_alert(dashboardURL=url, panelURL=url, silenceURL=url, imageURL=url)
    (a,) = parse(data).alerts
    assert not {"dashboard_url", "panel_url", "silence_url", "image_url"} & set(a.annotations)


def test_the_rules_own_annotation_wins_over_grafanas_field() -> None:
    data = with_alert(annotations={"dashboard_url": "https://dash.example/mine", "value": "set by the rule"})
    (a,) = parse(data).alerts
    assert a.annotations["dashboard_url"] == "https://dash.example/mine"
    assert a.annotations["value"] == "set by the rule"
    assert a.annotations["panel_url"].endswith("viewPanel=2")


def test_absent_or_null_grafana_fields_are_fine() -> None:
    data = with_alert(dashboardURL=None, panelURL=None, silenceURL=None, imageURL=None, values=None, valueString=None)
    for name in ("orgId", "state", "title", "message"):
        del data[name]
    data["alerts"][0]["values"] = None  # Go's nil map
    n = parse(data)
    (a,) = n.alerts
    assert a.annotations == {"summary": "p99 latency of GET /api/items/{id} is above 500ms"}
    assert n.details["org_id"] is None and n.details["state"] == ""


def test_values_text_is_bounded_and_falls_back_to_value_string() -> None:
    many = {f"v{i}": float(i) for i in range(2000)}
    (a,) = parse(with_alert(values=many)).alerts
    assert len(a.annotations["value"]) == MAX_VALUE_TEXT and a.annotations["value"].endswith("\N{HORIZONTAL ELLIPSIS}")
    (b,) = parse(with_alert(values={}, valueString="[ var='A' value=1 ]")).alerts
    assert b.annotations["value"] == "[ var='A' value=1 ]"
    (c,) = parse(with_alert(values={"A": 1e300, "B": -0.000012345678})).alerts
    assert c.annotations["value"] == "A=1e+300, B=-1.23457e-05"


def test_non_finite_values_python_json_accepts_do_not_break_the_parser() -> None:
    body = LINKS.read_bytes().replace(b'"A": 0.7315', b'"A": NaN').replace(b'"B": 0.7315', b'"B": -Infinity')
    (a,) = parse_body(body).alerts
    assert a.annotations["value"] == "A=nan, B=-inf, C=1"


def test_unstorable_characters_in_grafanas_fields_are_replaced() -> None:
    data = with_alert(valueString="a\u0000b", values=None, silenceURL="https://grafana.example/s?x=\ud800")
    (a,) = parse(data).alerts
    assert a.annotations["value"] == "a\ufffdb"
    assert a.annotations["silence_url"] == "https://grafana.example/s?x=?"  # a lone surrogate cannot be UTF-8


def test_unknown_fields_are_ignored() -> None:
    data = with_alert(embeddedImage="iVBORw0KGgo=", extraData={"a": 1})
    data["notification_reason"] = "new"
    assert parse(data).alerts[0].fingerprint == "e6349a25f5ef0e9e"


def test_the_readmes_contact_point_posts_to_the_grafana_route() -> None:
    import yaml

    from tests.readme import code_blocks

    (block,) = code_blocks("Point Grafana at it", "yaml")
    (receiver,) = yaml.safe_load(block)["contactPoints"][0]["receivers"]
    assert receiver["type"] == "webhook" and receiver["disableResolveMessage"] is False
    settings = receiver["settings"]
    assert settings["url"].endswith(GRAFANA.path) and settings["httpMethod"] == "POST"
    assert settings["authorization_scheme"] == "Bearer"
