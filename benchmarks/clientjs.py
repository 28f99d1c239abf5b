"""The size of rollway.js as a page downloads it: minified (rjsmin) and gzipped (level 9).

    python benchmarks/clientjs.py

Target: <= 2 KB minified and gzipped. The peer is the hand-written version it replaces in
a page: the same two jobs (send the version on fetch, reload when told), with no XHR, no
guard, no policies and no other origins, measured the same way.
"""

from __future__ import annotations

import gzip
import sys

import rjsmin

from rollway import web

TARGET = 2048

# What a team writes by hand before rollway.js: fetch only, reload at once, no loop guard.
PEER = """
const version = document.querySelector('meta[name="app-version"]').content;
const originalFetch = window.fetch;
window.fetch = (input, init = {}) => {
  const headers = new Headers(init.headers);
  headers.set("x-app-version", version);
  return originalFetch(input, { ...init, headers }).then((response) => {
    if (response.headers.get("x-rw-refresh")) location.reload();
    return response;
  });
};
"""


def measure(source: str) -> tuple[int, int, int]:
    minified = rjsmin.jsmin(source)
    return len(source.encode()), len(minified.encode()), len(gzip.compress(minified.encode(), 9))


def main() -> int:
    for kind in ("module", "classic"):
        raw, minified, packed = measure(web.source(kind))
        print(f"{web.FILES[kind]:20} {raw:6} bytes, minified {minified:5}, minified+gzip {packed:5}")
    _, _, peer = measure(PEER)
    _, _, ours = measure(web.source("module"))
    verdict = "met" if ours <= TARGET else "MISSED"
    print(f"rollway.js: {ours} bytes minified+gzip (target {TARGET}: {verdict}); "
          f"peer, a hand-written fetch-only snippet: {peer} bytes")
    return 0 if ours <= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
