"""`OpenAIChatClient` against the local provider's chat completions emulator, over real HTTP."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import httpx
import pytest
from fastapi import FastAPI

from genrail_localprovider.openai_chat import router
from genrail_pipeline.clients.errors import ProviderError
from genrail_pipeline.clients.openai_chat import OpenAIChatClient
from tests.servers import serve_in_thread

COPY_INPUT = {
    "product_name": "Aurora Bottle",
    "product_description": "A stainless steel water bottle that keeps drinks cold for 24 hours. "
                           "Leak-proof lid, fits in cup holders.",
    "tone": "playful",
    "length": "medium",
}


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    """The emulator in uvicorn, on a free loopback port, in a background thread."""
    app = FastAPI()
    app.include_router(router)
    with serve_in_thread(app) as url:
        yield f"{url}/v1"



def client(base_url: str, http: httpx.AsyncClient, api_key: str = "sk-local-test") -> OpenAIChatClient:
    return OpenAIChatClient(base_url, api_key, http, "gpt-4o-mini", timeout_s=5)


async def test_copy_comes_back_from_the_emulator_shaped_by_the_prompt(base_url: str, http: httpx.AsyncClient) -> None:
    copy = await client(base_url, http).generate_copy(COPY_INPUT)

    assert set(copy) == {"headline", "body", "call_to_action", "hashtags", "word_count"}
    assert "Aurora Bottle" in copy["headline"] + copy["body"]
    assert 2 <= len(copy["call_to_action"].split()) <= 6
    assert 3 <= len(copy["hashtags"]) <= 5 and all(t.startswith("#") and " " not in t for t in copy["hashtags"])
    assert copy["word_count"] == len(f"{copy['headline']} {copy['body']} {copy['call_to_action']}".split())
    longer = await client(base_url, http).generate_copy({**COPY_INPUT, "length": "long"})
    assert len(longer["body"].split()) > len(copy["body"].split())  # the emulator read the prompt's length


async def test_the_emulator_answers_in_openai_wire_format(base_url: str, http: httpx.AsyncClient) -> None:
    response = await http.post(
        f"{base_url}/chat/completions", headers={"Authorization": "Bearer sk-local-test"},
        json={"model": "gpt-4o-mini", "response_format": {"type": "json_object"},
              "messages": [{"role": "system", "content": "Answer in JSON."},
                           {"role": "user", "content": '```json\n{"product_name": "Kettle"}\n```'}]},
    )

    assert response.status_code == 200
    assert response.headers["x-request-id"].startswith("req_")
    completion = response.json()
    assert completion["id"].startswith("chatcmpl-")
    assert completion["object"] == "chat.completion"
    assert completion["model"] == "gpt-4o-mini"
    assert isinstance(completion["created"], int)
    (choice,) = completion["choices"]
    assert (choice["index"], choice["finish_reason"], choice["message"]["role"]) == (0, "stop", "assistant")
    usage = completion["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"] > 0


async def test_fail_knob_is_a_transient_server_error(base_url: str, http: httpx.AsyncClient) -> None:
    with pytest.raises(ProviderError, match="500: The server had an error") as caught:
        await client(base_url, http).generate_copy({**COPY_INPUT, "product_name": "Aurora [fail]"})
    assert (caught.value.transient, caught.value.status_code) == (True, 500)


async def test_rate_limit_knob_is_transient_with_retry_after(base_url: str, http: httpx.AsyncClient) -> None:
    with pytest.raises(ProviderError, match="429: Rate limit reached") as caught:
        await client(base_url, http).generate_copy({**COPY_INPUT, "product_name": "Aurora [rate-limit]"})
    assert (caught.value.transient, caught.value.status_code) == (True, 429)
    assert caught.value.retry_after_s == 0.05


async def test_an_empty_key_is_a_permanent_401(base_url: str, http: httpx.AsyncClient) -> None:
    with pytest.raises(ProviderError, match="didn't provide an API key") as caught:
        await client(base_url, http, api_key="").generate_copy(COPY_INPUT)
    assert (caught.value.transient, caught.value.status_code) == (False, 401)


async def test_json_mode_without_the_word_json_is_refused(base_url: str, http: httpx.AsyncClient) -> None:
    with pytest.raises(ProviderError, match="must contain the word 'json'") as caught:
        await client(base_url, http).complete_json("Be brief.", "Say hello.")
    assert (caught.value.transient, caught.value.status_code) == (False, 400)


async def test_an_unreachable_server_is_transient(http: httpx.AsyncClient) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]
    with pytest.raises(ProviderError, match="unreachable") as caught:
        await client(f"http://127.0.0.1:{closed_port}/v1", http).generate_copy(COPY_INPUT)
    assert caught.value.transient is True


def canned(status: int, body: object, headers: dict[str, str] | None = None) -> OpenAIChatClient:
    """A client whose server always gives one answer, for shapes the emulator never sends."""
    transport = httpx.MockTransport(lambda request: httpx.Response(status, json=body, headers=headers))
    http = httpx.AsyncClient(transport=transport)
    return OpenAIChatClient("https://api.openai.example/v1", "sk-test", http)


def completion(content: str, finish_reason: str = "stop") -> dict[str, object]:
    return {"id": "chatcmpl-x", "object": "chat.completion", "created": 0, "model": "gpt-4o-mini",
            "choices": [{"index": 0, "finish_reason": finish_reason,
                         "message": {"role": "assistant", "content": content}}]}


@pytest.mark.parametrize(("answer", "reason"), [
    (completion('{"headline": "Hi", "body": '), "not valid JSON"),
    (completion('["a list"]'), "not an object"),
    (completion('{"headline": "Hi"', finish_reason="length"), "cut off"),
    (completion('{"headline": "Hi", "body": "Text.", "hashtags": []}'), "call_to_action"),
    ({"object": "list"}, "not a chat completion"),
])
async def test_unusable_answers_are_permanent(answer: dict[str, object], reason: str) -> None:
    with pytest.raises(ProviderError, match=reason) as caught:
        await canned(200, answer).generate_copy(COPY_INPUT)
    assert caught.value.transient is False


async def test_an_exhausted_quota_is_permanent_although_it_is_a_429() -> None:
    error = {"error": {"message": "You exceeded your current quota.", "type": "insufficient_quota",
                       "param": None, "code": "insufficient_quota"}}
    with pytest.raises(ProviderError, match="exceeded your current quota") as caught:
        await canned(429, error, {"retry-after": "20"}).generate_copy(COPY_INPUT)
    assert (caught.value.transient, caught.value.retry_after_s) == (False, None)


async def test_hashtags_are_normalised_and_word_count_is_ours() -> None:
    answer = completion('{"headline": "Cold for a day", "body": "Really cold.", "call_to_action": "Buy",'
                        ' "hashtags": ["cold drinks", "#Aurora"], "word_count": 999}')
    copy = await canned(200, answer).generate_copy(COPY_INPUT)
    assert copy["hashtags"] == ["#colddrinks", "#Aurora"]
    assert copy["word_count"] == 7
