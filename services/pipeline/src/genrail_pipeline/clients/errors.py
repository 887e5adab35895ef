"""Errors every provider client raises, so the pipeline decides retry or fail in one place."""

from __future__ import annotations


class ProviderError(Exception):
    """A provider call did not give a usable result.

    transient: worth retrying (timeouts, connection trouble, 429, 5xx).
    retry_after_s: how long the provider asked us to wait, when it said so.
    """

    def __init__(self, message: str, *, transient: bool, retry_after_s: float | None = None,
                 status_code: int | None = None):
        super().__init__(message)
        self.transient = transient
        self.retry_after_s = retry_after_s
        self.status_code = status_code


def retry_after_seconds(headers: "object") -> float | None:
    """`retry-after-ms` first (OpenAI), then `retry-after` in seconds or as an HTTP date."""
    from email.utils import parsedate_to_datetime
    from datetime import UTC, datetime

    get = getattr(headers, "get")
    if (ms := get("retry-after-ms")) is not None:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    if (value := get("retry-after")) is not None:
        try:
            return max(0.0, float(value))
        except ValueError:
            try:
                return max(0.0, (parsedate_to_datetime(value) - datetime.now(UTC)).total_seconds())
            except (TypeError, ValueError):
                return None
    return None
