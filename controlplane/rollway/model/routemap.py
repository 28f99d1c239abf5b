"""Route maps: what operators want, validated before anything is stored.

A route map (YAML or JSON) describes one service::

    service: web
    domains: [www.example.test]     # the Host names it serves (default ["*"]: every one)
    path_prefix: /                  # the paths it serves on them (default /)
    routing_id: {cookie: rw_rid, ttl_seconds: 86400}  # + header: x-device-id (cookie-less clients;
                                                      #   needs signing_key_id: the key is hashed with it)
    stages:
      - {name: canary, weight: 0.5, mode: rolling, serverset: /discovery/web/canary}
      - {name: prod, weight: 99.5, mode: rolling, serverset: /discovery/web/prod}
      - {name: mobile, weight: 0, mode: rolling,    # members as other writers write them
         serverset: {path: /discovery/web/mobile, format: party, version: path}}
      - name: legacy
        weight: 0
        mode: blue_green
        active: blue
        slots: {blue: {serverset: /discovery/web/legacy-blue}, green: {serverset: /discovery/web/legacy-green}}
    guard: {max_error_ratio: 0.05, min_requests: 500, action: halt}   # optional: the bad-build guard

A ``serverset`` is a path (Finagle members, version in ``metadata.version``) or a mapping
``{path, format: finagle | party | curator, version: metadata:<key> | payload:<key> | path}``
(``rollway.sources.member_formats``).

A rolling stage may carry its own ``guard``: the keys it names replace the service's (or the
defaults, without a service guard). No ``guard`` anywhere: no guard.

``parse_routemap(text)`` returns a ``RouteMap`` or raises ``RouteMapError`` whose message
names the field; a rejected map changes nothing anywhere.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field, replace
from typing import Any, NoReturn

import yaml

from rollway.inputs import InputError, check_name
from rollway.model.filter_config import Mode
from rollway.model.guard import Action, Guard
from rollway.sources.member_formats import ServersetSpec

NAME = re.compile(r"^[A-Za-z0-9._+-]{1,128}$")
# A Host as Envoy's virtual hosts match it: exact, a wildcard standing for a non-empty start
# (``*.example.test``) or end (``www.example.*``), or ``*`` alone; an optional port.
DOMAIN = re.compile(r"^(\*|\*[a-z0-9.-]*[a-z0-9]|[a-z0-9][a-z0-9.-]*\*|[a-z0-9]([a-z0-9.-]*[a-z0-9])?)(:[0-9]{1,5})?$")
# URL path characters but ';' and ',': the prefix becomes the cookies' Path attribute.
PATH_PREFIX = re.compile(r"^/[A-Za-z0-9._~!$&'()*+=:@%/-]{0,255}$")
MAX_DOMAINS = 32
TOKEN = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,128}$")


# Headers that cannot key a cookie-less client: the browser's own, and the ones Rollway reads
# or writes for every request.
RESERVED_HEADERS = frozenset({"cookie", "host", ":authority", "user-agent", "x-app-version", "x-rw-cluster",
                              "x-rw-refresh", "x-rw-override", "x-forwarded-for"})


class RouteMapError(ValueError):
    """A route map that cannot be accepted; the message starts with the field's path."""


@dataclass(frozen=True)
class Stage:
    name: str
    weight: float
    mode: Mode
    serverset: ServersetSpec | None = None           # rolling
    slots: dict[str, ServersetSpec] = field(default_factory=dict)  # blue-green: slot -> serverset
    active: str | None = None              # blue-green
    guard: Guard | None = None             # rolling: the service's guard, or this stage's override

    def serversets(self) -> dict[str, ServersetSpec]:
        """Watch key -> serverset (the stage itself, or one per blue-green slot)."""
        if self.mode is Mode.ROLLING:
            assert self.serverset is not None  # parse_routemap requires it of a rolling stage
            return {self.name: self.serverset}
        return {f"{self.name}/{slot}": path for slot, path in self.slots.items()}


@dataclass(frozen=True)
class RouteMap:
    service: str
    stages: tuple[Stage, ...]
    routing_id: dict[str, Any]
    version_cookie: str | None
    headers: dict[str, str]
    override: dict[str, Any] | None
    document: dict[str, Any]  # the normalised document, as stored
    stage_cookie: str | None = None
    domains: tuple[str, ...] = ("*",)
    path_prefix: str = "/"
    guard: Guard | None = None              # the service's (each rolling stage has its own, resolved)

    def placements(self) -> set[tuple[str, str]]:
        """Where the service lives: every (domain, path prefix) it claims. A route map that
        names neither claims nothing: its service keeps Envoys of its own (one service per
        Envoy, as before placements existed), so it collides with no other."""
        if "domains" not in self.document and "path_prefix" not in self.document:
            return set()
        return {(domain, self.path_prefix) for domain in self.domains}

    def cookie_names(self) -> set[str]:
        """The routing-id, version and stage cookies' names (defaults filled in)."""
        return {self.routing_id["cookie"], self.version_cookie or "rw_ver", self.stage_cookie or "rw_stage"}

    def canonical_json(self) -> str:
        return json.dumps(self.document, sort_keys=True, separators=(",", ":"))


def _fail(path: str, problem: str) -> NoReturn:
    raise RouteMapError(f"{path}: {problem}")


def _check_keys(obj: dict, allowed: set[str], required: set[str], path: str) -> None:
    for key in obj:
        if key not in allowed:
            _fail(f"{path}.{key}" if path else key, f"unknown key (allowed: {', '.join(sorted(allowed))})")
    for key in sorted(required):
        if key not in obj:
            _fail(f"{path}.{key}" if path else key, "is required")


def _name(value: Any, path: str) -> str:
    if not isinstance(value, str) or not NAME.match(value):
        _fail(path, "must be a name of letters, digits and . _ - + (1-128 characters)")
    return value


def _token(value: Any, path: str) -> str:
    if not isinstance(value, str) or not TOKEN.match(value):
        _fail(path, "must be a valid header/cookie name")
    return value.lower()


def _serverset(value: Any, path: str) -> ServersetSpec:
    """A path (Finagle members, version in metadata.version) or {path, format, version}."""
    try:
        return ServersetSpec.from_config(value, path)
    except InputError as error:
        raise RouteMapError(str(error)) from None


def _service(value: Any, path: str) -> str:
    """The service name: one rule with the stores' (a path component, never . or ..)."""
    try:
        return check_name(value, path)
    except InputError as error:
        raise RouteMapError(str(error)) from None


def _number(value: Any, path: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        _fail(path, "must be a number >= 0")
    return float(value)


def _positive_int(value: Any, path: str, maximum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= maximum:
        _fail(path, f"must be an integer between 1 and {maximum}")
    return value


MAX_DOCUMENT = 64 * 1024    # bytes of route map text: real ones are a few hundred
MAX_STAGES = 32
MAX_DEPTH = 16              # nesting of mappings and lists: a real route map needs 5


class _StrictLoader(yaml.SafeLoader):
    """YAML for documents from clients (Validate needs no token):

    - no aliases: a few kilobytes of nested ``*refs`` expand to gigabytes once the document
      is serialized;
    - nesting at most MAX_DEPTH, counted while composing, before anything recurses deeper
      (5,000 levels of ``[[[...`` exhausted Python's stack);
    - no key twice in one mapping: YAML would keep the last silently, so ``service: probe``
      then ``service: web`` read as ``web``."""

    def __init__(self, stream):
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            raise RouteMapError("document: YAML aliases (*name) are not allowed in a route map")
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                mark = self.peek_event().start_mark
                raise RouteMapError(f"document: nested more than {MAX_DEPTH} deep (line {mark.line + 1})")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node, deep=False):
        seen: set = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                duplicate = key in seen
                seen.add(key)
            except TypeError:   # an unhashable key: SafeLoader refuses it below
                continue
            if duplicate:
                raise RouteMapError(f"{str(key)[:64]}: appears twice in one mapping (line {key_node.start_mark.line + 1})")
        return super().construct_mapping(node, deep=deep)


def load_document(text: str | bytes) -> dict:
    """YAML or JSON text to a document (JSON is YAML), at most MAX_DOCUMENT bytes."""
    size = len(text) if isinstance(text, bytes) else len(text.encode("utf-8", errors="replace"))
    if size > MAX_DOCUMENT:
        raise RouteMapError(f"document: {size} bytes, more than the {MAX_DOCUMENT} a route map may have")
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    try:
        doc = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError as error:
        raise RouteMapError(f"document: not valid YAML/JSON: {error}") from None
    if not isinstance(doc, dict):
        raise RouteMapError("document: must be a mapping with service and stages")
    return doc


def parse_routemap(text: str | bytes | dict) -> RouteMap:
    """The route map in ``text`` (YAML or JSON, or a loaded document), checked field by
    field (RouteMapError names the first bad field) and normalised: defaults filled in,
    as stored and as the filter config is built from."""
    doc = text if isinstance(text, dict) else load_document(text)
    _check_keys(doc, {"service", "domains", "path_prefix", "routing_id", "version_cookie", "stage_cookie",
                      "headers", "override", "guard", "stages"}, {"service", "stages"}, "")
    service = _service(doc["service"], "service")
    out: dict[str, Any] = {"service": service}
    domains = _domains(doc["domains"]) if "domains" in doc else ("*",)
    path_prefix = _path_prefix(doc["path_prefix"]) if "path_prefix" in doc else "/"
    if "domains" in doc:
        out["domains"] = list(domains)
    if "path_prefix" in doc:
        out["path_prefix"] = path_prefix
    routing_id = _routing_id(doc["routing_id"] if "routing_id" in doc else {})
    if path_prefix != "/":
        # A service under a path prefix shares its domain with the one at / (an admin app
        # beside the page): the browser sends the page's cookies to /admin too, so the
        # prefix's cookies get names of their own (their Path is the prefix as well).
        named = doc.get("routing_id", {}) if isinstance(doc.get("routing_id"), dict) else {}
        suffix = service.lower()
        if "cookie" not in named:
            routing_id["cookie"] = _token(f"rw_rid_{suffix}", "routing_id.cookie")
        doc = {**doc, "version_cookie": doc.get("version_cookie", f"rw_ver_{suffix}"),
               "stage_cookie": doc.get("stage_cookie", f"rw_stage_{suffix}")}
    out["routing_id"] = routing_id
    version_cookie, stage_cookie = _cookies(doc, routing_id["cookie"])
    if version_cookie is not None:
        out["version_cookie"] = version_cookie
    if stage_cookie is not None:
        out["stage_cookie"] = stage_cookie
    headers: dict[str, str] = {}
    if "headers" in doc:
        headers = out["headers"] = _headers(doc["headers"])
    if routing_id.get("header") in {h.lower() for h in headers.values()}:
        _fail("routing_id.header", f"{routing_id['header']!r} is one of this map's own headers")
    override: dict[str, Any] | None = None
    if "override" in doc:
        override = out["override"] = _override(doc["override"])
    guard: Guard | None = None
    if "guard" in doc:
        guard = _guard(doc["guard"], "guard", Guard())
        out["guard"] = guard.to_json()
    stages, normalised = _stages(doc["stages"], guard)
    out["stages"] = normalised
    return RouteMap(service, tuple(stages), routing_id, version_cookie, headers, override, out, stage_cookie,
                    domains, path_prefix, guard)


def _domains(raw: Any) -> tuple[str, ...]:
    if not isinstance(raw, list) or not raw:
        _fail("domains", "must be a non-empty list of host names")
    if len(raw) > MAX_DOMAINS:
        _fail("domains", f"{len(raw)} domains, more than the {MAX_DOMAINS} allowed")
    domains: list[str] = []
    for i, value in enumerate(raw):
        if not isinstance(value, str) or len(value) > 253 or not DOMAIN.match(value.lower()):
            _fail(f"domains[{i}]", f"{str(value)[:80]!r} is not a host name as Envoy matches one "
                                   "(www.example.test, *.example.test, www.example.*, *; an optional :port)")
        if value.lower() in domains:
            _fail(f"domains[{i}]", f"{value!r} is listed twice")
        domains.append(value.lower())
    return tuple(domains)


def _path_prefix(raw: Any) -> str:
    if not isinstance(raw, str) or not PATH_PREFIX.match(raw):
        _fail("path_prefix", f"{str(raw)[:80]!r} must start with / and hold only URL path characters "
                             "(at most 256, no query or fragment)")
    return raw.rstrip("/") or "/"       # /admin and /admin/ claim the same paths


def collisions(routemap: RouteMap, others: list[RouteMap]) -> list[str]:
    """What ``routemap`` claims that another service already has: one line per service."""
    mine = routemap.placements()
    found = []
    for other in others:
        if other.service == routemap.service:
            continue
        shared = sorted(mine & other.placements())
        if shared:
            where = ", ".join(f"{domain}{prefix if prefix != '/' else ''}" for domain, prefix in shared[:5])
            found.append(f"service {routemap.service!r} and service {other.service!r} both claim {where}")
            continue
        # One domain, one prefix inside the other's (/ and /admin): the browser sends the
        # outer service's cookies to the inner one's paths, so no name may be shared.
        nested = sorted(domain for domain, prefix in mine for other_domain, other_prefix in other.placements()
                        if domain == other_domain and (_within(prefix, other_prefix) or _within(other_prefix, prefix)))
        clash = sorted(routemap.cookie_names() & other.cookie_names())
        if nested and clash:
            found.append(f"service {routemap.service!r} and service {other.service!r} share {nested[0]} and "
                         f"cookie {clash[0]!r}: name the cookies apart")
    return found


def _within(prefix: str, outer: str) -> bool:
    """Whether the paths under ``prefix`` are under ``outer`` too."""
    return outer == "/" or prefix == outer or prefix.startswith(outer + "/")


def _routing_id(rid: Any) -> dict[str, Any]:
    routing_id: dict[str, Any] = {"cookie": "rw_rid", "ttl_seconds": 86400}
    if not isinstance(rid, dict):
        _fail("routing_id", "must be a mapping")
    _check_keys(rid, {"cookie", "ttl_seconds", "secure", "signing_key_id", "header"}, set(), "routing_id")
    if "cookie" in rid:
        routing_id["cookie"] = _token(rid["cookie"], "routing_id.cookie")
    if "ttl_seconds" in rid:
        routing_id["ttl_seconds"] = _positive_int(rid["ttl_seconds"], "routing_id.ttl_seconds", 366 * 86400)
    if "secure" in rid:
        if not isinstance(rid["secure"], bool):
            _fail("routing_id.secure", "must be true or false")
        routing_id["secure"] = rid["secure"]
    if "signing_key_id" in rid:
        routing_id["signing_key_id"] = _name(rid["signing_key_id"], "routing_id.signing_key_id")
    if "header" in rid:
        header = _token(rid["header"], "routing_id.header").lower()
        if header in RESERVED_HEADERS:
            _fail("routing_id.header", f"{header!r} is not a client's own key (a header the browser or Rollway sets)")
        if "signing_key_id" not in routing_id:
            _fail("routing_id.header", "needs routing_id.signing_key_id: a client's key is hashed with the service's "
                  "secret, so no client can pick its stage or version by choosing its key")
        routing_id["header"] = header
    return routing_id


def _cookies(doc: dict, rid_cookie: str) -> tuple[str | None, str | None]:
    """(version_cookie, stage_cookie): each optional, and no two cookies share a name."""
    version_cookie = stage_cookie = None
    if "version_cookie" in doc:
        version_cookie = _token(doc["version_cookie"], "version_cookie")
        if version_cookie == rid_cookie:
            _fail("version_cookie", "must differ from routing_id.cookie")
    if "stage_cookie" in doc:
        stage_cookie = _token(doc["stage_cookie"], "stage_cookie")
        if stage_cookie in (rid_cookie, version_cookie or "rw_ver"):
            _fail("stage_cookie", "must differ from routing_id.cookie and version_cookie")
    return version_cookie, stage_cookie


def _headers(raw: Any) -> dict[str, str]:
    if not isinstance(raw, dict):
        _fail("headers", "must be a mapping")
    _check_keys(raw, {"app_version", "refresh", "cluster", "override"}, set(), "headers")
    return {k: _token(v, f"headers.{k}") for k, v in raw.items()}


def _override(raw: Any) -> dict[str, Any]:
    if not isinstance(raw, dict):
        _fail("override", "must be a mapping")
    _check_keys(raw, {"key_id", "max_ttl_seconds"}, {"key_id"}, "override")
    override: dict[str, Any] = {"key_id": _name(raw["key_id"], "override.key_id")}
    if "max_ttl_seconds" in raw:
        override["max_ttl_seconds"] = _positive_int(raw["max_ttl_seconds"], "override.max_ttl_seconds", 7 * 86400)
    return override


MIN_GUARD_REQUESTS = 50         # fewer is no sample: a z test on a handful of requests means nothing
MAX_GUARD_REQUESTS = 100_000_000


def _guard(raw: Any, path: str, inherited: Guard) -> Guard:
    """A ``guard`` mapping; the keys it leaves out come from ``inherited`` (the service's
    guard for a stage's override, the defaults for the service's)."""
    if not isinstance(raw, dict):
        _fail(path, "must be a mapping with max_error_ratio, min_requests, action")
    _check_keys(raw, {"max_error_ratio", "min_requests", "action"}, set(), path)
    ratio, minimum, action = inherited.max_error_ratio, inherited.min_requests, inherited.action
    if "max_error_ratio" in raw:
        value = raw["max_error_ratio"]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1:
            _fail(f"{path}.max_error_ratio", f"must be a number between 0 and 1, exclusive (got {str(value)[:40]!r}): "
                  "the excess 5xx ratio over the baseline's that halts a version")
        ratio = float(value)
    if "min_requests" in raw:
        value = raw["min_requests"]
        if isinstance(value, bool) or not isinstance(value, int) or not MIN_GUARD_REQUESTS <= value <= MAX_GUARD_REQUESTS:
            _fail(f"{path}.min_requests", f"must be an integer between {MIN_GUARD_REQUESTS} and {MAX_GUARD_REQUESTS} "
                  f"(got {str(value)[:40]!r})")
        minimum = value
    if "action" in raw:
        if raw["action"] not in {a.value for a in Action}:
            _fail(f"{path}.action", f"must be halt or rollback (got {str(raw['action'])[:40]!r})")
        action = Action(raw["action"])
    return Guard(ratio, minimum, action)


def _stages(raw_stages: Any, guard: Guard | None = None) -> tuple[list[Stage], list[dict[str, Any]]]:
    """The stages, and their normalised documents, in order; each rolling stage with its
    guard resolved (its override over the service's ``guard``)."""
    if not isinstance(raw_stages, list) or not raw_stages:
        _fail("stages", "must be a non-empty list")
    if len(raw_stages) > MAX_STAGES:
        _fail("stages", f"{len(raw_stages)} stages, more than the {MAX_STAGES} allowed")
    stages: list[Stage] = []
    normalised: list[dict[str, Any]] = []
    for i, raw in enumerate(raw_stages):
        path = f"stages[{i}]"
        if not isinstance(raw, dict):
            _fail(path, "must be a mapping")
        _check_keys(raw, {"name", "weight", "mode", "serverset", "slots", "active", "guard"},
                    {"name", "weight", "mode"}, path)
        name = _name(raw["name"], f"{path}.name")
        if any(s.name == name for s in stages):
            _fail(f"{path}.name", f"duplicate stage {name!r}")
        weight = _number(raw["weight"], f"{path}.weight")
        mode = raw["mode"]
        if mode == "rolling":
            stage = _rolling_stage(raw, path, name, weight)
            normalised.append({"name": name, "weight": weight, "mode": mode, "serverset": stage.serverset.to_json() if stage.serverset else None})
            if "guard" in raw:
                stage = replace(stage, guard=_guard(raw["guard"], f"{path}.guard", guard or Guard()))
                normalised[-1]["guard"] = stage.guard.to_json() if stage.guard else None
            else:
                stage = replace(stage, guard=guard)
        elif mode == "blue_green":
            if "guard" in raw:
                _fail(f"{path}.guard", "only rolling stages have a guard (a blue-green switch moves everyone at "
                      "once, and switching back is the operator's)")
            stage = _blue_green_stage(raw, path, name, weight)
            normalised.append({"name": name, "weight": weight, "mode": mode, "active": stage.active,
                               "slots": {s: {"serverset": p.to_json()} for s, p in stage.slots.items()}})
        else:
            _fail(f"{path}.mode", f"must be rolling or blue_green (got {mode!r})")
        stages.append(stage)
    if sum(s.weight for s in stages) <= 0:
        _fail("stages", "every stage has weight 0")
    return stages, normalised


def _rolling_stage(raw: dict, path: str, name: str, weight: float) -> Stage:
    for key in ("slots", "active"):
        if key in raw:
            _fail(f"{path}.{key}", "only blue_green stages have slots")
    return Stage(name, weight, Mode.ROLLING, serverset=_serverset(raw.get("serverset"), f"{path}.serverset"))


def _blue_green_stage(raw: dict, path: str, name: str, weight: float) -> Stage:
    if "serverset" in raw:
        _fail(f"{path}.serverset", "a blue_green stage has one serverset per slot, under slots")
    slots = raw.get("slots")
    if not isinstance(slots, dict) or len(slots) != 2:
        _fail(f"{path}.slots", "must name exactly two slots, each with a serverset")
    slot_paths = {}
    for slot, spec in slots.items():
        _name(slot, f"{path}.slots.{slot}")
        if not isinstance(spec, dict):
            _fail(f"{path}.slots.{slot}", "must be a mapping with serverset")
        _check_keys(spec, {"serverset"}, set(), f"{path}.slots.{slot}")
        slot_paths[slot] = _serverset(spec.get("serverset"), f"{path}.slots.{slot}.serverset")
    active = raw.get("active")
    if active is None:
        _fail(f"{path}.active", "is required: which slot serves the stage")
    if active not in slot_paths:
        _fail(f"{path}.active", f"names no slot of this stage ({active!r})")
    return Stage(name, weight, Mode.BLUE_GREEN, slots=slot_paths, active=active)
