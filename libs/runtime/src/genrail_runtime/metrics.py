"""genrail's own metrics, through OpenTelemetry (Prometheus reads them: see `telemetry`).

Jobs are counted where their events are logged (`logs.event` hands every event here, and
the `job.*` outcomes are counted by type); credits where the ledger entry is appended
(`accounts.append_to_account`); webhook verification failures in the webhook routes;
consumer lag by the process that owns the durable consumers.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from opentelemetry import metrics as otel_metrics
from opentelemetry.metrics import Meter

log = logging.getLogger(__name__)

METER = "genrail"
JOB_EVENTS = ("job.created", "job.completed", "job.failed", "job.expired")
# From an inline job's tenth of a second to a video's quarter of an hour.
JOB_DURATION_BUCKETS_S = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 900, 1800)


class Metrics:
    def __init__(self, meter: Meter):
        self.jobs = {name: meter.create_counter(f"genrail.{name.replace('job.', 'jobs.')}", unit="{job}",
                                                description=f"Jobs that reached {name}, by type")
                     for name in JOB_EVENTS}
        self.job_duration = meter.create_histogram(
            "genrail.job.duration", unit="s", description="Time from job.created to job.completed, by type",
            explicit_bucket_boundaries_advisory=JOB_DURATION_BUCKETS_S)
        self.credits_debited = meter.create_counter("genrail.credits.debited", unit="{credit}",
                                                    description="Credits charged for jobs, by job type")
        self.credits_refunded = meter.create_counter("genrail.credits.refunded", unit="{credit}",
                                                     description="Credits given back for jobs, by reason")
        self.webhook_verification_failures = meter.create_counter(
            "genrail.webhooks.verification_failures", unit="{request}",
            description="Webhook requests refused for their signature or timestamp, by provider")
        self.quarantined = meter.create_counter(
            "genrail.projection.quarantined", unit="{event}",
            description="Events a projection could not write and set aside (genrail quarantine lists them)")

    def log_event(self, name: str, fields: Mapping[str, Any]) -> None:
        """Count a logged domain event: `job.completed` with `created_at` also times the job."""
        counter = self.jobs.get(name)
        if counter is None:
            return
        attributes = {"type": str(fields.get("type") or "unknown")}
        counter.add(1, attributes)
        created_at = fields.get("created_at")
        if name == "job.completed" and isinstance(created_at, datetime):
            self.job_duration.record(max(0.0, (datetime.now(UTC) - created_at).total_seconds()), attributes)

    def credits_charged(self, amount: int, job_type: str) -> None:
        self.credits_debited.add(amount, {"type": job_type})

    def credits_given_back(self, amount: int, reason: str) -> None:
        self.credits_refunded.add(amount, {"reason": reason})

    def webhook_verification_failed(self, provider: str) -> None:
        self.webhook_verification_failures.add(1, {"provider": provider})

    def projection_quarantined(self, projection: str) -> None:
        self.quarantined.add(1, {"projection": projection})


_metrics: Metrics | None = None


def get() -> Metrics:
    """The process's instruments, on the global meter provider (`telemetry.setup` sets it;
    instruments made before that are bound to it once it is set)."""
    global _metrics
    if _metrics is None:
        _metrics = Metrics(otel_metrics.get_meter(METER))
    return _metrics

