"""Standard Webhooks signing and verification (alerts/webhooks.py), the delivery
policy's pure parts, and the notifier's HTTP side (streams.notify_webhook.Sender)
against an in-memory transport: no broker, no sockets."""

from __future__ import annotations

import base64
import email.message
import json
import math
import random
from datetime import UTC, datetime
from email.utils import format_datetime

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import SecretStr
from standardwebhooks import Webhook

from alerts.webhooks import (
    backoff_ceiling_s,
    backoff_s,
    new_secret,
    parse_secret,
    retry_after_s,
    sign,
    verdict,
    verify,
    webhook_headers,
)
from models.errors import ConfigError, ProfitwatchError, WebhookVerificationError
from models.settings import Settings, WebhookSettings
from streams.notify_webhook import Outcome, Sender, max_poll_interval_ms

pytestmark = pytest.mark.timeout(30)

# The spec's published vector (the reference libraries' test_sign_function).
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
MSG_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
TIMESTAMP = 1614265330
BODY = b'{"test": 2432232314}'
SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
HEADERS = {
    "webhook-id": MSG_ID,
    "webhook-timestamp": str(TIMESTAMP),
    "webhook-signature": SIGNATURE,
}


# --- signing and verifying ---


def test_sign_reproduces_the_spec_vector() -> None:
    assert sign(SECRET, MSG_ID, TIMESTAMP, BODY) == SIGNATURE
    assert sign(SECRET.removeprefix("whsec_"), MSG_ID, TIMESTAMP, BODY.decode()) == SIGNATURE
    assert sign(SecretStr(SECRET), MSG_ID, TIMESTAMP, BODY) == SIGNATURE
    raw = base64.b64decode(SECRET.removeprefix("whsec_"))
    assert sign(raw, MSG_ID, TIMESTAMP, BODY) == SIGNATURE


def test_verify_accepts_the_spec_vector_at_its_time() -> None:
    verify(SECRET, HEADERS, BODY, now=TIMESTAMP)
    verify(SECRET, HEADERS, BODY, now=TIMESTAMP + 300)  # the edge of the tolerance
    verify(SECRET, HEADERS, BODY.decode(), now=TIMESTAMP - 300)


def test_verify_reads_headers_case_insensitively_from_any_header_object() -> None:
    message = email.message.Message()  # what http.server hands a handler
    for name, value in HEADERS.items():
        message[name.title()] = value
    verify(SECRET, message, BODY, now=TIMESTAMP)
    verify(SECRET, httpx.Headers(HEADERS), BODY, now=TIMESTAMP)


def test_verify_finds_the_valid_one_among_several_signatures() -> None:
    # A key rotation sends several; other versions and garbage are skipped.
    sigs = [
        "v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc=",
        "v1a,hnO3f9T8Ytu9HwrXslvumlUpqtNVqkhqw/enGzPCXe5BdqzCInXqYXFymVJaA7AZdpXwVLPo3mNl8EM=",
        "v1,not*base64",
        "nocomma",
        SIGNATURE,
    ]
    verify(SECRET, HEADERS | {"webhook-signature": " ".join(sigs)}, BODY, now=TIMESTAMP)


@pytest.mark.parametrize(
    ("body", "secret", "headers", "now", "says"),
    [
        (b'{"test": 2432232315}', SECRET, HEADERS, TIMESTAMP, "no v1 signature matches"),
        (b'{"test":2432232314}', SECRET, HEADERS, TIMESTAMP, "no v1 signature matches"),
        (BODY, new_secret(), HEADERS, TIMESTAMP, "no v1 signature matches"),
        (BODY, SECRET, HEADERS, TIMESTAMP + 301, "old"),
        (BODY, SECRET, HEADERS, TIMESTAMP - 301, "future"),
        (
            BODY,
            SECRET,
            HEADERS | {"webhook-id": "msg_other"},
            TIMESTAMP,
            "no v1 signature matches",
        ),
        (
            BODY,
            SECRET,
            HEADERS | {"webhook-signature": "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OA="},
            TIMESTAMP,
            "no v1 signature matches",
        ),
        (
            BODY,
            SECRET,
            HEADERS | {"webhook-signature": SIGNATURE.replace("v1,", "v2,")},
            TIMESTAMP,
            "no v1",
        ),
        (BODY, SECRET, HEADERS | {"webhook-timestamp": "1614265330.5"}, TIMESTAMP, "unix"),
        (BODY, SECRET, HEADERS | {"webhook-timestamp": "hello"}, TIMESTAMP, "unix"),
        (BODY, SECRET, {"webhook-id": MSG_ID}, TIMESTAMP, "missing header"),
        (BODY, SECRET, HEADERS | {"webhook-signature": ""}, TIMESTAMP, "webhook-signature"),
        (BODY, SECRET, HEADERS | {"webhook-id": "a.b"}, TIMESTAMP, "'.'"),
        (b"\xff" + BODY, SECRET, HEADERS, TIMESTAMP, "UTF-8"),
    ],
    ids=[
        "tampered-body",
        "reserialised-body",
        "wrong-secret",
        "stale-timestamp",
        "future-timestamp",
        "other-id",
        "flipped-signature",
        "unknown-version-only",
        "fractional-timestamp",
        "garbage-timestamp",
        "missing-headers",
        "empty-signature",
        "dotted-id",
        "not-utf8",
    ],
)
def test_verify_rejects(
    body: bytes, secret: str, headers: dict[str, str], now: int, says: str
) -> None:
    with pytest.raises(WebhookVerificationError, match=says) as caught:
        verify(secret, headers, body, now=now)
    assert isinstance(caught.value, ProfitwatchError)


def test_the_tolerance_is_a_parameter() -> None:
    verify(SECRET, HEADERS, BODY, now=TIMESTAMP + 3600, tolerance_s=3600)
    with pytest.raises(WebhookVerificationError, match="old"):
        verify(SECRET, HEADERS, BODY, now=TIMESTAMP + 11, tolerance_s=10)


def test_duplicate_header_with_another_value_is_refused() -> None:
    pairs = [*HEADERS.items(), ("Webhook-Id", "msg_other")]
    with pytest.raises(WebhookVerificationError, match="twice"):
        verify(SECRET, PairHeaders(pairs), BODY, now=TIMESTAMP)


class PairHeaders:
    """A multi-valued header object, as a WSGI server's."""

    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        self.pairs = pairs

    def items(self) -> list[tuple[str, str]]:
        return self.pairs


def test_the_reference_library_and_we_agree_both_ways() -> None:
    body = json.dumps({"alert_id": "a-1", "summary": "Kunde \u2212 12.00"}).encode()
    secret = new_secret()
    ours = webhook_headers(secret, "a-1", body)
    Webhook(secret).verify(body.decode(), ours)  # the library as a receiver would use it
    now = datetime.now(tz=UTC)
    theirs = {
        "webhook-id": "a-1",
        "webhook-timestamp": str(math.floor(now.timestamp())),
        "webhook-signature": Webhook(secret).sign("a-1", now, body.decode()),
    }
    verify(secret, theirs, body)


def test_secrets() -> None:
    fresh = new_secret()
    assert fresh.startswith("whsec_") and len(parse_secret(fresh)) == 32
    assert parse_secret(SECRET.rstrip("=")) == parse_secret(SECRET)  # padding optional
    for bad in ("whsec_", "whsec_not base64!", ""):
        with pytest.raises(ConfigError) as caught:
            parse_secret(bad)
        assert "not base64!" not in str(caught.value)  # a secret is never quoted
    with pytest.raises(ConfigError, match="at least 24"):
        parse_secret("whsec_" + base64.b64encode(b"short").decode(), min_bytes=24)
    with pytest.raises(ConfigError):
        verify("whsec_%%%", HEADERS, BODY, now=TIMESTAMP)


def test_the_secret_is_never_in_a_repr() -> None:
    settings = Settings(webhook=WebhookSettings(url="http://127.0.0.1/x", secret=SECRET))
    assert "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw" not in repr(settings)
    assert "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw" not in str(settings.webhook)


# --- the policy ---


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (200, "delivered"),
        (202, "delivered"),
        (204, "delivered"),
        (299, "delivered"),
        (301, "reject"),
        (400, "reject"),
        (401, "reject"),
        (404, "reject"),
        (408, "reject"),
        (410, "gone"),
        (429, "retry"),
        (500, "retry"),
        (502, "retry"),
        (503, "retry"),
        (504, "retry"),
    ],
)
def test_verdict(status: int, expected: str) -> None:
    assert verdict(status) == expected


def test_backoff_schedule_defaults() -> None:
    ceilings = [backoff_ceiling_s(n, 0.5, 60.0) for n in range(10)]
    assert ceilings == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0, 60.0]
    assert backoff_s(3, 0.5, 60.0, rand=lambda: 0.0) == 0.0
    assert backoff_s(3, 0.5, 60.0, rand=lambda: 0.5) == 2.0
    assert backoff_ceiling_s(10_000, 0.5, 60.0) == 60.0  # no float overflow


@given(
    retry=st.integers(min_value=0, max_value=5000),
    base=st.floats(min_value=1e-3, max_value=10.0),
    cap=st.floats(min_value=1e-3, max_value=3600.0),
    seed=st.integers(min_value=0, max_value=2**32),
)
def test_full_jitter_stays_within_zero_and_the_capped_exponential(
    retry: int, base: float, cap: float, seed: int
) -> None:
    rng = random.Random(seed)
    ceiling = cap if retry > 60 else min(cap, base * 2**retry)
    assert backoff_ceiling_s(retry, base, cap) == pytest.approx(ceiling)
    assert backoff_ceiling_s(retry, base, cap) <= cap
    for _ in range(20):
        assert 0.0 <= backoff_s(retry, base, cap, rng.random) <= ceiling * (1 + 1e-12)


def test_full_jitter_spreads_over_the_whole_range() -> None:
    rng = random.Random(7)
    samples = [backoff_s(4, 0.5, 60.0, rng.random) for _ in range(2000)]
    assert min(samples) < 0.2 and max(samples) > 7.8  # all of [0, 8], not clustered
    assert 3.6 < sum(samples) / len(samples) < 4.4


def test_retry_after() -> None:
    assert retry_after_s(None) is None
    assert retry_after_s("7") == 7.0
    assert retry_after_s(" 0 ") == 0.0
    assert retry_after_s("soon") is None
    assert retry_after_s("-3") is None
    then = datetime(2025, 1, 1, 12, 0, 30, tzinfo=UTC)
    now = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC).timestamp()
    assert retry_after_s(format_datetime(then, usegmt=True), now=now) == 30.0
    assert retry_after_s(format_datetime(then, usegmt=True), now=now + 60) == 0.0


def test_max_poll_interval_covers_the_slowest_alert() -> None:
    wh = WebhookSettings()
    assert max_poll_interval_ms(wh) >= wh.attempts * (3 * wh.timeout_seconds + 300) * 1000
    assert max_poll_interval_ms(WebhookSettings(attempts=1, timeout_seconds=0.1)) >= 300_000


# --- the sender, on an in-memory transport ---


def _sender(
    handler: httpx.MockTransport, waits: list[float], *, stop_after: int | None = None, **kw: float
) -> Sender:
    def wait(seconds: float) -> bool:
        waits.append(seconds)
        return stop_after is not None and len(waits) >= stop_after

    settings = WebhookSettings(
        attempts=int(kw.pop("attempts", 4)),
        backoff_base_seconds=0.5,
        backoff_cap_seconds=4.0,
        timeout_seconds=1.0,
    )
    return Sender(
        "http://127.0.0.1:9/hook",
        parse_secret(SECRET),
        settings,
        wait=wait,
        rand=lambda: 1.0,  # the ceiling: the schedule is visible in the waits
        transport=handler,
    )


def _scripted(
    answers: list[int | Exception | httpx.Response], seen: list[httpx.Request]
) -> httpx.MockTransport:
    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        answer = answers[min(len(seen), len(answers)) - 1]
        if isinstance(answer, Exception):
            raise answer
        if isinstance(answer, httpx.Response):
            return answer
        return httpx.Response(answer)

    return httpx.MockTransport(handle)


BODY_ALERT = json.dumps({"alert_id": "a-1", "customer_id": "c1", "net": "-12.50"}).encode()


def test_retries_5xx_then_delivers_with_the_same_id_and_fresh_signatures() -> None:
    seen: list[httpx.Request] = []
    waits: list[float] = []
    sender = _sender(_scripted([500, 503, 200], seen), waits)
    assert sender.deliver("a-1", BODY_ALERT) == Outcome("delivered", 3, 200)
    assert waits == [0.5, 1.0]
    for request in seen:
        assert request.method == "POST"
        assert request.content == BODY_ALERT
        assert request.headers["webhook-id"] == "a-1"
        assert request.headers["content-type"] == "application/json"
        verify(SECRET, request.headers, request.content)


def test_a_4xx_is_not_retried() -> None:
    seen: list[httpx.Request] = []
    waits: list[float] = []
    outcome = _sender(_scripted([404], seen), waits).deliver("a-1", BODY_ALERT)
    assert (outcome.kind, outcome.attempts, outcome.status) == ("rejected", 1, 404)
    assert "404" in outcome.detail and len(seen) == 1 and waits == []


def test_a_redirect_is_not_followed_nor_retried() -> None:
    seen: list[httpx.Request] = []
    moved = httpx.Response(308, headers={"location": "http://127.0.0.1:9/elsewhere"})
    outcome = _sender(_scripted([moved], seen), []).deliver("a-1", BODY_ALERT)
    assert (outcome.kind, outcome.status, len(seen)) == ("rejected", 308, 1)


def test_410_gone() -> None:
    seen: list[httpx.Request] = []
    outcome = _sender(_scripted([500, 410], seen), []).deliver("a-1", BODY_ALERT)
    assert (outcome.kind, outcome.attempts, outcome.status) == ("gone", 2, 410)


def test_429_waits_at_least_its_retry_after() -> None:
    waits: list[float] = []
    limited = httpx.Response(429, headers={"retry-after": "3"})
    huge = httpx.Response(503, headers={"retry-after": "86400"})
    outcome = _sender(_scripted([limited, huge, 200], []), waits).deliver("a-1", BODY_ALERT)
    assert outcome == Outcome("delivered", 3, 200)
    assert waits == [3.0, 300.0]  # the jitter's 0.5 s is less; a day is bounded


def test_timeouts_and_connection_errors_are_retried_then_given_up() -> None:
    seen: list[httpx.Request] = []
    waits: list[float] = []
    errors: list[int | Exception | httpx.Response] = [
        httpx.ReadTimeout("slow"),
        httpx.ConnectError("refused"),
        500,
        httpx.ConnectTimeout("slow"),
    ]
    outcome = _sender(_scripted(errors, seen), waits, attempts=4).deliver("a-1", BODY_ALERT)
    assert (outcome.kind, outcome.attempts, outcome.status) == ("exhausted", 4, None)
    assert "timed out" in outcome.detail
    assert waits == [0.5, 1.0, 2.0] and len(seen) == 4


def test_a_stop_during_the_wait_abandons_the_alert() -> None:
    seen: list[httpx.Request] = []
    outcome = _sender(_scripted([500], seen), [], stop_after=1).deliver("a-1", BODY_ALERT)
    assert (outcome.kind, outcome.attempts, len(seen)) == ("abandoned", 1, 1)
