"""A slow, pure-Python reference of Rollway's routing rules: the test oracle.

Written from design.md and the rules documented in native/include/rollway/router.h, not
translated from the C++. It is used only by tests, to check that the core decides exactly
the same way; nothing in the product imports it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
from dataclasses import dataclass, field

import mmh3

MASK64 = (1 << 64) - 1
TOKEN_SKEW = 300


def fmix64(k: int) -> int:
    k ^= k >> 33
    k = (k * 0xFF51AFD7ED558CCD) & MASK64
    k ^= k >> 33
    k = (k * 0xC4CEB9FE1A85EC53) & MASK64
    k ^= k >> 33
    return k


def unit_interval(bits: int) -> float:
    return ((bits >> 12) + 0.5) * 2.0**-52


def hash128(data: bytes) -> tuple[int, int]:
    digest = mmh3.hash128(data, 0, x64arch=True, signed=False)
    return digest & MASK64, digest >> 64


def _rotl(x: int, b: int) -> int:
    return ((x << b) | (x >> (64 - b))) & MASK64


def siphash24(key: bytes, message: bytes) -> int:
    k0 = int.from_bytes(key[:8], "little")
    k1 = int.from_bytes(key[8:16], "little")
    v = [0x736F6D6570736575 ^ k0, 0x646F72616E646F6D ^ k1,
         0x6C7967656E657261 ^ k0, 0x7465646279746573 ^ k1]

    def rounds(n: int) -> None:
        for _ in range(n):
            v[0] = (v[0] + v[1]) & MASK64; v[1] = _rotl(v[1], 13); v[1] ^= v[0]; v[0] = _rotl(v[0], 32)
            v[2] = (v[2] + v[3]) & MASK64; v[3] = _rotl(v[3], 16); v[3] ^= v[2]
            v[0] = (v[0] + v[3]) & MASK64; v[3] = _rotl(v[3], 21); v[3] ^= v[0]
            v[2] = (v[2] + v[1]) & MASK64; v[1] = _rotl(v[1], 17); v[1] ^= v[2]; v[2] = _rotl(v[2], 32)

    full = len(message) - len(message) % 8
    for i in range(0, full, 8):
        m = int.from_bytes(message[i:i + 8], "little")
        v[3] ^= m
        rounds(2)
        v[0] ^= m
    last = (len(message) & 0xFF) << 56
    last |= int.from_bytes(message[full:], "little")
    v[3] ^= last
    rounds(2)
    v[0] ^= last
    v[2] ^= 0xFF
    rounds(4)
    return v[0] ^ v[1] ^ v[2] ^ v[3]


def token_key(secret: bytes) -> bytes:
    return hashlib.sha256(b"rollway-routing-id-v1:" + secret).digest()[:16]


def mint(now: int, random_bits: int, secret: bytes | None) -> str:
    issued = min(max(int(now), 0), 0xFFFFFFFF)
    body = f"1{issued:08x}{random_bits & MASK64:016x}"
    if secret is None:
        return body
    return body + f"{siphash24(token_key(secret), body.encode()):016x}"


HEX = set("0123456789abcdef")


def parse_token(value: str | None, now: int, ttl: int, secret: bytes | None) -> tuple[str, str | None]:
    """(status, routing key)."""
    if not value:
        return "absent", None
    if len(value) not in (25, 41) or value[0] != "1" or not set(value[1:]) <= HEX:
        return "malformed", None
    if secret is not None:
        if len(value) != 41 or siphash24(token_key(secret), value[:25].encode()) != int(value[25:], 16):
            return "bad_signature", None
    issued = int(value[1:9], 16)
    if issued > now + TOKEN_SKEW:
        return "malformed", None
    if now >= issued + ttl:
        return "expired", None
    return "valid", value[9:25]


@dataclass
class Version:
    name: str
    capacity: float
    cluster: str
    admitted: bool = True


@dataclass
class Stage:
    name: str
    weight: float
    mode: str
    versions: list[Version]
    state: str = "steady"
    target: int = -1
    active: int = -1
    next_slot: int = -1
    next_weight: float = 0.0
    salt: int = 0
    order: list[int] = field(default_factory=list)
    thresholds: list[float] = field(default_factory=list)

    @property
    def takes_traffic(self) -> bool:
        return self.weight > 0 and self.has_capacity

    @property
    def has_capacity(self) -> bool:
        if self.mode == "blue_green":
            return self.versions[self.active].capacity > 0
        return bool(self.order)

    def index_of(self, name: str) -> int:
        for i, v in enumerate(self.versions):
            if v.name == name:
                return i
        return -1


class OracleRouter:
    """Decides like rollway.Router, slowly. Only accepts configs the core accepts."""

    def __init__(self, config_json: str, secrets: dict[str, bytes] | None = None):
        doc = json.loads(config_json)
        secrets = secrets or {}
        rid = doc.get("routing_id", {})
        self.ttl = rid.get("ttl_seconds", 86400)
        self.token_secret = secrets[rid["signing_key_id"]] if "signing_key_id" in rid else None
        ov = doc.get("override")
        self.override_secret = secrets[ov["key_id"]] if ov else None
        self.override_max_ttl = ov.get("max_ttl_seconds", 3600) if ov else 3600
        self.stages: list[Stage] = []
        for s in doc["stages"]:
            if s["mode"] == "rolling":
                versions = [Version(v["name"], float(v["capacity"]), v["cluster"], v.get("admitted", True))
                            for v in s["versions"]]
                stage = Stage(s["name"], float(s["weight"]), "rolling", versions)
                direction = s.get("direction", {"state": "steady"})
                stage.state = direction["state"]
                if "target" in direction:
                    stage.target = stage.index_of(direction["target"])
                total = 0.0
                cumulative = []
                for i in reversed(range(len(versions))):
                    v = versions[i]
                    if v.admitted and v.capacity > 0:
                        total += v.capacity
                        stage.order.append(i)
                        cumulative.append(total)
                stage.thresholds = [c / total for c in cumulative]
            else:
                slots = sorted(s["slots"].items())  # the core keeps slots in key order
                versions = [Version(slot["version"], float(slot["capacity"]), slot["cluster"])
                            for _, slot in slots]
                stage = Stage(s["name"], float(s["weight"]), "blue_green", versions)
                names = [name for name, _ in slots]
                stage.active = names.index(s["active"])
                if "next" in s:
                    stage.next_slot = names.index(s["next"])
            stage.next_weight = float(s.get("next_weight", s["weight"]))
            stage.salt = hash128(stage.name.encode())[0]
            self.stages.append(stage)

    # -- the rules -----------------------------------------------------------------------

    def pick_stage(self, low: int, next_weights: bool = False) -> int:
        weight = (lambda s: s.next_weight) if next_weights else (lambda s: s.weight)
        live = [i for i, s in enumerate(self.stages) if weight(s) > 0 and s.has_capacity]
        if len(live) <= 1:
            return live[0] if live else -1
        best, best_score = -1, math.inf
        for i in live:
            stage = self.stages[i]
            score = -math.log(unit_interval(fmix64(low ^ stage.salt))) * (1.0 / weight(stage))
            if score < best_score:
                best, best_score = i, score
        return best

    @staticmethod
    def pick_version(stage: Stage, high: int) -> int:
        if not stage.order:
            return -1
        point = unit_interval(fmix64(high ^ stage.salt))
        for index, threshold in zip(stage.order, stage.thresholds):
            if point < threshold:
                return index
        return stage.order[-1]

    def choose_stage(self, low: int, wanted: str | None, wanted_stage: str | None) -> int:
        current = self.pick_stage(low)
        if not wanted or all(s.next_weight == s.weight for s in self.stages):
            return current
        nxt = self.pick_stage(low, next_weights=True)
        if nxt < 0 or nxt == current or not self.serves(self.stages[nxt], wanted):
            return current
        if current < 0 or not self.serves(self.stages[current], wanted):
            return nxt
        return nxt if self.stages[nxt].name == wanted_stage else current

    def serves(self, stage: Stage, wanted: str) -> bool:
        if stage.mode == "rolling":
            return self.available(stage, wanted) >= 0
        return any(slot >= 0 and stage.versions[slot].capacity > 0 and stage.versions[slot].name == wanted
                   for slot in (stage.active, stage.next_slot))

    @staticmethod
    def available(stage: Stage, name: str | None) -> int:
        if not name:
            return -1
        i = stage.index_of(name)
        return i if i >= 0 and stage.versions[i].capacity > 0 else -1

    def route_in_stage(self, stage: Stage, high: int, wanted_name: str | None) -> tuple[int, str]:
        if stage.mode == "blue_green":
            if stage.next_slot >= 0 and wanted_name:
                nxt = stage.versions[stage.next_slot]
                if nxt.capacity > 0 and nxt.name == wanted_name:
                    return stage.next_slot, "kept"
            return stage.active, "blue_green"
        computed = self.pick_version(stage, high)
        if not wanted_name:
            return computed, "hashed"
        wanted = self.available(stage, wanted_name)
        target = stage.target
        target_open = target >= 0 and stage.versions[target].admitted and stage.versions[target].capacity > 0
        if wanted < 0:
            return (target if target_open else computed), "unavailable"
        if wanted == computed:
            return computed, "affinity"
        if computed < 0:
            return wanted, "kept"
        if stage.state == "steady":
            return wanted, "kept"
        if stage.state == "forward":
            if wanted == target or wanted > computed or not target_open or target < wanted:
                return wanted, "kept"
            return target, "moved_forward"
        if wanted == target or wanted < computed or not target_open or target > wanted:
            return wanted, "kept"
        return target, "moved_rollback"

    def parse_override(self, value: str, now: int) -> dict | None:
        if not self.override_secret or not value or len(value) > 512 or ";mac=" not in value:
            return None
        signed, mac = value.rsplit(";mac=", 1)
        if len(mac) != 64:
            return None
        fields: dict[str, str] = {}
        for part in signed.split(";"):
            key, eq, val = part.partition("=")
            if not eq or not val or key not in ("stage", "version", "exp") or key in fields:
                return None
            fields[key] = val
        exp = fields.get("exp")
        if exp is None or len(exp) > 12 or not exp.isdigit() or not exp.isascii():
            return None
        if int(exp) <= now or int(exp) - now > self.override_max_ttl:
            return None
        if not set(mac) <= HEX:
            return None
        expected = hmac.new(self.override_secret, signed.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, mac):
            return None
        return fields

    def route(self, routing_id: str | None, wanted_version: str | None = None, now: int = 0,
              version_cookie: str | None = None, override: str | None = None,
              random_bits: int = 0, stage_cookie: str | None = None) -> dict:
        now = math.floor(now)
        status, key = parse_token(routing_id, now, self.ttl, self.token_secret)
        new_id = None
        if status != "valid":
            new_id = mint(now, random_bits, self.token_secret)
            key = new_id[9:25]
        low, high = hash128(key.encode())
        wanted = wanted_version or version_cookie
        result = {"id_status": status, "new_routing_id": new_id, "override": "none"}

        chosen: tuple[int, int, str] | None = None
        if override:
            result["override"] = "rejected"
            fields = self.parse_override(override, now)
            if fields is not None:
                stage_index = (self.pick_stage(low) if "stage" not in fields
                               else next((i for i, s in enumerate(self.stages) if s.name == fields["stage"]), -1))
                if stage_index >= 0:
                    stage = self.stages[stage_index]
                    if "version" in fields:
                        version_index, reason = self.available(stage, fields["version"]), "override"
                    else:
                        version_index, reason = self.route_in_stage(stage, high, wanted)
                    if version_index >= 0 and stage.versions[version_index].capacity > 0:
                        chosen = (stage_index, version_index, reason)
                        result["override"] = "applied"
        if chosen is None:
            stage_index = self.choose_stage(low, wanted, stage_cookie)
            if stage_index < 0:
                return {**result, "stage": None, "version": None, "cluster": None,
                        "reason": "no_capacity", "refresh": False}
            version_index, reason = self.route_in_stage(self.stages[stage_index], high, wanted)
            chosen = (stage_index, version_index, reason)
        stage_index, version_index, reason = chosen
        stage = self.stages[stage_index]
        version = stage.versions[version_index]
        refresh = bool(wanted_version) and wanted_version != version.name
        return {**result, "stage": stage.name, "version": version.name, "cluster": version.cluster,
                "reason": reason, "refresh": refresh}
