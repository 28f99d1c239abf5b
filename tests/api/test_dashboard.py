"""The control plane's dashboard in a real browser (Debian's headless Chromium), and its
Prometheus metrics, with a real control plane, a real Envoy on ADS and real traffic."""

from __future__ import annotations

import html
import json
import re
import threading
import time
import urllib.error
import urllib.request

import pytest

from rollway.api.dashboard import DashboardServer
from rollway.envoy.bootstrap import ads_bootstrap
from rollway.plane.control_plane import ControlPlane
from rollway.sources.serverset import member_json
from rollway.sources.store import open_store
from rollway.tools.browser import rendered_dom, screenshot

from envoy_harness import Backends, EnvoyProcess, free_port, wait_until
from harness import Replica

pytestmark = [pytest.mark.envoy, pytest.mark.browser]

ROUTEMAP = {"service": "web", "stages": [
    {"name": "canary", "weight": 10, "mode": "rolling", "serverset": "/discovery/web/canary"},
    {"name": "prod", "weight": 90, "mode": "rolling", "serverset": "/discovery/web/prod"}]}


@pytest.fixture
def world(tmp_path):
    """A control plane on a file store with its xDS server and dashboard, one Envoy, and
    backends: prod v1 x2 + v2 x1, canary v2 x1."""
    replica = Replica(f"file://{tmp_path}/store", api=False, dashboard=True, sample_interval=0.5)
    store, plane, xds, dashboard = replica.store, replica.plane, replica.xds, replica.dashboard
    backends = Backends(["p1", "p2", "p3", "c1", "p4"])
    plane.push(ROUTEMAP, 0, "test", "dashboard test")
    handles = {name: store.announce(path, member_json(*backends.address(name), version))
               for name, path, version in [("p1", "/discovery/web/prod", "v1"), ("p2", "/discovery/web/prod", "v1"),
                                           ("p3", "/discovery/web/prod", "v2"), ("c1", "/discovery/web/canary", "v2")]}
    listen, admin = free_port(), free_port()
    envoy = EnvoyProcess(ads_bootstrap(xds_host="127.0.0.1", xds_port=xds.port, node_id="envoy-a",
                                       listen_port=listen, admin_port=admin), tmp_path, listen, admin).start()
    wait_until(lambda: envoy.get("/").status == 200, timeout=30, what="Envoy routing over ADS")
    world = {"store": store, "plane": plane, "xds": xds, "dashboard": dashboard, "envoy": envoy,
             "backends": backends, "handles": handles, "url": f"http://127.0.0.1:{dashboard.port}/"}
    yield world
    envoy.stop()
    for handle in handles.values():
        handle.close()
    replica.close()
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
    wait_until(lambda: world["plane"].filter_config("web").to_json()["stages"][1]["direction"]["state"] == "forward",
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
    """Every sample of /metrics, keyed `name{label="value",...}` with the labels sorted."""
    from prometheus_client.parser import text_string_to_metric_families

    text = urllib.request.urlopen(url + "metrics", timeout=5).read().decode()
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            out[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
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
    assert m['rollway_envoy_behind_seconds{node="envoy-a",service="web"}'] == 0   # it ACKed everything
    assert m['rollway_envoy_last_ack_latency_seconds{node="envoy-a",service="web"}'] > 0
    before = m['rollway_xds_pushes_total{type="ClusterLoadAssignment"}']
    world["handles"]["p2"].close()     # a serverset change: a new EDS push
    wait_until(lambda: metrics(world["url"])['rollway_xds_pushes_total{type="ClusterLoadAssignment"}'] > before,
               what="an EDS push to be counted")
    state = json.loads(urllib.request.urlopen(world["url"] + "api/state", timeout=5).read())
    assert state["xds"]["pushes"]["ClusterLoadAssignment"] > before


def test_metrics_are_valid_prometheus_text_and_health_and_readiness_answer(world):
    from prometheus_client.parser import text_string_to_metric_families

    text = urllib.request.urlopen(world["url"] + "metrics", timeout=5).read().decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert families["rollway_xds_pushes"].type == "counter"          # exposed as rollway_xds_pushes_total
    assert families["rollway_store_up"].type == "gauge"
    assert "process_cpu_seconds" in families                          # the process's own collector
    m = metrics(world["url"])
    assert m["rollway_ready"] == 1 and m['rollway_admission_held_versions{service="web"}'] == 0
    health = urllib.request.urlopen(world["url"] + "healthz", timeout=5)
    ready = urllib.request.urlopen(world["url"] + "readyz", timeout=5)
    assert (health.status, ready.status, ready.read()) == (200, 200, b"ready\n")


def test_counters_print_exactly_not_rounded():
    """`{value:g}` printed 1,234,567 as 1.23457e+06; the collector's output keeps every digit."""
    from types import SimpleNamespace

    from rollway.api.dashboard import prometheus_text

    plane = SimpleNamespace(store=SimpleNamespace(state="connected"), service_names=list, service=None, broken={})
    cache = SimpleNamespace(pushes={"Listener": 1_234_567}, nack_total=0, consistency_failures=0, build_failures={})
    text = prometheus_text(plane, cache)
    value = next(line.rsplit(" ", 1)[1] for line in text.splitlines()
                 if line.startswith('rollway_xds_pushes_total{type="Listener"}'))
    assert float(value) == 1_234_567


@pytest.mark.zookeeper
def test_readyz_follows_zookeeper_while_healthz_stays_alive(tmp_path):
    """ZooKeeper lost: the replica is alive (/healthz 200) but not ready (/readyz 503, naming
    the store), and rollway_store_up drops to 0; ZooKeeper back: ready again."""
    from zk_harness import ZooKeeperServer

    zk = ZooKeeperServer(tmp_path / "zk").start()
    store = open_store(f"zk://{zk.hosts}/rollway", session_timeout=2.0)
    store.start()
    plane = ControlPlane(store, debounce=0.02)
    plane.start()
    dashboard = DashboardServer(plane, None, port=free_port())
    url = f"http://127.0.0.1:{dashboard.port}/"

    def readyz() -> tuple[int, str]:
        try:
            answer = urllib.request.urlopen(url + "readyz", timeout=5)
            return answer.status, answer.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()

    try:
        assert readyz()[0] == 503 and "no route map loaded" in readyz()[1]
        plane.push(ROUTEMAP, 0, "test", "readiness")
        wait_until(lambda: readyz() == (200, "ready\n"), timeout=30, what="ready with ZooKeeper up")
        zk.stop()
        wait_until(lambda: readyz()[0] == 503, timeout=30, what="not ready without ZooKeeper")
        assert "store " in readyz()[1]
        assert urllib.request.urlopen(url + "healthz", timeout=5).status == 200
        assert metrics(url)["rollway_store_up"] == 0 and metrics(url)["rollway_ready"] == 0
        zk.start()
        wait_until(lambda: readyz() == (200, "ready\n"), timeout=60, what="ready again with ZooKeeper back")
    finally:
        dashboard.stop()
        plane.stop()
        store.stop()
        zk.stop()


def test_every_metric_the_ops_bundle_reads_exists_in_real_scrapes(world):
    """The rules and the dashboard (rollway.ops) read metrics by name: each exists in this
    control plane's /metrics or in the real Envoy's /stats/prometheus, where the bootstrap's
    stats_tags turn the filter's per-version counters into labels."""
    from ops_metrics import referenced_metrics

    world["envoy"].get("/")
    control = urllib.request.urlopen(world["url"] + "metrics", timeout=5).read().decode()
    status, envoy_text = world["envoy"].admin("/stats/prometheus")
    assert status == 200
    assert re.search(r'^envoy_rollway_requests\{[^}]*rollway_stage="(prod|canary)"[^}]*rollway_version="v[12]"', envoy_text, re.M), \
        envoy_text[:3000]
    scraped = control + "\n" + envoy_text      # sample lines, and # TYPE lines of families with none yet
    exposed = set(re.findall(r"^([a-z_:][a-z0-9_:]*)", scraped, re.M)) | set(re.findall(r"^# TYPE (\S+)", scraped, re.M))
    missing = sorted(referenced_metrics() - exposed)
    assert not missing, f"the ops bundle reads metrics nobody exposes: {missing}"
