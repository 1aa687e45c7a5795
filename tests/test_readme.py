"""The README's examples work verbatim.

- The configuration reference ("The file, with every key") is examples/receiver.yml, word for word; that
  file passes `receiver check-config` (a real process) once the variables and files it names exist, and
  without them lists every one of them in one run.
- The example shows every key receiver/config.py reads.
- The hand-sent curl example ("Point Alertmanager at it") runs with /usr/bin/curl against a real
  `receiver serve` process: its incident opens on a route of its own, then resolves; every key of the
  webhook's reply is documented under "Replies".
"""

from __future__ import annotations

import asyncio
import difflib
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from tests.helpers import deadline, free_port, wait_http_ready
from tests.readme import EXAMPLE_CONFIG, ROOT, code_blocks, section

CONFIG_HEADING = "The file, with every key"
CURL_HEADING = "Point Alertmanager at it"
CURL = shutil.which("curl") or "/usr/bin/curl"
ERROR_LINE = re.compile(
    r"^receiver: configuration error: (?P<file>[^:]+):(?P<line>\d+): (?P<key>[\w.\[\]]+): (?P<reason>.+)$"
)


# --- the configuration example --------------------------------------------------------------------------


def test_the_readme_config_block_is_examples_receiver_yml() -> None:
    (block,) = code_blocks(CONFIG_HEADING, "yaml")
    example = EXAMPLE_CONFIG.read_text(encoding="utf-8")
    if block != example:
        diff = "".join(
            difflib.unified_diff(
                example.splitlines(True),
                block.splitlines(True),
                "examples/receiver.yml",
                "README.md (The file, with every key)",
            )
        )
        pytest.fail(
            "README.md's configuration block and examples/receiver.yml differ; a key is added to both "
            f"(copy the block into the file, or the file into the block):\n{diff}"
        )


def named_secrets(text: str) -> tuple[dict[str, str], dict[str, str]]:
    """Every environment variable (`*_env`) and file (`*_file`) the config names, with a value that fits."""
    env: dict[str, str] = {}
    files: dict[str, str] = {}

    def value_for(key: str) -> str:
        if "url" in key:
            return f"https://hooks.example.test/{key}"
        if key.startswith("password_hash"):  # a hash of a password nobody knows
            return "scrypt$16384$8$1$VQrc4RAZgdwdNu3s3mCBwA$goXbFkoY4Bzz72XGQohAsyWUs9syD5/KBvs5quBV+AA"
        return f"secret-for-{key}"

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if isinstance(value, str) and key.endswith("_env"):
                    env[value] = value_for(key)
                elif isinstance(value, str) and key.endswith("_file"):
                    files[value] = value_for(key)
                else:
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(yaml.safe_load(text))
    if "DATABASE_URL" in env:
        env["DATABASE_URL"] = "postgresql://receiver@db.example.test:5432/receiver"
    return env, files


def check_config(path: Path, extra_env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """`python -m receiver check-config` in a clean environment: only what the test provides is set."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("RECEIVER_") and k != "DATABASE_URL" and k not in extra_env
    }
    return subprocess.run(
        [sys.executable, "-m", "receiver", "check-config", str(path)],
        env={**env, **extra_env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=deadline(60),
    )


def test_the_example_config_passes_check_config(tmp_path: Path) -> None:
    text = EXAMPLE_CONFIG.read_text(encoding="utf-8")
    config_dir = tmp_path / "etc"
    config_dir.mkdir()
    path = config_dir / "receiver.yml"
    path.write_text(text, encoding="utf-8")  # the file verbatim; its relative secret files live beside it
    env, files = named_secrets(text)
    assert len(env) >= 8 and len(files) >= 2, (env, files)  # the example shows both ways for real
    for name, content in files.items():
        (config_dir / name).parent.mkdir(parents=True, exist_ok=True)
        (config_dir / name).write_text(content + "\n")
    result = check_config(path, env, cwd=tmp_path)  # not the config's directory: files resolve beside it
    assert result.returncode == 0, result.stderr
    assert re.fullmatch(rf"{re.escape(str(path))}: ok \(\d+ rules\)\n", result.stdout), result.stdout
    assert result.stderr == ""


def test_the_example_without_its_secrets_lists_every_missing_one_in_one_run(tmp_path: Path) -> None:
    text = EXAMPLE_CONFIG.read_text(encoding="utf-8")
    path = tmp_path / "receiver.yml"
    path.write_text(text, encoding="utf-8")
    env, files = named_secrets(text)
    result = check_config(path, {}, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert "Traceback" not in result.stderr
    matches = [ERROR_LINE.match(line) for line in lines]
    assert all(matches), lines  # every line is `receiver: configuration error: file:line: key: reason`
    reasons = [m.group("reason") for m in matches if m]
    assert {m.group("file") for m in matches if m} == {str(path)}
    line_numbers = [int(m.group("line")) for m in matches if m]
    assert line_numbers == sorted(line_numbers)
    for name in env:
        assert f"environment variable {name} is not set" in reasons, (name, lines)
    for name in files:
        assert f"cannot read {name}: No such file or directory" in reasons, (name, lines)
    assert len(lines) == len(env) + len(files), lines  # nothing else is wrong with it
    source_lines = text.splitlines()
    for m in matches:  # each error points at the line that names the variable or file
        assert m and m.group("key").rsplit(".", 1)[-1] in source_lines[int(m.group("line")) - 1]


def test_the_example_shows_every_key_the_config_reads() -> None:
    source = (ROOT / "receiver" / "config.py").read_text(encoding="utf-8")
    keys = set(re.findall(r'\.(?:get|section|add|names_secret)\(\s*"([a-z_]+)"', source))
    secrets = set(re.findall(r'\.secret\(\s*"([a-z_]+)"', source))
    assert {"listen", "database", "webhook", "token", "password_hash"} <= keys | secrets  # the pattern still works
    example = EXAMPLE_CONFIG.read_text(encoding="utf-8")
    words = set(re.findall(r"[a-z_]+", example))
    missing = sorted(k for k in keys - secrets if k not in words)
    missing += sorted(f"{s}_env / {s}_file" for s in secrets if f"{s}_env" not in words and f"{s}_file" not in words)
    assert not missing, f"keys read by receiver/config.py but not shown in examples/receiver.yml: {missing}"


# --- the curl example ---------------------------------------------------------------------------------------


@pytest.fixture
async def receiver_process(database_url: str, tmp_path: Path) -> AsyncIterator[tuple[str, str]]:
    """A real `receiver serve` with a webhook token on a free port: (base URL, token)."""
    port = free_port()
    token = "readme-token-0123456789"
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECEIVER_")}
    env.update(DATABASE_URL=database_url, RECEIVER_WEBHOOK_TOKEN=token)
    log = (tmp_path / "receiver.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "receiver", "serve", "--host", "127.0.0.1", "--port", str(port), "--no-migrate"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    log.close()
    base = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as session:
            await wait_http_ready(
                session,
                f"{base}/readyz",
                proc,
                "receiver serve",
                log=lambda: (tmp_path / "receiver.log").read_text(errors="replace"),
            )
        yield base, token
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=deadline(30))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        print((tmp_path / "receiver.log").read_text(errors="replace")[-3000:])  # shown on failure


async def run_block(block: str, port: int, token: str) -> list[Any]:
    """Run one README shell block verbatim but for the port; the JSON documents it printed, in order."""
    assert block.count("localhost:9095") == block.count("curl "), block  # every curl goes to the receiver
    script = block.replace("localhost:9095", f"localhost:{port}")
    env = {"PATH": f"{Path(CURL).parent}:/usr/bin:/bin", "RECEIVER_WEBHOOK_TOKEN": token}
    proc = await asyncio.create_subprocess_exec(
        "/bin/sh", "-ec", script, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), deadline(60))
    assert proc.returncode == 0, err.decode()
    text, docs, decoder = out.decode(), [], json.JSONDecoder()
    position = 0
    while position < len(text.strip()):
        doc, position = decoder.raw_decode(text, position)
        docs.append(doc)
        while position < len(text) and text[position].isspace():
            position += 1
    return docs


def documented_reply_keys() -> set[str]:
    replies = section("How alerts become incidents")
    bullet = replies[replies.index("- **Replies**") :]
    bullet = bullet[: bullet.index("\n- ")] if "\n- " in bullet else bullet
    return {word for span in re.findall(r"`([^`]+)`", bullet) for word in re.findall(r"[a-z_]+", span)}


def reply_keys(reply: dict[str, Any]) -> set[str]:
    keys = set(reply) | set(reply["alerts"])
    for incident in reply["incidents"]:
        keys |= set(incident) | {incident["action"]}
    for invalid in reply["invalid"]:
        keys |= set(invalid)
    return keys


@pytest.mark.skipif(not os.path.exists(CURL), reason="curl is missing: apt-get install -y curl")
async def test_the_curl_example_opens_an_incident_of_its_own_then_resolves_it(
    receiver_process: tuple[str, str],
) -> None:
    base, token = receiver_process
    port = int(base.rsplit(":", 1)[1])
    fire, resolve = code_blocks(CURL_HEADING, "sh")

    fired, listed = await run_block(fire, port, token)
    assert fired["status"] == "ok"
    assert fired["alerts"] == {"received": 1, "new": 1, "updated": 0, "duplicate": 0, "stale": 0, "invalid": 0}
    (opened,) = fired["incidents"]
    assert opened["action"] == "opened"
    assert opened["incident_key"].startswith("receiver-readme-example::")
    (incident,) = listed["incidents"]
    assert (incident["id"], incident["route"], incident["status"]) == (opened["id"], "receiver-readme-example", "open")
    assert incident["firing_count"] == 1

    resolved, listed = await run_block(resolve, port, token)
    assert resolved["incidents"] == [{**opened, "action": "resolved"}]
    assert resolved["alerts"]["updated"] == 1
    (incident,) = listed["incidents"]
    assert (incident["id"], incident["status"], incident["firing_count"]) == (opened["id"], "resolved", 0)

    # As the README says, sending the firing again changes nothing: that instance has resolved.
    again, listed = await run_block(fire, port, token)
    assert again["alerts"]["stale"] == 1 and listed["incidents"] == []

    # Every key of the reply is documented, with an invalid alert beside a valid one to show that list too.
    body = json.loads(re.search(r"-d '(.*?)'\n", fire, re.DOTALL).group(1))  # type: ignore[union-attr]
    body["alerts"].append({"status": "firing", "labels": {}})
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{base}/webhook", json=body, headers={"Authorization": f"Bearer {token}"}) as r,
    ):
        assert r.status == 200
        mixed = await r.json()
    assert mixed["invalid"], mixed
    undocumented = sorted(set().union(*map(reply_keys, (fired, resolved, again, mixed))) - documented_reply_keys())
    assert not undocumented, f"webhook reply keys missing from README's Replies: {undocumented}"


def test_the_readme_curl_example_has_a_route_of_its_own() -> None:
    # A hand-sent alert that mapped to a real route would join real incidents there and never resolve.
    from receiver.config import parse_config

    blocks = code_blocks(CURL_HEADING, "sh")
    assert len(blocks) == 2  # fire, then resolve
    for block in blocks:
        body = json.loads(re.search(r"-d '(.*?)'\n", block, re.DOTALL).group(1))  # type: ignore[union-attr]
        for alert in body["alerts"]:
            assert parse_config("", env={}).map(alert["labels"]).route == "receiver-readme-example"


# --- the list page says what the README's "Signing in" says ------------------------------------------------


async def test_the_list_page_says_it_is_read_only_and_how_to_sign_in(make_client: Any) -> None:
    import base64

    from receiver.config import parse_config
    from receiver.web.users import hash_password

    nobody = await make_client(parse_config("", env={}))
    r = await nobody.get("/")
    assert r.status == 200
    page = await r.text()
    assert "This page is read-only: to acknowledge, resolve or silence here, add users under <code>ui.users" in page

    users = f'ui:\n  require_login: false\n  users:\n    - {{name: alice, password_hash: "{hash_password("pw")}"}}\n'
    open_page = await make_client(parse_config(users, env={}))
    page = await (await open_page.get("/")).text()
    assert 'This page is read-only until you <a href="/signin">sign in</a> to acknowledge' in page
    signed_in = {"Authorization": "Basic " + base64.b64encode(b"alice:pw").decode()}
    r = await open_page.get("/", headers=signed_in)
    assert r.status == 200
    page = await r.text()
    assert "alice" in page and "read-only" not in page
