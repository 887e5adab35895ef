"""Traces, metrics and logs of a running stack: one trace per job from the request to the
refund, counters that count a known workload exactly, trace ids in the JSON logs.

The stack of this module writes every finished span of every process to
`<data>/spans/<service>.jsonl` (TELEMETRY_SPANS_DIR), and each process serves Prometheus
metrics on the port `Stack.metrics_ports` names."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import Counter
from collections.abc import Iterator

import httpx
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from prometheus_client.parser import text_string_to_metric_families

from genrail_cli.stack import Stack
from genrail_runtime import webhook_signing
from genrail_eventlog.consumers import ensure_consumer
from genrail_eventlog.store import connect
from genrail_eventlog.lag import ConsumerLag
from tests.conftest import new_stack
from tests.helpers import User, register, wait_for_job, wait_until

pytestmark = pytest.mark.e2e

AD = {"headline": "Built for the long way round", "cta": "Shop now", "style": "vibrant"}
COUNTED = ("genrail_jobs_created_total", "genrail_jobs_completed_total", "genrail_jobs_failed_total",
           "genrail_jobs_expired_total", "genrail_job_duration_seconds_count",
           "genrail_credits_debited_total", "genrail_credits_refunded_total",
           "genrail_webhooks_verification_failures_total")


@pytest.fixture(scope="module")
def observed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    data = tmp_path_factory.mktemp("observed")
    stack = new_stack(data, env={"TELEMETRY_SPANS_DIR": str(data / "spans"), "SIGNUP_CREDITS": "100"}).start()
    yield stack
    stack.stop()


@pytest.fixture(scope="module")
async def client(observed: Stack):
    async with httpx.AsyncClient(base_url=observed.api_url, timeout=30) as http:
        yield http


# --- reading what the processes recorded ------------------------------------------------

def read_spans(stack: Stack) -> list[dict]:
    return [json.loads(line) for path in sorted((stack.data_dir / "spans").glob("*.jsonl"))
            for line in path.read_text().splitlines() if line]


def ancestry(span: dict, index: dict[str, dict]) -> list[dict]:
    """The span and its parents up to the root, as far as they were recorded."""
    chain = [span]
    while (parent := index.get(chain[-1]["parent_span_id"] or "")) is not None:
        chain.append(parent)
    return chain


def what(span: dict) -> tuple[str, str, str]:
    return span["service"], span["kind"], span["name"]


def log_lines(stack: Stack, service: str) -> list[dict]:
    lines = (stack.data_dir / "logs" / f"{service}.log").read_text().splitlines()
    return [json.loads(line) for line in lines if line.startswith("{")]


async def scrape(stack: Stack) -> Counter:
    """Every sample of every process, summed across processes by name and labels."""
    totals: Counter = Counter()
    async with httpx.AsyncClient(timeout=10) as http:
        for port in stack.metrics_ports.values():
            text = (await http.get(f"http://{stack.host}:{port}/metrics")).text
            for family in text_string_to_metric_families(text):
                for sample in family.samples:
                    labels = tuple(sorted((k, v) for k, v in sample.labels.items()
                                          if not k.startswith("otel_")))
                    totals[(sample.name, labels)] += sample.value
    return totals


# --- traces --------------------------------------------------------------------------------

async def test_a_failed_async_job_is_one_trace_from_the_request_through_the_webhook_to_the_refund(
        observed, client, shop):
    user = await register(client)
    created = await client.post("/api/generate/static-ad", headers=user.headers,
                                json={**AD, "product_image_url": shop.url("/down")})  # the provider fails it
    assert created.status_code == 202, created.text
    job_id = created.json()["id"]
    await wait_for_job(client, user, job_id, {"failed"})

    async def refund_published() -> list[dict]:
        return [s for s in read_spans(observed) if s["name"] == "publish ledger.refunded"
                and job_id in s["attributes"]["messaging.destination.name"]]

    [refund] = await wait_until(refund_published)
    spans = read_spans(observed)
    index = {s["span_id"]: s for s in spans}
    job_trace = refund["trace_id"]

    # The refund descends from the webhook that failed the job, which continues the job's
    # trace from the request that created it.
    chain = [what(s) for s in ancestry(refund, index)]
    assert chain[:3] == [("ledger", "PRODUCER", "publish ledger.refunded"),
                         ("ledger", "CONSUMER", "process ledger-refunds"),
                         ("webhooks", "PRODUCER", "publish job.transitioned")], chain
    assert chain[3] == ("webhooks", "INTERNAL", "replicate.prediction"), chain
    assert chain[-1] == ("api", "SERVER", "POST /api/generate/static-ad"), chain
    assert {s["trace_id"] for s in ancestry(refund, index)} == {job_trace}

    in_job_trace = [s for s in spans if s["trace_id"] == job_trace]
    [request] = [s for s in in_job_trace if s["kind"] == "SERVER"]
    assert request["parent_span_id"] is None and request["service"] == "api"
    [debit] = [s for s in in_job_trace if s["name"] == "publish ledger.debited"]
    assert ancestry(debit, index)[-1] is request

    # The pipeline's processing and its provider call are in the trace, under the job's creation.
    [work] = [s for s in in_job_trace if what(s) == ("pipeline", "CONSUMER", "process pipeline")]
    assert index[work["parent_span_id"]]["name"] == "publish job.created"
    assert ancestry(work, index)[-1] is request
    [provider_call] = [s for s in in_job_trace
                       if s["kind"] == "CLIENT" and s["parent_span_id"] == work["span_id"]]
    assert provider_call["attributes"]["http.url"].endswith("/v1/models/genrail/static-ad/predictions")

    # Each provider callback is a request with a trace of its own, linked to the job's trace,
    # and the span that applies it to the job is in the job's trace, linked back to it.
    applied = [s for s in spans
               if s["name"] == "replicate.prediction" and s["attributes"]["genrail.job_id"] == job_id]
    assert applied
    for span in applied:
        assert span["trace_id"] == job_trace
        [link] = span["links"]
        callback = index[link["span_id"]]
        assert what(callback) == ("webhooks", "SERVER", "POST /webhooks/replicate")
        assert callback["trace_id"] != job_trace and callback["parent_span_id"] is None
        assert [li["trace_id"] for li in callback["links"]] == [job_trace]

    # The JSON logs of the job's events carry the trace id of the job's trace.
    logged = [line for service in ("api", "ledger", "pipeline", "webhooks")
              for line in log_lines(observed, service)
              if line.get("job_id") == job_id and line["event"] in ("job.created", "job.transition", "job.failed")]
    assert {line["event"] for line in logged} >= {"job.created", "job.failed"}
    assert {line["trace_id"] for line in logged} == {job_trace}
    assert all(line["span_id"] in index for line in logged)


async def test_api_requests_trace_their_sql_statements(observed, client):
    user = await register(client)
    assert (await client.get("/api/credits", headers=user.headers)).status_code == 200

    async def statements() -> list[dict]:
        spans = read_spans(observed)
        requests = {s["trace_id"] for s in spans if s["name"] == "GET /api/credits"}
        return [s for s in spans if s["trace_id"] in requests and "db.system" in s["attributes"]]

    sql = await wait_until(statements)
    assert {s["attributes"]["db.system"] for s in sql} == {"postgresql"}
    assert all(s["kind"] == "CLIENT" and s["service"] == "api" for s in sql)


# --- metrics -------------------------------------------------------------------------------

async def _forge_webhooks(stack: Stack, job_id: str) -> None:
    body = json.dumps({"id": "forged", "status": "succeeded", "output": []}).encode()
    wrong_secret = webhook_signing.sign(webhook_signing.new_secret(), f"msg_{uuid.uuid4().hex}",
                                        int(time.time()), body)
    stale = webhook_signing.sign(stack.local_secrets()["replicate_webhook"], f"msg_{uuid.uuid4().hex}",
                                 int(time.time()) - 3600, body)
    async with httpx.AsyncClient(base_url=stack.webhooks_url, timeout=10) as http:
        for headers in (wrong_secret, stale):
            answer = await http.post(f"/webhooks/replicate?job_id={job_id}&attempt=1", content=body,
                                     headers=headers)
            assert answer.status_code in (400, 401), answer.text
        answer = await http.post("/webhooks/stripe", content=b'{"id": "evt_forged"}',
                                 headers={"Stripe-Signature": "t=1,v1=forged"})
        assert answer.status_code == 400, answer.text


async def _run_workload(client: httpx.AsyncClient, user: User, shop) -> list[str]:
    """3 copy jobs (completed inline), 2 TTS jobs (completed by webhook), 2 static ads the
    provider fails (failed by webhook, then refunded)."""
    requests = [*[("copy", {"product_name": f"Boot {n}"}) for n in range(3)],
                *[("tts", {"text": f"Dry feet number {n}", "duration_s": 0.5}) for n in range(2)],
                *[("static-ad", {**AD, "product_image_url": shop.url("/down")}) for _ in range(2)]]
    ids = []
    for path, body in requests:
        created = await client.post(f"/api/generate/{path}", headers=user.headers, json=body)
        assert created.status_code == 202, created.text
        ids.append(created.json()["id"])
    finals = [(await wait_for_job(client, user, job_id, {"completed", "failed", "expired"}))["status"]
              for job_id in ids]
    assert finals == ["completed"] * 5 + ["failed"] * 2
    return ids


async def test_metrics_count_a_known_workload_exactly(observed, client, shop):
    user = await register(client)
    before = await scrape(observed)
    ids = await _run_workload(client, user, shop)
    await _forge_webhooks(observed, ids[0])
    expected = {
        ("genrail_jobs_created_total", (("type", "copy"),)): 3,
        ("genrail_jobs_created_total", (("type", "tts"),)): 2,
        ("genrail_jobs_created_total", (("type", "static_ad"),)): 2,
        ("genrail_jobs_completed_total", (("type", "copy"),)): 3,
        ("genrail_jobs_completed_total", (("type", "tts"),)): 2,
        ("genrail_jobs_failed_total", (("type", "static_ad"),)): 2,
        ("genrail_job_duration_seconds_count", (("type", "copy"),)): 3,
        ("genrail_job_duration_seconds_count", (("type", "tts"),)): 2,
        ("genrail_credits_debited_total", (("type", "copy"),)): 3 * 1,
        ("genrail_credits_debited_total", (("type", "tts"),)): 2 * 2,
        ("genrail_credits_debited_total", (("type", "static_ad"),)): 2 * 3,
        ("genrail_credits_refunded_total", (("reason", "job failed"),)): 2 * 3,
        ("genrail_webhooks_verification_failures_total", (("provider", "replicate"),)): 2,
        ("genrail_webhooks_verification_failures_total", (("provider", "stripe"),)): 1,
    }
    counted: dict = {}
    deadline = time.monotonic() + 20
    while counted != expected and time.monotonic() < deadline:  # the refunds come a moment later
        after = await scrape(observed)
        counted = {key: after[key] - before[key] for key in after
                   if key[0] in COUNTED and after[key] != before[key]}
        await asyncio.sleep(0.2)
    assert counted == expected


async def test_every_durable_consumer_reports_its_lag(observed, client):
    consumers = {"pipeline", "pipeline-cancellations", "webhooks-out", "webhooks-deliver", "ledger-signup-grants", "ledger-refunds",
                 "ledger-job-recovery", "ledger-purchases", "ledger-payment-reversals"}

    async def settled() -> dict[str, float] | None:
        samples = await scrape(observed)
        lag = {dict(labels)["consumer"]: value for (name, labels), value in samples.items()
               if name == "genrail_consumer_pending"}
        return lag if set(lag) == consumers and not any(lag.values()) else None

    assert await wait_until(settled, timeout_s=15)


async def test_consumer_lag_counts_what_a_durable_consumer_has_not_yet_had(observed, client):
    nc = await connect(observed.nats_url, "tests")
    js = nc.jetstream()
    durable = f"test-lag-{uuid.uuid4().hex[:8]}"
    await ensure_consumer(js, "USERS", durable, ["user.registered.>"], max_deliver=1)
    reader = InMemoryMetricReader()
    meter = MeterProvider(metric_readers=[reader]).get_meter("test")
    lag = ConsumerLag(js, [("USERS", durable)], meter=meter)

    def readings() -> dict[str, float]:
        return {metric.name: point.value
                for resource in reader.get_metrics_data().resource_metrics
                for scope in resource.scope_metrics for metric in scope.metrics
                for point in metric.data.data_points if point.attributes["consumer"] == durable}

    try:
        await lag.refresh()
        registered = readings()["genrail.consumer.pending"]
        for _ in range(3):
            await register(client)
        await lag.refresh()
        assert readings() == {"genrail.consumer.pending": registered + 3, "genrail.consumer.ack_pending": 0}
        sub = await js.pull_subscribe_bind(durable, "USERS")
        taken = await sub.fetch(int(registered) + 3, timeout=5)
        assert len(taken) == registered + 3
        await lag.refresh()
        assert readings() == {"genrail.consumer.pending": 0, "genrail.consumer.ack_pending": len(taken)}
        for msg in taken:
            await msg.ack_sync()
        await lag.refresh()
        assert readings() == {"genrail.consumer.pending": 0, "genrail.consumer.ack_pending": 0}
    finally:
        await js.delete_consumer("USERS", durable)
        await nc.close()

