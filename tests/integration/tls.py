"""TLS on loopback for the tests: a throwaway CA, a server certificate for 127.0.0.1, and a
TLS-terminating TCP proxy (TLS to the client, plain TCP to OpenSearch or Redis behind it).
"""

from __future__ import annotations

import datetime
import ipaddress
import select
import socket
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.integration.faults import TcpFaultProxy


@dataclass(frozen=True)
class TlsFiles:
    """PEM files: the CA a client trusts, and the server's certificate chain and key."""

    ca_pem: Path
    cert_pem: Path
    key_pem: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert_pem, self.key_pem)
        return context


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def make_tls_files(directory: Path) -> TlsFiles:
    """A self-signed CA and a server certificate it signed for IP 127.0.0.1 and localhost."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(_name("syncer test CA"))
        .issuer_name(_name("syncer test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
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
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    server_key = ec.generate_private_key(ec.SECP256R1())
    server_cert = (
        x509.CertificateBuilder()
        .subject_name(_name("127.0.0.1"))
        .issuer_name(ca_cert.subject)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    files = TlsFiles(directory / "ca.pem", directory / "server.pem", directory / "server.key")
    files.ca_pem.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    files.cert_pem.write_bytes(server_cert.public_bytes(serialization.Encoding.PEM))
    files.key_pem.write_bytes(
        server_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return files


class TlsTerminatingProxy(TcpFaultProxy):
    """A TcpFaultProxy whose client side speaks TLS with the given server certificate.

    Each connection is relayed by one thread that does every read and write on the TLS socket,
    since an OpenSSL connection must not be used from two threads at once.
    """

    def __init__(self, files: TlsFiles, target_host: str, target_port: int) -> None:
        self.context = files.server_context()
        self.handshake_failures = 0
        super().__init__(target_host, target_port)  # starts the accept thread: context first

    def _accept(self) -> None:
        while self.running:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        try:
            client.settimeout(10)
            secure = self.context.wrap_socket(client, server_side=True)
        except (OSError, ssl.SSLError):
            self.handshake_failures += 1  # e.g. the client did not trust our CA
            client.close()
            return
        try:
            upstream = socket.create_connection(self.target, timeout=10)
        except OSError:
            secure.close()
            return
        with self.lock:
            self.connections += [secure, upstream]
        self._relay(secure, upstream)

    @staticmethod
    def _relay(secure: ssl.SSLSocket, upstream: socket.socket) -> None:
        secure.settimeout(None)
        upstream.settimeout(None)
        try:
            while True:
                # Bytes OpenSSL already decrypted are invisible to select: drain them first.
                readable = (
                    [secure] if secure.pending() else select.select([secure, upstream], [], [])[0]
                )
                if secure in readable:
                    data = secure.recv(65536)
                    if not data:
                        return
                    upstream.sendall(data)
                if upstream in readable:
                    data = upstream.recv(65536)
                    if not data:
                        return
                    secure.sendall(data)
        except (OSError, ValueError):
            return  # either side closed, or close()/set_down() cut the pair
        finally:
            for end in (secure, upstream):
                try:
                    end.close()
                except OSError:
                    continue


@contextmanager
def tls_proxy(files: TlsFiles, target_host: str, target_port: int) -> Iterator[TlsTerminatingProxy]:
    proxy = TlsTerminatingProxy(files, target_host, target_port)
    try:
        yield proxy
    finally:
        proxy.close()
