"""Expiring, tamper-proof tokens for serving media from storages that cannot presign URLs.

A token is `<base64url(key)>.<expires_at>.<base64url(HMAC-SHA256)>`, URL-safe without escaping,
so the API can hand out `/media/<token>` and later learn which key it may serve, and until when.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time

from genrail_storage.store import InvalidKey, validate_key

# Keeps these MACs from being valid for any other use of the same secret.
_PURPOSE = b"genrail-media-url-v1"


class MediaTokenInvalid(ValueError):
    """The token is malformed or was not issued with this secret."""


class MediaTokenExpired(MediaTokenInvalid):
    """The token was issued with this secret but its time is up."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(secret: str | bytes, encoded_key: str, expires_at: int) -> bytes:
    key = secret.encode() if isinstance(secret, str) else secret
    return hmac.new(key, b"%s.%s.%d" % (_PURPOSE, encoded_key.encode(), expires_at), hashlib.sha256).digest()


def sign_media_token(key: str, expires_at: int, secret: str | bytes) -> str:
    """A token granting reads of `key` until the Unix time `expires_at`."""
    if not secret:
        raise ValueError("media token secret must not be empty")
    encoded_key = _b64(validate_key(key).encode())
    return f"{encoded_key}.{int(expires_at)}.{_b64(_mac(secret, encoded_key, int(expires_at)))}"


def verify_media_token(token: str, secret: str | bytes, now: float | None = None) -> str:
    """The storage key a token grants, or MediaTokenInvalid / MediaTokenExpired."""
    if not secret:
        raise ValueError("media token secret must not be empty")
    parts = token.split(".")
    if len(parts) != 3 or not parts[1].isascii() or not parts[1].isdigit():
        raise MediaTokenInvalid("malformed media token")
    encoded_key, expires_text, presented_mac = parts
    expected_mac = _b64(_mac(secret, encoded_key, int(expires_text)))
    if not hmac.compare_digest(expected_mac.encode(), presented_mac.encode()):
        raise MediaTokenInvalid("media token signature does not match")
    if (time.time() if now is None else now) >= int(expires_text):
        raise MediaTokenExpired("media token has expired")
    try:
        return validate_key(_unb64(encoded_key).decode())
    except (binascii.Error, UnicodeDecodeError, InvalidKey) as exc:
        raise MediaTokenInvalid("media token names an invalid key") from exc
