"""Standard Webhooks signing and verification (the scheme Replicate signs its webhooks with).

Signature: base64(HMAC-SHA256(key, f"{webhook-id}.{webhook-timestamp}.".encode() + body)), sent as
`webhook-signature: v1,<b64>`, several space-separated entries allowed (secret rotation). The key is
the base64-decoded part of a `whsec_<base64>` secret.

The HMAC is computed here over the raw body bytes rather than through `standardwebhooks.Webhook`:
its `verify` decodes the body as text, reads the wall clock with a fixed 5-minute window, raises one
exception type for a forged signature and a stale timestamp (we answer 401 and 400), and lets a
malformed signature entry escape as a bare ValueError. The unit tests check both directions of
compatibility against the package.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import time
from collections.abc import Mapping

SECRET_PREFIX = "whsec_"
SIGNATURE_VERSION = "v1"
DEFAULT_TOLERANCE_S = 300


class WebhookVerificationError(Exception):
    """A webhook could not be authenticated."""


class WebhookSignatureInvalid(WebhookVerificationError):
    """Headers missing or malformed, or no signature matches: not from the holder of the secret."""


class WebhookTimestampOutOfRange(WebhookVerificationError):
    """Correctly signed, but its timestamp is too far from now: a replay or a skewed clock."""


def new_secret(num_bytes: int = 32) -> str:
    """A fresh random secret in the `whsec_<base64>` form."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(num_bytes)).decode("ascii")


def decode_secret(secret: str) -> bytes:
    """The HMAC key of a `whsec_<base64>` secret (the prefix is optional, padding may be missing)."""
    encoded = secret.removeprefix(SECRET_PREFIX)
    try:
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("webhook secret is not valid base64 after the whsec_ prefix") from exc
    if not key:
        raise ValueError("webhook secret is empty")
    return key


def _digest(key: bytes, msg_id: str, timestamp: str, body: bytes) -> bytes:
    return hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()


def signature(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The `v1,<base64>` signature entry of one message."""
    digest = _digest(decode_secret(secret), msg_id, str(int(timestamp)), body)
    return f"{SIGNATURE_VERSION},{base64.b64encode(digest).decode('ascii')}"


def sign(secret: str | list[str], msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The three Standard Webhooks headers for a message; reuse `msg_id` when retrying it.
    Several secrets (a rotation's overlap) give one signature entry each."""
    if not msg_id or "." in msg_id:
        raise ValueError("webhook id must be non-empty and contain no '.'")
    secrets_ = [secret] if isinstance(secret, str) else secret
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(timestamp)),
        "webhook-signature": " ".join(signature(s, msg_id, timestamp, body) for s in secrets_),
    }


def _candidate_digests(signature_header: str) -> list[bytes]:
    digests = []
    for entry in signature_header.split():
        version, sep, encoded = entry.partition(",")
        if not sep or version != SIGNATURE_VERSION:
            continue
        try:
            digests.append(base64.b64decode(encoded, validate=True))
        except (binascii.Error, ValueError):
            continue
    return digests


def verify(
    secret: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    tolerance_s: float = DEFAULT_TOLERANCE_S,
    now: float | None = None,
) -> str:
    """Authenticate a webhook and return its `webhook-id` (the deduplication key).

    The signature is checked before the timestamp, so only a correctly signed message can be told
    that its timestamp is the problem.
    """
    lowered = {name.lower(): value for name, value in headers.items()}
    msg_id = lowered.get("webhook-id", "")
    timestamp = lowered.get("webhook-timestamp", "")
    signature_header = lowered.get("webhook-signature", "")
    if not (msg_id and timestamp and signature_header):
        raise WebhookSignatureInvalid("missing webhook-id, webhook-timestamp or webhook-signature")
    if not timestamp.isascii() or not timestamp.isdigit():
        raise WebhookSignatureInvalid("webhook-timestamp is not an integer")

    expected = _digest(decode_secret(secret), msg_id, timestamp, body)
    # Every candidate is compared, so the time taken does not reveal which entry matched.
    matched = False
    for candidate in _candidate_digests(signature_header):
        matched |= hmac.compare_digest(expected, candidate)
    if not matched:
        raise WebhookSignatureInvalid("no matching v1 signature")

    current = time.time() if now is None else now
    if abs(current - int(timestamp)) > tolerance_s:
        raise WebhookTimestampOutOfRange(
            f"webhook-timestamp {timestamp} is more than {tolerance_s:g}s away from now ({int(current)})"
        )
    return msg_id


def account_secret(master: str, user_id: str) -> str:
    """The signing secret of one account's outgoing webhooks (`whsec_...`), derived from the
    deployment's OUTGOING_WEBHOOK_KEY: the API shows it and the pipeline signs with it, and
    neither stores it."""
    key = hmac.new(master.encode(), f"outgoing-webhooks:{user_id}".encode(), hashlib.sha256).digest()
    return "whsec_" + base64.b64encode(key).decode()
