"""A throwaway certificate authority for TLS tests, made with the `cryptography` package.

One CA signs a broker certificate (for `localhost` and 127.0.0.1) and a client certificate (for
mutual TLS). Everything is PEM: Apache Kafka reads PEM key stores directly (`ssl.keystore.type=PEM`),
so no `keytool` or PKCS#12 step is needed. Keys are EC P-256: fast to generate, accepted by Java.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class TlsFiles:
    ca_cert: Path  # PEM: the CA clients trust (Redline's REDLINE_KAFKA_SSL_CAFILE)
    broker_keystore: Path  # PEM: the broker's private key followed by its certificate chain
    client_cert: Path  # PEM: a certificate the broker trusts, for mutual TLS
    client_key: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Redline tests"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    # Unencrypted PKCS#8 ("BEGIN PRIVATE KEY"): the form Kafka's PEM key store reads without a password.
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _certificate(
    subject: str, key: ec.EllipticCurvePrivateKey, issuer: x509.Name, issuer_key: ec.EllipticCurvePrivateKey,
    *, is_ca: bool, usage: x509.ObjectIdentifier | None = None, hosts: tuple[str, ...] = (),
    ips: tuple[str, ...] = (),
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))  # tolerate a little clock skew
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=is_ca, path_length=0 if is_ca else None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if is_ca:
        builder = builder.add_extension(
            x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                          key_encipherment=False, data_encipherment=False, key_agreement=False,
                          encipher_only=False, decipher_only=False), critical=True)
    if usage is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    names: list[x509.GeneralName] = [x509.DNSName(host) for host in hosts]
    names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def make_tls_files(
    directory: Path, hosts: tuple[str, ...] = ("localhost",), ips: tuple[str, ...] = ("127.0.0.1",)
) -> TlsFiles:
    """Write a fresh CA, a broker key store and a client certificate into `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _certificate("Redline test CA", ca_key, _name("Redline test CA"), ca_key, is_ca=True)
    broker_key = ec.generate_private_key(ec.SECP256R1())
    broker = _certificate("kafka-broker", broker_key, ca.subject, ca_key, is_ca=False,
                          usage=ExtendedKeyUsageOID.SERVER_AUTH, hosts=hosts, ips=ips)
    client_key = ec.generate_private_key(ec.SECP256R1())
    client = _certificate("redline-client", client_key, ca.subject, ca_key, is_ca=False,
                          usage=ExtendedKeyUsageOID.CLIENT_AUTH)

    def pem(cert: x509.Certificate) -> bytes:
        return cert.public_bytes(serialization.Encoding.PEM)

    files = TlsFiles(ca_cert=directory / "ca.pem", broker_keystore=directory / "broker-keystore.pem",
                     client_cert=directory / "client.pem", client_key=directory / "client-key.pem")
    files.ca_cert.write_bytes(pem(ca))
    files.broker_keystore.write_bytes(_key_pem(broker_key) + pem(broker) + pem(ca))
    files.client_cert.write_bytes(pem(client))
    files.client_key.write_bytes(_key_pem(client_key))
    return files
