"""Who may write what in ZooKeeper, and how a Rollway process proves who it is (issue 29).

Identities are ZooKeeper digest identities: a user name and a password, read from a file
(``--zk-auth-file``, one line ``user:password``), never from the command line, never
logged (``ZkCredentials`` hides the password from ``repr``; kazoo logs its auth packet only
below DEBUG). A process with credentials authenticates its session and creates every znode
with the ACL ``digest:<user>:ALL, world:anyone:READ``:

- the control plane's ``/rollway/...`` (route maps and their history, deploy state,
  leadership, fleet records): only the control plane's identity writes them; anyone reads;
- an announcer's serverset path and members: only that identity may add, change or remove
  members there (ZooKeeper checks CREATE and DELETE on the parent, WRITE on the member), so
  serversets are restricted to their announcers; the control plane only reads them and never
  creates a serverset path (it waits for the path to appear);
- a chroot Rollway creates stays open (``world:anyone:ALL``), so other identities can make
  their paths beneath it.

``acl_problems`` is what ``rollway serve`` reports at start about a tree made before the
lock-down (or by hand): a Rollway znode that anyone may change, or that the control plane's
identity may not.

TLS (``zk+tls://``, or any of ``--zk-tls-ca``, ``--zk-tls-cert``, ``--zk-tls-key``): the
server is verified against the CA (and its name against the certificate), and the client
shows its certificate when the server asks (``ssl.clientAuth=need``). ZooKeeper's
``secureClientPort`` is the port to name."""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path

from kazoo.security import ACL, make_acl, make_digest_acl, make_digest_acl_credential

from rollway.inputs import InputError, read_bounded

MAX_CREDENTIALS_FILE = 4096
_USER = re.compile(r"[A-Za-z0-9._@-]{1,64}")


@dataclass(frozen=True)
class ZkCredentials:
    user: str
    password: str = field(repr=False)

    def auth_data(self) -> list[tuple[str, str]]:
        """kazoo's ``auth_data``: the digest scheme and ``user:password``."""
        return [("digest", f"{self.user}:{self.password}")]

    def acl(self) -> list[ACL]:
        """What this identity's znodes get: it does everything, anyone reads."""
        return [make_digest_acl(self.user, self.password, all=True), make_acl("world", "anyone", read=True)]

    @property
    def identity(self) -> str:
        """The digest id ZooKeeper keeps in ACLs (``user:base64(sha1(user:password))``)."""
        return make_digest_acl_credential(self.user, self.password)


def read_credentials(path: str, argument: str = "--zk-auth-file") -> tuple[ZkCredentials, str | None]:
    """The credentials in ``path`` (one line ``user:password``), and a warning when the file
    is readable by others. InputError names the file and what is wrong, never its content."""
    try:
        text = read_bounded(path, MAX_CREDENTIALS_FILE, argument).decode("utf-8").strip()
    except UnicodeDecodeError:
        raise InputError(f"{argument}: {path} is not UTF-8 text") from None
    except OSError as error:
        raise InputError(f"{argument}: cannot read {path}: {error.strerror}") from None
    user, colon, password = text.partition(":")
    if "\n" in text or not colon or not _USER.fullmatch(user) or not password:
        raise InputError(f"{argument}: {path} must hold one line, user:password (a user of letters, digits and "
                         ". _ @ -, up to 64; a password that is not empty)")
    warning = None
    mode = os.stat(path).st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        warning = f"{argument}: {path} is readable by others than its owner (chmod 600 it)"
    return ZkCredentials(user, password), warning


@dataclass(frozen=True)
class ZkTls:
    """TLS to ZooKeeper: the CA that signs the servers' certificates (None: the system's),
    and this client's certificate and key, for servers that ask (both or neither)."""
    ca: str | None = None
    cert: str | None = None
    key: str | None = None

    def check(self) -> ZkTls:
        if (self.cert is None) != (self.key is None):
            raise InputError("--zk-tls-cert and --zk-tls-key: give both or neither")
        for name, value in (("--zk-tls-ca", self.ca), ("--zk-tls-cert", self.cert), ("--zk-tls-key", self.key)):
            if value is not None and not Path(value).is_file():
                raise InputError(f"{name}: {value} is not a readable file")
        return self

    def kazoo_options(self) -> dict:
        return {"use_ssl": True, "verify_certs": True, "check_hostname": True, "ca": self.ca,
                "certfile": self.cert, "keyfile": self.key}


def acl_problems(path: str, acls: list[ACL], credentials: ZkCredentials | None) -> list[str]:
    """What is wrong with ``path``'s ACL for a Rollway znode: anyone may change it, or the
    control plane's identity may not."""
    problems = []
    for acl in acls:
        if acl.id.scheme == "world" and acl.id.id == "anyone" and acl.perms & ~1:   # 1: READ
            problems.append(f"{path}: anyone may {'/'.join(p.lower() for p in acl.acl_list if p != 'READ')} it")
    if credentials is not None:
        mine = [a for a in acls if a.id.scheme == "digest" and a.id.id == credentials.identity]
        if not mine or mine[0].perms != 31:
            problems.append(f"{path}: the control plane's identity {credentials.user!r} may not change it")
    return problems


__all__ = ["ZkCredentials", "ZkTls", "acl_problems", "read_credentials"]
