"""Checking a webhook genrail (or Replicate, which signs the same way) sent you: Standard
Webhooks signatures (`webhook-id`, `webhook-timestamp`, `webhook-signature`), HMAC-SHA256
of `<id>.<timestamp>.<body>` with the secret's key (the base64 after `whsec_`)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from typing import Any


class InvalidSignature(Exception):
    pass


def verify(secret: str, headers: Mapping[str, str], body: bytes, *, tolerance_s: float = 300,
           now: float | None = None) -> dict[str, Any]:
    """The event, parsed, when the headers sign `body` with `secret` within `tolerance_s` of
    now; InvalidSignature otherwise. Pass the raw body, as received, not a re-serialized one."""
    lower = {k.lower(): v for k, v in headers.items()}
    try:
        msg_id, timestamp, signatures = lower["webhook-id"], lower["webhook-timestamp"], lower["webhook-signature"]
        sent_at = int(timestamp)
    except (KeyError, ValueError):
        raise InvalidSignature("missing or malformed webhook-id, webhook-timestamp or webhook-signature") from None
    if abs((now if now is not None else time.time()) - sent_at) > tolerance_s:
        raise InvalidSignature("the timestamp is too far from now: a replay, or a clock far off")
    key = base64.b64decode(secret.removeprefix("whsec_"))
    expected = base64.b64encode(hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest())
    for candidate in signatures.split():
        version, _, signature = candidate.partition(",")
        if version == "v1" and hmac.compare_digest(signature.encode(), expected):
            return json.loads(body)
    raise InvalidSignature("no signature matches")
