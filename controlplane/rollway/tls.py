"""TLS for the links between hosts: the operator API and xDS (gRPC) and the dashboard (HTTP).

The server side is one certificate and key for every port the control plane serves, and
optionally a client CA: with one, an xDS client (an Envoy) must present a certificate it
signed, or its handshake is refused (mTLS); the operator API keeps authenticating writes by
the operator token. Clients (the CLI, tests, the deploy tool) verify the server against a
CA file and may present a certificate of their own. Plaintext stays for loopback and the
demo; ``is_loopback`` says when a bind address is one.

Usage::

    server_tls = ServerTLS.load("server.pem", "server.key", client_ca="clients-ca.pem")
    grpc_server.add_secure_port("0.0.0.0:18000", server_tls.grpc_credentials(require_client=True))
    channel = ClientTLS.load(ca="ca.pem").channel("cp1.example:7700")
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
from dataclasses import dataclass

import grpc

MAX_PEM_BYTES = 1 << 20     # a certificate chain or key file larger than this is not one

__all__ = ["ClientTLS", "ServerTLS", "TLSConfigError", "is_loopback", "read_pem"]


class TLSConfigError(ValueError):
    """A certificate, key or CA file that cannot be used; the message names the file."""


def read_pem(path: str, what: str) -> bytes:
    """A PEM file's bytes, checked to hold at least one PEM block; the error names ``what``
    (``--tls-cert``...) and the file, never the file's contents."""
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_PEM_BYTES + 1)
    except OSError as error:
        raise TLSConfigError(f"{what} {path!r}: {error.strerror}") from None
    if len(data) > MAX_PEM_BYTES:
        raise TLSConfigError(f"{what} {path!r}: larger than {MAX_PEM_BYTES} bytes")
    if b"-----BEGIN " not in data:
        raise TLSConfigError(f"{what} {path!r}: not a PEM file")
    return data


@dataclass(frozen=True)
class ServerTLS:
    cert_path: str
    key_path: str
    cert: bytes
    key: bytes
    client_ca_path: str | None = None
    client_ca: bytes | None = None

    @classmethod
    def load(cls, cert: str, key: str, client_ca: str | None = None) -> ServerTLS:
        server = cls(cert, key, read_pem(cert, "--tls-cert"), read_pem(key, "--tls-key"), client_ca,
                     read_pem(client_ca, "--tls-client-ca") if client_ca else None)
        server.ssl_context()      # fails here, naming the files, if the key does not match
        return server

    def grpc_credentials(self, require_client: bool = False) -> grpc.ServerCredentials:
        """With ``require_client`` and a client CA, peers without a certificate it signed
        are refused during the handshake."""
        mutual = require_client and self.client_ca is not None
        return grpc.ssl_server_credentials([(self.key, self.cert)],
                                           root_certificates=self.client_ca if mutual else None,
                                           require_client_auth=mutual)

    def ssl_context(self) -> ssl.SSLContext:
        """For the dashboard's HTTPS."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        try:
            context.load_cert_chain(self.cert_path, self.key_path)
        except (ssl.SSLError, OSError) as error:
            raise TLSConfigError(f"--tls-cert {self.cert_path!r} and --tls-key {self.key_path!r} "
                                 f"do not make a usable pair: {error}") from None
        return context


@dataclass(frozen=True)
class ClientTLS:
    ca: bytes
    cert: bytes | None = None
    key: bytes | None = None
    server_name: str | None = None      # the name to verify, when dialling an address

    @classmethod
    def load(cls, ca: str, cert: str | None = None, key: str | None = None,
             server_name: str | None = None) -> ClientTLS:
        if bool(cert) != bool(key):
            raise TLSConfigError("--tls-cert and --tls-key go together")
        return cls(read_pem(ca, "--tls-ca"), read_pem(cert, "--tls-cert") if cert else None,
                   read_pem(key, "--tls-key") if key else None, server_name)

    def channel(self, target: str, options: list | tuple = ()) -> grpc.Channel:
        credentials = grpc.ssl_channel_credentials(self.ca, self.key, self.cert)
        extra = [("grpc.ssl_target_name_override", self.server_name)] if self.server_name else []
        return grpc.secure_channel(target, credentials, options=[*options, *extra])


def is_loopback(host: str) -> bool:
    """Whether a bind address only accepts connections from this host."""
    if host in ("localhost", ""):
        return host == "localhost"
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        try:
            return all(ipaddress.ip_address(info[4][0]).is_loopback
                       for info in socket.getaddrinfo(host, None))
        except (OSError, ValueError):
            return False
