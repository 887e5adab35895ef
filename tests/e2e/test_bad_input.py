"""Bad input gets a clear 4xx with a message that says what is wrong, and nothing changes."""

from __future__ import annotations

import asyncio

import pytest

from tests.helpers import ledger_events, register

pytestmark = pytest.mark.e2e


@pytest.fixture
async def user(api):
    return await register(api)


async def _unchanged(api, log, user) -> None:
    assert (await api.get("/api/credits", headers=user.headers)).json()["balance"] == 10
    assert [e.data.kind for e in await ledger_events(log, user.id)] == ["granted"]
    assert (await api.get("/api/jobs", headers=user.headers)).json()["items"] == []


@pytest.mark.parametrize(("path", "body", "status", "message"), [
    ("/api/generate/copy", {}, 422, "product_name: field required"),
    ("/api/generate/copy", {"product_name": 42}, 422, "product_name"),
    ("/api/generate/copy", {"product_name": "Boots", "tone": "sarcastic"}, 422, "tone"),
    ("/api/generate/copy", {"product_name": "Boots", "length": 3}, 422, "length"),
    ("/api/generate/copy", {"product_name": "Boots", "colour": "red"}, 422, "colour: unknown field"),
    ("/api/generate/copy", {"product_name": ""}, 422, "product_name"),
    ("/api/generate/copy", {"product_name": "x" * 201}, 422, "product_name"),
    ("/api/generate/copy", {"product_name": "Boots", "idempotency_key": ""}, 422, "idempotency_key"),
    ("/api/generate/scrape", {}, 422, "url: field required"),
    ("/api/generate/scrape", {"url": "ftp://example.com/file"}, 422, "url"),
    ("/api/generate/scrape", {"url": "file:///etc/passwd"}, 422, "url"),
    ("/api/generate/scrape", {"url": "javascript:alert(1)"}, 422, "url"),
    ("/api/generate/scrape", {"url": "not a url"}, 422, "url"),
    ("/api/generate/copy", {"product_name": "Boots\u0000"}, 422, "product_name: Value error, contains a NUL"),
    ("/api/generate/tts", {"text": "hello\u0000"}, 422, "NUL"),
])
async def test_invalid_job_requests_say_what_is_wrong_and_charge_nothing(api, log, user, path, body, status, message):
    response = await api.post(path, json=body, headers=user.headers)
    assert response.status_code == status, response.text
    assert message in response.json()["detail"]
    await _unchanged(api, log, user)


async def test_a_lone_surrogate_escape_is_a_422_naming_the_field(api, log, user):
    response = await api.post("/api/generate/copy", headers={**user.headers, "Content-Type": "application/json"},
                              content=b'{"product_name": "Boots", "product_description": "\\ud800"}')
    assert response.status_code == 422, response.text
    assert "product_description" in response.json()["detail"] and "surrogate" in response.json()["detail"]
    await _unchanged(api, log, user)


async def test_a_nul_request_leaves_the_read_models_serving_everyone(api, log, user):
    """PostgreSQL refuses NUL: had it reached the log, the jobs projection would stop for all."""
    response = await api.post("/api/generate/copy", headers={**user.headers, "Content-Type": "application/json"},
                              content=b'{"product_name": "Boots\\u0000", "product_description": "\\u0000"}',)
    assert response.status_code == 422, response.text
    other = await register(api)
    job_id = (await api.post("/api/generate/copy", json={"product_name": "Mug"}, headers=other.headers)).json()["id"]
    for _ in range(100):
        if [j["id"] for j in (await api.get("/api/jobs", headers=other.headers)).json()["items"]] == [job_id]:
            break
        await asyncio.sleep(0.1)
    else:
        raise AssertionError("another user's job never appeared in their list")
    await _unchanged(api, log, user)


async def test_a_body_that_is_not_json_is_a_422_naming_the_problem(api, log, user):
    response = await api.post("/api/generate/copy", content=b"{not json",
                              headers={**user.headers, "content-type": "application/json"})
    assert response.status_code == 422 and "JSON" in response.json()["detail"]
    await _unchanged(api, log, user)


async def test_an_oversized_body_is_refused_with_413(api, log, user):
    response = await api.post("/api/generate/copy", headers=user.headers,
                              json={"product_name": "Boots", "product_description": "x" * 200_000})
    assert response.status_code == 413 and "larger than" in response.json()["detail"]
    await _unchanged(api, log, user)


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer gr_not-a-key"}, {"Authorization": "Basic abc"},
                                     {"Authorization": "Bearer"}])
async def test_a_missing_or_unknown_key_is_a_401(api, headers):
    for request in (api.get("/api/credits", headers=headers), api.get("/api/jobs", headers=headers),
                    api.post("/api/generate/copy", json={"product_name": "Boots"}, headers=headers)):
        response = await request
        assert response.status_code == 401 and "key" in response.json()["detail"]


async def test_unknown_or_malformed_job_ids_are_404_or_422(api, user):
    missing = await api.get("/api/jobs/6f1d2c1e-0000-4000-8000-000000000000", headers=user.headers)
    assert missing.status_code == 404 and "not found" in missing.json()["detail"]
    malformed = await api.get("/api/jobs/not-a-uuid", headers=user.headers)
    assert malformed.status_code == 422 and "job_id" in malformed.json()["detail"]
    cancel = await api.post("/api/jobs/6f1d2c1e-0000-4000-8000-000000000000/cancel", headers=user.headers)
    assert cancel.status_code == 404


async def test_bad_list_parameters_are_4xx(api, user):
    assert (await api.get("/api/jobs?status=sleeping", headers=user.headers)).status_code == 422
    assert (await api.get("/api/jobs?limit=0", headers=user.headers)).status_code == 422
    bad_cursor = await api.get("/api/jobs?cursor=%%%", headers=user.headers)
    assert bad_cursor.status_code == 400 and "cursor" in bad_cursor.json()["detail"]


async def test_registration_refuses_bad_and_duplicate_emails(api):
    assert (await api.post("/api/users", json={"email": "nope"})).status_code == 422
    assert (await api.post("/api/users", json={})).status_code == 422
    user = await register(api)
    again = await api.post("/api/users", json={"email": user.email.upper()})
    assert again.status_code == 409 and "already registered" in again.json()["detail"]


async def test_every_endpoint_is_documented_with_its_error_shapes(api):
    spec = (await api.get("/openapi.json")).json()
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            if path in ("/healthz", "/readyz", "/v1/packs", "/api/packs"):  # no input, no key: nothing to refuse
                continue
            assert operation.get("summary"), f"{method} {path} has no summary"
            assert any(code.startswith("4") for code in operation["responses"]), f"{method} {path}: no 4xx"
