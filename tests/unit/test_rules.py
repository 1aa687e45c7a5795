"""Mapping labels to route, kind, severity and owner (receiver.rules): pure, no I/O."""

from __future__ import annotations

import gc
import tracemalloc
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from receiver.config import parse_config
from receiver.ingest import service
from receiver.ingest.service import Ingestor
from receiver.rules import (
    DEFAULT_RULE,
    MAX_KEY_PART,
    Matcher,
    Rule,
    RuleError,
    default_kind,
    default_route,
    map_labels,
    normalise_severity,
    parse_matchers,
    render_route,
    snake_case,
)

# --- default route ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("labels", "route"),
    [
        ({"method": "GET", "path": "/x", "route": "r", "handler": "h"}, "GET /x"),
        ({"method": "POST", "path": "/api/items/{id}"}, "POST /api/items/{id}"),
        ({"method": "GET", "route": "r", "handler": "h"}, "r"),  # method without path
        ({"route": "r", "handler": "h", "endpoint": "e", "path": "/p", "service": "s", "job": "j"}, "r"),
        ({"handler": "h", "endpoint": "e", "path": "/p", "service": "s", "job": "j"}, "h"),
        ({"endpoint": "e", "path": "/p", "service": "s", "job": "j"}, "e"),
        ({"path": "/p", "service": "s", "job": "j"}, "/p"),  # path without method
        ({"service": "s", "job": "j"}, "s"),
        ({"job": "j", "instance": "host:9100"}, "j"),
        ({"alertname": "Watchdog"}, "unknown"),
        ({}, "unknown"),
        ({"route": "", "handler": "h"}, "h"),  # an empty label counts as absent
        ({"method": "", "path": "/p"}, "/p"),
    ],
)
def test_default_route(labels: dict[str, str], route: str) -> None:
    assert default_route(labels) == route
    assert map_labels(labels).route == route


# --- default kind -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("alertname", "kind"),
    [
        ("HighErrorRate", "error_rate"),
        ("Errors", "error_rate"),
        ("APIErrors", "error_rate"),
        ("checkout_error_ratio", "error_rate"),
        ("HighLatency", "latency"),
        ("LatencyP99High", "latency"),
        ("SlowRequests", "latency"),
        ("APISlow", "latency"),
        ("SLOViolation", "slo_violation"),
        ("CheckoutSLOBreach", "slo_violation"),
        ("ApiSloBurn", "slo_violation"),
        ("HighBurnRate", "slo_violation"),
        ("ErrorBudgetBurn", "slo_violation"),  # an error budget is about SLOs, not error rates
        ("error_budget_exhausted", "slo_violation"),
        ("DiskFull", "disk_full"),
        ("KubePodCrashLooping", "kube_pod_crash_looping"),
        ("KubeSlotsFull", "kube_slots_full"),  # "Slots" is not "SLO"
        ("Watchdog", "watchdog"),
        ("TargetDown", "target_down"),
        ("HTTPServerDown", "http_server_down"),
        ("node-exporter down", "node_exporter_down"),
    ],
)
def test_default_kind_from_alertname(alertname: str, kind: str) -> None:
    assert default_kind({"alertname": alertname}) == kind
    assert map_labels({"alertname": alertname}).kind == kind


def test_the_kind_label_wins() -> None:
    assert default_kind({"alertname": "HighLatency", "kind": "saturation"}) == "saturation"
    assert map_labels({"alertname": "HighErrorRate", "kind": "custom"}).kind == "custom"


def test_kind_without_alertname_is_unknown() -> None:
    assert default_kind({}) == "unknown"
    assert default_kind({"kind": ""}) == "unknown"


@pytest.mark.parametrize(
    ("name", "snake"),
    [
        ("DiskFull", "disk_full"),
        ("KubePodCrashLooping", "kube_pod_crash_looping"),
        ("HTTPDown", "http_down"),
        ("already_snake", "already_snake"),
        ("a--b  c", "a_b_c"),
        ("___", "unknown"),
        ("Up2Date", "up2_date"),
    ],
)
def test_snake_case(name: str, snake: str) -> None:
    assert snake_case(name) == snake


# --- severity ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["critical", "page", "error", "high", "CRITICAL", " Page ", "High"])
def test_critical_severities(value: str) -> None:
    assert normalise_severity(value) == "critical"
    assert map_labels({"alertname": "X", "severity": value}).severity == "critical"


@pytest.mark.parametrize("value", ["warning", "info", "low", "medium", "none", "", "critical-ish", None])
def test_everything_else_is_warning(value: Any) -> None:
    assert normalise_severity(value) == "warning"


def test_missing_severity_is_warning() -> None:
    assert map_labels({"alertname": "X"}).severity == "warning"


# --- matchers ---------------------------------------------------------------------------------------


def test_equality_matchers() -> None:
    eq = Matcher.parse('service="checkout"')
    ne = Matcher.parse('service!="checkout"')
    assert (eq.name, eq.op, eq.value) == ("service", "=", "checkout")
    assert eq.matches({"service": "checkout"})
    assert not eq.matches({"service": "checkout-v2"})
    assert not eq.matches({})
    assert ne.matches({"service": "payments"})
    assert ne.matches({})
    assert not ne.matches({"service": "checkout"})


def test_regex_matchers_are_anchored() -> None:
    re_m = Matcher.parse('alertname=~"High.*Latency"')
    assert re_m.matches({"alertname": "HighLatency"})
    assert re_m.matches({"alertname": "HighP99Latency"})
    assert not re_m.matches({"alertname": "VeryHighLatency"})  # anchored at the start
    assert not re_m.matches({"alertname": "HighLatencyWarning"})  # and at the end
    part = Matcher.parse('service=~"check"')
    assert not part.matches({"service": "checkout"})
    not_re = Matcher.parse('service!~"check.*"')
    assert not not_re.matches({"service": "checkout"})
    assert not_re.matches({"service": "payments"})
    assert not_re.matches({"service": "a-checkout"})


def test_a_missing_label_is_the_empty_string() -> None:
    assert Matcher.parse('team=""').matches({})
    assert not Matcher.parse('team!=""').matches({})
    assert Matcher.parse('team=~".*"').matches({})
    assert Matcher.parse('team=~"|sre"').matches({})
    assert not Matcher.parse('team=~".+"').matches({})
    assert Matcher.parse('team!~".+"').matches({})


def test_matcher_values_may_be_unquoted_or_single_quoted() -> None:
    assert Matcher.parse("service=checkout").value == "checkout"
    assert Matcher.parse("service='checkout'").value == "checkout"
    assert Matcher.parse(' service = "checkout" ').value == "checkout"
    assert Matcher.parse(r'msg="say \"hi\""').value == 'say "hi"'


@pytest.mark.parametrize("text", ["", "service", '="x"', '1abc="x"', 'service<>"x"', 'a b="x"'])
def test_bad_matchers_raise(text: str) -> None:
    with pytest.raises(RuleError):
        Matcher.parse(text)


def test_a_bad_regex_raises_rule_error() -> None:
    with pytest.raises(RuleError, match="bad regular expression"):
        Matcher.parse('alertname=~"High(Latency"')
    with pytest.raises(RuleError, match="bad regular expression"):
        Matcher.parse('alertname!~"["')


def test_matcher_str_round_trips() -> None:
    m = Matcher.parse('alertname=~"High.*"')
    assert str(m) == 'alertname=~"High.*"'
    assert Matcher.parse(str(m)) == m


def test_parse_matchers_from_an_alertmanager_string() -> None:
    matchers = parse_matchers('{a="b", c=~"x,y"}')
    assert [(m.name, m.op, m.value) for m in matchers] == [("a", "=", "b"), ("c", "=~", "x,y")]
    assert all(m.matches({"a": "b", "c": c}) for m in matchers for c in ["x,y"])
    rule = Rule("r", matchers)
    assert rule.matches({"a": "b", "c": "x,y"})
    assert not rule.matches({"a": "b", "c": "x"})
    assert not rule.matches({"a": "z", "c": "x,y"})


def test_parse_matchers_string_variants() -> None:
    assert parse_matchers("{}") == ()
    assert parse_matchers("") == ()
    ms = parse_matchers(r'a="1", b!="2,3", c!~"\"q,\"", d=~' + "'e,f'")
    assert [(m.name, m.op, m.value) for m in ms] == [
        ("a", "=", "1"),
        ("b", "!=", "2,3"),
        ("c", "!~", '"q,"'),
        ("d", "=~", "e,f"),
    ]
    assert len(parse_matchers('{ a="1" , }')) == 1  # a trailing comma is harmless


def test_parse_matchers_from_a_list() -> None:
    ms = parse_matchers(['alertname=~"High.*"', 'service="checkout"'])
    assert [(m.name, m.op) for m in ms] == [("alertname", "=~"), ("service", "=")]
    assert parse_matchers([]) == ()


def test_parse_matchers_rejects_garbage() -> None:
    with pytest.raises(RuleError):
        parse_matchers('{a="b", nonsense}')


# --- rules ------------------------------------------------------------------------------------------

LABELS = {"alertname": "HighLatency", "method": "GET", "path": "/checkout", "service": "checkout", "severity": "page"}


def test_no_rule_means_the_defaults() -> None:
    m = map_labels(LABELS)
    assert (m.route, m.kind, m.severity, m.owner, m.rule) == (
        "GET /checkout",
        "latency",
        "critical",
        "default",
        DEFAULT_RULE,
    )
    assert m.incident_key == "GET /checkout::latency"
    assert map_labels(LABELS, default_owner="sre").owner == "sre"


def test_the_first_matching_rule_wins() -> None:
    rules = [
        Rule("payments", parse_matchers('service="payments"'), kind="payments"),
        Rule(
            "checkout",
            parse_matchers('service="checkout"'),
            route="checkout-api",
            kind="checkout_latency",
            severity="warning",
            owner="team-checkout",
        ),
        Rule("catch-all", parse_matchers([]), route="everything", kind="all", owner="sre"),
    ]
    m = map_labels(LABELS, rules)
    assert (m.rule, m.route, m.kind, m.severity, m.owner) == (
        "checkout",
        "checkout-api",
        "checkout_latency",
        "warning",
        "team-checkout",
    )
    other = map_labels({"alertname": "DiskFull", "service": "db"}, rules)
    assert (other.rule, other.route, other.kind, other.owner) == ("catch-all", "everything", "all", "sre")


def test_unset_rule_fields_fall_back_to_the_defaults() -> None:
    rules = [Rule("owner-only", parse_matchers('alertname=~"High.*"'), owner="team-a")]
    m = map_labels(LABELS, rules, default_owner="fallback")
    assert (m.rule, m.route, m.kind, m.severity, m.owner) == (
        "owner-only",
        "GET /checkout",
        "latency",
        "critical",
        "team-a",
    )
    nothing = map_labels(LABELS, [Rule("bare", ())], default_owner="fallback")
    assert (nothing.rule, nothing.owner, nothing.route) == ("bare", "fallback", "GET /checkout")


def test_no_matching_rule_uses_the_defaults() -> None:
    rules = [Rule("payments", parse_matchers('service="payments"'), kind="payments", owner="pay")]
    m = map_labels(LABELS, rules, default_owner="sre")
    assert (m.rule, m.kind, m.owner) == (DEFAULT_RULE, "latency", "sre")


def test_route_template() -> None:
    rules = [Rule("tpl", (), route="{service}:{method} {path}")]
    assert map_labels(LABELS, rules).route == "checkout:GET /checkout"
    assert render_route("{service}-{job}", {"service": "s", "job": "j"}) == "s-j"
    assert render_route("static", {}) == "static"


@pytest.mark.parametrize("labels", [{**LABELS, "team": ""}, LABELS])
def test_a_template_with_a_missing_label_falls_back_to_the_default_route(labels: dict[str, str]) -> None:
    rules = [Rule("tpl", (), route="{team}/{path}", kind="k")]
    m = map_labels(labels, rules)
    assert m.route == "GET /checkout"
    assert m.rule == "tpl" and m.kind == "k"
    assert render_route("{team}/{path}", labels) is None


# --- untrusted sizes ----------------------------------------------------------------------------------


def test_long_label_values_give_a_bounded_key() -> None:
    long_path = "/" + "a" * 10_000
    m = map_labels({"alertname": "HighLatency", "method": "GET", "path": long_path, "kind": "k" * 10_000})
    assert len(m.route) <= MAX_KEY_PART <= 400
    assert len(m.kind) <= MAX_KEY_PART
    assert len(m.incident_key) <= 2 * MAX_KEY_PART + 2
    assert m.route.startswith("GET /aaaa")


def test_distinct_long_values_stay_distinct() -> None:
    base = "/" + "a" * 5000
    one = map_labels({"method": "GET", "path": base + "1", "alertname": "HighLatency"})
    two = map_labels({"method": "GET", "path": base + "2", "alertname": "HighLatency"})
    again = map_labels({"method": "GET", "path": base + "1", "alertname": "HighLatency"})
    assert one.incident_key != two.incident_key
    assert one.incident_key == again.incident_key  # and stable
    kind_one = map_labels({"kind": "x" * 1000 + "1"}).kind
    kind_two = map_labels({"kind": "x" * 1000 + "2"}).kind
    assert kind_one != kind_two and len(kind_one) <= MAX_KEY_PART


def test_short_values_are_not_touched() -> None:
    value = "/" + "a" * (MAX_KEY_PART - 1)
    assert map_labels({"path": value}).route == value


def test_a_long_multibyte_key_stays_small_in_bytes() -> None:
    # PostgreSQL limits a btree entry to about 2.7 kB; the incident key is indexed, so bytes matter, not characters.
    emoji = "\U0001f600" * 5000
    m = map_labels({"method": "GET", "path": emoji, "kind": emoji})
    assert len(m.route.encode("utf-8")) <= MAX_KEY_PART
    assert len(m.kind.encode("utf-8")) <= MAX_KEY_PART
    assert len(m.incident_key.encode("utf-8")) <= 2 * MAX_KEY_PART + 2
    other = map_labels({"method": "GET", "path": emoji + "x", "kind": emoji})
    assert other.route != m.route


def test_multibyte_values_are_cut_on_character_boundaries() -> None:
    short = "é" * 150  # 300 bytes: under the bound, untouched
    assert map_labels({"path": short}).route == short
    long = "é" * 300  # 600 bytes
    route = map_labels({"path": long}).route
    assert len(route.encode("utf-8")) <= MAX_KEY_PART
    head, _, digest = route.partition("…")
    assert head and set(head) == {"é"}  # no half character, no replacement character
    assert len(digest) == 16


@given(
    st.dictionaries(
        st.sampled_from(["alertname", "severity", "path", "method", "service", "kind"]),
        st.sampled_from(["", "HighLatency", "critical", "/a", "GET", "checkout", "error_rate"]),
    )
)
def test_the_ingestor_maps_like_the_config_whatever_it_cached(labels: dict[str, str]) -> None:
    config = parse_config(
        """
rules:
  - match: ['service="checkout"']
    route: "checkout {{ path }}"
    kind: error_rate
default_owner: team-a
""",
        env={},
    )
    ingestor = Ingestor(config, store=None)  # type: ignore[arg-type]  # mapping needs no database
    for _ in range(2):  # a miss, then a hit
        assert ingestor.map(labels) == config.map(labels)
    assert ingestor.map(dict(reversed(labels.items()))) == config.map(labels)
    cached = len(ingestor.map_cache)
    huge = {**labels, "description": "x" * 5000}  # mapped, not kept in the cache
    assert ingestor.map(huge) == config.map(huge)
    with_nul = {**labels, "path\x00method": "\x00"}  # NUL is the key's separator: mapped, not cached
    assert ingestor.map(with_nul) == config.map(with_nul)
    assert len(ingestor.map_cache) == cached


def test_a_repeated_label_set_is_mapped_once() -> None:
    """The cache's point: a label set Alertmanager re-sends is not mapped again."""
    ingestor = Ingestor(parse_config("", env={}), store=None)  # type: ignore[arg-type]
    labels = {"alertname": "HighLatency", "method": "GET", "path": "/x", "instance": "a"}
    first = ingestor.map(labels)
    again = ingestor.map(dict(labels))  # an equal label set, new objects, as the next webhook parses it
    assert again is first
    assert (ingestor.map_cache.hits, ingestor.map_cache.misses) == (1, 1)


def _label_sets(shape: str, n: int) -> Any:
    """Label sets shaped to cost the cache as much as possible, each distinct."""
    for i in range(n):
        if shape == "many-tiny":  # 600 one-character names, as many as fit the per-set limit
            yield {**{chr(0x100 + j): "" for j in range(600)}, "i": str(i)}
        elif shape == "wide-characters":  # 4 bytes a character in route and kind as well as in the key
            yield {"method": "\U0001f600", "path": "\U0001f600" * 300 + str(i), "kind": "\U0001f600" * 300}
        elif shape == "few-huge":  # over the per-set limit: never cached
            yield {"path": "/x" * 50_000 + str(i)}
        else:  # many small distinct sets, the usual shape
            yield {"alertname": "HighLatency", "method": "GET", "path": f"/api/{i}", "instance": f"api-{i}:8080"}


@pytest.mark.parametrize("shape", ["many-tiny", "wide-characters", "few-huge", "many-small"])
def test_the_mapping_cache_holds_at_most_its_budget_in_bytes(shape: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Measured with tracemalloc: what the cache keeps after the label sets are gone stays under its byte
    budget (and its own accounting does not under-count), whatever the shape of the label sets."""
    budget = 1024 * 1024
    monkeypatch.setattr(service, "MAP_CACHE_BYTES", budget)
    config = parse_config("", env={})
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        ingestor = Ingestor(config, store=None)  # type: ignore[arg-type]
        for labels in _label_sets(shape, 3000):
            assert ingestor.map(labels) == config.map(labels)
        del labels
        gc.collect()
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    cache = ingestor.map_cache
    assert cache.bytes <= budget
    assert held <= budget + 64 * 1024, f"{shape}: {held} bytes held for {len(cache)} entries"
    assert held <= cache.bytes * 1.1 + 64 * 1024, f"{shape}: accounted {cache.bytes}, held {held}"
    if shape != "few-huge":
        assert len(cache) > 0
