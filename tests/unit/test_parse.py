"""The webhook parser (receiver.ingest.alertmanager) and the time helpers (receiver.timeutil): pure, no I/O."""

from __future__ import annotations

import gc
import json
import tracemalloc
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from receiver.ingest.alertmanager import (
    Notification,
    PayloadError,
    clean_text,
    label_fingerprint,
    parse_body,
)
from receiver.timeutil import RFC3339_CACHE_SIZE, format_duration, parse_duration, parse_rfc3339
from tests.helpers import ZERO, alert, alert_with, alert_without, payload


def body(data: Any) -> bytes:
    return json.dumps(data).encode()


def parse(data: Any) -> Notification:
    return parse_body(body(data))


# --- the envelope -----------------------------------------------------------------------------------


def test_a_recorded_shape_parses() -> None:
    n = parse(payload(alert(), alert("resolved", ends_at="2026-11-27T10:05:00Z", path="/other")))
    assert n.sender == "alertmanager"
    assert n.details["receiver"] == "receiver"
    assert n.details["status"] == "firing"
    assert n.external_url == "http://am-1:9093"
    assert n.details["group_key"] == '{}:{alertname="HighLatency"}'
    assert n.details["group_labels"] == {"alertname": "HighLatency"}
    assert n.truncated == 0
    assert n.invalid == []
    first, second = n.alerts
    assert first.index == 0 and second.index == 1
    assert first.status == "firing" and second.status == "resolved"
    assert first.labels == {"alertname": "HighLatency", "method": "GET", "path": "/notifications/recent"}
    assert first.annotations == {"summary": "p99 latency is high"}
    assert first.starts_at == datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
    assert first.ends_at is None
    assert second.ends_at == datetime(2026, 11, 27, 10, 5, tzinfo=UTC)
    assert first.generator_url == "http://prometheus:9090/graph?g0.expr=up"
    assert first.fingerprint == alert()["fingerprint"]


def test_truncated_alerts_is_kept() -> None:
    assert parse(payload(alert(), truncatedAlerts=7)).truncated == 7


@pytest.mark.parametrize("value", [-1, "3", 1.5, True, [1]])
def test_truncated_alerts_must_be_a_non_negative_integer(value: Any) -> None:
    with pytest.raises(PayloadError, match="truncatedAlerts"):
        parse(payload(alert(), truncatedAlerts=value))


def test_an_empty_alert_list_is_accepted() -> None:
    n = parse(payload(status="resolved"))
    assert n.alerts == [] and n.invalid == []


def test_missing_version_is_refused() -> None:
    data = payload(alert())
    del data["version"]
    with pytest.raises(PayloadError, match='missing "version"'):
        parse(data)


@pytest.mark.parametrize("version", ["3", "5", 4, "4.0", "", ["4"]])
def test_a_wrong_version_is_refused(version: Any) -> None:
    with pytest.raises(PayloadError, match="unsupported"):
        parse(payload(alert(), version=version))


def test_payload_error_is_a_value_error() -> None:
    # The handler maps PayloadError to 400; callers that only know ValueError still catch it.
    assert issubclass(PayloadError, ValueError)


@pytest.mark.parametrize("data", [[], "text", 4, None, [payload(alert())]])
def test_the_body_must_be_an_object(data: Any) -> None:
    with pytest.raises(PayloadError, match="expected a JSON object"):
        parse(data)


@pytest.mark.parametrize("alerts", [None, {}, "alerts", 3, {"0": alert()}])
def test_alerts_must_be_a_list(alerts: Any) -> None:
    data = payload()
    data["alerts"] = alerts
    with pytest.raises(PayloadError, match='"alerts" must be a list'):
        parse(data)


def test_missing_alerts_is_refused() -> None:
    data = payload()
    del data["alerts"]
    with pytest.raises(PayloadError, match='"alerts" must be a list'):
        parse(data)


@pytest.mark.parametrize(
    "raw",
    [b"", b"{", b'{"version": "4", "alerts": [}', b"not json", b"{'version': '4'}", b'{"version": "4",}'],
)
def test_invalid_json_is_refused(raw: bytes) -> None:
    with pytest.raises(PayloadError, match="not valid JSON"):
        parse_body(raw)


def test_invalid_utf8_is_refused() -> None:
    raw = b'{"version": "4", "alerts": [], "receiver": "\xff\xfe bad"}'
    with pytest.raises(PayloadError, match="UTF-8"):
        parse_body(raw)


@pytest.mark.parametrize("raw", [b"[" * 100_000, b'{"a":' * 100_000, b'{"version": "4", "alerts": ' + b"[" * 100_000])
def test_deeply_nested_json_is_refused_not_a_crash(raw: bytes) -> None:
    with pytest.raises(PayloadError, match="nested too deeply"):
        parse_body(raw)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("receiver", 5),
        ("status", ["firing"]),
        ("externalURL", {}),
        ("groupKey", 1),
        ("groupLabels", "alertname=x"),
        ("groupLabels", {"alertname": 1}),
        ("commonLabels", []),
        ("commonAnnotations", {"summary": None}),
    ],
)
def test_wrong_types_in_the_envelope_are_refused(name: str, value: Any) -> None:
    with pytest.raises(PayloadError, match=name):
        parse(payload(alert(), **{name: value}))


def test_unknown_fields_are_ignored() -> None:
    a = alert()
    a["someFutureField"] = {"nested": [1, 2]}
    data = payload(
        a,
        notification_reason="alert_group_changed",
        routeLabels={"team": "sre"},
        somethingNew=[{"x": None}],
    )
    n = parse(data)
    assert len(n.alerts) == 1 and n.invalid == []
    assert n.alerts[0].labels["alertname"] == "HighLatency"


def test_null_optional_envelope_fields_are_defaults() -> None:
    data = payload(
        alert(),
        receiver=None,
        externalURL=None,
        groupKey=None,
        truncatedAlerts=None,
        groupLabels=None,
        commonLabels=None,
        commonAnnotations=None,
    )
    n = parse(data)
    assert n.details["receiver"] == "" and n.external_url == "" and n.details["group_key"] == ""
    assert n.truncated == 0 and n.details["group_labels"] == {} and n.details["common_labels"] == {}


# --- timestamps ---------------------------------------------------------------------------------------


def test_go_zero_time_ends_at_means_unset() -> None:
    n = parse(payload(alert(ends_at="0001-01-01T00:00:00Z")))
    assert n.alerts[0].ends_at is None
    assert parse_rfc3339(ZERO) is None
    assert parse_rfc3339("0001-01-01T00:00:00+00:00") is None


@pytest.mark.parametrize("ends_at", [None, ""])
def test_missing_or_empty_ends_at_is_unset(ends_at: Any) -> None:
    a = alert()
    a["endsAt"] = ends_at
    assert parse(payload(a)).alerts[0].ends_at is None


def test_absent_ends_at_is_unset() -> None:
    a = alert()
    del a["endsAt"]
    assert parse(payload(a)).alerts[0].ends_at is None


@pytest.mark.parametrize(
    ("text", "micro"),
    [
        ("2026-11-27T10:00:00Z", 0),
        ("2026-11-27T10:00:00.1Z", 100000),
        ("2026-11-27T10:00:00.12Z", 120000),
        ("2026-11-27T10:00:00.123Z", 123000),
        ("2026-11-27T10:00:00.1234Z", 123400),
        ("2026-11-27T10:00:00.12345Z", 123450),
        ("2026-11-27T10:00:00.123456Z", 123456),
        ("2026-11-27T10:00:00.1234567Z", 123456),
        ("2026-11-27T10:00:00.12345678Z", 123456),
        ("2026-11-27T10:00:00.123456789Z", 123456),
        ("2026-11-27T10:00:00.000000001Z", 0),
    ],
)
def test_zero_to_nine_fraction_digits(text: str, micro: int) -> None:
    assert parse_rfc3339(text) == datetime(2026, 11, 27, 10, 0, 0, micro, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-27T12:00:00+02:00", datetime(2026, 11, 27, 10, 0, tzinfo=UTC)),
        ("2026-11-27T04:30:00-05:30", datetime(2026, 11, 27, 10, 0, tzinfo=UTC)),
        ("2026-11-27T10:00:00Z", datetime(2026, 11, 27, 10, 0, tzinfo=UTC)),
        ("2026-11-27T10:00:00z", datetime(2026, 11, 27, 10, 0, tzinfo=UTC)),
        ("2026-11-27t10:00:00+00:00", datetime(2026, 11, 27, 10, 0, tzinfo=UTC)),
        ("2026-11-27T10:00:00-00:00", datetime(2026, 11, 27, 10, 0, tzinfo=UTC)),
        # the offset moves the date across midnight and the year
        ("2027-01-01T01:00:00.5+02:00", datetime(2026, 12, 31, 23, 0, 0, 500000, tzinfo=UTC)),
        ("2026-12-31T22:15:00.123456789-05:30", datetime(2027, 1, 1, 3, 45, 0, 123456, tzinfo=UTC)),
    ],
)
def test_offsets_normalise_to_utc(text: str, expected: datetime) -> None:
    parsed = parse_rfc3339(text)
    assert parsed == expected
    assert parsed is not None and parsed.utcoffset() == timedelta(0)
    assert parsed.tzinfo == UTC


def test_an_alert_with_an_offset_is_stored_in_utc() -> None:
    n = parse(payload(alert(starts_at="2026-11-27T12:00:00.987654321+02:00", ends_at="2026-11-27T06:00:00-05:30")))
    a = n.alerts[0]
    assert a.starts_at == datetime(2026, 11, 27, 10, 0, 0, 987654, tzinfo=UTC)
    assert a.ends_at == datetime(2026, 11, 27, 11, 30, tzinfo=UTC)
    assert a.starts_at.tzinfo == UTC


@pytest.mark.parametrize(
    "text",
    [
        "",
        "2026-11-27",
        "2026-11-27T10:00:00",  # no offset
        "2026-11-27T10:00Z",  # no seconds
        "2026-11-27T10:00:00.Z",  # a dot without digits
        "2026-11-27T10:00:00.1234567890Z",  # ten fraction digits
        "2026-11-27T10:00:00+0200",  # not RFC 3339
        "2026-11-27T10:00:00+2:00",
        "2026-13-01T10:00:00Z",  # month 13
        "2026-02-30T10:00:00Z",
        "2026-11-27T24:00:00Z",
        "2026-11-27T10:00:00+24:00",
        "2026-11-27T10:00:00+01:60",
        "2026-11-27T10:00:00Z\n",  # trailing junk
        " 2026-11-27T10:00:00Z",
        "2026-11-27T10:00:00Zjunk",
        "２０２６-11-27T10:00:00Z",  # non-ASCII digits
        "9999-12-31T23:59:59-05:00",  # beyond the largest datetime once in UTC
        "0000-01-01T00:00:00Z",
    ],
)
def test_bad_timestamps_raise_value_error(text: str) -> None:
    with pytest.raises(ValueError):
        parse_rfc3339(text)


def test_the_timestamp_cache_is_bounded_in_bytes() -> None:
    """Only timestamps that parse are cached (at most 35 ASCII characters each), so the full cache is a few MB
    however hostile the values: measured with tracemalloc, strings that fail are never kept."""
    parse_rfc3339.cache_clear()
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(RFC3339_CACHE_SIZE + 1000):  # the longest form, every one distinct
            parse_rfc3339(f"2026-11-27T10:{i // 3600 % 60:02d}:{i // 60 % 60:02d}.{i:09d}+05:30")
        for i in range(1000):
            with pytest.raises(ValueError):
                parse_rfc3339(f"2026-11-27T10:00:00Z{'x' * 100_000}{i}")
        gc.collect()
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
        parse_rfc3339.cache_clear()
    assert held < 3 * 1024 * 1024, held


def test_a_leap_second_is_clamped() -> None:
    assert parse_rfc3339("2016-12-31T23:59:60Z") == datetime(2016, 12, 31, 23, 59, 59, tzinfo=UTC)


def test_an_out_of_range_timestamp_is_an_invalid_alert_not_a_crash() -> None:
    good = alert()
    bad = alert(ends_at="9999-12-31T23:59:59-05:00", path="/overflow")
    n = parse(payload(good, bad))
    assert [a.index for a in n.alerts] == [0]
    assert [i.index for i in n.invalid] == [1]


# --- alerts -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        (alert_without("labels"), '"labels" is required'),
        (alert_with("labels", {}), '"labels" must not be empty'),
        (alert_with("labels", ["alertname"]), '"labels" must be an object'),
        (alert_with("labels", {"alertname": 5}), '"labels" must be an object of strings'),
        (alert_with("labels", {"alertname": None}), '"labels" must be an object of strings'),
        (alert_with("annotations", "summary"), '"annotations" must be an object'),
        (alert_with("annotations", {"summary": ["x"]}), '"annotations" must be an object of strings'),
        (alert_without("startsAt"), '"startsAt"'),
        (alert_with("startsAt", 1700000000), '"startsAt"'),
        (alert_with("startsAt", "yesterday"), '"startsAt": not an RFC 3339 timestamp'),
        (alert_with("startsAt", ZERO), '"startsAt" must be set'),
        (alert_with("endsAt", 5), '"endsAt"'),
        (alert_with("endsAt", "soon"), '"endsAt": not an RFC 3339 timestamp'),
        (alert_with("endsAt", "2026-02-30T00:00:00Z"), '"endsAt": invalid date'),
        (alert_without("status"), '"status" must be "firing" or "resolved"'),
        (alert_with("status", "pending"), '"status" must be "firing" or "resolved"'),
        (alert_with("status", ["firing"]), '"status" must be "firing" or "resolved"'),
        (alert_with("generatorURL", 5), '"generatorURL"'),
        (alert_with("fingerprint", 12345), '"fingerprint" must be a string'),
        (alert_with("fingerprint", "f" * 129), "longer than 128"),
        ("not an object", "must be a JSON object"),
        (None, "must be a JSON object"),
        ([alert()], "must be a JSON object"),
    ],
)
def test_invalid_alerts_are_named_with_index_and_reason(bad: Any, reason: str) -> None:
    good = alert()
    other = alert(path="/second")
    n = parse(payload(good, bad, other))
    assert [a.index for a in n.alerts] == [0, 2]
    assert [a.labels["path"] for a in n.alerts] == ["/notifications/recent", "/second"]
    assert len(n.invalid) == 1
    invalid = n.invalid[0]
    assert invalid.index == 1
    assert reason in invalid.reason
    assert invalid.as_dict() == {"index": 1, "fingerprint": invalid.fingerprint, "reason": invalid.reason}
    if isinstance(bad, dict) and isinstance(bad.get("fingerprint"), str):
        assert invalid.fingerprint == bad["fingerprint"][:64]
    else:
        assert invalid.fingerprint is None


@pytest.mark.parametrize("bad", [alert_without("labels"), alert_without("startsAt"), alert_without("status"), "x"])
def test_a_payload_of_only_invalid_alerts_is_refused(bad: Any) -> None:
    with pytest.raises(PayloadError, match=r"no valid alert in the payload: alerts\[0\]"):
        parse(payload(bad, status="firing"))


def test_all_invalid_names_each_alert_in_the_error() -> None:
    with pytest.raises(PayloadError) as info:
        parse(payload(alert_without("labels"), alert_without("startsAt")))
    message = str(info.value)
    assert 'alerts[0]: "labels" is required' in message
    assert "alerts[1]:" in message and "startsAt" in message


def test_missing_fingerprint_gets_a_stable_derived_one() -> None:
    a = alert_without("fingerprint")
    b = alert_with("fingerprint", "")
    other = alert(path="/elsewhere")
    del other["fingerprint"]
    first = parse(payload(a)).alerts[0].fingerprint
    again = parse(payload(a)).alerts[0].fingerprint
    empty = parse(payload(b)).alerts[0].fingerprint
    different = parse(payload(other)).alerts[0].fingerprint
    assert first == again == empty
    assert first != different
    assert first == label_fingerprint(a["labels"])
    assert len(first) == 16 and all(c in "0123456789abcdef" for c in first)


def test_derived_fingerprint_ignores_label_order() -> None:
    assert label_fingerprint({"a": "1", "b": "2"}) == label_fingerprint({"b": "2", "a": "1"})
    assert label_fingerprint({"a": "1", "b": "2"}) != label_fingerprint({"a": "2", "b": "1"})


def test_null_annotations_and_generator_url_are_empty() -> None:
    a = alert()
    a["annotations"] = None
    a["generatorURL"] = None
    parsed = parse(payload(a)).alerts[0]
    assert parsed.annotations == {}
    assert parsed.generator_url == ""


# --- strings PostgreSQL would refuse -------------------------------------------------------------------


def test_clean_text_replaces_nul_and_lone_surrogates() -> None:
    assert clean_text("plain") == "plain"
    assert clean_text("a\x00b") == "a\ufffdb"
    cleaned = clean_text("x\ud800y\udfffz")
    cleaned.encode("utf-8")  # must not raise
    assert cleaned.startswith("x") and cleaned.endswith("z") and len(cleaned) == 5
    assert "\ud800" not in cleaned and "\udfff" not in cleaned
    assert clean_text("עברית ✓ 😀") == "עברית ✓ 😀"  # valid unicode is untouched


# (st.text never yields lone surrogates; a list of characters does)
@given(st.lists(st.characters(exclude_categories=()) | st.sampled_from("\x00\ud800\udfffé"), max_size=40).map("".join))
def test_clean_text_is_storable_and_leaves_clean_text_alone(value: str) -> None:
    cleaned = clean_text(value)
    cleaned.encode("utf-8")  # never raises
    assert "\x00" not in cleaned and len(cleaned) == len(value)
    storable = "\x00" not in value and not any(0xD800 <= ord(c) <= 0xDFFF for c in value)
    assert (cleaned == value) == storable


def test_nul_and_surrogates_in_labels_are_replaced() -> None:
    # json.dumps escapes these, exactly as a Go sender could: "\u0000" and "\ud800".
    a = alert(annotations={"summary": "s\x00s", "bad\x00key": "v"}, fingerprint="fp\x00")
    a["labels"]["note"] = "nul\x00here"
    a["labels"]["key\x00nul"] = "v"
    a["labels"]["surrogate"] = "lone\ud800"
    a["labels"]["k\udc00"] = "v2"
    a["generatorURL"] = "http://x/\x00"
    raw = json.dumps(payload(a)).encode("ascii")
    assert b"\\u0000" in raw and b"\\ud800" in raw
    parsed = parse_body(raw).alerts[0]
    texts = [parsed.fingerprint, parsed.generator_url]
    for mapping in (parsed.labels, parsed.annotations):
        texts.extend(mapping.keys())
        texts.extend(mapping.values())
    for text in texts:
        assert "\x00" not in text
        text.encode("utf-8")  # no lone surrogate left
    assert parsed.labels["note"] == "nul\ufffdhere"
    assert parsed.labels["key\ufffdnul"] == "v"
    assert parsed.annotations["summary"] == "s\ufffds"
    assert parsed.annotations["bad\ufffdkey"] == "v"
    assert parsed.fingerprint == "fp\ufffd"
    assert parsed.labels["surrogate"].startswith("lone")
    assert len([k for k in parsed.labels if k.startswith("k") and k != "key\ufffdnul"]) == 1


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "utf-16", "utf-16-le", "utf-16-be", "utf-32"])
def test_unstorable_strings_are_cleaned_in_every_json_encoding(encoding: str) -> None:
    # (the parser skips cleaning for UTF-8 bodies without a \u escape or 0xED byte; the others must not slip by)
    a = alert()
    a["labels"]["note"] = "nul\x00here"
    a["annotations"] = {"lone": "s\ud800"}
    parsed = parse_body(json.dumps(payload(a)).encode(encoding, "surrogatepass")).alerts[0]
    assert parsed.labels["note"] == "nul\ufffdhere"
    parsed.annotations["lone"].encode("utf-8")


def test_a_lone_surrogate_as_raw_utf8_bytes_is_cleaned() -> None:
    body = json.dumps(payload(alert())).encode().replace(b'"summary": "', b'"summary": "\xed\xa0\x80', 1)
    assert b"\xed\xa0\x80" in body and b"\\u" not in body
    annotations = parse_body(body).alerts[0].annotations
    assert annotations["summary"].startswith("?")
    annotations["summary"].encode("utf-8")


def test_clean_utf8_labels_are_kept_as_sent() -> None:
    a = alert()
    a["labels"]["team"] = "équipe ✓ 😀 한국어"
    parsed = parse_body(json.dumps(payload(a), ensure_ascii=False).encode()).alerts[0]
    assert parsed.labels == a["labels"]


def test_nul_in_envelope_strings_is_replaced() -> None:
    n = parse(payload(alert(), receiver="r\x00", externalURL="http://am\x00", groupLabels={"a\x00": "b\x00"}))
    assert n.details["receiver"] == "r\ufffd"
    assert n.external_url == "http://am\ufffd"
    assert n.details["group_labels"] == {"a\ufffd": "b\ufffd"}


def test_huge_values_and_many_labels_parse() -> None:
    labels = {f"label_{i}": f"value {i}" for i in range(2000)}
    a = alert(annotations={"description": "d" * 100_000})
    a["labels"].update(labels)
    a["labels"]["big"] = "v" * 5000
    a["labels"]["rtl"] = "\u202eעברית العربية\u202c"
    parsed = parse(payload(a)).alerts[0]
    assert len(parsed.labels) == 2000 + 3 + 2
    assert parsed.labels["big"] == "v" * 5000
    assert parsed.labels["rtl"] == "\u202eעברית العربية\u202c"
    assert len(parsed.annotations["description"]) == 100_000


# --- durations --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30s", timedelta(seconds=30)),
        ("5m", timedelta(minutes=5)),
        ("1h", timedelta(hours=1)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("12h", timedelta(hours=12)),
        ("2d", timedelta(days=2)),
        ("1w", timedelta(days=7)),
        ("250ms", timedelta(milliseconds=250)),
        ("1.5h", timedelta(minutes=90)),
        ("1d2h3m4s", timedelta(days=1, hours=2, minutes=3, seconds=4)),
        (" 5m ", timedelta(minutes=5)),
        ("0s", timedelta(0)),
        (90, timedelta(seconds=90)),
        (2.5, timedelta(seconds=2.5)),
    ],
)
def test_parse_duration(text: Any, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "  ",
        "5",
        "m",
        "5x",
        "5 m",
        "1h 30m",
        "-5m",
        "5m-",
        "h1",
        "1.5",
        "five minutes",
        "5M",
        "1h30",
        True,
        -1,
        None,
        [1],
        {"m": 5},
    ],
)
def test_bad_durations_raise_value_error(bad: Any) -> None:
    with pytest.raises(ValueError):
        parse_duration(bad)


@pytest.mark.parametrize(
    ("delta", "text"),
    [
        (timedelta(seconds=45), "45s"),
        (timedelta(minutes=12, seconds=5), "12m"),
        (timedelta(hours=3, minutes=5), "3h 5m"),
        (timedelta(hours=3), "3h"),
        (timedelta(days=2, hours=4), "2d 4h"),
        (timedelta(days=2), "2d"),
        (timedelta(seconds=-5), "0s"),
    ],
)
def test_format_duration(delta: timedelta, text: str) -> None:
    assert format_duration(delta) == text
