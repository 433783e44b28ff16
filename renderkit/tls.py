"""TLS for the stack's own hops (mutual) and for the gateway's public port.

Internal credentials come from a directory in the Kubernetes TLS secret layout, what cert-manager
writes: `ca.crt` (the CA every peer must be signed by), `tls.crt` (this process's chain) and
`tls.key`. Servers re-read their files when they change (checked as each connection arrives, a
few stat calls), so a rotated certificate is served without a restart; clients keep a
`ClientCertificates` and build new channels when it reports a change. The embedded stack's
development CA and certificate are made here too (`ensure_development_certificates`).
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import logging
import os
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from renderkit.settings import SettingsError

log = logging.getLogger(__name__)

CA_FILE = "ca.crt"
CERT_FILE = "tls.crt"
KEY_FILE = "tls.key"
DEVELOPMENT_HOSTS = ("127.0.0.1", "localhost")

# A development certificate closer than this to its end is issued again at the next start.
_RENEW_BEFORE = datetime.timedelta(days=30)
_CA_LIFETIME = datetime.timedelta(days=3650)
_CERT_LIFETIME = datetime.timedelta(days=365)


class TlsError(RuntimeError):
    """Certificate files missing, unreadable or inconsistent; the message is safe to show."""


@dataclass(frozen=True)
class TlsMaterial:
    """The PEM bytes of one identity: its chain, its key, and the CA its peers must be signed by."""

    cert: bytes
    key: bytes
    ca: bytes | None = None


@dataclass(frozen=True)
class TlsFiles:
    """Where one identity's files are. Without `ca` (the public port) no client certificate is
    asked for."""

    cert: Path
    key: Path
    ca: Path | None = None

    @classmethod
    def directory(cls, path: str | Path) -> TlsFiles:
        """The files of a directory in the Kubernetes TLS secret layout (ca.crt, tls.crt, tls.key)."""
        base = Path(path)
        return cls(cert=base / CERT_FILE, key=base / KEY_FILE, ca=base / CA_FILE)

    def paths(self) -> list[Path]:
        """Every file of the identity."""
        return [self.cert, self.key, *([self.ca] if self.ca is not None else [])]

    def stamp(self) -> tuple[tuple[int, int, int], ...]:
        """What changes whenever a file is rewritten, or swapped as Kubernetes does (a symlink
        moved to a new directory): each file's inode, modification time and size. TlsError when
        one is missing."""
        out = []
        for path in self.paths():
            try:
                st = path.stat()
            except OSError as exc:
                log.warning("certificate files unreadable: %s", exc)
                raise TlsError("the TLS certificate files cannot be read") from exc
            out.append((st.st_ino, st.st_mtime_ns, st.st_size))
        return tuple(out)

    def read(self) -> TlsMaterial:
        """Reads the files and checks that they belong together (the key is the certificate's), so
        a rotation caught between two writes is refused here rather than in every handshake."""
        try:
            material = TlsMaterial(
                cert=self.cert.read_bytes(),
                key=self.key.read_bytes(),
                ca=self.ca.read_bytes() if self.ca is not None else None,
            )
        except OSError as exc:
            log.warning("certificate files unreadable: %s", exc)
            raise TlsError("the TLS certificate files cannot be read") from exc
        check_material(material)
        return material


def check_material(material: TlsMaterial) -> None:
    """Raises TlsError unless the certificate, the key and the CA parse and the key is the
    certificate's."""
    try:
        cert = x509.load_pem_x509_certificate(material.cert)
        key = serialization.load_pem_private_key(material.key, password=None)
        if material.ca is not None:
            x509.load_pem_x509_certificates(material.ca)
    except ValueError as exc:
        raise TlsError("a TLS certificate or key is malformed") from exc
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    if cert.public_key().public_bytes(*spki) != key.public_key().public_bytes(*spki):
        raise TlsError("the TLS key does not belong to the certificate")


def _server_configuration(material: TlsMaterial) -> grpc.ServerCertificateConfiguration:
    return grpc.ssl_server_certificate_configuration([(material.key, material.cert)], root_certificates=material.ca)


class _ReloadingServerCertificates:
    """gRPC's certificate fetcher: called before every handshake, it answers a new configuration
    only when the files changed (and are consistent), else None (keep the current one)."""

    def __init__(self, files: TlsFiles) -> None:
        self._files = files
        self._lock = threading.Lock()
        self._stamp = files.stamp()  # first: files that change while being read are read again
        self.initial = _server_configuration(files.read())

    def __call__(self) -> grpc.ServerCertificateConfiguration | None:
        # Called on gRPC's own threads: nothing may escape, and a failure keeps what is served.
        try:
            stamp = self._files.stamp()
            with self._lock:
                if stamp == self._stamp:
                    return None
                configuration = _server_configuration(self._files.read())
                self._stamp = stamp
            log.info("TLS certificates changed on disk: serving the new ones")
            return configuration
        except (OSError, TlsError) as exc:
            log.warning("TLS certificates changed but cannot be used yet, keeping the current ones: %s", exc)
            return None


def server_credentials(files: TlsFiles) -> grpc.ServerCredentials:
    """Server credentials that follow the files as they rotate; with `files.ca`, every client
    must present a certificate signed by it (mutual TLS), else none is asked for."""
    fetcher = _ReloadingServerCertificates(files)
    return grpc.dynamic_ssl_server_credentials(
        fetcher.initial,
        fetcher,  # type: ignore[arg-type]  # the stubs leave out None, which gRPC takes as "no change"
        require_client_authentication=files.ca is not None,
    )


def channel_credentials(material: TlsMaterial) -> grpc.ChannelCredentials:
    """Client credentials: the server must be signed by `material.ca` and named as dialled
    (SAN); the client presents its own certificate."""
    return grpc.ssl_channel_credentials(
        root_certificates=material.ca, private_key=material.key, certificate_chain=material.cert
    )


class ClientCertificates:
    """A client's identity from a TLS directory, re-read when the files change.

    A channel's credentials are fixed when it is made, so a client that sees `reload_if_changed()`
    answer True makes new channels with `credentials()`.
    """

    def __init__(self, files: TlsFiles) -> None:
        self.files = files
        self._stamp = files.stamp()  # first: files that change while being read are read again
        self.material = files.read()

    def credentials(self) -> grpc.ChannelCredentials:
        """Channel credentials from the files as last read."""
        return channel_credentials(self.material)

    def reload_if_changed(self) -> bool:
        """Re-reads the files when they changed; True once they hold a new, consistent identity
        (files caught mid-rotation are tried again at the next check)."""
        try:
            stamp = self.files.stamp()
            if stamp == self._stamp:
                return False
            material = self.files.read()
        except (OSError, TlsError) as exc:
            log.warning("TLS certificates changed but cannot be used yet, keeping the current ones: %s", exc)
            return False
        self._stamp = stamp
        if material == self.material:
            return False
        self.material = material
        log.info("TLS certificates changed on disk: new connections use the new ones")
        return True


def internal_client(directory: str) -> ClientCertificates | None:
    """The client identity of INTERNAL_TLS_DIR, or None when it is not set (plaintext hops)."""
    if not directory:
        return None
    with _setting("INTERNAL_TLS_DIR"):
        return ClientCertificates(TlsFiles.directory(directory))


def internal_server_credentials(directory: str) -> grpc.ServerCredentials | None:
    """Mutual-TLS server credentials of INTERNAL_TLS_DIR, or None when it is not set."""
    if not directory:
        return None
    with _setting("INTERNAL_TLS_DIR"):
        return server_credentials(TlsFiles.directory(directory))


@contextlib.contextmanager
def _setting(name: str) -> Iterator[None]:
    """Unusable files at start-up are a configuration error naming the variable (fail fast)."""
    try:
        yield
    except TlsError as exc:
        raise SettingsError(f"{name}: {exc}") from exc


def public_server_credentials(cert: str, key: str) -> grpc.ServerCredentials | None:
    """Server-only TLS for a public port from a certificate chain and key (PEM files, followed as
    they rotate), or None when neither is set. Callers authenticate with tokens, not certificates."""
    if not cert:
        return None
    with _setting("GATEWAY_TLS_CERT, GATEWAY_TLS_KEY"):
        return server_credentials(TlsFiles(cert=Path(cert), key=Path(key)))


# The development CA of the embedded stack.


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
