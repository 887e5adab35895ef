"""Given bytes on the log, when decoded, then the typed event at the current schema version."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta

import msgspec
import pytest

from genrail_events import accounts, batches, codec, dead_letters, jobs, ledger, users, webhooks
from genrail_events.envelope import Event, UnknownEvent
from genrail_events.jobs import JobStatus as S
from genrail_events.jobs import JobType
from genrail_events.ledger import Account
from genrail_events.payments import PaymentRecorded, PaymentReversed, PaymentSucceeded, ReversalRecorded


def one_of_each() -> list[Event]:
    job = jobs.evolve(None, jobs.job_created("j1", "u1", JobType.copy, 2, {"product_name": "Mug"}))
    account = Account("u1", 10)
    request = ledger.JobRequest(type=JobType.copy, input={"product_name": "Mug"}, cost=2)
    batch = ledger.BatchRequest(batch_id=str(uuid.uuid4()), prompt="sepia", image_keys=["a.png"], cost_per_image=1,
                                cost=1)
    dead = dead_letters.DeadLetter(7, "JOBS", "pipeline", 3, "job.created.j1", 3, "boom", "2026-12-01T00:00:00",
                                   "{}", {})
    return [
        jobs.job_created("j1", "u1", JobType.copy, 2, {"product_name": "Mug"}),
        jobs.decide_transition(job, S.processing),
        jobs.provider_failed(job, "503"),
        jobs.decide_retry(jobs.evolve(job, jobs.decide_transition(job, S.failed)), requested_by="admin"),
        ledger.decide_grant(account, 10, "signup", "signup").event,
        ledger.decide_purchase(account, "pi_1", 100, "starter").event,
        ledger.decide_debit(account, "j1", 1, 2, request).event,
        ledger.decide_debit(account, batch.batch_id, 1, 1, batch).event,
        ledger.decide_refund(account, "j1", 1, 2, "job failed").event,
        ledger.decide_adjustment(account, "a1", -3, "correction").event,
        ledger.decide_reversal(account, "pi_1", 5, "refund").event,
        users.user_registered("a@example.com", users.new_api_key()),
        batches.batch_created(batch.batch_id, "u1", "sepia", ["a.png"], 1),
        PaymentRecorded(aggregate_id="pi_1", data=PaymentSucceeded("evt_1", "pi_1", "u1", "starter", 100, 900, "usd")),
        ReversalRecorded(aggregate_id="pi_1", data=PaymentReversed("evt_2", "pi_1", None, None, "dispute_lost", 900,
                                                                   "usd")),
        dead_letters.resolution_event(dead, dead_letters.Resolution.discarded, by="ops"),
        *webhook_events(),
        *account_events(),
    ]


def account_events() -> list[Event]:
    ring = accounts.KeyRing("u1", {"k1": accounts.Key("k1", "default", "gr_abcde", "k1hash")})
    return [accounts.decide_create_key(ring, "ci", users.new_api_key()), accounts.decide_revoke_key(ring, "k1"),
            accounts.signed_in("u1", "a@example.com", accounts.SignInMethod.magic_link, "l1"),
            accounts.sessions_revoked("u1"), accounts.link_used("u1", "l1", "a@example.com")]


def webhook_events() -> list[Event]:
    created = webhooks.decide_create("u1", "we_1", "https://example.com/h", ("completed",), "", existing=0)
    endpoint = webhooks.evolve(None, created)
    disabled = webhooks.evolve(endpoint, webhooks.decide_disable(endpoint, "failing", by="sender"))
    message = webhooks.message_created("u1", "j1", "msg_1", "completed", endpoint.url, b"{}", endpoint_id="we_1")
    return [created, webhooks.decide_update(endpoint, url="https://example.com/g"),
            webhooks.decide_rotate(endpoint, timedelta(hours=1)), webhooks.decide_disable(endpoint, "x", by="owner"),
            webhooks.decide_enable(disabled), webhooks.decide_delete(endpoint), message,
            webhooks.attempted(message.data, 1, delivered=True, final=True, outcome="HTTP 200", status_code=200),
            webhooks.resend_requested(message.data, requested_by="u1")]


@pytest.mark.parametrize("event", one_of_each(), ids=lambda e: e.type)
def test_every_event_type_round_trips_through_bytes_into_its_own_class(event: Event) -> None:
    decoded = Event.from_bytes(event.to_bytes())
    assert type(decoded) is type(event) and decoded == event


def test_every_event_type_of_the_log_has_a_class_and_one_of_each_is_tested() -> None:
    assert {e.type for e in one_of_each()} == set(codec.BY_TYPE)


def test_a_version_1_batch_debit_is_upcast_to_a_tagged_batch_request() -> None:
    v1 = {"id": str(uuid.uuid4()), "type": "ledger.debited", "occurred_at": "2026-11-25T10:00:00.123456Z",
          "aggregate_id": "u1", "schema_version": 1,
          "data": {"user_id": "u1", "kind": "debited", "amount": 2, "balance_after": 8, "job_id": "b1", "attempt": 1,
                   "job": {"type": "image_edit", "batch_id": "b1", "prompt": "p", "image_keys": ["k1", "k2"],
                           "cost_per_image": 1, "cost": 2}}}
    event = Event.from_bytes(json.dumps(v1).encode())
    assert isinstance(event, ledger.CreditsDebited) and event.schema_version == 2
    assert event.data.job == ledger.BatchRequest(batch_id="b1", prompt="p", image_keys=["k1", "k2"], cost_per_image=1,
                                                 cost=2)


def test_a_version_1_job_debit_is_upcast_to_a_tagged_job_request() -> None:
    v1 = {"id": str(uuid.uuid4()), "type": "ledger.debited", "occurred_at": "2026-11-25T10:00:00Z",
          "aggregate_id": "u1", "schema_version": 1,
          "data": {"user_id": "u1", "kind": "debited", "amount": 1, "balance_after": 9, "job_id": "j1", "attempt": 2,
                   "job": {"type": "scrape", "input": {"url": "https://shop.example/p"}, "cost": 1, "batch_id": None,
                           "requested_by": "admin"}}}
    event = Event.from_bytes(json.dumps(v1).encode())
    assert isinstance(event, ledger.CreditsDebited)
    assert event.data.job == ledger.JobRequest(type=JobType.scrape, input={"url": "https://shop.example/p"}, cost=1,
                                               requested_by="admin")


def test_a_new_debit_is_written_at_version_2_with_its_request_tagged() -> None:
    request = ledger.JobRequest(type=JobType.copy, input={}, cost=1)
    wire = msgspec.json.decode(ledger.decide_debit(Account("u1", 5), "j1", 1, 1, request).event.to_bytes())
    assert wire["schema_version"] == 2 and wire["data"]["job"]["kind"] == "job"


def test_an_event_type_this_code_does_not_know_decodes_whole_as_unknown() -> None:
    raw = json.dumps({"id": str(uuid.uuid4()), "type": "job.teleported", "occurred_at": "2026-11-25T10:00:00Z",
                      "aggregate_id": "j1", "schema_version": 3, "data": {"to": "mars"}}).encode()
    event = Event.from_bytes(raw)
    assert isinstance(event, UnknownEvent) and (event.type, event.data) == ("job.teleported", {"to": "mars"})
    assert jobs.evolve(jobs.evolve(None, jobs.job_created("j1", "u1", JobType.copy, 1, {})), event).status is S.pending


@pytest.mark.parametrize("raw", [b"", b"not json", b"[]", b'{"type": "job.created"}',
                                 b'{"type": "job.created", "id": "x", "occurred_at": "now", "aggregate_id": "j"}'])
def test_what_is_not_an_event_is_a_value_error(raw: bytes) -> None:
    with pytest.raises(ValueError):
        Event.from_bytes(raw)
