"""The module's C ABI driven directly through cffi, beside a fake Envoy host library.

No Envoy here: tests/fake_envoy/fake_envoy_host.c exports the callbacks the module imports,
keeps headers and counters in memory, and lets these tests look at what the hooks did.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import cffi
import pytest

import rollway

HERE = Path(__file__).parents[1]      # tests/: the fake Envoy host lives there
REQUEST, RESPONSE = 0, 2

ffi = cffi.FFI()
ffi.cdef("""
typedef struct { const char* ptr; size_t length; } buffer;

const char* envoy_dynamic_module_on_program_init(void);
void* envoy_dynamic_module_on_http_filter_config_new(void* config_envoy, buffer name, buffer config);
void envoy_dynamic_module_on_http_filter_config_destroy(void* config);
void* envoy_dynamic_module_on_http_filter_new(void* config, void* filter_envoy);
int envoy_dynamic_module_on_http_filter_request_headers(void* filter_envoy, void* filter, bool end_of_stream);
int envoy_dynamic_module_on_http_filter_request_body(void* filter_envoy, void* filter, bool end_of_stream);
int envoy_dynamic_module_on_http_filter_response_headers(void* filter_envoy, void* filter, bool end_of_stream);
void envoy_dynamic_module_on_http_filter_stream_complete(void* filter_envoy, void* filter);
void envoy_dynamic_module_on_http_filter_destroy(void* filter);

const void* envoy_dynamic_module_on_http_filter_per_route_config_new(buffer name, buffer config);
void envoy_dynamic_module_on_http_filter_per_route_config_destroy(const void* config);

const void* envoy_dynamic_module_on_cluster_specifier_config_new(void* config_envoy, buffer name, buffer config);
void envoy_dynamic_module_on_cluster_specifier_config_destroy(const void* config);
bool envoy_dynamic_module_on_cluster_specifier_select(const void* config, void* context);
void fake_set_specifier(void* hook, const void* config);
bool fake_resolve_route(void);
const char* fake_selected_cluster(void);
int fake_selections(void);

void fake_set_route_config(const void* config);
void fake_reset_stream(void);
void fake_reset_all(void);
void fake_add_header(int kind, const char* key, const char* value, size_t length);
size_t fake_header_count(int kind, const char* key);
const char* fake_header(int kind, const char* key, size_t index);
int fake_route_cache_clears(void);
size_t fake_defined_counters(void);
const char* fake_counter_name(size_t id);
uint64_t fake_counter(const char* key);
const char* fake_last_log(void);
int fake_last_log_level(void);
""")


@pytest.fixture(scope="module")
def libs(tmp_path_factory):
    out = tmp_path_factory.mktemp("fake_envoy") / "libfake_envoy_host.so"
    subprocess.run(["cc", "-shared", "-fPIC", "-O1", "-o", str(out), str(HERE / "fake_envoy" / "fake_envoy_host.c")],
                   check=True)
    host = ffi.dlopen(str(out), ffi.RTLD_NOW | ffi.RTLD_GLOBAL)
    module = ffi.dlopen(rollway.filter_library_path(), ffi.RTLD_NOW)
    return host, module


def make_config(capacities=None, **extra) -> dict:
    capacities = capacities if capacities is not None else {"v1": 5, "v2": 5}
    doc = {"service": "web", "generation": 3,
           "routing_id": {"cookie": "rw_rid", "ttl_seconds": 600},
           "stages": [{"name": "prod", "weight": 1, "mode": "rolling",
                       "versions": [{"name": v, "capacity": c, "cluster": f"web.prod.{v}"}
                                    for v, c in capacities.items()],
                       "direction": {"state": "forward", "target": "v2"}}]}
    doc.update(extra)
    return doc


def buf(data: bytes):
    keep = ffi.new("char[]", data) if data else ffi.NULL
    return keep, (keep, len(data))


def config_new(module, name: bytes, config: bytes):
    k1, name_buf = buf(name)
    k2, config_buf = buf(config)
    return module.envoy_dynamic_module_on_http_filter_config_new(ffi.cast("void*", 0x1), name_buf, config_buf)


class Stream:
    """One request/response through the hooks."""

    def __init__(self, host, module, config):
        self.host, self.module = host, module
        host.fake_reset_stream()
        self.filter = module.envoy_dynamic_module_on_http_filter_new(config, ffi.cast("void*", 0x2))
        assert self.filter != ffi.NULL

    def request(self, headers: list[tuple[str, bytes | str]]) -> None:
        for key, value in headers:
            raw = value.encode() if isinstance(value, str) else value
            self.host.fake_add_header(REQUEST, key.encode(), raw, len(raw))
        assert self.module.envoy_dynamic_module_on_http_filter_request_headers(ffi.cast("void*", 0x2), self.filter, True) == 0

    def respond(self) -> None:
        assert self.module.envoy_dynamic_module_on_http_filter_response_headers(ffi.cast("void*", 0x2), self.filter, False) == 0
        self.module.envoy_dynamic_module_on_http_filter_stream_complete(ffi.cast("void*", 0x2), self.filter)
        self.module.envoy_dynamic_module_on_http_filter_destroy(self.filter)

    def header(self, kind: int, key: str, index: int = 0) -> str | None:
        value = self.host.fake_header(kind, key.encode(), index)
        return None if value == ffi.NULL else ffi.string(value).decode()

    def headers(self, kind: int, key: str) -> list[str]:
        return [self.header(kind, key, i) for i in range(self.host.fake_header_count(kind, key.encode()))]


@pytest.fixture
def config(libs):
    host, module = libs
    host.fake_reset_all()
    cfg = config_new(module, b"rollway", json.dumps(make_config()).encode())
    assert cfg != ffi.NULL, ffi.string(host.fake_last_log())
    yield cfg
    module.envoy_dynamic_module_on_http_filter_config_destroy(cfg)


def test_program_init_reports_the_envoy_1_40_abi(libs):
    assert ffi.string(libs[1].envoy_dynamic_module_on_program_init()) == b"v0.2.0"


def test_config_new_defines_the_counters_and_logs_acceptance(libs, config):
    host, _ = libs
    names = {ffi.string(host.fake_counter_name(i)).decode() for i in range(host.fake_defined_counters())}
    assert {"requests.stage.prod.version.v1", "requests.stage.prod.version.v2", "ids_minted",
            "bad_cookies.reason.malformed", "bad_cookies.reason.expired", "forward_moves",
            "tiebreak_kept", "refresh_signals", "overrides_rejected", "configs_rejected", "ids_unavailable",
            "reloads.stage.prod.version.v2", "moves.stage.prod.version.v1"} <= names
    assert b"generation 3" in ffi.string(host.fake_last_log())


@pytest.mark.parametrize("name,config,message", [
    (b"rollway", b"{not json", b"config: invalid JSON"),
    (b"rollway", json.dumps(make_config({"v1": -1})).encode(), b"stages[0].versions[0].capacity"),
    (b"rollway", b"", b"config: invalid JSON"),
    (b"other", json.dumps(make_config()).encode(), b"unknown filter_name 'other'"),
    (b"rollway", json.dumps(make_config(secrets_file="/nonexistent/keys.json")).encode(),
     b"secrets_file: cannot read"),
])
def test_a_bad_config_is_rejected_with_a_clear_log_line(libs, name, config, message):
    host, module = libs
    host.fake_reset_all()
    assert config_new(module, name, config) == ffi.NULL
    assert message in ffi.string(host.fake_last_log())
    assert host.fake_last_log_level() == 4  # error
    if name == b"rollway":
        assert host.fake_counter(b"configs_rejected") == 1


def test_null_buffers_do_not_crash(libs):
    host, module = libs
    host.fake_reset_all()
    assert module.envoy_dynamic_module_on_http_filter_config_new(ffi.NULL, (ffi.NULL, 0), (ffi.NULL, 0)) == ffi.NULL
    assert module.envoy_dynamic_module_on_http_filter_new(ffi.NULL, ffi.NULL) == ffi.NULL
    assert module.envoy_dynamic_module_on_http_filter_request_headers(ffi.NULL, ffi.NULL, True) == 0
    assert module.envoy_dynamic_module_on_http_filter_response_headers(ffi.NULL, ffi.NULL, True) == 0
    module.envoy_dynamic_module_on_http_filter_destroy(ffi.NULL)
    module.envoy_dynamic_module_on_http_filter_config_destroy(ffi.NULL)


def test_a_new_session_is_routed_the_cluster_header_overwritten_and_cookies_set(libs, config):
    host, module = libs
    s = Stream(host, module, config)
    s.request([("x-rw-cluster", "web.prod.evil"), ("x-rw-cluster", "second")])
    cluster = s.headers(REQUEST, "x-rw-cluster")
    assert len(cluster) == 1 and cluster[0] in ("web.prod.v1", "web.prod.v2")
    assert host.fake_route_cache_clears() == 1
    s.respond()
    cookies = s.headers(RESPONSE, "set-cookie")
    assert len(cookies) == 3
    rid = cookies[0].split(";")[0].split("=", 1)[1]
    assert cookies[0] == f"rw_rid={rid}; Path=/; Max-Age=600; HttpOnly; SameSite=Lax"
    version = rollway.Router(json.dumps(make_config())).route(rid, now=time.time()).version
    assert cluster[0] == f"web.prod.{version}"
    # The version cookie is readable by the page (a build id; rollway.js falls back to it).
    assert cookies[1] == f"rw_ver={version}; Path=/; Max-Age=600; SameSite=Lax"
    assert cookies[2] == "rw_stage=prod; Path=/; Max-Age=600; HttpOnly; SameSite=Lax"
    assert host.fake_counter(f"requests.stage.prod.version.{version}".encode()) == 1
    assert host.fake_counter(b"ids_minted") == 1


def test_cookies_are_found_across_several_cookie_headers(libs, config):
    host, module = libs
    rid = rollway.new_routing_id()
    version = rollway.Router(json.dumps(make_config())).route(rid, now=time.time()).version
    s = Stream(host, module, config)
    s.request([("cookie", "a=1; b=2"), ("cookie", "c=3; rw_stage=prod"), ("cookie", f"rw_ver={version}; rw_rid={rid}")])
    assert s.header(REQUEST, "x-rw-cluster") == f"web.prod.{version}"
    s.respond()
    assert s.headers(RESPONSE, "set-cookie") == []  # valid id, version and stage cookies already right


@pytest.mark.parametrize("filler", [0, 40, 200])
def test_cookies_and_app_version_are_read_among_many_headers_in_any_case(libs, config, filler):
    host, module = libs
    router = rollway.Router(json.dumps(make_config()))
    rid = next(r for r in (rollway.new_routing_id() for _ in range(200)) if router.route(r, now=time.time()).version == "v1")
    s = Stream(host, module, config)
    s.request([*((f"x-filler-{i}", "y") for i in range(filler)), ("Cookie", f"a=1; rw_rid={rid}"),
               ("X-App-Version", "v1"), ("cookie", "rw_ver=v2; rw_rid=ignored"), ("x-app-version", "v2"),
               ("x-rw-override", "stage=prod;version=v2;exp=1;mac=00")])
    # The first rw_rid (hashed to v1) and the first app version (v1) win: the session stays on
    # v1. Reading the second app version (v2, the forward target) would move it to v2.
    assert s.header(REQUEST, "x-rw-cluster") == "web.prod.v1"
    # No override key configured: the header means nothing to Rollway, is not even read, and
    # goes through like any other (with a key it is checked and never forwarded: see below).
    assert s.header(REQUEST, "x-rw-override") == "stage=prod;version=v2;exp=1;mac=00"
    assert host.fake_counter(b"overrides_rejected") == 0
    s.respond()
    assert not any(c.startswith("rw_rid=") for c in s.headers(RESPONSE, "set-cookie"))   # the id was valid


@pytest.mark.parametrize("value", [b"\xff\xfe\x00garbage", b"rw_rid=" + b"\x00" * 25, b";" * 10000,
                                   b"rw_rid=" + b"1" * 100000, b"rw_rid=\"", b"="])
def test_hostile_cookie_bytes_get_a_fresh_id(libs, config, value):
    host, module = libs
    s = Stream(host, module, config)
    s.request([("cookie", value)])
    assert s.header(REQUEST, "x-rw-cluster") in ("web.prod.v1", "web.prod.v2")
    s.respond()
    assert s.headers(RESPONSE, "set-cookie")[0].startswith("rw_rid=1")


def test_refresh_header_and_forward_move(libs):
    host, module = libs
    host.fake_reset_all()
    cfg = config_new(module, b"rollway", json.dumps(make_config({"v1": 0, "v2": 5})).encode())
    try:
        s = Stream(host, module, cfg)
        s.request([("cookie", f"rw_rid={rollway.new_routing_id()}; rw_ver=v1"), ("x-app-version", "v1")])
        assert s.header(REQUEST, "x-rw-cluster") == "web.prod.v2"
        s.respond()
        assert s.header(RESPONSE, "x-rw-refresh") == "v2"
        assert host.fake_counter(b"refresh_signals") == 1
        assert host.fake_counter(b"unavailable_moves") == 1
    finally:
        module.envoy_dynamic_module_on_http_filter_config_destroy(cfg)


def test_no_capacity_removes_the_cluster_header(libs):
    host, module = libs
    host.fake_reset_all()
    cfg = config_new(module, b"rollway", json.dumps(make_config({"v1": 0, "v2": 0})).encode())
    assert cfg != ffi.NULL, ffi.string(host.fake_last_log())
    try:
        s = Stream(host, module, cfg)
        s.request([("x-rw-cluster", "web.prod.v1")])
        assert s.headers(REQUEST, "x-rw-cluster") == []
        assert host.fake_route_cache_clears() == 1
        s.respond()
        assert host.fake_counter(b"no_capacity") == 1
    finally:
        module.envoy_dynamic_module_on_http_filter_config_destroy(cfg)


def test_an_override_header_is_never_forwarded_and_an_unsigned_one_is_counted(libs, tmp_path):
    host, module = libs
    host.fake_reset_all()
    secrets = tmp_path / "secrets.json"
    secrets.write_text(json.dumps({"ops": "operator-secret-of-32-bytes-long"}))
    cfg = config_new(module, b"rollway", json.dumps(make_config(
        override={"key_id": "ops", "max_ttl_seconds": 600}, secrets_file=str(secrets))).encode())
    assert cfg != ffi.NULL, ffi.string(host.fake_last_log())
    try:
        s = Stream(host, module, cfg)
        s.request([("x-rw-override", f"version=v1;exp={int(time.time()) + 60}")])
        assert s.headers(REQUEST, "x-rw-override") == []
        s.respond()
        assert host.fake_counter(b"overrides_rejected") == 1
    finally:
        module.envoy_dynamic_module_on_http_filter_config_destroy(cfg)


def route_config_new(module, config: bytes):
    k1, name_buf = buf(b"rollway")
    k2, config_buf = buf(config)
    return module.envoy_dynamic_module_on_http_filter_per_route_config_new(name_buf, config_buf)


def test_several_services_each_route_names_its_own(libs):
    """One filter config for several services ({"services": [...]}): the route's per-route
    config ({"service": ...}) says whose a request is; each service has its own counters,
    cookie names and cookie Path. A route without one is not Rollway's and is left alone; a
    route naming a service the config lacks loses the cluster header (the 503 fallback)."""
    host, module = libs
    host.fake_reset_all()
    web = make_config()
    api = {**make_config(), "service": "api", "cookie_path": "/api",
           "routing_id": {"cookie": "rw_rid_api", "ttl_seconds": 600}, "version_cookie": "rw_ver_api",
           "stage_cookie": "rw_stage_api",
           "stages": [{"name": "prod", "weight": 1, "mode": "rolling",
                       "versions": [{"name": "a1", "capacity": 1, "cluster": "api.prod.a1"}]}]}
    cfg = config_new(module, b"rollway", json.dumps({"services": [web, api]}).encode())
    assert cfg != ffi.NULL, ffi.string(host.fake_last_log())
    routes = {name: route_config_new(module, json.dumps({"service": name}).encode()) for name in ("web", "api", "gone")}
    try:
        names = {ffi.string(host.fake_counter_name(i)).decode() for i in range(host.fake_defined_counters())}
        assert {"service.web.requests.stage.prod.version.v1", "service.api.requests.stage.prod.version.a1",
                "service.api.ids_minted", "unknown_services"} <= names
        host.fake_set_route_config(routes["api"])
        s = Stream(host, module, cfg)
        s.request([("x-rw-cluster", "web.prod.v1")])
        assert s.header(REQUEST, "x-rw-cluster") == "api.prod.a1"     # never the client's
        s.respond()
        cookies = s.headers(RESPONSE, "set-cookie")
        assert any(c.startswith("rw_rid_api=") and "; Path=/api;" in c for c in cookies), cookies
        assert host.fake_counter(b"service.api.requests.stage.prod.version.a1") == 1
        host.fake_set_route_config(routes["web"])
        s = Stream(host, module, cfg)
        s.request([])
        assert s.header(REQUEST, "x-rw-cluster") in ("web.prod.v1", "web.prod.v2")
        s.respond()
        assert any(c.startswith("rw_rid=") and "; Path=/;" in c for c in s.headers(RESPONSE, "set-cookie"))
        host.fake_set_route_config(ffi.NULL)                          # an operator's own route
        s = Stream(host, module, cfg)
        s.request([("x-rw-cluster", "web.prod.v1")])
        assert s.header(REQUEST, "x-rw-cluster") == "web.prod.v1" and host.fake_route_cache_clears() == 0
        s.respond()
        assert s.headers(RESPONSE, "set-cookie") == []
        host.fake_set_route_config(routes["gone"])
        s = Stream(host, module, cfg)
        s.request([("x-rw-cluster", "web.prod.v1")])
        assert s.header(REQUEST, "x-rw-cluster") is None and host.fake_counter(b"unknown_services") == 1
        s.respond()
    finally:
        host.fake_set_route_config(ffi.NULL)
        for route in routes.values():
            module.envoy_dynamic_module_on_http_filter_per_route_config_destroy(route)
        module.envoy_dynamic_module_on_http_filter_config_destroy(cfg)


@pytest.mark.parametrize("config,message", [
    ({"services": []}, b"services: must be a list"),
    ({"services": [make_config(), make_config()]}, b"'web' is listed twice"),
    ({"services": [make_config(), {**make_config(), "service": "api", "cookie_path": "/a;b"}]},
     b"services[1].cookie_path"),
    ({"services": [make_config({"v1": -1})]}, b"services[0].stages[0].versions[0].capacity"),
])
def test_a_bad_service_list_is_rejected_whole(libs, config, message):
    host, module = libs
    host.fake_reset_all()
    assert config_new(module, b"rollway", json.dumps(config).encode()) == ffi.NULL
    assert message in ffi.string(host.fake_last_log())


@pytest.mark.parametrize("config", [b"{}", b"[]", b"not json", b'{"service": 3}', b'{"service": ""}',
                                    b'{"service": "web", "extra": 1}'])
def test_a_bad_per_route_config_rejects_the_route_table(libs, config):
    host, module = libs
    assert route_config_new(module, config) == ffi.NULL
    assert b"per-route config rejected" in ffi.string(host.fake_last_log())


# ---- the cluster specifier: the decision while Envoy resolves the route ----

def specifier_new(module, config: bytes):
    k1, name_buf = buf(b"rollway")
    k2, config_buf = buf(config)
    return module.envoy_dynamic_module_on_cluster_specifier_config_new(ffi.cast("void*", 0x3), name_buf, config_buf)


@pytest.fixture
def specifier(libs):
    """The route's cluster specifier for "web", run by the fake host as Envoy runs it."""
    host, module = libs
    spec = specifier_new(module, b'{"service": "web"}')
    assert spec != ffi.NULL
    host.fake_set_specifier(ffi.cast("void*", ffi.addressof(module, "envoy_dynamic_module_on_cluster_specifier_select")),
                            spec)
    yield spec
    host.fake_set_specifier(ffi.NULL, ffi.NULL)
    module.envoy_dynamic_module_on_cluster_specifier_config_destroy(spec)


def resolved_stream(host, module, config, headers: list[tuple[str, str]]) -> tuple[Stream, bool]:
    """One request as Envoy 1.40 runs it: the route is resolved (the specifier selects), then
    the stream's filter is made and sees the request headers."""
    host.fake_reset_stream()
    for key, value in headers:
        host.fake_add_header(REQUEST, key.encode(), value.encode(), len(value.encode()))
    named = host.fake_resolve_route()
    stream = Stream.__new__(Stream)
    stream.host, stream.module = host, module
    stream.filter = module.envoy_dynamic_module_on_http_filter_new(config, ffi.cast("void*", 0x2))
    assert module.envoy_dynamic_module_on_http_filter_request_headers(ffi.cast("void*", 0x2), stream.filter, True) == 0
    return stream, named


def selected(host) -> str:
    return ffi.string(host.fake_selected_cluster()).decode()


def test_the_specifier_decides_at_route_resolution_and_the_filter_writes_that_decision(libs, config, specifier):
    host, module = libs
    s, named = resolved_stream(host, module, config, [("x-rw-cluster", "web.prod.v9")])   # a client's own value
    assert named and selected(host) in ("web.prod.v1", "web.prod.v2")
    assert s.headers(REQUEST, "x-rw-cluster") == [selected(host)]     # the check header: the cluster chosen
    assert host.fake_route_cache_clears() == 0                         # resolved once
    s.respond()
    rid = [c for c in s.headers(RESPONSE, "set-cookie") if c.startswith("rw_rid=")]
    assert len(rid) == 1 and host.fake_counter(b"ids_minted") == 1
    # The session returns: the same version, no cookie, still decided once.
    token = rid[0].split(";")[0]
    first = selected(host)
    s, _ = resolved_stream(host, module, config, [("cookie", token)])
    assert selected(host) == first and s.headers(REQUEST, "x-rw-cluster") == [first]
    s.respond()
    assert not any(c.startswith("rw_rid=") for c in s.headers(RESPONSE, "set-cookie"))
    assert host.fake_counter(b"decided_in_filter") == 0


def test_without_a_decision_from_the_specifier_the_filter_decides_and_the_route_follows_it(libs, config, specifier):
    """A stream whose filter finds nothing parked (its route was resolved before, by no
    specifier): the filter decides, writes the header, and has the route resolved again; the
    specifier then names the filter's cluster instead of deciding a second time."""
    host, module = libs
    host.fake_reset_stream()
    s = Stream(host, module, config)
    selections = host.fake_selections()
    s.request([("x-rw-cluster", "web.prod.v9")])
    cluster = s.header(REQUEST, "x-rw-cluster")
    assert cluster in ("web.prod.v1", "web.prod.v2")
    assert host.fake_route_cache_clears() == 1 and host.fake_selections() == selections + 1
    assert selected(host) == cluster
    assert host.fake_counter(b"decided_in_filter") == 1 and host.fake_counter(b"ids_minted") == 1
    s.respond()


def test_a_client_naming_a_real_cluster_gets_the_filters_own_decision_and_a_retry_keeps_its_version(
        libs, config, specifier):
    """The specifier keeps the cluster a request's cluster header names (a retry re-selecting
    after the filter wrote it). A client sending that header itself gets nothing parked: the
    filter decides and routes by its own decision, so the header never picks the cluster."""
    host, module = libs
    s, _ = resolved_stream(host, module, config, [])
    mine = selected(host)
    s.respond()
    token = [c for c in s.headers(RESPONSE, "set-cookie") if c.startswith("rw_rid=")][0].split(";")[0]
    other = "web.prod.v2" if mine == "web.prod.v1" else "web.prod.v1"
    s, named = resolved_stream(host, module, config, [("cookie", token), ("x-rw-cluster", other)])
    assert s.headers(REQUEST, "x-rw-cluster") == [mine] and selected(host) == mine
    assert host.fake_counter(b"decided_in_filter") == 1 and host.fake_route_cache_clears() == 1
    s.respond()
    # A retry re-selects the route of a request the filter has seen: same cluster, no decision.
    minted = host.fake_counter(b"ids_minted")
    s, _ = resolved_stream(host, module, config, [])
    first = selected(host)
    assert host.fake_resolve_route() and selected(host) == first
    assert host.fake_counter(b"ids_minted") == minted + 1
    s.respond()


def test_a_decision_no_filter_took_is_never_given_to_another_request(libs, config, specifier):
    """Envoy resolved a route but made no filter after it (or resolved it again for a stream
    whose filter exists): the next resolution frees that decision, and each stream gets the
    decision made for its own request."""
    host, module = libs
    host.fake_reset_stream()
    assert host.fake_resolve_route()                                   # parked, never taken: minted an id
    s, _ = resolved_stream(host, module, config, [("cookie", "rw_rid=garbage")])
    s.respond()
    assert host.fake_counter(b"bad_cookies.reason.malformed") == 1     # this request's own decision
    assert len([c for c in s.headers(RESPONSE, "set-cookie") if c.startswith("rw_rid=")]) == 1
    assert host.fake_counter(b"decided_in_filter") == 0


def test_the_specifier_follows_the_filter_config_updates(libs, specifier):
    """Each accepted filter config publishes its service; a newer one replaces it; one that
    goes away while newest leaves the specifier without a config (no cluster: 503). A stream
    whose filter config is not the one the specifier decided with decides again itself."""
    host, module = libs
    host.fake_reset_all()
    old = config_new(module, b"rollway", json.dumps(make_config({"v1": 1, "v2": 0})).encode())
    assert old != ffi.NULL
    host.fake_reset_stream()
    assert host.fake_resolve_route() and selected(host) == "web.prod.v1"
    new = config_new(module, b"rollway", json.dumps(make_config({"v1": 0, "v2": 1})).encode())
    assert new != ffi.NULL
    s, _ = resolved_stream(host, module, new, [])
    assert selected(host) == "web.prod.v2" and s.header(REQUEST, "x-rw-cluster") == "web.prod.v2"
    s.respond()
    s, _ = resolved_stream(host, module, old, [])                      # a stream of the old config
    assert s.header(REQUEST, "x-rw-cluster") == "web.prod.v1" and selected(host) == "web.prod.v1"
    assert host.fake_counter(b"decided_in_filter") == 1
    s.respond()
    module.envoy_dynamic_module_on_http_filter_config_destroy(new)
    host.fake_reset_stream()
    assert not host.fake_resolve_route() and selected(host) == ""     # the newest went: no config
    module.envoy_dynamic_module_on_http_filter_config_destroy(old)


def test_a_specifier_for_a_service_no_filter_config_has_names_no_cluster(libs, config):
    host, module = libs
    spec = specifier_new(module, b'{"service": "nobody"}')
    assert spec != ffi.NULL
    host.fake_set_specifier(ffi.cast("void*", ffi.addressof(module, "envoy_dynamic_module_on_cluster_specifier_select")),
                            spec)
    try:
        host.fake_reset_stream()
        assert not host.fake_resolve_route() and selected(host) == ""
    finally:
        host.fake_set_specifier(ffi.NULL, ffi.NULL)
        module.envoy_dynamic_module_on_cluster_specifier_config_destroy(spec)


@pytest.mark.parametrize("config", [b"{}", b"not json", b'{"service": 3}', b'{"service": "web", "x": 1}'])
def test_a_bad_specifier_config_rejects_the_route_table(libs, config):
    host, module = libs
    assert specifier_new(module, config) == ffi.NULL
    assert b"cluster specifier config rejected" in ffi.string(host.fake_last_log())
