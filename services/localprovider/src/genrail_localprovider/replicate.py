"""Replicate's predictions API, answered locally with real, deterministic media work.

Mount it at the app root (the URLs it hands out are built from `public_url`):

    app.include_router(create_router(ReplicateEmulatorSettings()))

The router's lifespan closes its HTTP client and stops pending work when the app shuts down.

Routes, shaped as Replicate's: `POST /v1/models/{owner}/{name}/predictions`, `POST /v1/predictions`
(`version` is a version id or "owner/name:version"), `GET /v1/predictions/{id}`,
`POST /v1/predictions/{id}/cancel`, and `GET /files/{name}` serving outputs (unauthenticated, like
replicate.delivery). Models: genrail/static-ad, genrail/ugc-video, genrail/tts (see MODELS for
their version ids); `product_image` may be an http(s) or data: URL. Errors are `{"detail": ...}`.

A prediction goes starting -> processing -> succeeded | failed, or canceled (cancel endpoint, or
a `Cancel-After` deadline passed while running) or aborted (deadline passed before it started).
Webhooks are Standard-Webhooks signed with `webhook_secret`, honour `webhook_events_filter`
(default output + completed), keep their webhook-id across retries (network errors, 429, 5xx),
which go on for minutes with exponential backoff, as Replicate's do. With `data_dir` set (genrail
up sets it), predictions and outputs survive a restart: running ones run again, owed
callbacks are sent (see `archive.py`).

Knobs (env `LOCALPROVIDER_<NAME>`; per prediction, input key `_emulator_<name>` wins; the keys
stay in the echoed `input` but are not passed to the model):
  delay_s             seconds from creation to completion (half starting, half processing)
  failure_rate        share of predictions that fail, decided by a hash of the prediction id;
                      per prediction: `_emulator_fail: true|false`
  duplicate_callbacks times each webhook is delivered (`_emulator_duplicates`), same webhook-id
  out_of_order        after the completed webhook, deliver a stale `processing` one (always,
                      whatever the filter), as a late retry from Replicate would arrive
  never_call_back     send no webhooks at all; the prediction still completes for polling
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import hashlib
import json
import logging
import re
import secrets
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote_to_bytes

import httpx
from fastapi import APIRouter, Header, HTTPException, Request, Response
from fastapi.responses import JSONResponse
from genrail_localprovider.archive import PredictionArchive
from genrail_localprovider.work import media
from genrail_runtime.webhook_signing import sign
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

log = logging.getLogger(__name__)

# A fixed secret so a local stack works with no configuration; set LOCALPROVIDER_WEBHOOK_SECRET
# (and the receiver's) to anything else.
DEV_WEBHOOK_SECRET = "whsec_" + base64.b64encode(b"genrail-localprovider-dev-secret").decode()
WEBHOOK_EVENTS = frozenset({"start", "output", "logs", "completed"})
DEFAULT_WEBHOOK_EVENTS = frozenset({"output", "completed"})
TERMINAL = frozenset({"succeeded", "failed", "canceled", "aborted"})


class ReplicateEmulatorSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LOCALPROVIDER_", extra="ignore")

    public_url: str = "http://127.0.0.1:8002"
    api_token: str = ""  # empty: any non-empty bearer token is accepted
    webhook_secret: str = DEV_WEBHOOK_SECRET
    delay_s: float = Field(default=0.5, ge=0)
    failure_rate: float = Field(default=0.0, ge=0, le=1)
    duplicate_callbacks: int = Field(default=1, ge=1)
    out_of_order: bool = False
    never_call_back: bool = False
    # Failed deliveries are retried over minutes, as Replicate does: 1, 2, 4 … s, at most 60 s
    # apart, about four minutes in all, so a receiver down for a minute loses nothing.
    webhook_attempts: int = Field(default=10, ge=1)
    webhook_retry_delay_s: float = Field(default=1.0, ge=0)  # doubled after each failed attempt
    webhook_retry_max_delay_s: float = Field(default=60.0, ge=0)
    webhook_timeout_s: float = Field(default=10.0, gt=0)
    retention_s: float = Field(default=3600.0, gt=0)  # Replicate removes API predictions' data after an hour
    data_dir: Path | None = None  # keeps predictions and outputs across restarts (genrail up sets it)
    max_input_file_bytes: int = Field(default=25 * 1024 * 1024, gt=0)


@dataclass(frozen=True)
class EmulatedModel:
    name: str
    run: Callable[[dict[str, Any]], tuple[bytes, str]]
    extension: str
    file_inputs: tuple[str, ...] = ()

    @property
    def version(self) -> str:
        return hashlib.sha256(f"genrail-localprovider/{self.name}/1".encode()).hexdigest()


MODELS: dict[str, EmulatedModel] = {
    m.name: m
    for m in (
        EmulatedModel("genrail/static-ad", media.static_ad, "png", ("product_image",)),
        EmulatedModel("genrail/ugc-video", media.ugc_video, "webp", ("product_image",)),
        EmulatedModel("genrail/tts", media.tts, "wav"),
    )
}
MODELS_BY_VERSION = {m.version: m for m in MODELS.values()}


class _Overrides(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    fail: bool | None = None
    never_call_back: bool | None = None
    duplicates: int | None = Field(default=None, ge=1, le=50)
    delay_s: float | None = Field(default=None, ge=0, le=600)
    out_of_order: bool | None = None


class _CreateBody(BaseModel):
    version: str | None = None
    input: dict[str, Any]
    webhook: str | None = Field(default=None, pattern=r"^https?://")
    webhook_events_filter: list[str] | None = None
    stream: bool | None = None  # accepted and ignored: outputs are files, not token streams


@dataclass
class _Prediction:
    model: EmulatedModel
    state: dict[str, Any]
    webhook: str | None
    events: frozenset[str]
    overrides: _Overrides
    deadline: float | None  # event-loop time
    created: float = field(default_factory=time.monotonic)
    created_wall: float = field(default_factory=time.time)
    completed_delivered: bool = False  # the completed callback went out (or none was asked for)
    task: asyncio.Task[None] | None = None
    delivery_lock: asyncio.Lock = field(default_factory=asyncio.Lock)  # keeps webhooks in order


class _DeadlineReached(Exception):
    pass


def _pick(override: Any, default: Any) -> Any:
    return default if override is None else override


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _parse_duration(text: str) -> float:
    """Cancel-After durations: "30", "30s", "1m30s", "500ms", "1h"."""
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(text)
    return sum(float(n) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[u] for n, u in parts)


class ReplicateEmulator:
    def __init__(self, settings: ReplicateEmulatorSettings):
        self.settings = settings
        self.public_url = settings.public_url.rstrip("/")
        self.predictions: dict[str, _Prediction] = {}
        self.files: dict[str, tuple[bytes, str]] = {}
        self.archive = PredictionArchive(settings.data_dir) if settings.data_dir else None
        self._background: set[asyncio.Task[None]] = set()
        self._http: httpx.AsyncClient | None = None

    def http(self) -> httpx.AsyncClient:
        if self._http is None:
            self._http = httpx.AsyncClient(timeout=self.settings.webhook_timeout_s, follow_redirects=True)
        return self._http

    async def aclose(self) -> None:
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    def authorize(self, authorization: str | None) -> None:
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() not in ("bearer", "token") or not token.strip():
            raise HTTPException(401, "You did not pass a valid authentication token")
        expected = self.settings.api_token
        if expected and not secrets.compare_digest(token.strip().encode(), expected.encode()):
            raise HTTPException(401, "Invalid token.")

    def _spawn(self, coro: Any) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    def _prune(self) -> None:
        horizon = time.monotonic() - self.settings.retention_s
        for prediction_id, prediction in list(self.predictions.items()):
            if prediction.created < horizon and prediction.state["status"] in TERMINAL:
                del self.predictions[prediction_id]
                self.files.pop(f"{prediction_id}.{prediction.model.extension}", None)
                if self.archive is not None:
                    self.archive.forget(prediction_id, f"{prediction_id}.{prediction.model.extension}")

    def create(self, model: EmulatedModel, body: _CreateBody, cancel_after: str | None) -> dict[str, Any]:
        raw_overrides = {
            k.removeprefix("_emulator_"): v for k, v in body.input.items() if k.startswith("_emulator_")
        }
        try:
            overrides = _Overrides.model_validate(raw_overrides)
            timeout_s = _parse_duration(cancel_after) if cancel_after is not None else None
        except ValidationError as exc:
            raise HTTPException(422, f"invalid _emulator_ input: {exc.errors(include_url=False)}") from None
        except ValueError:
            raise HTTPException(
                400, f"Cancel-After must be a duration such as 30s or 1m: {cancel_after!r}"
            ) from None
        events = (
            frozenset(body.webhook_events_filter)
            if body.webhook_events_filter is not None
            else DEFAULT_WEBHOOK_EVENTS
        )
        if unknown := events - WEBHOOK_EVENTS:
            raise HTTPException(422, f"webhook_events_filter has unknown events {sorted(unknown)}")

        self._prune()
        prediction_id = base64.b32encode(secrets.token_bytes(16)).decode().rstrip("=").lower()
        loop = asyncio.get_running_loop()
        prediction = _Prediction(
            model=model,
            webhook=body.webhook,
            events=events,
            overrides=overrides,
            deadline=loop.time() + timeout_s if timeout_s is not None else None,
            state={
                "id": prediction_id,
                "model": model.name,
                "version": model.version,
                "input": body.input,
                "logs": "",
                "output": None,
                "data_removed": False,
                "error": None,
                "status": "starting",
                "created_at": _now_iso(),
                "started_at": None,
                "completed_at": None,
                "source": "api",
                "urls": {
                    "get": f"{self.public_url}/v1/predictions/{prediction_id}",
                    "cancel": f"{self.public_url}/v1/predictions/{prediction_id}/cancel",
                },
                "metrics": {},
            },
        )
        self.predictions[prediction_id] = prediction
        self._keep(prediction)
        prediction.task = self._spawn(self._run(prediction))
        return copy.deepcopy(prediction.state)

    def _keep(self, prediction: _Prediction) -> None:
        if self.archive is not None:
            self.archive.save(prediction.state["id"], {
                "state": prediction.state, "model": prediction.model.name, "webhook": prediction.webhook,
                "events": sorted(prediction.events), "overrides": prediction.overrides.model_dump(),
                "created_wall": prediction.created_wall, "completed_delivered": prediction.completed_delivered})

    def restore(self) -> None:
        """Take up what the archive holds: a prediction that was running runs again from the
        start; a finished one whose completed callback may not have gone out sends it."""
        if self.archive is None:
            return
        for record in self.archive.records():
            model = MODELS.get(record.get("model", ""))
            if model is None or record["state"]["id"] in self.predictions:
                continue
            age = max(0.0, time.time() - record["created_wall"])
            prediction = _Prediction(model=model, state=record["state"], webhook=record["webhook"],
                                     events=frozenset(record["events"]),
                                     overrides=_Overrides.model_validate(record["overrides"]), deadline=None,
                                     created=time.monotonic() - age, created_wall=record["created_wall"],
                                     completed_delivered=record["completed_delivered"])
            self.predictions[prediction.state["id"]] = prediction
            if prediction.state["status"] not in TERMINAL:
                prediction.state.update(status="starting", started_at=None)
                prediction.task = self._spawn(self._run(prediction))
            elif not prediction.completed_delivered:
                self._send_completed(prediction, None)

    def file(self, name: str) -> tuple[bytes, str] | None:
        if (found := self.files.get(name)) is None and self.archive is not None:
            found = self.archive.load_file(name)
        return found

    def get(self, prediction_id: str) -> _Prediction:
        if (prediction := self.predictions.get(prediction_id)) is None:
            raise HTTPException(404, "Not found.")
        return prediction

    def cancel(self, prediction_id: str) -> dict[str, Any]:
        prediction = self.get(prediction_id)
        if prediction.state["status"] not in TERMINAL:
            if prediction.task is not None:
                prediction.task.cancel()
            self._finish(prediction, "canceled")
            self._send_completed(prediction, None)
        return copy.deepcopy(prediction.state)

    def _fails(self, prediction: _Prediction) -> bool:
        if prediction.overrides.fail is not None:
            return prediction.overrides.fail
        digest = hashlib.sha256(prediction.state["id"].encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2**64 < self.settings.failure_rate

    async def _sleep(self, prediction: _Prediction, seconds: float) -> None:
        """Sleep, or stop early with _DeadlineReached when the Cancel-After deadline comes first."""
        loop = asyncio.get_running_loop()
        if prediction.deadline is not None and loop.time() + seconds >= prediction.deadline:
            await asyncio.sleep(max(0.0, prediction.deadline - loop.time()))
            raise _DeadlineReached
        await asyncio.sleep(seconds)

    def _finish(self, prediction: _Prediction, status: str, **fields: Any) -> None:
        state = prediction.state
        state.update(status=status, completed_at=_now_iso(), **fields)
        if state["started_at"] is not None:
            started = datetime.fromisoformat(state["started_at"])
            state["metrics"]["predict_time"] = (datetime.now(UTC) - started).total_seconds()
        state["metrics"]["total_time"] = time.monotonic() - prediction.created
        self._keep(prediction)

    async def _run(self, prediction: _Prediction) -> None:
        state, model = prediction.state, prediction.model
        delay_s = _pick(prediction.overrides.delay_s, self.settings.delay_s)
        self._emit(prediction, "start")
        try:
            await self._sleep(prediction, delay_s / 2)
        except _DeadlineReached:
            self._finish(prediction, "aborted")
            self._send_completed(prediction, None)
            return
        state.update(status="processing", started_at=_now_iso(), logs=f"Running {model.name}\n")
        self._keep(prediction)
        self._emit(prediction, "logs")
        stale = copy.deepcopy(state)
        began = time.monotonic()
        try:
            if self._fails(prediction):
                raise ValueError("emulated failure (failure_rate or _emulator_fail)")
            model_input = await self._model_input(prediction)
            data, content_type = await asyncio.to_thread(model.run, model_input)
            await self._sleep(prediction, max(0.0, delay_s / 2 - (time.monotonic() - began)))
        except _DeadlineReached:
            self._finish(prediction, "canceled")
        except ValueError as exc:  # what the media functions raise for inputs they cannot render
            state["logs"] += f"Error: {exc}\n"
            self._finish(prediction, "failed", error=str(exc))
        except Exception as exc:
            log.exception("prediction %s crashed", state["id"])
            self._finish(prediction, "failed", error=f"internal error: {exc!r}")
        else:
            name = f"{state['id']}.{model.extension}"
            self.files[name] = (data, content_type)
            if self.archive is not None:
                self.archive.save_file(name, data, content_type)
            state["output"] = f"{self.public_url}/files/{name}"
            state["logs"] += f"Wrote {len(data)} bytes of {content_type}\n"
            self._emit(prediction, "output")
            self._finish(prediction, "succeeded")
        self._send_completed(prediction, stale)

    async def _model_input(self, prediction: _Prediction) -> dict[str, Any]:
        model_input = {k: v for k, v in prediction.state["input"].items() if not k.startswith("_emulator_")}
        for name in prediction.model.file_inputs:
            if isinstance(url := model_input.get(name), str):
                model_input[name] = await self._fetch_file(name, url)
        return model_input

    async def _fetch_file(self, name: str, url: str) -> bytes:
        limit = self.settings.max_input_file_bytes
        if url.startswith("data:"):
            meta, sep, payload = url[5:].partition(",")
            if not sep:
                raise ValueError(f"{name} is a malformed data URL")
            try:
                data = (
                    base64.b64decode(payload, validate=True)
                    if meta.endswith(";base64")
                    else unquote_to_bytes(payload)
                )
            except ValueError:
                raise ValueError(f"{name} data URL is not valid base64") from None
        elif url.startswith(("http://", "https://")):
            try:
                async with self.http().stream("GET", url) as response:
                    if response.status_code != 200:
                        raise ValueError(f"could not download {name}: HTTP {response.status_code}")
                    buffer = bytearray()
                    async for chunk in response.aiter_bytes():
                        buffer += chunk
                        if len(buffer) > limit:
                            break
                    data = bytes(buffer)
            except httpx.HTTPError as exc:
                raise ValueError(f"could not download {name}: {exc!r}") from None
        else:
            raise ValueError(f"{name} must be an http(s) or data: URL")
        if len(data) > limit:
            raise ValueError(f"{name} is larger than {limit} bytes")
        return data

    def _emit(self, prediction: _Prediction, event: str) -> None:
        if event in prediction.events:
            self._deliver_later(prediction, copy.deepcopy(prediction.state))

    def _send_completed(self, prediction: _Prediction, stale: dict[str, Any] | None) -> None:
        self._deliver_later(prediction, copy.deepcopy(prediction.state), completed=True)
        if stale is not None and _pick(prediction.overrides.out_of_order, self.settings.out_of_order):
            self._deliver_later(prediction, stale)

    def _deliver_later(self, prediction: _Prediction, snapshot: dict[str, Any], *, completed: bool = False) -> None:
        if prediction.webhook is None or _pick(
            prediction.overrides.never_call_back, self.settings.never_call_back
        ):
            if completed:
                prediction.completed_delivered = True
                self._keep(prediction)
            return
        copies = _pick(prediction.overrides.duplicates, self.settings.duplicate_callbacks)
        self._spawn(self._deliver(prediction, snapshot, copies, completed=completed))

    async def _deliver(self, prediction: _Prediction, snapshot: dict[str, Any], copies: int, *,
                       completed: bool = False) -> None:
        assert prediction.webhook is not None
        body = json.dumps(snapshot, separators=(",", ":")).encode()
        msg_id = f"msg_{secrets.token_hex(12)}"
        async with prediction.delivery_lock:
            for _ in range(copies):
                await self._post_webhook(prediction.webhook, msg_id, body)
        if completed:
            prediction.completed_delivered = True
            self._keep(prediction)

    async def _post_webhook(self, url: str, msg_id: str, body: bytes) -> None:
        attempts, delay = self.settings.webhook_attempts, self.settings.webhook_retry_delay_s
        for attempt in range(1, attempts + 1):
            headers = {
                **sign(self.settings.webhook_secret, msg_id, int(time.time()), body),
                "content-type": "application/json",
                "user-agent": "genrail-localprovider",
            }
            try:
                response = await self.http().post(url, content=body, headers=headers)
                if response.status_code < 500 and response.status_code != 429:
                    return
                outcome = f"HTTP {response.status_code}"
            except httpx.HTTPError as exc:
                outcome = repr(exc)
            log.warning(
                "webhook %s to %s failed (attempt %d/%d): %s", msg_id, url, attempt, attempts, outcome
            )
            if attempt < attempts:
                await asyncio.sleep(min(delay * 2 ** (attempt - 1), self.settings.webhook_retry_max_delay_s))


def create_router(settings: ReplicateEmulatorSettings | None = None) -> APIRouter:
    emulator = ReplicateEmulator(settings or ReplicateEmulatorSettings())

    @contextlib.asynccontextmanager
    async def lifespan(_app: Any) -> AsyncIterator[None]:
        emulator.restore()
        yield
        await emulator.aclose()

    router = APIRouter(lifespan=lifespan)

    async def create_body(request: Request) -> _CreateBody:
        try:
            return _CreateBody.model_validate_json(await request.body())
        except ValidationError as exc:
            raise HTTPException(422, f"invalid request body: {exc.errors(include_url=False)}") from None

    @router.post("/v1/models/{owner}/{name}/predictions", status_code=201)
    async def create_model_prediction(
        owner: str,
        name: str,
        request: Request,
        authorization: str | None = Header(None),
        cancel_after: str | None = Header(None),
    ) -> dict[str, Any]:
        emulator.authorize(authorization)
        if (model := MODELS.get(f"{owner}/{name}")) is None:
            raise HTTPException(404, f"Model {owner}/{name} not found; emulated: {sorted(MODELS)}")
        return emulator.create(model, await create_body(request), cancel_after)

    @router.post("/v1/predictions", status_code=201)
    async def create_prediction(
        request: Request, authorization: str | None = Header(None), cancel_after: str | None = Header(None)
    ) -> dict[str, Any]:
        emulator.authorize(authorization)
        body = await create_body(request)
        version = (body.version or "").rpartition(":")[2]
        if (model := MODELS_BY_VERSION.get(version)) is None:
            raise HTTPException(422, "Invalid version or not permitted")
        return emulator.create(model, body, cancel_after)

    @router.get("/v1/predictions/{prediction_id}")
    async def get_prediction(prediction_id: str, authorization: str | None = Header(None)) -> dict[str, Any]:
        emulator.authorize(authorization)
        return copy.deepcopy(emulator.get(prediction_id).state)

    @router.post("/v1/predictions/{prediction_id}/cancel")
    async def cancel_prediction(
        prediction_id: str, authorization: str | None = Header(None)
    ) -> dict[str, Any]:
        emulator.authorize(authorization)
        return emulator.cancel(prediction_id)

    @router.get("/files/{name}")
    async def get_file(name: str) -> Response:
        if (file := emulator.file(name)) is None:
            return JSONResponse({"detail": "Not found."}, status_code=404)
        data, content_type = file
        return Response(data, media_type=content_type, headers={"cache-control": "private, max-age=3600"})

    return router
