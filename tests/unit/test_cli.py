"""The command line (receiver.cli) in process: check-config, explain, hash-password, and the one-line errors of
start-up (a database that cannot be reached). tests/test_startup.py runs the real processes."""

from __future__ import annotations

import io
import json
import logging
import sys
from pathlib import Path
from typing import Any

import pytest

from receiver.cli import main, one_line_errors
from tests.helpers import alert, free_port, payload


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("RECEIVER_CONFIG", "RECEIVER_WEBHOOK_TOKEN", "DATABASE_URL", "RECEIVER_SLACK_WEBHOOK_URL"):
        monkeypatch.delenv(name, raising=False)


def explained(text: str) -> dict[str, str]:
    """The indented `name value` lines of one explained label set."""
    fields = {}
    for line in text.splitlines():
        if line.startswith("  "):
            name, _, value = line.strip().partition(" ")
            fields[name] = value.strip()
    return fields


# --- check-config -------------------------------------------------------------------------------------


def test_check_config_accepts_a_good_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "good.yaml"
    path.write_text(
        "listen:\n  port: 9095\nrules:\n  - name: latency\n    match: ['alertname=~\".*Latency\"']\n    kind: latency\n"
    )
    assert main(["check-config", str(path)]) == 0
    out, err = capsys.readouterr()
    assert out.strip() == f"{path}: ok (1 rules)"
    assert "error" not in err


def test_check_config_accepts_an_empty_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "empty.yaml"
    path.write_text("")
    assert main(["check-config", str(path)]) == 0
    assert "ok (0 rules)" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("listen:\n  port: 9095\nwebhook:\n  tokn: x\n", "{path}:4: webhook.tokn: unknown key"),
        ("webhook:\n  token: inline\n", "{path}:2: webhook.token: secrets are not written in the config"),
        ("correlation:\n  reopen_window: soon\n", "{path}:2: correlation.reopen_window: "),
        ("listen:\n  port: !!int abc\n", "{path}:2: listen.port: not a valid value"),
        ("rules:\n  - match: ['a=~\"(\"']\n", "{path}:2: rules[0].match: "),
        ("listen: [\n", "{path}:2: not valid YAML"),
    ],
)
def test_check_config_refuses_a_bad_file_with_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, expected: str
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    assert main(["check-config", str(path)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("receiver: configuration error: ")
    assert expected.format(path=path) in err
    assert "Traceback" not in err
    assert "inline" not in err  # the refused secret is not echoed


def test_check_config_on_a_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-config", str(tmp_path / "absent.yaml")]) == 2
    assert "cannot read the config file" in capsys.readouterr().err


# --- explain ------------------------------------------------------------------------------------------


def test_explain_a_label_set(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["explain", "alertname=HighLatency", "method=GET", "path=/x"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == "alertname=HighLatency, method=GET, path=/x"
    fields = explained(out)
    assert fields["rule"] == "default"
    assert fields["route"] == "GET /x"
    assert fields["kind"] == "latency"
    assert fields["severity"] == "warning"
    assert fields["incident_key"] == "GET /x::latency"
    assert fields["owner"] == "default"


def test_explain_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["explain", "--json", "alertname=HighErrorRate", "service=checkout", "severity=page"]) == 0
    [result] = json.loads(capsys.readouterr().out)
    assert result == {
        "labels": {"alertname": "HighErrorRate", "service": "checkout", "severity": "page"},
        "rule": "default",
        "route": "checkout",
        "kind": "error_rate",
        "severity": "critical",
        "incident_key": "checkout::error_rate",
        "owner": "default",
    }


def test_explain_keeps_equals_signs_in_values(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["explain", "--json", "alertname=DiskFull", "route=/a?b=c"]) == 0
    [result] = json.loads(capsys.readouterr().out)
    assert result["labels"]["route"] == "/a?b=c"
    assert result["incident_key"] == "/a?b=c::disk_full"


CONFIG = """\
owners:
  - name: team-checkout
rules:
  - name: checkout-latency
    match: '{alertname=~"High.*Latency", service="checkout"}'
    route: "checkout {path}"
    severity: critical
    owner: team-checkout
"""


def test_explain_with_a_config_shows_the_rule(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "receiver.yaml"
    cfg.write_text(CONFIG)
    args = ["alertname=HighLatency", "service=checkout", "method=GET", "path=/cart"]
    assert main(["explain", "--config", str(cfg), *args]) == 0
    fields = explained(capsys.readouterr().out)
    assert fields["rule"] == "checkout-latency"
    assert fields["route"] == "checkout /cart"
    assert fields["kind"] == "latency"
    assert fields["severity"] == "critical"
    assert fields["incident_key"] == "checkout /cart::latency"
    assert fields["owner"] == "team-checkout"
    # a label set the rule does not match falls through to the defaults
    assert main(["explain", "--config", str(cfg), "alertname=HighLatency", "service=payments"]) == 0
    fields = explained(capsys.readouterr().out)
    assert (fields["rule"], fields["route"], fields["owner"]) == ("default", "payments", "default")


def test_explain_reads_receiver_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = tmp_path / "receiver.yaml"
    cfg.write_text(CONFIG)
    monkeypatch.setenv("RECEIVER_CONFIG", str(cfg))
    assert main(["explain", "alertname=HighLatency", "service=checkout", "path=/p"]) == 0
    assert explained(capsys.readouterr().out)["rule"] == "checkout-latency"


def test_explain_a_webhook_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    body = payload(
        alert(),
        alert(alertname="HighErrorRate", method="POST", path="/orders", severity="critical"),
        alert(alertname="KubePodCrashLooping", method="", path="", job="kubelet"),
        {"status": "firing"},  # invalid: not explained, not fatal
    )
    path = tmp_path / "webhook.json"
    path.write_text(json.dumps(body))
    assert main(["explain", "--json", str(path)]) == 0
    results: list[dict[str, Any]] = json.loads(capsys.readouterr().out)
    assert [(r["rule"], r["incident_key"], r["severity"]) for r in results] == [
        ("default", "GET /notifications/recent::latency", "warning"),
        ("default", "POST /orders::error_rate", "critical"),
        ("default", "kubelet::kube_pod_crash_looping", "warning"),
    ]
    assert main(["explain", str(path)]) == 0
    out = capsys.readouterr().out
    assert out.count("  incident_key ") == 3
    assert "GET /notifications/recent::latency" in out


def test_explain_a_webhook_file_with_a_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "receiver.yaml"
    cfg.write_text(CONFIG)
    path = tmp_path / "webhook.json"
    path.write_text(json.dumps(payload(alert(service="checkout"))))
    assert main(["explain", "--json", "--config", str(cfg), str(path)]) == 0
    [result] = json.loads(capsys.readouterr().out)
    assert result["rule"] == "checkout-latency"
    assert result["incident_key"] == "checkout /notifications/recent::latency"


def test_explain_a_bad_webhook_file(tmp_path: Path) -> None:
    path = tmp_path / "webhook.json"
    path.write_text('{"version": "3", "alerts": []}')
    with pytest.raises(SystemExit) as info:
        main(["explain", str(path)])
    assert "unsupported" in str(info.value.code)
    with pytest.raises(SystemExit) as info:
        main(["explain", str(tmp_path / "absent.json")])
    assert "cannot read" in str(info.value.code)


def test_explain_a_bad_label(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["explain", "alertname=X", "=value"])
    assert "not name=value" in str(info.value.code)


def test_explain_with_a_bad_config_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("rules:\n  - match: 5\n")
    assert main(["explain", "--config", str(cfg), "alertname=X"]) == 2
    assert f"{cfg}:2: rules[0].match" in capsys.readouterr().err


def test_pool_warnings_lose_their_traceback_not_their_reason() -> None:
    try:
        raise ConnectionRefusedError(111, "Connect call failed ('127.0.0.1', 5432)")
    except OSError:
        record = logging.LogRecord(
            "asyncpg.pool", logging.WARNING, __file__, 1, "Failed to restore %s", ("x",), sys.exc_info()
        )
    assert one_line_errors(record)
    line = logging.Formatter("%(levelname)s %(message)s").format(record)
    assert (
        line == "WARNING Failed to restore x (ConnectionRefusedError: [Errno 111] Connect call failed "
        "('127.0.0.1', 5432))"
    )
    assert "Traceback" not in line


def test_errors_keep_their_traceback() -> None:
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        record = logging.LogRecord("asyncpg.pool", logging.ERROR, __file__, 1, "bad", None, sys.exc_info())
    assert one_line_errors(record)
    assert "Traceback" in logging.Formatter().format(record)


# --- hash-password --------------------------------------------------------------------------------------


class _Pipe(io.StringIO):
    """Standard input that is a pipe, not a terminal (`echo pw | receiver hash-password`)."""

    def isatty(self) -> bool:
        return False


def test_hash_password_reads_a_piped_password_without_stdin_flag(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from receiver.web.users import verify_password

    monkeypatch.setattr(sys, "stdin", _Pipe("correct horse\n"))
    assert main(["hash-password"]) == 0
    out = capsys.readouterr()
    lines = out.out.splitlines()
    assert len(lines) == 1 and lines[0].startswith("scrypt$")
    assert verify_password("correct horse", lines[0])
    assert out.err == ""


def test_hash_password_with_nothing_piped_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "stdin", _Pipe(""))
    assert main(["hash-password"]) == 1
    out = capsys.readouterr()
    assert out.out == ""
    assert out.err.strip().splitlines() == [
        "receiver: no password on standard input (pipe one line, or run in a terminal to be asked)"
    ]


# --- start-up: the database -------------------------------------------------------------------------------


def test_startup_wait_is_a_config_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from receiver.config import parse_config

    assert parse_config("", env={}).database.startup_wait == 60
    assert parse_config("database:\n  startup_wait: 2m\n", env={}).database.startup_wait == 120
    cfg = tmp_path / "c.yaml"
    cfg.write_text("database:\n  startup_wait: soon\n")
    assert main(["check-config", str(cfg)]) == 2
    assert "database.startup_wait" in capsys.readouterr().err


def test_an_unreachable_database_is_one_line_saying_what_to_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("database:\n  startup_wait: 0s\n")
    monkeypatch.setenv("DATABASE_URL", f"postgresql://receiver:pw-do-not-show@127.0.0.1:{free_port()}/receiver")
    assert main(["migrate", "--config", str(cfg)]) == 1
    out = capsys.readouterr()
    assert "pw-do-not-show" not in out.out + out.err
    assert out.err.strip().splitlines() == [
        "receiver: cannot connect to the database at postgresql://receiver:***@127.0.0.1:"
        f"{out.err.split('127.0.0.1:')[1].split('/')[0]}/receiver: connection refused; check that PostgreSQL is "
        "running and that the URL's host and port are right (database.startup_wait sets how long to wait)"
    ]


@pytest.mark.parametrize(
    "url", ["localhost:5432", "mysql://u:pw-do-not-show@db/receiver", "postgresql://u:pw-do-not-show@db:99999/receiver"]
)
def test_a_database_url_that_can_never_work_fails_at_once(
    url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATABASE_URL", url)
    assert main(["migrate"]) == 1  # the default startup_wait is 60 s: this must not wait at all
    err = capsys.readouterr().err
    assert "pw-do-not-show" not in err
    [line] = err.strip().splitlines()
    assert line.startswith("receiver: the database URL ")
    assert "postgresql://user:password@host:5432/database" in line
