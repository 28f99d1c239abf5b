"""A browser session as every harness models it: the demo, the tests (two Envoys over ADS,
the fleet in network namespaces) and the Envoy benchmark share this one model.

A session keeps the cookies it is given, sends the app version its page was loaded from
(``x-app-version``), and reloads onto the version that served it when told
(``x-rw-refresh``), or on its first load. It counts what a user would notice: a **move**
(served another version than last time), a **bounce** (served a version it had left: what
Rollway prevents), and **refreshes**. Transport is the caller's: it sends ``headers()`` and
hands the answer to ``answered``.

Usage::

    session = BrowserSession()
    response = http_get("/", session.headers())
    session.answered(response.status, response.headers, version_that_served_it)
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

APP_VERSION_HEADER = "x-app-version"
REFRESH_HEADER = "x-rw-refresh"
MAX_ERROR_KINDS = 32        # distinct failure reasons one session keeps apart


@dataclass
class BrowserSession:
    cookies: dict[str, str] = field(default_factory=dict)
    app_version: str | None = None        # what the page runs (sent as x-app-version)
    served: list[str] = field(default_factory=list)   # versions of the 200 responses, in order
    left: set[str] = field(default_factory=set)       # versions it has moved away from
    moves: int = 0
    bounces: int = 0
    refreshes: int = 0
    requests: int = 0
    errors: int = 0                       # no answer, or not 200
    error_kinds: dict[str, int] = field(default_factory=dict)   # "status 503", "OSError: ...": why
    keep: int | None = None               # how many served versions to remember (None: all)

    @property
    def last(self) -> str | None:
        return self.served[-1] if self.served else None

    def headers(self) -> dict[str, str]:
        out = {}
        if self.cookies:
            out["cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        if self.app_version:
            out[APP_VERSION_HEADER] = self.app_version
        return out

    def take_cookies(self, headers: Iterable[tuple[str, str]]) -> None:
        """Every Set-Cookie of a response (name=value; attributes ignored)."""
        for key, value in headers:
            if key.lower() == "set-cookie":
                name, _, rest = value.partition("=")
                self.cookies[name.strip()] = rest.split(";", 1)[0]

    def failed(self, why: str = "no answer") -> None:
        """No answer at all (the connection failed)."""
        self._error(why)

    def _error(self, kind: str) -> None:
        self.errors += 1
        # A body or an error message may differ every time: past MAX_ERROR_KINDS distinct
        # ones, the rest are counted together.
        if kind not in self.error_kinds and len(self.error_kinds) >= MAX_ERROR_KINDS:
            kind = "other"
        self.error_kinds[kind] = self.error_kinds.get(kind, 0) + 1

    def answered(self, status: int, headers: Iterable[tuple[str, str]], version: str | None,
                 body: bytes = b"") -> str | None:
        """A response: its cookies are kept whatever its status; a 200 from ``version`` is
        counted (move, bounce) and reloads the page when told. Returns what it reloaded
        onto, if anything."""
        headers = list(headers)
        self.requests += 1
        self.take_cookies(headers)
        if status != 200 or version is None:
            # Envoy's local replies say why ("no healthy upstream", "rollway: no capacity").
            detail = body[:100].decode("utf-8", "replace").strip() if status != 200 else "no version"
            self._error(f"status {status}: {detail}" if detail else f"status {status}")
            return None
        last = self.last
        if last is not None and version != last:
            self.moves += 1
            if version in self.left:
                self.bounces += 1      # back on a version it had left: what Rollway prevents
            self.left.add(last)
        self.served.append(version)
        if self.keep is not None and len(self.served) > self.keep:
            del self.served[:-self.keep]
        refresh = next((v for k, v in headers if k.lower() == REFRESH_HEADER), None)
        if self.app_version is None:
            self.app_version = version                 # first page load
        elif refresh:
            self.refreshes += 1                        # told to reload: the page now runs it
            self.app_version = version
            return version
        return None
