"""How much decoding one event costs: the typed msgspec codec against a pydantic envelope
with a dict payload (the codec genrail used before), on the same bytes, in the same run.

    python -m bench.codec
"""

from __future__ import annotations

import timeit
import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict

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


def sample() -> bytes:
    job = jobs.evolve(None, jobs.job_created(str(uuid.uuid4()), str(uuid.uuid4()), JobType.copy, 1,
                                             {"product_name": "Mug", "product_description": "A mug", "tone": "bold"}))
    job = jobs.evolve(job, jobs.decide_transition(job, S.processing))
    return jobs.decide_transition(job, S.completed, output={"headline": "Mug", "body": "Drink.", "hashtags": ["#mug"]}
                                  ).to_bytes()


def main(n: int = 50_000) -> None:
    raw = sample()
    typed = min(timeit.repeat(lambda: Event.from_bytes(raw), number=n, repeat=5)) / n * 1e6
    pydantic = min(timeit.repeat(lambda: PydanticEvent.model_validate_json(raw), number=n, repeat=5)) / n * 1e6
    print(f"decode one job.transitioned ({len(raw)} bytes):")
    print(f"  msgspec typed event      {typed:6.2f} µs")
    print(f"  pydantic, dict payload   {pydantic:6.2f} µs   (msgspec is {pydantic / typed:.1f}× cheaper)")


if __name__ == "__main__":
    main()
