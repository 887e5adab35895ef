"""What went wrong, in the words the API would answer with, for a page to show."""

from __future__ import annotations

import functools
import inspect

from genrail_commands.accounts import AccountBusy
from genrail_eventlog.store import ConcurrencyConflict
from genrail_events.jobs import InvalidTransition
from genrail_events.ledger import InsufficientCredits
from pydantic import ValidationError

from ..errors import ApiError, _describe
from ..rate_limits import RateLimited

# Exceptions a page catches and shows: anything else is a bug and answers 500.
SHOWN = (ApiError, InsufficientCredits, RateLimited, AccountBusy, ConcurrencyConflict, InvalidTransition,
         ValidationError)


def in_words(exc: Exception) -> str:
    if isinstance(exc, InsufficientCredits):
        return f"Not enough credits: your balance is {exc.balance} and this costs {exc.cost}."
    if isinstance(exc, ValidationError):
        return "; ".join(_describe(e) for e in exc.errors())
    if isinstance(exc, ApiError):
        return exc.detail
    if isinstance(exc, RateLimited):
        return str(exc)
    if isinstance(exc, AccountBusy):
        return "your account is busy with other requests: try again in a moment"
    if isinstance(exc, ConcurrencyConflict):
        return "concurrent changes to the same record kept winning: try again"
    if isinstance(exc, InvalidTransition):
        return f"job is {exc.from_status}: it cannot become {exc.to_status}"
    return str(exc)


def status_of(exc: Exception) -> int:
    if isinstance(exc, InsufficientCredits):
        return 402
    if isinstance(exc, ApiError):
        return exc.status_code
    if isinstance(exc, ValidationError):
        return 422
    if isinstance(exc, RateLimited):
        return 429
    if isinstance(exc, InvalidTransition):
        return 409
    return 503


def shows_errors(endpoint):
    """A page endpoint whose errors the API would answer with are shown as a page, in words."""

    @functools.wraps(endpoint)
    async def page(*args, **kwargs):
        try:
            return await endpoint(*args, **kwargs)
        except SHOWN as exc:
            from .templating import render

            return await render(kwargs["request"], "error.html", {"message": in_words(exc)}, status_of(exc))

    # FastAPI reads the parameters' types from the signature: resolved here, in the endpoint's module.
    page.__signature__ = inspect.signature(endpoint, eval_str=True)  # type: ignore[attr-defined]
    return page
