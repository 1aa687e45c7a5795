"""Fakes of notification targets: real HTTP servers on loopback that record what the receiver sends them.

`FakeTarget` is the one base: an aiohttp server on a free loopback port that accepts any request on any path,
records it when it arrives (before answering, so a held or hanging request is already seen), and answers from
`script` (a list of statuses, or "hang"), then `status`; a subclass's `reply` may hold a request until the test
calls `release()`, so "late" never depends on machine speed. A channel's fake adds only how to read its own messages
(`read`: which incident, event and level a message is about), so `posts`, `delivered()` and `failed()` work the
same for every channel. A new channel's fake subclasses `FakeTarget` beside `FakeSlack` and `FakeWebhook`.

Start one with `async with FakeSlack() as slack:` or the `fake_slack` / `fake_webhook` fixtures (tests/conftest.py);
every fake must be stopped in the test's loop, which also releases requests still held or hanging.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import time
from dataclasses import dataclass
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default as default_policy
from types import TracebackType
from typing import Any, Literal, Self, cast

from aiohttp import web
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from tests.helpers import eventually

# What one request was about: (incident id, event, level); event is opened | escalated | resolved.
NotificationKey = tuple[str | None, str, int]
# One scripted answer: an HTTP status, or "hang" (answer 200 only after `hang_seconds`, past any client timeout).
Step = int | Literal["hang"]


@dataclass
class Received:
    """One request as the fake saw it."""

    at: float  # time.monotonic() on arrival
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    answered: int = 0  # the status answered; 0 while the request is held or hanging

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass(frozen=True)
class Post:
    """A received notification, read by its channel's fake."""

    at: float
    answered: int
    incident_id: str | None
    event: str  # opened | escalated | resolved
    level: int
    text: str

    @property
    def key(self) -> NotificationKey:
        return (self.incident_id, self.event, self.level)


class FakeTarget:
    """Records every request; answers `script` (statuses or "hang") in order, then `status` (switch it any time)."""

    default_path = "/hook"

    def __init__(self, *, path: str | None = None, status: int = 200, hang_seconds: float = 5.0) -> None:
        self.path = path or self.default_path
        self.status = status
        self.script: list[Step] = []
        self.retry_after = "7"  # the Retry-After header sent with a 429
        self.hang_seconds = hang_seconds
        self.requests: list[Received] = []
        self.port = 0
        self._runner: web.AppRunner | None = None
        self._stopping = asyncio.Event()
        self._gates: list[asyncio.Future[None]] = []

    # --- the server -------------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        """The URL to configure as the target (its path is the fake's secret-looking `path`)."""
        return self.base_url + self.path

    async def start(self) -> Self:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self.handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)  # port 0: the kernel picks, no race with other tests
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        return self

    async def stop(self) -> None:
        self.release()  # hanging and held handlers return, so the server can close at once
        self._stopping.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    async def handle(self, request: web.Request) -> web.Response:
        received = Received(time.monotonic(), request.method, request.path, dict(request.headers), await request.read())
        self.requests.append(received)
        status = await self.reply(received)
        received.answered = status
        headers = {"Retry-After": self.retry_after} if status == 429 else {}
        return web.Response(status=status, text=self.reply_text(status), headers=headers)

    async def reply(self, received: Received) -> int:
        """The status to answer `received` with; a subclass may wait here (hold the request) first."""
        step = self.script.pop(0) if self.script else self.status
        if step == "hang":
            await self.wait_stopping(self.hang_seconds)
            return 200
        return step

    def reply_text(self, status: int) -> str:
        return "ok" if 200 <= status < 300 else "error"

    async def wait_stopping(self, seconds: float) -> None:
        """Sleep `seconds`, or less if the fake is stopped meanwhile."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    async def hold_until_released(self) -> None:
        """Called from `reply`: keep this request unanswered until `release()` (a target answering late)."""
        gate: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._gates.append(gate)
        await gate

    def held(self) -> int:
        """How many requests are being held now."""
        return sum(not g.done() for g in self._gates)

    async def wait_held(self, n: int = 1) -> None:
        async def probe() -> bool:
            return self.held() >= n

        await eventually(probe, f"{n} request(s) held by {type(self).__name__}")

    def release(self) -> None:
        """Answer every held request."""
        for gate in self._gates:
            if not gate.done():
                gate.set_result(None)

    # --- what was received ------------------------------------------------------------------------------

    @property
    def received(self) -> list[Any]:
        """The JSON bodies of every request, in arrival order."""
        return [r.json() for r in self.requests]

    def read(self, received: Received) -> Post:
        """Which incident, event and level one request is about: each channel's fake knows its own format."""
        raise NotImplementedError

    @property
    def posts(self) -> list[Post]:
        return [self.read(r) for r in self.requests]

    def delivered(self) -> collections.Counter[NotificationKey]:
        """How many times each notification was answered 2xx: the guarantee says exactly once."""
        return collections.Counter(p.key for p in self.posts if 200 <= p.answered < 300)

    def failed(self) -> list[Post]:
        """The notifications answered with anything but 2xx (or still unanswered)."""
        return [p for p in self.posts if not 200 <= p.answered < 300]


def parse_slack(message: dict[str, Any]) -> tuple[str | None, str, int]:
    """(incident id, event, level) of a message built by receiver.notify.messages.slack_message."""
    incident_id = None
    level = -1
    event = "opened"
    for block in message.get("blocks") or []:
        if block.get("type") == "header":
            header = block["text"]["text"]
            if header.startswith("Resolved"):
                event = "resolved"
            elif header.startswith("Escalated"):
                event = "escalated"
        for f in block.get("fields") or []:
            if f.get("text", "").startswith("*Level*\n"):
                level = int(f["text"].split("\n", 1)[1])
        for element in block.get("elements") or []:
            if element.get("text", {}).get("text") == "Incident":
                incident_id = element["url"].rstrip("/").rsplit("/", 1)[1]
    return incident_id, event, level


class FakeSlack(FakeTarget):
    """A Slack incoming webhook: answers "ok", or an error text as Slack does."""

    default_path = "/services/T000/B000/XXXX"

    def reply_text(self, status: int) -> str:
        return "ok" if 200 <= status < 300 else "internal_error"

    def read(self, received: Received) -> Post:
        message = received.json()
        incident_id, event, level = parse_slack(message)
        return Post(received.at, received.answered, incident_id, event, level, message.get("text", ""))

    def headlines(self) -> list[str]:
        """The header block's text of every message, in arrival order."""
        return [m["blocks"][0]["text"]["text"] for m in self.received if "blocks" in m]


class FakeWebhook(FakeTarget):
    """A generic webhook target: receives receiver.notify.messages.webhook_message bodies."""

    default_path = "/hooks/4f0c2a-secret"

    def read(self, received: Received) -> Post:
        message = received.json()
        incident = message.get("incident") or {}
        return Post(
            received.at,
            received.answered,
            incident.get("id"),
            message.get("event", ""),
            int(message.get("level", -1)),
            incident.get("incident_key", ""),
        )


class FakeTeams(FakeTarget):
    """A Microsoft Teams Workflows webhook: answers 202 (as Workflows do) and reads the Adaptive Card."""

    default_path = "/workflows/trigger/teams-secret-sig"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(status=202, **kwargs)
        self.body_text = ""  # a 2xx answer's body: a legacy connector's failure comes as a 200 with a text

    def reply_text(self, status: int) -> str:
        return self.body_text or super().reply_text(status)

    @staticmethod
    def card(message: dict[str, Any]) -> dict[str, Any]:
        [attachment] = message["attachments"]
        assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
        return dict(attachment["content"])

    def read(self, received: Received) -> Post:
        card = self.card(received.json())
        head = card["body"][0]["inlines"][0]["text"]
        event = "resolved" if head.startswith("Resolved") else "escalated" if head.startswith("Escalated") else "opened"
        level = int(
            next(
                col["columns"][1]["items"][0]["inlines"][0]["text"]
                for col in card["body"]
                if col["type"] == "ColumnSet" and col["columns"][0]["items"][0]["text"] == "Level"
            )
        )
        incident = next(
            (a["url"].rstrip("/").rsplit("/", 1)[1] for a in card.get("actions", []) if a["title"] == "Incident"), None
        )
        return Post(received.at, received.answered, incident, event, level, head)


class FakePagerDuty(FakeTarget):
    """PagerDuty's Events API v2 (`/v2/enqueue`): answers 202 with its JSON, as PagerDuty does."""

    default_path = "/v2/enqueue"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(status=202, **kwargs)

    def reply_text(self, status: int) -> str:
        if 200 <= status < 300:
            return json.dumps({"status": "success", "message": "Event processed"})
        return json.dumps({"status": "invalid event", "message": "Event object is invalid"})

    def read(self, received: Received) -> Post:
        event = received.json()
        action = event["event_action"]
        kind = {"trigger": "opened", "resolve": "resolved"}.get(action, action)
        level = int(event.get("payload", {}).get("custom_details", {}).get("level", -1))
        if kind == "opened" and level > 0:
            kind = "escalated"
        return Post(
            received.at, received.answered, event["dedup_key"], kind, level, event.get("payload", {}).get("summary", "")
        )


@dataclass
class Mail:
    """One message as the fake SMTP server took it."""

    at: float
    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage
    answered: str = ""  # the reply to DATA; "" while hanging

    @property
    def subject(self) -> str:
        return str(self.message["Subject"])

    @property
    def body(self) -> str:
        return str(cast(EmailMessage, self.message.get_body(("plain",))).get_content()).replace("\r\n", "\n")


class FakeSMTP:
    """A real SMTP server (aiosmtpd) on a free loopback port, in the test's loop. It accepts one login
    (`username`/`password`, over plain text: tests only), refuses RCPT to the addresses in `refuse` with their
    reply, and answers DATA from `script` (a reply such as "451 4.3.0 try later", or "hang": answer "250 OK"
    only after `hang_seconds`), then "250 OK". Every message is recorded on arrival (before the answer)."""

    def __init__(
        self, *, username: str = "receiver", password: str = "smtp-secret-pw-0123", hang_seconds: float = 5.0
    ) -> None:
        self.username, self.password = username, password
        self.hang_seconds = hang_seconds
        self.script: list[str] = []
        self.refuse: dict[str, str] = {}
        self.mails: list[Mail] = []
        self.logins: list[tuple[str, bool]] = []  # (login, accepted)
        self.port = 0
        self._server: asyncio.Server | None = None
        self._stopping = asyncio.Event()

    async def start(self) -> Self:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: SMTP(self, hostname="fake-smtp", authenticator=self._authenticate, auth_require_tls=False),
            "127.0.0.1",
            0,
        )
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    async def stop(self) -> None:
        self._stopping.set()
        if self._server is not None:
            self._server.close()
            self._server = None

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        assert isinstance(auth_data, LoginPassword)
        ok = (auth_data.login.decode(), auth_data.password.decode()) == (self.username, self.password)
        self.logins.append((auth_data.login.decode(), ok))
        return AuthResult(success=ok, handled=False)

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        if address in self.refuse:
            return self.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.content if isinstance(envelope.content, bytes) else str(envelope.content).encode()
        mail = Mail(
            time.monotonic(),
            str(envelope.mail_from),
            list(envelope.rcpt_tos),
            cast(EmailMessage, message_from_bytes(content, policy=default_policy)),
        )
        self.mails.append(mail)
        step = self.script.pop(0) if self.script else "250 OK"
        if step == "hang":
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.hang_seconds)
            step = "250 OK"
        mail.answered = step
        return step

    def read(self, mail: Mail) -> Post:
        """(incident, event, level) of a message built by receiver.notify.mail.mail_text."""
        subject = mail.subject
        event = "resolved" if "] Resolved" in subject else "escalated" if "] Escalated" in subject else "opened"
        fields = dict(line.split(":", 1) for line in mail.body.splitlines() if ":" in line)
        incident = fields.get("Incident", "").strip().rstrip("/").rsplit("/", 1)[-1] or None
        ok = mail.answered.startswith("2")
        return Post(mail.at, 250 if ok else 550, incident, event, int(fields.get("Level", "-1")), subject)

    @property
    def posts(self) -> list[Post]:
        return [self.read(m) for m in self.mails]
