"""The C++ core decides exactly like the pure-Python oracle on random inputs."""

from __future__ import annotations

import hashlib
import hmac
import json

from hypothesis import given
from hypothesis import strategies as st

import rollway

import oracle

NOW = 1_750_000_000
SECRETS = {"rid": b"routing-id-secret-0123456789", "ops": b"operator-override-secret-42"}
VERSION_NAMES = ["v1", "v2", "v3", "v4", "v5"]


@st.composite
def stage_docs(draw, name):
    weight = draw(st.sampled_from([0, 0.5, 1, 3, 99.5]) | st.floats(0, 100, allow_nan=False))
    if draw(st.integers(0, 4)) == 0:
        slots = {}
        for slot in ("blue", "green"):
            slots[slot] = {"version": draw(st.sampled_from(VERSION_NAMES)),
                           "capacity": draw(st.sampled_from([0, 1, 5])),
                           "cluster": f"web.{name}.{slot}"}
        active = draw(st.sampled_from(["blue", "green"]))
        doc = {"name": name, "weight": weight, "mode": "blue_green", "active": active, "slots": slots}
        if draw(st.booleans()):
            doc["next"] = "green" if active == "blue" else "blue"
        return doc
    names = draw(st.lists(st.sampled_from(VERSION_NAMES), max_size=5, unique=True))
    versions = [{"name": v, "capacity": draw(st.sampled_from([0, 1, 2, 7]) | st.floats(0, 50)),
                 "cluster": f"web.{name}.{v}", "admitted": draw(st.booleans() | st.just(True))}
                for v in names]
    state = draw(st.sampled_from(["steady", "forward", "rollback"])) if names else "steady"
    direction = {"state": state}
    if names and (state != "steady" or draw(st.booleans())):  # steady names one while a reversal is held
        direction["target"] = draw(st.sampled_from(names))
    return {"name": name, "weight": weight, "mode": "rolling", "versions": versions,
            "direction": direction}


@st.composite
def config_docs(draw):
    count = draw(st.integers(1, 4))
    stages = [draw(stage_docs(f"s{i}")) for i in range(count)]
    if all(s["weight"] == 0 for s in stages):
        stages[0]["weight"] = 1
    if draw(st.booleans()):  # a stage-weight change in progress
        for s in stages:
            s["next_weight"] = draw(st.sampled_from([0, 0.5, 1, 5, 99]))
        if all(s["next_weight"] == 0 for s in stages):
            stages[-1]["next_weight"] = 2
    doc = {"service": "web", "generation": draw(st.integers(0, 10**6)),
           "routing_id": {"cookie": "rw_rid", "ttl_seconds": draw(st.sampled_from([60, 86400]))},
           "stages": stages}
    if draw(st.booleans()):
        doc["routing_id"]["signing_key_id"] = "rid"
    if draw(st.booleans()):
        doc["override"] = {"key_id": "ops", "max_ttl_seconds": 600}
    return doc


def signed_override(fields: str, secret: bytes = SECRETS["ops"]) -> str:
    return fields + ";mac=" + hmac.new(secret, fields.encode(), hashlib.sha256).hexdigest()


@st.composite
def routing_ids(draw):
    kind = draw(st.sampled_from(["none", "fresh", "signed", "old", "garbage", "future"]))
    bits = draw(st.integers(0, 2**64 - 1))
    if kind == "none":
        return None
    if kind == "fresh":
        return oracle.mint(NOW - draw(st.integers(0, 100)), bits, None)
    if kind == "signed":
        return oracle.mint(NOW - draw(st.integers(0, 100)), bits, SECRETS["rid"])
    if kind == "old":
        return oracle.mint(NOW - draw(st.integers(50, 200000)), bits, None)
    if kind == "future":
        return oracle.mint(NOW + draw(st.integers(0, 1000)), bits, None)
    return draw(st.text(max_size=45))


@st.composite
def overrides(draw):
    kind = draw(st.sampled_from(["none", "good", "unsigned", "expired", "garbage"]))
    if kind == "none":
        return None
    parts = []
    if draw(st.booleans()):
        parts.append("stage=" + draw(st.sampled_from(["s0", "s1", "s2", "nope"])))
    if draw(st.booleans()):
        parts.append("version=" + draw(st.sampled_from(VERSION_NAMES + ["nope"])))
    exp = NOW + (draw(st.integers(1, 700)) if kind != "expired" else -draw(st.integers(0, 10)))
    parts.append(f"exp={exp}")
    fields = ";".join(draw(st.permutations(parts)))
    if kind == "unsigned":
        return fields + ";mac=" + "0" * 64
    if kind == "garbage":
        return draw(st.text(max_size=100))
    return signed_override(fields)


@given(config_docs(), st.lists(st.tuples(routing_ids(), st.sampled_from([None] + VERSION_NAMES),
                                         st.sampled_from([None] + VERSION_NAMES), overrides(),
                                         st.integers(0, 2**64 - 1),
                                         st.sampled_from([None, "s0", "s1", "s2", "s3", "nope"])),
                               min_size=1, max_size=20))
def test_core_matches_oracle(doc, requests):
    text = json.dumps(doc)
    core = rollway.Router(text, secrets=SECRETS)
    ref = oracle.OracleRouter(text, SECRETS)
    for routing_id, app_version, cookie, override, bits, stage_cookie in requests:
        got = core.route(routing_id, app_version, NOW, version_cookie=cookie, override=override,
                         random_bits=bits, stage_cookie=stage_cookie)
        want = ref.route(routing_id, app_version, NOW, version_cookie=cookie, override=override,
                         random_bits=bits, stage_cookie=stage_cookie)
        assert {
            "stage": got.stage, "version": got.version, "cluster": got.cluster,
            "reason": got.reason, "refresh": got.refresh, "new_routing_id": got.new_routing_id,
            "id_status": got.id_status, "override": got.override,
        } == want, (routing_id, app_version, cookie, override)


@given(config_docs(), st.lists(st.tuples(st.integers(0, 2**64 - 1), st.sampled_from([None] + VERSION_NAMES)),
                               min_size=1, max_size=50))
def test_batch_matches_single_calls(doc, sessions):
    text = json.dumps(doc)
    core = rollway.Router(text, secrets=SECRETS)
    secret = SECRETS["rid"] if "signing_key_id" in doc["routing_id"] else None
    ids = [oracle.mint(NOW, bits, secret) for bits, _ in sessions]
    wanted = [w for _, w in sessions]
    stages = [f"s{bits % 4}" if bits % 5 else None for bits, _ in sessions]
    batch = core.route_many(ids, wanted, NOW, stage_cookies=stages)
    assert len(batch) == len(ids)
    for i, (rid, w) in enumerate(zip(ids, wanted)):
        single = core.route(rid, w, NOW, stage_cookie=stages[i])
        assert (batch.stage[i], batch.version[i], batch.cluster[i], batch.reason[i], batch.refresh[i]) == \
               (single.stage, single.version, single.cluster, single.reason, single.refresh)
        assert batch.new_routing_id[i] is None
        assert batch[i].version == single.version
