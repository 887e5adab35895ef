"""Fakes of what lies beyond genrail's own processes: the providers the pipeline calls (the
same methods as `genrail_pipeline.providers.Providers`, and the calls it makes on
`ReplicateClient` after a submission, answering from a script; `test_pipeline_worker` checks
that their signatures stay the real ones'), and the host that serves a provider's outputs."""

from __future__ import annotations

from typing import Any

import httpx

from genrail_events.jobs import Job


def answer(answers: list[Any], what: str) -> Any:
    if not answers:
        raise AssertionError(f"{what} was called, but the test gave it no answer")
    given = answers.pop(0)
    if isinstance(given, BaseException):
        raise given
    return given


class FakeReplicate:
    """`get_prediction` answers from `predictions` (a dict, or an exception to raise);
    `cancel_prediction` records the id and answers `cancel_answer` (or raises it)."""

    def __init__(self) -> None:
        self.predictions: dict[str, Any] = {}
        self.asked: list[str] = []
        self.canceled: list[str] = []
        self.cancel_answer: Any = None

    async def get_prediction(self, prediction_id: str) -> dict[str, Any]:
        self.asked.append(prediction_id)
        return answer([self.predictions[prediction_id]], f"get_prediction({prediction_id})")

    async def cancel_prediction(self, prediction_id: str) -> dict[str, Any]:
        self.canceled.append(prediction_id)
        if isinstance(self.cancel_answer, BaseException):
            raise self.cancel_answer
        return self.cancel_answer or {"id": prediction_id, "status": "canceled"}


class FakeProviders:
    """Each call of `run_inline` or `submit_prediction` takes the next of `answers`: an
    output (or a prediction object), or an exception to raise. A callable answer is awaited
    with the job first (to do something while the provider "works"), then its result used."""

    def __init__(self, *answers: Any, http: httpx.AsyncClient | None = None):
        self.answers = list(answers)
        self.calls: list[tuple[str, str, int]] = []  # (method, job id, attempt)
        self.replicate = FakeReplicate()
        self.http = self.fetcher = http

    async def _answer(self, method: str, job: Job) -> dict[str, Any]:
        self.calls.append((method, job.id, job.attempt))
        given = answer(self.answers, method)
        return await given(job) if callable(given) else given

    async def submit_prediction(self, job: Job) -> dict[str, Any]:
        return await self._answer("submit_prediction", job)

    async def run_inline(self, job: Job) -> dict[str, Any]:
        return await self._answer("run_inline", job)


CDN = "https://replicate.delivery/xezq"
FILES = {f"{CDN}/ad.png": (b"\x89PNG a static ad", "image/png"),
         f"{CDN}/ad-2.webp": (b"RIFF a second one", "image/webp")}


class Cdn:
    """The provider's output host, for `httpx.MockTransport`: serves FILES, 404 for anything
    else (outputs not there yet, or deleted since), and records every request."""

    def __init__(self) -> None:
        self.requests: list[str] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(str(request.url))
        if (found := FILES.get(str(request.url))) is None:
            return httpx.Response(404, text="gone")
        body, content_type = found
        return httpx.Response(200, content=body, headers={"content-type": content_type})
