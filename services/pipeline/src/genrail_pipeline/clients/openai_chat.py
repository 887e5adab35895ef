"""OpenAI chat completions client (`POST {base_url}/chat/completions`) for the `copy` job type.

`base_url` includes the API version, as in OpenAI's SDKs: `https://api.openai.com/v1`, or the
local provider's `http://127.0.0.1:<port>/v1`. Any OpenAI-compatible server works.

One call, no retries: a failure becomes a `ProviderError` saying whether it is worth retrying,
and the pipeline's queue does the waiting (honouring `retry_after_s`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import httpx

from genrail_copywriter.copy import count_words
from genrail_copywriter.prompt import copy_prompt
from genrail_pipeline.clients.errors import ProviderError, retry_after_seconds

DEFAULT_MODEL = "gpt-4o-mini"

COPY_SYSTEM_PROMPT = """\
You are a senior direct-response copywriter. You write ad copy for one product at a time, \
using only the facts you are given: never invent specifications, prices, awards or claims.

Answer with a single JSON object and nothing else, with exactly these keys:
- "headline": string, at most 12 words, naming the product.
- "body": string. Length "short" is one sentence, "medium" about three sentences, "long" \
about six sentences.
- "call_to_action": string, two to six words.
- "hashtags": array of three to five strings, each starting with "#", no spaces.

Tones: "professional" is clear and credible with no exclamation marks; "playful" is light and \
witty; "bold" is short, punchy and confident; "luxury" is refined and understated; \
"friendly" is warm and conversational, speaking to the reader as "you"."""

class OpenAIChatClient:
    """Chat completions in JSON mode over a shared `httpx.AsyncClient`."""

    def __init__(self, base_url: str, api_key: str, http: httpx.AsyncClient,
                 model: str = DEFAULT_MODEL, *, temperature: float | None = 0.8,
                 max_completion_tokens: int = 1024, timeout_s: float = 60.0):
        self._url = base_url.rstrip("/") + "/chat/completions"
        self._api_key = api_key
        self._http = http
        self.model = model
        # None leaves temperature out: reasoning models refuse any value but their default.
        self._temperature = temperature
        self._max_completion_tokens = max_completion_tokens
        self._timeout = httpx.Timeout(timeout_s, connect=min(timeout_s, 10.0))

    async def complete_json(self, system: str, user: str) -> dict[str, Any]:
        """One chat completion in JSON mode; the assistant's message parsed as a JSON object."""
        request: dict[str, Any] = {
            "model": self.model,
            "messages": [{"role": "system", "content": system}, {"role": "user", "content": user}],
            "response_format": {"type": "json_object"},
            "max_completion_tokens": self._max_completion_tokens,
        }
        if self._temperature is not None:
            request["temperature"] = self._temperature
        try:
            response = await self._http.post(
                self._url, json=request, timeout=self._timeout,
                # Stripped: a header value may not end in a space, and an empty key should get
                # the server's 401, not a client-side protocol error.
                headers={"Authorization": f"Bearer {self._api_key}".strip()},
            )
        except httpx.TimeoutException as exc:
            raise ProviderError(f"OpenAI chat timed out: {type(exc).__name__}", transient=True) from exc
        except (httpx.LocalProtocolError, httpx.UnsupportedProtocol) as exc:
            # Our own request or configuration is at fault: sending it again cannot help.
            raise ProviderError(f"OpenAI chat request not sendable: {exc}", transient=False) from exc
        except httpx.TransportError as exc:
            raise ProviderError(f"OpenAI chat unreachable: {exc!r}", transient=True) from exc

        if response.status_code != 200:
            raise _status_error(response)
        return _json_content(response)

    async def generate_copy(self, input: Mapping[str, Any]) -> dict[str, Any]:
        """Ad copy for a `copy` job: headline, body, call_to_action, hashtags, word_count."""
        return validate_copy(await self.complete_json(COPY_SYSTEM_PROMPT, copy_prompt(input)))


def validate_copy(answer: Mapping[str, Any]) -> dict[str, Any]:
    """The model's answer as the `copy` job output; a missing or empty field is a failure."""
    copy: dict[str, Any] = {}
    for field in ("headline", "body", "call_to_action"):
        value = answer.get(field)
        if not isinstance(value, str) or not value.strip():
            raise ProviderError(f"model answer has no usable {field!r}", transient=False)
        copy[field] = value.strip()
    hashtags = answer.get("hashtags", [])
    if isinstance(hashtags, str):
        hashtags = hashtags.split()
    if not isinstance(hashtags, list) or not all(isinstance(tag, str) for tag in hashtags):
        raise ProviderError("model answer has 'hashtags' that are not a list of strings",
                            transient=False)
    copy["hashtags"] = [
        "#" + tag for tag in ("".join(t.split()).lstrip("#") for t in hashtags) if tag
    ]
    copy["word_count"] = count_words(copy)
    return copy


def _status_error(response: httpx.Response) -> ProviderError:
    status = response.status_code
    error = _error_object(response)
    message = f"OpenAI chat {status}: {error.get('message') or response.reason_phrase}"
    code = error.get("code") or error.get("type")
    # OpenAI's SDKs retry 408, 409, 429 and 5xx, and obey `x-should-retry` when it is sent.
    transient = status in (408, 409, 429) or status >= 500
    if response.headers.get("x-should-retry") in ("true", "false"):
        transient = response.headers["x-should-retry"] == "true"
    # An exhausted quota also answers 429, but waiting does not refill it.
    if code == "insufficient_quota":
        transient = False
    return ProviderError(message, transient=transient, status_code=status,
                         retry_after_s=retry_after_seconds(response.headers) if transient else None)


def _error_object(response: httpx.Response) -> dict[str, Any]:
    """`{"error": {message, type, param, code}}`, or the start of whatever else came back."""
    try:
        body = response.json()
    except ValueError:
        return {"message": response.text[:200].strip() or None}
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        return error
    if isinstance(error, str):
        return {"message": error}
    return {"message": json.dumps(body)[:200]}


def _json_content(response: httpx.Response) -> dict[str, Any]:
    def fail(reason: str) -> ProviderError:
        return ProviderError(f"OpenAI chat: {reason}", transient=False, status_code=response.status_code)

    try:
        choice = response.json()["choices"][0]
        message = choice["message"]
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        raise fail("response is not a chat completion") from exc
    if message.get("refusal"):
        raise fail(f"the model refused: {message['refusal']}")
    if choice.get("finish_reason") == "length":
        raise fail("the answer was cut off at max_completion_tokens")
    content = message.get("content")
    if not isinstance(content, str):
        raise fail("the answer has no text content")
    try:
        parsed = json.loads(content)
    except json.JSONDecodeError as exc:
        raise fail(f"the answer is not valid JSON ({exc.msg} at {exc.pos})") from exc
    if not isinstance(parsed, dict):
        raise fail("the answer is JSON but not an object")
    return parsed
