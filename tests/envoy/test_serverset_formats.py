"""Serversets as real writers write them (issue 29), routed by a stock Envoy through a rolling
deploy: kazoo's ``ShallowParty`` (Pinterest's kingpin) and ``Party``, Aurora's announcer
(Finagle JSON without ``metadata``, the build in the path) and Curator's service discovery
(JSON, the build in the payload), each writing to a real ZooKeeper with its own client, as
the writer's library does; Rollway reads them through the route map's
``serverset: {path, format, version}``."""

from __future__ import annotations

import json
import time
import uuid

import pytest
from kazoo.client import KazooClient
from kazoo.recipe.party import Party, ShallowParty

from rollway.envoy import bootstrap as ec
from rollway.tools.session import BrowserSession

from conftest import wait_for
from envoy_harness import Backends, EnvoyProcess, free_port
from harness import Replica, fleet_holds

pytestmark = [pytest.mark.envoy, pytest.mark.zookeeper]
HOSTS = 4
SESSIONS = 100
BASE = "/discovery/web/prod"


class Writer:
    """One member per (version, host) written as ``kind``'s library writes it."""

    def __init__(self, client: KazooClient, kind: str):
        self.client, self.kind = client, kind
        self.members: dict[tuple[str, int], object] = {}

    def join(self, version: str, port: int) -> None:
        where = f"{BASE}/{version}"
        if self.kind in ("shallow_party", "party"):
            party = (ShallowParty if self.kind == "shallow_party" else Party)(self.client, where,
                                                                             identifier=f"127.0.0.1:{port}")
            party.join()
            self.members[(version, port)] = party
        elif self.kind == "aurora":
            # Aurora's announcer: Finagle's document, no metadata map; the build is the path.
            data = json.dumps({"serviceEndpoint": {"host": "127.0.0.1", "port": port}, "additionalEndpoints": {},
                               "status": "ALIVE", "shard": port % 7}).encode()
            self.members[(version, port)] = self.client.create(f"{where}/member_", data, ephemeral=True,
                                                               sequence=True, makepath=True)
        else:
            # Curator's ServiceDiscovery: basePath/name/id, the instance as JSON, the build in the payload.
            instance = str(uuid.uuid4())
            data = json.dumps({"name": "prod", "id": instance, "address": "127.0.0.1", "port": port,
                               "sslPort": None, "payload": {"@class": "com.example.Build", "version": version},
                               "registrationTimeUTC": int(time.time() * 1000), "serviceType": "DYNAMIC",
                               "uriSpec": {"parts": [{"value": "scheme", "variable": True}]}}).encode()
            self.members[(version, port)] = self.client.create(f"{BASE}/{instance}", data, ephemeral=True,
                                                               makepath=True)

    def leave(self, version: str, port: int) -> None:
        member = self.members.pop((version, port))
        if isinstance(member, (Party, ShallowParty)):
            member.leave()
        else:
            self.client.delete(str(member))


SPECS = {
    "shallow_party": {"path": BASE, "format": "party", "version": "path"},
    "party": {"path": BASE, "format": "party", "version": "path"},
    "aurora": {"path": BASE, "format": "finagle", "version": "path"},
    "curator": {"path": BASE, "format": "curator", "version": "payload:version"},
}


@pytest.fixture
def edge(tmp_path, zookeeper):
    chroot = f"/t-{uuid.uuid4().hex[:10]}"
    replica = Replica(f"zk://{zookeeper.hosts}{chroot}")     # its store makes the chroot
    writer_client = KazooClient(hosts=f"{zookeeper.hosts}{chroot}")
    writer_client.start(timeout=15)
    backends = Backends([f"{v}#{i}" for v in ("v1", "v2") for i in range(HOSTS)])
    listen, admin = free_port(), free_port()
    envoy = EnvoyProcess(ec.ads_bootstrap(xds_host="127.0.0.1", xds_port=replica.xds.port, node_id="edge-1",
                                          listen_port=listen, admin_port=admin), tmp_path, listen, admin)
    yield writer_client, replica, backends, envoy
    envoy.stop()
    replica.close()
    backends.close()
    writer_client.stop()
    writer_client.close()


@pytest.mark.parametrize("kind", sorted(SPECS))
def test_a_real_writers_serverset_is_routed_through_a_rolling_deploy_without_a_bounce(edge, kind):
    client, replica, backends, envoy = edge
    writer = Writer(client, kind)
    replica.plane.push(json.dumps({"service": "web", "stages": [
        {"name": "prod", "weight": 1, "mode": "rolling", "serverset": SPECS[kind]}]}), 0, "alice", kind)
    ports = {name: backends.address(name)[1] for name in backends.servers}
    for i in range(HOSTS):
        writer.join("v1", ports[f"v1#{i}"])
    envoy.start()
    sessions = [BrowserSession() for _ in range(SESSIONS)]
    for step in range(HOSTS + 1):          # v2 replaces v1 one host at a time
        if step:
            writer.join("v2", ports[f"v2#{step - 1}"])
            writer.leave("v1", ports[f"v1#{step - 1}"])
        want = {v: float(n) for v, n in (("v1", HOSTS - step), ("v2", step)) if n}
        wait_for(lambda want=want: fleet_holds(replica.plane, "web", want, envoys=1), timeout=30,
                 what=f"{kind}: step {step} ({want}) in the Envoy's config")
        for _ in range(2):
            for session in sessions:
                response = envoy.get("/", session.headers())
                backend = response.json["backend"] if response.status == 200 else None
                session.answered(response.status, response.headers, backend.split("#")[0] if backend else None)
    assert sum(s.errors for s in sessions) == 0
    assert sum(s.bounces for s in sessions) == 0, "a session went back to a version it had left"
    assert all(s.last == "v2" for s in sessions)
    assert all(s.moves == 1 for s in sessions), "every session moves v1 -> v2 exactly once"
