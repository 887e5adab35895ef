"""Consumer lag: how far each durable consumer is behind, as OpenTelemetry gauges."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

import nats.errors
from nats.js import JetStreamContext
from opentelemetry import metrics as otel_metrics
from opentelemetry.metrics import CallbackOptions, Meter, Observation

log = logging.getLogger(__name__)
METER = "genrail"


class ConsumerLag:
    """Messages waiting for each durable consumer (`num_pending`) and delivered but not yet
    acked (`num_ack_pending`), read from JetStream every `interval_s` by the process that
    owns the consumers. Prometheus scrapes off the event loop, so the gauges report the
    last reading instead of asking the server."""

    def __init__(self, js: JetStreamContext, consumers: Iterable[tuple[str, str]], *,
                 meter: Meter | None = None, interval_s: float = 5.0):
        self.js, self.consumers, self.interval_s = js, list(consumers), interval_s
        self.readings: dict[tuple[str, str], tuple[int, int]] = {}
        meter = meter or otel_metrics.get_meter(METER)
        meter.create_observable_gauge("genrail.consumer.pending", [self._observe(0)], unit="{message}",
                                      description="Messages not yet delivered to a durable consumer")
        meter.create_observable_gauge("genrail.consumer.ack_pending", [self._observe(1)], unit="{message}",
                                      description="Messages delivered to a durable consumer, not yet acked")

    def _observe(self, index: int):
        def observe(_options: CallbackOptions) -> Iterable[Observation]:
            return [Observation(reading[index], {"stream": stream, "consumer": durable})
                    for (stream, durable), reading in list(self.readings.items())]
        return observe

    async def refresh(self) -> None:
        for stream, durable in self.consumers:
            info = await self.js.consumer_info(stream, durable)
            self.readings[(stream, durable)] = (info.num_pending or 0, info.num_ack_pending or 0)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.refresh()
            except (nats.errors.Error, TimeoutError) as exc:
                log.warning("consumer_lag.unavailable", extra={"error": repr(exc)})
            try:
                await asyncio.wait_for(stop.wait(), self.interval_s)
            except TimeoutError:
                pass
