"""Errors the API answers, as exceptions: RFC 9457 problem details, `kind` to branch on."""

from __future__ import annotations

from typing import Any


class GenrailError(Exception):
    """An answer of 4xx or 5xx. `kind` is the problem's type without its prefix
    (`not-found`, `insufficient-credits`, `rate-limited`, …); `problem` is the whole body."""

    def __init__(self, status: int, problem: dict[str, Any]):
        self.status = status
        self.problem = problem
        self.type = str(problem.get("type") or "about:blank")
        self.kind = self.type.rsplit(":", 1)[-1]
        self.detail = str(problem.get("detail") or problem.get("title") or f"HTTP {status}")
        super().__init__(f"{status} {self.kind}: {self.detail}")


class InsufficientCredits(GenrailError):
    @property
    def balance(self) -> int:
        return int(self.problem.get("balance", 0))

    @property
    def cost(self) -> int:
        return int(self.problem.get("cost", 0))


class NotFound(GenrailError):
    pass


class InvalidRequest(GenrailError):
    pass


class Unavailable(GenrailError):
    """503 or 429 still, after the client's retries."""


class WaitTimeout(TimeoutError):
    """The job (or batch) was not final when `wait` gave up; `last` is how it was then."""

    def __init__(self, last: Any):
        self.last = last
        super().__init__(f"still {getattr(last, 'status', '?')} when the wait ended")


def error_for(status: int, problem: dict[str, Any]) -> GenrailError:
    kind = str(problem.get("type") or "").rsplit(":", 1)[-1]
    if status == 402 or kind == "insufficient-credits":
        return InsufficientCredits(status, problem)
    if status == 404:
        return NotFound(status, problem)
    if status == 422:
        return InvalidRequest(status, problem)
    if status in (429, 503):
        return Unavailable(status, problem)
    return GenrailError(status, problem)
