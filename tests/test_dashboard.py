"""The control plane's dashboard in a real browser (Debian's headless Chromium), and its
Prometheus metrics, with a real control plane, a real Envoy on ADS and real traffic."""

from __future__ import annotations

import html
import json
import re
import threading
import time
import urllib.request

import pytest

from rollway.api.dashboard import DashboardServer, rendered_dom, screenshot
from rollway.envoy.bootstrap import ads_bootstrap
from rollway.plane.control_plane import ControlPlane
from rollway.sources.serverset import member_json
from rollway.sources.store import open_store
from rollway.xds.server import XdsThread

from envoy_harness import Backends, EnvoyProcess, free_port, wait_until

ROUTEMAP = {"service": "web", "stages": [
    {"name": "canary", "weight": 10, "mode": "rolling", "serverset": "/discovery/web/canary"},
    {"name": "prod", "weight": 90, "mode": "rolling", "serverset": "/discovery/web/prod"}]}


@pytest.fixture
def world(tmp_path):
    """A control plane on a file store with its xDS server and dashboard, one Envoy, and
    backends: prod v1 x2 + v2 x1, canary v2 x1."""
    store = open_store(f"file://{tmp_path}/store")
    store.start()
    backends = Backends(["p1", "p2", "p3", "c1", "p4"])
    plane = ControlPlane(store, debounce=0.02)
    plane.start()
    plane.push(ROUTEMAP, 0, "test", "dashboard test")
    handles = {name: store.announce(path, member_json(*backends.address(name), version))
               for name, path, version in [("p1", "/discovery/web/prod", "v1"), ("p2", "/discovery/web/prod", "v1"),
                                           ("p3", "/discovery/web/prod", "v2"), ("c1", "/discovery/web/canary", "v2")]}
    xds = XdsThread(plane, 0)
    dashboard = DashboardServer(plane, xds.xds.cache, port=free_port(), sample_interval=0.5)
    listen, admin = free_port(), free_port()
    envoy = EnvoyProcess(ads_bootstrap(xds_host="127.0.0.1", xds_port=xds.port, node_id="envoy-a",
                                       listen_port=listen, admin_port=admin), tmp_path, listen, admin).start()
    wait_until(lambda: envoy.get("/").status == 200, timeout=30, what="Envoy routing over ADS")
    world = {"store": store, "plane": plane, "xds": xds, "dashboard": dashboard, "envoy": envoy,
             "backends": backends, "handles": handles, "url": f"http://127.0.0.1:{dashboard.port}/"}
    yield world
    envoy.stop()
    dashboard.stop()
    xds.stop()
    for handle in handles.values():
        handle.close()
    plane.stop()
    store.stop()
    backends.close()


@pytest.fixture
def traffic(world):
    """Requests through the Envoy in the background, as long as the test runs."""
    stop = threading.Event()
    statuses: list[int] = []

    def browse():
        while not stop.is_set():
            statuses.append(world["envoy"].get("/").status)

    thread = threading.Thread(target=browse, daemon=True)
    thread.start()
    time.sleep(3.0)       # the sampler reads the Envoy's counters twice a second
    yield statuses
    stop.set()
    thread.join(10)


def text_of(dom: str, attribute: str, key: str) -> str:
    match = re.search(rf'{attribute}="{re.escape(key)}"[^>]*>(.*?)</(?:span|td|tr)>', dom, re.S)
    assert match, f"no element with {attribute}={key!r} in the rendered page"
    return html.unescape(re.sub(r"<[^>]+>", "", match.group(1))).strip()


def test_the_dashboard_shows_capacity_direction_envoys_and_live_traffic_in_chromium(world, traffic, tmp_path):
    dom = rendered_dom(world["url"])
    assert "route map revision 1" in text_of(dom, "data-revision", "web")
    assert text_of(dom, "data-capacity", "prod:v1") == "capacity 2 · 67%"
    assert text_of(dom, "data-capacity", "prod:v2") == "capacity 1 · 33%"
    assert text_of(dom, "data-capacity", "canary:v2") == "capacity 1 · 100%"
    assert text_of(dom, "data-direction", "prod") in {"steady", "forward → v2"}
    # The Envoy's row shows the filter-config version it really ACKed.
    acked = world["xds"].xds.cache.envoy_status("web")[0]["acked"]["TypedExtensionConfig"]
    assert text_of(dom, "data-ecds", "envoy-a") == acked[:10]
    # Live traffic from the Envoy's own counters: both prod versions and the canary.
    rates = {key: float(text_of(dom, "data-rate", key).split(": ")[1].split()[0])
             for key in ("prod:v1", "prod:v2", "canary:v2")}
    assert all(rate > 0 for rate in rates.values()), rates

    # The page follows the control plane: a host moves prod:v1 -> v2, and the page shows it.
    world["handles"]["p1"].close()
    world["handles"]["p4"] = world["store"].announce("/discovery/web/prod",
                                                     member_json(*world["backends"].address("p4"), "v2"))
    wait_until(lambda: world["plane"].filter_config("web")["stages"][1]["direction"]["state"] == "forward",
               what="the direction to turn forward")
    dom = rendered_dom(world["url"])
    assert text_of(dom, "data-capacity", "prod:v1") == "capacity 1 · 33%"
    assert text_of(dom, "data-capacity", "prod:v2") == "capacity 2 · 67%"
    assert text_of(dom, "data-direction", "prod") == "forward → v2"

    shot = tmp_path / "dashboard.png"
    screenshot(world["url"], str(shot))
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
    assert traffic and set(traffic) == {200}


def metrics(url: str) -> dict[str, float]:
    text = urllib.request.urlopen(url + "metrics", timeout=5).read().decode()
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def test_prometheus_metrics_report_pushes_store_capacity_and_envoy_lag(world):
    m = metrics(world["url"])
    assert m["rollway_store_up"] == 1 and m['rollway_store_state{state="connected"}'] == 1
    assert m['rollway_xds_pushes_total{type="TypedExtensionConfig"}'] >= 1
    assert m['rollway_xds_pushes_total{type="Listener"}'] >= 1
    assert m["rollway_xds_nacks_total"] == 0
    assert m['rollway_envoys_connected{service="web"}'] == 1
    assert m['rollway_capacity{service="web",stage="prod",version="v1"}'] == 2
    assert m['rollway_members{service="web",stage="canary",version="v2"}'] == 1
    assert m['rollway_routemap_revision{service="web"}'] == 1
    assert m['rollway_envoy_behind_seconds{service="web",node="envoy-a"}'] == 0   # it ACKed everything
    assert m['rollway_envoy_last_ack_latency_seconds{service="web",node="envoy-a"}'] > 0
    before = m['rollway_xds_pushes_total{type="ClusterLoadAssignment"}']
    world["handles"]["p2"].close()     # a serverset change: a new EDS push
    wait_until(lambda: metrics(world["url"])['rollway_xds_pushes_total{type="ClusterLoadAssignment"}'] > before,
               what="an EDS push to be counted")
    state = json.loads(urllib.request.urlopen(world["url"] + "api/state", timeout=5).read())
    assert state["xds"]["pushes"]["ClusterLoadAssignment"] > before
