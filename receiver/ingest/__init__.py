"""Turning what senders post into typed alerts, and alerts into incidents.

One module per sender format (`alertmanager.py`, `grafana.py`), each a `Sender` (see `sender.py`); SENDERS
is the registry the app serves (one POST route each) and the web middleware guards (credentials and body
limits on every sender route). Adding a sender is one module plus one line here.
"""

from __future__ import annotations

from .alertmanager import ALERTMANAGER
from .grafana import GRAFANA
from .sender import PayloadError, Sender

SENDERS: tuple[Sender, ...] = (ALERTMANAGER, GRAFANA)
SENDER_PATHS: frozenset[str] = frozenset(s.path for s in SENDERS)

__all__ = ["SENDERS", "SENDER_PATHS", "PayloadError", "Sender", "sender_for_path"]


def sender_for_path(path: str) -> Sender | None:
    for sender in SENDERS:
        if sender.path == path:
            return sender
    return None
