"""Configuration: one optional YAML file plus environment variables, validated once at start.

Every section is a frozen dataclass. Every unknown key and bad value of a file is reported at once, in
one ConfigError whose lines each name the file, the line and the key. Secrets are never written in the
file itself: the file names an environment variable (`*_env`) or a file (`*_file`, relative to the
config file) that holds them.
"""

from __future__ import annotations

import contextlib
import difflib
import ipaddress
import os
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import yaml

from . import rules as rules_mod
from .model import TargetType
from .notify import mail, pagerduty
from .timeutil import parse_duration

DEFAULT_PORT = 9095
# an address as SMTP takes it in an envelope and a header: one @, no spaces, controls, quotes or separators
_ADDRESS = re.compile(r"[^\s@<>,;:\"()\[\]\\]{1,64}@[A-Za-z0-9.-]{1,253}")


class ConfigError(Exception):
    """The configuration is not valid: one or more `file:line: key: reason` lines, in `errors`."""

    def __init__(self, *errors: str, line: int = 0):
        super().__init__("\n".join(errors))
        self.errors = list(errors)
        self.line = line  # where the first error is, to sort errors found out of order


@dataclass(frozen=True)
class Secret:
    """A secret value that never prints itself."""

    value: str

    def __repr__(self) -> str:
        return "Secret('********')"

    __str__ = __repr__


@dataclass(frozen=True)
class BasicAuth:
    username: str
    password: Secret


@dataclass(frozen=True)
class ListenConfig:
    """Bounds on what one client can hold open (see receiver/server.py)."""

    header_timeout: timedelta = timedelta(seconds=10)  # request line and headers, from the first byte
    body_timeout: timedelta = timedelta(seconds=30)  # the whole body, from the end of the headers
    idle_timeout: timedelta = timedelta(seconds=60)  # a kept-alive connection with no request
    max_connections: int = 512


@dataclass(frozen=True)
class WebhookConfig:
    token: Secret | None = None
    basic_auth: BasicAuth | None = None
    max_body_bytes: int = 16 * 1024 * 1024


@dataclass(frozen=True)
class CorrelationConfig:
    reopen_window: timedelta = timedelta(minutes=5)
    stale_after: timedelta = timedelta(hours=12)


@dataclass(frozen=True)
class DatabaseConfig:
    url: Secret | None = None
    pool_min: int = 1
    pool_max: int = 8
    connect_timeout: float = 5.0
    max_ingest_transactions: int = 4
    # alerts at most in one ingest transaction (group commit, receiver/ingest/batcher.py); a bigger webhook
    # is written alone
    max_ingest_batch_alerts: int = 2000
    # how long start-up waits for the database (an embedded server starting, an external one accepting
    # connections) before giving up with one line that says what to check
    startup_wait: float = 60.0


@dataclass(frozen=True)
class Target:
    """Where a notification goes. `id` is safe to show; `url` is a secret: the channel's destination, a URL, or
    a JSON document for channels that need more than one (pagerduty, email), written by the channel's module."""

    id: str
    type: str  # a TargetType value: the channel (receiver/notify/registry.py)
    url: Secret


@dataclass(frozen=True)
class Owner:
    name: str
    targets: tuple[Target, ...] = ()
    matchers: tuple[rules_mod.Matcher, ...] | None = None


@dataclass(frozen=True)
class Step:
    after: timedelta
    notify: tuple[str, ...] = ("owner",)


@dataclass(frozen=True)
class Policy:
    notify_on_open: bool = True
    steps: tuple[Step, ...] = ()
    repeat_every: timedelta | None = None
    repeat_max: int = 0
    notify_on_resolve: bool = True


DEFAULT_POLICIES = {
    "critical": Policy(
        steps=(Step(timedelta(minutes=5)), Step(timedelta(minutes=15))),
        repeat_every=timedelta(minutes=30),
        repeat_max=6,
    ),
    "warning": Policy(steps=(Step(timedelta(minutes=30)),), repeat_every=timedelta(hours=2), repeat_max=3),
}


@dataclass(frozen=True)
class EscalationConfig:
    interval: timedelta = timedelta(seconds=2)
    ack_timeout: timedelta | None = None
    policies: Mapping[str, Policy] = field(default_factory=lambda: dict(DEFAULT_POLICIES))

    @property
    def resolve_notice_severities(self) -> frozenset[str]:
        """The severities whose policy tells whoever was paged when an incident resolves."""
        return frozenset(s for s, p in self.policies.items() if p.notify_on_resolve)


@dataclass(frozen=True)
class DeliveryConfig:
    # far above what a slow Slack takes: an attempt cut off by it has an unknown outcome and may repeat a page
    timeout: timedelta = timedelta(seconds=30)
    max_age: timedelta = timedelta(hours=1)
    initial_backoff: timedelta = timedelta(seconds=2)
    max_backoff: timedelta = timedelta(minutes=5)
    max_retry_after: timedelta = timedelta(hours=1)
    batch_size: int = 50


@dataclass(frozen=True)
class LinksConfig:
    signing_secret: Secret | None = None
    ttl: timedelta = timedelta(hours=24)


@dataclass(frozen=True)
class ApiToken:
    name: str
    token: Secret


@dataclass(frozen=True)
class User:
    name: str
    password_hash: Secret


@dataclass(frozen=True)
class UiConfig:
    users: tuple[User, ...] = ()
    require_login: bool | None = None  # None: required once users or proxy auth exist
    refresh: timedelta = timedelta(seconds=30)
    proxy_header: str | None = None
    trusted_proxies: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()  # parsed once, here
    page_size: int = 100

    @property
    def login_required(self) -> bool:
        if self.require_login is not None:
            return self.require_login
        return bool(self.users or self.proxy_header)


@dataclass(frozen=True)
class MetricsConfig:
    token: Secret | None = None
    per_route: bool = False
    route_cap: int = 20


@dataclass(frozen=True)
class ReconcileConfig:
    interval: timedelta = timedelta(minutes=1)
    grace: timedelta = timedelta(minutes=10)  # absent from every peer in every check this long: resolved


@dataclass(frozen=True)
class AlertmanagerConfig:
    """The Alertmanager cluster whose webhook points at us: asked to reconcile, told of silences."""

    urls: tuple[str, ...]  # every peer; never holds credentials (refused), so it may be shown
    receiver: str  # the Alertmanager receiver whose webhook is ours
    token: Secret | None = None
    basic_auth: BasicAuth | None = None
    timeout: timedelta = timedelta(seconds=5)
    reconcile: ReconcileConfig = field(default_factory=ReconcileConfig)
    silences: bool = False  # silencing an incident also silences its alerts in Alertmanager


@dataclass(frozen=True)
class Heartbeat:
    """A sender that must keep pinging (Alertmanager's Watchdog, a cron job): no ping for `every + grace` opens
    an incident (receiver/heartbeats.py). An alert matching `matchers` is a ping and never an incident itself."""

    name: str
    matchers: tuple[rules_mod.Matcher, ...]  # empty: pinged only through the API
    every: timedelta
    grace: timedelta
    owner: str
    severity: str  # a Severity value

    @property
    def allowed(self) -> timedelta:
        """How long it may stay silent."""
        return self.every + self.grace

    def matches(self, labels: Mapping[str, str]) -> bool:
        return bool(self.matchers) and all(m.matches(labels) for m in self.matchers)


@dataclass(frozen=True)
class Config:
    host: str = "0.0.0.0"
    port: int = DEFAULT_PORT
    listen: ListenConfig = field(default_factory=ListenConfig)
    external_url: str = ""
    data_dir: str | None = None
    database: DatabaseConfig = field(default_factory=DatabaseConfig)
    webhook: WebhookConfig = field(default_factory=WebhookConfig)
    correlation: CorrelationConfig = field(default_factory=CorrelationConfig)
    rules: tuple[rules_mod.Rule, ...] = ()
    default_owner: str = rules_mod.DEFAULT_OWNER
    owners: Mapping[str, Owner] = field(default_factory=dict)
    escalation: EscalationConfig = field(default_factory=EscalationConfig)
    delivery: DeliveryConfig = field(default_factory=DeliveryConfig)
    links: LinksConfig = field(default_factory=LinksConfig)
    api_tokens: tuple[ApiToken, ...] = ()
    ui: UiConfig = field(default_factory=UiConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    alertmanager: AlertmanagerConfig | None = None  # None: no reconciliation, no silences in Alertmanager
    heartbeats: tuple[Heartbeat, ...] = ()
    source: str = "<defaults>"

    def map(self, labels: Mapping[str, str]) -> rules_mod.Mapping:
        """Route, kind, severity, owner and rule for one label set."""
        m = rules_mod.map_labels(labels, self.rules, self.default_owner)
        rule = next((r for r in self.rules if r.name == m.rule), None)
        owner = self.owner_for(labels, rule.owner if rule else None)
        return replace(m, owner=owner) if owner != m.owner else m

    def owner(self, name: str) -> Owner:
        return self.owners.get(name) or Owner(name)

    def owner_for(self, labels: Mapping[str, str], rule_owner: str | None) -> str:
        """A rule's explicit owner, else the first owner whose matchers match, else the default."""
        if rule_owner:
            return rule_owner
        for owner in self.owners.values():
            if owner.matchers is not None and all(m.matches(labels) for m in owner.matchers):
                return owner.name
        return self.default_owner


# --- loading -------------------------------------------------------------------------------------


class _Doc:
    """A parsed YAML document that remembers the line of every key, and collects every error found in it."""

    def __init__(self, source: str, text: str, base_dir: Path | None = None):
        self.source = source
        self.base_dir = base_dir
        self.lines: dict[str, int] = {}
        self.errors: list[tuple[int, str]] = []
        try:
            node = yaml.compose(text, Loader=yaml.SafeLoader)
        except yaml.YAMLError as e:  # nothing after a syntax error can be trusted: the one error it is
            mark = getattr(e, "problem_mark", None)
            where = f"{source}:{mark.line + 1}" if mark else source
            raise ConfigError(f"{where}: not valid YAML: {getattr(e, 'problem', e)}") from None
        self.data = self._convert(node, "") if node is not None else {}

    def _convert(self, node: yaml.Node, path: str) -> Any:
        # A key's own line wins over its value's: `webhok:` holding a block mapping is reported where it is
        # written, not on the line where its mapping starts.
        self.lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            out: dict[str, Any] = {}
            for key_node, value_node in node.value:
                key = str(self._scalar(key_node, path))
                child = f"{path}.{key}" if path else key
                if key in out:
                    self.errors.append(
                        (
                            key_node.start_mark.line + 1,
                            f"{self.source}:{key_node.start_mark.line + 1}: {child}: duplicate key",
                        )
                    )
                    continue
                self.lines[child] = key_node.start_mark.line + 1
                out[key] = self._convert(value_node, child)
            return out
        if isinstance(node, yaml.SequenceNode):
            return [self._convert(item, f"{path}[{i}]") for i, item in enumerate(node.value)]
        return self._scalar(node, path)

    def _scalar(self, node: yaml.Node, path: str) -> Any:
        # Tags and implicit types are resolved here, after compose: `!!int abc`, `2024-13-01` or an unsafe
        # tag fail now, and must fail with the line like every other bad value (the key then counts as unset).
        try:
            return yaml.SafeLoader(" ").construct_object(node)
        except (yaml.YAMLError, ValueError, TypeError, OverflowError) as e:
            reason = getattr(e, "problem", None) or e
            line = node.start_mark.line + 1
            self.errors.append((line, f"{self.source}:{line}: {path or '<top>'}: not a valid value: {reason}"))
            return None

    def _where(self, path: str) -> tuple[int, str]:
        probe = path
        while probe and probe not in self.lines:
            probe = probe.rsplit(".", 1)[0] if "." in probe else ""
        line = self.lines.get(probe, 0)
        return line, f"{self.source}:{line}" if line else self.source

    def error(self, path: str, reason: str) -> ConfigError:
        """An error to raise, for a check that cannot go on; `report` is for every other."""
        line, where = self._where(path)
        return ConfigError(f"{where}: {path}: {reason}", line=line)

    def report(self, path: str, reason: str) -> None:
        """Note an error and go on, so that one run lists every error of the file."""
        line, where = self._where(path)
        self.errors.append((line, f"{where}: {path}: {reason}"))

    @contextlib.contextmanager
    def collecting(self) -> Iterator[None]:
        """A ConfigError raised inside is noted like a reported one; checking goes on after the block."""
        try:
            yield
        except ConfigError as e:
            self.errors.extend((e.line, error) for error in e.errors)

    def raise_errors(self) -> None:
        if self.errors:
            ordered = sorted(dict.fromkeys(self.errors), key=lambda e: e[0])  # by line, each error once
            raise ConfigError(*(message for _, message in ordered), line=ordered[0][0])

    def path_of(self, file_name: str) -> Path:
        """A file named in the config; a relative name is relative to the config file, as in Prometheus."""
        return (self.base_dir or Path()) / file_name


def _sections(doc: _Doc, value: Any, path: str, what: str) -> list[_Section]:
    """A list of mappings (absent: empty), each read as a _Section named `path[i]`."""
    if value is None:
        return []
    if not isinstance(value, list):
        doc.report(path, f"expected a list of {what}")
        return []
    return [_Section(doc, item, f"{path}[{i}]") for i, item in enumerate(value)]


class _Section:
    """Reads one mapping of the document, rejecting keys nobody asked for."""

    def __init__(self, doc: _Doc, value: Any, path: str):
        self.doc, self.path = doc, path
        if value is None:
            value = {}
        if not isinstance(value, dict):
            doc.report(path or "<top>", "expected a mapping")
            value = {}
        self.value: dict[str, Any] = value
        self.used: set[str] = set()
        self.refused: set[str] = set()  # accepted only to say why not (inline secrets): never suggested

    def key(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name

    def get(self, name: str, convert: Callable[[Any], Any], default: Any) -> Any:
        self.used.add(name)
        if name not in self.value or self.value[name] is None:
            return default
        try:
            return convert(self.value[name])
        except (ValueError, TypeError, rules_mod.RuleError) as e:
            self.doc.report(self.key(name), str(e))
            return default

    def section(self, name: str) -> _Section:
        self.used.add(name)
        return _Section(self.doc, self.value.get(name), self.key(name))

    def secret(self, name: str, env: Mapping[str, str]) -> Secret | None:
        """`<name>_env` names an environment variable, `<name>_file` a file; inline values are refused.

        A variable or file the config names must hold a value: a secret asked for and missing is an
        error, never silently no secret."""
        self.used.update({name, f"{name}_env", f"{name}_file"})
        self.refused.add(name)
        if name in self.value:
            self.doc.report(self.key(name), f"secrets are not written in the config; use {name}_env or {name}_file")
            return None
        env_name = self.value.get(f"{name}_env")
        file_name = self.value.get(f"{name}_file")
        if env_name and file_name:
            self.doc.report(self.key(f"{name}_env"), f"set {name}_env or {name}_file, not both")
            return None
        if env_name:
            if not isinstance(env_name, str):
                self.doc.report(self.key(f"{name}_env"), "expected an environment variable name")
                return None
            value = env.get(env_name)
            if not value:
                self.doc.report(self.key(f"{name}_env"), f"environment variable {env_name} is not set")
                return None
            return Secret(value)
        if file_name:
            secret = _read_secret_file(self.doc, self.key(f"{name}_file"), str(file_name))
            return Secret(secret) if secret is not None else None
        return None

    def names_secret(self, name: str) -> bool:
        """The section names this secret some way (so a missing value was reported by `secret`)."""
        return any(key in self.value for key in (name, f"{name}_env", f"{name}_file"))

    def finish(self) -> None:
        known = sorted(self.used - self.refused)
        for name in self.value:
            if name not in self.used:
                near = difflib.get_close_matches(str(name), known, n=1)
                hint = f"; did you mean {near[0]}?" if near else ""
                self.doc.report(self.key(name), f"unknown key{hint}")


def _read_secret_file(doc: _Doc, path: str, file_name: str) -> str | None:
    try:
        value = doc.path_of(file_name).read_text(encoding="utf-8").strip()
    except OSError as e:
        doc.report(path, f"cannot read {file_name}: {e.strerror}")
        return None
    if not value:
        doc.report(path, f"{file_name} is empty")
        return None
    return value


def _positive_int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError("expected a positive integer")
    return value


def _port(value: Any) -> int:
    port = _positive_int(value)
    if port > 65535:
        raise ValueError("expected a port number between 1 and 65535")
    return port


def _string(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError("expected a non-empty string")
    return value


def _duration(value: Any) -> timedelta:
    return parse_duration(value)


def _positive_duration(value: Any) -> timedelta:
    duration = parse_duration(value)
    if duration.total_seconds() <= 0:
        raise ValueError("expected a duration above 0s")
    return duration


def _byte_size(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    if isinstance(value, str):
        text = value.strip().upper().replace(" ", "")
        for suffix, factor in (
            ("KIB", 1024),
            ("MIB", 1024**2),
            ("GIB", 1024**3),
            ("KB", 1000),
            ("MB", 1000**2),
            ("GB", 1000**3),
            ("B", 1),
        ):
            if text.endswith(suffix) and text[: -len(suffix)].isdigit():
                size = int(text[: -len(suffix)]) * factor
                if size > 0:
                    return size
    raise ValueError("expected a size such as 16MiB or a number of bytes")


def _severity(value: Any) -> str:
    if value not in rules_mod.SEVERITIES:
        raise ValueError(f"expected one of {', '.join(rules_mod.SEVERITIES)}")
    return str(value)


def _rules(doc: _Doc, value: Any) -> tuple[rules_mod.Rule, ...]:
    out = []
    names: set[str] = set()
    for i, s in enumerate(_sections(doc, value, "rules", "rules")):
        name = s.get("name", _string, f"rule-{i + 1}")
        if name in names or name == rules_mod.DEFAULT_RULE:
            doc.report(s.key("name"), f"rule name {name!r} is used twice")
        names.add(name)
        matchers = s.get("match", _matchers, None)
        if matchers is None:
            if "match" not in s.value or s.value["match"] is None:  # a bad one was reported by get
                doc.report(s.key("match"), "a rule needs matchers (use match: [] to match everything)")
            matchers = ()
        rule = rules_mod.Rule(
            name=name,
            matchers=matchers,
            route=s.get("route", _string, None),
            kind=s.get("kind", _string, None),
            severity=s.get("severity", _severity, None),
            owner=s.get("owner", _string, None),
        )
        s.finish()
        out.append(rule)
    return tuple(out)


def _matchers(value: Any) -> tuple[rules_mod.Matcher, ...]:
    if isinstance(value, str):
        return rules_mod.parse_matchers(value)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return rules_mod.parse_matchers(value)
    if isinstance(value, dict):  # the shorthand {label: value} means equality
        return tuple(rules_mod.Matcher(str(k), "=", str(v)) for k, v in value.items())
    raise ValueError('expected a list of matchers such as ["alertname=~\\"High.*\\"", "service=\\"checkout\\""]')


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError("expected true or false")
    return value


def _owners(doc: _Doc, value: Any, env: Mapping[str, str]) -> dict[str, Owner]:
    owners: dict[str, Owner] = {}
    for s in _sections(doc, value, "owners", "owners"):
        name = s.get("name", _string, None)
        if not name:
            if "name" not in s.value or s.value["name"] is None:
                doc.report(s.key("name"), "an owner needs a name")
            name = f"{s.path}.name"  # checks go on under a name no rule can refer to
        if name in owners:
            doc.report(s.key("name"), f"owner {name!r} is defined twice")
        targets: list[Target] = []
        slack = s.secret("slack_url", env)
        if slack is not None:
            targets.append(Target(f"{name}/slack", "slack", _checked_url(doc, s.key("slack_url_env"), slack)))
        s.used.add("webhooks")
        for j, h in enumerate(_sections(doc, s.value.get("webhooks"), s.key("webhooks"), "webhooks")):
            url = h.secret("url", env)
            if url is None and not h.names_secret("url"):
                doc.report(h.key("url_env"), "a webhook needs url_env or url_file")
            if url is not None:
                targets.append(Target(f"{name}/webhook-{j + 1}", "webhook", _checked_url(doc, h.key("url_env"), url)))
            h.finish()
        teams = s.secret("teams_url", env)
        if teams is not None:
            targets.append(Target(f"{name}/teams", TargetType.TEAMS, _checked_url(doc, s.key("teams_url_env"), teams)))
        if "pagerduty" in s.value:
            targets += _pagerduty(doc, s.section("pagerduty"), env, name)
        s.used.add("pagerduty")
        if "email" in s.value:
            targets += _email(doc, s.section("email"), env, name)
        s.used.add("email")
        matchers = s.get("match", _matchers, None)
        s.finish()
        owners[name] = Owner(name, tuple(targets), matchers)
    return owners


def _pagerduty(doc: _Doc, p: _Section, env: Mapping[str, str], owner: str) -> list[Target]:
    """An owner's PagerDuty service (Events API v2): the routing key is a secret, the URL is not."""
    key = p.secret("routing_key", env)
    if key is None and not p.names_secret("routing_key"):
        doc.report(p.key("routing_key_env"), "pagerduty needs routing_key_env or routing_key_file")
    url = p.get("url", _http_url, pagerduty.EVENTS_URL)
    p.finish()
    if key is None:
        return []
    return [Target(f"{owner}/pagerduty", TargetType.PAGERDUTY, Secret(pagerduty.destination(url, key.value)))]


def _email(doc: _Doc, m: _Section, env: Mapping[str, str], owner: str) -> list[Target]:
    """An owner's email over SMTP: addresses and server are plain config, the SMTP password a secret."""
    to = m.get("to", _addresses, None)
    sender = m.get("from", _address, None)
    smtp = m.section("smtp")
    host = smtp.get("host", _string, None)
    port = smtp.get("port", _port, 587)
    starttls = smtp.get("starttls", _bool, True)
    username = smtp.get("username", _string, None)
    password = smtp.secret("password", env)
    for ok, key, reason in (
        (to or "to" in m.value, m.key("to"), "email needs to: a list of addresses"),
        (sender or "from" in m.value, m.key("from"), "email needs from: the sender's address"),
        (host or "host" in smtp.value, smtp.key("host"), "email needs the SMTP server's host"),
    ):
        if not ok:
            doc.report(key, reason)
    if username is not None and not smtp.names_secret("password"):
        doc.report(smtp.key("password_env"), "a username needs password_env or password_file")
    if username is None and password is not None:
        doc.report(smtp.key("username"), "password_env or password_file needs a username")
    smtp.finish()
    m.finish()
    if not (to and sender and host) or (username is None) != (password is None):
        return []
    where = mail.destination(
        host=host,
        port=port,
        starttls=starttls,
        username=username,
        password=password.value if password else None,
        sender=sender,
        to=to,
    )
    return [Target(f"{owner}/email", TargetType.EMAIL, Secret(where))]


def _address(value: Any) -> str:
    if not isinstance(value, str) or not _ADDRESS.fullmatch(value):
        raise ValueError("expected an email address such as oncall@example.com")
    return value


def _addresses(value: Any) -> list[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value:
        raise ValueError("expected a list of email addresses")
    return [_address(v) for v in value]


def _http_url(value: Any) -> str:
    if not isinstance(value, str) or not value.startswith(("http://", "https://")):
        raise ValueError("expected a URL starting with http:// or https://")
    return value


def _checked_url(doc: _Doc, path: str, url: Secret) -> Secret:
    if not url.value.startswith(("http://", "https://")):
        doc.report(path, "the URL must start with http:// or https:// (its value is not shown)")
    return url


def _policy(doc: _Doc, value: Any, path: str, default: Policy) -> Policy:
    s = _Section(doc, value, path)
    steps_raw = s.value.get("steps")
    s.used.add("steps")
    steps = default.steps
    if steps_raw is not None:
        parsed: list[Step] = []
        for st in _sections(doc, steps_raw, s.key("steps"), "steps"):
            after = st.get("after", _duration, None)
            notify = st.get("notify", _names, ("owner",))
            st.finish()
            if after is None:
                if "after" not in st.value or st.value["after"] is None:
                    doc.report(st.key("after"), "a step needs after: (a duration)")
                continue
            if parsed and after <= parsed[-1].after:
                doc.report(st.key("after"), "steps must be in increasing order of after")
                continue
            parsed.append(Step(after, notify))
        steps = tuple(parsed)
    repeat = s.section("repeat") if s.value.get("repeat") is not None else None
    repeat_every, repeat_max = (default.repeat_every, default.repeat_max) if steps_raw is None else (None, 0)
    if repeat is not None:
        repeat_every = repeat.get("every", _duration, None)
        repeat_max = repeat.get("max", _positive_int, 3)
        repeat.finish()
        if repeat_every is None or repeat_every.total_seconds() <= 0:
            doc.report(repeat.key("every"), "repeat needs every: (a positive duration)")
            repeat_every, repeat_max = None, 0
        elif not steps:
            doc.report(repeat.key("every"), "repeat repeats the last step; add steps first")
    else:
        s.used.add("repeat")
    policy = Policy(
        notify_on_open=s.get("notify_on_open", _bool, default.notify_on_open),
        steps=steps,
        repeat_every=repeat_every,
        repeat_max=repeat_max,
        notify_on_resolve=s.get("notify_on_resolve", _bool, default.notify_on_resolve),
    )
    s.finish()
    return policy


def _names(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
        raise ValueError('expected a list of owner names, or "owner" for the incident\'s own owner')
    return tuple(value)


def _ui(doc: _Doc, s: _Section, env: Mapping[str, str]) -> UiConfig:
    users = []
    s.used.add("users")
    for u in _sections(doc, s.value.get("users"), s.key("users"), "{name, password_hash}"):
        name = u.get("name", _string, None)
        inline = u.get("password_hash", _string, None)  # a hash is not the password; it may be inline
        where = "password_hash"
        if "password_hash" not in u.value and u.names_secret("password_hash"):
            where = "password_hash_env" if "password_hash_env" in u.value else "password_hash_file"
            secret = u.secret("password_hash", env)  # reports an unset variable or a missing file
            inline = secret.value if secret is not None else None
            if secret is None:
                u.finish()
                continue
        u.used.update({"password_hash_env", "password_hash_file"})
        u.finish()
        if not name or not inline:
            if u.value.get("name") is None or not u.names_secret("password_hash"):
                doc.report(u.path, "a user needs a name and password_hash (receiver hash-password)")
            continue
        if not inline.startswith("scrypt$") or inline.count("$") != 5:
            doc.report(u.key(where), "not a hash made by `receiver hash-password`")
            continue
        users.append(User(name, Secret(inline)))
    proxy = s.section("proxy_auth") if s.value.get("proxy_auth") is not None else None
    header, trusted = None, ()
    if proxy is not None:
        header = proxy.get("header", _string, "X-Forwarded-User")
        trusted = tuple(proxy.get("trusted_proxies", _cidrs, ()))
        proxy.finish()
        if not trusted and proxy.value.get("trusted_proxies") is None:  # a bad list was reported by get
            doc.report(proxy.key("trusted_proxies"), "list the proxy addresses allowed to set the header")
    else:
        s.used.add("proxy_auth")
    ui = UiConfig(
        users=tuple(users),
        require_login=s.get("require_login", _bool, None),
        refresh=s.get("refresh", _duration, UiConfig.refresh),
        proxy_header=header,
        trusted_proxies=trusted,
        page_size=s.get("page_size", _positive_int, UiConfig.page_size),
    )
    s.finish()
    return ui


def _cidrs(value: Any) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError("expected a list of addresses or networks such as 10.0.0.0/8")
    networks = []
    for v in value:
        try:
            networks.append(ipaddress.ip_network(v, strict=False))
        except ValueError:
            raise ValueError(f"{v!r} is not an address or network") from None
    return tuple(networks)


def load_config(path: str | os.PathLike[str] | None = None, env: Mapping[str, str] | None = None) -> Config:
    """Load and validate the config file (optional) and the environment."""
    env = os.environ if env is None else env
    if path is None:
        source, text = "<defaults>", ""
    else:
        source = str(path)
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as e:
            raise ConfigError(f"{source}: cannot read the config file: {e.strerror}") from None
    return parse_config(text, source=source, env=env, base_dir=Path(path).parent if path is not None else None)


def parse_config(
    text: str, source: str = "<string>", env: Mapping[str, str] | None = None, base_dir: Path | None = None
) -> Config:
    """Validate a whole config text; a ConfigError lists every error found, sorted by line.

    `base_dir` is where relative `*_file` names are found (the config file's directory); None: the
    working directory."""
    env = os.environ if env is None else env
    doc = _Doc(source, text, base_dir)
    config = None
    with doc.collecting():  # a check that still raises adds its error to those found before it
        config = _parse(doc, env, source)
    doc.raise_errors()
    assert config is not None  # no error was collected, so _parse returned
    return config


def _parse(doc: _Doc, env: Mapping[str, str], source: str) -> Config:
    """The whole document, one section after the other; each reports its errors and returns its defaults."""
    top = _Section(doc, doc.data, "")
    host, port, limits = _listen(top.section("listen"))
    external_url = top.get("external_url", _string, "").rstrip("/")
    data_dir = top.get("data_dir", _string, None)
    database = _database(doc, top.section("database"), env)
    webhook = _webhook(doc, top.section("webhook"), env)
    correlation = _correlation(top.section("correlation"))
    top.used.update({"rules", "owners"})
    rules = _rules(doc, top.value.get("rules"))
    default_owner = top.get("default_owner", _string, rules_mod.DEFAULT_OWNER)
    owners = _owners_with_default(doc, top.value.get("owners"), env, default_owner)
    _check_rule_owners(doc, rules, owners)
    escalation = _escalation(doc, top.section("escalation"), owners)
    delivery = _delivery(top.section("delivery"))
    links = _links(top.section("links"), env)
    top.used.add("api_tokens")
    api_tokens = _api_tokens(doc, top.value.get("api_tokens"), env)
    ui = _ui(doc, top.section("ui"), env)
    metrics = _metrics(top.section("metrics"), env)
    top.used.add("alertmanager")
    alertmanager = _alertmanager(doc, top.section("alertmanager"), env) if "alertmanager" in top.value else None
    top.used.add("heartbeats")
    heartbeats = _heartbeats(doc, top.value.get("heartbeats"), owners, default_owner)
    top.finish()

    return Config(
        host=host,
        port=port,
        listen=limits,
        external_url=external_url,
        data_dir=data_dir,
        database=database,
        webhook=webhook,
        correlation=correlation,
        rules=rules,
        default_owner=default_owner,
        owners=owners,
        escalation=escalation,
        delivery=delivery,
        links=links,
        api_tokens=api_tokens,
        ui=ui,
        metrics=metrics,
        alertmanager=alertmanager,
        heartbeats=heartbeats,
        source=source,
    )


def _listen(s: _Section) -> tuple[str, int, ListenConfig]:
    """`listen:` holds the address (kept on Config as host and port) and the per-client bounds."""
    host = s.get("host", _string, "0.0.0.0")
    port = s.get("port", _port, DEFAULT_PORT)
    limits = ListenConfig(
        header_timeout=s.get("header_timeout", _positive_duration, ListenConfig.header_timeout),
        body_timeout=s.get("body_timeout", _positive_duration, ListenConfig.body_timeout),
        idle_timeout=s.get("idle_timeout", _positive_duration, ListenConfig.idle_timeout),
        max_connections=s.get("max_connections", _positive_int, ListenConfig.max_connections),
    )
    s.finish()
    return host, port, limits


def _database(doc: _Doc, s: _Section, env: Mapping[str, str]) -> DatabaseConfig:
    url = s.secret("url", env)
    if url is None and env.get("DATABASE_URL"):
        url = Secret(env["DATABASE_URL"])
    database = DatabaseConfig(
        url=url,
        pool_min=s.get("pool_min", _positive_int, 1),
        pool_max=s.get("pool_max", _positive_int, 8),
        connect_timeout=s.get("connect_timeout", lambda v: _duration(v).total_seconds(), 5.0),
        max_ingest_transactions=s.get("max_ingest_transactions", _positive_int, 4),
        max_ingest_batch_alerts=s.get("max_ingest_batch_alerts", _positive_int, 2000),
        startup_wait=s.get("startup_wait", lambda v: _duration(v).total_seconds(), 60.0),
    )
    s.finish()
    if database.pool_min > database.pool_max:
        doc.report("database.pool_min", "must not exceed database.pool_max")
    return database


def _webhook(doc: _Doc, s: _Section, env: Mapping[str, str]) -> WebhookConfig:
    token = s.secret("token", env)
    if token is None and env.get("RECEIVER_WEBHOOK_TOKEN"):
        token = Secret(env["RECEIVER_WEBHOOK_TOKEN"])
    webhook = WebhookConfig(
        token=token,
        basic_auth=_basic_auth(doc, s, env),
        max_body_bytes=s.get("max_body_bytes", _byte_size, WebhookConfig.max_body_bytes),
    )
    s.finish()
    return webhook


def _basic_auth(doc: _Doc, parent: _Section, env: Mapping[str, str]) -> BasicAuth | None:
    """`basic_auth: {username, password_env|password_file}` under `parent` (the webhook, alertmanager)."""
    if parent.value.get("basic_auth") is None:
        parent.used.add("basic_auth")
        return None
    s = parent.section("basic_auth")
    username = s.get("username", _string, None)
    password = s.secret("password", env)
    s.finish()
    if username and password is not None:
        return BasicAuth(username, password)
    if not (s.value.get("username") and s.names_secret("password")):  # else reported already
        doc.report(s.path, "needs username and password_env or password_file")
    return None


def _correlation(s: _Section) -> CorrelationConfig:
    correlation = CorrelationConfig(
        reopen_window=s.get("reopen_window", _duration, CorrelationConfig.reopen_window),
        stale_after=s.get("stale_after", _duration, CorrelationConfig.stale_after),
    )
    s.finish()
    return correlation


def _owners_with_default(doc: _Doc, value: Any, env: Mapping[str, str], default_owner: str) -> dict[str, Owner]:
    """`owners:`, plus the default owner when the file does not define it (its Slack URL from the environment)."""
    owners = _owners(doc, value, env)
    if default_owner not in owners:
        slack = env.get("RECEIVER_SLACK_WEBHOOK_URL")
        targets = (Target(f"{default_owner}/slack", "slack", Secret(slack)),) if slack else ()
        owners[default_owner] = Owner(default_owner, targets)
    return owners


def _check_rule_owners(doc: _Doc, rules: tuple[rules_mod.Rule, ...], owners: Mapping[str, Owner]) -> None:
    for i, rule in enumerate(rules):
        if rule.owner and rule.owner not in owners:
            doc.report(f"rules[{i}].owner", f"no owner named {rule.owner!r} in owners")


def _escalation(doc: _Doc, s: _Section, owners: Mapping[str, Owner]) -> EscalationConfig:
    """One policy per severity (a severity the file leaves out keeps its default); steps name known owners."""
    section = s.section("policies")
    policies = {
        sev: _policy(doc, section.value.get(sev), section.key(sev), DEFAULT_POLICIES[sev])
        for sev in rules_mod.SEVERITIES
    }
    section.used.update(rules_mod.SEVERITIES)
    section.finish()
    for sev, policy in policies.items():
        for j, step in enumerate(policy.steps):
            for name in step.notify:
                if name != "owner" and name not in owners:
                    doc.report(f"escalation.policies.{sev}.steps[{j}].notify", f"no owner named {name!r}")
    ack_timeout = s.get("ack_timeout", _duration, None)
    escalation = EscalationConfig(
        interval=s.get("interval", _duration, EscalationConfig.interval),
        ack_timeout=ack_timeout if ack_timeout and ack_timeout.total_seconds() > 0 else None,
        policies=policies,
    )
    s.finish()
    return escalation


def _delivery(s: _Section) -> DeliveryConfig:
    delivery = DeliveryConfig(
        timeout=s.get("timeout", _duration, DeliveryConfig.timeout),
        max_age=s.get("max_age", _duration, DeliveryConfig.max_age),
        initial_backoff=s.get("initial_backoff", _duration, DeliveryConfig.initial_backoff),
        max_backoff=s.get("max_backoff", _duration, DeliveryConfig.max_backoff),
        max_retry_after=s.get("max_retry_after", _duration, DeliveryConfig.max_retry_after),
        batch_size=s.get("batch_size", _positive_int, DeliveryConfig.batch_size),
    )
    s.finish()
    return delivery


def _links(s: _Section, env: Mapping[str, str]) -> LinksConfig:
    links = LinksConfig(signing_secret=s.secret("signing_secret", env), ttl=s.get("ttl", _duration, LinksConfig.ttl))
    s.finish()
    return links


def _api_tokens(doc: _Doc, value: Any, env: Mapping[str, str]) -> tuple[ApiToken, ...]:
    api_tokens = []
    for t in _sections(doc, value, "api_tokens", "{name, token_env | token_file}"):
        name = t.get("name", _string, None)
        token = t.secret("token", env)
        t.finish()
        if not name or token is None:
            if t.value.get("name") is None or not t.names_secret("token"):  # else reported already
                doc.report(t.path, "an API token needs a name and token_env or token_file")
            continue
        api_tokens.append(ApiToken(name, token))
    return tuple(api_tokens)


def _metrics(s: _Section, env: Mapping[str, str]) -> MetricsConfig:
    token = s.secret("token", env)
    if token is None and env.get("RECEIVER_METRICS_TOKEN"):
        token = Secret(env["RECEIVER_METRICS_TOKEN"])
    metrics = MetricsConfig(
        token=token,
        per_route=s.get("per_route", _bool, False),
        route_cap=s.get("route_cap", _positive_int, 20),
    )
    s.finish()
    return metrics


def _alertmanager(doc: _Doc, s: _Section, env: Mapping[str, str]) -> AlertmanagerConfig | None:
    """`alertmanager:`: the peers, the receiver name, how to authenticate, and what to do with them."""
    urls = s.get("urls", _peer_urls, None)
    receiver = s.get("receiver", _string, None)
    token = s.secret("token", env)
    basic_auth = _basic_auth(doc, s, env)
    if token is not None and basic_auth is not None:
        doc.report(s.key("token_env"), "set a token or basic_auth, not both")
    timeout = s.get("timeout", _positive_duration, AlertmanagerConfig.timeout)
    r = s.section("reconcile")
    reconcile = ReconcileConfig(
        interval=r.get("interval", _positive_duration, ReconcileConfig.interval),
        grace=r.get("grace", _duration, ReconcileConfig.grace),
    )
    r.finish()
    silences = s.get("silences", _bool, False)
    s.finish()
    if urls is None and s.value.get("urls") is None:
        doc.report(s.key("urls"), "list every Alertmanager peer, such as [http://alertmanager-0:9093]")
    if receiver is None and s.value.get("receiver") is None:
        doc.report(s.key("receiver"), "name the Alertmanager receiver whose webhook points at this receiver")
    if not urls or not receiver:
        return None
    return AlertmanagerConfig(
        urls=urls,
        receiver=receiver,
        token=token,
        basic_auth=basic_auth,
        timeout=timeout,
        reconcile=reconcile,
        silences=silences,
    )


def _peer_urls(value: Any) -> tuple[str, ...]:
    """Alertmanager's base URLs; without credentials in them, since they are shown on timelines."""
    import urllib.parse

    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value:
        raise ValueError("expected a list of Alertmanager URLs such as [http://alertmanager-0:9093]")
    urls = []
    for v in value:
        url = _http_url(v).rstrip("/")
        parts = urllib.parse.urlsplit(url)
        if parts.username is not None or parts.password is not None:
            raise ValueError("put credentials in token_env/token_file or basic_auth, not in a URL (not shown)")
        if not parts.hostname or parts.query or parts.fragment:
            raise ValueError(f"{url[:100]!r} is not a base URL such as http://alertmanager-0:9093")
        if url in urls:
            raise ValueError(f"{url[:100]!r} is listed twice")
        urls.append(url)
    return tuple(urls)


_HEARTBEAT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
HEARTBEAT_GRACE = timedelta(minutes=1)  # when a heartbeat leaves grace out


def _heartbeats(doc: _Doc, value: Any, owners: Mapping[str, Owner], default_owner: str) -> tuple[Heartbeat, ...]:
    """`heartbeats:`: each a name (it is in a URL, an incident key and a metric label: letters, digits, . _ -),
    matchers (optional: without them only the API pings it), every, grace, owner and severity."""
    out: list[Heartbeat] = []
    names: set[str] = set()
    for s in _sections(doc, value, "heartbeats", "heartbeats {name, match, every, grace, owner, severity}"):
        name = s.get("name", _heartbeat_name, None)
        if name is None and ("name" not in s.value or s.value["name"] is None):
            doc.report(s.key("name"), "a heartbeat needs a name")
        if name is not None and name in names:
            doc.report(s.key("name"), f"heartbeat {name!r} is defined twice")
        matchers = s.get("match", _heartbeat_matchers, ())
        every = s.get("every", _positive_duration, None)
        if every is None and ("every" not in s.value or s.value["every"] is None):
            doc.report(s.key("every"), "a heartbeat needs every: how often it pings at least (a duration)")
        grace = s.get("grace", _duration, HEARTBEAT_GRACE)  # parse_duration refuses a negative duration
        owner = s.get("owner", _string, default_owner)
        if owner not in owners:
            doc.report(s.key("owner"), f"no owner named {owner!r} in owners")
        severity = s.get("severity", _severity, "critical")
        s.finish()
        if name is None or every is None or name in names:
            continue
        names.add(name)
        out.append(Heartbeat(name, matchers, every, grace, owner, severity))
    return tuple(out)


def _heartbeat_matchers(value: Any) -> tuple[rules_mod.Matcher, ...]:
    matchers = _matchers(value)
    if not matchers:
        raise ValueError("an empty match would make every alert a ping; leave match out to ping only through the API")
    return matchers


def _heartbeat_name(value: Any) -> str:
    if not isinstance(value, str) or not _HEARTBEAT_NAME.fullmatch(value):
        raise ValueError("expected a name of letters, digits, '.', '_' or '-' (at most 63), such as prod-prometheus")
    return value
