"""The demo's app host: one version of a small web app, with a real page and an API.

``GET /rollway.js`` is the package's ``rollway.js``; ``GET /api/...`` answers JSON with the
version and host that served it and the ``x-app-version`` the request carried;
``GET /api/events`` is an EventSource stream of the same, one event every half second,
until the client goes; any other ``GET`` is the page. The page renders its version (``<meta name="rollway-version">``),
installs ``rollway.js`` and calls the API with ``fetch``; it keeps what happened to its tab
in ``sessionStorage`` (``rollway-demo``: each load and its cause, the versions its API
calls were served by, failed calls, the reloads it was told about), which survives its reloads, so a driver can read it.

The page's query string sets its behaviour: ``policy`` (``navigation``, the default, or
``immediate``), ``meta=0`` (no version tag: ``rollway.js`` falls back to the version cookie
as it was at load), ``poll`` (ms between API calls, default 1000; 0: none) and ``navigate``
(ms between in-app navigations, a ``pushState`` like a single-page app's router; default
none) and ``stream=1`` (an ``EventSource`` on ``/api/events``: each load records the versions
its stream was served by and how often it opened, which ``rollway.js``'s reconnect moves
off the old version once when the tab is told to reload).

An API called from pages of other origins (``cors_origins``) answers their preflight,
allows credentials and the app-version header, and exposes the refresh header, which is what such an API
must do for ``rollway.js`` (``install({apiOrigins: [...]})``).

Like every app host behind Rollway, it answers 421 when the cluster Envoy chose
(``x-rw-cluster``, ``service.stage.version``) names a version it does not run: a stale
Envoy's request to an address a deploy reused is refused without acting, and retried.
"""

from __future__ import annotations

import http.server
import json
import sys
import threading
from string import Template
from urllib.parse import parse_qs, urlsplit

PAGE = Template("""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
$meta
<title>web $version</title>
<style>body{font:16px system-ui,sans-serif;margin:2em} #version{font-weight:bold}</style>
</head>
<body>
<h1>web <span id="version">$version</span></h1>
<p>page served by <code>$host</code>; API calls served by <span id="api">(none yet)</span></p>
<p id="note"></p>
<p><a id="next" data-spa href="/page/1">in-app link</a> (a single-page app's navigation)</p>
<textarea id="draft" placeholder="type here: a reload at the next navigation keeps it"></textarea>
<script type="module">
import { install } from "/rollway.js";

const query = new URLSearchParams(location.search);
const VERSION = "$version";
const KEY = "rollway-demo";
const log = JSON.parse(sessionStorage.getItem(KEY) || "null") ||
  { loads: [], api: {}, sequence: [], skewed: 0, errors: 0, lost: 0, told: [], navigations: 0, leaving: "" };
// How this load came about: the first, an in-app navigation the page started, or a reload.
log.loads.push({ version: VERSION, path: location.pathname, cause: log.loads.length ? (log.leaving || "reload") : "first" });
log.leaving = "";
const save = () => sessionStorage.setItem(KEY, JSON.stringify(log));
save();

// ?exclude=/admin: another app is served under /admin on this origin (one edge, many apps).
const rollway = install({ onRefresh: query.get("policy") || "navigation", excludePrefixes: query.getAll("exclude") });
window.rollwayDemo = { rollway, log, save };

async function call() {
  try {
    const response = await fetch("/api/hello");
    const target = response.headers.get("x-rw-refresh");
    if (target && !log.told.includes(target)) log.told.push(target);
    if (!response.ok) {
      log.errors += 1;   // an answer, but not a good one
      return save();
    }
    const answer = await response.json();
    log.api[answer.version] = (log.api[answer.version] || 0) + 1;
    if (log.sequence[log.sequence.length - 1] !== answer.version) log.sequence.push(answer.version);
    if (answer.version !== VERSION) log.skewed += 1;
    document.getElementById("api").textContent = answer.version + " (" + answer.host + ")";
    document.getElementById("note").textContent =
      rollway.pending ? rollway.pending + " is out: this tab reloads at its next navigation" : "";
  } catch (error) {
    log.lost += 1;       // no answer: the network, or the call cut short by this tab's reload
  }
  save();
}

document.addEventListener("click", (event) => {
  const link = event.target.closest("a[data-spa]");
  if (!link) return;
  event.preventDefault();
  log.navigations += 1;
  log.leaving = "navigation";
  save();
  const next = "/page/" + (log.navigations + 1) + location.search;
  history.pushState({}, "", next);   // rollway.js turns it into a full load when told to reload
  if (location.pathname + location.search === next) {   // navigated in place: not leaving
    log.leaving = "";
    save();
    link.setAttribute("href", next);
  }
});

if (query.get("stream") === "1") {
  const load = log.loads[log.loads.length - 1];
  Object.assign(load, { opens: 0, stream: [] });
  const events = new EventSource("/api/events");
  events.addEventListener("open", () => { load.opens += 1; save(); });
  events.onmessage = (message) => {
    const served = JSON.parse(message.data).version;
    if (load.stream[load.stream.length - 1] !== served) load.stream.push(served);
    save();
  };
}

const poll = Number(query.get("poll") ?? 1000);
if (poll > 0) (async function loop() { await call(); setTimeout(loop, poll); })();
const every = Number(query.get("navigate") || 0);
if (every > 0) setInterval(() => document.getElementById("next").click(), every);
</script>
</body>
</html>
""")


class WebApp:
    """One app host of one version. ``api`` answers the API; a test overrides it."""

    def __init__(self, version: str, name: str, host: str = "127.0.0.1", port: int = 0,
                 cors_origins: tuple[str, ...] = (), prefix: str = ""):
        from rollway import web

        self.version, self.name, self.cors_origins = version, name, set(cors_origins)
        self.stopping = threading.Event()
        self.streams = 0            # event streams open now
        self.prefix = prefix        # an app served under a path prefix (/admin): stripped first
        self.scripts = {"/rollway.js": web.source("module").encode(),
                        "/rollway.classic.js": web.source("classic").encode()}
        handler = type("Handler", (_Handler,), {"app": self})
        self.server = _Server((host, port), handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, name=f"webapp-{name}", daemon=True).start()

    def page(self, query: dict[str, list[str]]) -> bytes:
        meta = "" if query.get("meta") == ["0"] else f'<meta name="rollway-version" content="{self.version}">'
        return PAGE.substitute(version=self.version, host=self.name, meta=meta).encode()

    def api(self, path: str, query: dict[str, list[str]], headers) -> tuple[int, dict[str, str], dict]:
        """(status, extra headers, JSON body) for ``GET /api/...``."""
        return 200, {}, {"version": self.version, "host": self.name, "path": path,
                         "app_version": headers.get("x-app-version")}

    def stop(self) -> None:
        self.stopping.set()
        self.server.shutdown()
        self.server.server_close()


class _Server(http.server.ThreadingHTTPServer):
    def handle_error(self, request, client_address) -> None:
        # A peer that goes away mid-request (Envoy closing an idle upstream connection, a
        # tab reloading) is not an error worth a traceback; anything else still is.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    app: WebApp

    def do_GET(self) -> None:
        cluster = self.headers.get("x-rw-cluster", "")
        if cluster and not cluster.endswith("." + self.app.version):
            return self._send(421, "text/plain", b"")
        url = urlsplit(self.path)
        path = url.path[len(self.app.prefix):] if self.app.prefix and url.path.startswith(self.app.prefix) else url.path
        if path in self.app.scripts:
            return self._send(200, "text/javascript", self.app.scripts[path])
        if path == "/api/events":
            return self._stream()
        if path.startswith("/api/"):
            status, extra, body = self.app.api(path, parse_qs(url.query), self.headers)
            return self._send(status, "application/json", json.dumps(body).encode(), extra)
        return self._send(200, "text/html; charset=utf-8", self.app.page(parse_qs(url.query)))

    def _stream(self) -> None:
        """Server-sent events, chunked, until the client goes or the app stops."""
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("cache-control", "no-store")
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()
        event = json.dumps({"version": self.app.version, "host": self.app.name}).encode()
        self.app.streams += 1
        try:
            while not self.app.stopping.is_set():
                data = b"data: " + event + b"\n\n"
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                self.wfile.flush()
                self.app.stopping.wait(0.5)
        except OSError:
            pass            # the client went
        finally:
            self.app.streams -= 1
            self.close_connection = True

    def do_OPTIONS(self) -> None:
        """A CORS preflight from an allowed origin: the app-version header may be sent."""
        self._send(204 if self._cors() else 403, "text/plain", b"")

    def _cors(self) -> dict[str, str]:
        origin = self.headers.get("origin", "")
        if origin not in self.app.cors_origins:
            return {}
        # Credentials: the API's own Envoy keeps a routing id for the browser; without its
        # cookie every call would be a new session, routed by the header alone.
        return {"access-control-allow-origin": origin, "vary": "origin",
                "access-control-allow-credentials": "true",
                "access-control-allow-headers": "x-app-version",
                "access-control-expose-headers": "x-rw-refresh",
                "access-control-max-age": "600"}

    def _send(self, status: int, content_type: str, body: bytes, extra: dict[str, str] | None = None) -> None:
        self.send_response(status)
        extra = {**self._cors(), **(extra or {})}
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(body)))
        self.send_header("cache-control", "no-store")
        for key, value in extra.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_) -> None:
        pass


__all__ = ["PAGE", "WebApp"]
