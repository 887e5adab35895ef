"""OpenAI's chat completions API, emulated: `POST /v1/chat/completions`.

Speaks OpenAI's wire format (bearer auth, request fields, the `chat.completion` object, the
`{"error": {message, type, param, code}}` shape and the rate-limit headers) so that
`OpenAIChatClient` runs against it unchanged. It only writes genrail ad copy: the last user
message must carry the product as the fenced JSON block that `copy_prompt` writes, and the
answer is `generate_copy`'s deterministic copy as a JSON object.

Test knobs, put in the product's `product_name`:
- "[fail]"        -> 500 server_error, as when OpenAI has an internal error.
- "[rate-limit]"  -> 429 rate_limit_exceeded with `retry-after-ms: 50` and `retry-after: 1`.
"""

from __future__ import annotations

import json
import math
import secrets
import string
import time
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from genrail_copywriter.copy import generate_copy
from genrail_copywriter.prompt import copy_input_from_prompt

router = APIRouter()

FAIL_KNOB = "[fail]"
RATE_LIMIT_KNOB = "[rate-limit]"
RATE_LIMIT_RETRY_AFTER_MS = 50
SYSTEM_FINGERPRINT = "fp_genrail_local"
_ID_ALPHABET = string.ascii_letters + string.digits


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[dict[str, Any]] | None = None

    def text(self) -> str:
        if isinstance(self.content, list):
            return "\n".join(str(part.get("text", "")) for part in self.content
                             if part.get("type") == "text")
        return self.content or ""


class ChatCompletionRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1)
    messages: list[ChatMessage] = Field(min_length=1)
    response_format: dict[str, Any] | None = None
    stream: bool = False


@router.post("/v1/chat/completions")
async def create_chat_completion(request: Request) -> JSONResponse:
    started = time.perf_counter()
    scheme, _, key = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        return _error(401, "You didn't provide an API key. You need to provide your API key in an "
                           "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
                      "invalid_request_error")
    try:
        chat = ChatCompletionRequest.model_validate_json(await request.body())
    except ValidationError as exc:
        first = exc.errors()[0]
        param = ".".join(str(part) for part in first["loc"]) or None
        return _error(400, f"Invalid request: {first['msg']}", "invalid_request_error", param=param)
    if chat.stream:
        return _error(400, "The local provider does not stream; send stream=false.",
                      "invalid_request_error", param="stream")

    texts = [message.text() for message in chat.messages]
    if (chat.response_format or {}).get("type") == "json_object" and not any(
            "json" in text.lower() for text in texts):
        return _error(400, "'messages' must contain the word 'json' in some form, to use "
                           "'response_format' of type 'json_object'.", "invalid_request_error",
                      param="messages")
    user_messages = [m.text() for m in chat.messages if m.role == "user"]
    product = copy_input_from_prompt(user_messages[-1]) if user_messages else None
    if product is None:
        return _error(400, "The local provider only writes genrail ad copy: the last user message "
                           "must carry the product as a ```json block.", "invalid_request_error",
                      param="messages")

    name = product["product_name"]
    if FAIL_KNOB in name:
        return _error(500, "The server had an error while processing your request. Sorry about that!",
                      "server_error")
    if RATE_LIMIT_KNOB in name:
        return _error(429, f"Rate limit reached for {chat.model} on requests per min (RPM): Limit 3, "
                           f"Used 3, Requested 1. Please try again in {RATE_LIMIT_RETRY_AFTER_MS}ms.",
                      "requests", code="rate_limit_exceeded",
                      headers={"retry-after-ms": str(RATE_LIMIT_RETRY_AFTER_MS), "retry-after": "1"})
    try:
        copy = generate_copy(product)
    except (KeyError, ValueError) as exc:
        return _error(400, f"Invalid product in the user message: {exc}", "invalid_request_error",
                      param="messages")

    # A model is asked for the copy itself; the client counts the words.
    content = json.dumps({k: v for k, v in copy.items() if k != "word_count"}, ensure_ascii=False)
    prompt_tokens, completion_tokens = _tokens(*texts), _tokens(content)
    completion = {
        "id": "chatcmpl-" + "".join(secrets.choice(_ID_ALPHABET) for _ in range(29)),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": chat.model,
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": content, "refusal": None, "annotations": []},
            "logprobs": None,
            "finish_reason": "stop",
        }],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                  "total_tokens": prompt_tokens + completion_tokens},
        "service_tier": "default",
        "system_fingerprint": SYSTEM_FINGERPRINT,
    }
    elapsed_ms = max(1, round((time.perf_counter() - started) * 1000))
    return JSONResponse(completion, headers={**_request_id(), "openai-processing-ms": str(elapsed_ms)})


def _tokens(*texts: str) -> int:
    """Roughly OpenAI's rule of thumb: a token is about four characters of English."""
    return sum(max(1, math.ceil(len(text) / 4)) for text in texts)


def _request_id() -> dict[str, str]:
    return {"x-request-id": "req_" + secrets.token_hex(16)}


def _error(status: int, message: str, type_: str, *, param: str | None = None, code: str | None = None,
           headers: dict[str, str] | None = None) -> JSONResponse:
    body = {"error": {"message": message, "type": type_, "param": param, "code": code}}
    return JSONResponse(body, status_code=status, headers={**_request_id(), **(headers or {})})
