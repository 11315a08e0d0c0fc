"""The Kafka security settings (`Settings.kafka`): where they come from, which
combinations are refused and how, that the password shows nowhere, and what each
client library is given (streams/kafka_security.py)."""

from __future__ import annotations

import ssl
from pathlib import Path

import faust
import pytest

from models.errors import ConfigError
from models.settings import KafkaSecurity, Settings, load_settings
from streams.app import app_config
from streams.kafka_security import (
    aiokafka_config,
    describe,
    faust_config,
    kafka_python_config,
    ssl_context,
)
from tests.integration.pki import Pki, make_pki

SECRET = "s3cret-Hunter2"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def sasl_ssl(pki: Pki, **kw: object) -> KafkaSecurity:
    fields: dict[str, object] = {
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_username": "alice",
        "sasl_password": SECRET,
        "ssl_cafile": pki.ca_file,
        "ssl_certfile": pki.client_cert_file,
        "ssl_keyfile": pki.client_key_file,
    }
    return KafkaSecurity.model_validate(fields | kw)


def test_plaintext_is_the_default_and_changes_no_client() -> None:
    security = Settings().kafka
    assert security.security_protocol == "PLAINTEXT"
    assert ssl_context(security) is None
    assert faust_config(security) == {}
    assert kafka_python_config(security) == {"security_protocol": "PLAINTEXT"}


def test_from_the_environment(monkeypatch: pytest.MonkeyPatch, pki: Pki) -> None:
    monkeypatch.setenv("PROFITWATCH_KAFKA__SECURITY_PROTOCOL", "sasl_ssl")
    monkeypatch.setenv("PROFITWATCH_KAFKA__SASL_MECHANISM", "scram-sha-256")
    monkeypatch.setenv("PROFITWATCH_KAFKA__SASL_USERNAME", "alice")
    monkeypatch.setenv("PROFITWATCH_KAFKA__SASL_PASSWORD", SECRET)
    monkeypatch.setenv("PROFITWATCH_KAFKA__SSL_CAFILE", str(pki.ca_file))
    monkeypatch.setenv("PROFITWATCH_KAFKA__SSL_CHECK_HOSTNAME", "false")
    security = Settings().kafka
    assert (security.security_protocol, security.sasl_mechanism) == ("SASL_SSL", "SCRAM-SHA-256")
    assert security.sasl_password is not None
    assert security.sasl_password.get_secret_value() == SECRET
    assert security.ssl_cafile == pki.ca_file and security.ssl_check_hostname is False


def test_from_toml_under_kafka(tmp_path: Path) -> None:
    config = tmp_path / "profitwatch.toml"
    config.write_text(
        '[kafka]\nsecurity_protocol = "SASL_PLAINTEXT"\nsasl_mechanism = "PLAIN"\n'
        f'sasl_username = "bob"\nsasl_password = "{SECRET}"\n'
    )
    security = load_settings(config).kafka
    assert security.security_protocol == "SASL_PLAINTEXT" and security.sasl_username == "bob"
    assert ssl_context(security) is None  # SASL without TLS


def test_the_password_shows_in_no_repr_dump_or_description(pki: Pki) -> None:
    settings = Settings(kafka=sasl_ssl(pki))
    for text in (
        repr(settings),
        str(settings),
        str(settings.model_dump()),
        settings.model_dump_json(),
        describe(settings.kafka),
        repr(faust_config(settings.kafka)["broker_credentials"]),
    ):
        assert SECRET not in text
    assert describe(settings.kafka) == "SASL_SSL (SCRAM-SHA-512 as 'alice')"


def test_an_error_elsewhere_does_not_print_the_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROFITWATCH_KAFKA__SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("PROFITWATCH_KAFKA__SASL_USERNAME", "alice")
    monkeypatch.setenv("PROFITWATCH_KAFKA__SASL_PASSWORD", SECRET)
    monkeypatch.setenv("PROFITWATCH_REPORTING_CURRENCY", "XYZ")  # refused by Settings
    with pytest.raises(ValueError, match="reporting_currency") as err:
        Settings()
    assert SECRET not in str(err.value)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"security_protocol": "SASL_SSL"}, "needs kafka.sasl_username and kafka.sasl_password"),
        (
            {"security_protocol": "SASL_PLAINTEXT", "sasl_username": "a", "sasl_password": ""},
            "needs kafka.sasl_username and kafka.sasl_password",
        ),
        (
            {"sasl_username": "a", "sasl_password": SECRET},
            "security_protocol is PLAINTEXT: use SASL_SSL",
        ),
        ({"ssl_cafile": "/etc/hostname"}, "security_protocol is PLAINTEXT: use SSL or SASL_SSL"),
        ({"security_protocol": "SSL", "ssl_cafile": "/no/such/ca.pem"}, "no such file"),
        (
            {"security_protocol": "SSL", "ssl_keyfile": "/etc/hostname"},
            "ssl_keyfile needs kafka.ssl_certfile",
        ),
    ],
)
def test_combinations_that_cannot_work_are_refused(fields: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message) as err:
        KafkaSecurity.model_validate(fields)
    assert SECRET not in str(err.value)


def test_an_unknown_protocol_or_mechanism_is_refused() -> None:
    with pytest.raises(ValueError, match="SASL_SSL"):
        KafkaSecurity(security_protocol="SASL_SLL")
    with pytest.raises(ValueError, match="SCRAM-SHA-512"):
        KafkaSecurity(security_protocol="SASL_SSL", sasl_mechanism="GSSAPI")


def test_a_file_that_is_no_pem_is_refused_when_the_context_is_built(tmp_path: Path) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate")
    with pytest.raises(ConfigError, match="not a usable CA file"):
        ssl_context(KafkaSecurity(security_protocol="SSL", ssl_cafile=junk))
    with pytest.raises(ConfigError, match="not a usable client certificate"):
        ssl_context(KafkaSecurity(security_protocol="SSL", ssl_certfile=junk))


def test_every_client_gets_the_same_tls_context_and_credentials(pki: Pki) -> None:
    security = sasl_ssl(pki)
    context = ssl_context(security)
    assert isinstance(context, ssl.SSLContext) and context is ssl_context(sasl_ssl(pki))
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert context.minimum_version >= ssl.TLSVersion.TLSv1_2

    faust_conf = faust_config(security)
    credentials = faust_conf["broker_credentials"]
    assert isinstance(credentials, faust.SASLCredentials)
    assert credentials.protocol.value == "SASL_SSL"
    assert credentials.mechanism.value == "SCRAM-SHA-512"
    assert (credentials.username, credentials.password) == ("alice", SECRET)
    assert credentials.ssl_context is context and faust_conf["ssl_context"] is context

    assert kafka_python_config(security) == {
        "security_protocol": "SASL_SSL",
        "ssl_context": context,
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "alice",
        "sasl_plain_password": SECRET,
    }
    assert aiokafka_config(security) == kafka_python_config(security)

    conf = app_config(Settings(kafka=security))
    assert isinstance(conf["broker_credentials"], faust.SASLCredentials)
    assert conf["ssl_context"] is context


def test_tls_without_sasl_is_faust_ssl_credentials(pki: Pki) -> None:
    security = KafkaSecurity(security_protocol="SSL", ssl_cafile=pki.ca_file)
    conf = faust_config(security)
    assert isinstance(conf["broker_credentials"], faust.SSLCredentials)
    assert conf["broker_credentials"].context is conf["ssl_context"] is ssl_context(security)
    assert kafka_python_config(security)["security_protocol"] == "SSL"
    assert "sasl_mechanism" not in kafka_python_config(security)
