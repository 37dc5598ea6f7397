"""A private CA and the certificates an mTLS broker (the local stand-in for AWS IoT Core) and
its clients need, made with `cryptography` (of the ``test`` extra): for the tests and the
benchmarks.

``make_pki(dir)`` writes ca.pem, server.pem/server.key (SAN localhost and 127.0.0.1, serverAuth),
client.pem/client.key (clientAuth, CN = the client id) and rogue.pem/rogue.key (a client
certificate of another CA, which the broker must refuse), and returns their paths.
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

from gateway.devstack.mosquitto import Tls


@dataclass(frozen=True)
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_client_cert: Path  # signed by a different CA: must be refused
    other_client_key: Path

    def broker_tls(self) -> Tls:
        """The server side, for :class:`~gateway.devstack.mosquitto.Mosquitto`'s ``tls``."""
        return Tls(cafile=self.ca, certfile=self.server_cert, keyfile=self.server_key)


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)


def _issue(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Name,
    issuer_key: ec.EllipticCurvePrivateKey,
    *,
    ca: bool = False,
    usage: list[x509.ObjectIdentifier] | None = None,
    san: x509.SubjectAlternativeName | None = None,
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    if usage:
        builder = builder.add_extension(x509.ExtendedKeyUsage(usage), critical=False)
    if san is not None:
        builder = builder.add_extension(san, critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _pem(cert: x509.Certificate, path: Path) -> Path:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


def make_pki(directory: Path, client_id: str = "fmfb-test-gateway") -> Pki:
    directory.mkdir(parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("fmfb test CA")
    ca = _issue("fmfb test CA", ca_key, ca_name, ca_key, ca=True)
    server_key = ec.generate_private_key(ec.SECP256R1())
    server = _issue(
        "localhost",
        server_key,
        ca_name,
        ca_key,
        usage=[ExtendedKeyUsageOID.SERVER_AUTH],
        san=x509.SubjectAlternativeName(
            [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
        ),
    )
    client_key = ec.generate_private_key(ec.SECP256R1())
    client = _issue(client_id, client_key, ca_name, ca_key, usage=[ExtendedKeyUsageOID.CLIENT_AUTH])
    rogue_ca_key = ec.generate_private_key(ec.SECP256R1())
    rogue_key = ec.generate_private_key(ec.SECP256R1())
    rogue = _issue(
        client_id,
        rogue_key,
        _name("rogue CA"),
        rogue_ca_key,
        usage=[ExtendedKeyUsageOID.CLIENT_AUTH],
    )
    pki = Pki(
        ca=_pem(ca, directory / "ca.pem"),
        server_cert=_pem(server, directory / "server.pem"),
        server_key=directory / "server.key",
        client_cert=_pem(client, directory / "client.pem"),
        client_key=directory / "client.key",
        other_client_cert=_pem(rogue, directory / "rogue.pem"),
        other_client_key=directory / "rogue.key",
    )
    _write_key(server_key, pki.server_key)
    _write_key(client_key, pki.client_key)
    _write_key(rogue_key, pki.other_client_key)
    return pki
