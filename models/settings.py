"""The one settings object: every default of spec section 8, plus topic names and
service knobs. Environment variables (`PROFITWATCH_…`, nested with `__`) override a
TOML file given with `--config`, which overrides the defaults.

`KAFKA_BOOTSTRAP_SERVERS` is also read without the prefix, because that is the name
operators and the test fixtures already use.
"""

from __future__ import annotations

import itertools
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from models.errors import ConfigError

CHANNELS = ("phone", "email", "chat", "onsite", "self_service")


class Topics(BaseModel):
    """Topic names (spec section 2). Internal topics are documented in the README."""

    orders: str = "orders"
    invoices: str = "invoice-overdue"
    tickets: str = "support-tickets"
    referrals: str = "referrals"
    sales_activities: str = "sales-activities"
    # the service's own: re-keyed records, referral links and credits, sweep ticks
    internal: str = "profitwatch-internal"
    alerts: str = "profitability-alerts"
    snapshots: str = "profitability-snapshots"
    dlq: str = "profitability-dlq"

    def input_kinds(self) -> dict[str, str]:
        """Input topic name -> event kind."""
        return {
            self.orders: "order",
            self.invoices: "invoice",
            self.tickets: "ticket",
            self.referrals: "referral",
            self.sales_activities: "sales_activity",
        }


class ProvisionBand(BaseModel):
    """`rate` applies from `min_days` overdue up to the next band's `min_days`."""

    min_days: int = Field(ge=1)
    rate: Decimal = Field(ge=0, le=1)


SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]


class KafkaSecurity(BaseModel):
    """How every Kafka client of the service connects: Kafka's own client settings
    (`security.protocol`, `sasl.mechanism`, …), mapped to each library in one place,
    streams/kafka_security.py. Env `PROFITWATCH_KAFKA__SECURITY_PROTOCOL` and so on;
    TOML `[kafka]`."""

    model_config = ConfigDict(frozen=True)

    security_protocol: SecurityProtocol = "PLAINTEXT"
    sasl_mechanism: SaslMechanism = "PLAIN"
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    # PEM files. Without `ssl_cafile` the system's CAs verify the broker; `ssl_certfile`
    # (with `ssl_keyfile`, unless the key is in the same file) is a client certificate
    # for a cluster that wants one (`ssl.client.auth=required`).
    ssl_cafile: Path | None = None
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None
    ssl_check_hostname: bool = True

    @field_validator("security_protocol", "sasl_mechanism", mode="before")
    @classmethod
    def _upper(cls, v: object) -> object:
        return v.strip().upper() if isinstance(v, str) else v

    @property
    def uses_sasl(self) -> bool:
        return self.security_protocol in ("SASL_PLAINTEXT", "SASL_SSL")

    @property
    def uses_tls(self) -> bool:
        return self.security_protocol in ("SSL", "SASL_SSL")

    @model_validator(mode="after")
    def _consistent(self) -> KafkaSecurity:
        # ConfigError, not ValueError: pydantic would put this model's whole input,
        # the password with it, into a ValidationError's message; a ConfigError
        # propagates as it is, and the command line prints just this message.
        protocol = self.security_protocol
        sasl_given = self.sasl_username is not None or self.sasl_password is not None
        if self.uses_sasl:
            if not self.sasl_username or not self.sasl_password:
                raise ConfigError(
                    f"kafka.security_protocol={protocol} needs kafka.sasl_username and "
                    "kafka.sasl_password (PROFITWATCH_KAFKA__SASL_USERNAME, "
                    "PROFITWATCH_KAFKA__SASL_PASSWORD)"
                )
            if not self.sasl_password.get_secret_value():
                raise ConfigError("kafka.sasl_password is empty")
        elif sasl_given:
            # Credentials without a SASL protocol are a forgotten setting, not a wish
            # to connect unauthenticated.
            raise ConfigError(
                f"kafka.sasl_username/sasl_password are set but kafka.security_protocol is "
                f"{protocol}: use SASL_SSL (or SASL_PLAINTEXT), or remove them"
            )
        files = {
            "ssl_cafile": self.ssl_cafile,
            "ssl_certfile": self.ssl_certfile,
            "ssl_keyfile": self.ssl_keyfile,
        }
        given = [name for name, path in files.items() if path is not None]
        if given and not self.uses_tls:
            raise ConfigError(
                f"kafka.{', kafka.'.join(given)} set but kafka.security_protocol is "
                f"{protocol}: use SSL or SASL_SSL, or remove them"
            )
        for name, path in files.items():
            if path is not None and not path.is_file():
                raise ConfigError(f"kafka.{name}: no such file: {path}")
        if self.ssl_keyfile is not None and self.ssl_certfile is None:
            raise ConfigError("kafka.ssl_keyfile needs kafka.ssl_certfile (the client certificate)")
        return self


class WebhookSettings(BaseModel):
    """`profitwatch notify webhook`: every alert POSTed to `url`, signed as Standard
    Webhooks says (alerts/webhooks.py). Env `PROFITWATCH_WEBHOOK__URL`,
    `PROFITWATCH_WEBHOOK__SECRET` and so on; TOML `[webhook]`; the command's options
    override them."""

    model_config = ConfigDict(frozen=True)

    url: str | None = None
    # `whsec_` + base64 of the key (24 to 64 random bytes); SecretStr: never in a repr
    secret: SecretStr | None = None
    attempts: int = Field(default=8, ge=1)  # the first one included
    # Full jitter: the wait before retry n (from 0) is uniform in [0, min(cap, base * 2**n)].
    backoff_base_seconds: float = Field(default=0.5, gt=0)
    backoff_cap_seconds: float = Field(default=60.0, gt=0)
    timeout_seconds: float = Field(default=10.0, gt=0)
    # Alerts given up on: an answer retrying cannot change (3xx, 4xx but 410 and 429),
    # or every attempt failed.
    undeliverable_topic: str = Field(default="profitability-alerts-undeliverable", min_length=1)
    # Prometheus metrics on this port (streams/notifier_metrics.py); none: not served.
    metrics_port: int | None = Field(default=None, ge=0, le=65535)


class AlertmanagerSettings(BaseModel):
    """`profitwatch notify alertmanager`: one Prometheus Alertmanager alert per customer
    that is `at_risk` or `unprofitable`, kept in step through Alertmanager's v2 API
    (alerts/alertmanager.py, streams/notify_alertmanager.py). Env
    `PROFITWATCH_ALERTMANAGER__URL` and so on; TOML `[alertmanager]`; the command's
    options override them."""

    model_config = ConfigDict(frozen=True)

    # Alertmanager's base URL (`/api/v2/alerts` is appended), with its route prefix if
    # it has one; `user:password@` in it is sent as basic auth.
    url: str | None = None
    # For a proxy in front of Alertmanager that wants `Authorization: Bearer <token>`.
    bearer_token: SecretStr | None = None
    # The worker's dashboard: each alert's generatorURL is its customer page there.
    dashboard_url: str = "http://localhost:6066"
    # Every firing alert is sent again this often; each says it ends after
    # `valid_for_intervals` of them (Prometheus' 4), so a notifier that is gone leaves
    # no alert firing forever, and missing a re-send or two resolves nothing.
    resend_interval_seconds: float = Field(default=60.0, gt=0)
    valid_for_intervals: int = Field(default=4, ge=2)
    # Failed POSTs (5xx, 429, timeouts, connection errors) are tried again, without
    # end, after full-jitter waits up to the cap; nothing is committed meanwhile.
    backoff_base_seconds: float = Field(default=0.5, gt=0)
    backoff_cap_seconds: float = Field(default=30.0, gt=0)
    timeout_seconds: float = Field(default=10.0, gt=0)
    batch_size: int = Field(default=500, ge=1)  # alerts per POST
    # Prometheus metrics on this port (streams/notifier_metrics.py); none: not served.
    metrics_port: int | None = Field(default=None, ge=0, le=65535)


def _default_bands() -> list[ProvisionBand]:
    return [
        ProvisionBand(min_days=1, rate=Decimal("0.02")),
        ProvisionBand(min_days=31, rate=Decimal("0.10")),
        ProvisionBand(min_days=61, rate=Decimal("0.25")),
        ProvisionBand(min_days=91, rate=Decimal("0.50")),
        ProvisionBand(min_days=181, rate=Decimal("0.80")),
    ]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="PROFITWATCH_",
        env_nested_delimiter="__",
        extra="ignore",
        frozen=True,
        # An error's message would otherwise quote every input, secrets included
        # (`api_token`, `kafka.sasl_password`): a failed start must not print them.
        hide_input_in_errors=True,
    )

    # --- the profit model (spec section 8) ---
    reporting_currency: str = "EUR"
    fx_rates: dict[str, Decimal] = Field(
        default_factory=lambda: {
            "EUR": Decimal("1"),
            "USD": Decimal("0.92"),
            "GBP": Decimal("1.17"),
            "CHF": Decimal("1.06"),
        }
    )
    window_days: int = Field(default=90, ge=1)
    grace_days: int = Field(default=30, ge=0)
    confirm_days: int = Field(default=7, ge=0)
    unprofitable_below: Decimal = Decimal("0.00")
    recovery_margin: Decimal = Decimal("50.00")
    at_risk_margin_ratio: Decimal = Decimal("0.05")
    at_risk_exit_ratio: Decimal = Decimal("0.08")
    hourly_rate: dict[str, Decimal] = Field(
        default_factory=lambda: {
            "phone": Decimal("60"),
            "email": Decimal("30"),
            "chat": Decimal("40"),
            "onsite": Decimal("120"),
            "self_service": Decimal("0"),
        }
    )
    escalation_cost: Decimal = Decimal("75.00")
    onsite_visit_cost: Decimal = Decimal("150.00")
    provision_rate: list[ProvisionBand] = Field(default_factory=_default_bands)
    cost_of_capital_annual: Decimal = Decimal("0.08")
    dunning_fee: Decimal = Decimal("5.00")
    referral_share: Decimal = Decimal("0.10")
    referral_horizon_days: int = Field(default=365, ge=0)
    max_future_skew_seconds: int = Field(default=300, ge=0)
    max_payload_bytes: int = Field(default=65536, ge=1)
    sweep_interval_seconds: float = Field(default=60, ge=0)
    # A sweep re-evaluates a partition's customers this many per internal record, the
    # rest after a continuation record: the event loop (heartbeats, the API) never
    # waits for a whole partition (seconds at 10,000 customers of large states).
    sweep_batch_customers: int = Field(default=500, ge=1)
    # The order of application (section 9): how long a caught-up queue waits for late
    # producers, and how long a queue whose partition's end offset is ahead waits for a
    # record that does not come (transaction markers, compacted gaps).
    max_idle_ms: int = Field(default=0, ge=0)
    max_lag_wait_ms: int = Field(default=2000, ge=0)

    # --- topics ---
    topics: Topics = Field(default_factory=Topics)

    # --- the service (streams/) ---
    kafka_bootstrap_servers: str = Field(
        default="localhost:9092",
        validation_alias=AliasChoices(
            "PROFITWATCH_KAFKA_BOOTSTRAP_SERVERS",
            "KAFKA_BOOTSTRAP_SERVERS",
            "kafka_bootstrap_servers",
        ),
    )
    # Authentication and TLS for every Kafka client (KafkaSecurity above).
    kafka: KafkaSecurity = Field(default_factory=KafkaSecurity)
    # "kafka" for a real cluster; "tansu" for the embedded broker, whose quirks need
    # other client settings (see streams/app.py).
    broker_kind: Literal["kafka", "tansu"] = "kafka"
    # At start-up a worker retries an unreachable broker, saying so each time; after
    # this many seconds it gives up and exits (0: it never gives up).
    broker_wait_seconds: float = Field(default=0.0, ge=0)
    app_id: str = "profitwatch"
    partitions: int = Field(default=4, ge=1)  # every topic the service reads: co-partitioned
    # Input records held for their turn (section 9) per worker; beyond it the
    # topic-partitions that are ahead are paused until the held records drain.
    max_held_records: int = Field(default=20_000, ge=1)
    # The consumer group's session: a worker that dies unannounced (kill -9, a lost
    # host) is replaced after at most this long. 10 s is the Java client's old default
    # and inside every broker's default bounds (group.min.session.timeout.ms = 6 s,
    # group.max.session.timeout.ms = 30 min); heartbeats at a third of it or less.
    session_timeout_seconds: float = Field(default=10.0, gt=0)
    heartbeat_interval_seconds: float = Field(default=1.0, gt=0)
    # How long a fetch may wait on the broker for data. Kafka answers a connection's
    # requests in order, so every offset lookup (table recovery at start-up, the order
    # of application's end offsets) waits behind a parked fetch: Faust's 1.5 s made a
    # start on Kafka take 3 s longer. Idle, 100 ms is ten small requests a second.
    fetch_max_wait_ms: int = Field(default=100, ge=0, le=60_000)
    replication_factor: int = Field(default=1, ge=1)
    data_dir: Path = Path("data")
    store: str = "rocksdb://"  # "memory://" for tests
    processing_guarantee: Literal["at_least_once", "exactly_once"] = "at_least_once"
    # How often offsets are committed; changed states are written to the table and
    # snapshots sent once per commit (a customer changed N times in between is written
    # once), so this is also the snapshot topic's delay. Faust's default.
    commit_interval_seconds: float = Field(default=2.8, gt=0)
    # ... and at the latest every this many records (Faust's default), whichever first.
    commit_every_records: int = Field(default=10_000, ge=1)
    # Where this process's HTTP server listens: the worker's web routes, a notifier's
    # /metrics (`metrics_port` of its settings).
    web_bind: str = "127.0.0.1"
    web_port: int = Field(default=6066, ge=0, le=65535)
    # When set, every web route but /health, /ready and /metrics wants
    # `Authorization: Bearer <token>` (env PROFITWATCH_API_TOKEN).
    api_token: SecretStr | None = None
    # Decoded states kept in memory per worker (LRU; the table holds them all). A year
    # of history is ~90 KiB decoded, so 10,000 is up to ~1 GiB at the worst.
    state_cache_customers: int = Field(default=10_000, ge=1)
    # RocksDB's memory per partition's store: its block cache and its memtables (write
    # buffers). Faust's defaults are 2 GiB of block cache and 3 x 64 MiB per store, a
    # worst case near 9 GiB for 4 partitions, filled slowly by every read (the soak's
    # RSS grew with them); the decoded-state cache above holds the hot states anyway.
    rocksdb_block_cache_mib: int = Field(default=32, ge=1)
    rocksdb_write_buffer_mib: int = Field(default=16, ge=1)
    rocksdb_write_buffers: int = Field(default=2, ge=2)
    # Alerts kept per customer in its state for GET /customers/{id}/alerts.
    recent_alerts_kept: int = Field(default=5, ge=0, le=100)
    # `profitwatch notify webhook` (WebhookSettings above).
    webhook: WebhookSettings = Field(default_factory=WebhookSettings)
    # `profitwatch notify alertmanager` (AlertmanagerSettings above).
    alertmanager: AlertmanagerSettings = Field(default_factory=AlertmanagerSettings)

    @field_validator("fx_rates")
    @classmethod
    def _rates_positive(cls, v: dict[str, Decimal]) -> dict[str, Decimal]:
        for code, rate in v.items():
            if not rate.is_finite() or rate <= 0:
                raise ValueError(f"fx rate for {code} must be a positive number")
        return {code.upper(): rate for code, rate in v.items()}

    @field_validator("hourly_rate")
    @classmethod
    def _all_channels(cls, v: dict[str, Decimal]) -> dict[str, Decimal]:
        missing = [c for c in CHANNELS if c not in v]
        if missing:
            raise ValueError(f"hourly_rate lacks channels: {', '.join(missing)}")
        return v

    @field_validator("provision_rate")
    @classmethod
    def _bands_sorted(cls, v: list[ProvisionBand]) -> list[ProvisionBand]:
        if not v or v[0].min_days != 1:
            raise ValueError("provision_rate must start with a band at min_days = 1")
        if any(a.min_days >= b.min_days for a, b in itertools.pairwise(v)):
            raise ValueError("provision_rate bands must have increasing min_days")
        return v

    @model_validator(mode="after")
    def _reporting_currency_known(self) -> Settings:
        if self.reporting_currency.upper() not in self.fx_rates:
            raise ValueError("reporting_currency must be in fx_rates")
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Precedence: explicit arguments > environment > TOML file > defaults.
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls))


def load_settings(config_file: str | Path | None = None, **overrides: Any) -> Settings:
    """Settings from the environment, optionally layered over a TOML file."""
    if config_file is None:
        return Settings(**overrides)
    path = Path(config_file)
    if not path.is_file():
        from models.errors import ConfigError

        raise ConfigError(f"config file not found: {path}")

    class _FromFile(Settings):
        model_config = SettingsConfigDict(toml_file=path)

    return _FromFile(**overrides)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide instance (environment only); commands with --config build their own."""
    return Settings()
