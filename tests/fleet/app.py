"""An app host's server for the fleet test: answers every GET with its version and host.

    python app.py --version v1 --port 8080 --host app3 [--fail-percent 30]

``--fail-percent N``: a bad build, answering N % of requests (at random) with a 500.
"""

from __future__ import annotations

import argparse
import http.server
import json
import random
import signal
import sys


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--version", required=True)
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--host", required=True)
    parser.add_argument("--fail-percent", type=float, default=0.0)
    args = parser.parse_args()
    body = json.dumps({"version": args.version, "host": args.host}).encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self):
            # The cluster Envoy chose names the version it meant; an address reused by a
            # deploy (a stale Envoy's endpoints) is refused without acting: 421, retried.
            cluster = self.headers.get("x-rw-cluster", "")
            if cluster and not cluster.endswith("." + args.version):
                self.send_response(421)
                self.send_header("content-length", "0")
                self.end_headers()
                return
            self.send_response(500 if random.random() * 100 < args.fail_percent else 200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_):
            pass

    server = http.server.ThreadingHTTPServer(("0.0.0.0", args.port), Handler)
    server.daemon_threads = True
    # SIGTERM ends it cleanly (exit 0), as an app host's process manager expects.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    server.serve_forever()


if __name__ == "__main__":
    main()
