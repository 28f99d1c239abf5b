"""A browser's view of one host name on an Envoy that fronts several services: requests
with a Host header, and a cookie jar that honours each cookie's Path as a browser does (a
service under /admin sets cookies scoped to /admin)."""

from __future__ import annotations

import http.client
import json
from dataclasses import dataclass


@dataclass
class Reply:
    status: int
    backend: str | None
    cookies: dict[str, str]        # name -> the whole Set-Cookie value
    refresh: str | None


def get(envoy, host: str, path: str = "/", cookies: dict[str, str] | None = None,
        app_version: str | None = None) -> Reply:
    conn = http.client.HTTPConnection("127.0.0.1", envoy.listen_port, timeout=10)
    try:
        conn.putrequest("GET", path, skip_host=True, skip_accept_encoding=True)
        conn.putheader("host", host)
        if cookies:
            conn.putheader("cookie", "; ".join(f"{k}={v}" for k, v in cookies.items()))
        if app_version:
            conn.putheader("x-app-version", app_version)
        conn.endheaders()
        resp = conn.getresponse()
        body = resp.read()
        set_cookies = {v.split("=", 1)[0]: v for k, v in resp.getheaders() if k.lower() == "set-cookie"}
        backend = json.loads(body)["backend"] if resp.getheader("content-type", "").startswith("application/json") \
            else None
        return Reply(resp.status, backend, set_cookies, resp.getheader("x-rw-refresh"))
    finally:
        conn.close()


class Browser:
    """A cookie jar for one domain, honouring each cookie's Path as a browser does."""

    def __init__(self, host: str):
        self.host, self.jar = host, {}     # name -> (value, path)

    def get(self, envoy, path: str = "/") -> Reply:
        sent = {n: v for n, (v, p) in self.jar.items() if path == p or path.startswith(p.rstrip("/") + "/")}
        reply = get(envoy, self.host, path, sent)
        for name, header in reply.cookies.items():
            value = header.split(";", 1)[0].split("=", 1)[1]
            cookie_path = next((a.strip()[5:] for a in header.split(";")[1:] if a.strip().startswith("Path=")), "/")
            self.jar[name] = (value, cookie_path)
        return reply
