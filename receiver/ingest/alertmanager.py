"""Alertmanager's webhook (version "4") as typed alerts: a pure parser, no aiohttp, no database.

A payload that can never be valid raises PayloadError (the caller answers 400). A single bad alert
inside a good payload is reported in `Notification.invalid` and the rest are kept. Unknown fields are
ignored, because newer Alertmanagers add some (`notification_reason`, `routeLabels`). Strings are made
safe for PostgreSQL here: NUL bytes and lone surrogates, which `text` and `jsonb` reject, are replaced.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from ..model import Alert, AlertStatus, InvalidAlert, Notification, clean_text
from ..timeutil import parse_rfc3339
from .sender import PayloadError, Sender, decode_json

SUPPORTED_VERSION = "4"
ALERT_STATUSES = tuple(AlertStatus)
SENDER = "alertmanager"
# asyncpg writes exactly these two instants as PostgreSQL 'infinity' and '-infinity' and reads them back as
# *naive* datetime.max and datetime.min, which then cannot be compared with aware times: keep inside them.
_LATEST = datetime(9999, 12, 31, 23, 59, 59, 999998, tzinfo=UTC)
_EARLIEST = datetime(1, 1, 1, 0, 0, 0, 1, tzinfo=UTC)


def parse_body(body: bytes) -> Notification:
    """Decode and parse a webhook body."""
    data, needs_cleaning = decode_json(body)
    return parse_notification(data, clean=needs_cleaning)


def parse_notification(data: Any, *, clean: bool = True) -> Notification:
    data = check_version(data, SUPPORTED_VERSION, "Alertmanager webhook")
    return parse_group(data, SENDER, parse_alert, clean=clean)


def check_version(data: Any, supported: str, what: str) -> dict[str, Any]:
    """`data` as a JSON object whose "version" is `supported` (a string, as every sender sends it)."""
    if not isinstance(data, dict):
        raise PayloadError("expected a JSON object")
    version = data.get("version")
    if version is None:
        raise PayloadError(f'missing "version"; this receiver accepts {what} version "{supported}"')
    if version != supported:
        raise PayloadError(f'unsupported "version" {str(version)[:32]!r}; expected "{supported}"')
    return data


def parse_group(
    data: dict[str, Any], sender: str, parse_one: Callable[..., Alert], *, clean: bool = True
) -> Notification:
    """The fields Alertmanager's webhook and the formats derived from it share: the alerts, each parsed by
    `parse_one(index, raw, clean=...)`, and the group's receiver, status, labels, external URL and key."""
    alerts_raw = data.get("alerts")
    if not isinstance(alerts_raw, list):
        raise PayloadError('"alerts" must be a list')
    receiver = optional_str(data, "receiver")
    status = optional_str(data, "status")
    external_url = optional_str(data, "externalURL")
    group_key = optional_str(data, "groupKey")
    truncated = data.get("truncatedAlerts", 0)
    if truncated is None:
        truncated = 0
    if isinstance(truncated, bool) or not isinstance(truncated, int) or truncated < 0:
        raise PayloadError('"truncatedAlerts" must be a non-negative integer')
    group_labels = _optional_labels(data, "groupLabels")
    common_labels = _optional_labels(data, "commonLabels")
    _optional_labels(data, "commonAnnotations")

    alerts: list[Alert] = []
    invalid: list[InvalidAlert] = []
    for index, raw in enumerate(alerts_raw):
        try:
            alerts.append(parse_one(index, raw, clean=clean))
        except ValueError as e:
            fp = raw.get("fingerprint") if isinstance(raw, dict) else None
            invalid.append(InvalidAlert(index, clean_text(fp)[:64] if isinstance(fp, str) else None, str(e)))
    if alerts_raw and not alerts:
        reasons = "; ".join(f"alerts[{i.index}]: {i.reason}" for i in invalid[:5])
        raise PayloadError(f"no valid alert in the payload: {reasons}")
    return Notification(
        sender=sender,
        alerts=alerts,
        invalid=invalid,
        external_url=external_url,
        truncated=truncated,
        details={
            "receiver": receiver,
            "status": status,
            "group_key": group_key,
            "group_labels": group_labels,
            "common_labels": common_labels,
        },
    )


def parse_alert(index: int, raw: Any, *, clean: bool = True) -> Alert:
    if not isinstance(raw, dict):
        raise ValueError("an alert must be a JSON object")
    status = raw.get("status")
    if status not in ALERT_STATUSES:
        raise ValueError('"status" must be "firing" or "resolved"')
    labels = _labels(raw.get("labels"), "labels", required=True, clean=clean)
    if not labels:
        raise ValueError('"labels" must not be empty')
    annotations = _labels(raw.get("annotations"), "annotations", required=False, clean=clean)
    starts_raw = raw.get("startsAt")
    if not isinstance(starts_raw, str):
        raise ValueError('"startsAt" must be an RFC 3339 timestamp')
    starts_at = _timestamp("startsAt", starts_raw)
    if starts_at is None:
        raise ValueError('"startsAt" must be set')
    ends_raw = raw.get("endsAt")
    if ends_raw is None or ends_raw == "":
        ends_at = None
    elif isinstance(ends_raw, str):
        ends_at = _timestamp("endsAt", ends_raw)
    else:
        raise ValueError('"endsAt" must be an RFC 3339 timestamp')
    generator_url = raw.get("generatorURL") or ""
    if not isinstance(generator_url, str):
        raise ValueError('"generatorURL" must be a string')
    fingerprint = raw.get("fingerprint")
    if fingerprint is None or fingerprint == "":
        fingerprint = label_fingerprint(labels)
    elif not isinstance(fingerprint, str):
        raise ValueError('"fingerprint" must be a string')
    elif len(fingerprint) > 128:
        raise ValueError('"fingerprint" is longer than 128 characters')
    return Alert(
        index=index,
        fingerprint=clean_text(fingerprint),
        status=status,
        labels=labels,
        annotations=annotations,
        starts_at=starts_at,
        ends_at=ends_at,
        generator_url=clean_text(generator_url),
    )


def _timestamp(name: str, value: str) -> datetime | None:
    try:
        parsed = parse_rfc3339(value)
    except ValueError as e:  # name the field: "startsAt" and "endsAt" fail with the same message
        raise ValueError(f'"{name}": {clean_text(str(e))}') from None
    if parsed is not None and not _EARLIEST <= parsed <= _LATEST:
        parsed = min(max(parsed, _EARLIEST), _LATEST)
    return parsed


def label_fingerprint(labels: dict[str, str]) -> str:
    """A stable stand-in for senders that omit the fingerprint (Alertmanager always sends one)."""
    canonical = json.dumps(sorted(labels.items()), ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]


def _labels(value: Any, name: str, *, required: bool, clean: bool = True) -> dict[str, str]:
    """A JSON object of strings; `clean=False` when the body is known to hold no unstorable string."""
    if value is None:
        if required:
            raise ValueError(f'"{name}" is required')
        return {}
    if not isinstance(value, dict):
        raise ValueError(f'"{name}" must be an object of strings')
    for key, val in value.items():
        if not isinstance(val, str):
            raise ValueError(f'"{name}" must be an object of strings ({clean_text(key)[:64]!r} is not)')
    if not clean:
        return value
    return {clean_text(key): clean_text(val) for key, val in value.items()}


def optional_str(data: dict[str, Any], name: str) -> str:
    """A top-level string field; absent or null is empty."""
    value = data.get(name)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise PayloadError(f'"{name}" must be a string')
    return clean_text(value)


def _optional_labels(data: dict[str, Any], name: str) -> dict[str, str]:
    try:
        return _labels(data.get(name), name, required=False)
    except ValueError as e:
        raise PayloadError(str(e)) from None


ALERTMANAGER = Sender(
    name=SENDER, path="/webhook", parse=parse_body, title="Prometheus Alertmanager (webhook version 4)"
)
