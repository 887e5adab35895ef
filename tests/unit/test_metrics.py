"""The business metrics: what each logged event, ledger entry and consumer reading counts."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from genrail_events import ledger
from genrail_events.ledger import Account
from genrail_runtime import logs, metrics
from genrail_runtime.metrics import Metrics
from genrail_commands.accounts import count_credits
from genrail_eventlog.lag import ConsumerLag


@pytest.fixture
def reader() -> InMemoryMetricReader:
    return InMemoryMetricReader()


@pytest.fixture
def instruments(reader: InMemoryMetricReader, monkeypatch: pytest.MonkeyPatch) -> Metrics:
    made = Metrics(MeterProvider(metric_readers=[reader]).get_meter("test"))
    monkeypatch.setattr(metrics, "_metrics", made)  # what metrics.get() hands out
    return made


def points(reader: InMemoryMetricReader) -> dict[tuple[str, tuple], object]:
    """Every data point by metric name and attributes: a sum's value, a histogram's point."""
    out: dict[tuple[str, tuple], object] = {}
    data = reader.get_metrics_data()
    for resource in data.resource_metrics if data else ():
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                for point in metric.data.data_points:
                    key = (metric.name, tuple(sorted(point.attributes.items())))
                    out[key] = getattr(point, "value", point)
    return out


def test_logged_job_outcomes_are_counted_by_type_and_other_events_are_not(instruments, reader):
    log = logging.getLogger("genrail.test")
    for name, job_type in [("job.created", "tts"), ("job.created", "tts"), ("job.created", "copy"),
                           ("job.failed", "copy"), ("job.expired", "tts"), ("job.transition", "tts"),
                           ("credits.granted", None)]:
        logs.event(log, name, job_id="j", type=job_type)
    assert points(reader) == {
        ("genrail.jobs.created", (("type", "tts"),)): 2,
        ("genrail.jobs.created", (("type", "copy"),)): 1,
        ("genrail.jobs.failed", (("type", "copy"),)): 1,
        ("genrail.jobs.expired", (("type", "tts"),)): 1,
    }


def test_a_completed_job_is_timed_from_its_creation(instruments, reader):
    created_at = datetime.now(UTC) - timedelta(seconds=3)
    logs.event(logging.getLogger("genrail.test"), "job.completed", job_id="j", type="tts",
               created_at=created_at)
    found = points(reader)
    assert found[("genrail.jobs.completed", (("type", "tts"),))] == 1
    duration = found[("genrail.job.duration", (("type", "tts"),))]
    assert duration.count == 1 and 3 <= duration.sum < 4
    assert list(duration.explicit_bounds) == list(metrics.JOB_DURATION_BUCKETS_S)


def test_debits_and_refunds_count_their_credits(instruments, reader):
    account = Account("u1", 10)
    count_credits(ledger.decide_debit(account, "j1", 1, 3, ledger.JobRequest(type="static_ad", input={}, cost=3)).event)
    count_credits(ledger.decide_debit(account, "j2", 1, 2, ledger.JobRequest(type="tts", input={}, cost=2)).event)
    count_credits(ledger.decide_refund(account, "j1", 1, 3, "job failed").event)
    count_credits(ledger.decide_grant(account, 10, "signup", "signup").event)
    assert points(reader) == {
        ("genrail.credits.debited", (("type", "static_ad"),)): 3,
        ("genrail.credits.debited", (("type", "tts"),)): 2,
        ("genrail.credits.refunded", (("reason", "job failed"),)): 3,
    }


def test_webhook_verification_failures_are_counted_by_provider(instruments, reader):
    for provider in ("replicate", "replicate", "stripe"):
        instruments.webhook_verification_failed(provider)
    assert points(reader) == {
        ("genrail.webhooks.verification_failures", (("provider", "replicate"),)): 2,
        ("genrail.webhooks.verification_failures", (("provider", "stripe"),)): 1,
    }


def test_consumer_lag_reports_the_last_reading_of_each_consumer(reader):
    lag = ConsumerLag(js=None, consumers=[("JOBS", "pipeline"), ("USERS", "ledger-signup-grants")],
                      meter=MeterProvider(metric_readers=[reader]).get_meter("test"))
    assert points(reader) == {}  # nothing read yet: nothing reported
    lag.readings.update({("JOBS", "pipeline"): (7, 2), ("USERS", "ledger-signup-grants"): (0, 0)})
    assert points(reader) == {
        ("genrail.consumer.pending", (("consumer", "pipeline"), ("stream", "JOBS"))): 7,
        ("genrail.consumer.ack_pending", (("consumer", "pipeline"), ("stream", "JOBS"))): 2,
        ("genrail.consumer.pending", (("consumer", "ledger-signup-grants"), ("stream", "USERS"))): 0,
        ("genrail.consumer.ack_pending", (("consumer", "ledger-signup-grants"), ("stream", "USERS"))): 0,
    }
