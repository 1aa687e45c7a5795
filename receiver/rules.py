"""Mapping an alert's labels to its route, kind, severity and owner: pure rules, no I/O.

Config rules (Alertmanager-style matchers) are tried in order and the first match wins; whatever a
rule leaves unset, and every alert no rule matches, falls back to the defaults below. Nothing is dropped.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping as MappingABC
from collections.abc import Sequence
from dataclasses import dataclass

from .model import Severity

DEFAULT_RULE = "default"
DEFAULT_OWNER = "default"
SEVERITIES: tuple[str, ...] = tuple(Severity)  # least severe first
_CRITICAL = frozenset({"critical", "page", "error", "high", "crit", "fatal", "emergency"})
_ROUTE_LABELS = ("route", "handler", "endpoint", "path", "service", "job")
# A btree index entry must stay well under PostgreSQL's ~2.7 kB limit; label values are untrusted.
MAX_KEY_PART = 400

_MATCHER = re.compile(r"^\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*(.*?)\s*$")
_TEMPLATE_FIELD = re.compile(r"\{([a-zA-Z_][a-zA-Z0-9_]*)\}")

# "SLO" as a word of the alertname (HighSLOBurn, SloViolation, slo_breach), never the "slo" inside "Slow" or "Slots".
_SLO = re.compile(r"SLO(?!W)|Slo(?![a-z])|(?<![A-Za-z])slo(?![a-z])|(?i:burn.?rate|error.?budget|availability)")
_ERROR = re.compile(r"error|5xx|fail|exception", re.IGNORECASE)
_LATENCY = re.compile(r"latency|slow|duration|response.?time|p9[059]", re.IGNORECASE)


class RuleError(ValueError):
    """A matcher or a rule in the config is not valid."""


@dataclass(frozen=True)
class Matcher:
    name: str
    op: str
    value: str
    regex: re.Pattern[str] | None = None

    @classmethod
    def parse(cls, text: str) -> Matcher:
        m = _MATCHER.match(text)
        if not m:
            raise RuleError(f'{text!r} is not a matcher like name="value", name!="v", name=~"re" or name!~"re"')
        name, op, raw = m.groups()
        value = _unquote(raw)
        regex = None
        if op in ("=~", "!~"):
            try:
                regex = re.compile(value)
            except re.error as e:
                raise RuleError(f"{text!r}: bad regular expression: {e}") from None
        return cls(name, op, value, regex)

    def matches(self, labels: MappingABC[str, str]) -> bool:
        # Alertmanager semantics: a missing label is the empty string; regexes are anchored.
        actual = labels.get(self.name, "")
        if self.op == "=":
            return actual == self.value
        if self.op == "!=":
            return actual != self.value
        assert self.regex is not None
        hit = self.regex.fullmatch(actual) is not None
        return hit if self.op == "=~" else not hit

    def __str__(self) -> str:
        return f'{self.name}{self.op}"{self.value}"'


def _unquote(raw: str) -> str:
    if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "\"'":
        body = raw[1:-1]
        return re.sub(r"\\(.)", r"\1", body)
    return raw


def parse_matchers(spec: str | Sequence[str]) -> tuple[Matcher, ...]:
    """Accept a list of matchers or one string `{a="b", c=~"d"}` as Alertmanager writes them."""
    if isinstance(spec, str):
        text = spec.strip()
        if text.startswith("{") and text.endswith("}"):
            text = text[1:-1]
        parts = _split_matchers(text)
    else:
        parts = list(spec)
    return tuple(Matcher.parse(p) for p in parts if p.strip())


def _split_matchers(text: str) -> list[str]:
    parts, current, quote, escaped = [], [], "", False
    for ch in text:
        if escaped:
            current.append(ch)
            escaped = False
            continue
        if ch == "\\":
            current.append(ch)
            escaped = True
            continue
        if quote:
            if ch == quote:
                quote = ""
        elif ch in "\"'":
            quote = ch
        elif ch == ",":
            parts.append("".join(current))
            current = []
            continue
        current.append(ch)
    parts.append("".join(current))
    return parts


@dataclass(frozen=True)
class Rule:
    name: str
    matchers: tuple[Matcher, ...]
    route: str | None = None
    kind: str | None = None
    severity: str | None = None
    owner: str | None = None

    def matches(self, labels: MappingABC[str, str]) -> bool:
        return all(m.matches(labels) for m in self.matchers)


@dataclass(frozen=True, slots=True)  # slots: the ingest cache holds thousands, weighed by their bytes
class Mapping:
    route: str
    kind: str
    severity: str
    owner: str
    rule: str

    @property
    def incident_key(self) -> str:
        return f"{self.route}::{self.kind}"


def map_labels(labels: MappingABC[str, str], rules: Sequence[Rule] = (), default_owner: str = DEFAULT_OWNER) -> Mapping:
    """Route, kind, severity and owner for one label set; the first matching rule wins."""
    for rule in rules:
        if rule.matches(labels):
            route = render_route(rule.route, labels) if rule.route else None
            return Mapping(
                route=_bound(route or default_route(labels)),
                kind=_bound(rule.kind or default_kind(labels)),
                severity=rule.severity or normalise_severity(labels.get("severity")),
                owner=rule.owner or default_owner,
                rule=rule.name,
            )
    return Mapping(
        route=_bound(default_route(labels)),
        kind=_bound(default_kind(labels)),
        severity=normalise_severity(labels.get("severity")),
        owner=default_owner,
        rule=DEFAULT_RULE,
    )


def render_route(template: str, labels: MappingABC[str, str]) -> str | None:
    """Fill `{label}` fields; None when a field's label is missing or empty, so the default applies."""
    missing = False

    def field(m: re.Match[str]) -> str:
        nonlocal missing
        value = labels.get(m.group(1), "")
        if not value:
            missing = True
        return value

    rendered = _TEMPLATE_FIELD.sub(field, template)
    return None if missing else rendered


def template_fields(template: str) -> list[str]:
    return _TEMPLATE_FIELD.findall(template)


def default_route(labels: MappingABC[str, str]) -> str:
    method, path = labels.get("method"), labels.get("path")
    if method and path:
        return f"{method} {path}"
    for name in _ROUTE_LABELS:
        if labels.get(name):
            return labels[name]
    return "unknown"


def default_kind(labels: MappingABC[str, str]) -> str:
    if labels.get("kind"):
        return labels["kind"]
    name = labels.get("alertname", "")
    if not name:
        return "unknown"
    if _SLO.search(name):
        return "slo_violation"
    if _ERROR.search(name):
        return "error_rate"
    if _LATENCY.search(name):
        return "latency"
    return snake_case(name)


def snake_case(name: str) -> str:
    s = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name)
    s = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", s)
    s = re.sub(r"[^a-zA-Z0-9]+", "_", s)
    return s.strip("_").lower() or "unknown"


def normalise_severity(value: str | None) -> str:
    return "critical" if (value or "").strip().lower() in _CRITICAL else "warning"


def _bound(value: str) -> str:
    """Keep a key part index-sized (in UTF-8 bytes: the index limit is in bytes); a digest keeps distinct
    long values distinct."""
    encoded = value.encode("utf-8", "replace")
    if len(encoded) <= MAX_KEY_PART:
        return value
    digest = hashlib.sha256(encoded).hexdigest()[:16]
    head = encoded[: MAX_KEY_PART - 20].decode("utf-8", "ignore")  # never split a character
    return f"{head}…{digest}"
