import base64
from datetime import UTC, datetime

import pytest
import standardwebhooks
from genrail_runtime.webhook_signing import (
    WebhookSignatureInvalid,
    WebhookTimestampOutOfRange,
    decode_secret,
    new_secret,
    sign,
    verify,
)

# The reference vector published with the Standard Webhooks specification (and Svix's docs).
SPEC_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SPEC_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
SPEC_TIMESTAMP = 1614265330
SPEC_BODY = b'{"test": 2432232314}'
SPEC_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="

NOW = 1_700_000_000
BODY = b'{"id":"p1","status":"succeeded"}'


@pytest.fixture
def secret() -> str:
    return new_secret()


def test_signs_the_specification_vector():
    headers = sign(SPEC_SECRET, SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY)
    assert headers == {
        "webhook-id": SPEC_ID,
        "webhook-timestamp": str(SPEC_TIMESTAMP),
        "webhook-signature": SPEC_SIGNATURE,
    }


def test_verifies_the_specification_vector():
    headers = {
        "webhook-id": SPEC_ID,
        "webhook-timestamp": str(SPEC_TIMESTAMP),
        "webhook-signature": SPEC_SIGNATURE,
    }
    assert verify(SPEC_SECRET, headers, SPEC_BODY, now=SPEC_TIMESTAMP + 10) == SPEC_ID


def test_good_signature_returns_the_message_id(secret):
    assert verify(secret, sign(secret, "msg_1", NOW, BODY), BODY, now=NOW) == "msg_1"


def test_header_names_are_case_insensitive(secret):
    headers = {name.title(): value for name, value in sign(secret, "msg_1", NOW, BODY).items()}
    assert verify(secret, headers, BODY, now=NOW) == "msg_1"


def test_new_secrets_are_whsec_base64_of_32_random_bytes():
    first, second = new_secret(), new_secret()
    assert first.startswith("whsec_") and first != second
    assert len(decode_secret(first)) == 32


@pytest.mark.parametrize("tamper", ["body", "id", "timestamp", "secret"])
def test_any_change_breaks_the_signature(secret, tamper):
    headers = sign(secret, "msg_1", NOW, BODY)
    body, key = BODY, secret
    if tamper == "body":
        body = BODY + b" "
    elif tamper == "id":
        headers["webhook-id"] = "msg_2"
    elif tamper == "timestamp":
        headers["webhook-timestamp"] = str(NOW + 1)
    else:
        key = new_secret()
    with pytest.raises(WebhookSignatureInvalid):
        verify(key, headers, body, now=NOW)


@pytest.mark.parametrize("missing", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_missing_header_is_an_invalid_signature(secret, missing):
    headers = sign(secret, "msg_1", NOW, BODY)
    del headers[missing]
    with pytest.raises(WebhookSignatureInvalid):
        verify(secret, headers, BODY, now=NOW)


@pytest.mark.parametrize("signature", ["", "garbage", "v1,", "v1,not base64!", "v2,AAAA", "v1a,AAAA", ","])
def test_malformed_signatures_are_invalid_not_crashes(secret, signature):
    headers = {**sign(secret, "msg_1", NOW, BODY), "webhook-signature": signature}
    with pytest.raises(WebhookSignatureInvalid):
        verify(secret, headers, BODY, now=NOW)


def test_non_integer_timestamp_is_invalid(secret):
    headers = {**sign(secret, "msg_1", NOW, BODY), "webhook-timestamp": "12e9"}
    with pytest.raises(WebhookSignatureInvalid):
        verify(secret, headers, BODY, now=NOW)


@pytest.mark.parametrize("skew", [-301, 301, -86_400])
def test_stale_or_future_timestamp_is_out_of_range(secret, skew):
    headers = sign(secret, "msg_1", NOW + skew, BODY)
    with pytest.raises(WebhookTimestampOutOfRange):
        verify(secret, headers, BODY, now=NOW)


@pytest.mark.parametrize("skew", [-300, 0, 300])
def test_timestamps_within_tolerance_pass(secret, skew):
    assert verify(secret, sign(secret, "msg_1", NOW + skew, BODY), BODY, now=NOW) == "msg_1"


def test_tolerance_is_configurable(secret):
    headers = sign(secret, "msg_1", NOW - 30, BODY)
    with pytest.raises(WebhookTimestampOutOfRange):
        verify(secret, headers, BODY, tolerance_s=10, now=NOW)


def test_forged_stale_message_is_reported_as_a_bad_signature_first(secret):
    headers = sign(new_secret(), "msg_1", NOW - 3600, BODY)
    with pytest.raises(WebhookSignatureInvalid):
        verify(secret, headers, BODY, now=NOW)


def test_any_of_several_signatures_may_match(secret):
    old_secret = new_secret()
    good = sign(secret, "msg_1", NOW, BODY)["webhook-signature"]
    stale = sign(old_secret, "msg_1", NOW, BODY)["webhook-signature"]
    headers = {**sign(secret, "msg_1", NOW, BODY), "webhook-signature": f"v1a,AAAA {stale}  {good}"}
    assert verify(secret, headers, BODY, now=NOW) == "msg_1"
    assert verify(old_secret, headers, BODY, now=NOW) == "msg_1"


def test_binary_bodies_are_signed_as_bytes(secret):
    body = bytes(range(256))
    assert verify(secret, sign(secret, "msg_1", NOW, body), body, now=NOW) == "msg_1"


def test_secret_without_prefix_or_padding_is_accepted():
    key = b"0123456789abcdef0123456789abcde"
    unpadded = base64.b64encode(key).decode().rstrip("=")
    assert sign(unpadded, "m", NOW, BODY) == sign("whsec_" + base64.b64encode(key).decode(), "m", NOW, BODY)


@pytest.mark.parametrize("bad", ["whsec_", "whsec_%%%", "whsec_a"])
def test_unusable_secrets_are_refused(bad):
    with pytest.raises(ValueError):
        sign(bad, "msg_1", NOW, BODY)


def test_message_ids_with_dots_are_refused(secret):
    with pytest.raises(ValueError):
        sign(secret, "msg.1", NOW, BODY)


def test_interoperates_with_the_standardwebhooks_package(secret):
    timestamp = int(datetime.now(UTC).timestamp())
    reference = standardwebhooks.Webhook(secret)
    # Ours verified by theirs...
    assert reference.verify(BODY, sign(secret, "msg_x", timestamp, BODY)) == {
        "id": "p1",
        "status": "succeeded",
    }
    # ...and theirs verified by ours.
    theirs = reference.sign("msg_y", datetime.fromtimestamp(timestamp, UTC), BODY.decode())
    headers = {"webhook-id": "msg_y", "webhook-timestamp": str(timestamp), "webhook-signature": theirs}
    assert verify(secret, headers, BODY) == "msg_y"
