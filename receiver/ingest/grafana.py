"""Grafana-managed alerting's webhook contact point (payload version "1") as typed alerts: a pure parser.

Grafana's alerting is built on Alertmanager's, and its webhook body is Alertmanager's (receiver, status,
alerts with labels, annotations, startsAt, endsAt, generatorURL, fingerprint; groupLabels, commonLabels,
externalURL, groupKey, truncatedAlerts) plus Grafana's own fields: at the top `orgId`, `state` ("alerting"
or "ok"), `title` and `message` (rendered text, deprecated by Grafana), and per alert `values` (the numbers
of the rule's expressions), `valueString`, and links `dashboardURL`, `panelURL`, `silenceURL`, `imageURL`.
So the shared fields go through the Alertmanager parser's rules, and an alert is the same `Alert` a
Prometheus alert is: mapped and correlated the same way, by its labels.

Grafana's links and values become annotations of the alert (stored with the member, shown as evidence):
`dashboard_url`, `panel_url`, `silence_url`, `image_url` and `value`. The rule's own annotation of the same
name wins. A link is kept only when it is an http(s) URL of at most MAX_LINK characters; the page and Slack
check links again when they show them, because annotations from any sender can hold anything.
`externalURL` (Grafana's root URL) is kept in `details` only: the receiver's `external_url` builds
Alertmanager UI links, which Grafana does not serve.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from ..model import Alert, Notification, clean_text
from . import alertmanager
from .sender import PayloadError, Sender, decode_json

SUPPORTED_VERSION = "1"
SENDER = "grafana"
MAX_LINK = 4096
MAX_VALUE_TEXT = 1000  # characters of the `value` annotation; a rule with many expressions is cut short
# Grafana's field -> the annotation it becomes
LINK_FIELDS = {
    "dashboardURL": "dashboard_url",
    "panelURL": "panel_url",
    "silenceURL": "silence_url",
    "imageURL": "image_url",
}
VALUE_ANNOTATION = "value"


def parse_body(body: bytes) -> Notification:
    """Decode and parse a webhook body."""
    data, needs_cleaning = decode_json(body)
    return parse_notification(data, clean=needs_cleaning)


def parse_notification(data: Any, *, clean: bool = True) -> Notification:
    data = alertmanager.check_version(data, SUPPORTED_VERSION, "Grafana webhook")
    org_id = data.get("orgId")
    if org_id is not None and (isinstance(org_id, bool) or not isinstance(org_id, int)):
        raise PayloadError('"orgId" must be an integer')
    state = alertmanager.optional_str(data, "state")
    title = alertmanager.optional_str(data, "title")
    alertmanager.optional_str(data, "message")  # rendered text for people; checked, not kept
    notification = alertmanager.parse_group(data, SENDER, parse_alert, clean=clean)
    details = {
        **notification.details,
        "org_id": org_id,
        "state": state[:32],
        "title": title[:200],
        "external_url": notification.external_url,
    }
    return dataclasses.replace(notification, external_url="", details=details)


def parse_alert(index: int, raw: Any, *, clean: bool = True) -> Alert:
    """One alert: Alertmanager's fields, then Grafana's links and values as annotations."""
    alert = alertmanager.parse_alert(index, raw, clean=clean)
    extra: dict[str, str] = {}
    for name, annotation in LINK_FIELDS.items():
        link = _link(raw, name)
        if link:
            extra[annotation] = clean_text(link)
    value = _value_text(raw)
    if value:
        extra[VALUE_ANNOTATION] = clean_text(value)
    if not extra:
        return alert
    return dataclasses.replace(alert, annotations={**extra, **alert.annotations})


def _link(raw: dict[str, Any], name: str) -> str:
    value = raw.get(name)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ValueError(f'"{name}" must be a string')
    value = value.strip()
    if len(value) > MAX_LINK or not value.lower().startswith(("http://", "https://")):
        return ""
    return value


def _value_text(raw: dict[str, Any]) -> str:
    """`A=2.47355e+09, B=0` from `values` as Grafana's default message shows them, else `valueString`."""
    values = raw.get("values")
    value_string = raw.get("valueString")
    if value_string is not None and not isinstance(value_string, str):
        raise ValueError('"valueString" must be a string')
    if values is not None:
        if not isinstance(values, dict):
            raise ValueError('"values" must be an object of numbers')
        parts = []
        for key, number in values.items():
            if isinstance(number, bool) or not isinstance(number, int | float):
                raise ValueError(f'"values" must be an object of numbers ({clean_text(key)[:64]!r} is not)')
            parts.append(f"{key}={_number(number)}")
        if parts:
            return _cut(", ".join(parts))
    return _cut(value_string or "")


def _number(value: int | float) -> str:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return f"{value:.6g}"


def _cut(text: str) -> str:
    return text if len(text) <= MAX_VALUE_TEXT else text[: MAX_VALUE_TEXT - 1] + "\N{HORIZONTAL ELLIPSIS}"


GRAFANA = Sender(
    name=SENDER,
    path="/webhook/grafana",
    parse=parse_body,
    title="Grafana-managed alerting (webhook contact point, version 1)",
)
