"""Certificates for the secured embedded cluster: a throw-away CA, one broker
certificate (for 127.0.0.1 and localhost) and a client certificate per principal, all
PEM, made with `cryptography` (pyca). Dev tooling: a real cluster brings its own PKI."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterable
from dataclasses import dataclass
from ipaddress import IPv4Address
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

#: Certificates of the embedded cluster last this long: it is a dev cluster.
_VALID = dt.timedelta(days=825)
BROKER = "broker"


@dataclass(frozen=True)
class CertificateFiles:
    folder: Path

    @property
    def ca(self) -> Path:
        return self.folder / "ca.pem"

    def client_cert(self, name: str) -> Path:
        return self.folder / f"{name}.cert.pem"

    def client_key(self, name: str) -> Path:
        return self.folder / f"{name}.key.pem"

    @property
    def broker_keystore(self) -> Path:
        """The broker's key and certificate chain in one PEM (Kafka's PEM keystore)."""
        return self.folder / f"{BROKER}.keystore.pem"


def issue_certificates(folder: Path, *, clients: Iterable[str] = ()) -> CertificateFiles:
    """A CA, the broker's certificate and one client certificate per name, under
    ``folder``; what exists already is kept (a restart reuses the cluster's PKI)."""
    files = CertificateFiles(folder)
    folder.mkdir(parents=True, exist_ok=True)
    ca_key_path = folder / "ca.key.pem"
    if files.ca.exists() and ca_key_path.exists():
        ca_key = serialization.load_pem_private_key(ca_key_path.read_bytes(), None)
        ca_cert = x509.load_pem_x509_certificate(files.ca.read_bytes())
    else:
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_cert = _certificate("kafka-saga embedded CA", ca_key, ca_key, None, ca=True)
        _write_key(ca_key_path, ca_key)
        files.ca.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    for name in [BROKER, *clients]:
        cert_path, key_path = files.client_cert(name), files.client_key(name)
        if cert_path.exists() and key_path.exists():
            continue
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _certificate(name, key, ca_key, ca_cert, ca=False)
        _write_key(key_path, key)
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        if name == BROKER:
            write_private(files.broker_keystore, key_path.read_bytes()
                           + cert_path.read_bytes() + files.ca.read_bytes())
    return files


def _certificate(common_name: str, key: ec.EllipticCurvePrivateKey,
                 issuer_key: ec.EllipticCurvePrivateKey, issuer: x509.Certificate | None,
                 *, ca: bool) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    builder = (x509.CertificateBuilder()
               .subject_name(subject)
               .issuer_name(issuer.subject if issuer else subject)
               .public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - dt.timedelta(minutes=5))
               .not_valid_after(now + _VALID)
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                          content_commitment=False, key_encipherment=False,
                          data_encipherment=False, key_agreement=False,
                          encipher_only=False, decipher_only=False), critical=True)
    else:
        # Every certificate serves both ends: the broker's is also the client one it
        # presents to the other nodes, a client's is only ever a client's.
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                         x509.IPAddress(IPv4Address("127.0.0.1"))]),
            critical=False).add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                   ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    write_private(path, key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))


def write_private(path: Path, data: bytes) -> None:
    """Write a file that holds a private key, readable by its owner only from its first
    byte on: written first and chmod-ed after, another user could open it in between
    and keep reading it."""
    # A file already there goes first: truncating it in place would keep its mode, and
    # anyone who opened it before would read the new key through their descriptor.
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.fchmod(fd, 0o600)  # exactly owner read+write, whatever the umask took away
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)
