"""What every input from outside is checked for: one rule per kind of value, used by every
place that value enters (the route-map parser, both stores, the serverset reader and the
announcer, the xDS server, the operator API and the CLI). It imports nothing of Rollway's,
so every layer can use it.

Each ``check_*`` returns the value or raises ``InputError`` (a ``ValueError``) whose message
names the argument and says what was wrong; nothing is changed by a refused input.
"""

from __future__ import annotations

import ipaddress
import math
import re

MAX_NAME = 128            # service, replica, node id, version: keys in records and stats names
MAX_PATH = 1024           # a ZooKeeper path (ZooKeeper itself takes longer ones; none is real)
MAX_PORT = 65535
# A member's weight: Envoy's load_balancing_weight is a uint32 and the weights of one
# locality must sum below 2**32, so a member may weigh at most this much: 429,496 members
# of one version at the maximum still sum below Envoy's limit.
MAX_MEMBER_WEIGHT = 10_000.0
MAX_TEXT = 1024           # free text an operator attaches (a push's author or reason)

_NAME = re.compile(r"[A-Za-z0-9._-]+")
_VERSION = re.compile(r"[A-Za-z0-9._+-]+")
_PATH = re.compile(r"(/[A-Za-z0-9._:@+-]+)+")
# Control characters (C0, DEL, C1) and the Unicode line and paragraph separators: none may
# reach a log line or a terminal as itself.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


class InputError(ValueError):
    """An input refused by one of the rules here; the message starts with what it was."""


def _shown(value: object, limit: int = 64) -> str:
    """A refused value as it may be quoted back: cut, and with control characters escaped."""
    text = value if isinstance(value, str) else repr(value)
    return repr(printable(text[:limit]) + ("..." if len(text) > limit else ""))


def check_name(value: object, argument: str) -> str:
    """A service, replica or member name: it becomes one path component in both stores and a
    key in records, so letters, digits, ``.``, ``_`` and ``-``, 1-128 characters, and never
    ``.`` or ``..``."""
    if not isinstance(value, str) or not _NAME.fullmatch(value) or value in (".", "..") \
            or len(value) > MAX_NAME:
        raise InputError(f"{argument}: must be a name of letters, digits, '.', '_' and '-' "
                         f"(1-{MAX_NAME} characters, not '.' or '..'; got {_shown(value)})")
    return value


def check_version(value: object, argument: str = "version") -> str:
    """A build's version name: it becomes part of a cluster name and of Envoy stat names."""
    if not isinstance(value, str) or not _VERSION.fullmatch(value) or len(value) > MAX_NAME \
            or value in (".", ".."):
        raise InputError(f"{argument}: must be a name of letters, digits, '.', '_', '-' and '+' "
                         f"(1-{MAX_NAME} characters; got {_shown(value)})")
    return value


def check_zk_path(value: object, argument: str) -> str:
    """An absolute ZooKeeper path such as ``/discovery/web/prod``: no empty, ``.`` or ``..``
    component (ZooKeeper refuses them, and the file store would leave its directory)."""
    if not isinstance(value, str) or not value:
        raise InputError(f"{argument}: is required: an absolute ZooKeeper path like /discovery/web/prod")
    if len(value) > MAX_PATH or not _PATH.fullmatch(value) \
            or any(part in (".", "..") for part in value.split("/")):
        raise InputError(f"{argument}: is not a ZooKeeper path like /discovery/web/prod (absolute, components "
                         f"of letters, digits and . _ : @ + -, never '.' or '..', at most {MAX_PATH} characters; "
                         f"got {_shown(value)})")
    return value


def check_ip(value: object, argument: str) -> str:
    """An IP address, normalised; a host name or an IPv6 scope is refused (Envoy's STATIC and
    EDS endpoints take plain addresses only, and refuse the whole update for one bad one)."""
    try:
        # Python takes an IPv6 scope (``::1%lo0``); Envoy refuses it ("malformed IP address").
        if not isinstance(value, str) or "%" in value:
            raise ValueError
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise InputError(f"{argument}: is not an IP address (got {_shown(value)})") from None


def check_port(value: object, argument: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_PORT:
        raise InputError(f"{argument}: is not a port from 1 to {MAX_PORT} (got {_shown(value)})")
    return value


def check_endpoint(value: object, argument: str) -> tuple[str, int]:
    """``host:port`` text (an IPv6 host in brackets, ``[::1]:8080``) as (IP, port)."""
    text = value if isinstance(value, str) else ""
    host, colon, port = text.rpartition(":")
    if not colon or not port.isdigit() or len(port) > 5:
        raise InputError(f"{argument}: is not host:port (got {_shown(value)})")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return check_ip(host, argument), check_port(int(port), argument)


def endpoint_text(host: str, port: int) -> str:
    """(host, port) as ``check_endpoint`` reads it back."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def check_weight(value: object, argument: str) -> float:
    """A member's weight: a finite number from 0 to MAX_MEMBER_WEIGHT."""
    try:
        if isinstance(value, bool):
            raise ValueError
        weight = float(value)  # type: ignore[arg-type]  # refused below when it is no number
    except (TypeError, ValueError):
        raise InputError(f"{argument}: is not a number (got {_shown(value)})") from None
    if not math.isfinite(weight) or not 0 <= weight <= MAX_MEMBER_WEIGHT:
        raise InputError(f"{argument}: must be a finite number from 0 to {MAX_MEMBER_WEIGHT:g} (got {_shown(value)})")
    return weight


def check_node_id(value: object, argument: str = "node id") -> str:
    """An Envoy's node id (or the cluster it names): 1-128 printable characters. It is a key
    in every replica's fleet record, a log field and a row in ``rollway status``."""
    if not isinstance(value, str) or not value or len(value) > MAX_NAME or _CONTROL.search(value):
        raise InputError(f"{argument}: must be 1-{MAX_NAME} printable characters (got {_shown(value)})")
    return value


def check_text(value: str, argument: str, limit: int = MAX_TEXT) -> str:
    """Free text from a client (a push's author or reason): bounded and printable."""
    if len(value) > limit or _CONTROL.search(value):
        raise InputError(f"{argument}: at most {limit} printable characters (no control characters)")
    return value


def printable(text: str) -> str:
    """``text`` with every control character escaped (``\\x1b``, ``\\n``): for logs and
    terminals, where a node id or a reason from the network must stay inert."""
    return _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


def read_bounded(path: str, limit: int, what: str = "file") -> bytes:
    """At most ``limit`` bytes of a file; more is refused (``/dev/urandom`` or a wrong file
    must not fill memory). Raises OSError or InputError."""
    with open(path, "rb") as handle:
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise InputError(f"{what} {path!r} is larger than {limit} bytes")
    return data


def decode_utf8(data: bytes, what: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise InputError(f"{what}: not UTF-8 text (byte {error.start})") from None
