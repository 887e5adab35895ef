"""The user message a `copy` job sends to a chat model, and how to read the job's input back
out of it (the local provider's chat emulator does, to write the same copy as the local writer)."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

_COPY_DEFAULTS = {"product_name": "", "product_description": "", "tone": "professional",
                  "length": "medium"}
# The product travels as a fenced JSON block so that any reader, human, model or the local
# emulator, can take it back out exactly (see `copy_input_from_prompt`).
_FENCED_JSON = re.compile(r"```json\s*\n(.*?)\n```", re.DOTALL)


def copy_prompt(input: Mapping[str, Any]) -> str:
    """The user message for a `copy` job: instructions, then the input as a JSON block."""
    product = {field: input.get(field) or default for field, default in _COPY_DEFAULTS.items()}
    return (
        f"Write {product['tone']} ad copy of {product['length']} length for this product.\n\n"
        f"```json\n{json.dumps(product, ensure_ascii=False, indent=2)}\n```"
    )


def copy_input_from_prompt(message: str) -> dict[str, Any] | None:
    """The `copy` input inside a user message written by `copy_prompt`, or None."""
    for block in reversed(_FENCED_JSON.findall(message)):
        try:
            value = json.loads(block)
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict) and isinstance(value.get("product_name"), str):
            return value
    return None
