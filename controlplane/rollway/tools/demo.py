"""``rollway demo``: a rolling deploy you can watch, with every part real.

It starts, on this machine: the control plane (on a temporary directory, or on ZooKeeper
with ``--zk``), its xDS server and dashboard; two stock Envoys loading the filter over
ADS; app hosts (``rollway.tools.webapp``: a page with ``rollway.js`` and an API) that announce
themselves in the ``prod`` and ``canary`` serversets as v1, and a second app, ``api``, on its
own host name (``api.demo.test``) behind the same Envoys, its hosts a1; a crowd of simulated browsers
that keep their cookies, call the API through the Envoys (each request to a random one),
and reload when the response tells them to; and, with ``--browsers N``, N real headless
Chromium tabs on the page, five to a browser, half reloading at once when told and half at
their next in-app navigation (every 6 s). Then it
deploys v2 the way a deploy tool would: one canary host first, then ``prod`` in batches (a
batch's new hosts announce themselves; once the deploy gate passes, the old ones are
drained with ``rollway.tools.drain`` and stopped), while ``api`` deploys a1 -> a2 on its own
schedule, overlapping web's prod batches: one Envoy pair, two services rolling at once. The terminal shows
the deploy's progress, capacity, traffic share and direction per stage and version, and
the bounces and refreshes so far; ``--json`` prints a summary at the end instead.

Ctrl-C (or SIGTERM) stops everything it started and removes its temporary directory.

Usage::

    rollway demo                      # about a minute, live view in the terminal
    rollway demo --duration 40 --json # machine-readable summary (what the CI test checks)
    rollway demo --zk 127.0.0.1:2181  # the same against a real ZooKeeper
    rollway demo --browsers 20        # and 20 Chromium tabs (Debian's chromium, chromium-driver)
"""

from __future__ import annotations

import dataclasses
import http.client
import json
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from rollway.tools.session import BrowserSession

if TYPE_CHECKING:  # like the rest of the demo's pieces, imported when used
    from rollway.tools.browser import Tabs

SERVICE = "web"
# The second app behind the same pair of Envoys (issue 27): an API on its own host name,
# deployed a1 -> a2 while web's deploy is under way.
API, API_HOST = "api", "api.demo.test"
API_STAGE = ("prod", "/discovery/api/prod", 4)
API_OLD, API_NEW = "a1", "a2"
API_STEPS = (0.30, 0.50)     # fractions of the run at which two api hosts are replaced
TABS_PER_BROWSER = 5         # Chromium tabs share one browser (one user's cookies) five at a time
NAVIGATE_EVERY_MS = 6000     # how often a "navigation" tab follows an in-app link
STAGES = (("canary", 5.0, "/discovery/web/canary", 1), ("prod", 95.0, "/discovery/web/prod", 6))
OLD, NEW = "v1", "v2"


# -- backends -------------------------------------------------------------------------------------

class AppHost:
    """One application host: the demo app's page and API for its version, announced in a
    serverset for as long as it is registered."""

    def __init__(self, store, stage: str, path: str, version: str, index: int, service: str = SERVICE):
        from rollway.sources.serverset import member_json
        from rollway.tools.webapp import WebApp

        self.service, self.stage, self.path, self.version = service, stage, path, version
        self.name = f"{stage}-{version}-{index}"
        self.app = WebApp(version, self.name)
        self.port = self.app.port
        self.handle = store.announce(path, member_json("127.0.0.1", self.port, version))

    def deregister(self) -> None:
        if self.handle is not None:
            self.handle.close()
            self.handle = None

    def stop(self) -> None:
        self.deregister()
        self.app.stop()


# -- browsers -------------------------------------------------------------------------------------

@dataclass
@dataclass
class Browser(BrowserSession):
    """A browser tab of the demo (rollway.tools.session), talking to an Envoy's port."""
    served_stage: str | None = None    # the stage of the host that sent the last response
    keep: int | None = 16              # a long-running demo remembers only recent versions
    host: str | None = None            # the Host it asks for (api's sessions: API_HOST)

    def request(self, port: int) -> str | None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        try:
            headers = self.headers()
            if self.host:
                headers["host"] = self.host
            conn.request("GET", "/api/demo", headers=headers)
            response = conn.getresponse()
            body = response.read()
            status, header_list = response.status, response.getheaders()
        except OSError as error:
            self.failed(f"{type(error).__name__}: {error}")
            return None
        finally:
            conn.close()
        version = None
        if status == 200:
            answer = json.loads(body)
            version, self.served_stage = answer["version"], answer["host"].split("-", 1)[0]
        self.answered(status, header_list, version, body)
        return version


# -- the demo -------------------------------------------------------------------------------------

class Demo:
    def __init__(self, args: DemoOptions):
        self.args = args
        self.workdir = Path(tempfile.mkdtemp(prefix="rollway-demo-"))
        self.stop_event = threading.Event()
        self.started: list = []           # things to stop, in reverse order
        self.hosts: list[AppHost] = []
        self.hosts_lock = threading.Lock()      # web's and api's deploys change it at once
        self.envoys: list = []
        self.browsers = [Browser() for _ in range(args.sessions)]
        self.api_browsers = [Browser(host=API_HOST) for _ in range(max(1, args.sessions // 2))]
        self.api_steps_done = 0
        self.recent: list[tuple[float, str | None, str]] = []   # (time, stage, version) of recent responses
        self.recent_lock = threading.Lock()
        self.steps_done, self.steps_total = 0, 0
        self.phase = "starting"
        self.drain_errors: list[str] = []
        self.tabs: Tabs | None = None     # with --browsers
        self.tab_policies: list[str] = []
        self.tab_states: list[dict] = []  # what each tab's page recorded, read every 2 s
        self.t0 = time.monotonic()

    # lifecycle
    def start(self) -> None:
        from rollway.envoy.bootstrap import ads_bootstrap
        from rollway.envoy.process import EnvoyProcess, free_port
        from rollway.server import ControlPlaneServer, PlaneOptions, ServerOptions
        from rollway.sources.store import open_store

        if self.args.zk:
            url = f"zk://{self.args.zk}/rollway-demo-{uuid.uuid4().hex[:8]}"
        else:
            url = f"file://{self.workdir / 'store'}"
        self.store_url = url
        self.store = open_store(url)
        self.store.start()
        self.started.append(self.store.stop)
        options = ServerOptions(url, PlaneOptions(debounce=0.05), api_port=None, xds_port=0,
                                http_port=self.args.http_port)
        try:
            self.replica = ControlPlaneServer.start(options, self.store)
        except OSError:   # the dashboard's port is taken (a `rollway serve` running?): any free one will do
            self.replica = ControlPlaneServer.start(dataclasses.replace(options, http_port=0), self.store)
        self.started.append(self.replica.stop)
        xds, dashboard = self.replica.xds, self.replica.dashboard
        assert xds is not None and dashboard is not None      # both asked for above
        self.plane, self.xds, self.dashboard = self.replica.plane, xds, dashboard
        self.plane.push({"service": SERVICE, "stages": [
            {"name": name, "weight": weight, "mode": "rolling", "serverset": path}
            for name, weight, path, _ in STAGES]}, 0, "rollway-demo", "demo route map")
        self.plane.push({"service": API, "domains": [API_HOST], "stages": [
            {"name": API_STAGE[0], "weight": 1, "mode": "rolling", "serverset": API_STAGE[1]}]},
            0, "rollway-demo", "demo api route map")
        for name, _, path, count in STAGES:
            for i in range(count):
                self._add_host(name, path, OLD, i)
        for i in range(API_STAGE[2]):
            self._add_host(API_STAGE[0], API_STAGE[1], API_OLD, i, API)
        for i in range(2):
            listen, admin = free_port(), free_port()
            bootstrap = ads_bootstrap(xds_host="127.0.0.1", xds_port=self.xds.port, node_id=f"demo-envoy-{i + 1}",
                                      listen_port=listen, admin_port=admin, services=[SERVICE, API])
            envoy = EnvoyProcess(bootstrap, self.workdir, listen, admin).start()
            self.envoys.append(envoy)
            self.started.append(envoy.stop)
        self._wait_for_routing()
        if self.args.browsers:
            self._open_tabs()

    def _open_tabs(self) -> None:
        """Real Chromium tabs on the demo page, spread over both Envoys: odd tabs reload at
        once when told, even ones at their next in-app navigation."""
        from rollway.tools.browser import Tabs

        urls = []
        for i in range(self.args.browsers):
            policy = "immediate" if i % 2 else "navigation"
            self.tab_policies.append(policy)
            query = f"policy={policy}" + ("" if i % 2 else f"&navigate={NAVIGATE_EVERY_MS}")
            urls.append(f"http://127.0.0.1:{self.envoys[i % len(self.envoys)].listen_port}/?{query}")
        self.tabs = Tabs(urls, per_browser=TABS_PER_BROWSER)
        self.started.append(self.tabs.close)

    def app_url(self) -> str:
        """The demo app's page through the first Envoy, for a browser of your own."""
        return f"http://127.0.0.1:{self.envoys[0].listen_port}/?policy=immediate"

    def _read_tabs(self) -> None:
        tabs = self.tabs
        assert tabs is not None  # read only with --browsers
        states = []
        for tab in tabs.tabs:
            try:
                states.append(tabs.state(tab))
            except Exception:   # mid-reload: keep what the last read saw
                previous = self.tab_states[len(states)] if len(self.tab_states) > len(states) else {}
                states.append(previous)
        self.tab_states = states

    def _watch_tabs(self) -> None:
        while not self.stop_event.wait(2.0):
            self._read_tabs()

    def _add_host(self, stage: str, path: str, version: str, index: int, service: str = SERVICE) -> AppHost:
        host = AppHost(self.store, stage, path, version, index, service)
        self.hosts.append(host)
        return host

    def _wait_for_routing(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        probes = [Browser(), Browser(host=API_HOST)]
        while time.monotonic() < deadline:
            if all(probe.request(e.listen_port) for e in self.envoys for probe in probes):
                return
            time.sleep(0.2)
        raise RuntimeError("the Envoys did not start routing within 30 s:\n" + self.envoys[0].log_tail())

    def shutdown(self) -> None:
        self.stop_event.set()
        for stop in reversed(self.started):
            try:
                stop()
            except Exception as error:  # keep stopping the rest
                print(f"rollway demo: while stopping: {error}", file=sys.stderr)
        for host in self.hosts:
            try:
                host.stop()
            except Exception:
                pass
        shutil.rmtree(self.workdir, ignore_errors=True)

    # traffic
    def _browse(self, browser: Browser, rng: random.Random) -> None:
        while not self.stop_event.is_set():
            envoy = rng.choice(self.envoys)
            version = browser.request(envoy.listen_port)
            if version is not None and browser.host is None:     # the view's traffic is web's
                with self.recent_lock:
                    self.recent.append((time.monotonic(), browser.served_stage, version))
            self.stop_event.wait(rng.uniform(0.2, 0.6))

    # the deploy
    def _gate(self, timeout: float = 30.0, service: str = SERVICE) -> tuple[bool, list[str]]:
        """The deploy gate (what `rollway deploy wait` asks the server): every Envoy holds a
        config reflecting the serversets as they are now, nothing waits for a second step."""
        deadline = time.monotonic() + timeout
        state = self.plane.service(service)
        while True:
            converged, outstanding = state.gate()
            if converged or time.monotonic() >= deadline or self.stop_event.is_set():
                return converged, outstanding
            time.sleep(0.1)

    def _replace(self, stage: str, path: str, count: int, step: int, service: str = SERVICE) -> None:
        """One deploy batch, paced by the gate instead of fixed sleeps: the new hosts
        announce themselves and the fleet admits them; the old ones drain (not-ALIVE, every
        Envoy has stopped routing to them, removed), then stop."""
        from rollway.tools.drain import DrainError, drain

        old, new = (OLD, NEW) if service == SERVICE else (API_OLD, API_NEW)
        with self.hosts_lock:
            olds = [h for h in self.hosts if h.service == service and h.stage == stage and h.version == old
                    and h.handle is not None][:count]
            for i in range(len(olds)):
                self._add_host(stage, path, new, step * 10 + i, service)

        def gate() -> tuple[bool, list[str]]:
            return self._gate(service=service)
        gate()
        try:
            drain(self.store, path, [("127.0.0.1", old.port) for old in olds], gate)
        except DrainError as error:
            self.drain_errors.append(str(error))
        for old_host in olds:
            old_host.stop()
            with self.hosts_lock:
                self.hosts.remove(old_host)

    def _deploy_api(self, start: float) -> None:
        """api's deploy, on its own schedule, overlapping web's prod batches."""
        for step, fraction in enumerate(API_STEPS, start=1):
            if self.stop_event.wait(max(0.0, start + fraction * self.args.duration - time.monotonic())):
                return
            self._replace(API_STAGE[0], API_STAGE[1], API_STAGE[2] // len(API_STEPS), step, API)
            self.api_steps_done = step

    def run(self) -> dict:
        duration = self.args.duration
        rng = random.Random(self.args.seed)
        threads = [threading.Thread(target=self._browse, args=(b, random.Random(rng.random())), daemon=True)
                   for b in self.browsers + self.api_browsers]
        for thread in threads:
            thread.start()
        view = threading.Thread(target=self._view_loop, daemon=True)
        view.start()
        if self.tabs is not None:
            threading.Thread(target=self._watch_tabs, daemon=True).start()
        start = time.monotonic()
        api_deploy = threading.Thread(target=self._deploy_api, args=(start,), daemon=True)
        api_deploy.start()
        prod_count = dict((s[0], s[3]) for s in STAGES)["prod"]
        batches = [self.args.batch] * (prod_count // self.args.batch) + ([prod_count % self.args.batch]
                                                                         if prod_count % self.args.batch else [])
        self.steps_total = 1 + len(batches)
        # warm-up 15%, canary, then prod batches spread over the next 45%, then a tail in
        # which every session makes enough requests to be moved and told to reload.
        at = [0.15] + [0.25 + 0.45 * i / max(1, len(batches) - 1) for i in range(len(batches))]
        self.phase = "warming up"
        for index, fraction in enumerate(at):
            if self.stop_event.wait(max(0.0, start + fraction * duration - time.monotonic())):
                break
            if index == 0:
                self.phase = f"canary: one host {OLD} -> {NEW}"
                self._replace("canary", STAGES[0][2], 1, 0)
            else:
                self.phase = f"prod: batch {index} of {len(batches)} ({batches[index - 1]} hosts)"
                self._replace("prod", STAGES[1][2], batches[index - 1], index)
            self.steps_done = index + 1
            if self.args.screenshot and index == (len(at) + 1) // 2:   # mid-deploy: both versions live
                self.stop_event.wait(3.0)
                self._screenshot()
        api_deploy.join()
        self.phase = "deploy done; sessions settling"
        self.stop_event.wait(max(0.0, start + duration - time.monotonic()))
        self.phase = "done"
        self.stop_event.set()
        for thread in threads:
            thread.join(10)
        view.join(5)
        return self.summary(time.monotonic() - start)

    def _screenshot(self) -> None:
        assert self.args.screenshot is not None     # called only when one was asked for
        from rollway.tools.browser import screenshot

        try:
            screenshot(f"http://127.0.0.1:{self.dashboard.port}/", self.args.screenshot)
        except (OSError, RuntimeError, subprocess.TimeoutExpired) as error:
            print(f"rollway demo: no screenshot: {error}", file=sys.stderr)

    # reporting
    def status(self, service: str = SERVICE) -> dict:
        from rollway.api.dashboard import dashboard_state

        services = dashboard_state(self.plane, self.xds.xds.cache, None)["services"]
        return next(s for s in services if s["service"] == service)

    def summary(self, elapsed: float) -> dict:
        if self.tabs is not None:
            self._read_tabs()
        service = self.status()
        live = {s["name"]: {v["name"]: v["capacity"] for v in s["versions"]} for s in service["stages"]}
        completed = self.steps_done == self.steps_total and all(set(v) == {NEW} for v in live.values())
        final = dict(Counter(b.last or "none" for b in self.browsers))
        api = self.status(API)
        api_live = {s["name"]: {v["name"]: v["capacity"] for v in s["versions"]} for s in api["stages"]}
        apis = self.api_browsers
        return {
            "deploy_completed": completed,
            "deploy_steps": f"{self.steps_done}/{self.steps_total}",
            "duration_seconds": round(elapsed, 1),
            "store": "zookeeper" if self.args.zk else "file",
            "envoys": len(self.envoys),
            "sessions": len(self.browsers),
            "requests": sum(b.requests for b in self.browsers),
            "errors": sum(b.errors for b in self.browsers),
            "error_kinds": error_kinds(self.browsers),
            "final_versions": final,
            "app_versions": {v: sum(1 for b in self.browsers if b.app_version == v)
                             for v in sorted({b.app_version or "none" for b in self.browsers})},
            "bounces": sum(b.bounces for b in self.browsers),
            "moves_per_session_max": max((b.moves for b in self.browsers), default=0),
            "refreshes_total": sum(b.refreshes for b in self.browsers),
            "refreshes_per_session_max": max((b.refreshes for b in self.browsers), default=0),
            "capacity": live,
            "route_map_revision": service["revision"],
            "xds_nacks": self.xds.xds.cache.nack_total,
            "drain_errors": list(self.drain_errors),
            "dashboard": f"http://127.0.0.1:{self.dashboard.port}/",
            "app": self.app_url(),
            **({"tabs": tab_summary(self.tab_states, self.tab_policies)} if self.tabs is not None else {}),
            # The second app on the same Envoys, deployed while web's deploy was under way.
            "services": {API: {
                "host": API_HOST,
                "deploy_completed": self.api_steps_done == len(API_STEPS)
                and all(set(v) == {API_NEW} for v in api_live.values()),
                "sessions": len(apis), "requests": sum(b.requests for b in apis),
                "errors": sum(b.errors for b in apis),
                "error_kinds": error_kinds(apis),
                "final_versions": dict(Counter(b.last or "none" for b in apis)),
                "bounces": sum(b.bounces for b in apis),
                "moves_per_session_max": max((b.moves for b in apis), default=0),
                "refreshes_per_session_max": max((b.refreshes for b in apis), default=0),
                "capacity": api_live}},
        }

    def _view_loop(self) -> None:
        interactive = sys.stdout.isatty() and not self.args.json
        while not self.stop_event.wait(0.5 if interactive else 2.0):
            if self.args.json:
                continue
            if interactive:
                sys.stdout.write("\x1b[H\x1b[2J" + self.render())
            else:   # a log, not a screen: the progress line and the session counts
                sys.stdout.write(f"{self._progress_line()} | {self._sessions_line()} | {self._totals_line()}\n")
            sys.stdout.flush()

    def _progress_line(self) -> str:
        width = 30
        done = int(width * self.steps_done / max(1, self.steps_total))
        return (f"deploy [{'#' * done}{'.' * (width - done)}] {self.steps_done}/{self.steps_total}  {self.phase}  "
                f"t={time.monotonic() - self.t0:.0f}s")

    def _sessions_line(self) -> str:
        on = Counter(b.last for b in self.browsers if b.last)
        return "sessions on: " + ", ".join(f"{v} {n}" for v, n in sorted(on.items()))

    def _totals_line(self) -> str:
        b, a = self.browsers, self.api_browsers
        api_on = Counter(x.last for x in a if x.last)
        line = (f"bounces {sum(x.bounces for x in b)}   refreshes {sum(x.refreshes for x in b)} "
                f"(max per session {max((x.refreshes for x in b), default=0)})   "
                f"requests {sum(x.requests for x in b)}   errors {sum(x.errors for x in b)}\n"
                f"api ({API_HOST}, {API_OLD} -> {API_NEW}, step {self.api_steps_done}/{len(API_STEPS)}): sessions on "
                + ", ".join(f"{v} {n}" for v, n in sorted(api_on.items()))
                + f"   bounces {sum(x.bounces for x in a)}   errors {sum(x.errors for x in a)}")
        if self.tabs is not None and self.tab_states:
            tabs = tab_summary(self.tab_states, self.tab_policies)
            on = ", ".join(f"{v} {n}" for v, n in sorted(tabs["final_versions"].items()))
            line += (f"\nChromium tabs: {tabs['tabs']} on {on}; reloads {tabs['reloads']} "
                     f"(max per tab {tabs['reloads_per_tab_max']}), bounces {tabs['bounces']}")
        return line

    def render(self) -> str:
        service = self.status()
        now = time.monotonic()
        with self.recent_lock:
            self.recent = [r for r in self.recent if now - r[0] <= 3.0]
            recent = list(self.recent)
        by_version = Counter(version for _, _, version in recent)
        by_place = Counter((stage, version) for _, stage, version in recent)
        total = sum(by_version.values()) or 1
        lines = [f"Rollway demo: rolling {SERVICE} from {OLD} to {NEW} (and {API} from {API_OLD} to {API_NEW}) "
                 f"through {len(self.envoys)} Envoys "
                 f"({'ZooKeeper ' + self.args.zk if self.args.zk else 'embedded file store'})",
                 self._progress_line(),
                 "",
                 f"{'stage':8} {'version':8} {'capacity':>8} {'cap share':>9} {'traffic':>8}   {'direction':16}"]
        for stage in service["stages"]:
            direction = stage["direction"] + (f" -> {stage['target']}" if stage["target"] else "")
            for i, v in enumerate(stage["versions"]):
                traffic = 100 * by_place.get((stage["name"], v["name"]), 0) / total
                lines.append(f"{stage['name'] if i == 0 else '':8} {v['name']:8} {v['capacity']:8g} "
                             f"{100 * v['share']:8.0f}% {traffic:7.0f}%   {direction if i == 0 else ''}")
        lines += ["", "traffic, last 3 s: " + ", ".join(f"{v} {100 * n / total:.0f}%"
                                                         for v, n in sorted(by_version.items())),
                  self._sessions_line(),
                  self._totals_line(),
                  f"dashboard: http://127.0.0.1:{self.dashboard.port}/   Ctrl-C stops everything",
                  f"the app: {self.app_url()} (open it: the page reloads once onto {NEW})", ""]
        return "\n".join(lines)


def error_kinds(browsers: list[Browser]) -> dict[str, int]:
    """Why the sessions' requests failed, summed: a failed run says which error it was."""
    total: Counter[str] = Counter()
    for browser in browsers:
        total.update(browser.error_kinds)
    return dict(total)


def tab_summary(states: list[dict], policies: list[str]) -> dict:
    """The Chromium tabs from what their pages recorded (``rollway.tools.webapp``)."""
    loads = [state.get("loads", []) for state in states]
    sequences = [state.get("sequence", []) for state in states]
    reloads = [max(0, len(x) - 1) for x in loads]
    return {
        "tabs": len(states),
        "final_versions": dict(Counter(x[-1]["version"] if x else "none" for x in loads)),
        "reloads": sum(reloads),
        "reloads_per_tab_min": min(reloads, default=0),
        "reloads_per_tab_max": max(reloads, default=0),
        # a "navigation" tab reloads only when it navigates, never by itself
        "reloads_before_navigation": sum(1 for x, policy in zip(loads, policies) if policy == "navigation"
                                         for load in x[1:] if load.get("cause") != "navigation"),
        "api_calls": sum(sum(state.get("api", {}).values()) for state in states),
        "api_errors": sum(state.get("errors", 0) for state in states),
        "api_lost": sum(state.get("lost", 0) for state in states),
        # API calls served by another version than the page's (a tab moved, not yet reloaded)
        "skewed_calls": sum(state.get("skewed", 0) for state in states),
        "bounces": sum(len(seq) - len(set(seq)) for seq in sequences),   # back on a version it left
    }


@dataclass(frozen=True)
class DemoOptions:
    """What ``rollway demo`` was asked for (its flags, as the CLI parsed them)."""
    duration: float = 60.0          # seconds of traffic
    sessions: int = 40              # simulated browser sessions
    batch: int = 2                  # prod hosts replaced per deploy step
    json: bool = False              # a machine-readable summary at the end
    zk: str | None = None           # HOST:PORT of a ZooKeeper instead of a local directory
    http_port: int = 7780           # the dashboard's (0: any free one)
    browsers: int = 0               # real headless Chromium tabs too
    seed: int = 1
    screenshot: str | None = None   # FILE.png of the dashboard, mid-deploy


def run_demo(args: DemoOptions) -> int:
    demo = Demo(args)

    def on_term(*_):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_term)
    # Ctrl-C must work even when started from a shell that ignores SIGINT for its children.
    previous_int = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        demo.start()
        summary = demo.run()
    except KeyboardInterrupt:
        print("\nrollway demo: interrupted; stopping everything it started", file=sys.stderr)
        return 130
    except (RuntimeError, OSError) as error:   # a part did not start: say which, stop the rest
        print(f"rollway demo: {error}", file=sys.stderr)
        return 1
    finally:
        demo.shutdown()
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, previous_int)
    if args.json:
        json.dump(summary, sys.stdout, indent=2, sort_keys=True)
        print()
    else:
        print(demo_report(summary))
    api = summary["services"][API]
    ok = summary["deploy_completed"] and summary["bounces"] == 0 and summary.get("tabs", {}).get("bounces", 0) == 0 \
        and api["deploy_completed"] and api["bounces"] == 0
    return 0 if ok else 1


def demo_report(summary: dict) -> str:
    return (f"deploy {'completed' if summary['deploy_completed'] else 'NOT completed'} "
            f"({summary['deploy_steps']} steps) in {summary['duration_seconds']} s: "
            f"{summary['sessions']} sessions, {summary['requests']} requests through {summary['envoys']} Envoys, "
            f"sessions now on {summary['final_versions']}, bounces {summary['bounces']}, "
            f"refreshes per session at most {summary['refreshes_per_session_max']}, errors {summary['errors']}"
            f"; api (same Envoys, deployed meanwhile) "
            f"{'completed' if summary['services'][API]['deploy_completed'] else 'NOT completed'}: "
            f"{summary['services'][API]['sessions']} sessions on {summary['services'][API]['final_versions']}, "
            f"bounces {summary['services'][API]['bounces']}"
            + (f"; {summary['tabs']['tabs']} Chromium tabs now on {summary['tabs']['final_versions']}, reloads per "
               f"tab {summary['tabs']['reloads_per_tab_min']}-{summary['tabs']['reloads_per_tab_max']}, "
               f"bounces {summary['tabs']['bounces']}" if "tabs" in summary else ""))


__all__ = ["Demo", "DemoOptions", "run_demo"]
