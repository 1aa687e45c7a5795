"""The channels: target type -> its Notifier class. Adding a channel is one module and one line here."""

from __future__ import annotations

from typing import Any

from . import Notifier
from .mail import EmailNotifier
from .pagerduty import PagerDutyNotifier
from .slack import SlackNotifier
from .teams import TeamsNotifier
from .webhook import WebhookNotifier

NOTIFIERS: dict[str, type[Notifier[Any]]] = {
    n.type: n for n in (SlackNotifier, WebhookNotifier, TeamsNotifier, PagerDutyNotifier, EmailNotifier)
}
