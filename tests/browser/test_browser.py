"""The browser half, in a real browser through the real stack.

Debian's headless Chromium, driven by Selenium through Debian's chromedriver (given
explicitly, ``SE_OFFLINE=true``: nothing is downloaded), loads the demo app's page
(``rollway.tools.webapp``, which installs the packaged ``rollway.js``) through a stock
Envoy running the filter. A rolling deploy is a sequence of filter configs delivered over
ECDS (the same path the control plane uses), so the Envoy keeps running and the tabs stay
open through it. What the tabs did is read from what the page records in its
``sessionStorage``, and from the requests the app hosts received.
"""

from __future__ import annotations

import contextlib
import json
import time

import pytest
from selenium.common.exceptions import WebDriverException

import rollway
from rollway.envoy.bootstrap import static_bootstrap, write_ecds_file
from rollway.tools.browser import Tabs, start_chromium
from rollway.tools.webapp import WebApp

from envoy_harness import EnvoyProcess, free_port, wait_until
from pki import CA

pytestmark = [pytest.mark.envoy, pytest.mark.browser]

VERSIONS = ("v1", "v2")
TTL = 3600


class MisbehavingApp(WebApp):
    """The demo app plus what a misbehaving server does: a 5xx carrying a refresh header,
    and a refresh header on every response."""

    def api(self, path, query, headers):
        status, extra, body = super().api(path, query, headers)
        body["routing_id"] = "rw_rid=" in (headers.get("cookie") or "")
        if path == "/api/fail":
            return 503, {"x-rw-refresh": query["target"][0]}, body
        if path == "/api/always":
            return 200, {"x-rw-refresh": query["target"][0]}, body
        return status, extra, body


def filter_config(capacities: dict[str, float], state: str = "steady", target: str | None = None,
                  generation: int = 1, secure: bool = False) -> dict:
    return {
        "service": "web", "generation": generation,
        "routing_id": {"cookie": "rw_rid", "ttl_seconds": TTL, "secure": secure},
        "version_cookie": "rw_ver",
        "stages": [{"name": "prod", "weight": 1, "mode": "rolling",
                    "versions": [{"name": v, "capacity": capacities.get(v, 0), "cluster": f"web.prod.{v}"}
                                 for v in VERSIONS],
                    "direction": {"state": state, **({"target": target} if target else {})}}],
    }


@pytest.fixture(scope="module")
def ports():
    return {"listen": free_port(), "admin": free_port()}


@pytest.fixture(scope="module")
def apps(ports):
    # The page's origin; an API on another port is another origin of the same site.
    made = {v: MisbehavingApp(v, f"prod-{v}-0", cors_origins=(f"http://127.0.0.1:{ports['listen']}",)) for v in VERSIONS}
    yield made
    for app in made.values():
        app.stop()


class Stack:
    """A stock Envoy with the filter in front of the two app hosts; its filter config comes
    from an ECDS file, so a deploy step is a new config and nothing restarts."""

    def __init__(self, tmp_path, apps, ports, config: dict, *, tls=None):
        self.ecds = str(tmp_path / "rollway-ecds.json")
        self.generation = config["generation"]
        clusters = {f"web.prod.{v}": [("127.0.0.1", app.port)] for v, app in apps.items()}
        self.port = ports["listen"]
        bootstrap = static_bootstrap(config, clusters, listen_port=self.port, admin_port=ports["admin"],
                                     ecds_path=self.ecds)
        if tls is not None:   # the ingress over https (the edge's TLS, with a test certificate)
            bootstrap["static_resources"]["listeners"][0]["filter_chains"][0]["transport_socket"] = {
                "name": "envoy.transport_sockets.tls",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
                    "common_tls_context": {"tls_certificates": [{"certificate_chain": {"filename": tls.cert},
                                                                 "private_key": {"filename": tls.key}}]}}}
        self.envoy = EnvoyProcess(bootstrap, tmp_path, self.port, ports["admin"]).start()
        self.scheme = "https" if tls else "http"

    def url(self, path: str = "/", host: str = "127.0.0.1") -> str:
        return f"{self.scheme}://{host}:{self.port}{path}"

    def deploy_step(self, config: dict) -> None:
        """Hands the Envoy the next config and waits until it took it."""
        reloads = "extension_config_discovery.http_filter.rollway.config_reload"
        before = self.envoy.stats().get(reloads, 0)
        self.generation += 1
        write_ecds_file(self.ecds, {**config, "generation": self.generation}, str(self.generation))
        wait_until(lambda: self.envoy.stats().get(reloads, 0) > before, timeout=15,
                   what=f"the Envoy to take generation {self.generation}")

    def stop(self) -> None:
        self.envoy.stop()


def page_state(tabs: Tabs, tab) -> dict:
    """The page's record of its tab, waiting out a load in progress."""
    holder = {}

    def read():
        try:
            holder["state"] = tabs.state(tab)
        except (WebDriverException, TypeError, ValueError):   # mid-navigation: the document is being replaced
            return False
        return bool(holder["state"])
    wait_until(read, timeout=15, what="the page to load")
    return holder["state"]


def page_loads(driver) -> list:
    """The loads the page recorded in the driver's current tab, waiting out a reload."""
    holder = {}

    def read():
        try:
            holder["value"] = json.loads(driver.execute_script("return sessionStorage.getItem('rollway-demo')"))["loads"]
            return True
        except (WebDriverException, TypeError, ValueError):   # mid-reload: the document is being replaced
            return False
    wait_until(read, timeout=15, what="the page")
    return holder["value"]


FETCH = """const done = arguments[arguments.length - 1];
fetch(arguments[0]).then(async r => done({status: r.status, refresh: r.headers.get('x-rw-refresh'),
                                           body: await r.json()}), e => done({error: String(e)}));"""
XHR = """const done = arguments[arguments.length - 1];
const x = new XMLHttpRequest(); x.open('GET', arguments[0]);
x.onloadend = () => done({status: x.status, refresh: x.getResponseHeader('x-rw-refresh'),
                          body: x.status ? JSON.parse(x.responseText) : null});
x.send();"""


def test_a_tab_keeps_the_version_it_was_loaded_from_on_fetch_and_xhr(tmp_path, apps, ports):
    config = filter_config({"v1": 5, "v2": 5})
    stack = Stack(tmp_path, apps, ports, config)
    (tmp_path / "api").mkdir()
    api_stack = Stack(tmp_path / "api", apps, {"listen": free_port(), "admin": free_port()}, config)
    router = rollway.Router(json.dumps(config))
    rid = next(r for r in (rollway.new_routing_id() for _ in range(200))
               if router.route(r, now=time.time()).version == "v2")
    driver = start_chromium()
    try:
        driver.get(stack.url("/rollway.js"))          # on the origin, to set its cookies
        driver.add_cookie({"name": "rw_rid", "value": rid, "path": "/", "httpOnly": True})
        driver.add_cookie({"name": "rw_ver", "value": "v1", "path": "/"})
        # Tab A renders no version tag: rollway.js takes the cookie as it was at load (v1).
        driver.get(stack.url("/?poll=0&meta=0"))
        tab_a = driver.current_window_handle
        assert driver.find_element("id", "version").text == "v1"
        assert driver.execute_script("return rollwayDemo.rollway.version") == "v1"
        # Tab B: the same browser, its version cookie gone; its hash sends it to v2, and the
        # shared cookie now says v2.
        driver.switch_to.new_window("tab")
        driver.get(stack.url("/rollway.js"))
        driver.delete_cookie("rw_ver")
        driver.get(stack.url("/?poll=0"))
        assert driver.find_element("id", "version").text == "v2"
        assert driver.get_cookie("rw_ver")["value"] == "v2"
        # Back in tab A: fetch (a URL and a Request) and XHR still carry v1 and stay on v1.
        driver.switch_to.window(tab_a)
        calls = [driver.execute_async_script(FETCH, "/api/fetch"),
                 driver.execute_async_script(XHR, "/api/xhr"),
                 driver.execute_async_script(FETCH.replace("fetch(arguments[0])",
                                                           "fetch(new Request(arguments[0]))"), "/api/request")]
        for call in calls:
            assert call["status"] == 200 and call["refresh"] is None, call
            assert call["body"]["app_version"] == "v1" and call["body"]["version"] == "v1", call
        # The tab kept on v1 left the shared cookie to the newer tab: a new tab opens on v2.
        assert driver.get_cookie("rw_ver")["value"] == "v2"
        driver.switch_to.new_window("tab")
        driver.get(stack.url("/?poll=0"))
        assert driver.find_element("id", "version").text == "v2"
        driver.switch_to.window(tab_a)
        # An API on another origin of the same site (its own Envoy, another port) gets no
        # header unless listed; listed, it must allow it (CORS), and with credentials the
        # browser's routing id travels with the call.
        other = api_stack.url("/api/cross")
        unlisted = driver.execute_async_script(FETCH, other)
        assert unlisted["status"] == 200 and unlisted["body"]["app_version"] is None, unlisted
        driver.execute_async_script("""const done = arguments[arguments.length - 1];
            const version = rollwayDemo.rollway.version;   // as loaded: the cookie says v2 by now
            rollwayDemo.rollway.uninstall();
            import('/rollway.js').then(m => { m.install({version, apiOrigins: [arguments[0]]}); done(); });""",
                                    api_stack.url("/"))
        with_cookies = FETCH.replace("fetch(arguments[0])", "fetch(arguments[0], {credentials: 'include'})")
        for _ in range(3):
            listed = driver.execute_async_script(with_cookies, other)
            assert listed["status"] == 200 and listed["body"]["app_version"] == "v1", listed
            assert listed["body"]["version"] == "v1" and listed["body"]["routing_id"] is True, listed
    finally:
        driver.quit()
        stack.stop()
        api_stack.stop()


def test_a_rolling_deploy_reloads_each_of_20_tabs_once_and_navigation_waits_for_a_navigation(
        tmp_path, apps, ports):
    stack = Stack(tmp_path, apps, ports, filter_config({"v1": 10}))
    # Four browsers (four users), five tabs each; half reload at once, half at navigation.
    urls = [stack.url(f"/?poll=300&policy={'immediate' if i % 2 else 'navigation'}") for i in range(20)]
    try:
        with Tabs(urls, per_browser=5) as tabs:
            immediate = [t for i, t in enumerate(tabs.tabs) if i % 2]
            navigation = [t for i, t in enumerate(tabs.tabs) if not i % 2]
            wait_until(lambda: all(page_state(tabs, t)["api"].get("v1") for t in tabs.tabs), timeout=20,
                       what="every tab to call its API on v1")
            for step in ({"v1": 7, "v2": 3}, {"v1": 3, "v2": 7}, {"v2": 10}):
                stack.deploy_step(filter_config(step, "forward", "v2"))
                time.sleep(1.5)
            wait_until(lambda: all(page_state(tabs, t)["loads"][-1]["version"] == "v2" for t in immediate),
                       timeout=30, what="the immediate tabs to reload onto v2")
            wait_until(lambda: all(tabs.run(t, "return rollwayDemo.rollway.pending") == "v2" for t in navigation),
                       timeout=30, what="the navigation tabs to be told about v2")
            time.sleep(2)   # more told responses: still nothing reloads by itself
            for tab in navigation:
                state = page_state(tabs, tab)
                assert len(state["loads"]) == 1 and state["loads"][0]["version"] == "v1", state
                assert "v2" in state["told"] and state["api"].get("v2"), state
                tabs.run(tab, "document.getElementById('next').click()")   # an in-app navigation
            wait_until(lambda: all(len(page_state(tabs, t)["loads"]) == 2 for t in navigation), timeout=30,
                       what="the navigation tabs to reload at their navigation")
            time.sleep(1.5)
            for tab in navigation:   # a navigation with nothing pending stays in the page
                tabs.run(tab, "document.getElementById('next').click()")
            time.sleep(1.5)
            states = [page_state(tabs, t) for t in tabs.tabs]
    finally:
        stack.stop()
    for i, state in enumerate(states):
        loads = state["loads"]
        assert [load["version"] for load in loads] == ["v1", "v2"], (i, state)   # exactly one reload
        assert loads[1]["cause"] == ("reload" if i % 2 else "navigation"), (i, state)
        assert len(state["sequence"]) == len(set(state["sequence"])), (i, state)   # no bounce
        assert state["errors"] == 0, (i, state)
        assert state["lost"] <= 1, (i, state)      # at most the call its own reload cut short


def test_a_5xx_never_reloads_and_a_server_that_always_says_reload_gets_one_per_version_and_3_a_minute(tmp_path, apps, ports):
    stack = Stack(tmp_path, apps, ports, filter_config({"v1": 10}))
    driver = start_chromium()
    try:
        driver.get(stack.url("/?poll=0&policy=immediate"))

        def call(script: str, path: str) -> dict | None:
            """What the page's request got, or None if the page reloaded under the script."""
            result = None
            with contextlib.suppress(WebDriverException):   # the page reloaded under the script
                result = driver.execute_async_script(script, path)
            time.sleep(1.0)
            return result

        for script in (FETCH, XHR):
            seen = call(script, "/api/fail?target=v2")
            # The page really made the call and saw the 5xx carrying the signal...
            assert seen is not None and (seen["status"], seen["refresh"]) == (503, "v2"), seen
        assert len(page_loads(driver)) == 1                              # ... and a 5xx said v2: nothing reloads
        call(FETCH, "/api/always?target=v2")
        assert [x["version"] for x in page_loads(driver)] == ["v1", "v1"]   # told v2 (a 200): one reload
        for script in (FETCH, XHR, FETCH):
            call(script, "/api/always?target=v2")
        assert len(page_loads(driver)) == 2                              # the guard: once per version
        call(XHR, "/api/always?target=v3")
        call(FETCH, "/api/always?target=v3")
        call(FETCH, "/api/always?target=v2")
        assert len(page_loads(driver)) == 3                              # one more for a new version only
        for bogus in ("v4%20v5", "%3Cscript%3E", "v" * 129):
            call(FETCH, f"/api/always?target={bogus}")
        assert len(page_loads(driver)) == 3                              # not a version name: not a signal
        call(FETCH, "/api/always?target=v4")
        assert len(page_loads(driver)) == 4
        call(FETCH, "/api/always?target=v5")                  # a fourth new version within the minute
        assert len(page_loads(driver)) == 4
        guard = driver.execute_script("return sessionStorage.getItem('rollway.reloaded')")
        assert [entry.split("@")[0] for entry in guard.split()] == ["v2", "v3", "v4"], guard
    finally:
        driver.quit()
        stack.stop()


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_the_browser_accepts_the_filters_cookies(tmp_path, apps, ports, scheme):
    tls = None
    if scheme == "https":
        tls = CA(tmp_path / "pki").issue("edge", dns=("localhost",), ips=("127.0.0.1",))
    stack = Stack(tmp_path, apps, ports, filter_config({"v1": 10}, secure=scheme == "https"), tls=tls)
    driver = start_chromium(accept_insecure_certs=True)
    try:
        before = time.time()
        driver.get(stack.url("/?poll=0"))
        assert driver.find_element("id", "version").text == "v1"
        cookies = {c["name"]: c for c in driver.get_cookies()}
    finally:
        driver.quit()
        stack.stop()
    assert set(cookies) == {"rw_rid", "rw_ver", "rw_stage"}, cookies
    for name, cookie in cookies.items():
        assert cookie["sameSite"] == "Lax" and cookie["path"] == "/", cookie
        assert before + TTL - 60 <= cookie["expiry"] <= time.time() + TTL + 1, cookie     # Max-Age, not a session cookie
        assert cookie["secure"] is (scheme == "https"), cookie
        # The version cookie is the page's fallback and holds only a build id.
        assert cookie["httpOnly"] is (name != "rw_ver"), cookie
    assert rollway.parse_routing_id(cookies["rw_rid"]["value"], time.time(), TTL)["status"] == "valid"
    assert cookies["rw_ver"]["value"] == "v1" and cookies["rw_stage"]["value"] == "prod"


def test_a_callback_decides_when_to_reload(tmp_path, apps, ports):
    stack = Stack(tmp_path, apps, ports, filter_config({"v1": 10}))
    driver = start_chromium()
    try:
        driver.get(stack.url("/?poll=0"))
        events = driver.execute_async_script("""const done = arguments[arguments.length - 1];
            const version = rollwayDemo.rollway.version;
            rollwayDemo.rollway.uninstall();
            window.events = [];
            import('/rollway.js').then(async m => {
              m.install({version, onRefresh: e => { window.events.push(e); }});
              await fetch('/api/always?target=v2');
              await fetch('/api/always?target=v2');
              done(window.events.map(e => ({version: e.version, from: e.from})));
            });""")
        assert events == [{"version": "v2", "from": "v1"}]           # told once, nothing reloaded yet
        assert len(page_loads(driver)) == 1
        driver.execute_script("window.events[0].reload()")           # the user agreed
        wait_until(lambda: len(page_loads(driver)) == 2, timeout=15, what="the reload the callback asked for")
    finally:
        driver.quit()
        stack.stop()


def test_the_classic_build_installs_from_a_plain_script_tag(tmp_path, apps, ports):
    stack = Stack(tmp_path, apps, ports, filter_config({"v1": 10}))
    driver = start_chromium()
    try:
        driver.get(stack.url("/?poll=0"))
        result = driver.execute_async_script("""const done = arguments[arguments.length - 1];
            rollwayDemo.rollway.uninstall();
            const script = document.createElement('script');
            script.src = '/rollway.classic.js';
            script.onload = () => {
              // options given as undefined keep their defaults
              const handle = window.Rollway.install({version: 'v1', appVersionHeader: 'X-App-Version',
                                                      apiOrigins: undefined, onRefresh: undefined});
              fetch('/api/classic').then(r => r.json()).then(body => done({version: handle.version, body}));
            };
            document.head.appendChild(script);""")
    finally:
        driver.quit()
        stack.stop()
    assert result["version"] == "v1" and result["body"]["app_version"] == "v1", result


def test_one_origin_two_apps_keep_their_own_versions_and_a_deploy_of_one_reloads_nothing_of_the_other(
        tmp_path, apps, ports):
    """One edge, many apps (issue 27): the page of web (at /) calls admin (at /admin) on the
    same origin through one Envoy. Each keeps its own version (its own cookies, Path /admin
    for admin's); web's rollway.js (excludePrefixes: ["/admin"]) sends web's version only to
    web's paths and takes no refresh from admin's; a deploy of admin reloads nothing of web,
    and a deploy of web reloads the web tab once while admin's version stays."""
    from rollway.envoy.bootstrap import Placement, services_filter_config

    admin_apps = {v: WebApp(v, f"admin-{v}-0", prefix="/admin") for v in ("m1", "m2")}
    ecds = str(tmp_path / "ecds.json")

    def admin_config(capacities, state="steady", target=None, generation=1):
        return {"service": "admin", "generation": generation, "cookie_path": "/admin",
                "routing_id": {"cookie": "rw_rid_admin", "ttl_seconds": TTL},
                "version_cookie": "rw_ver_admin", "stage_cookie": "rw_stage_admin",
                "stages": [{"name": "prod", "weight": 1, "mode": "rolling",
                            "versions": [{"name": v, "capacity": capacities.get(v, 0), "cluster": f"admin.prod.{v}"}
                                         for v in ("m1", "m2")],
                            "direction": {"state": state, **({"target": target} if target else {})}}]}

    clusters = {**{f"web.prod.{v}": [("127.0.0.1", app.port)] for v, app in apps.items()},
                **{f"admin.prod.{v}": [("127.0.0.1", app.port)] for v, app in admin_apps.items()}}
    placements = [Placement("web"), Placement("admin", ("*",), "/admin")]
    port = ports["listen"]
    envoy = EnvoyProcess(static_bootstrap(services_filter_config([filter_config({"v1": 10}), admin_config({"m1": 10})]),
                                          clusters, listen_port=port, admin_port=ports["admin"], ecds_path=ecds,
                                          placements=placements), tmp_path, port, ports["admin"]).start()
    reloads = "extension_config_discovery.http_filter.rollway.config_reload"

    def publish(web, admin, generation):
        before = envoy.stats().get(reloads, 0)
        write_ecds_file(ecds, services_filter_config([{**web, "generation": generation},
                                                      {**admin, "generation": generation}]), str(generation))
        wait_until(lambda: envoy.stats().get(reloads, 0) > before, timeout=15, what=f"generation {generation}")

    driver = start_chromium()
    try:
        driver.get(f"http://127.0.0.1:{port}/?poll=0&policy=immediate&exclude=/admin")
        assert driver.find_element("id", "version").text == "v1"
        first = driver.execute_async_script(FETCH, "/admin/api/users")
        assert first["status"] == 200 and first["body"]["version"] == "m1", first
        assert first["body"]["app_version"] is None, first       # web's version stays on web's paths
        own = driver.execute_async_script(FETCH, "/api/hello")
        assert own["body"]["app_version"] == "v1" and own["body"]["version"] == "v1", own
        # admin deploys m1 -> m2: its session moves; the web tab is told nothing.
        publish(filter_config({"v1": 10}), admin_config({"m2": 10}, "forward", "m2"), 2)
        for _ in range(3):
            call = driver.execute_async_script(FETCH, "/admin/api/users")
            assert call["status"] == 200 and call["body"]["version"] == "m2", call
        time.sleep(1)
        assert len(page_loads(driver)) == 1 and driver.execute_script("return rollwayDemo.rollway.pending") == ""
        assert driver.execute_async_script(FETCH, "/api/hello")["body"]["version"] == "v1"
        # web deploys v1 -> v2: the web tab is told by its own call and reloads once onto v2;
        # admin's session keeps m2 (two versions side by side, each its own).
        publish(filter_config({"v2": 10}, "forward", "v2"), admin_config({"m2": 10}), 3)
        with contextlib.suppress(WebDriverException):        # the reload may cut the script short
            driver.execute_async_script(FETCH, "/api/hello")
        wait_until(lambda: [load["version"] for load in page_loads(driver)] == ["v1", "v2"], timeout=20,
                   what="the web tab to reload once onto v2")
        after = driver.execute_async_script(FETCH, "/admin/api/users")
        assert after["body"]["version"] == "m2" and after["body"]["app_version"] is None, after
        assert driver.find_element("id", "version").text == "v2"
        # Without excludePrefixes the page would hand web's version to admin's paths too.
        driver.get(f"http://127.0.0.1:{port}/?poll=0")
        leaked = driver.execute_async_script(FETCH, "/admin/api/users")
        assert leaked["body"]["app_version"] == "v2", leaked
    finally:
        driver.quit()
        envoy.stop()
        for app in admin_apps.values():
            app.stop()


def page_load_record(driver) -> dict:
    """The current load's record (its stream's versions and opens), waiting out a reload."""
    return page_loads(driver)[-1]


def test_a_tab_told_to_reload_moves_its_event_stream_to_the_new_version_once(tmp_path, apps, ports):
    """The demo page with an EventSource (``?stream=1``) on v1. v2 takes over: the tab's next
    API call is told to reload (at its next navigation, the default), and rollway.js moves the
    stream at once, once: the page's EventSource object opens again, on v2, the v1 host's
    stream is closed, and the page itself does not reload."""
    stack = Stack(tmp_path, apps, ports, filter_config({"v1": 10}))
    driver = start_chromium()
    try:
        driver.get(stack.url("/?stream=1&poll=500"))
        wait_until(lambda: page_load_record(driver).get("stream") == ["v1"], timeout=15, what="the stream on v1")
        assert apps["v1"].streams == 1 and apps["v2"].streams == 0
        stack.deploy_step(filter_config({"v1": 0, "v2": 10}, "forward", "v2"))
        wait_until(lambda: page_load_record(driver).get("stream") == ["v1", "v2"], timeout=20,
                   what="the stream moved to v2")
        wait_until(lambda: apps["v1"].streams == 0, timeout=15, what="the v1 host's stream closed")
        time.sleep(3)                                   # more API calls, each told nothing new
        record = page_load_record(driver)
        assert record["opens"] == 2, record             # opened, and reopened once
        assert record["stream"] == ["v1", "v2"]
        assert len(page_loads(driver)) == 1             # the page itself waits for a navigation
        assert apps["v2"].streams == 1
        state = json.loads(driver.execute_script("return sessionStorage.getItem('rollway-demo')"))
        assert state["told"] == ["v2"]
    finally:
        driver.quit()
        stack.stop()


def test_reconnect_false_leaves_the_stream_where_it_is(tmp_path, apps, ports):
    stack = Stack(tmp_path, apps, ports, filter_config({"v1": 10}))
    driver = start_chromium()
    try:
        driver.get(stack.url("/?poll=0"))
        result = driver.execute_async_script("""const done = arguments[arguments.length - 1];
            const version = rollwayDemo.rollway.version;
            rollwayDemo.rollway.uninstall();
            import('/rollway.js').then(async m => {
              m.install({version, reconnect: false});
              const native = EventSource === window.EventSource && String(EventSource).includes('[native code]');
              const stream = new EventSource('/api/events');
              let opens = 0;
              stream.onopen = () => { opens += 1; };
              await new Promise(r => setTimeout(r, 800));
              await fetch('/api/always?target=v2');
              await new Promise(r => setTimeout(r, 1500));
              stream.close();
              done({native, opens});
            });""")
        assert result == {"native": True, "opens": 1}, result
    finally:
        driver.quit()
        stack.stop()
