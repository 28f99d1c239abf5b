"""Rolling deploys of two apps across a fleet of hosts, with faults during them.

Every part is its own host (a network namespace with its own address and names, see
netns.py): a ZooKeeper ensemble of three, two control-plane replicas serving xDS and the
operator API over TLS (xDS with client certificates), three Envoys fed over ADS by name
with the other replica as failover, eight app hosts announcing themselves, a browser host
with 200 sessions sending real HTTP to the Envoys, and a deploy tool that rolls v1 -> v2
two hosts at a time, draining each host and waiting for the deploy gate. The Envoys front
two services (issue 27): ``web`` and ``api`` (its own host name, ``api.fleet.test``); every
app host runs both, and each batch deploys both at once (web v1 -> v2, api a1 -> a2), so the
two services' deploys overlap all the way, under the same faults; 100 more sessions call api.
Then the tool deploys a bad third build (web v3, failing 30 % of requests) to two hosts,
while the leader is SIGKILLed again and a ZooKeeper server stops: the route map's guard
halts it and turns the deploy back, ``deploy wait`` exits 1 naming it, the tool puts v2
back, and every session that reached v3 returns once.

During the deploy: the control-plane leader is SIGKILLed (and restarted later); a
ZooKeeper server is stopped and later restarted; one Envoy's link to the control plane is
cut for 20 s and restored; one app host vanishes without deregistering.

Asserted: each fault's effect seen (the survivor leads, zk2 answers nothing, env2 seen
cut off, app2's member gone), every Envoy converged after each fault within its stated
bound (``BOUNDS``, printed beside what it took), 0 bounces, at most one reload per session,
every session on v2 at the end, no failed request but those in flight on app2 when it
vanished (at most two per Envoy; each listed with why), every Envoy
on the same final config after its link returns, and every process exiting on SIGTERM with
the code it should, nothing left running. The table it prints is the README's
"Faults during a deploy". ``make fleet-test`` runs this file alone.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

sys.path[:0] = [str(Path(__file__).parent), str(Path(__file__).parent.parent)]
from netns import Network

from conftest import wait_for
from pki import CA
from zk_harness import CLASSPATH, tls_config

pytestmark = [pytest.mark.fleet, pytest.mark.envoy, pytest.mark.zookeeper]

HERE = Path(__file__).parent
ZK = [f"zk{i}" for i in (1, 2, 3)]
CPS = ["cp1", "cp2"]
ENVOYS = ["env1", "env2", "env3"]
APPS = [f"app{i}" for i in range(1, 9)]
# ZooKeeper locked down (issue 29): clients over TLS on 2281 with certificates, Rollway's
# znodes writable by the control plane's identity only, the serversets by the hosts'. The
# plaintext port stays for ZooKeeper's ruok probes and to show what a stranger gets.
STORE = "zk+tls://" + ",".join(f"{z}:2281" for z in ZK) + "/rollway"
ZK_PLAINTEXT = ",".join(f"{z}:2181" for z in ZK)
IDENTITIES = {"cp": ("rollway-cp", "fleet-cp-5b9e1c"), "hosts": ("web-hosts", "fleet-hosts-c4d27a")}
SERVERS = ",".join(f"{cp}:7700" for cp in CPS)
PATH = "/discovery/web/prod"
# The guard judges sooner than by default (200 requests a side): the browsers send about 70
# requests a second to web, a quarter of them to the bad build's two hosts.
ROUTEMAP = {"service": "web", "guard": {"action": "rollback", "min_requests": 200},
            "stages": [{"name": "prod", "weight": 100, "mode": "rolling", "serverset": PATH}]}
API_PATH = "/discovery/api/prod"
API_HOST = "api.fleet.test"
API_ROUTEMAP = {"service": "api", "domains": [API_HOST],
                "stages": [{"name": "prod", "weight": 100, "mode": "rolling", "serverset": API_PATH}]}
API_PORT = 8081
API_VERSION = {"v1": "a1", "v2": "a2", "v3": "a2"}   # api's version on a host that runs this web version
BAD = "v3"                  # the bad third build: answers BAD_PERCENT % of requests with a 500
BAD_PERCENT = 30
BAD_HOSTS = ["app1", "app3"]
SERVICES = "web,api"
ZK_CLASSPATH = CLASSPATH            # the packaged jars, Netty's for TLS among them
SESSIONS = 200
API_SESSIONS = 100
PY = sys.executable
# How soon every Envoy is connected, in the quorum and on the newest config after each fault
# (README, "Faults during a deploy"): the stated bounds, each the deadline its wait is given.
# A killed leader: its ZooKeeper session (4 s here) ends, the survivor's campaign wins, and
# the dead replica's Envoys fail over (HTTP/2 keepalive, backoff capped at 3 s). A stopped
# ZooKeeper server: the replicas' sessions move to another. A cut link: the capped backoff
# and a resync. A vanished host: its member's session expires (10 s), then a debounce.
BOUNDS = {"leader": 30.0, "zk": 20.0, "cut": 20.0, "spot": 60.0}
# What each process of the fleet exits with on SIGTERM: 0, except the JVM, which runs its
# shutdown hooks and exits 128 + 15.
EXIT_ON_SIGTERM = {"zk": 143}
ROLLWAY = [PY, "-m", "rollway.cli.main"]


class Fleet:
    def __init__(self, workdir: Path):
        self.dir = workdir
        self.events: list[dict] = []          # the faults, with their times
        self.t0 = time.time()
        self.net = Network([*ZK, *CPS, *ENVOYS, *APPS, "browser", "deployer"])
        self.procs: dict[str, subprocess.Popen] = {}
        self.env = {**os.environ, "PYTHONPATH": str(HERE), "SE_OFFLINE": "true"}
        ca = CA(workdir / "pki")
        self.ca = ca.cert
        self.certs = {cp: ca.issue(cp, dns=(cp,), ips=(self.net.address[cp],)) for cp in CPS}
        self.certs.update({e: ca.issue(e, client=True) for e in ENVOYS})
        self.zk_certs = {z: ca.issue(z, dns=(z,), ips=(self.net.address[z],)) for z in ZK}
        self.zk_clients = {who: ca.issue(f"{who}-zk", client=True) for who in IDENTITIES}
        for who, (user, password) in IDENTITIES.items():
            auth = workdir / f"{who}.auth"
            auth.write_text(f"{user}:{password}\n")
            auth.chmod(0o600)
        self.token = workdir / "token"
        self.token.write_text("fleet-operator-token\n")

    def zk_flags(self, who: str) -> list[str]:
        """A store client's identity (``cp`` or ``hosts``) and TLS to the ensemble."""
        cert = self.zk_clients[who]
        return ["--zk-auth-file", str(self.dir / f"{who}.auth"), "--zk-tls-ca", self.ca, "--zk-tls-cert", cert.cert,
                "--zk-tls-key", cert.key]

    def log(self, name: str) -> Path:
        return self.dir / f"{name}.log"

    def spawn(self, key: str, host: str, argv: list[str]) -> subprocess.Popen:
        proc = self.net.spawn(host, argv, self.log(key), env=self.env)
        self.procs[key] = proc
        return proc

    def run(self, host: str, argv: list[str], timeout: float = 120, check: bool = True) -> str:
        result = self.net.run(host, argv, timeout=timeout, env=self.env)
        if check and result.returncode != 0:
            raise AssertionError(f"{' '.join(argv[:6])} on {host} failed: {result.stdout}{result.stderr}")
        return result.stdout

    def probe(self, *args: str, timeout: float = 120) -> str:
        return self.run("deployer", [PY, str(HERE / "probe.py"), *args], timeout=timeout)

    def mark(self, what: str, **extra) -> None:
        self.events.append({"t": time.time(), "what": what, **extra})

    # -- parts ---------------------------------------------------------------------------

    def start_zookeeper(self, name: str) -> None:
        index = ZK.index(name) + 1
        data = self.dir / name
        data.mkdir(exist_ok=True)
        (data / "myid").write_text(f"{index}\n")
        config = data / "zoo.cfg"
        config.write_text(
            f"tickTime=500\ninitLimit=20\nsyncLimit=10\ndataDir={data}\nclientPort=2181\n"
            "admin.enableServer=false\n4lw.commands.whitelist=ruok,srvr\nquorumListenOnAllIPs=true\n"
            "minSessionTimeout=1000\nmaxSessionTimeout=30000\nsecureClientPort=2281\n"
            + tls_config(self.zk_certs[name].cert, self.zk_certs[name].key, self.ca, data / "keystore.pem")
            + "".join(f"server.{i + 1}={z}:2888:3888\n" for i, z in enumerate(ZK)))
        self.spawn(name, name, [shutil.which("java") or "java", "-Xmx128m", "-cp", ZK_CLASSPATH,
                                f"-Dzookeeper.log.dir={data}", "org.apache.zookeeper.server.quorum.QuorumPeerMain",
                                str(config)])

    def start_replica(self, cp: str) -> None:
        cert = self.certs[cp]
        self.spawn(cp, cp, [*ROLLWAY, "serve", "--store", STORE, *self.zk_flags("cp"), "--replica-id", cp,
                            "--api-host", "0.0.0.0",
                            "--xds-host", "0.0.0.0", "--http-port", "7780", "--token-file", str(self.token),
                            "--tls-cert", cert.cert, "--tls-key", cert.key, "--tls-client-ca", self.ca,
                            "--session-timeout", "4", "--ack-timeout", "10", "--startup-grace", "2",
                            "--debounce", "0.2"])

    def start_app(self, app: str, version: str) -> None:
        """The host's two apps: web ``version`` on 8080 (the bad build failing), api's
        matching version on 8081."""
        address = self.net.address[app]
        api = API_VERSION[version]
        self.spawn(f"{app}-server", app, [PY, str(HERE / "app.py"), "--version", version, "--host", app,
                                          "--fail-percent", str(BAD_PERCENT if version == BAD else 0)])
        self.spawn(f"{app}-api-server", app, [PY, str(HERE / "app.py"), "--version", api, "--host", app,
                                              "--port", str(API_PORT)])
        self.probe("http", f"http://{app}:8080/", "--timeout", "30")
        self.probe("http", f"http://{app}:{API_PORT}/", "--timeout", "30")
        self.spawn(f"{app}-announce", app, [*ROLLWAY, "serverset", "announce", "--store", STORE,
                                            *self.zk_flags("hosts"), "--path", PATH,
                                            "--host", address, "--port", "8080", "--version", version])
        self.spawn(f"{app}-api-announce", app, [*ROLLWAY, "serverset", "announce", "--store", STORE,
                                                *self.zk_flags("hosts"), "--path",
                                                API_PATH, "--host", address, "--port", str(API_PORT), "--version",
                                                api])

    def stop_app(self, app: str) -> None:
        for part in ("announce", "api-announce", "server", "api-server"):
            proc = self.procs.pop(f"{app}-{part}")
            proc.send_signal(signal.SIGTERM)
            proc.wait(15)

    def start_envoy(self, envoy: str) -> None:
        index = ENVOYS.index(envoy)
        preferred = CPS[index % 2], CPS[(index + 1) % 2]
        cert = self.certs[envoy]
        bootstrap = subprocess.run(
            [*ROLLWAY, "envoy-config", "--ads", "--xds", f"{preferred[0]}:18000", "--xds", f"{preferred[1]}:18000",
             "--node-id", envoy, "--service", "web", "--service", "api", "--listen", "0.0.0.0:10000",
             "--xds-tls-ca", self.ca, "--xds-tls-cert",
             cert.cert, "--xds-tls-key", cert.key], capture_output=True, text=True, check=True).stdout
        path = self.dir / f"{envoy}.json"
        path.write_text(bootstrap)
        self.spawn(envoy, envoy, [*ROLLWAY, "envoy-run", "--", "-c", str(path), "--base-id", str(100 + index),
                                  "-l", "warning", "--drain-time-s", "1", "--concurrency", "1"])

    def operator(self, *args: str, timeout: float = 90) -> str:
        """An operator or deploy-tool command against whichever replica answers."""
        errors = []
        for attempt in range(6):
            server = CPS[attempt % 2]
            result = self.net.run("deployer", [*ROLLWAY, *args, "--server", f"{server}:7700", "--tls-ca", self.ca],
                                  timeout=timeout, env=self.env)
            if result.returncode == 0:
                return result.stdout
            errors.append(f"{server}: {result.stderr.strip()[-300:]}")
            time.sleep(1)
        raise AssertionError(f"rollway {' '.join(args[:3])} failed on every replica: {errors}")

    def converged(self, timeout: float = 90, newer_than: int = -1, not_on: str = "") -> dict:
        return json.loads(self.probe("converged", SERVERS, self.ca, "--timeout", str(timeout),
                                     "--newer-than", str(newer_than), "--not-on", not_on, "--services", SERVICES,
                                     timeout=timeout + 30))

    def leader(self) -> str:
        return self.probe("leader", SERVERS, self.ca).strip()

    def terminate(self, key: str, timeout: float = 20) -> int | None:
        """SIGTERM to one process the test started; its exit code (None: it did not exit)."""
        proc = self.procs[key]
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        return self.exit_code(key, timeout)

    def exit_code(self, key: str, timeout: float = 20) -> int | None:
        try:
            return self.procs[key].wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def terminate_all(self) -> dict[str, int | None]:
        """One SIGTERM to every process still running, then each one's exit code. (One: a
        second SIGTERM reaching a Python process while it finalizes, its handlers already
        reset, kills it with the signal: CI saw -15.)"""
        running = [key for key, proc in self.procs.items() if proc.poll() is None]
        for key in running:
            self.procs[key].send_signal(signal.SIGTERM)
        return {key: self.exit_code(key) for key in running}



class Checked(threading.Thread):
    """A fault's thread whose failure the test sees: ``finish`` joins it and raises what it
    raised (a daemon thread would otherwise swallow it)."""

    def __init__(self, target) -> None:
        super().__init__(daemon=True)
        self.target, self.error = target, None

    def run(self) -> None:
        try:
            self.target()
        except BaseException as error:   # noqa: BLE001 -- handed to the test's thread
            self.error = error

    def finish(self, timeout: float, what: str) -> None:
        self.join(timeout)
        assert not self.is_alive(), f"{what} did not finish within {timeout} s"
        if self.error is not None:
            raise AssertionError(f"{what} failed: {self.error!r}") from self.error

def deploy_host(fleet: Fleet, app: str, version: str = "v2") -> None:
    """Both apps of the host at once: each drained through its own service's gate."""
    fleet.operator("serverset", "drain", "--store", STORE, *fleet.zk_flags("hosts"), "--path", PATH,
                   "--host", fleet.net.address[app],
                   "--port", "8080", "--service", "web", "--timeout", "60", "--drain-timeout", "10")
    fleet.operator("serverset", "drain", "--store", STORE, *fleet.zk_flags("hosts"), "--path", API_PATH,
                   "--host", fleet.net.address[app],
                   "--port", str(API_PORT), "--service", "api", "--timeout", "60", "--drain-timeout", "10")
    fleet.stop_app(app)
    fleet.start_app(app, version)


def analyse(lines: list[dict], events: list[dict], deploy_end: float) -> dict:
    """Bounces counted strictly: a return to a version the session had left, but the one
    return from the halted bad build that its rollback owes each session. Reloads per
    rollout: v1 -> v2, then v2 -> v3 and v3 -> v2 (each at most one per session). The bad
    build's 500s are listed apart from failed requests."""
    by_session: dict[int, list[dict]] = {}
    for r in sorted(lines, key=lambda r: r["t"]):
        by_session.setdefault(r["session"], []).append(r)
    bounces, refreshes, bounce_times = 0, {}, []
    for session, records in by_session.items():
        left: set[str] = set()
        current, owed = None, True
        for r in records:
            if r.get("status") != 200:
                continue
            v = r["version"]
            if r.get("refresh"):
                key = (session, v, BAD in left or current == BAD)     # onto v2 again after v3: the rollback's
                refreshes[key] = refreshes.get(key, 0) + 1
            if current is not None and v != current:
                if v in left and not (current == BAD and owed):
                    bounces += 1
                    bounce_times.append(r["t"])
                elif v in left:
                    owed = False
                left.add(current)
            current = v
    bad_errors = [r for r in lines if r.get("status") == 500 and f'"version": "{BAD}"' in r.get("body", "")]
    failed = [r for r in lines if r.get("status") != 200 and r not in bad_errors]
    final = {s: next((r["version"] for r in reversed(rs) if r.get("status") == 200), None)
             for s, rs in by_session.items()}
    return {"requests": len(lines), "failed": failed, "bounces": bounces, "bounce_times": bounce_times,
            "refreshes_max": max(refreshes.values(), default=0), "sessions_refreshed": len({k[0] for k in refreshes}),
            "final": final, "sessions": len(by_session), "bad_errors": bad_errors,
            "sessions_met_bad": len({r["session"] for r in bad_errors}),
            "back_from_bad": len({k[0] for k in refreshes if k[1] == "v2" and k[2]})}


def deploy_a_bad_build(fleet: Fleet, fault) -> dict:
    """A third build, failing BAD_PERCENT % of its requests, deployed to BAD_HOSTS after v2,
    under faults again: the leader is SIGKILLed as the first bad host comes up and a
    ZooKeeper server stops. The surviving replica's guard halts it and turns the deploy back
    (the dead replica's counts went with it; its Envoys report to the survivor), ``deploy
    wait`` exits 1 naming it, and the tool puts v2 back on those hosts (draining v3's, which
    the halt allows). Then the ZooKeeper server and the replica come back."""
    start = time.time()
    deploy_host(fleet, BAD_HOSTS[0], BAD)
    leader = fleet.leader()
    assert leader in CPS, leader
    survivor = next(cp for cp in CPS if cp != leader)
    killed_at = time.time()
    fleet.procs[leader].send_signal(signal.SIGKILL)
    assert fleet.procs[leader].wait(10) == -signal.SIGKILL
    fleet.converged(BOUNDS["leader"], not_on=leader)
    kill = fault(f"control-plane leader ({leader}) SIGKILLed as the bad build came up", killed_at,
                 bound=BOUNDS["leader"], converged_after=round(time.time() - killed_at, 2))
    zk_stop = time.time()
    zk_code = fleet.terminate("zk3")
    assert zk_code == EXIT_ON_SIGTERM["zk"], zk_code
    deploy_host(fleet, BAD_HOSTS[1], BAD)

    def halted() -> dict | None:
        status = json.loads(fleet.operator("status", "web", "--json"))
        return next((h for h in status["halts"] if h["version"] == BAD), None)
    halt = wait_for(halted, timeout=120, what=f"the guard to halt {BAD}")
    assert halt["author"] == "guard" and halt["rollback"] and halt["error_ratio"] > 0.15, halt
    assert wait_for(lambda: fleet.leader() == survivor, timeout=BOUNDS["leader"], what="the survivor to lead")
    kill["effect"] = f"{survivor} leads and halted {BAD} {round(halt['time'] - killed_at, 1)} s after the kill"
    waited = fleet.net.run("deployer", [*ROLLWAY, "deploy", "wait", "web", "--timeout", "5", "--server",
                                        f"{survivor}:7700", "--tls-ca", fleet.ca], timeout=60, env=fleet.env)
    assert waited.returncode == 1 and f"version {BAD} is halted and rolled back by guard" in waited.stderr, waited
    for app in BAD_HOSTS:
        deploy_host(fleet, app, "v2")
    fleet.operator("deploy", "wait", "web", "--timeout", "90", "--allow-halted", timeout=120)
    fleet.start_zookeeper("zk3")
    fleet.start_replica(leader)
    zk = fault("ZooKeeper server zk3 stopped during the bad build, restarted after its rollback", zk_stop,
               time.time(), effect=f"zk3 exited {zk_code}", bound=BOUNDS["zk"])
    fleet.converged(BOUNDS["zk"])
    zk["converged_after"] = round(time.time() - zk["end"], 2)
    return {"halted_after_deploy_start": round(halt["time"] - start, 1), "figures": halt["figures"]}


@pytest.fixture
def fleet(tmp_path):
    made = Fleet(tmp_path)
    try:
        yield made
    finally:
        made.net.close()


def bring_up(fleet: Fleet, tmp_path: Path) -> None:
    """The ensemble, both replicas, every app host on v1, both route maps, every Envoy
    serving: the fleet converged before the first browser."""
    for z in ZK:
        fleet.start_zookeeper(z)
    fleet.probe("zk", ZK_PLAINTEXT, "--timeout", "90", timeout=120)
    for cp in CPS:
        fleet.start_replica(cp)
    for app in APPS:
        fleet.start_app(app, "v1")
    for name, routemap in (("web", ROUTEMAP), ("api", API_ROUTEMAP)):
        doc = tmp_path / f"{name}.json"
        doc.write_text(json.dumps(routemap))
        fleet.operator("routemap", "push", str(doc), "--expected-revision", "0", "--token-file", str(fleet.token),
                       "--reason", "fleet test")
    for envoy in ENVOYS:
        fleet.start_envoy(envoy)
    for envoy in ENVOYS:
        fleet.run("browser", [PY, str(HERE / "probe.py"), "http", f"http://{envoy}:10000/", "--timeout", "60"],
                  timeout=90)
    fleet.converged()


def assert_zookeeper_locked_down(fleet: Fleet) -> None:
    """A stranger on the network, without credentials: no write to Rollway's znodes nor to a
    serverset on the plaintext port, no session at all on the TLS port."""
    locked = json.loads(fleet.probe("zk-locked", ZK_PLAINTEXT, STORE.split("//")[1].split("/")[0], "/rollway"))
    assert locked == {"refused": ["route map", "deploy state", "serverset"], "plaintext_reached_tls": False}, locked


def test_a_rolling_deploy_across_hosts_survives_faults(fleet, tmp_path):
    bring_up(fleet, tmp_path)
    assert_zookeeper_locked_down(fleet)
    stop_file = tmp_path / "stop-browsers"
    requests_path = tmp_path / "requests.jsonl"
    browsers = fleet.spawn("browsers", "browser", [PY, str(HERE / "browsers.py"), "--envoys", ",".join(ENVOYS),
                                                   "--sessions", str(SESSIONS), "--api-sessions", str(API_SESSIONS),
                                                   "--api-host", API_HOST, "--out", str(requests_path),
                                                   "--stop", str(stop_file), "--interval", "3"])
    def loaded_on_v1() -> bool:
        lines = requests_path.read_text().splitlines() if requests_path.exists() else []
        return len({r["session"] for r in map(json.loads, filter(None, lines))
                    if r.get("version") in ("v1", "a1")}) == SESSIONS + API_SESSIONS
    wait_for(loaded_on_v1, timeout=60, what=f"all {SESSIONS + API_SESSIONS} sessions to load their page on v1/a1")

    faults: list[dict] = []

    def fault(name: str, start: float, end: float | None = None, **extra) -> dict:
        entry = {"fault": name, "start": start, "end": end or start, **extra}
        faults.append(entry)
        return entry

    killed: dict[str, str] = {}
    cut_done = threading.Event()

    def cut_envoy_link():
        start = time.time()
        fleet.net.cut("env2", CPS)
        # The cut is seen: env2 disconnected, stale or behind on every replica.
        seen = json.loads(fleet.probe("away", SERVERS, fleet.ca, "env2", "--timeout", "19"))
        time.sleep(max(0.0, start + 20 - time.time()))
        fleet.net.restore("env2", CPS)
        entry = fault("env2's link to the control plane cut for 20 s", start, time.time(),
                      effect=f"env2 seen {' and '.join(seen['seen'])} after {seen['seconds']} s", bound=BOUNDS["cut"])
        fleet.converged(BOUNDS["cut"])
        entry["converged_after"] = round(time.time() - entry["end"], 2)
        cut_done.set()

    deploy_start = time.time()
    batches = [APPS[i:i + 2] for i in range(0, len(APPS), 2)]
    for number, batch in enumerate(batches, start=1):
        if number == 2:
            leader = fleet.leader()
            assert leader in CPS, leader
            killed["cp"] = leader
            start = time.time()
            fleet.procs[leader].send_signal(signal.SIGKILL)
            assert fleet.procs[leader].wait(10) == -signal.SIGKILL
            # Every Envoy on the surviving replica (its failover) and on the newest config,
            # which the survivor, now leading, wrote.
            fleet.converged(BOUNDS["leader"], not_on=leader)
            converged_after = round(time.time() - start, 2)
            # The survivor leads once the dead leader's ZooKeeper session has expired.
            survivor = wait_for(lambda: (name := fleet.leader()) != leader and name, timeout=BOUNDS["leader"],
                                what="the surviving replica to lead")
            assert survivor in CPS, survivor
            fault(f"control-plane leader ({leader}) SIGKILLed", start,
                  effect=f"{survivor} leads after {round(time.time() - start, 1)} s", bound=BOUNDS["leader"],
                  converged_after=converged_after)
            start = time.time()
            zk_code = fleet.terminate("zk2")
            assert zk_code == EXIT_ON_SIGTERM["zk"], zk_code
            down = json.loads(fleet.probe("zk-down", "zk2:2181", "--timeout", "10"))
            killed["zk"] = "zk2"
            zk_stop = start
            zk_effect = f"zk2 exited {zk_code}, answered nothing after {down['seconds']} s"
        if number == 3:
            cut_thread = Checked(cut_envoy_link)
            cut_thread.start()
            start = time.time()
            fleet.net.unplug("app2")          # deployed to v2 in batch 1; gone without a word
            spot = fault("app host app2 vanished without deregistering", start, bound=BOUNDS["spot"])

            def spot_converged(entry=spot):
                # Its member leaves when its ZooKeeper session expires; then every Envoy
                # holds a config without it.
                gone = json.loads(fleet.probe("gone", ",".join(f"{z}:2181" for z in ZK) + "/rollway", PATH,
                                              fleet.net.address["app2"], "--timeout", "90"))
                entry["member_gone_after"] = gone["seconds"]
                entry["effect"] = f"its member gone after {gone['seconds']} s"
                fleet.converged(BOUNDS["spot"])
                entry["converged_after"] = round(time.time() - entry["start"], 2)
            spot_thread = Checked(spot_converged)
            spot_thread.start()
        for app in batch:
            if app == "app2" and number > 1:
                continue
            deploy_host(fleet, app)
        fleet.operator("deploy", "wait", "web", "--timeout", "90", timeout=120)
        fleet.operator("deploy", "wait", "api", "--timeout", "90", timeout=120)
        if number == 4:
            fleet.start_zookeeper("zk2")
            entry = fault("ZooKeeper server zk2 stopped, restarted after the last batch", zk_stop, time.time(),
                          effect=zk_effect, bound=BOUNDS["zk"])
            fleet.start_replica(killed["cp"])
            fleet.converged(BOUNDS["zk"])
            entry["converged_after"] = round(time.time() - entry["end"], 2)
    deploy_end = time.time()
    cut_thread.finish(120, "the link cut")
    spot_thread.finish(150, "app2's disappearance")
    assert cut_done.is_set() and "member_gone_after" in spot and "converged_after" in spot
    final = fleet.converged(BOUNDS["cut"])
    settled = time.time()

    def every_session_asked_twice_since() -> bool:
        recent: dict[int, int] = {}
        for line in filter(None, requests_path.read_text().splitlines()):
            r = json.loads(line)
            if r["t"] > settled and r.get("status") == 200:
                recent[r["session"]] = recent.get(r["session"], 0) + 1
        return len(recent) == SESSIONS + API_SESSIONS and min(recent.values()) >= 2
    wait_for(every_session_asked_twice_since, timeout=60, what="every session to ask twice on the final config")
    guard = deploy_a_bad_build(fleet, fault)
    final = fleet.converged(BOUNDS["cut"])
    settled = time.time()
    wait_for(every_session_asked_twice_since, timeout=90, what="every session to ask twice after the rollback")
    stop_file.write_text("stop")
    browsers.wait(60)

    lines = [json.loads(line) for line in requests_path.read_text().splitlines() if line.strip()]
    result = analyse(lines, faults, deploy_end)
    # Each bounce or failure belongs to the latest fault started before it, while that
    # fault lasts or within 30 s of its end (faults overlap: counted once).
    def culprit(t: float) -> dict | None:
        active = [e for e in faults if e["start"] <= t <= e["end"] + 30]
        return max(active, key=lambda e: e["start"]) if active else None
    for entry in faults:
        entry["bounces"] = entry["failed"] = 0
    for t in result["bounce_times"]:
        if (entry := culprit(t)) is not None:
            entry["bounces"] += 1
    for r in result["failed"]:
        if (entry := culprit(r["t"])) is not None:
            entry["failed"] += 1
    table = ["| Fault during the deploy | Seen | Bounces | Failed requests | Every Envoy converged after (bound) |",
             "|---|---|---|---|---|"]
    for entry in sorted(faults, key=lambda e: e["start"]):
        table.append(f"| {entry['fault']} | {entry['effect']} | {entry['bounces']} | {entry['failed']} | "
                     f"{entry['converged_after']} s ({entry['bound']:g} s) |")
    summary = {"requests": result["requests"], "failed": len(result["failed"]), "bounces": result["bounces"],
               "refreshes_per_session_max": result["refreshes_max"], "sessions": result["sessions"],
               "sessions_on_v2": sum(1 for v in result["final"].values() if v == "v2"),
               "api_sessions_on_a2": sum(1 for v in result["final"].values() if v == "a2"),
               "deploy_seconds": round(deploy_end - deploy_start, 1), "final_config": final,
               "bad_build": {**guard, "sessions_met_its_500s": result["sessions_met_bad"],
                             "its_500s": len(result["bad_errors"]), "sessions_back_from_it": result["back_from_bad"]}}
    print("\n" + "\n".join(table) + "\n" + json.dumps(summary, indent=1))
    (tmp_path / "faults.md").write_text("\n".join(table) + "\n")

    failed_why = [(round(r["t"] - fleet.t0, 1), r["envoy"], r.get("status"), r.get("error") or r.get("body"))
                  for r in result["failed"]]
    print("failed requests (time, Envoy, status, why):", json.dumps(failed_why))
    print("faults (time from start):", json.dumps([(e["fault"], round(e["start"] - fleet.t0, 1),
                                                    round(e["end"] - fleet.t0, 1)) for e in faults]))
    assert result["sessions"] == SESSIONS + API_SESSIONS
    assert result["bounces"] == 0, result["bounce_times"]
    assert result["refreshes_max"] <= 1
    assert result["sessions_refreshed"] > 0               # sessions did move to v2, told once
    assert result["back_from_bad"] > 0 and result["bad_errors"]   # sessions met v3 and came back from it
    # Every web session on v2 and every api session on a2 (sessions SESSIONS.. are api's).
    assert all(v == ("v2" if s < SESSIONS else "a2") for s, v in result["final"].items()), result["final"]
    # The only failures allowed: requests in flight on app2's open connections when it
    # vanished (they may have reached the app, so Envoy does not retry them; the browser
    # gives up after 10 s): at most two per Envoy and service (its pool to each of app2's
    # apps at this load). Every later request to app2 fails to connect and is retried on
    # another host.
    in_flight = [r for r in result["failed"] if culprit(r["t"]) is spot and r.get("error") == "TimeoutError"]
    assert len(result["failed"]) == len(in_flight) <= 2 * len(ENVOYS) * 2, failed_why
    assert sorted(final["envoys"]) == ENVOYS              # every Envoy, env2 included, on one config
    # Every process exits on SIGTERM, with the code it should, and nothing is left running.
    codes = fleet.terminate_all()
    expected = {key: EXIT_ON_SIGTERM.get(key.rstrip("0123456789"), 0) for key in codes}
    print("exit codes on SIGTERM:", json.dumps(codes, sort_keys=True))
    assert codes == expected, {k: (codes[k], expected[k]) for k in codes if codes[k] != expected[k]}
    assert fleet.net.running() == {}
    # The ZooKeeper passwords reached no log of any process of the fleet.
    logs = "".join(path.read_text(errors="replace") for path in tmp_path.rglob("*.log"))
    assert logs and not [who for who, (_, password) in IDENTITIES.items() if password in logs]
