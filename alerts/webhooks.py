"""Standard Webhooks (https://www.standardwebhooks.com) for the alerts that
`profitwatch notify webhook` POSTs: signing for the sender, `verify` for receivers,
and the pure parts of the delivery policy (backoff, Retry-After, what a status means).

A webhook carries three headers: `webhook-id` (the alert's `alert_id`, the same on
every retry: the receiver's idempotency key), `webhook-timestamp` (unix seconds of the
attempt) and `webhook-signature`, `v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`
keyed with the bytes that the base64 after `whsec_` in the secret stands for.

A receiver checks a request with the raw body bytes, before parsing them::

    from alerts.webhooks import verify
    verify(os.environ["WEBHOOK_SECRET"], request.headers, raw_body)  # raises if forged

The signature itself is the spec's reference library's (`standardwebhooks`), so what
we send is what every Standard Webhooks verifier accepts. Verification is ours: the
library's takes no clock nor tolerance and lets malformed headers escape as bare
`ValueError`s; here every refusal is a `WebhookVerificationError`.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import math
import random
import secrets
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Literal, Protocol

from pydantic import SecretStr
from standardwebhooks import Webhook

from models.errors import ConfigError, WebhookVerificationError

__all__ = [
    "DEFAULT_TOLERANCE_S",
    "MIN_KEY_BYTES",
    "SECRET_PREFIX",
    "HeaderSource",
    "Verdict",
    "backoff_ceiling_s",
    "backoff_s",
    "new_secret",
    "parse_secret",
    "retry_after_s",
    "sign",
    "verdict",
    "verify",
    "webhook_headers",
]

SECRET_PREFIX = "whsec_"
# The spec's minimum for a symmetric key (192 bits); the notifier refuses a shorter one.
MIN_KEY_BYTES = 24
DEFAULT_TOLERANCE_S = 300  # the reference libraries' 5 minutes: a replay window

Secret = str | bytes | SecretStr


class HeaderSource(Protocol):
    """Anything with `items()`: a dict, `http.server`'s or `email`'s Message,
    httpx/Starlette/Werkzeug headers."""

    def items(self) -> Iterable[tuple[str, Any]]: ...


def parse_secret(secret: Secret, *, min_bytes: int = 1) -> bytes:
    """The HMAC key of a `whsec_<base64>` secret (the prefix is optional, as in the
    reference libraries; missing base64 padding is tolerated). Bytes are the key itself.
    Raises `ConfigError`, whose message never quotes the secret."""
    if isinstance(secret, SecretStr):
        secret = secret.get_secret_value()
    if isinstance(secret, str):
        text = secret.strip().removeprefix(SECRET_PREFIX)
        try:
            key = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
        except (binascii.Error, ValueError):
            raise ConfigError(
                f"the webhook secret is not {SECRET_PREFIX} followed by base64"
            ) from None
    else:
        key = secret
    if len(key) < max(min_bytes, 1):
        raise ConfigError(
            f"the webhook secret's key has {len(key)} bytes; it needs at least "
            f"{max(min_bytes, 1)} (Standard Webhooks: 24 to 64 random bytes)"
        )
    return key


def new_secret(n_bytes: int = 32) -> str:
    """A fresh `whsec_` secret of `n_bytes` random bytes, to share with a receiver."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(n_bytes)).decode("ascii")


def _text(body: bytes | str) -> str:
    # The reference library signs text (UTF-8 encoded); JSON bodies always are UTF-8.
    return body.decode("utf-8") if isinstance(body, bytes) else body


def sign(secret: Secret, msg_id: str, timestamp: int, body: bytes | str) -> str:
    """`v1,<base64 signature>` of one attempt. `body` must be the exact bytes sent
    (UTF-8). Raises `ValueError` for an id the spec forbids (empty, or with a `.`,
    which would make "{id}.{timestamp}.{body}" ambiguous)."""
    if not msg_id or "." in msg_id:
        raise ValueError(f"a webhook id must be non-empty and without '.': {msg_id!r}")
    at = datetime.fromtimestamp(int(timestamp), tz=UTC)
    return Webhook(parse_secret(secret)).sign(msg_id=msg_id, timestamp=at, data=_text(body))


def webhook_headers(
    secret: Secret, msg_id: str, body: bytes | str, *, now: float | None = None
) -> dict[str, str]:
    """The three headers of an attempt made at `now` (default: the clock)."""
    timestamp = int(time.time() if now is None else now)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secret, msg_id, timestamp, body),
    }


def _lowered(headers: HeaderSource) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, value in headers.items():
        key = str(name).lower()
        if key.startswith("webhook-") and key in out and out[key] != str(value):
            raise WebhookVerificationError(f"header {key} is given twice")
        out[key] = str(value)
    return out


def verify(
    secret: Secret,
    headers: HeaderSource,
    body: bytes | str,
    *,
    now: float | None = None,
    tolerance_s: float = DEFAULT_TOLERANCE_S,
) -> None:
    """Return if the request is authentic: every header present, its timestamp within
    `tolerance_s` of `now` (default: the clock), and one of the `v1` signatures in
    `webhook-signature` (space separated: several during a key rotation) made with the
    secret over these exact body bytes. Raises `WebhookVerificationError` otherwise,
    and `ConfigError` for a secret that is not one."""
    key = parse_secret(secret)
    h = _lowered(headers)
    missing = [n for n in ("webhook-id", "webhook-timestamp", "webhook-signature") if not h.get(n)]
    if missing:
        raise WebhookVerificationError(f"missing header {', '.join(missing)}")
    msg_id, stamp = h["webhook-id"], h["webhook-timestamp"].strip()
    if not stamp.isascii() or not stamp.isdigit():
        raise WebhookVerificationError(f"webhook-timestamp is not unix seconds: {stamp[:20]!r}")
    timestamp = int(stamp)
    clock = time.time() if now is None else now
    if timestamp < clock - tolerance_s:
        raise WebhookVerificationError(
            f"webhook-timestamp {timestamp} is {clock - timestamp:.0f} s old "
            f"(tolerance {tolerance_s:g} s): a replay, or a clock off"
        )
    if timestamp > clock + tolerance_s:
        raise WebhookVerificationError(
            f"webhook-timestamp {timestamp} is {timestamp - clock:.0f} s in the future "
            f"(tolerance {tolerance_s:g} s)"
        )
    try:
        expected = base64.b64decode(sign(key, msg_id, timestamp, body).split(",", 1)[1])
    except UnicodeDecodeError:
        raise WebhookVerificationError("the body is not UTF-8") from None
    except ValueError as exc:  # the id: sign() refuses what it would never send
        raise WebhookVerificationError(str(exc)) from None
    for entry in h["webhook-signature"].split():
        version, _, value = entry.partition(",")
        if version != "v1":
            continue  # v1a (asymmetric) or a later scheme: not ours to check
        try:
            candidate = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            continue
        if hmac.compare_digest(expected, candidate):  # constant time: no signing oracle
            return
    raise WebhookVerificationError(
        "no v1 signature matches: another secret, or the body changed (verify the raw "
        "bytes as received, not JSON parsed and serialised again)"
    )


# --- the delivery policy (pure; streams/notify_webhook.py applies it) ---

Verdict = Literal["delivered", "retry", "gone", "reject"]


def verdict(status: int) -> Verdict:
    """What a response status means for the alert: 2xx delivered; 410 Gone disables
    the endpoint; 429 and 5xx are retried; anything else (3xx: redirects are not
    followed, 4xx) will not get better by retrying it."""
    if 200 <= status < 300:
        return "delivered"
    if status == 410:
        return "gone"
    if status == 429 or status >= 500:
        return "retry"
    return "reject"


def backoff_ceiling_s(retry: int, base_s: float, cap_s: float) -> float:
    """min(cap, base * 2**retry): the longest wait before retry `retry` (from 0)."""
    if retry >= 1024:  # 2.0**1024 overflows a float; the cap has long been reached
        return cap_s
    return min(cap_s, base_s * math.ldexp(1.0, max(retry, 0)))


def backoff_s(
    retry: int, base_s: float, cap_s: float, rand: Callable[[], float] = random.random
) -> float:
    """Full jitter (AWS's "Exponential Backoff and Jitter"): uniform in
    [0, min(cap, base * 2**retry)], so retries of many alerts do not come in waves."""
    return rand() * backoff_ceiling_s(retry, base_s, cap_s)


def retry_after_s(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds a `Retry-After` header asks to wait (delta-seconds or an HTTP date),
    None when absent or unreadable."""
    if value is None:
        return None
    text = value.strip()
    if text.isascii() and text.isdigit():
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # an HTTP date is GMT
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - (time.time() if now is None else now))
