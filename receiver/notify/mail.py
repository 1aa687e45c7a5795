"""Email over SMTP (aiosmtplib): a plain-text message to a list of addresses.

The destination is a JSON document (`destination()` writes it from the config): the SMTP server, STARTTLS
(required when on: a server that does not offer it is refused, so the password never crosses in clear), the
login (the password is a secret), the sender and the recipients. Untrusted values are folded to plain text
(no header can be injected: the subject is one line, and the stdlib's SMTP policy refuses line breaks in
headers anyway); the body is text/plain, so nothing in it is markup.

SMTP's answers are classified like HTTP's: a 4xx reply is transient (retried), a 5xx reply permanent
(failed). Recipients the server refuses are skipped when others are accepted (the message is delivered to
those: retrying would repeat it to them). A connection lost or an answer missing before the message's data
went out is known not sent; after it, unknown (the server may have queued the message).
"""

from __future__ import annotations

import asyncio
import json
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from email.utils import format_datetime, make_msgid
from typing import TYPE_CHECKING, Any

import aiosmtplib

from ..model import TargetType
from . import CONNECT_TIMEOUT, Notifier, SendResult
from .messages import Context, ack_link, cut, fold, headline, headline_mark, link_list

if TYPE_CHECKING:
    from datetime import datetime


def destination(
    *, host: str, port: int, starttls: bool, username: str | None, password: str | None, sender: str, to: list[str]
) -> str:
    """The outbox destination of an email target."""
    return json.dumps(
        {
            "host": host,
            "port": port,
            "starttls": starttls,
            "username": username,
            "password": password,
            "from": sender,
            "to": to,
        }
    )


def mail_text(ctx: Context) -> tuple[str, str]:
    """(subject, body) of the message, both plain text."""
    mark = headline_mark(ctx)
    subject = cut(fold(f"[{mark}] {headline(ctx)}"), 200)
    lines = [fold(headline(ctx)), ""]
    if ctx.summary:
        lines += [cut(fold(ctx.summary, multiline=True), 4000), ""]
    lines += [
        f"Severity:      {fold(ctx.severity)}",
        f"Status:        {fold(ctx.status)}",
        f"Route:         {cut(fold(ctx.route), 300)}",
        f"Kind:          {cut(fold(ctx.kind), 100)}",
        f"Owner:         {cut(fold(ctx.owner), 100)}",
        f"Age:           {ctx.age}",
        f"Alerts firing: {ctx.firing}/{ctx.total}",
        f"Level:         {ctx.level}",
        "",
    ]
    if ack_url := ack_link(ctx):
        lines.append(f"Acknowledge: {ack_url}")
    lines += [f"{label}: {url}" for label, url in link_list(ctx)]
    return subject, "\n".join(lines).rstrip() + "\n"


class EmailNotifier(Notifier[tuple[str, str]]):
    type = TargetType.EMAIL

    def render(self, ctx: Context) -> tuple[str, str]:
        return mail_text(ctx)

    async def send(self, destination: str, message: tuple[str, str], *, timeout: float, now: datetime) -> SendResult:
        try:
            d: dict[str, Any] = json.loads(destination)
            host, port, starttls = str(d["host"]), int(d["port"]), bool(d["starttls"])
            sender, to = str(d["from"]), [str(a) for a in d["to"]]
        except (ValueError, KeyError, TypeError):
            return SendResult.failed("malformed email destination")
        subject, body = message
        mail = EmailMessage(policy=SMTP_POLICY)
        mail["From"] = sender
        mail["To"] = ", ".join(to)
        mail["Subject"] = subject
        mail["Date"] = format_datetime(now)
        mail["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2] or None)
        mail["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation replies to an alert
        mail.set_content(body)

        smtp = aiosmtplib.SMTP(hostname=host, port=port, start_tls=starttls, timeout=min(timeout, CONNECT_TIMEOUT))
        phase = "connect"
        try:
            async with asyncio.timeout(timeout):
                await smtp.connect()
                phase = "login"
                if d.get("username"):
                    await smtp.login(str(d["username"]), str(d.get("password") or ""), timeout=timeout)
                phase = "envelope"
                await smtp.mail(sender, timeout=timeout)
                refused: list[int] = []
                for address in to:
                    try:
                        await smtp.rcpt(address, timeout=timeout)
                    except aiosmtplib.SMTPRecipientRefused as e:
                        refused.append(e.code)
                if len(refused) == len(to):
                    return _reply(min(refused), "every recipient refused")
                phase = "data"
                await smtp.data(mail.as_bytes(), timeout=timeout)
        except aiosmtplib.SMTPNotSupported:
            return SendResult.failed(
                "the server does not offer STARTTLS" if phase == "connect" else f"{phase} not supported by the server"
            )
        except aiosmtplib.SMTPResponseException as e:
            return _reply(e.code, f"{phase} refused")
        except (TimeoutError, aiosmtplib.SMTPTimeoutError, aiosmtplib.SMTPServerDisconnected) as e:
            what = f"no answer within {timeout:g}s" if isinstance(e, TimeoutError) else type(e).__name__
            if phase == "data":
                return SendResult.maybe_sent(f"{what} during data")
            return SendResult.retry_later(f"{what} during {phase}")
        except (aiosmtplib.SMTPException, OSError) as e:
            if phase == "data":
                return SendResult.maybe_sent(type(e).__name__)
            return SendResult.retry_later(type(e).__name__)  # connecting, TLS, login: nothing was sent
        finally:
            smtp.close()
        return SendResult.ok()


def _reply(code: int, what: str) -> SendResult:
    error = f"SMTP {code} ({what})"
    return SendResult.retry_later(error) if 400 <= code < 500 else SendResult.failed(error)
