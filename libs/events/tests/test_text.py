"""Text every store can hold: NUL and lone surrogates are named in user input and dropped
from third-party text, including a job transition's output and error."""

from __future__ import annotations

import json

import pytest

from genrail_events import jobs, text
from genrail_events.jobs import JobStatus as S
from genrail_events.jobs import JobType


@pytest.mark.parametrize(("value", "reason"), [("a\x00b", "NUL"), (json.loads('"a\\ud800b"'), "surrogate"),
                                               ("plain text, émoji 🥾", None)])
def test_unstorable_names_what_is_wrong(value: str, reason: str | None) -> None:
    found = text.unstorable(value)
    assert (found is None) if reason is None else (reason in found)


def test_unstorable_in_finds_them_however_nested_keys_included() -> None:
    assert text.unstorable_in({"ok": ["fine", {"k\x00": 1}]}) == "contains a NUL character"
    assert text.unstorable_in({"ok": ["fine", 3, None]}) is None


def test_clean_drops_them_however_nested() -> None:
    dirty = {"title\x00": "Boots\x00", "images": ["a\x00.png", json.loads('"\\udc80x"')], "price": 12}
    assert text.clean(dirty) == {"title": "Boots", "images": ["a.png", "x"], "price": 12}


def test_a_transitions_output_and_error_are_cleaned() -> None:
    job = jobs.evolve(None, jobs.job_created("j1", "u1", JobType.scrape, 1, {"url": "https://shop.example/"}))
    processing = jobs.evolve(job, jobs.decide_transition(job, S.processing))
    done = jobs.decide_transition(processing, S.completed, output={"title": "Trail\x00blazer"})
    failed = jobs.decide_transition(processing, S.failed, error="page said \x00 nothing")
    assert done.data.output == {"title": "Trailblazer"} and failed.data.error == "page said  nothing"
    assert text.unstorable(done.to_bytes().decode()) is None
