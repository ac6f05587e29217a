"""A throwaway certificate authority for the mail servers in the tests.

Clients under test must verify certificates for real (hostname and chain), so the servers present a
certificate issued by a CA made here, and the tests hand that CA's file to the client
(`ssl.create_default_context(cafile=ca.ca_path)`). Keys are ECDSA P-256: generating them takes
milliseconds, and both OpenSSL in Dovecot and Python's ssl accept them. The extensions (key usage,
key identifiers) satisfy Python 3.13's VERIFY_X509_STRICT as well as older, laxer checks.
"""

from __future__ import annotations

import datetime
import ipaddress
import itertools
import os
import ssl
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

DEFAULT_HOSTNAMES: tuple[str, ...] = ("127.0.0.1", "localhost")
# Backdated a little so a clock that is a few minutes off never makes a fresh certificate "not yet valid".
_BACKDATE = datetime.timedelta(days=1)
_LIFETIME = datetime.timedelta(days=30)


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    # Created 0600 from the start: some servers refuse keys that others can read.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(pem)


def _san(hostname: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(hostname))
    except ValueError:
        return x509.DNSName(hostname)


@dataclass
class CA:
    """A CA certificate and key in `dir`; `issue()` signs server certificates with it."""

    dir: Path
    ca_path: Path
    key_path: Path
    certificate: x509.Certificate = field(repr=False)
    key: ec.EllipticCurvePrivateKey = field(repr=False)
    _serials: itertools.count[int] = field(default_factory=lambda: itertools.count(2), repr=False)

    def issue(
        self, hostnames: Sequence[str] = DEFAULT_HOSTNAMES, *, name: str | None = None, dir: Path | str | None = None
    ) -> tuple[Path, Path]:
        """A server certificate for `hostnames` (IP addresses become IP SANs, the rest DNS SANs).

        Returns `(cert_path, key_path)`, written to `dir` (default: the CA's own directory); the
        certificate file holds the leaf only, as servers want it.
        """
        if not hostnames:
            raise ValueError("a server certificate needs at least one hostname")
        serial = next(self._serials)
        stem = name or f"server-{serial}"
        key = _new_key()
        now = datetime.datetime.now(datetime.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostnames[0])]))
            .issuer_name(self.certificate.subject)
            .public_key(key.public_key())
            .serial_number(serial)
            .not_valid_before(now - _BACKDATE)
            .not_valid_after(now + _LIFETIME)
            .add_extension(x509.SubjectAlternativeName([_san(h) for h in hostnames]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), critical=False)
            .sign(self.key, hashes.SHA256())
        )
        out = Path(dir) if dir is not None else self.dir
        out.mkdir(parents=True, exist_ok=True)
        cert_path = out / f"{stem}.pem"
        key_path = out / f"{stem}.key.pem"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        _write_key(key_path, key)
        return cert_path, key_path

    def client_context(self) -> ssl.SSLContext:
        """What a careful client does: verify the chain against this CA and check the hostname."""
        return ssl.create_default_context(cafile=str(self.ca_path))

    def server_context(self, hostnames: Sequence[str] = DEFAULT_HOSTNAMES) -> ssl.SSLContext:
        """A server-side context with a fresh certificate for `hostnames` (for Python servers)."""
        cert_path, key_path = self.issue(hostnames)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert_path, key_path)
        return context


def make_ca(dir: Path | str, *, common_name: str = "KeyBuzz test CA") -> CA:
    """Creates a new CA in `dir` (created if missing): `ca.pem` for clients, `ca.key.pem` beside it."""
    directory = Path(dir)
    directory.mkdir(parents=True, exist_ok=True)
    key = _new_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(now + _LIFETIME)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
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
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    ca_path = directory / "ca.pem"
    key_path = directory / "ca.key.pem"
    ca_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    _write_key(key_path, key)
    return CA(dir=directory, ca_path=ca_path, key_path=key_path, certificate=certificate, key=key)
