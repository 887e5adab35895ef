"""Text every store that reads the log can hold. PostgreSQL refuses NUL in text and jsonb,
and no UTF-8 store takes a lone surrogate (which JSON's \\ud800 escapes can produce): one
such character in an event would stop a projection for everyone. User input with them is
refused; third-party text (a scraped page, a provider's output) is cleaned."""

from __future__ import annotations

import re
from typing import Any

_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def unstorable(text: str) -> str | None:
    """Why `text` cannot be stored, or None."""
    found = _UNSTORABLE.search(text)
    if found is None:
        return None
    return "contains a NUL character" if found.group() == "\x00" else "contains an unpaired surrogate (\\ud800-\\udfff)"


def unstorable_in(value: Any) -> str | None:
    """Why some string in `value`, however nested (keys included), cannot be stored, or None."""
    if isinstance(value, str):
        return unstorable(value)
    items = [*value.keys(), *value.values()] if isinstance(value, dict) else \
        value if isinstance(value, list | tuple) else []
    return next((reason for item in items if (reason := unstorable_in(item)) is not None), None)


def clean(value: Any) -> Any:
    """`value` with every unstorable character dropped from its strings, however nested."""
    if isinstance(value, str):
        return _UNSTORABLE.sub("", value)
    if isinstance(value, dict):
        return {clean(k): clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean(v) for v in value]
    return value
