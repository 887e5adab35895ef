"""A client for Replicate's predictions HTTP API, used asynchronously: create, then wait for webhooks.

`base_url` is the API origin ("https://api.replicate.com"); a trailing "/v1" is accepted too.
Every method returns the prediction object as Replicate sends it (id, model, version, input,
output, error, status, created_at, started_at, completed_at, urls.get, urls.cancel, metrics, logs).
Failures raise ProviderError: transient for timeouts, connection trouble, 408, 429 and 5xx;
permanent for the other 4xx, with Replicate's `detail` in the message.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from typing import Any

import httpx

from genrail_pipeline.clients.errors import ProviderError, retry_after_seconds

WEBHOOK_EVENTS = frozenset({"start", "output", "logs", "completed"})
TERMINAL_STATUSES = frozenset({"succeeded", "failed", "canceled", "aborted"})

_MODEL_REF = re.compile(r"^(?P<owner>[\w.-]+)/(?P<name>[\w.-]+)(?::(?P<version>[\w.-]+))?$")
_VERSION_ID = re.compile(r"^[\w.-]+$")
_TRANSIENT_STATUSES = frozenset({408, 429})


def _cancel_after_header(cancel_after: float | str) -> str:
    """Replicate's `Cancel-After` takes a duration such as "90s" or "1m30s"; numbers are seconds."""
    if isinstance(cancel_after, str):
        return cancel_after
    if cancel_after <= 0:
        raise ValueError("cancel_after must be positive")
    return f"{math.ceil(cancel_after)}s"


def _error_detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:500] or response.reason_phrase
    if isinstance(body, dict):
        for field in ("detail", "title", "error"):
            if isinstance(body.get(field), str) and body[field]:
                return body[field]
    return str(body)[:500]


class ReplicateClient:
    def __init__(self, base_url: str, api_token: str, http: httpx.AsyncClient):
        if not api_token:
            raise ValueError("a Replicate API token is required")
        self._api = base_url.rstrip("/").removesuffix("/v1") + "/v1"
        self._headers = {"Authorization": f"Bearer {api_token}"}
        self._http = http

    async def create_prediction(
        self,
        model: str,
        input: dict[str, Any],
        webhook: str | None = None,
        webhook_events_filter: Iterable[str] = ("completed",),
        cancel_after: float | str | None = None,
    ) -> dict[str, Any]:
        """Start a prediction of "owner/name" (the model's latest version), "owner/name:version"
        or a bare version id. Webhook events are only requested when `webhook` is given."""
        body: dict[str, Any] = {"input": input}
        if (ref := _MODEL_REF.match(model)) is not None:
            if ref["version"]:
                path, body["version"] = "/predictions", ref["version"]
            else:
                path = f"/models/{ref['owner']}/{ref['name']}/predictions"
        elif _VERSION_ID.match(model):
            path, body["version"] = "/predictions", model
        else:
            raise ValueError(f"not a Replicate model or version reference: {model!r}")

        if webhook is not None:
            if isinstance(webhook_events_filter, str):
                webhook_events_filter = (webhook_events_filter,)
            events = list(dict.fromkeys(webhook_events_filter))
            if unknown := set(events) - WEBHOOK_EVENTS:
                raise ValueError(f"unknown webhook events {sorted(unknown)}; known: {sorted(WEBHOOK_EVENTS)}")
            body["webhook"] = webhook
            body["webhook_events_filter"] = events

        headers = {}
        if cancel_after is not None:
            headers["Cancel-After"] = _cancel_after_header(cancel_after)
        return await self._request("POST", path, json=body, headers=headers)

    async def get_prediction(self, prediction_id: str) -> dict[str, Any]:
        return await self._request("GET", f"/predictions/{self._checked_id(prediction_id)}")

    async def cancel_prediction(self, prediction_id: str) -> dict[str, Any]:
        return await self._request("POST", f"/predictions/{self._checked_id(prediction_id)}/cancel")

    @staticmethod
    def _checked_id(prediction_id: str) -> str:
        if not _VERSION_ID.match(prediction_id):
            raise ValueError(f"not a Replicate prediction id: {prediction_id!r}")
        return prediction_id

    async def _request(
        self, method: str, path: str, *, json: Any = None, headers: dict[str, str] | None = None
    ) -> dict[str, Any]:
        what = f"Replicate {method} {path}"
        try:
            response = await self._http.request(
                method, self._api + path, json=json, headers={**self._headers, **(headers or {})}
            )
        except httpx.TimeoutException as exc:
            raise ProviderError(f"{what} timed out", transient=True) from exc
        except httpx.TransportError as exc:
            raise ProviderError(f"{what} failed: {exc!r}", transient=True) from exc

        status = response.status_code
        if status >= 500 or status in _TRANSIENT_STATUSES:
            raise ProviderError(
                f"{what} answered {status}: {_error_detail(response)}",
                transient=True,
                retry_after_s=retry_after_seconds(response.headers),
                status_code=status,
            )
        if status >= 400:
            raise ProviderError(
                f"{what} answered {status}: {_error_detail(response)}", transient=False, status_code=status
            )
        try:
            prediction = response.json()
        except ValueError as exc:
            raise ProviderError(
                f"{what} answered {status} with a body that is not JSON", transient=True, status_code=status
            ) from exc
        if not isinstance(prediction, dict) or "id" not in prediction:
            raise ProviderError(
                f"{what} answered {status} without a prediction object", transient=True, status_code=status
            )
        return prediction
