"""How much decoding one event costs: the typed msgspec codec against the same types in
pydantic, against a pydantic envelope with a dict payload (the codec genrail used before),
and against plain `json.loads`, on the same bytes, in the same run (best of 7).

    python -m bench.codec
"""

from __future__ import annotations

import timeit
import uuid
from datetime import datetime
from typing import Any

import json
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from genrail_events import jobs
from genrail_events.envelope import Event
from genrail_events.jobs import JobStatus as S
from genrail_events.jobs import JobType


class PydanticEvent(BaseModel):
    model_config = ConfigDict(frozen=True)
    id: uuid.UUID
    type: str
    occurred_at: datetime
    aggregate_id: str
    schema_version: int = 1
    data: dict[str, Any]


class PydanticTransitionData(BaseModel):
    job_id: str
    user_id: str
    type: JobType
    cost: int
    attempt: int
    batch_id: str | None = None
    from_status: S = Field(alias="from")
    to: S
    output: dict[str, Any] | None = None
    error: str | None = None
    prediction_id: str | None = None
    reason: str | None = None


class PydanticTransitioned(BaseModel):
    id: uuid.UUID
    type: Literal["job.transitioned"]
    occurred_at: datetime
    aggregate_id: str
    schema_version: int = 1
    data: PydanticTransitionData


def sample() -> bytes:
    job = jobs.evolve(None, jobs.job_created(str(uuid.uuid4()), str(uuid.uuid4()), JobType.copy, 1,
                                             {"product_name": "Mug", "product_description": "A mug", "tone": "bold"}))
    job = jobs.evolve(job, jobs.decide_transition(job, S.processing))
    return jobs.decide_transition(job, S.completed, output={"headline": "Mug", "body": "Drink.", "hashtags": ["#mug"]}
                                  ).to_bytes()


def best_us(fn, n: int) -> float:
    return min(timeit.repeat(fn, number=n, repeat=7)) / n * 1e6


def main(n: int = 30_000) -> None:
    raw = sample()
    typed = best_us(lambda: Event.from_bytes(raw), n)
    print(f"decode one job.transitioned ({len(raw)} bytes), best of 7 × {n:,}:")
    print(f"  msgspec, typed event (genrail)   {typed:6.2f} µs")
    for name, fn in (("pydantic, the same types", lambda: PydanticTransitioned.model_validate_json(raw)),
                     ("pydantic, dict payload (before)", lambda: PydanticEvent.model_validate_json(raw)),
                     ("json.loads, no types at all", lambda: json.loads(raw))):
        other = best_us(fn, n)
        print(f"  {name:<32} {other:6.2f} µs   ({other / typed:.1f}× msgspec's cost)")


if __name__ == "__main__":
    main()
