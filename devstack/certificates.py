"""The embedded stack's development credentials: a CA, the certificate every process of the stack
presents on its internal hops (in the layout renderkit.tls reads), and files written whole with a
private mode from their creation."""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from renderkit.tls import TlsError, TlsFiles, TlsMaterial

log = logging.getLogger(__name__)

DEVELOPMENT_HOSTS = ("127.0.0.1", "localhost")

# A development certificate closer than this to its end is issued again at the next start.
_RENEW_BEFORE = datetime.timedelta(days=30)
_CA_LIFETIME = datetime.timedelta(days=3650)
_CERT_LIFETIME = datetime.timedelta(days=365)


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _subject_alternative_names(hosts: Sequence[str]) -> x509.SubjectAlternativeName:
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return x509.SubjectAlternativeName(names)


@dataclass(frozen=True)
class CertificateAuthority:
    """A CA that issues certificates for the stack's processes (development and tests)."""

    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @classmethod
    def create(cls, common_name: str = "render-pipeline development CA") -> CertificateAuthority:
        """A new self-signed CA (ECDSA P-256: fast handshakes, understood by gRPC, Triton and buf)."""
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        now = _now()
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + _CA_LIFETIME)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
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
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256())
        )
        return cls(cert, key)

    @classmethod
    def load(cls, cert_path: Path, key_path: Path) -> CertificateAuthority:
        """A CA from its PEM files."""
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise TlsError("the development CA key is not an EC key")
        return cls(x509.load_pem_x509_certificate(cert_path.read_bytes()), key)

    @property
    def cert_pem(self) -> bytes:
        """The CA certificate as PEM (what ca.crt holds)."""
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @property
    def key_pem(self) -> bytes:
        """The CA key as PEM."""
        return _pem_key(self.key)

    def issue(self, hosts: Sequence[str], common_name: str = "render-pipeline") -> TlsMaterial:
        """A certificate for both ends of a hop (server and client usage), valid for `hosts` (IP
        addresses and DNS names, as clients dial them), with this CA as `ca`."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = _now()
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(min(now + _CERT_LIFETIME, self.cert.not_valid_after_utc))
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
            .add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                critical=False,
            )
            .add_extension(_subject_alternative_names(hosts), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), critical=False)
            .sign(self.key, hashes.SHA256())
        )
        return TlsMaterial(cert=cert.public_bytes(serialization.Encoding.PEM), key=_pem_key(key), ca=self.cert_pem)


def write_private(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Writes a file whole (a reader sees the old or the new content, never half) with `mode`
    from its creation on, so a key is never readable by others even for a moment."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    with contextlib.suppress(FileNotFoundError):  # left by a write that was interrupted
        temporary.unlink()
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    os.fchmod(fd, mode)  # the umask may have narrowed it
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    os.replace(temporary, path)


def write_material(directory: Path, material: TlsMaterial) -> TlsFiles:
    """Writes an identity in the secret layout (key 0600), key first, then the chain, then the CA."""
    files = TlsFiles.directory(directory)
    write_private(files.key, material.key)
    write_private(files.cert, material.cert, 0o644)
    if material.ca is not None and files.ca is not None:
        write_private(files.ca, material.ca, 0o644)
    return files


def _usable(cert: x509.Certificate, ca: CertificateAuthority | None, hosts: Sequence[str]) -> bool:
    """Valid for a while yet, signed by the CA (when given) and naming every host."""
    if cert.not_valid_after_utc - _now() < _RENEW_BEFORE:
        return False
    if ca is not None:
        try:
            cert.verify_directly_issued_by(ca.cert)
        except (ValueError, TypeError, InvalidSignature):
            return False
        try:
            names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        except x509.ExtensionNotFound:
            return False
        wanted = set(_subject_alternative_names(hosts))
        return wanted <= set(names)
    return True


def ensure_development_certificates(
    directory: Path, ca_key_path: Path, hosts: Sequence[str] = DEVELOPMENT_HOSTS
) -> TlsFiles:
    """The embedded stack's internal identity in `directory` (ca.crt, tls.crt, tls.key): made on
    the first start and reused later; issued again (by the same CA) when it nears its end or no
    longer names every host. The CA's key lives apart, in `ca_key_path` (0600), so no process of
    the stack can issue certificates."""
    files = TlsFiles.directory(directory)
    assert files.ca is not None
    ca: CertificateAuthority | None = None
    if files.ca.exists() and ca_key_path.exists():
        try:
            ca = CertificateAuthority.load(files.ca, ca_key_path)
        except (OSError, ValueError, TlsError):
            log.warning("the development CA cannot be read; making a new one")
        if ca is not None and not _usable(ca.cert, None, hosts):
            ca = None
    if ca is None:
        ca = CertificateAuthority.create()
        write_private(ca_key_path, ca.key_pem)
        write_private(files.ca, ca.cert_pem, 0o644)
    if files.cert.exists() and files.key.exists():
        try:
            current = files.read()
            if current.ca == ca.cert_pem and _usable(x509.load_pem_x509_certificate(current.cert), ca, hosts):
                return files
        except (TlsError, ValueError):
            log.warning("the development certificate cannot be used; issuing a new one")
    write_material(directory, ca.issue(hosts))
    return files
