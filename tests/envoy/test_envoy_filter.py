"""The filter in the real Envoy 1.40 binary, with real HTTP backends on loopback."""

from __future__ import annotations

import hashlib
import hmac
import json
import subprocess
import sys
import time

import pytest

import rollway
from rollway.envoy import bootstrap as envoy_config

from envoy_harness import Backends, EnvoyProcess, free_port, wait_until

pytestmark = [pytest.mark.envoy]

OPS_KEY = "operator-override-key-for-tests"
VERSIONS = ["v1", "v2", "v3"]


def filter_config(capacities: dict[str, float], state="steady", target=None, generation=1, **extra) -> dict:
    versions = [{"name": v, "capacity": capacities.get(v, 0), "cluster": f"web.prod.{v}"} for v in VERSIONS]
    direction = {"state": state, **({"target": target} if target else {})}
    doc = {
        "service": "web", "generation": generation,
        "routing_id": {"cookie": "rw_rid", "ttl_seconds": 3600},
        "version_cookie": "rw_ver",
        "stages": [{"name": "prod", "weight": 1, "mode": "rolling", "versions": versions, "direction": direction}],
    }
    doc.update(extra)
    return doc


@pytest.fixture(scope="module")
def backends():
    b = Backends(VERSIONS)
    yield b
    b.close()


def clusters(backends):
    return {f"web.prod.{v}": [backends.address(v)] for v in VERSIONS}


def start_envoy(tmp_path, backends, config, *, ecds=False) -> EnvoyProcess:
    listen, admin = free_port(), free_port()
    ecds_path = str(tmp_path / "rollway-ecds.json") if ecds else None
    bootstrap = envoy_config.static_bootstrap(config, clusters(backends), listen_port=listen,
                                              admin_port=admin, ecds_path=ecds_path)
    return EnvoyProcess(bootstrap, tmp_path, listen, admin).start()


@pytest.fixture
def envoy_5050(tmp_path, backends):
    secrets = tmp_path / "secrets.json"
    secrets.write_text(json.dumps({"ops": OPS_KEY}))
    config = filter_config({"v1": 50, "v2": 50}, "forward", "v2",
                           override={"key_id": "ops", "max_ttl_seconds": 600},
                           secrets_file=str(secrets))
    proc = start_envoy(tmp_path, backends, config)
    proc.router = rollway.Router(json.dumps(config), secrets={"ops": OPS_KEY})
    yield proc
    proc.stop()


def cookie_header(rid: str, version: str | None = None) -> str:
    return f"rw_rid={rid}" + (f"; rw_ver={version}" if version else "")


def test_first_request_gets_a_cookie_and_lands_on_the_hashed_version(envoy_5050):
    first = envoy_5050.get("/")
    assert first.status == 200
    raw = [c for c in first.all("set-cookie") if c.startswith("rw_rid=")]
    assert len(raw) == 1
    assert raw[0].endswith("; Path=/; Max-Age=3600; HttpOnly; SameSite=Lax")
    rid = first.set_cookies()["rw_rid"]
    assert rollway.parse_routing_id(rid, time.time(), 3600)["status"] == "valid"
    expected = envoy_5050.router.route(rid, now=time.time())
    assert first.json["backend"] == expected.version
    assert first.json["headers"]["x-rw-cluster"] == expected.cluster
    assert first.set_cookies()["rw_ver"] == expected.version


def test_the_same_cookie_always_lands_on_the_same_backend(envoy_5050):
    ids = [rollway.new_routing_id() for _ in range(30)]
    seen = {}
    for _ in range(3):
        for rid in ids:
            r = envoy_5050.get("/", {"cookie": cookie_header(rid)})
            assert "rw_rid" not in r.set_cookies()
            seen.setdefault(rid, set()).add(r.json["backend"])
    assert all(len(backends) == 1 for backends in seen.values())
    assert {b for s in seen.values() for b in s} == {"v1", "v2"}  # both versions in use
    for rid in ids:
        assert seen[rid] == {envoy_5050.router.route(rid, now=time.time()).version}


def test_a_spoofed_cluster_header_is_ignored(envoy_5050):
    rid = next(r for r in (rollway.new_routing_id() for _ in range(200))
               if envoy_5050.router.route(r, now=time.time()).version == "v1")
    for spoof in ("web.prod.v2", "web.prod.v3", "rollway_admin", ""):
        r = envoy_5050.get("/", [("cookie", cookie_header(rid)), ("x-rw-cluster", spoof)])
        assert r.json["backend"] == "v1"
        assert r.json["headers"]["x-rw-cluster"] == "web.prod.v1"


def test_the_cluster_specifier_decides_once_and_the_filter_writes_its_decision(envoy_5050):
    """Envoy resolves the route once, with the cluster the specifier named; the filter takes
    that decision (cookies, the app's check header, counters) and never decides again."""
    before = envoy_5050.stats()
    sessions = [envoy_5050.get("/").set_cookies()["rw_rid"] for _ in range(10)]   # minted at resolution
    for rid in sessions * 3:
        r = envoy_5050.get("/", {"cookie": cookie_header(rid)})
        expected = envoy_5050.router.route(rid, now=time.time())
        assert r.json["backend"] == expected.version
        assert r.json["headers"]["x-rw-cluster"] == expected.cluster
    after = envoy_5050.stats()
    routed = sum(after.get(f"rollway.requests.stage.prod.version.{v}", 0) -
                 before.get(f"rollway.requests.stage.prod.version.{v}", 0) for v in VERSIONS)
    assert routed == 40
    assert after["rollway.ids_minted"] - before.get("rollway.ids_minted", 0) == 10
    assert after.get("rollway.decided_in_filter", 0) == 0


def test_a_route_without_the_specifier_is_routed_by_the_filters_own_decision(tmp_path, backends):
    """A hand-written route that takes the cluster from the header (Rollway's route before
    issue 30): the filter finds no decision from a specifier, decides itself, writes the
    header and has the route resolved again, so the session still lands by its cookie."""
    config = filter_config({"v1": 50, "v2": 50})
    listen, admin = free_port(), free_port()
    bootstrap = envoy_config.static_bootstrap(config, clusters(backends), listen_port=listen, admin_port=admin)
    hcm = bootstrap["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    hcm["route_config"]["virtual_hosts"][0]["routes"] = [
        {"match": {"prefix": "/", "headers": [{"name": "x-rw-cluster", "present_match": True}]},
         "route": {"cluster_header": "x-rw-cluster"}},
        {"match": {"prefix": "/"}, "direct_response": {"status": 503}}]
    proc = EnvoyProcess(bootstrap, tmp_path, listen, admin).start()
    try:
        router = rollway.Router(json.dumps(config))
        for rid in [rollway.new_routing_id() for _ in range(12)]:
            r = proc.get("/", {"cookie": cookie_header(rid)})
            expected = router.route(rid, now=time.time())
            assert r.status == 200 and r.json["backend"] == expected.version
            assert r.json["headers"]["x-rw-cluster"] == expected.cluster
        assert proc.stats()["rollway.decided_in_filter"] == 12
    finally:
        proc.stop()


@pytest.mark.parametrize("bad", ["garbage", "1" + "0" * 24 + "x", '"quoted"', "1" + "z" * 24])
def test_a_malformed_cookie_gets_a_fresh_id(envoy_5050, bad):
    r = envoy_5050.get("/", {"cookie": f"rw_rid={bad}"})
    fresh = r.set_cookies()["rw_rid"]
    assert fresh != bad and rollway.parse_routing_id(fresh, time.time(), 3600)["status"] == "valid"
    assert r.json["backend"] == envoy_5050.router.route(fresh, now=time.time()).version


def test_an_expired_cookie_gets_a_fresh_id(envoy_5050):
    old = rollway.new_routing_id(time.time() - 3601)
    r = envoy_5050.get("/", {"cookie": cookie_header(old)})
    fresh = r.set_cookies()["rw_rid"]
    assert fresh != old and fresh[9:25] != old[9:25]


def test_cookie_parsing_is_robust(envoy_5050):
    rid = rollway.new_routing_id()
    want = envoy_5050.router.route(rid, now=time.time()).version
    many = "; ".join(f"c{i}=v{i}" for i in range(300))
    for header in [
        f"{many}; rw_rid={rid}",                       # many cookies before ours
        f"  rw_rid = {rid} ;other=1",                  # odd spacing
        f'rw_rid="{rid}"',                             # quoted value
        f"rw_rid={rid}; rw_rid=garbage",               # duplicates: the first wins
        f"junk; ;=; rw_rid={rid}; x",                  # pairs without '=' are skipped
        "big=" + "x" * 50_000 + f"; rw_rid={rid}",     # a huge header
    ]:
        r = envoy_5050.get("/", {"cookie": header})
        assert r.status == 200, header[:80]
        assert "rw_rid" not in r.set_cookies(), header[:80]
        assert r.json["backend"] == want


def test_app_version_affinity_and_the_refresh_header(tmp_path, backends):
    # Steady with v1 and v2 both live: a session keeps the version its app runs.
    proc = start_envoy(tmp_path, backends, filter_config({"v1": 50, "v2": 50}))
    try:
        router = rollway.Router(json.dumps(filter_config({"v1": 50, "v2": 50})))
        rid = next(r for r in (rollway.new_routing_id() for _ in range(200))
                   if router.route(r, now=time.time()).version == "v2")
        kept = proc.get("/", {"cookie": cookie_header(rid, "v1"), "x-app-version": "v1"})
        assert kept.json["backend"] == "v1" and kept.header("x-rw-refresh") is None
        assert "rw_ver" not in kept.set_cookies()
        # Another tab moved the shared cookie to v2: this tab stays on v1 and leaves the
        # cookie to the newer tab, so the session's next page load still opens v2.
        other_tab_kept = proc.get("/", {"cookie": cookie_header(rid, "v2"), "x-app-version": "v1"})
        assert other_tab_kept.json["backend"] == "v1" and other_tab_kept.header("x-rw-refresh") is None
        assert "rw_ver" not in other_tab_kept.set_cookies()
        assert proc.get("/", {"cookie": cookie_header(rid, "v2")}).json["backend"] == "v2"
    finally:
        proc.stop()
    # v1 drained: the session moves to v2 and the tab is told to refresh. Another tab of
    # the same browser, still on v1, is told too although the shared cookie already says
    # v2; a tab that reloaded is not told again.
    proc = start_envoy(tmp_path, backends, filter_config({"v2": 10}, "forward", "v2"))
    try:
        told = proc.get("/", {"cookie": cookie_header(rid, "v1"), "x-app-version": "v1"})
        assert told.json["backend"] == "v2" and told.header("x-rw-refresh") == "v2"
        assert told.set_cookies()["rw_ver"] == "v2"
        other_tab = proc.get("/", {"cookie": cookie_header(rid, "v2"), "x-app-version": "v1"})
        assert other_tab.json["backend"] == "v2" and other_tab.header("x-rw-refresh") == "v2"
        assert "rw_ver" not in other_tab.set_cookies()
        reloaded = proc.get("/", {"cookie": cookie_header(rid, "v2"), "x-app-version": "v2"})
        assert reloaded.header("x-rw-refresh") is None
        page_load = proc.get("/", {"cookie": cookie_header(rid, "v2")})
        assert page_load.header("x-rw-refresh") is None
        assert proc.stats()["rollway.refresh_signals"] == 2
    finally:
        proc.stop()


def test_a_move_onto_hosts_that_are_gone_is_not_committed(tmp_path):
    # An Envoy whose view is stale sends a v1 session to v2, whose hosts have already
    # stopped: Envoy answers 503, and the filter neither moves the cookie nor asks the
    # browser to refresh (the session stays on v1 and the next request decides again).
    own = Backends(VERSIONS)
    proc = start_envoy(tmp_path, own, filter_config({"v2": 10}, "forward", "v2"))
    try:
        own.close()
        rid = rollway.new_routing_id()
        failed = proc.get("/", {"cookie": cookie_header(rid, "v1"), "x-app-version": "v1"})
        assert failed.status == 503
        assert "rw_ver" not in failed.set_cookies() and failed.header("x-rw-refresh") is None
        assert proc.stats()["rollway.moves_not_committed"] == 1
    finally:
        proc.stop()
        own.close()


def sign(fields: str, key: str = OPS_KEY) -> str:
    return fields + ";mac=" + hmac.new(key.encode(), fields.encode(), hashlib.sha256).hexdigest()


def test_a_signed_override_works_and_an_unsigned_one_does_not(envoy_5050):
    rid = next(r for r in (rollway.new_routing_id() for _ in range(200))
               if envoy_5050.router.route(r, now=time.time()).version == "v1")
    exp = int(time.time()) + 120
    signed = envoy_5050.get("/", {"cookie": cookie_header(rid), "x-rw-override": sign(f"version=v2;exp={exp}")})
    assert signed.json["backend"] == "v2"
    assert "x-rw-override" not in signed.json["headers"]  # never forwarded upstream
    for bad in (f"version=v2;exp={exp}", f"version=v2;exp={exp};mac=" + "0" * 64,
                sign(f"version=v2;exp={exp}", key="wrong-key-wrong-key-wrong"), sign(f"version=v2;exp={exp - 600}")):
        r = envoy_5050.get("/", {"cookie": cookie_header(rid), "x-rw-override": bad})
        assert r.json["backend"] == "v1"
    stats = envoy_5050.stats()
    assert stats["rollway.overrides_applied"] == 1
    assert stats["rollway.overrides_rejected"] == 4


def test_rollway_override_mint_makes_a_header_the_filter_accepts(envoy_5050, tmp_path):
    """The operator's way to an override: `rollway override mint` with the filter's own
    secrets file; the real filter routes by it, and a header minted with another key or
    already expired is refused."""
    rid = next(r for r in (rollway.new_routing_id() for _ in range(200))
               if envoy_5050.router.route(r, now=time.time()).version == "v1")
    secrets = tmp_path / "secrets.json"     # the file envoy_5050's config names

    def mint(*extra: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "rollway.cli.main", "override", "mint", "--version", "v2",
                               "--key-file", str(secrets), *extra], capture_output=True, text=True, timeout=60)

    out = mint("--ttl", "300", "--key-id", "ops")
    assert out.returncode == 0, out.stderr
    name, _, value = out.stdout.strip().partition(": ")
    assert name == "x-rw-override" and OPS_KEY not in out.stdout
    assert envoy_5050.get("/", {"cookie": cookie_header(rid), name: value}).json["backend"] == "v2"
    other = tmp_path / "other-key"
    other.write_text("not-the-operator-key-at-all\n")
    forged = subprocess.run([sys.executable, "-m", "rollway.cli.main", "override", "mint", "--version", "v2",
                             "--ttl", "300", "--key-file", str(other), "--value-only"],
                            capture_output=True, text=True, timeout=60)
    assert forged.returncode == 0, forged.stderr
    expired = mint("--ttl", "60", "--key-id", "ops", "--now", str(time.time() - 120), "--value-only")
    for bad in (forged.stdout.strip(), expired.stdout.strip()):
        assert envoy_5050.get("/", {"cookie": cookie_header(rid), name: bad}).json["backend"] == "v1"
    too_long = mint("--ttl", str(8 * 86400), "--key-id", "ops")
    assert too_long.returncode == 2 and "--ttl" in too_long.stderr


def test_without_random_bytes_no_id_is_minted_and_the_request_is_still_served(tmp_path, backends, monkeypatch):
    """getrandom(2) failing (here by the module's test switch, read at a thread's first draw)
    fails closed: no routing id is minted from predictable bits, the failure is counted, and
    the request is served all the same; a returning session is unaffected."""
    monkeypatch.setenv("ROLLWAY_TEST_FAIL_GETRANDOM", "1")
    proc = start_envoy(tmp_path, backends, filter_config({"v1": 50, "v2": 50}))
    try:
        first = proc.get("/")
        assert first.status == 200 and first.json["backend"] in ("v1", "v2")
        assert not [c for c in first.all("set-cookie") if c.startswith("rw_rid=")]
        rid = rollway.new_routing_id()      # minted here, in the test process
        again = proc.get("/", {"cookie": cookie_header(rid)})
        assert again.status == 200
        stats = proc.stats()
        assert stats["rollway.ids_unavailable"] == 1 and stats["rollway.ids_minted"] == 0
    finally:
        proc.stop()


def test_no_capacity_anywhere_is_a_503_not_a_crash(tmp_path, backends):
    proc = start_envoy(tmp_path, backends, filter_config({}))
    try:
        r = proc.get("/", {"x-rw-cluster": "web.prod.v1"})
        assert r.status == 503 and b"no capacity" in r.body
        assert proc.stats()["rollway.no_capacity"] == 1
    finally:
        proc.stop()


def test_an_invalid_config_is_rejected_at_startup_with_the_field_named(tmp_path, backends):
    bad = filter_config({"v1": 1})
    bad["stages"][0]["weight"] = -5
    listen, admin = free_port(), free_port()
    proc = EnvoyProcess(envoy_config.static_bootstrap(bad, clusters(backends), listen_port=listen,
                                                      admin_port=admin), tmp_path, listen, admin)
    with pytest.raises(RuntimeError, match="exited"):
        proc.start(timeout=20)
    assert "stages[0].weight: must be a number >= 0" in proc.log_path.read_text()


def test_ecds_update_changes_routing_without_restart_and_a_bad_update_is_rejected(tmp_path, backends):
    proc = start_envoy(tmp_path, backends, filter_config({"v1": 10}, generation=1), ecds=True)
    ecds_path = str(tmp_path / "rollway-ecds.json")
    try:
        pid = proc.process.pid
        ids = [rollway.new_routing_id() for _ in range(10)]
        assert {proc.get("/", {"cookie": cookie_header(r)}).json["backend"] for r in ids} == {"v1"}

        envoy_config.write_ecds_file(ecds_path, filter_config({"v3": 10}, "forward", "v3", generation=2), "2")
        wait_until(lambda: {proc.get("/", {"cookie": cookie_header(r)}).json["backend"] for r in ids} == {"v3"},
                   what="the ECDS update to route to v3")
        assert proc.process.pid == pid and proc.process.poll() is None

        bad = filter_config({"v1": 10}, generation=3)
        bad["stages"][0]["versions"][0]["capacity"] = -1
        before = proc.stats()
        envoy_config.write_ecds_file(ecds_path, bad, "3")
        wait_until(lambda: proc.stats().get("extension_config_discovery.http_filter.rollway.config_fail", 0)
                   > before.get("extension_config_discovery.http_filter.rollway.config_fail", 0),
                   what="Envoy to reject the bad config")
        assert {proc.get("/", {"cookie": cookie_header(r)}).json["backend"] for r in ids} == {"v3"}
        assert "stages[0].versions[0].capacity: must be a number >= 0" in proc.log_path.read_text()
        assert proc.stats()["rollway.configs_rejected"] == 1
        assert proc.process.poll() is None
    finally:
        proc.stop()


def test_the_module_counters_appear_in_stats(envoy_5050):
    envoy_5050.get("/")                                  # minted
    envoy_5050.get("/", {"cookie": "rw_rid=nonsense"})   # bad cookie, minted
    stats = envoy_5050.stats()
    prefix = "rollway."
    assert stats[prefix + "ids_minted"] == 2
    assert stats[prefix + "bad_cookies.reason.malformed"] == 1
    per_version = {k: v for k, v in stats.items() if k.startswith(prefix + "requests.stage.prod.version.")}
    assert sum(per_version.values()) == 2
    for name in ("forward_moves", "rollback_moves", "tiebreak_kept", "refresh_signals", "moves_not_committed",
                 "overrides_rejected", "overrides_applied", "no_capacity", "configs_rejected"):
        assert prefix + name in stats
