"""A throwaway certificate authority for tests: a CA, a broker certificate for
127.0.0.1 / localhost and a client certificate, made with `cryptography` (EC P-256,
valid for a day)."""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class Pki:
    ca_pem: str
    broker_cert_pem: str
    broker_key_pem: str  # PKCS#8, unencrypted: what Kafka's PEM keystore reads
    ca_file: Path
    client_cert_file: Path
    client_key_file: Path


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _key_pem(key: ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def _cert_pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def make_pki(folder: Path) -> Pki:
    """A CA and two certificates it signed; the client's files written to ``folder``."""
    now = dt.datetime.now(dt.UTC)
    valid = {"not_before": now - dt.timedelta(minutes=5), "not_after": now + dt.timedelta(days=1)}

    def builder(subject: str, key: ec.EllipticCurvePrivateKey) -> x509.CertificateBuilder:
        return (
            x509.CertificateBuilder()
            .subject_name(_name(subject))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(valid["not_before"])
            .not_valid_after(valid["not_after"])
        )

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        builder("profitwatch test CA", ca_key)
        .issuer_name(_name("profitwatch test CA"))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )

    def leaf(
        subject: str, usage: x509.ObjectIdentifier, names: list[x509.GeneralName]
    ) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
        key = ec.generate_private_key(ec.SECP256R1())
        b = (
            builder(subject, key)
            .issuer_name(ca.subject)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        )
        if names:
            b = b.add_extension(x509.SubjectAlternativeName(names), critical=False)
        return key, b.sign(ca_key, hashes.SHA256())

    # Clients check the broker's name (ssl_check_hostname): it is 127.0.0.1 in tests.
    broker_key, broker_cert = leaf(
        "kafka broker",
        ExtendedKeyUsageOID.SERVER_AUTH,
        [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))],
    )
    client_key, client_cert = leaf("profitwatch", ExtendedKeyUsageOID.CLIENT_AUTH, [])
    folder.mkdir(parents=True, exist_ok=True)
    files = Pki(
        ca_pem=_cert_pem(ca),
        broker_cert_pem=_cert_pem(broker_cert),
        broker_key_pem=_key_pem(broker_key),
        ca_file=folder / "ca.pem",
        client_cert_file=folder / "client.pem",
        client_key_file=folder / "client.key",
    )
    files.ca_file.write_text(files.ca_pem)
    files.client_cert_file.write_text(_cert_pem(client_cert))
    files.client_key_file.write_text(_key_pem(client_key))
    files.client_key_file.chmod(0o600)
    return files
