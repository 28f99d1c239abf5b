"""How serverset members are written, and where each member's version comes from.

A route map's stage names its serverset as a path (Finagle members, version in
``metadata.version``) or as a mapping::

    serverset: {path: /discovery/web/prod, format: party, version: path}

Formats (what real announcers write):

- ``finagle``: Finagle/Aurora JSON, ``{"serviceEndpoint": {"host", "port"}, "status",
  "metadata": {...}}`` in znodes named ``member_NNNNNNNNNN``. Aurora's announcer writes no
  ``metadata`` map: use ``version: path``.
- ``party``: kazoo's ``Party`` (``<uuid hex>__party__``) and ``ShallowParty``
  (``<uuid hex>-<identifier>``; Pinterest's kingpin), the data the text ``host:port``. Weight
  1, always ALIVE: the znode lives as long as its member.
- ``curator``: Apache Curator's service discovery, ``{"name", "id", "address", "port",
  "payload", "enabled", ...}`` in znodes named by the instance id.

Version sources:

- ``metadata:<key>``: the Finagle document's ``metadata[key]``;
- ``payload:<key>``: the Curator document's ``payload[key]``;
- ``path``: the serverset holds one child path per version, ``<path>/<version>/<members>``.

Reading never fails: a member a format cannot read is skipped with the reason (and counted
by the view). Every rule for the values themselves is ``rollway.inputs``'s, as for the filter.
"""

from __future__ import annotations

import enum
import json
import math
import re
import time
import uuid
from dataclasses import dataclass

from rollway.inputs import (
    InputError,
    check_endpoint,
    check_ip,
    check_port,
    check_version,
    check_weight,
    check_zk_path,
    endpoint_text,
)

MAX_MEMBER_BYTES = 64 * 1024   # a member document; real ones are ~200 bytes
# A Finagle member a deploy tool is draining (``rollway serverset drain``): out of capacity,
# still listed to Envoy (as DRAINING) so its open requests are seen until it goes.
DRAINING = "STOPPING"
DEFAULT_VERSION = "metadata:version"


class Format(enum.Enum):
    FINAGLE = "finagle"
    PARTY = "party"
    CURATOR = "curator"


# The version sources each format can carry: a party member is bare host:port text.
_SOURCES = {Format.FINAGLE: ("metadata", "path"), Format.PARTY: ("path",), Format.CURATOR: ("payload", "path")}
_KEY = re.compile(r"[A-Za-z0-9._@-]{1,64}")
_PARTY = re.compile(r"[0-9a-f]{32}__party__")           # kazoo Party
_SHALLOW_PARTY = re.compile(r"[0-9a-f]{32}-(.+)")       # kazoo ShallowParty: uuid hex, '-', identifier


@dataclass(frozen=True)
class Member:
    host: str
    port: int
    version: str
    weight: float
    status: str


@dataclass(frozen=True)
class ServersetSpec:
    """Where a stage's members are and how to read them."""
    path: str
    format: Format = Format.FINAGLE
    version: str = DEFAULT_VERSION        # "metadata:<key>" | "payload:<key>" | "path"

    @property
    def by_path(self) -> bool:
        """Versions are child paths (``<path>/<version>/<member>``)."""
        return self.version == "path"

    @property
    def key(self) -> str:
        """The metadata or payload key that holds the version ("" for ``path``)."""
        return self.version.partition(":")[2]

    @property
    def plain(self) -> bool:
        """What a plain path in a route map means (and how it is written back)."""
        return self.format is Format.FINAGLE and self.version == DEFAULT_VERSION

    def to_json(self) -> str | dict:
        return self.path if self.plain else {"path": self.path, "format": self.format.value, "version": self.version}

    def __str__(self) -> str:
        return self.path if self.plain else f"{self.path} ({self.format.value}, version from {self.version})"

    @classmethod
    def of(cls, value: ServersetSpec | str) -> ServersetSpec:
        return value if isinstance(value, ServersetSpec) else cls(check_zk_path(value, "serverset"))

    @classmethod
    def from_config(cls, raw: object, where: str) -> ServersetSpec:
        """A route map's ``serverset``: a path, or {path, format, version}; InputError naming
        the field otherwise."""
        if raw is None or isinstance(raw, str):
            return cls(check_zk_path(raw, where))
        if not isinstance(raw, dict):
            raise InputError(f"{where}: must be a ZooKeeper path or a mapping {{path, format, version}}")
        unknown = sorted(str(k) for k in raw if k not in ("path", "format", "version"))
        if unknown:
            raise InputError(f"{where}: unknown key(s) {', '.join(unknown)} (path, format, version)")
        path = check_zk_path(raw.get("path"), f"{where}.path")
        try:
            fmt = Format(raw.get("format", "finagle"))
        except ValueError:
            raise InputError(f"{where}.format: must be one of finagle, party, curator "
                             f"(got {str(raw.get('format'))[:32]!r})") from None
        return cls(path, fmt, check_version_source(raw.get("version", default_version_source(fmt)), fmt,
                                                   f"{where}.version"))


def default_version_source(fmt: Format) -> str:
    return {Format.FINAGLE: DEFAULT_VERSION, Format.PARTY: "path", Format.CURATOR: "payload:version"}[fmt]


def check_version_source(value: object, fmt: Format, where: str) -> str:
    """``metadata:<key>``, ``payload:<key>`` or ``path``, as ``fmt`` can carry it."""
    if not isinstance(value, str):
        raise InputError(f"{where}: must be metadata:<key>, payload:<key> or path")
    kind, colon, key = value.partition(":")
    if kind == "path" and not colon:
        pass
    elif kind in ("metadata", "payload") and colon and _KEY.fullmatch(key):
        pass
    else:
        raise InputError(f"{where}: must be metadata:<key>, payload:<key> or path, a key of letters, digits "
                         f"and . _ @ - (got {value[:80]!r})")
    if kind not in _SOURCES[fmt]:
        carried = " or ".join(f"{k}:<key>" if k != "path" else "path" for k in _SOURCES[fmt])
        raise InputError(f"{where}: a {fmt.value} member carries its version as {carried}, not {value!r}")
    return value


# -- reading ----------------------------------------------------------------------------------

def accepts(spec: ServersetSpec, name: str) -> bool:
    """Whether a child named ``name`` is a member in this format at all (a Finagle serverset's
    other children, a lock or a sibling's node, are not members and not counted)."""
    if spec.format is Format.FINAGLE:
        return name.startswith("member_")
    if spec.format is Format.PARTY:
        return bool(_PARTY.fullmatch(name) or _SHALLOW_PARTY.fullmatch(name))
    return not name.startswith(".")


def read_member(spec: ServersetSpec, name: str, data: bytes, version: str | None = None) -> tuple[Member | None, str | None]:
    """(member, None) or (None, why it was skipped). ``version`` is the child path's name
    where the spec reads versions by path."""
    if len(data) > MAX_MEMBER_BYTES:
        return None, f"more than {MAX_MEMBER_BYTES} bytes"
    try:
        if spec.format is Format.PARTY:
            return _party(name, data, version), None
        doc = _json_object(data)
        if spec.format is Format.CURATOR:
            return _curator(spec, doc, version), None
        return _finagle(spec, doc, version), None
    except InputError as error:
        return None, str(error)


def _json_object(data: bytes) -> dict:
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise InputError("not JSON") from None
    if not isinstance(doc, dict):
        raise InputError("not a JSON object")
    return doc


def _mapping(doc: dict, key: str, required: bool = False) -> dict:
    value = doc.get(key)
    if value is None and not required:
        return {}
    if not isinstance(value, dict):
        raise InputError(f"{key} {'missing' if value is None else 'invalid'}")
    return value


def _version(spec: ServersetSpec, source: dict, where: str, by_path: str | None) -> str:
    if spec.by_path:
        return check_version(by_path, "version path")
    return check_version(source.get(spec.key), f"{where}.{spec.key}")


def _finagle(spec: ServersetSpec, doc: dict, by_path: str | None) -> Member:
    endpoint = _mapping(doc, "serviceEndpoint", required=True)
    status = doc.get("status", "ALIVE")
    if not isinstance(status, str):
        raise InputError("status invalid")
    metadata = _mapping(doc, "metadata")
    host = check_ip(endpoint.get("host"), "serviceEndpoint.host")
    port = check_port(endpoint.get("port"), "serviceEndpoint.port")
    version = _version(spec, metadata, "metadata", by_path)
    return Member(host, port, version, check_weight(metadata.get("weight", "1"), "metadata.weight"), status)


def _curator(spec: ServersetSpec, doc: dict, by_path: str | None) -> Member:
    payload = _mapping(doc, "payload")
    host = check_ip(doc.get("address"), "address")
    port = check_port(doc.get("port"), "port")
    version = _version(spec, payload, "payload", by_path)
    weight = check_weight(payload.get("weight", 1), "payload.weight")
    # Curator's ServiceInstance.enabled (4.x+): a disabled instance is registered, not serving.
    return Member(host, port, version, weight, "ALIVE" if doc.get("enabled", True) is not False else "DISABLED")


def _party(name: str, data: bytes, by_path: str | None) -> Member:
    try:
        text = data.decode("ascii").strip()
    except UnicodeDecodeError:
        raise InputError("not host:port text") from None
    shallow = _SHALLOW_PARTY.fullmatch(name)
    if not text and shallow:          # a ShallowParty member carries its identifier in its name too
        text = shallow.group(1)
    host, port = check_endpoint(text, "host:port text")
    return Member(host, port, check_version(by_path, "version path"), 1.0, "ALIVE")


# -- writing (the announcer's side) -------------------------------------------------------------

@dataclass(frozen=True)
class Announcement:
    """What an announcer creates for one member: the path its node goes under, the node's
    name (None: a ``member_`` sequential node) and its data."""
    path: str
    name: str | None
    data: bytes


def member_json(host: str, port: int, version: str | None, weight: float = 1.0, status: str = "ALIVE",
                shard: int = 0, key: str = "version") -> bytes:
    """The full Finagle member document (writers always emit every field); without a version
    the Aurora announcer's document, with no ``metadata`` unless a weight needs one."""
    weight_text = str(int(weight)) if math.isfinite(weight) and float(weight).is_integer() else str(weight)
    doc: dict = {"serviceEndpoint": {"host": host, "port": port}, "additionalEndpoints": {}, "status": status,
                 "shard": shard}
    if version is not None:
        doc["metadata"] = {key: version, "weight": weight_text}
    elif weight != 1.0:
        doc["metadata"] = {"weight": weight_text}
    return json.dumps(doc).encode()


def announcement(spec: ServersetSpec, host: str, port: int, version: str, weight: float = 1.0) -> Announcement:
    """The member a host running ``version`` at host:port announces in ``spec``'s format,
    refused (InputError) where the reader would skip it: nothing is announced that no control
    plane would count."""
    host, port, version = check_ip(host, "host"), check_port(port, "port"), check_version(version)
    check_weight(weight, "weight")
    path = f"{spec.path}/{version}" if spec.by_path else spec.path
    in_doc = None if spec.by_path else version
    if spec.format is Format.PARTY:
        if weight != 1.0:
            raise InputError("weight: a party member weighs 1 (its data is host:port only)")
        shown = endpoint_text(host, port)
        made = Announcement(path, f"{uuid.uuid4().hex}-{shown}", shown.encode())
    elif spec.format is Format.CURATOR:
        instance = str(uuid.uuid4())
        payload: dict[str, object] = {spec.key: in_doc} if in_doc is not None else {}
        if weight != 1.0:
            payload["weight"] = weight
        made = Announcement(path, instance, json.dumps({
            "name": spec.path.rsplit("/", 1)[-1], "id": instance, "address": host, "port": port, "sslPort": None,
            "payload": payload or None, "registrationTimeUTC": int(time.time() * 1000), "serviceType": "DYNAMIC",
            "uriSpec": None, "enabled": True}).encode())
    else:
        made = Announcement(path, None, member_json(host, port, in_doc, weight, key=spec.key or "version"))
    member, why = read_member(spec, made.name or "member_0000000000", made.data, version if spec.by_path else None)
    if member is None:
        raise InputError(why or "member refused")
    return made
