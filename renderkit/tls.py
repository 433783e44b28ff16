"""TLS for the stack's own hops (mutual) and for the gateway's public port.

Internal credentials come from a directory in the Kubernetes TLS secret layout, what cert-manager
writes: `ca.crt` (the CA every peer must be signed by), `tls.crt` (this process's chain) and
`tls.key`. Servers re-read their files when they change (checked as each connection arrives, a
few stat calls), so a rotated certificate is served without a restart; clients keep a
`ClientCertificates` and build new channels when it reports a change. The embedded stack's
development CA and certificate are made by `devstack.certificates`.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from renderkit.settings import SettingsError

log = logging.getLogger(__name__)

CA_FILE = "ca.crt"
CERT_FILE = "tls.crt"
KEY_FILE = "tls.key"


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
