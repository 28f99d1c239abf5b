"""Route maps: what operators want, validated before anything is stored.

A route map (YAML or JSON) describes one service::

    service: web
    routing_id: {cookie: rw_rid, ttl_seconds: 86400}
    stages:
      - {name: canary, weight: 0.5, mode: rolling, serverset: /discovery/web/canary}
      - {name: prod, weight: 99.5, mode: rolling, serverset: /discovery/web/prod}
      - name: legacy
        weight: 0
        mode: blue_green
        active: blue
        slots: {blue: {serverset: /discovery/web/legacy-blue}, green: {serverset: /discovery/web/legacy-green}}

``parse_routemap(text)`` returns a ``RouteMap`` or raises ``RouteMapError`` whose message
names the field; a rejected map changes nothing anywhere.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

import yaml

from rollway.inputs import InputError, check_name, check_zk_path
from rollway.model.filter_config import Mode

NAME = re.compile(r"^[A-Za-z0-9._+-]{1,128}$")
TOKEN = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,128}$")


class RouteMapError(ValueError):
    """A route map that cannot be accepted; the message starts with the field's path."""


@dataclass(frozen=True)
class Stage:
    name: str
    weight: float
    mode: Mode
    serverset: str | None = None           # rolling
    slots: dict[str, str] = field(default_factory=dict)  # blue-green: slot -> serverset
    active: str | None = None              # blue-green

    def serversets(self) -> dict[str, str]:
        """Watch key -> serverset path (the stage itself, or one per blue-green slot)."""
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

    def canonical_json(self) -> str:
        return json.dumps(self.document, sort_keys=True, separators=(",", ":"))


def _fail(path: str, problem: str):
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


def _zk_path(value: Any, path: str) -> str:
    try:
        return check_zk_path(value, path)
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
    doc = text if isinstance(text, dict) else load_document(text)
    _check_keys(doc, {"service", "routing_id", "version_cookie", "stage_cookie", "headers", "override", "stages"},
                {"service", "stages"}, "")
    service = _service(doc["service"], "service")
    out: dict[str, Any] = {"service": service}

    routing_id: dict[str, Any] = {"cookie": "rw_rid", "ttl_seconds": 86400}
    if "routing_id" in doc:
        rid = doc["routing_id"]
        if not isinstance(rid, dict):
            _fail("routing_id", "must be a mapping")
        _check_keys(rid, {"cookie", "ttl_seconds", "secure", "signing_key_id"}, set(), "routing_id")
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
    out["routing_id"] = routing_id

    version_cookie = None
    if "version_cookie" in doc:
        version_cookie = _token(doc["version_cookie"], "version_cookie")
        if version_cookie == routing_id["cookie"]:
            _fail("version_cookie", "must differ from routing_id.cookie")
        out["version_cookie"] = version_cookie

    stage_cookie = None
    if "stage_cookie" in doc:
        stage_cookie = _token(doc["stage_cookie"], "stage_cookie")
        if stage_cookie in (routing_id["cookie"], version_cookie or "rw_ver"):
            _fail("stage_cookie", "must differ from routing_id.cookie and version_cookie")
        out["stage_cookie"] = stage_cookie

    headers: dict[str, str] = {}
    if "headers" in doc:
        if not isinstance(doc["headers"], dict):
            _fail("headers", "must be a mapping")
        _check_keys(doc["headers"], {"app_version", "refresh", "cluster", "override"}, set(), "headers")
        headers = {k: _token(v, f"headers.{k}") for k, v in doc["headers"].items()}
        out["headers"] = headers

    override: dict[str, Any] | None = None
    if "override" in doc:
        ov = doc["override"]
        if not isinstance(ov, dict):
            _fail("override", "must be a mapping")
        _check_keys(ov, {"key_id", "max_ttl_seconds"}, {"key_id"}, "override")
        override = {"key_id": _name(ov["key_id"], "override.key_id")}
        if "max_ttl_seconds" in ov:
            override["max_ttl_seconds"] = _positive_int(ov["max_ttl_seconds"], "override.max_ttl_seconds", 7 * 86400)
        out["override"] = override

    raw_stages = doc["stages"]
    if not isinstance(raw_stages, list) or not raw_stages:
        _fail("stages", "must be a non-empty list")
    if len(raw_stages) > MAX_STAGES:
        _fail("stages", f"{len(raw_stages)} stages, more than the {MAX_STAGES} allowed")
    stages: list[Stage] = []
    seen: set[str] = set()
    normalised = []
    for i, raw in enumerate(raw_stages):
        path = f"stages[{i}]"
        if not isinstance(raw, dict):
            _fail(path, "must be a mapping")
        _check_keys(raw, {"name", "weight", "mode", "serverset", "slots", "active"}, {"name", "weight", "mode"}, path)
        name = _name(raw["name"], f"{path}.name")
        if name in seen:
            _fail(f"{path}.name", f"duplicate stage {name!r}")
        seen.add(name)
        weight = _number(raw["weight"], f"{path}.weight")
        mode = raw["mode"]
        if mode == "rolling":
            for key in ("slots", "active"):
                if key in raw:
                    _fail(f"{path}.{key}", "only blue_green stages have slots")
            serverset = _zk_path(raw.get("serverset"), f"{path}.serverset")
            stages.append(Stage(name, weight, Mode.ROLLING, serverset=serverset))
            normalised.append({"name": name, "weight": weight, "mode": mode, "serverset": serverset})
        elif mode == "blue_green":
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
                slot_paths[slot] = _zk_path(spec.get("serverset"), f"{path}.slots.{slot}.serverset")
            active = raw.get("active")
            if active is None:
                _fail(f"{path}.active", "is required: which slot serves the stage")
            if active not in slot_paths:
                _fail(f"{path}.active", f"names no slot of this stage ({active!r})")
            stages.append(Stage(name, weight, Mode.BLUE_GREEN, slots=slot_paths, active=active))
            normalised.append({"name": name, "weight": weight, "mode": mode, "active": active,
                               "slots": {s: {"serverset": p} for s, p in slot_paths.items()}})
        else:
            _fail(f"{path}.mode", f"must be rolling or blue_green (got {mode!r})")
    if sum(s.weight for s in stages) <= 0:
        _fail("stages", "every stage has weight 0")
    out["stages"] = normalised
    return RouteMap(service, tuple(stages), routing_id, version_cookie, headers, override, out, stage_cookie)
