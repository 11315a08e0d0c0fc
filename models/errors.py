"""One root error type for the whole project, so callers can catch narrowly or broadly.

The tree::

    ProfitwatchError
    ├── ConfigError            settings that cannot work (bad FX table, bad bands, …)
    ├── RejectedRecord         an input record the contract refuses; carries a DLQ code
    ├── StateFormatError       a serialised ledger state this version cannot read
    ├── QueryError             a query API request with bad parameters (HTTP 400)
    ├── WebhookVerificationError  a webhook whose signature, id or timestamp does not
    │                             check out (alerts/webhooks.py, on the receiver's side)
    └── EndpointGone           the webhook endpoint answered 410 Gone
                               (streams/notify_webhook.py; the notifier exits 3)
"""

from __future__ import annotations

from typing import Literal, get_args

RejectionCode = Literal[
    "malformed_json",
    "schema_violation",
    "unknown_currency",
    "self_referral",
    "not_overdue",
    "future_timestamp",
    "payload_too_large",
]

REJECTION_CODES: tuple[RejectionCode, ...] = get_args(RejectionCode)


class ProfitwatchError(Exception):
    """Root of every error profitwatch raises on purpose."""


class ConfigError(ProfitwatchError):
    """The settings are inconsistent or unusable."""


class RejectedRecord(ProfitwatchError):
    """An input record that goes to the dead-letter topic instead of the engine."""

    def __init__(self, code: RejectionCode, message: str, customer_id: str | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code: RejectionCode = code
        self.message = message
        # Known when the value parsed far enough; used as the DLQ record's key.
        self.customer_id = customer_id


class StateFormatError(ProfitwatchError):
    """A stored ledger state has an unknown version or shape."""


class QueryError(ProfitwatchError):
    """A query the API cannot answer as asked; the message says what to change."""

    def __init__(self, message: str, status: int = 400, code: str = "bad_request") -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code


class WebhookVerificationError(ProfitwatchError):
    """A received webhook is not to be trusted: a header missing or malformed, a
    timestamp outside the tolerance, or no signature made with the secret."""
