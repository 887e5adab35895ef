"""Webhook endpoints as a pure aggregate: what each change decides, how state folds, which
secrets sign a delivery during a rotation's overlap, and the messages' stable ids."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from genrail_events import codec, jobs, subjects, webhooks
from genrail_events.webhooks import EndpointStatus, WebhookRefused

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
USER = str(uuid.uuid4())


def created(**overrides) -> webhooks.EndpointCreated:
    args = {"existing": 0, "now": NOW} | overrides
    return webhooks.decide_create(USER, webhooks.endpoint_id_for(USER, "orders"), "https://example.com/h",
                                  ("start", "completed"), "orders", **args)


def endpoint() -> webhooks.Endpoint:
    return webhooks.fold([created()])


def test_a_created_endpoint_is_enabled_and_wants_only_its_events():
    ep = endpoint()
    assert ep.status is EndpointStatus.enabled and ep.secret_version == 1
    assert ep.wants("start") and ep.wants("completed") and not ep.wants("output")


def test_an_account_has_a_bounded_number_of_endpoints():
    with pytest.raises(WebhookRefused, match="at most"):
        created(existing=webhooks.MAX_ENDPOINTS_PER_ACCOUNT)


def test_the_same_idempotency_key_names_the_same_endpoint_and_another_user_another():
    assert webhooks.endpoint_id_for(USER, "k") == webhooks.endpoint_id_for(USER, "k")
    assert webhooks.endpoint_id_for(USER, "k") != webhooks.endpoint_id_for(str(uuid.uuid4()), "k")
    assert webhooks.endpoint_id_for(USER, None) != webhooks.endpoint_id_for(USER, None)


def test_an_update_changes_only_what_differs_and_nothing_is_no_event():
    ep = endpoint()
    assert webhooks.decide_update(ep, url=ep.url, events=ep.events) is None
    changed = webhooks.decide_update(ep, events=("completed",), now=NOW)
    assert changed.data.events == ("completed",) and changed.data.url is None
    after = webhooks.evolve(ep, changed)
    assert after.events == ("completed",) and after.url == ep.url


def test_a_rotation_signs_with_both_secrets_until_the_overlap_ends():
    ep = endpoint()
    rotated = webhooks.evolve(ep, webhooks.decide_rotate(ep, timedelta(hours=1), now=NOW))
    assert rotated.secret_version == 2
    assert rotated.secret_versions(NOW + timedelta(minutes=59)) == [2, 1]
    assert rotated.secret_versions(NOW + timedelta(minutes=61)) == [2]
    no_overlap = webhooks.evolve(ep, webhooks.decide_rotate(ep, timedelta(0), now=NOW))
    assert no_overlap.secret_versions(NOW) == [2]


def test_secrets_differ_by_endpoint_version_and_deployment_key():
    a = webhooks.endpoint_secret("key", "we_1", 1)
    assert a.startswith("whsec_") and a == webhooks.endpoint_secret("key", "we_1", 1)
    assert len({a, webhooks.endpoint_secret("key", "we_1", 2), webhooks.endpoint_secret("key", "we_2", 1),
                webhooks.endpoint_secret("other", "we_1", 1)}) == 4


def test_disabling_keeps_the_first_reason_and_enabling_clears_it():
    ep = endpoint()
    disabled = webhooks.evolve(ep, webhooks.decide_disable(ep, "every try failed", by="sender"))
    assert disabled.status is EndpointStatus.disabled and not disabled.wants("start")
    assert webhooks.decide_disable(disabled, "again", by="owner") is None
    enabled = webhooks.evolve(disabled, webhooks.decide_enable(disabled))
    assert enabled.status is EndpointStatus.enabled and enabled.disabled_reason is None
    assert webhooks.decide_enable(enabled) is None


def test_a_deleted_endpoint_refuses_every_change():
    ep = endpoint()
    deleted = webhooks.evolve(ep, webhooks.decide_delete(ep))
    assert deleted.status is EndpointStatus.deleted and webhooks.decide_delete(deleted) is None
    for change in (lambda e: webhooks.decide_update(e, url="https://x.example"),
                   lambda e: webhooks.decide_rotate(e, timedelta(0)), webhooks.decide_enable):
        with pytest.raises(WebhookRefused):
            change(deleted)
    assert webhooks.decide_disable(deleted, "x", by="owner") is None


def test_events_round_trip_through_the_codec_on_their_subjects():
    ep = endpoint()
    for event in (created(), webhooks.decide_rotate(ep, timedelta(hours=1), now=NOW),
                  webhooks.decide_disable(ep, "r", by="owner"), webhooks.decide_delete(ep)):
        assert codec.decode(event.to_bytes()) == event
        assert webhooks.subject_for(event).startswith("webhook.endpoint.")
        assert webhooks.subject_for(event).endswith(f".{USER}.{ep.id}")
    message_id = webhooks.message_id_for(uuid.uuid4(), "completed", ep.id)
    message = webhooks.message_created(USER, str(uuid.uuid4()), message_id, "completed", ep.url, b'{"a":1}',
                                       endpoint_id=ep.id)
    tried = webhooks.attempted(message.data, 1, delivered=False, final=False, outcome="HTTP 500",
                               status_code=500, response="x" * 2000)
    assert len(tried.data.response) == webhooks.SNIPPET_CHARS
    for event in (message, tried, webhooks.resend_requested(message.data, requested_by=USER)):
        assert codec.decode(event.to_bytes()) == event
        assert webhooks.subject_for(event) == subjects.webhook_message(
            webhooks.subject_for(event).split(".")[2], USER, message_id)


def test_a_message_id_is_stable_per_transition_event_and_destination():
    transition = uuid.uuid4()
    one = webhooks.message_id_for(transition, "completed", "job")
    assert one == webhooks.message_id_for(transition, "completed", "job")
    assert len({one, webhooks.message_id_for(transition, "output", "job"),
                webhooks.message_id_for(transition, "completed", "we_1"),
                webhooks.message_id_for(uuid.uuid4(), "completed", "job")}) == 4
    assert "." not in one  # a Standard Webhooks id: no dots


@pytest.mark.parametrize(("status", "told"), [
    (jobs.JobStatus.processing, ["start"]), (jobs.JobStatus.completed, ["output", "completed"]),
    (jobs.JobStatus.failed, ["completed"]), (jobs.JobStatus.canceled, ["completed"]),
    (jobs.JobStatus.queued, [])])
def test_what_each_move_of_a_job_tells_a_webhook(status, told):
    assert jobs.told_on(status) == told
