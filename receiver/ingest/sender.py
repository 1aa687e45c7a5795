"""The contract every sender format meets: a name, the route it is posted to, and a pure parser of bytes.

A sender module (`alertmanager.py`, `grafana.py`) turns one request body into a `Notification`, or raises
PayloadError when the body can never be valid (the caller answers 400 with the reason; senders do not retry
4xx). Everything after parsing (mapping, correlation, the store, the answer) is the same for every sender.
Parsers run without aiohttp or a database, so recorded payloads test them directly.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .. import jsontext
from ..model import Notification


class PayloadError(ValueError):
    """The webhook body is not a notification this sender's route accepts."""


@dataclass(frozen=True)
class Sender:
    """One sender format. `name` is also the actor on the timeline events its alerts cause."""

    name: str
    path: str  # the POST route, under /webhook
    parse: Callable[[bytes], Notification]
    title: str  # for people: logs, docs


def decode_json(body: bytes) -> tuple[Any, bool]:
    """The JSON value of a body, and whether its strings may need `clean_text` before they are stored."""
    try:
        data = jsontext.loads(body)
    except UnicodeDecodeError:
        raise PayloadError("the body is not valid UTF-8") from None
    except RecursionError:
        raise PayloadError("the JSON is nested too deeply") from None
    except ValueError as e:
        raise PayloadError(f"the body is not valid JSON: {e}") from None
    # In UTF-8 JSON, strings can only carry NUL as the escape \u0000 (a raw control character is invalid
    # JSON), and lone surrogates as an escape or as UTF-8 bytes starting with 0xED (which Python's JSON
    # decoder lets through). Without either, every string is storable as it is: no copy, no check.
    # (json.loads also takes UTF-16 and UTF-32, where those bytes look different: always cleaned.)
    needs_cleaning = json.detect_encoding(body) != "utf-8" or b"\\u" in body or b"\xed" in body
    return data, needs_cleaning
