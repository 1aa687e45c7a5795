"""Configuration: one optional YAML file plus environment variables, validated once at start.

Every section is a frozen dataclass. An unknown key or a bad value raises ConfigError naming the
file, the line and the key. Secrets are never written in the file itself: the file names an
environment variable (`*_env`) or a file (`*_file`) that holds them.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import yaml

from . import rules as rules_mod
from .timeutil import parse_duration

DEFAULT_PORT = 9095


class ConfigError(Exception):
    """The configuration is not valid."""


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


@dataclass(frozen=True)
class Target:
    """Where a notification goes. `id` is safe to show; `url` is a secret."""

    id: str
    type: str  # slack | webhook
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


@dataclass(frozen=True)
class DeliveryConfig:
    timeout: timedelta = timedelta(seconds=10)
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
    trusted_proxies: tuple[str, ...] = ()
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
class Config:
    host: str = "0.0.0.0"
    port: int = DEFAULT_PORT
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
    """A parsed YAML document that remembers the line of every key, for error messages."""

    def __init__(self, source: str, text: str):
        self.source = source
        self.lines: dict[str, int] = {}
        try:
            node = yaml.compose(text, Loader=yaml.SafeLoader)
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f"{source}:{mark.line + 1}" if mark else source
            raise ConfigError(f"{where}: not valid YAML: {getattr(e, 'problem', e)}") from None
        self.data = self._convert(node, "") if node is not None else {}

    def _convert(self, node: yaml.Node, path: str) -> Any:
        self.lines[path] = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            out: dict[str, Any] = {}
            for key_node, value_node in node.value:
                key = str(self._scalar(key_node, path))
                child = f"{path}.{key}" if path else key
                if key in out:
                    raise ConfigError(f"{self.source}:{key_node.start_mark.line + 1}: {child}: duplicate key")
                self.lines[child] = key_node.start_mark.line + 1
                out[key] = self._convert(value_node, child)
            return out
        if isinstance(node, yaml.SequenceNode):
            return [self._convert(item, f"{path}[{i}]") for i, item in enumerate(node.value)]
        return self._scalar(node, path)

    def _scalar(self, node: yaml.Node, path: str) -> Any:
        # Tags and implicit types are resolved here, after compose: `!!int abc`, `2024-13-01` or an unsafe
        # tag fail now, and must fail with the line like every other bad value.
        try:
            return yaml.SafeLoader(" ").construct_object(node)
        except (yaml.YAMLError, ValueError, TypeError, OverflowError) as e:
            reason = getattr(e, "problem", None) or e
            where = f"{self.source}:{node.start_mark.line + 1}"
            raise ConfigError(f"{where}: {path or '<top>'}: not a valid value: {reason}") from None

    def error(self, path: str, reason: str) -> ConfigError:
        probe = path
        while probe and probe not in self.lines:
            probe = probe.rsplit(".", 1)[0] if "." in probe else ""
        line = self.lines.get(probe)
        where = f"{self.source}:{line}" if line else self.source
        return ConfigError(f"{where}: {path}: {reason}")


def _sections(doc: _Doc, value: Any, path: str, what: str) -> list[_Section]:
    """A list of mappings (absent: empty), each read as a _Section named `path[i]`."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise doc.error(path, f"expected a list of {what}")
    return [_Section(doc, item, f"{path}[{i}]") for i, item in enumerate(value)]


class _Section:
    """Reads one mapping of the document, rejecting keys nobody asked for."""

    def __init__(self, doc: _Doc, value: Any, path: str):
        self.doc, self.path = doc, path
        if value is None:
            value = {}
        if not isinstance(value, dict):
            raise doc.error(path or "<top>", "expected a mapping")
        self.value: dict[str, Any] = value
        self.used: set[str] = set()

    def key(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name

    def get(self, name: str, convert: Callable[[Any], Any], default: Any) -> Any:
        self.used.add(name)
        if name not in self.value or self.value[name] is None:
            return default
        try:
            return convert(self.value[name])
        except (ValueError, TypeError, rules_mod.RuleError) as e:
            raise self.doc.error(self.key(name), str(e)) from None

    def section(self, name: str) -> _Section:
        self.used.add(name)
        return _Section(self.doc, self.value.get(name), self.key(name))

    def secret(self, name: str, env: Mapping[str, str]) -> Secret | None:
        """`<name>_env` names an environment variable, `<name>_file` a file; inline values are refused."""
        self.used.update({name, f"{name}_env", f"{name}_file"})
        if name in self.value:
            raise self.doc.error(
                self.key(name), f"secrets are not written in the config; use {name}_env or {name}_file"
            )
        env_name = self.value.get(f"{name}_env")
        file_name = self.value.get(f"{name}_file")
        if env_name and file_name:
            raise self.doc.error(self.key(f"{name}_env"), f"set {name}_env or {name}_file, not both")
        if env_name:
            if not isinstance(env_name, str):
                raise self.doc.error(self.key(f"{name}_env"), "expected an environment variable name")
            value = env.get(env_name)
            if not value:
                raise self.doc.error(self.key(f"{name}_env"), f"environment variable {env_name} is not set")
            return Secret(value)
        if file_name:
            return Secret(_read_secret_file(self.doc, self.key(f"{name}_file"), str(file_name)))
        return None

    def finish(self) -> None:
        for name in self.value:
            if name not in self.used:
                raise self.doc.error(self.key(name), "unknown key")


def _read_secret_file(doc: _Doc, path: str, file_name: str) -> str:
    try:
        value = Path(file_name).read_text(encoding="utf-8").strip()
    except OSError as e:
        raise doc.error(path, f"cannot read {file_name}: {e.strerror}") from None
    if not value:
        raise doc.error(path, f"{file_name} is empty")
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


def _byte_size(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    if isinstance(value, str):
        text = value.strip().upper().replace(" ", "")
        for suffix, factor in (("KIB", 1024), ("MIB", 1024**2), ("GIB", 1024**3), ("KB", 1000), ("MB", 1000**2),
                               ("GB", 1000**3), ("B", 1)):
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
            raise doc.error(s.key("name"), f"rule name {name!r} is used twice")
        names.add(name)
        matchers = s.get("match", _matchers, None)
        if matchers is None:
            raise doc.error(s.key("match"), "a rule needs matchers (use match: [] to match everything)")
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
            raise doc.error(s.key("name"), "an owner needs a name")
        if name in owners:
            raise doc.error(s.key("name"), f"owner {name!r} is defined twice")
        targets: list[Target] = []
        slack = s.secret("slack_url", env)
        if slack is not None:
            targets.append(Target(f"{name}/slack", "slack", _checked_url(doc, s.key("slack_url_env"), slack)))
        s.used.add("webhooks")
        for j, h in enumerate(_sections(doc, s.value.get("webhooks"), s.key("webhooks"), "webhooks")):
            url = h.secret("url", env)
            if url is None:
                raise doc.error(h.key("url_env"), "a webhook needs url_env or url_file")
            targets.append(Target(f"{name}/webhook-{j + 1}", "webhook", _checked_url(doc, h.key("url_env"), url)))
            h.finish()
        matchers = s.get("match", _matchers, None)
        s.finish()
        owners[name] = Owner(name, tuple(targets), matchers)
    return owners


def _checked_url(doc: _Doc, path: str, url: Secret) -> Secret:
    if not url.value.startswith(("http://", "https://")):
        raise doc.error(path, "the URL must start with http:// or https:// (its value is not shown)")
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
            if after is None:
                raise doc.error(st.key("after"), "a step needs after: (a duration)")
            notify = st.get("notify", _names, ("owner",))
            st.finish()
            if parsed and after <= parsed[-1].after:
                raise doc.error(st.key("after"), "steps must be in increasing order of after")
            parsed.append(Step(after, notify))
        steps = tuple(parsed)
    repeat = s.section("repeat") if s.value.get("repeat") is not None else None
    repeat_every, repeat_max = (default.repeat_every, default.repeat_max) if steps_raw is None else (None, 0)
    if repeat is not None:
        repeat_every = repeat.get("every", _duration, None)
        repeat_max = repeat.get("max", _positive_int, 3)
        repeat.finish()
        if repeat_every is None or repeat_every.total_seconds() <= 0:
            raise doc.error(repeat.key("every"), "repeat needs every: (a positive duration)")
        if not steps:
            raise doc.error(repeat.key("every"), "repeat repeats the last step; add steps first")
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
    import ipaddress

    users = []
    s.used.add("users")
    for u in _sections(doc, s.value.get("users"), s.key("users"), "{name, password_hash}"):
        name = u.get("name", _string, None)
        inline = u.get("password_hash", _string, None)  # a hash is not the password; it may be inline
        u.used.update({"password_hash_env", "password_hash_file"})
        from_env = u.value.get("password_hash_env")
        from_file = u.value.get("password_hash_file")
        u.finish()
        if from_env:
            inline = env.get(str(from_env))
        elif from_file:
            inline = _read_secret_file(doc, u.key("password_hash_file"), str(from_file))
        if not name or not inline:
            raise doc.error(u.path, "a user needs a name and password_hash (receiver hash-password)")
        if not inline.startswith("scrypt$") or inline.count("$") != 5:
            raise doc.error(u.key("password_hash"), "not a hash made by `receiver hash-password`")
        users.append(User(name, Secret(inline)))
    proxy = s.section("proxy_auth") if s.value.get("proxy_auth") is not None else None
    header, trusted = None, ()
    if proxy is not None:
        header = proxy.get("header", _string, "X-Forwarded-User")
        trusted = tuple(proxy.get("trusted_proxies", _cidrs, ()))
        proxy.finish()
        if not trusted:
            raise doc.error(proxy.key("trusted_proxies"), "list the proxy addresses allowed to set the header")
        for cidr in trusted:
            ipaddress.ip_network(cidr, strict=False)
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


def _cidrs(value: Any) -> tuple[str, ...]:
    import ipaddress

    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError("expected a list of addresses or networks such as 10.0.0.0/8")
    for v in value:
        try:
            ipaddress.ip_network(v, strict=False)
        except ValueError:
            raise ValueError(f"{v!r} is not an address or network") from None
    return tuple(value)


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
    return parse_config(text, source=source, env=env)


def parse_config(text: str, source: str = "<string>", env: Mapping[str, str] | None = None) -> Config:
    env = os.environ if env is None else env
    doc = _Doc(source, text)
    top = _Section(doc, doc.data, "")

    listen = top.section("listen")
    host = listen.get("host", _string, "0.0.0.0")
    port = listen.get("port", _port, DEFAULT_PORT)
    listen.finish()

    external_url = top.get("external_url", _string, "").rstrip("/")
    data_dir = top.get("data_dir", _string, None)

    db = top.section("database")
    db_url = db.secret("url", env)
    if db_url is None and env.get("DATABASE_URL"):
        db_url = Secret(env["DATABASE_URL"])
    database = DatabaseConfig(
        url=db_url,
        pool_min=db.get("pool_min", _positive_int, 1),
        pool_max=db.get("pool_max", _positive_int, 8),
        connect_timeout=db.get("connect_timeout", lambda v: _duration(v).total_seconds(), 5.0),
        max_ingest_transactions=db.get("max_ingest_transactions", _positive_int, 4),
    )
    db.finish()
    if database.pool_min > database.pool_max:
        raise doc.error("database.pool_min", "must not exceed database.pool_max")

    wh = top.section("webhook")
    token = wh.secret("token", env)
    if token is None and env.get("RECEIVER_WEBHOOK_TOKEN"):
        token = Secret(env["RECEIVER_WEBHOOK_TOKEN"])
    basic = None
    if wh.value.get("basic_auth") is not None:
        ba = wh.section("basic_auth")
        username = ba.get("username", _string, None)
        password = ba.secret("password", env)
        ba.finish()
        if not username or password is None:
            raise doc.error("webhook.basic_auth", "needs username and password_env or password_file")
        basic = BasicAuth(username, password)
    else:
        wh.used.add("basic_auth")
    webhook = WebhookConfig(
        token=token,
        basic_auth=basic,
        max_body_bytes=wh.get("max_body_bytes", _byte_size, WebhookConfig.max_body_bytes),
    )
    wh.finish()

    corr = top.section("correlation")
    correlation = CorrelationConfig(
        reopen_window=corr.get("reopen_window", _duration, CorrelationConfig.reopen_window),
        stale_after=corr.get("stale_after", _duration, CorrelationConfig.stale_after),
    )
    corr.finish()

    top.used.update({"rules", "owners"})
    data = doc.data if isinstance(doc.data, dict) else {}
    rules = _rules(doc, data.get("rules"))
    default_owner = top.get("default_owner", _string, rules_mod.DEFAULT_OWNER)
    owners = _owners(doc, data.get("owners"), env)
    if default_owner not in owners:
        slack = env.get("RECEIVER_SLACK_WEBHOOK_URL")
        targets = (Target(f"{default_owner}/slack", "slack", Secret(slack)),) if slack else ()
        owners[default_owner] = Owner(default_owner, targets)
    for i, rule in enumerate(rules):
        if rule.owner and rule.owner not in owners:
            raise doc.error(f"rules[{i}].owner", f"no owner named {rule.owner!r} in owners")

    esc = top.section("escalation")
    policies_section = esc.section("policies")
    policies = {
        sev: _policy(doc, policies_section.value.get(sev), policies_section.key(sev), DEFAULT_POLICIES[sev])
        for sev in rules_mod.SEVERITIES
    }
    policies_section.used.update(rules_mod.SEVERITIES)
    policies_section.finish()
    for sev, policy in policies.items():
        for j, step in enumerate(policy.steps):
            for name in step.notify:
                if name != "owner" and name not in owners:
                    raise doc.error(f"escalation.policies.{sev}.steps[{j}].notify", f"no owner named {name!r}")
    ack_timeout = esc.get("ack_timeout", _duration, None)
    escalation = EscalationConfig(
        interval=esc.get("interval", _duration, EscalationConfig.interval),
        ack_timeout=ack_timeout if ack_timeout and ack_timeout.total_seconds() > 0 else None,
        policies=policies,
    )
    esc.finish()

    dl = top.section("delivery")
    delivery = DeliveryConfig(
        timeout=dl.get("timeout", _duration, DeliveryConfig.timeout),
        max_age=dl.get("max_age", _duration, DeliveryConfig.max_age),
        initial_backoff=dl.get("initial_backoff", _duration, DeliveryConfig.initial_backoff),
        max_backoff=dl.get("max_backoff", _duration, DeliveryConfig.max_backoff),
        max_retry_after=dl.get("max_retry_after", _duration, DeliveryConfig.max_retry_after),
        batch_size=dl.get("batch_size", _positive_int, DeliveryConfig.batch_size),
    )
    dl.finish()

    ln = top.section("links")
    links = LinksConfig(signing_secret=ln.secret("signing_secret", env), ttl=ln.get("ttl", _duration, LinksConfig.ttl))
    ln.finish()

    top.used.add("api_tokens")
    api_tokens = []
    for t in _sections(doc, data.get("api_tokens"), "api_tokens", "{name, token_env | token_file}"):
        name = t.get("name", _string, None)
        token = t.secret("token", env)
        t.finish()
        if not name or token is None:
            raise doc.error(t.path, "an API token needs a name and token_env or token_file")
        api_tokens.append(ApiToken(name, token))

    ui = _ui(doc, top.section("ui"), env)

    mt = top.section("metrics")
    metrics_token = mt.secret("token", env)
    if metrics_token is None and env.get("RECEIVER_METRICS_TOKEN"):
        metrics_token = Secret(env["RECEIVER_METRICS_TOKEN"])
    metrics = MetricsConfig(
        token=metrics_token,
        per_route=mt.get("per_route", _bool, False),
        route_cap=mt.get("route_cap", _positive_int, 20),
    )
    mt.finish()
    top.finish()

    return Config(
        host=host,
        port=port,
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
        api_tokens=tuple(api_tokens),
        ui=ui,
        metrics=metrics,
        source=source,
    )
